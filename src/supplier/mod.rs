//! The Shannon supplier edge: the I/O side of Shannon mode (the pure protocol stays in
//! `src/shannon`; README "Shannon supplier at the edge").
//!
//! Started by the daemon when `config.json` has a `shannon` object ([`start`]): its own listener
//! (the supplier's staked endpoint) on the daemon's executor, the full-node client and session
//! cache, the service backends, the durable mined-relay queue in the relay queue's LMDB
//! environment, and the `shannon-handoff` thread that adds mined relays to the central miner's
//! Redis streams.
//!
//! Flow of one relay: [`relay`] (checks, backend, sign, mine, commit) → [`mined_queue`] →
//! [`handoff`] → Redis → pocket-relay-miner's miners. Around it:
//! - [`fullnode`]: the full node's REST (grpc-gateway) queries over a list of URLs with
//!   failover (§3.4);
//! - [`sessions`]: the per-session chain view a relay is checked against (header, suppliers,
//!   ring, params, difficulty, CUPR), one set of queries per session (§2.1, §3.1, §4);
//! - [`height`]: the polled current height; `flight`: the single-flight cache of [`sessions`];
//! - [`backend`]: the service call; [`resp`]: the Redis client of the hand-off; [`metrics`].

pub mod backend;
pub(crate) mod flight;
pub mod fullnode;
pub mod handoff;
pub mod height;
pub mod metrics;
pub mod mined_queue;
pub mod relay;
pub mod resp;
pub mod sessions;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::config::ShannonSettings;
use crate::http::client::{Client, ClientSettings};
use crate::http::server::{self, Limits, Server};
use crate::relay::chain::ChainHealth;
use crate::shannon::keys::OperatorKey;
use crate::shannon::payload::{POKTHTTPRequest, POKTHTTPResponse};
use crate::shannon::proto::SessionHeader;
use handoff::{Handoff, HandoffSettings};
use mined_queue::{MinedQueue, MinedRelay};

/// Running totals of this process (the queue holds the durable counts).
#[derive(Debug, Default)]
pub struct EdgeCounters {
    /// Relays answered 200 with a signed response.
    pub served: Cell<u64>,
    /// Of those, relays committed for the hand-off (hash below the target).
    pub mined: Cell<u64>,
    /// Served but not claimable (after the claim window opened, or a backend 5xx).
    pub not_claimable: Cell<u64>,
    pub refused: Cell<u64>,
}

/// Decrements [`Edge::in_flight`] when a relay is done.
pub(crate) struct InFlight<'a>(&'a Cell<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The Shannon edge's state, shared by `Rc` on the executor thread.
pub struct Edge {
    pub settings: ShannonSettings,
    /// Supplier operator keys by `pokt1…` address (swapped whole by a reload).
    keys: RefCell<Rc<HashMap<String, OperatorKey>>>,
    /// Sessions, rings, params, difficulty and the current height, from the full nodes.
    pub sessions: Rc<sessions::SessionCache>,
    pub backend_client: Client,
    pub backend_health: ChainHealth,
    pub queue: MinedQueue,
    pub handoff: Handoff,
    pub counters: EdgeCounters,
    /// Refusals by reason (bounded: the reasons are a fixed set).
    pub refusals: RefCell<BTreeMap<&'static str, u64>>,
    pub listen_addr: Cell<Option<SocketAddr>>,
    /// The listener, kept to be drained at shutdown.
    listener: RefCell<Option<Server>>,
    /// Relays being handled now (a graceful shutdown waits for them).
    in_flight: Cell<usize>,
    /// The largest grace period (blocks) of any session served: served-request hashes of
    /// sessions ended longer ago than that can no longer be replayed and are pruned.
    max_grace_blocks: Cell<Option<u64>>,
}

impl Edge {
    /// The key of a supplier served here.
    pub fn key(&self, address: &str) -> Option<OperatorKey> {
        self.keys.borrow().get(address).cloned()
    }

