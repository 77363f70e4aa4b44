//! Spacemesh node-service gateway. In Spacemesh's node split a smeshing service
//! (keys, ATX builder, remote hare, proposals) talks to ONE `--node-service-address`, with no
//! buffering and no failover (spacemesh-node-split.md §1, §4). meshd listens at that address and:
//! - forwards the node-service HTTP API (§1.1) to a pool of node services, sticky to one synced
//!   node until it fails, then to the next (upstream.rs); paths and bodies pass byte-for-byte;
//! - commits ATX publishes (`POST /activation/publish`, `POST /publish/ax1`) to LMDB before
//!   answering and delivers them with retries (publish_queue.rs, gateway.rs, delivery.rs);
//!   time-critical publishes (hare, proposals, certificates…) are forwarded at once, never queued;
//! - optionally proxies the v2 JSON API for smesher-app with `Host` rewritten and allow-all CORS
//!   (proxy.rs);
//! - counts per upstream and per client, served as JSON at `GET /_meshd/spacemesh/stats`.
//!
//! Everything runs on the daemon's executor thread; blocking HTTP and LMDB work go to the
//! blocking pool. [`start`] is the only entry point the daemon calls.

pub mod delivery;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod publish_queue;
pub mod upstream;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::SpacemeshSettings;
use crate::http::client::{Client, ClientSettings};
use crate::http::server::{self, Limits, Server};
use crate::queue::Store;
use publish_queue::{ContentHash, PublishQueue};
use upstream::{Policy, Pool};

/// Probe of a v2 JSON API node: the call smesher-app polls (§3.4).
pub const V2_PROBE_PATH: &str = "/spacemesh.v2beta1.NodeService/Status";

/// Distinct client addresses tracked; later ones are counted under "other" (bounded memory).
pub const MAX_CLIENTS: usize = 1024;

/// Per-client counters (several smeshing services may share one gateway).
#[derive(Debug, Default, Clone)]
pub struct ClientCounters {
    pub requests: u64,
    pub api_requests: u64,
    pub publishes: u64,
}

/// Publish counters of this run (the queue itself holds the durable counts).
#[derive(Debug, Default)]
pub struct PublishCounters {
    /// New blobs committed to the queue.
    pub queued: Cell<u64>,
    /// Blobs sent again while already queued or delivered (answered without a new entry).
    pub duplicates: Cell<u64>,
    /// Delivered while the smeshing service waited (a synced node answered in time).
    pub delivered_inline: Cell<u64>,
    /// Delivered later by the delivery loop.
    pub delivered_queued: Cell<u64>,
    /// Refused by a node with a 4xx (kept as a tombstone, not retried).
    pub rejected: Cell<u64>,
    /// Delivery rounds that failed and were rescheduled.
    pub retries: Cell<u64>,
    /// Refused with 503 because the LMDB environment is near full.
    pub refused_full: Cell<u64>,
    /// Given up after `publish_max_age` without a node taking them.
    pub expired: Cell<u64>,
}

/// The gateway's shared state (one per daemon, on the executor thread).
pub struct State {
    pub settings: SpacemeshSettings,
    pub nodes: Rc<Pool>,
    pub v2: Option<Rc<Pool>>,
    pub client: Client,
    pub queue: Arc<PublishQueue>,
    /// Content hashes being delivered right now (inline or by the loop): never twice at once.
    pub in_flight: RefCell<HashSet<ContentHash>>,
    /// Wakes the delivery loop when a publish is left pending.
    pub wake: async_channel::Sender<()>,
    pub clients: RefCell<BTreeMap<String, ClientCounters>>,
    pub publishes: PublishCounters,
    pub gateway_addr: Cell<Option<SocketAddr>>,
    pub api_addr: Cell<Option<SocketAddr>>,
}

impl State {
    pub fn count_client(&self, ip: &str, f: impl FnOnce(&mut ClientCounters)) {
        let mut clients = self.clients.borrow_mut();
        let key = if clients.contains_key(ip) || clients.len() < MAX_CLIENTS { ip } else { "other" };
        f(clients.entry(key.to_string()).or_default());
    }

    pub fn wake_delivery(&self) {
        let _ = self.wake.try_send(());
    }

    /// The stats document of `GET /_meshd/spacemesh/stats` (queue counts are passed in: they
    /// need an LMDB read the caller does off the executor).
    pub fn stats_json(&self, queue: Result<publish_queue::QueueCounts, String>) -> serde_json::Value {
        use serde_json::json;
        let pool_json = |pool: &Pool| -> Vec<serde_json::Value> {
            pool.upstreams
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let c = &u.counters;
                    json!({
                        "url": u.url,
                        "state": u.health.get().as_str(),
                        "since_ms": u.since_ms.get(),
                        "sticky": pool.policy == Policy::Sticky && pool.sticky() == Some(i),
                        "requests": c.requests.get(),
                        "failures": c.failures.get(),
                        "failovers": c.failovers.get(),
                        "publishes_delivered": c.publishes_delivered.get(),
                        "probes": c.probes.get(),
                        "last_error": *u.last_error.borrow(),
                    })
                })
                .collect()
        };
        let clients: serde_json::Map<String, serde_json::Value> = self
            .clients
            .borrow()
            .iter()
            .map(|(ip, c)| (ip.clone(), json!({"requests": c.requests, "api_requests": c.api_requests, "publishes": c.publishes})))
            .collect();
        let p = &self.publishes;
        let queue = match queue {
            Ok(q) => {
                json!({"pending": q.pending, "delivered": q.delivered, "rejected": q.rejected, "expired": q.expired, "undecodable": q.undecodable})
            }
            Err(e) => json!({"error": e}),
        };
        json!({
            "listen": self.gateway_addr.get().map(|a| a.to_string()),
            "api_listen": self.api_addr.get().map(|a| a.to_string()),
            "nodes": pool_json(&self.nodes),
            "v2_api_nodes": self.v2.as_deref().map(pool_json).unwrap_or_default(),
            "clients": clients,
            "publishes": {
                "queued": p.queued.get(),
                "duplicates": p.duplicates.get(),
                "delivered_inline": p.delivered_inline.get(),
                "delivered_queued": p.delivered_queued.get(),
                "rejected": p.rejected.get(),
                "retries": p.retries.get(),
                "refused_full": p.refused_full.get(),
                "expired": p.expired.get(),
                "stored": queue,
            },
        })
    }
}

