//! The daemon's shared state, built once from the loaded configuration and shared by `Rc` on
//! the single executor thread: fleet and chains (swappable snapshots, replaced by hot reload),
//! HTTP clients, sessions, queue, notifier, counters, metrics, identity states, and the reload and
//! stop hooks.
//!
//! The relay path takes a snapshot once (`app.fleet()`, `app.chains()`: a `RefCell` borrow and
//! an `Rc` clone) and uses it to the end, so a reload never changes a relay mid-flight.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::config::{Loaded, Settings};
use crate::http::client::{Client, ClientSettings};
use crate::ops::metrics::Metrics;
use crate::ops::redact;
use crate::ops::reload::Reloader;
use crate::ops::states::States;
use crate::queue::Writer;
use crate::relay::chain::{ChainHealth, ChainSet};
use crate::relay::sessions::SessionCache;
use crate::relay::verified_tokens::VerifiedTokens;
use crate::servicer::api::ServicerEndpoint;
use crate::servicer::fleet::{Fleet, Node};
use crate::servicer::notifier::Notifier;

/// Declares [`Counters`]: one `Cell<u64>` field per line, each exported to Prometheus as
/// `meshd_<field>_total` with its help text. Adding a counter is one line here; nothing else
/// has to change for it to appear in the metrics and on the status page.
macro_rules! counters {
    ($($(#[$doc:meta])* $field:ident: $help:literal,)*) => {
        /// Running totals, for logs, the demo, `/metrics` and the status page.
        #[derive(Default, Debug)]
        pub struct Counters {
            $($(#[$doc])* pub $field: Cell<u64>,)*
        }

        impl Counters {
            /// Every counter as (field name, help text, value), in declaration order.
            pub fn export(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($field), $help, self.$field.get()),)*]
            }
        }
    };
}

counters! {
    served: "Relays answered 200 (signed and queued).",
    /// Of those, relays of cached sessions served while their servicer node was down.
    served_during_outage: "Relays of cached sessions served while their servicer node was down (outage grace).",
    rejected: "Relays refused with an error answer.",
    chain_errors: "Relays whose chain call failed (code 28).",
    notified: "Relays the servicer accepted.",
    /// Notifies answered 37: the servicer already had the proof (counted as delivered).
    notify_already_known: "Notifies answered 37: the servicer already had the proof (counted as delivered).",
    dead_lettered: "Relays moved to the dead-letter store.",
    /// Relays refused with 503 because the queue was near full.
    queue_full: "Relays refused with 503 because the queue was near full.",
    /// A node's calls moved to another of its URLs.
    failovers: "Calls of a servicer node moved to another of its URLs.",
    /// A chain call reached an endpoint only after others could not be reached.
    chain_failovers: "Chain calls answered by a later endpoint after earlier ones failed.",
    /// Reloads that changed the running set (keys or chains).
    reloads: "Hot reloads that changed the running keys or chains.",
    /// Reloads refused because a file was broken (the previous set kept running).
    reload_failures: "Hot reloads refused because a file was broken (the previous set kept running).",
    /// Requests proxied to a servicer node, and those that got no answer from it.
    proxied: "Requests proxied to a servicer node.",
    proxy_errors: "Proxied requests that got no answer from any servicer node.",
    /// SIGHUP reload requests received.
    reloads_requested: "Reload requests received (SIGHUP).",
}

impl Counters {
    /// Add one to a counter (single executor thread: a plain Cell is enough).
    pub fn inc(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
}

/// Asks the daemon to stop accepting requests. `Send + Sync`: a signal thread may hold one.
#[derive(Clone, Default)]
pub struct StopHandle(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    requested: AtomicBool,
    event: Event,
}

impl StopHandle {
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.event.notify(usize::MAX);
    }

    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// Resolves once a stop was requested.
    pub async fn wait(&self) {
        loop {
            if self.is_requested() {
                return;
            }
            let listener = self.0.event.listen();
            if self.is_requested() {
                return;
            }
            listener.await;
        }
    }
}

/// Decrements the in-flight request count when a request is done (see `App::track_request`).
pub struct RequestGuard<'a>(&'a Cell<usize>);

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

