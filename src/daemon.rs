//! `meshd start`: builds the shared state, starts the node checks and connectivity probes,
//! opens the relay listener as soon as a node is healthy and runs every task (health checks,
//! notifier, session cleanup, hot reload, request handling) on one `LocalExecutor` thread.
//! Blocking work goes to smol's capped blocking pool. `App::stop` ends the accept loop; requests
//! in progress get [`DRAIN_LIMIT`] to finish, then `run` returns.

use std::num::NonZeroUsize;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::config::Loaded;
use crate::listener::Listener;
use crate::notifier::Notifier;
use crate::protocol::session::latest_session_height;
use crate::queue::{writer, Durability, Store, WriteOp, Writer};
use crate::{health, reload, router};

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
        let ids: Vec<u64> = app.fleet().nodes.iter().map(|n| n.id()).collect();
        for &id in &ids {
            ex.spawn(health::check_loop(app.clone(), id)).detach();
            ex.spawn(health::probe_node(app.clone(), id)).detach();
        }
        wait_until_serving(&app).await;
        let listen = format!("{}:{}", app.settings.listen_address, app.settings.rpc_port);
        let (listener, requests) = Listener::bind(&listen)?;
        for &id in &ids {
            Notifier::spawn_dispatcher(&app, id, ex);
        }
        ex.spawn(session_cleanup(app.clone())).detach();
        ex.spawn(reload::reload_loop(app.clone(), ex)).detach();
        let fleet = app.fleet();
        log::info!(
            "meshd ready: relay listener on {} serving {} servicers for {} nodes ({} healthy), {} chains; queue: {}",
            listener.addr,
            fleet.servicer_count(),
            fleet.nodes.len(),
            fleet.nodes.iter().filter(|n| n.is_healthy()).count(),
            app.chains().len(),
            queue_summary(&store)
        );
        drop(fleet);
        if let Some(ready) = options.on_ready.take() {
            ready(listener.addr);
        }
        loop {
            let next = futures_lite::future::or(async { requests.recv().await.ok() }, async {
                app.stop.wait().await;
                None
            })
            .await;
            match next {
                Some(request) => {
                    ex.spawn(router::serve(app.clone(), request)).detach();
                }
                None => break,
            }
        }
        listener.close();
        drain_requests(&app).await;
        log::info!("event=stopped");
        Ok(())
    }))
}

/// Start the tasks of a node added by a hot reload: check loop, probes, notifier dispatcher.
pub fn start_node(app: &Rc<App>, ex: &'static smol::LocalExecutor<'static>, id: u64) {
    ex.spawn(health::check_loop(app.clone(), id)).detach();
    ex.spawn(health::probe_node(app.clone(), id)).detach();
    Notifier::spawn_dispatcher(app, id, ex);
}

/// Longest the stop path waits for requests already being handled (e.g. the `/stop` answer).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// After a stop request: let requests in progress finish (bounded by [`DRAIN_LIMIT`]).
async fn drain_requests(app: &App) {
    let deadline = std::time::Instant::now() + DRAIN_LIMIT;
    while app.active_requests() > 0 && std::time::Instant::now() < deadline {
        async_io::Timer::after(Duration::from_millis(10)).await;
    }
    if app.active_requests() > 0 {
        log::warn!("event=stop_drain_timeout active_requests={}", app.active_requests());
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
        log::info!("event=nodes_awaiting_first_check count={waiting} (their relays are refused until it answers)");
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