/// What `start` opened.
pub struct Started {
    pub state: Rc<State>,
    pub gateway_addr: SocketAddr,
    pub api_addr: Option<SocketAddr>,
}

/// Open the publish queue in the relay queue's LMDB environment, bind the gateway (and proxy)
/// listeners and spawn every task on `ex`. Errors name what failed (startup aborts on them).
pub fn start(
    ex: &'static smol::LocalExecutor<'static>,
    settings: &SpacemeshSettings,
    store: Arc<Store>,
    client_settings: &crate::config::Settings,
) -> Result<Started, String> {
    let queue = Arc::new(PublishQueue::open(store)?);
    let client = client(ex, settings);
    let (wake, woken) = async_channel::bounded(1);
    let state = Rc::new(State {
        nodes: Rc::new(Pool::new("node", &settings.nodes, Policy::Sticky)),
        v2: settings.api_listen.map(|_| Rc::new(Pool::new("v2", &settings.v2_api_nodes, Policy::RoundRobin))),
        settings: settings.clone(),
        client,
        queue,
        in_flight: RefCell::new(HashSet::new()),
        wake,
        clients: RefCell::new(BTreeMap::new()),
        publishes: PublishCounters::default(),
        gateway_addr: Cell::new(None),
        api_addr: Cell::new(None),
    });

    let gateway_limits = Limits::from_settings(client_settings, gateway::MAX_BODY_BYTES);
    let serving = state.clone();
    let gateway = Server::bind("spacemesh", &settings.listen.to_string(), gateway_limits, ex, server::handler(move |r| gateway::serve(serving.clone(), r)))
        .map_err(|e| format!("spacemesh.listen: {e}"))?;
    let api = match settings.api_listen {
        Some(addr) => {
            let limits = Limits::from_settings(client_settings, proxy::MAX_BODY_BYTES);
            let serving = state.clone();
            let api = Server::bind("spacemesh-api", &addr.to_string(), limits, ex, server::handler(move |r| proxy::serve(serving.clone(), r)))
                .map_err(|e| format!("spacemesh.api_listen: {e}"))?;
            Some(api)
        }
        None => None,
    };
    let (gateway_addr, api_addr) = (gateway.addr(), api.as_ref().map(Server::addr));
    state.gateway_addr.set(Some(gateway_addr));
    state.api_addr.set(api_addr);
    // The listeners live as long as the process (the daemon never stops the gateway alone).
    std::mem::forget(gateway);
    std::mem::forget(api);

    let interval = Duration::from_secs(settings.health_interval.max(1));
    let probe_timeout = Duration::from_millis(settings.request_timeout.clamp(100, 5_000));
    for i in 0..state.nodes.upstreams.len() {
        let probe = upstream::probe_loop(state.nodes.clone(), state.client.clone(), i, settings.health_path.clone(), interval, probe_timeout);
        ex.spawn(probe).detach();
    }
    if let Some(v2) = &state.v2 {
        for i in 0..v2.upstreams.len() {
            // Any HTTP answer but 502/503/504 means the JSON API is up (it serves while syncing).
            let probe = upstream::probe_loop(v2.clone(), state.client.clone(), i, V2_PROBE_PATH.into(), interval, probe_timeout);
            ex.spawn(probe).detach();
        }
    }
    ex.spawn(delivery::run(state.clone(), woken)).detach();

    log::info!(
        "event=spacemesh_gateway_ready listen={gateway_addr} nodes={} api_listen={} v2_api_nodes={} cors_everywhere={}",
        settings.nodes.len(),
        api_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        settings.v2_api_nodes.len(),
        settings.json_cors_everywhere
    );
    Ok(Started { state, gateway_addr, api_addr })
}

fn client(ex: &'static smol::LocalExecutor<'static>, settings: &SpacemeshSettings) -> Client {
    let mut s = ClientSettings::new(Duration::from_millis(settings.request_timeout.max(1)));
    s.connect_timeout = s.connect_timeout.min(Duration::from_secs(2));
    s.max_idle = 64;
    s.max_idle_per_host = 16;
    // The client's own User-Agent is forwarded; meshd adds none (ClientSettings' default).
    s.user_agent = String::new();
    Client::new(ex, s)
}