pub struct App {
    pub settings: Settings,
    /// The effective data dir: relative paths of the config resolve against it.
    pub data_dir: PathBuf,
    fleet: RefCell<Rc<Fleet>>,
    chains: RefCell<Rc<ChainSet>>,
    /// Bench state of chain endpoints (several `urls` per chain).
    pub chain_health: ChainHealth,
    /// Token clients must send on `/v1/private/mesh/*` (`auth_token_file`). None: every private
    /// request is refused (never open).
    pub mesh_token: Option<String>,
    pub servicer_token: String,
    /// Keep-alive client for servicer calls (check, session, notify, proxy).
    pub servicer_client: Client,
    /// Keep-alive client for chain calls.
    pub chain_client: Client,
    pub sessions: SessionCache,
    /// App auth tokens that passed validation (one ed25519 verification saved per relay).
    pub(crate) verified_tokens: VerifiedTokens,
    pub notifier: Notifier,
    /// The durable relay queue (group-committing writer over the LMDB store).
    pub queue: Writer,
    pub counters: Counters,
    pub simulate_relay: bool,
    pub reload: Reloader,
    pub stop: StopHandle,
    check_interval: Duration,
    active_requests: Cell<usize>,
    /// Round-robin position of the proxy over healthy nodes.
    pub(crate) proxy_cursor: Cell<usize>,
    /// Prometheus registry (executor thread only).
    pub metrics: Metrics,
    /// Identity-state tracker (transitions per servicer address, persisted).
    pub states: States,
    /// The Spacemesh gateway, when configured (its counters go to the Prometheus exposition).
    pub spacemesh: RefCell<Option<Rc<crate::spacemesh::State>>>,
    /// The Shannon supplier edge, when configured (its counters go to the Prometheus exposition).
    pub shannon: RefCell<Option<Rc<crate::supplier::Edge>>>,
}

impl App {
    pub fn new(loaded: &Loaded, simulate_relay: bool, queue: Writer, ex: &'static smol::LocalExecutor<'static>) -> App {
        let s = loaded.settings.clone();
        let check_interval = Duration::from_secs(s.node_check_interval.max(1));
        let fleet = Fleet::new(&loaded.nodes, crate::servicer::health::stale_after(check_interval));
        let chains = ChainSet::new(loaded.chains.clone(), loaded.chain_names.clone());
        // Before any task runs: every upstream text from here on is scrubbed of these.
        redact::install_config(loaded);
        let client = |timeout_ms: u64, max_idle: u64, max_idle_per_host: u64| {
            let mut settings = ClientSettings::new(Duration::from_millis(timeout_ms.max(1))).pool_limits(max_idle, max_idle_per_host);
            settings.user_agent = s.user_agent.clone();
            Client::new(ex, settings)
        };
        let servicer_client = client(s.servicer_rpc_timeout, s.servicer_rpc_max_idle_connections, s.servicer_rpc_max_idle_conns_per_host);
        let chain_client = client(s.chain_rpc_timeout, s.chain_rpc_max_idle_connections, s.chain_rpc_max_idle_conns_per_host);
        let states = States::load(queue.clone()).unwrap_or_else(|e| {
            log::error!("event=states_load_failed error={e:?} (history continues, earlier states may be recorded again)");
            States::empty(queue.clone())
        });
        App {
            metrics: Metrics::new(&s.metrics_moniker, s.metrics_attach_servicer_label, loaded.chain_names.clone()),
            states,
            data_dir: loaded.data_dir.clone(),
            fleet: RefCell::new(Rc::new(fleet)),
            chains: RefCell::new(Rc::new(chains)),
            chain_health: ChainHealth::default(),
            mesh_token: loaded.mesh_token.clone().filter(|t| !t.is_empty()),
            servicer_token: loaded.servicer_token.clone(),
            servicer_client,
            chain_client,
            sessions: SessionCache::new(),
            verified_tokens: VerifiedTokens::default(),
            notifier: Notifier::new(),
            queue,
            counters: Counters::default(),
            simulate_relay,
            reload: Reloader::new(loaded),
            stop: StopHandle::default(),
            check_interval,
            active_requests: Cell::new(0),
            proxy_cursor: Cell::new(0),
            spacemesh: RefCell::new(None),
            shannon: RefCell::new(None),
            settings: s,
        }
    }

