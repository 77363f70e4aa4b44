//! `meshd start`: builds the shared state, checks the servicer nodes once, opens the relay
//! listener and runs every task (health checks, notifier, session cleanup, request handling)
//! on one `LocalExecutor` thread. Blocking work goes to smol's capped blocking pool.
//!
//! Operator side (issue D): the Prometheus listener, systemd `READY=1`/`WATCHDOG=1`, and the
//! graceful shutdown on SIGTERM/SIGINT (see [`shutdown`]).

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::Loaded;
use crate::listener::Listener;
use crate::notifier::Notifier;
use crate::protocol::session::latest_session_height;
use crate::queue::{writer, Durability, Store, WriteOp, Writer};
use crate::router;
use crate::{metrics, sd_notify, signals, states};

/// Longest a graceful shutdown waits for in-flight requests before committing and exiting.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Blocking-pool cap unless `BLOCKING_MAX_THREADS` says otherwise (blocking 1.7 never shrinks
/// its pool, so an uncapped burst would keep hundreds of idle threads; rust-stack.md §2).
pub const DEFAULT_BLOCKING_THREADS: usize = 32;

pub struct StartOptions {
    pub simulate_relay: bool,
    /// Called once the listener is up and the first checks answered (the demo waits on it).
    pub on_ready: Option<Box<dyn FnOnce(std::net::SocketAddr)>>,
}

pub fn run(loaded: Loaded, mut options: StartOptions) -> Result<(), String> {
    if std::env::var_os("BLOCKING_MAX_THREADS").is_none() {
        blocking::set_max_blocking_threads(NonZeroUsize::new(DEFAULT_BLOCKING_THREADS).expect("non-zero"));
    }
    let store = Arc::new(open_queue(&loaded)?);
    let (queue, writer_task) = Writer::new(store.clone());
    let app = Rc::new(App::new(&loaded, options.simulate_relay, queue));
    // One executor for the life of the process; leaking it gives tasks a 'static home.
    let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
    smol::block_on(ex.run(async {
        ex.spawn(writer_task).detach();
        if loaded.settings.relay_durability == "async" {
            ex.spawn(writer::periodic_sync(store.clone())).detach();
        }
        // Spacemesh node-service gateway (issue F): own listeners and tasks, same queue Env.
        if let Some(spacemesh) = &loaded.spacemesh {
            crate::spacemesh::start(ex, spacemesh, store.clone())?;
        }
        for node in 0..app.fleet.nodes.len() {
            ex.spawn(check_loop(app.clone(), node)).detach();
        }
        wait_first_checks(&app).await;
        let listen = format!("{}:{}", app.settings.listen_address, app.settings.rpc_port);
        let (listener, requests) = Listener::bind(&listen)?;
        Notifier::spawn_dispatchers(&app, ex);
        ex.spawn(session_cleanup(app.clone())).detach();
        ex.spawn(prune_states(app.clone())).detach();
        start_metrics(&app, ex);
        log::info!(
            "event=ready listen={} servicers={} nodes={} chains={} queue={:?}",
            listener.addr,
            app.fleet.servicer_count(),
            app.fleet.nodes.len(),
            app.chains.len(),
            queue_summary(&store)
        );
        let systemd = sd_notify::Notifier::from_env();
        if let Some(sd) = &systemd {
            sd.notify(&format!("READY=1\nSTATUS=serving {} servicers on {}", app.fleet.servicer_count(), listener.addr));
            if let Some(interval) = sd_notify::watchdog_interval() {
                ex.spawn(watchdog(interval)).detach();
            }
        }
        if let Some(ready) = options.on_ready.take() {
            ready(listener.addr);
        }
        let in_flight = Rc::new(Cell::new(0usize));
        let signal = serve_until_signal(&app, ex, &requests, &in_flight).await;
        shutdown(&app, ex, listener, requests, &in_flight, signal, systemd.as_ref()).await;
        Ok(())
    }))
}

/// Counts a request from hand-off to answer, so a shutdown can wait for it.
struct InFlight(Rc<Cell<usize>>);

