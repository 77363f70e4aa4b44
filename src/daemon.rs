//! `meshd start`: builds the shared state, checks the servicer nodes once, opens the relay
//! listener and runs every task (health checks, notifier, session cleanup, request handling)
//! on one `LocalExecutor` thread. Blocking work goes to smol's capped blocking pool.

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
use crate::router;

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
        log::info!(
            "meshd ready: relay listener on {} serving {} servicers for {} nodes, {} chains; queue: {}",
            listener.addr,
            app.fleet.servicer_count(),
            app.fleet.nodes.len(),
            app.chains.len(),
            queue_summary(&store)
        );
        if let Some(ready) = options.on_ready.take() {
            ready(listener.addr);
        }
        while let Ok(request) = requests.recv().await {
            ex.spawn(router::serve(app.clone(), request)).detach();
        }
        listener.close();
        Ok(())
    }))
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
        match (was_healthy, app.health.gate(node)) {
            (false, Ok(status)) => log::info!("event=node_healthy node={name} height={} version={:?}", status.height, status.version),
            (true, Err(e)) => log::warn!("event=node_unhealthy node={name} reason={:?}", e.message),
            _ => {}
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