    /// The current fleet snapshot.
    pub fn fleet(&self) -> Rc<Fleet> {
        self.fleet.borrow().clone()
    }

    /// The current chains snapshot.
    pub fn chains(&self) -> Rc<ChainSet> {
        self.chains.borrow().clone()
    }

    /// Swap in a new fleet (hot reload). Callers retire removed nodes and start new ones.
    pub fn set_fleet(&self, fleet: Rc<Fleet>) {
        let urls: Vec<&str> = fleet.nodes.iter().flat_map(|n| n.urls.iter().map(|u| u.url.as_str())).collect();
        redact::install(redact::secrets_of([], urls, []));
        *self.fleet.borrow_mut() = fleet;
    }

    /// Swap in a new chain set (hot reload, `updatechains`).
    pub fn set_chains(&self, chains: Rc<ChainSet>) {
        install_chain_secrets(&chains);
        self.chain_health.retain(&chains.by_id);
        *self.chains.borrow_mut() = chains;
    }

    /// A file path from the config, resolved like at startup.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        crate::config::resolve_in(&self.data_dir, rel)
    }

    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    /// How to reach a node's servicer API right now: its healthiest URL (a switch is logged
    /// and counted as a failover).
    pub fn endpoint(&self, node: &Node) -> ServicerEndpoint {
        let url = self.select_url(node, false);
        self.endpoint_to(&url)
    }

    /// The servicer API at one specific URL.
    pub fn endpoint_to(&self, url: &str) -> ServicerEndpoint {
        ServicerEndpoint { client: self.servicer_client.clone(), url: url.to_string(), token: self.servicer_token.clone() }
    }

    /// Pick the URL for a node's next call (see `fleet::Node::select`), logging a failover.
    pub fn select_url(&self, node: &Node, consider_latency: bool) -> String {
        let (url, switched) = node.select(consider_latency);
        if let Some(f) = switched {
            Counters::inc(&self.counters.failovers);
            log::warn!(
                "event=failover node={} from={} to={} reason={:?} failovers={}",
                node.name,
                self.shown_url(&f.from),
                self.shown_url(&f.to),
                f.reason,
                node.failovers()
            );
        }
        url.url.clone()
    }

    /// A call to `url` of `node` could not be completed (transport error, 5xx …): bench it.
    pub fn url_failed(&self, node: &Node, url: &str, reason: &str) {
        let Some(state) = node.url_state(url) else { return };
        if let Some(pause) = state.record_failure(reason, Instant::now()) {
            log::warn!(
                "event=url_benched node={} url={} failures={} bench_ms={} reason={reason:?}",
                node.name,
                self.shown_url(url),
                state.bench.failures(),
                pause.as_millis()
            );
        }
    }

    /// A call to `url` of `node` was answered.
    pub fn url_ok(&self, node: &Node, url: &str) {
        if let Some(state) = node.url_state(url) {
            state.record_success();
        }
    }

    /// A URL as logs and the health route show it: without `user:password@`.
    pub fn shown_url(&self, url: &str) -> String {
        crate::config::redact_userinfo(url)
    }

    /// Count a request in flight until the guard drops (the stop path waits for them).
    pub fn track_request(&self) -> RequestGuard<'_> {
        self.active_requests.set(self.active_requests.get() + 1);
        RequestGuard(&self.active_requests)
    }

    pub fn active_requests(&self) -> usize {
        self.active_requests.get()
    }

    /// Ask the daemon to stop (the `/v1/private/mesh/stop` route; signal handlers use a
    /// clone of `app.stop`).
    pub fn request_stop(&self) {
        self.stop.request();
    }
}

/// Add the chains' basic-auth credentials and URL userinfo to the scrubbed secrets.
fn install_chain_secrets(chains: &ChainSet) {
    let urls = chains.by_id.values().flat_map(|c| c.urls.iter().map(String::as_str));
    redact::install(redact::secrets_of([], urls, chains.by_id.values().filter_map(|c| c.basic_auth.as_ref())));
}
