//! `meshd start`: builds the shared state, starts the node checks and connectivity probes,
//! opens the relay listener as soon as a node is healthy and runs every task (listeners and
//! their connections, outbound calls, health checks, notifier, session cleanup, hot reload) on
//! one `LocalExecutor` thread. Queue commits go to the LMDB writer; the few LMDB reads (stats,
//! scans) to smol's blocking pool, capped small ([`DEFAULT_BLOCKING_THREADS`]).
//!
//! Operator side: the Prometheus listener, systemd `READY=1`/`WATCHDOG=1`, and the
//! graceful shutdown on SIGTERM/SIGINT or `POST /v1/private/mesh/stop` (see [`shutdown`]);
//! SIGHUP asks for a hot reload.

use std::num::NonZeroUsize;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::Loaded;
use crate::http::server::{self, Limits, Server};
use crate::ops::{metrics, reload, states};
use crate::protocol::session::latest_session_height;
use crate::queue::{writer, Durability, Store, WriteOp, Writer};
use crate::servicer::health;
use crate::servicer::notifier::Notifier;
use crate::{sd_notify, signals};

/// Longest a graceful shutdown waits for in-flight requests before committing and exiting.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Blocking-pool cap unless `BLOCKING_MAX_THREADS` says otherwise (blocking 1.7 never shrinks
/// its pool, so an uncapped burst would keep hundreds of idle threads; rust-stack.md §2). Only
/// LMDB reads off the hot path use it (queue stats, notifier scans, state queries): no socket
/// I/O and no relay waits on it.
pub const DEFAULT_BLOCKING_THREADS: usize = 2;

pub struct StartOptions {
    pub simulate_relay: bool,
    /// Called once the listener is up and the first checks answered (the demo waits on it).
    pub on_ready: Option<Box<dyn FnOnce(std::net::SocketAddr)>>,
    /// The queue, already opened under its lock (`meshd start` does, to map a fault to its
    /// exit code); None: opened here.
    pub queue: Option<Store>,
}

pub fn run(loaded: Loaded, mut options: StartOptions) -> Result<(), String> {
    if std::env::var_os("BLOCKING_MAX_THREADS").is_none() {
        blocking::set_max_blocking_threads(NonZeroUsize::new(DEFAULT_BLOCKING_THREADS).expect("non-zero"));
    }
    let store = Arc::new(match options.queue.take() {
        Some(store) => store,
        None => open_queue(&loaded).map_err(|e| e.to_string())?,
    });
    let (queue, writer_task) = Writer::new(store.clone()).map_err(|e| format!("cannot start the LMDB writer thread: {e}"))?;
    // One executor for the life of the process; leaking it gives tasks a 'static home.
    let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
    let app = Rc::new(App::new(&loaded, options.simulate_relay, queue, ex));
    crate::executor::run(ex, async move {
        ex.spawn(writer_task).detach();
        ex.spawn(writer::watch_queue_file(store.clone())).detach();
        if loaded.settings.relay_durability == "async" {
            ex.spawn(writer::periodic_sync(store.clone())).detach();
        }
        // Spacemesh node-service gateway: own listeners and tasks, same queue Env.
        if let Some(spacemesh) = &loaded.spacemesh {
            let started = crate::spacemesh::start(ex, spacemesh, store.clone(), &loaded.settings)?;
            *app.spacemesh.borrow_mut() = Some(started.state);
        }
        // Shannon supplier edge: own listener and tasks, same queue Env and writer.
        if let Some(shannon) = &loaded.shannon {
            let edge = crate::supplier::start(ex, shannon, &loaded.supplier_keys, app.queue.clone(), &loaded.settings)?;
            *app.shannon.borrow_mut() = Some(edge);
        }
        let ids: Vec<u64> = app.fleet().nodes.iter().map(|n| n.id()).collect();
        for &id in &ids {
            ex.spawn(health::check_loop(app.clone(), id)).detach();
            ex.spawn(health::probe_node(app.clone(), id)).detach();
        }
        wait_until_serving(&app).await;
        let listen = crate::config::join_host_port(&app.settings.listen_address, &app.settings.rpc_port);
        let limits = Limits::from_settings(&app.settings, app.settings.client_rpc_max_bytes_size);
        let relay_app = app.clone();
        let listener = Server::bind("relay", &listen, limits, ex, server::handler(move |request| crate::http::router::serve(relay_app.clone(), request)))
            .map_err(|e| e.to_string())?;
        for &id in &ids {
            Notifier::spawn_dispatcher(&app, id, ex);
        }
        ex.spawn(session_cleanup(app.clone())).detach();
        ex.spawn(reload::reload_loop(app.clone(), ex)).detach();
        ex.spawn(prune_states(app.clone())).detach();
        ex.spawn(crate::logline::flush_loop()).detach();
        let _metrics = start_metrics(&app, ex);
        let fleet = app.fleet();
        log::info!(
            "event=ready listen={} servicers={} nodes={} healthy_nodes={} chains={} queue={:?}",
            listener.addr(),
            fleet.servicer_count(),
            fleet.nodes.len(),
            fleet.nodes.iter().filter(|n| n.is_healthy()).count(),
            app.chains().len(),
            queue_summary(&store)
        );
        let systemd = sd_notify::Notifier::from_env();
        if let Some(sd) = &systemd {
            sd.notify(&format!("READY=1\nSTATUS=serving {} servicers on {}", fleet.servicer_count(), listener.addr()));
            if let Some(interval) = sd_notify::watchdog_interval() {
                ex.spawn(watchdog(interval)).detach();
            }
        }
        drop(fleet);
        if let Some(ready) = options.on_ready.take() {
            ready(listener.addr());
        }
        let signal = serve_until_stop(&app).await;
        shutdown(&app, listener, signal, systemd.as_ref()).await;
        Ok(())
    })
}