impl InFlight {
    fn enter(count: &Rc<Cell<usize>>) -> InFlight {
        count.set(count.get() + 1);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn spawn_request(app: &Rc<App>, ex: &'static smol::LocalExecutor<'static>, request: tiny_http::Request, in_flight: &Rc<Cell<usize>>) {
    let guard = InFlight::enter(in_flight);
    let app = app.clone();
    ex.spawn(async move {
        router::serve(app, request).await;
        drop(guard);
    })
    .detach();
}

/// Serve requests until SIGTERM/SIGINT (returns the signal) or the listener stops (None).
/// SIGHUP calls [`signals::on_sighup`] and serving goes on.
async fn serve_until_signal(
    app: &Rc<App>,
    ex: &'static smol::LocalExecutor<'static>,
    requests: &async_channel::Receiver<tiny_http::Request>,
    in_flight: &Rc<Cell<usize>>,
) -> Option<i32> {
    let accept = async {
        while let Ok(request) = requests.recv().await {
            spawn_request(app, ex, request, in_flight);
        }
        None
    };
    let watch = async {
        let mut hangups = 0;
        loop {
            match signals::next(&mut hangups).await {
                signals::Event::Reload => signals::on_sighup(app),
                signals::Event::Terminate(signal) => return Some(signal),
            }
        }
    };
    futures_lite::future::or(accept, watch).await
}

/// Graceful shutdown: stop accepting (the listening socket is closed, new connections are
/// refused), serve what was already accepted, wait for in-flight requests (at most
/// [`SHUTDOWN_DRAIN`]), then commit everything submitted to the queue writer and return, so
/// the process exits 0. A relay still waiting on its chain call when the bound passes gets
/// no answer; it may already be queued, which only means its notify is sent anyway.
async fn shutdown(
    app: &Rc<App>,
    ex: &'static smol::LocalExecutor<'static>,
    listener: Listener,
    requests: async_channel::Receiver<tiny_http::Request>,
    in_flight: &Rc<Cell<usize>>,
    signal: Option<i32>,
    systemd: Option<&sd_notify::Notifier>,
) {
    let started = Instant::now();
    let deadline = started + SHUTDOWN_DRAIN;
    let signal_name = signal.map_or("none", signals::name);
    log::info!("event=shutdown_started signal={signal_name} in_flight={} drain_bound_ms={}", in_flight.get(), SHUTDOWN_DRAIN.as_millis());
    if let Some(sd) = systemd {
        sd.notify("STOPPING=1");
    }
    // Unblock the hand-off thread and drop our handle: the socket closes once it exits.
    listener.close();
    drop(listener);
    // Requests accepted before the close are still answered.
    while Instant::now() < deadline {
        match futures_lite::future::or(async { requests.recv().await.ok() }, async {
            async_io::Timer::at(deadline).await;
            None
        })
        .await
        {
            Some(request) => spawn_request(app, ex, request, in_flight),
            None => break,
        }
    }
    while in_flight.get() > 0 && Instant::now() < deadline {
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    let unanswered = in_flight.get();
    let committed = futures_lite::future::or(async { Some(app.queue.write(crate::queue::WriteOp::Flush).await) }, async {
        async_io::Timer::after(SHUTDOWN_DRAIN).await;
        None
    })
    .await;
    match committed {
        Some(crate::queue::WriteResult::Done) => {}
        other => log::error!("event=shutdown_commit_failed result={other:?}"),
    }
    log::info!(
        "event=shutdown_complete signal={signal_name} elapsed_ms={} unanswered={unanswered} served={} notified={}",
        started.elapsed().as_millis(),
        app.counters.served.get(),
        app.counters.notified.get() + app.counters.notify_already_known.get()
    );
}

/// `WATCHDOG=1` every half `WatchdogSec`, from the executor: if the executor wedges, the
/// pings stop and systemd restarts meshd.
async fn watchdog(interval: Duration) {
    let Some(sd) = sd_notify::Notifier::from_env() else { return };
    loop {
        sd.notify("WATCHDOG=1");
        async_io::Timer::after(interval).await;
    }
}

/// The Prometheus listener on `listen_address:pocket_prometheus_port`. A port that cannot be
/// bound is logged, not fatal: relays matter more than metrics.
fn start_metrics(app: &Rc<App>, ex: &'static smol::LocalExecutor<'static>) {
    let s = &app.settings;
    let addr = format!("{}:{}", s.listen_address, s.pocket_prometheus_port);
    match metrics::serve_exposition(&addr, s.prometheus_max_open_files) {
        Ok((bound, scrapes)) => {
            log::info!("event=metrics_listening listen={bound} max_open={}", s.prometheus_max_open_files.clamp(1, metrics::MAX_SCRAPE_WORKERS));
            ex.spawn(metrics::answer_scrapes(app.clone(), scrapes)).detach();
        }
        Err(e) => log::error!("event=metrics_unavailable error={e:?}"),
    }
}

/// Drop identity-state history older than the retention, hourly.
async fn prune_states(app: Rc<App>) {
    loop {
        let retention_us = states::RETENTION_DAYS * 86_400 * 1_000_000;
        app.queue.submit(crate::queue::WriteOp::PruneStates { before_us: states::now_us().saturating_sub(retention_us) });
        async_io::Timer::after(Duration::from_secs(3600)).await;
    }
}

fn open_queue(loaded: &Loaded) -> Result<Store, String> {
    let s = &loaded.settings;
    let durability = if s.relay_durability == "async" { Durability::Async } else { Durability::Sync };
    Store::open(&loaded.resolve(&s.relay_queue_dir), s.relay_queue_map_size, durability)
}

fn queue_summary(store: &Store) -> String {
    match store.stats() {
        Ok(st) => format!("{} pending (resuming), {} dead letters, {} MiB of {} MiB used", st.pending, st.dead, st.used_bytes >> 20, st.map_bytes >> 20),
        Err(e) => format!("stats unavailable: {e}"),
    }
}

/// Give every node one chance to answer before opening the listener, bounded by the servicer
/// timeout; unhealthy nodes do not block the start (their relays are refused until they answer).
async fn wait_first_checks(app: &App) {
    let deadline = std::time::Instant::now() + Duration::from_millis(app.settings.servicer_rpc_timeout.clamp(100, 10_000));
    while std::time::Instant::now() < deadline {
        let answered = (0..app.fleet.nodes.len()).all(|n| app.health.is_healthy(n) || app.health.has_answered(n));
        if answered {
            break;
        }
        async_io::Timer::after(Duration::from_millis(20)).await;
    }
    for (n, node) in app.fleet.nodes.iter().enumerate() {
        if let Err(e) = app.health.gate(n) {
            log::warn!("event=node_not_ready node={} url={} reason={:?}", node.name, node.url(), e.message);
        }
    }
}

async fn check_loop(app: Rc<App>, node: usize) {
    let interval = Duration::from_secs(app.settings.node_check_interval.max(1));
    let mut last_wrong = (Vec::new(), Vec::new());
    loop {
        let endpoint = app.endpoint(node);
        let servicers = app.fleet.nodes[node].addresses.clone();
        let chains = app.chain_ids.clone();
        let was_healthy = app.health.is_healthy(node);
        let name = &app.fleet.nodes[node].name;
        match smol::unblock(move || endpoint.check(&servicers, &chains)).await {
            Ok(answer) => {
                let wrong = (answer.wrong_servicers.clone().unwrap_or_default(), answer.wrong_chains.clone().unwrap_or_default());
                if wrong != last_wrong && (!wrong.0.is_empty() || !wrong.1.is_empty()) {
                    log::warn!("event=node_check_mismatch node={name} wrong_servicers={:?} wrong_chains={:?}", wrong.0, wrong.1);
                }
                last_wrong = wrong;
                app.health.record_ok(node, &answer);
            }
            Err(e) => {
                if app.health.record_error(node, e.clone()) {
                    log::warn!("event=node_check_failed node={name} error={e:?}");
                }
            }
        }
        let gate = app.health.gate(node);
        match (was_healthy, &gate) {
            (false, Ok(status)) => log::info!("event=node_healthy node={name} height={} version={:?}", status.height, status.version),
            (true, Err(e)) => log::warn!("event=node_unhealthy node={name} reason={:?}", e.message),
            _ => {}
        }
        for address in &app.fleet.nodes[node].address_bytes {
            match &gate {
                Ok(status) => app.states.health(*address, name, true, status.height, ""),
                Err(e) => app.states.health(*address, name, false, 0, &e.message),
            };
        }
        async_io::Timer::after(interval).await;
    }
}

/// Sessions this many sessions behind the newest height can no longer be served or notified
/// (servicers allow a couple of sessions of tolerance; this keeps a margin above that).
pub const SESSIONS_KEPT: i64 = 4;

/// Evict old sessions from the cache and prune their proofs from the duplicate index.
async fn session_cleanup(app: Rc<App>) {
    let interval = Duration::from_secs(app.settings.session_cache_clean_up_interval.max(1));
    loop {
        async_io::Timer::after(interval).await;
        if let Some((height, bps)) = app.health.max_height() {
            let min_height = latest_session_height(height, bps) - SESSIONS_KEPT * bps;
            let removed = app.sessions.evict_below(min_height);
            app.queue.write(WriteOp::PruneProofs { below_session_height: min_height }).await;
            log::info!("event=sessions_pruned evicted={removed} below_height={min_height} cached={}", app.sessions.len());
        }
    }
}