    pub fn supplier_addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = self.keys.borrow().keys().cloned().collect();
        out.sort();
        out
    }

    /// Swap in a new key set (hot reload).
    pub fn set_keys(&self, keys: &[OperatorKey]) {
        *self.keys.borrow_mut() = Rc::new(keys.iter().map(|k| (k.address().to_string(), k.clone())).collect());
    }

    /// Stop accepting relays; connections answer what they are on and close (daemon shutdown).
    pub fn drain(&self) {
        if let Some(listener) = self.listener.borrow().as_ref() {
            listener.drain();
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Count a relay in flight until the guard drops.
    pub(crate) fn track(&self) -> InFlight<'_> {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight(&self.in_flight)
    }

    /// A session with this grace period (blocks) was served.
    pub(crate) fn note_grace(&self, blocks: u64) {
        if self.max_grace_blocks.get().is_none_or(|g| g < blocks) {
            self.max_grace_blocks.set(Some(blocks));
        }
    }

    /// Below which session end height a served request can no longer be accepted again: the
    /// grace check refuses it (`current > end + grace`), so its replay index entry can go.
    pub fn prune_below(&self) -> Option<i64> {
        Some(replay_horizon(self.sessions.height().get()?, self.max_grace_blocks.get()?))
    }

    /// The `shannon` object of the private health route (`stored`: the mined queue's counts,
    /// read off the executor by the caller).
    pub fn status_json(&self, stored: Result<mined_queue::MinedCounts, String>) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let h = &self.handoff.stats;
        let c = &self.counters;
        let height = self.sessions.height();
        serde_json::json!({
            "listen": self.listen_addr.get().map(|a| a.to_string()),
            "suppliers": self.supplier_addresses(),
            "height": height.get(),
            "height_age_ms": height.age().map(|a| a.as_millis() as u64),
            "full_node": crate::config::redact_userinfo(self.sessions.client().preferred_url()),
            "sessions_cached": self.sessions.len(),
            "in_flight": self.in_flight(),
            "counters": {
                "served": c.served.get(),
                "mined": c.mined.get(),
                "not_claimable": c.not_claimable.get(),
                "refused": c.refused.get(),
            },
            "refused_by_reason": *self.refusals.borrow(),
            "handoff": {
                "redis_up": h.redis_up.load(Relaxed),
                "handed_off": h.handed_off.load(Relaxed),
                "already_in_stream": h.already_in_stream.load(Relaxed),
                "refused": h.refused.load(Relaxed),
                "dead_lettered": h.dead_lettered.load(Relaxed),
                "redis_failures": h.redis_failures.load(Relaxed),
                "last_error": crate::ops::redact::scrub(&h.last_error.lock().unwrap_or_else(|p| p.into_inner())),
            },
            "queue": match stored {
                Ok(q) => serde_json::json!({"pending": q.pending, "dead": q.dead, "served_requests_remembered": q.seen}),
                Err(e) => serde_json::json!({"error": e}),
            },
        })
    }

    pub fn count_refusal(&self, reason: &'static str) {
        *self.refusals.borrow_mut().entry(reason).or_insert(0) += 1;
    }
}

/// Start Shannon mode: the listener, the hand-off thread and the background tasks.
pub fn start(
    ex: &'static smol::LocalExecutor<'static>,
    settings: &ShannonSettings,
    keys: &[OperatorKey],
    writer: crate::queue::Writer,
    client_settings: &crate::config::Settings,
) -> Result<Rc<Edge>, String> {
    let queue = MinedQueue::open(writer)?;
    let target = resp::RedisTarget::parse(&settings.redis_url).map_err(|e| format!("shannon.redis_url: {e}"))?;
    if let Some(secret) = target.secret() {
        crate::ops::redact::install(crate::ops::redact::secrets_of([secret], std::iter::empty::<&str>(), []));
    }
    let handoff = Handoff::spawn(
        queue.clone(),
        HandoffSettings {
            target,
            stream_prefix: settings.stream_prefix.clone(),
            dedup_ttl_secs: settings.dedup_ttl,
            retry_wait_max: Duration::from_millis(settings.handoff_retry_wait_max),
        },
    )
    .map_err(|e| format!("cannot start the shannon-handoff thread: {e}"))?;
    let mut fullnode_settings = ClientSettings::new(Duration::from_millis(settings.fullnode_timeout));
    fullnode_settings.user_agent = client_settings.user_agent.clone();
    let full_nodes = fullnode::FullNodeClient::new(Client::new(ex, fullnode_settings), &settings.full_nodes).map_err(|e| format!("shannon.full_nodes: {e}"))?;
    let sessions = sessions::SessionCache::new(full_nodes, height::CurrentHeight::new(), sessions::DEFAULT_FAIL_TTL);
    // Lives as long as the process, like the listener.
    sessions::start_height_poll(&sessions, ex, Duration::from_millis(settings.height_poll_interval)).detach();
    // The backend is the chain: its pool follows the chain keys (64 relays in flight to one
    // backend with the default per-host bound of 32 closed and reopened a connection per relay).
    let mut backend_settings = ClientSettings::new(Duration::from_millis(settings.backend_timeout))
        .pool_limits(client_settings.chain_rpc_max_idle_connections, client_settings.chain_rpc_max_idle_conns_per_host);
    backend_settings.user_agent = client_settings.user_agent.clone();
    let edge = Rc::new(Edge {
        settings: settings.clone(),
        keys: RefCell::new(Rc::new(HashMap::new())),
        sessions,
        backend_client: Client::new(ex, backend_settings),
        backend_health: ChainHealth::default(),
        queue,
        handoff,
        counters: EdgeCounters::default(),
        refusals: RefCell::new(BTreeMap::new()),
        listen_addr: Cell::new(None),
        listener: RefCell::new(None),
        in_flight: Cell::new(0),
        max_grace_blocks: Cell::new(None),
    });
    edge.set_keys(keys);
    let limits = Limits::from_settings(client_settings, settings.max_body_bytes);
    let serving = edge.clone();
    let listener = Server::bind("shannon", &settings.listen.to_string(), limits, ex, server::handler(move |r| relay::serve(serving.clone(), r)))
        .map_err(|e| format!("shannon.listen: {e}"))?;
    edge.listen_addr.set(Some(listener.addr()));
    ex.spawn(prune_seen_loop(edge.clone())).detach();
    *edge.listener.borrow_mut() = Some(listener);
    log::info!(
        "event=shannon_ready listen={} suppliers={} services={} full_nodes={} redis={:?}",
        edge.listen_addr.get().map_or(String::new(), |a| a.to_string()),
        keys.len(),
        settings.services.len(),
        settings.full_nodes.len(),
        resp::RedisTarget::parse(&settings.redis_url).ok()
    );
    Ok(edge)
}