/// Start the tasks of a node added by a hot reload: check loop, probes, notifier dispatcher.
pub fn start_node(app: &Rc<App>, ex: &'static smol::LocalExecutor<'static>, id: u64) {
    ex.spawn(health::check_loop(app.clone(), id)).detach();
    ex.spawn(health::probe_node(app.clone(), id)).detach();
    Notifier::spawn_dispatcher(app, id, ex);
}

/// Serve (the listener's own tasks do) until SIGTERM/SIGINT (returns the signal) or a stop
/// request (`/v1/private/mesh/stop`: None). SIGHUP calls [`signals::on_sighup`] and serving
/// goes on.
async fn serve_until_stop(app: &Rc<App>) -> Option<i32> {
    let watch = async {
        let mut hangups = 0;
        loop {
            match signals::next(&mut hangups).await {
                signals::Event::Reload => signals::on_sighup(app),
                signals::Event::Terminate(signal) => return Some(signal),
            }
        }
    };
    let stop = async {
        app.stop.wait().await;
        log::info!("event=stop_requested source=private_api");
        None
    };
    futures_lite::future::or(watch, stop).await
}

/// Graceful shutdown: stop accepting (the listening socket is closed, new connections are
/// refused), serve what was already accepted, wait for in-flight requests (at most
/// [`SHUTDOWN_DRAIN`]), then commit everything submitted to the queue writer and return, so
/// the process exits 0. A relay still waiting on its chain call when the bound passes gets
/// no answer; it may already be queued, which only means its notify is sent anyway.
async fn shutdown(app: &Rc<App>, listener: Server, signal: Option<i32>, systemd: Option<&sd_notify::Notifier>) {
    let started = Instant::now();
    let deadline = started + SHUTDOWN_DRAIN;
    let signal_name = signal.map_or("none", signals::name);
    log::info!("event=shutdown_started signal={signal_name} in_flight={} drain_bound_ms={}", app.active_requests(), SHUTDOWN_DRAIN.as_millis());
    if let Some(sd) = systemd {
        sd.notify("STOPPING=1");
    }
    // The listening socket closes; each open connection answers the request it is on, if any,
    // and closes, so requests already sent are answered and no new one starts.
    listener.drain();
    let shannon = app.shannon.borrow().clone();
    if let Some(edge) = &shannon {
        edge.drain();
    }
    let in_flight = || app.active_requests() + shannon.as_ref().map_or(0, |e| e.in_flight());
    while in_flight() > 0 && Instant::now() < deadline {
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    let unanswered = in_flight();
    let committed = futures_lite::future::or(async { Some(app.queue.write(crate::queue::WriteOp::Flush).await) }, async {
        async_io::Timer::after(SHUTDOWN_DRAIN).await;
        None
    })
    .await;
    crate::logline::flush();
    match committed {
        Some(crate::queue::WriteResult::Done) => {}
        other => log::error!("event=shutdown_commit_failed result={}", crate::logline::value_text(&format!("{other:?}"))),
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

/// The Prometheus listener on `metrics_listen_address:pocket_prometheus_port` (loopback by
/// default, whatever interface the relay listener binds), at most
/// `prometheus_max_open_files` connections. A port that cannot be bound is logged, not fatal:
/// relays matter more than metrics.
fn start_metrics(app: &Rc<App>, ex: &'static smol::LocalExecutor<'static>) -> Option<Server> {
    let s = &app.settings;
    let addr = crate::config::join_host_port(&s.metrics_listen_address, &s.pocket_prometheus_port);
    let max_open = s.prometheus_max_open_files.clamp(1, metrics::MAX_SCRAPE_CONNECTIONS);
    let limits = Limits { max_connections: max_open as usize, ..Limits::from_settings(s, 4096) };
    let scrape_app = app.clone();
    match Server::bind("metrics", &addr, limits, ex, server::handler(move |_request| metrics::scrape(scrape_app.clone()))) {
        Ok(server) => {
            log::info!("event=metrics_listening listen={} max_open={max_open}", server.addr());
            Some(server)
        }
        Err(e) => {
            log::error!("event=metrics_unavailable listen={addr} error=\"{e} (metrics_listen_address, pocket_prometheus_port)\"");
            None
        }
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

/// Open the queue under its lock (one daemon per queue: src/queue/guard.rs).
pub fn open_queue(loaded: &Loaded) -> Result<Store, crate::queue::QueueFault> {
    let s = &loaded.settings;
    let durability = if s.relay_durability == "async" { Durability::Async } else { Durability::Sync };
    Store::open_as(&loaded.resolve(&s.relay_queue_dir), s.relay_queue_map_size, durability, crate::queue::OpenMode::Exclusive)
}

fn queue_summary(store: &Store) -> String {
    match store.stats() {
        Ok(st) => format!("{} pending (resuming), {} dead letters, {} MiB of {} MiB used", st.pending, st.dead, st.used_bytes >> 20, st.map_bytes >> 20),
        Err(e) => format!("stats unavailable: {e}"),
    }
}

/// Open the listener as soon as a node is healthy (or every node has answered, or the servicer
/// timeout passed): a node that is down must not delay the others, and meshd never exits over
/// one — its relays are refused until its checks pass.
async fn wait_until_serving(app: &App) {
    let deadline = std::time::Instant::now() + Duration::from_millis(app.settings.servicer_rpc_timeout.clamp(100, 10_000));
    while std::time::Instant::now() < deadline {
        let fleet = app.fleet();
        if fleet.nodes.iter().any(|n| n.is_healthy()) || fleet.nodes.iter().all(|n| n.has_answered()) {
            break;
        }
        drop(fleet);
        async_io::Timer::after(Duration::from_millis(20)).await;
    }
    let mut waiting = 0;
    for node in app.fleet().nodes.iter() {
        match node.gate() {
            Ok(_) => {}
            // Not checked yet (the listener opened on another node's answer): not a problem yet.
            Err(_) if !node.has_answered() => waiting += 1,
            Err(e) => log::warn!("event=node_not_ready node={} url={} reason={:?}", node.name, app.shown_url(&node.url()), e.message),
        }
    }
    if waiting > 0 {
        log::info!("event=nodes_awaiting_first_check count={waiting} note=\"their relays are refused until it answers\"");
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
        let highest = app.fleet().max_height();
        if let Some((height, bps)) = highest {
            let min_height = latest_session_height(height, bps) - SESSIONS_KEPT * bps;
            let removed = app.sessions.evict_below(min_height);
            app.queue.write(WriteOp::PruneProofs { below_session_height: min_height }).await;
            log::info!("event=sessions_pruned evicted={removed} below_height={min_height} cached={}", app.sessions.len());
        }
    }
}