/// The queue record of a mined relay.
pub(crate) fn mined_record(header: &SessionHeader, supplier: &str, height: i64, compute_units: u64, relay_hash: [u8; 32], relay_bytes: Vec<u8>) -> MinedRelay {
    MinedRelay {
        supplier: supplier.to_string(),
        service_id: header.service_id.clone(),
        application: header.application_address.clone(),
        session_id: header.session_id.clone(),
        session_start: header.session_start_block_height,
        session_end: header.session_end_block_height,
        arrival_height: height,
        compute_units,
        relay_hash,
        relay_bytes,
        served_at_ms: crate::queue::record::now_ms(),
        attempts: 0,
        not_before_ms: 0,
        last_error: String::new(),
    }
}

/// The backend call a relay's payload (a `POKTHTTPRequest`, §1.4) describes, with the
/// `Pocket-*` headers added when `pocket` is given (`forward_pocket_headers`).
pub(crate) fn payload_call(payload: &[u8], pocket: Option<(&SessionHeader, &str)>) -> Result<backend::BackendCall, String> {
    let req = POKTHTTPRequest::decode(payload).map_err(|e| e.to_string())?;
    let mut headers: Vec<(String, String)> = req.headers.values().flat_map(|h| h.values.iter().map(move |v| (h.key.clone(), v.clone()))).collect();
    if let Some((h, supplier)) = pocket {
        headers.retain(|(n, _)| !n.to_ascii_lowercase().starts_with("pocket-"));
        headers.push(("Pocket-Supplier".into(), supplier.to_string()));
        headers.push(("Pocket-Service".into(), h.service_id.clone()));
        headers.push(("Pocket-Session-Id".into(), h.session_id.clone()));
        headers.push(("Pocket-Application".into(), h.application_address.clone()));
        headers.push(("Pocket-Session-Start-Height".into(), h.session_start_block_height.to_string()));
        headers.push(("Pocket-Session-End-Height".into(), h.session_end_block_height.to_string()));
    }
    let method = if req.method.is_empty() { "POST".to_string() } else { req.method };
    Ok(backend::BackendCall { method, path_and_query: backend::path_and_query(&req.url), headers, body: req.body })
}

/// The response payload: the backend's answer as a deterministic `POKTHTTPResponse` (§1.4).
pub(crate) fn response_payload(answer: &backend::BackendAnswer) -> Vec<u8> {
    POKTHTTPResponse::from_parts(answer.status, answer.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())), answer.body.clone()).encode()
}

/// Sessions ending below this height are past their grace window at `height` (`height > end +
/// grace` for every end below it), so no relay of theirs is accepted any more.
fn replay_horizon(height: i64, grace_blocks: u64) -> i64 {
    height.saturating_sub(i64::try_from(grace_blocks).unwrap_or(i64::MAX)).saturating_sub(1)
}

/// How often the replay index of served requests is pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Forget served-request hashes of sessions past every grace window (see [`Edge::prune_below`]).
async fn prune_seen_loop(edge: Rc<Edge>) {
    loop {
        async_io::Timer::after(PRUNE_INTERVAL).await;
        if let Some(below) = edge.prune_below() {
            if let crate::queue::WriteResult::Refused(e) = edge.queue.prune_seen(below).await {
                log::warn!("event=shannon_prune_failed below_session_end={below} error={e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_horizon_keeps_every_session_still_in_its_grace_window() {
        let (height, grace) = (130, 10);
        let below = replay_horizon(height, grace);
        // Every session that may still be served ends at `below` or later: none of it is pruned.
        for end in below - 20..=height {
            let servable = height <= end + grace as i64;
            assert!(!servable || end >= below, "end {end} is servable and must not be pruned");
        }
        assert!(height > (below - 1) + grace as i64, "the newest pruned end is past its grace");
        assert_eq!(replay_horizon(5, u64::MAX), i64::MIN + 5, "no overflow");
    }
}
