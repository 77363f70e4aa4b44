//! The servicer fleet meshd signs for: node entries (servicer full nodes, each reachable at one
//! or more URLs) and the servicer keys each owns, indexed by public key for the relay path.
//!
//! A [`Fleet`] is an immutable snapshot: the relay path takes one (`App::fleet`, an `Rc` clone)
//! and works on it to the end, while a hot reload builds a new snapshot and swaps it in. What
//! must survive a reload lives outside the snapshot and is shared by `Rc`: a node's
//! [`NodeRuntime`] (identity, notifier lane, URL in use, failover count) and each URL's
//! [`UrlState`] (check results, bench, latency). [`Fleet::rebuild`] matches new entries to old
//! nodes by URL, so an unchanged node keeps its health, its dispatcher and its sessions.
//!
//! URL choice ([`Node::select`]): the first usable URL in keys-file order to begin with (usable:
//! not benched, its last check answered after its last failure, status fresh and synced); then
//! stay on the current URL while it is usable, otherwise switch to the usable URL with the
//! fewest recent failures, then the lowest check latency. Switches are sticky: a recovered URL
//! gets traffic again only when the current one fails (no flapping back and forth). The check
//! loop may also switch for latency, but only for a large, lasting gap (see [`LATENCY_RATIO`]):
//! the URL carrying the traffic answers checks slower because it is busy, so small gaps are bias,
//! not geography. A failed call benches its URL with exponential backoff; the URL returns once
//! the bench expired *and* a check succeeded since.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::NodeEntry;
use crate::protocol::{KeyPair, PocketError};
use crate::servicer::health::{NodeStatus, UrlHealth};
use crate::servicer::notifier::NodeLane;

/// First bench of a failing URL; doubles per consecutive failure up to [`BENCH_MAX`].
pub const BENCH_MIN: Duration = Duration::from_secs(1);
pub const BENCH_MAX: Duration = Duration::from_secs(60);
/// Latency failover: switch only when another usable URL's check latency is at most
/// 1/`LATENCY_RATIO` of the current one's, at least `LATENCY_MARGIN_MS` lower, and the node has
/// kept its URL for `LATENCY_HOLD` — a far-away URL versus a near one, not load noise.
pub const LATENCY_RATIO: f64 = 3.0;
pub const LATENCY_MARGIN_MS: f64 = 100.0;
pub const LATENCY_HOLD: Duration = Duration::from_secs(300);
/// Weight of the newest sample in the latency moving average.
const EWMA_ALPHA: f64 = 0.2;

/// Exponential bench of something that failed (a node URL, a chain endpoint). Executor-only.
#[derive(Debug, Default)]
pub struct Bench {
    failures: Cell<u32>,
    until: Cell<Option<Instant>>,
    last_failure: Cell<Option<Instant>>,
}

impl Bench {
    /// Record a failure. Returns the bench length when this failure benched it; `None` when it
    /// was already benched (concurrent calls failing together count as one failure, or one
    /// outage would jump straight to the longest bench).
    pub fn fail(&self, now: Instant) -> Option<Duration> {
        if self.benched_until(now).is_some() {
            return None;
        }
        let failures = self.failures.get().saturating_add(1);
        self.failures.set(failures);
        let pause = BENCH_MIN.saturating_mul(1u32.checked_shl(failures - 1).unwrap_or(u32::MAX)).min(BENCH_MAX);
        self.until.set(Some(now + pause));
        self.last_failure.set(Some(now));
        Some(pause)
    }

    /// A call succeeded: the failure streak is over.
    pub fn succeed(&self) {
        self.failures.set(0);
        self.until.set(None);
    }

    /// When the bench ends, if it has not yet.
    pub fn benched_until(&self, now: Instant) -> Option<Instant> {
        self.until.get().filter(|until| *until > now)
    }

    /// Consecutive failures (0 after a success).
    pub fn failures(&self) -> u32 {
        self.failures.get()
    }

    pub fn last_failure(&self) -> Option<Instant> {
        self.last_failure.get()
    }
}

/// One URL of a servicer node: its check results and how well calls to it went.
#[derive(Debug)]
pub struct UrlState {
    pub url: String,
    pub health: RefCell<UrlHealth>,
    pub bench: Bench,
    /// Why it was last benched.
    last_failure_reason: RefCell<String>,
    /// Moving average of check round trips, in ms (checks go to every URL, so averages compare).
    latency_ms: Cell<Option<f64>>,
    /// Calls (checks, sessions, notifies, proxied requests) and how many failed.
    calls: Cell<u64>,
    errors: Cell<u64>,
}

impl UrlState {
    pub fn new(url: &str) -> UrlState {
        UrlState {
            url: url.to_string(),
            health: RefCell::new(UrlHealth::default()),
            bench: Bench::default(),
            last_failure_reason: RefCell::new(String::new()),
            latency_ms: Cell::new(None),
            calls: Cell::new(0),
            errors: Cell::new(0),
        }
    }

    /// Whether calls may go here: not benched, a check answered since the last failure (the
    /// check loop probes a benched URL back), and that status is fresh and synced.
    pub fn usable(&self, now: Instant, stale_after: Duration) -> bool {
        self.unusable_reason(now, stale_after).is_none()
    }

    /// Why the URL is not usable, or None when it is.
    pub fn unusable_reason(&self, now: Instant, stale_after: Duration) -> Option<String> {
        if self.bench.benched_until(now).is_some() {
            return Some(format!("benched after {} failure(s): {}", self.bench.failures(), self.last_failure_reason.borrow()));
        }
        let health = self.health.borrow();
        if let (Some(failed), Some(checked)) = (self.bench.last_failure(), health.last_ok()) {
            if checked < failed {
                return Some(format!("no successful check since it failed: {}", self.last_failure_reason.borrow()));
            }
        }
        health.gate(stale_after).err().map(|e| e.message)
    }

    pub fn latency_ms(&self) -> Option<f64> {
        self.latency_ms.get()
    }

    pub fn record_latency(&self, elapsed: Duration) {
        let sample = elapsed.as_secs_f64() * 1000.0;
        self.latency_ms.set(Some(match self.latency_ms.get() {
            Some(avg) => avg + EWMA_ALPHA * (sample - avg),
            None => sample,
        }));
    }

    /// A call answered (any HTTP answer the API understands).
    pub fn record_success(&self) {
        self.calls.set(self.calls.get() + 1);
        self.bench.succeed();
    }

    /// A call could not be completed. Returns the bench length when this benched the URL.
    pub fn record_failure(&self, reason: &str, now: Instant) -> Option<Duration> {
        self.calls.set(self.calls.get() + 1);
        self.errors.set(self.errors.get() + 1);
        let pause = self.bench.fail(now);
        if pause.is_some() {
            *self.last_failure_reason.borrow_mut() = reason.to_string();
        }
        pause
    }

    pub fn last_failure_reason(&self) -> String {
        self.last_failure_reason.borrow().clone()
    }

    /// (calls, failed calls) since start.
    pub fn call_counts(&self) -> (u64, u64) {
        (self.calls.get(), self.errors.get())
    }
}

static NEXT_NODE_ID: AtomicU64 = AtomicU64::new(1);

/// What a node keeps across hot reloads while its entry stays in the keys file.
#[derive(Debug)]
pub struct NodeRuntime {
    /// Unique for the life of the process; tasks find their node in the current fleet by it.
    pub id: u64,
    stale_after: Duration,
    current: RefCell<Option<Rc<UrlState>>>,
    /// When `current` was last set.
    selected_at: Cell<Option<Instant>>,
    failovers: Cell<u64>,
    retired: Cell<bool>,
    pub(crate) lane: NodeLane,
}

impl NodeRuntime {
    fn new(stale_after: Duration) -> NodeRuntime {
        NodeRuntime {
            id: NEXT_NODE_ID.fetch_add(1, Ordering::Relaxed),
            stale_after,
            current: RefCell::new(None),
            selected_at: Cell::new(None),
            failovers: Cell::new(0),
            retired: Cell::new(false),
            lane: NodeLane::default(),
        }
    }

    /// The node left the keys file: its check loop and dispatcher end at their next pass (its
    /// queued relays stay in LMDB for whichever node owns their servicer address later).
    pub fn retire(&self) {
        self.retired.set(true);
        self.lane.wake_all();
    }

    pub fn is_retired(&self) -> bool {
        self.retired.get()
    }
}

/// A switch of the URL a node's calls go to.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// A servicer full node as meshd talks to it (one snapshot of it).
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub urls: Vec<Rc<UrlState>>,
    /// Addresses (hex) of the servicers this node owns, sent in every check.
    pub addresses: Arc<[String]>,
    /// The same addresses as bytes: the queue's per-servicer key prefixes.
    pub address_bytes: Arc<[[u8; 20]]>,
    pub rt: Rc<NodeRuntime>,
}

impl Node {
    pub fn id(&self) -> u64 {
        self.rt.id
    }

    pub fn stale_after(&self) -> Duration {
        self.rt.stale_after
    }

    /// The URL calls go to right now (the first one until a selection was made).
    pub fn url(&self) -> String {
        match self.current() {
            Some(u) => u.url.clone(),
            None => self.urls[0].url.clone(),
        }
    }

    /// The current URL if it is still one of this snapshot's URLs.
    fn current(&self) -> Option<Rc<UrlState>> {
        let current = self.rt.current.borrow();
        current.as_ref().filter(|c| self.urls.iter().any(|u| Rc::ptr_eq(u, c))).cloned()
    }

    pub fn is_current(&self, url: &UrlState) -> bool {
        self.current().is_some_and(|c| std::ptr::eq(&*c, url))
    }

    pub fn url_state(&self, url: &str) -> Option<&Rc<UrlState>> {
        self.urls.iter().find(|u| u.url == url)
    }

    pub fn failovers(&self) -> u64 {
        self.rt.failovers.get()
    }

    pub fn is_retired(&self) -> bool {
        self.rt.is_retired()
    }

    /// The status a relay for this node may be served under — the node is as healthy as its
    /// best URL (the current one first) — or the reason it may not.
    pub fn gate(&self) -> Result<NodeStatus, PocketError> {
        let current = self.current();
        let mut first_error = None;
        for url in current.iter().chain(self.urls.iter().filter(|u| !current.as_ref().is_some_and(|c| Rc::ptr_eq(c, u)))) {
            match url.health.borrow().gate(self.rt.stale_after) {
                Ok(status) => return Ok(status),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| PocketError::sdk(1, "pocket node is currently unavailable: no URL")))
    }

    pub fn is_healthy(&self) -> bool {
        self.gate().is_ok()
    }

    /// While [`Node::gate`] is closed: the newest healthy status of any URL that is at most
    /// `grace` old (see `health::UrlHealth::grace_status`), under which relays of already
    /// cached sessions are still served.
    pub fn grace_status(&self, grace: Duration) -> Option<NodeStatus> {
        self.urls.iter().filter_map(|u| u.health.borrow().grace_status(grace)).max_by_key(|s| s.checked_at)
    }

    /// For the status page: the most recent successful check of any URL (even if stale or
    /// syncing) and the current URL's last error.
    pub fn view(&self) -> (Option<NodeStatus>, Option<String>) {
        let latest = self.urls.iter().filter_map(|u| u.health.borrow().status().cloned()).max_by_key(|status| status.checked_at);
        let current = self.current().unwrap_or_else(|| self.urls[0].clone());
        let last_error = current.health.borrow().last_error().map(str::to_string);
        (latest, last_error)
    }

    /// Whether any check of any URL has completed, successfully or not.
    pub fn has_answered(&self) -> bool {
        self.urls.iter().any(|u| u.health.borrow().has_answered())
    }

    /// Whether some URL is usable right now (see [`UrlState::usable`]).
    pub fn has_usable_url(&self) -> bool {
        let now = Instant::now();
        self.urls.iter().any(|u| u.usable(now, self.rt.stale_after))
    }

    /// Choose the URL for the next call, switching when the current one is not usable (or, with
    /// `consider_latency`, much slower than another). Returns the URL and the switch made, if any;
    /// the first choice of a node is not a failover.
    pub fn select(&self, consider_latency: bool) -> (Rc<UrlState>, Option<Failover>) {
        let now = Instant::now();
        let stale = self.rt.stale_after;
        let current = self.current();
        let usable: Vec<&Rc<UrlState>> = self.urls.iter().filter(|u| u.usable(now, stale)).collect();
        let best = usable.iter().min_by(|a, b| score(a).partial_cmp(&score(b)).unwrap_or(std::cmp::Ordering::Equal)).copied();
        let settled = self.rt.selected_at.get().is_some_and(|t| now.duration_since(t) >= LATENCY_HOLD);
        let (chosen, reason) = match (&current, best) {
            (Some(cur), _) if usable.iter().any(|u| Rc::ptr_eq(u, cur)) => {
                let faster = if consider_latency && settled { faster_than(cur, &usable) } else { None };
                match faster {
                    Some((url, why)) => (url.clone(), Some(why)),
                    None => (cur.clone(), None),
                }
            }
            (Some(cur), Some(best)) => {
                let why = cur.unusable_reason(now, stale).unwrap_or_else(|| "not usable".into());
                (best.clone(), Some(why))
            }
            // Nothing usable: stay put rather than thrash between failing URLs.
            (Some(cur), None) => (cur.clone(), None),
            // First choice: the operator's order.
            (None, Some(_)) => (usable[0].clone(), None),
            // First choice with nothing usable yet: a URL not benched (or back soonest), then
            // the one that last answered a check, the configured order breaking ties.
            (None, None) => {
                let first = self
                    .urls
                    .iter()
                    .min_by_key(|u| (u.bench.benched_until(now), std::cmp::Reverse(u.health.borrow().last_ok())))
                    .expect("a node has at least one URL");
                (first.clone(), None)
            }
        };
        let switched = match (&current, reason) {
            (Some(cur), Some(reason)) if !Rc::ptr_eq(cur, &chosen) => {
                self.rt.failovers.set(self.rt.failovers.get() + 1);
                Some(Failover { from: cur.url.clone(), to: chosen.url.clone(), reason })
            }
            _ => None,
        };
        if current.as_ref().is_none_or(|c| !Rc::ptr_eq(c, &chosen)) {
            *self.rt.current.borrow_mut() = Some(chosen.clone());
            self.rt.selected_at.set(Some(now));
        }
        (chosen, switched)
    }
}

/// Lower is better: recent failures first, then check latency (unknown latency last).
fn score(u: &UrlState) -> (u32, f64) {
    (u.bench.failures(), u.latency_ms().unwrap_or(f64::MAX))
}

/// A usable URL much faster than `current`, with the reason to switch.
fn faster_than<'a>(current: &UrlState, usable: &[&'a Rc<UrlState>]) -> Option<(&'a Rc<UrlState>, String)> {
    let cur = current.latency_ms()?;
    let (url, lat) = usable
        .iter()
        .filter(|u| !std::ptr::eq(&****u, current))
        .filter_map(|u| u.latency_ms().map(|l| (*u, l)))
        .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))?;
    (lat * LATENCY_RATIO <= cur && cur - lat >= LATENCY_MARGIN_MS).then(|| (url, format!("latency: {:.0} ms against {:.0} ms", lat, cur)))
}

/// One servicer identity and the node that claims its relays.
#[derive(Debug)]
pub struct Servicer {
    pub key: KeyPair,
    pub node: Rc<Node>,
}

/// How a reload changed the fleet.
#[derive(Debug, Default)]
pub struct FleetChanges {
    /// Nodes with a new runtime: their tasks must be started.
    pub added: Vec<Rc<Node>>,
    /// Nodes that left: their runtimes must be retired.
    pub removed: Vec<Rc<Node>>,
    /// Kept nodes whose name, URLs or keys changed.
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Servicer addresses no longer in the fleet, and new ones.
    pub addresses_removed: usize,
    pub addresses_added: usize,
}

impl FleetChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Debug)]
pub struct Fleet {
    pub nodes: Vec<Rc<Node>>,
    by_public_key: HashMap<[u8; 32], Servicer>,
    by_id: HashMap<u64, usize>,
    addresses: HashSet<[u8; 20]>,
    stale_after: Duration,
}

impl Fleet {
    /// A fleet of new nodes. `stale_after`: how long a node's last successful check is trusted.
    pub fn new(entries: &[NodeEntry], stale_after: Duration) -> Fleet {
        let empty = Fleet::empty(stale_after);
        empty.rebuild(entries).0
    }

    pub fn empty(stale_after: Duration) -> Fleet {
        Fleet { nodes: Vec::new(), by_public_key: HashMap::new(), by_id: HashMap::new(), addresses: HashSet::new(), stale_after }
    }

    /// The fleet `entries` describe, keeping the runtime (health, URL states, notifier lane) of
    /// every node of `self` that shares a URL with an entry. Nothing in `self` is modified:
    /// the caller swaps the result in, then retires `removed` and starts `added`.
    pub fn rebuild(&self, entries: &[NodeEntry]) -> (Fleet, FleetChanges) {
        let mut by_url: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for u in &node.urls {
                by_url.insert(u.url.as_str(), i);
            }
        }
        let mut claimed = vec![false; self.nodes.len()];
        let mut fleet = Fleet::empty(self.stale_after);
        let mut changes = FleetChanges::default();
        for entry in entries {
            let old = entry.urls.iter().filter_map(|u| by_url.get(u.as_str()).copied()).find(|i| !claimed[*i]);
            let addresses: Vec<String> = entry.keys.iter().map(|k| k.address_hex.clone()).collect();
            let address_bytes: Vec<[u8; 20]> = entry.keys.iter().map(|k| crate::protocol::address_of(&k.public_bytes())).collect();
            let node = match old {
                Some(i) => {
                    claimed[i] = true;
                    let prev = &self.nodes[i];
                    let urls: Vec<Rc<UrlState>> = entry.urls.iter().map(|u| prev.url_state(u).cloned().unwrap_or_else(|| Rc::new(UrlState::new(u)))).collect();
                    let same_urls = urls.len() == prev.urls.len() && urls.iter().zip(&prev.urls).all(|(a, b)| Rc::ptr_eq(a, b));
                    if entry.name != prev.name || !same_urls || *prev.addresses != *addresses {
                        changes.changed.push(entry.name.clone());
                    } else {
                        changes.unchanged += 1;
                    }
                    Rc::new(Node { name: entry.name.clone(), urls, addresses: addresses.into(), address_bytes: address_bytes.into(), rt: prev.rt.clone() })
                }
                None => {
                    let node = Rc::new(Node {
                        name: entry.name.clone(),
                        urls: entry.urls.iter().map(|u| Rc::new(UrlState::new(u))).collect(),
                        addresses: addresses.into(),
                        address_bytes: address_bytes.into(),
                        rt: Rc::new(NodeRuntime::new(self.stale_after)),
                    });
                    changes.added.push(node.clone());
                    node
                }
            };
            for (key, address) in entry.keys.iter().zip(node.address_bytes.iter()) {
                fleet.addresses.insert(*address);
                fleet.by_public_key.insert(key.public_bytes(), Servicer { key: key.clone(), node: node.clone() });
            }
            fleet.by_id.insert(node.id(), fleet.nodes.len());
            fleet.nodes.push(node);
        }
        changes.removed = self.nodes.iter().zip(&claimed).filter(|(_, c)| !**c).map(|(n, _)| n.clone()).collect();
        changes.addresses_removed = self.addresses.difference(&fleet.addresses).count();
        changes.addresses_added = fleet.addresses.difference(&self.addresses).count();
        (fleet, changes)
    }

    pub fn servicer(&self, public_key: &[u8; 32]) -> Option<&Servicer> {
        self.by_public_key.get(public_key)
    }

    pub fn servicer_count(&self) -> usize {
        self.by_public_key.len()
    }

    /// The node with this runtime id, if it is still in the fleet.
    pub fn node(&self, id: u64) -> Option<&Rc<Node>> {
        self.by_id.get(&id).map(|i| &self.nodes[*i])
    }

    /// Whether a servicer address belongs to this fleet (queued relays of other addresses are
    /// orphans until a reload brings their address back).
    pub fn owns_address(&self, address: &[u8; 20]) -> bool {
        self.addresses.contains(address)
    }

    /// Highest height any node reported and its blocks per session (to age out sessions).
    pub fn max_height(&self) -> Option<(i64, i64)> {
        self.nodes
            .iter()
            .flat_map(|n| n.urls.iter())
            .filter_map(|u| u.health.borrow().status().map(|s| (s.height, s.blocks_per_session)))
            .max_by_key(|(h, _)| *h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicer::api::{CheckAnswer, NodeStatusJson};

    fn key(n: u16) -> KeyPair {
        let mut seed = [7u8; 32];
        seed[..2].copy_from_slice(&n.to_be_bytes());
        KeyPair::from_seed(&seed)
    }

    fn entry(name: &str, urls: &[&str], keys: &[u16]) -> NodeEntry {
        NodeEntry { name: name.into(), urls: urls.iter().map(|u| u.to_string()).collect(), keys: keys.iter().map(|k| key(*k)).collect() }
    }

    fn healthy(url: &UrlState, height: i64) {
        let answer = CheckAnswer {
            success: true,
            status: Some(NodeStatusJson { version: "RC".into(), is_starting: false, is_catching_up: false, height }),
            blocks_per_session: 4,
            client_session_sync_allowance: 1,
            ..Default::default()
        };
        url.health.borrow_mut().record_ok(&answer);
    }

    #[test]
    fn bench_doubles_caps_and_ignores_concurrent_failures() {
        let b = Bench::default();
        let t = Instant::now();
        assert_eq!(b.fail(t), Some(BENCH_MIN));
        assert_eq!(b.fail(t + Duration::from_millis(10)), None, "already benched: same outage");
        assert_eq!(b.fail(t + BENCH_MIN), Some(BENCH_MIN * 2));
        assert_eq!(b.fail(t + BENCH_MIN * 3), Some(BENCH_MIN * 4));
        assert_eq!(b.failures(), 3);
        b.succeed();
        assert_eq!((b.failures(), b.benched_until(t)), (0, None));
        let big = Bench::default();
        for i in 0..40 {
            assert!(big.fail(t + BENCH_MAX * 2 * i).is_some());
        }
        let last = t + BENCH_MAX * 78;
        assert_eq!(big.benched_until(last).map(|u| u - last), Some(BENCH_MAX), "capped, no overflow");
    }

    #[test]
    fn a_failed_url_is_benched_and_the_node_fails_over_then_back_only_after_a_check() {
        let fleet = Fleet::new(&[entry("n", &["http://127.0.0.1:1", "http://127.0.0.1:2"], &[1])], Duration::from_secs(30));
        let node = fleet.nodes[0].clone();
        let (a, b) = (node.urls[0].clone(), node.urls[1].clone());
        // Before any check: the first URL, and no failover counted.
        let (first, switched) = node.select(false);
        assert!(Rc::ptr_eq(&first, &a) && switched.is_none());
        healthy(&a, 10);
        healthy(&b, 10);
        assert!(node.select(false).1.is_none());
        assert!(node.has_usable_url());

        assert!(a.record_failure("connection refused", Instant::now()).is_some());
        let (chosen, switched) = node.select(false);
        assert!(Rc::ptr_eq(&chosen, &b));
        let f = switched.expect("a failover");
        assert_eq!((f.from.as_str(), f.to.as_str()), ("http://127.0.0.1:1", "http://127.0.0.1:2"));
        assert!(f.reason.contains("connection refused"), "{}", f.reason);
        assert_eq!(node.failovers(), 1);
        assert_eq!(node.url(), "http://127.0.0.1:2");

        // B fails too: nothing usable, so the node stays on B instead of thrashing.
        b.record_failure("reset", Instant::now());
        assert!(!node.has_usable_url());
        assert!(node.select(false).1.is_none());
        assert!(node.is_healthy(), "bench does not make the node unhealthy: its checks decide that");

        // A's bench expiring is not enough: a check must have succeeded after the failure.
        let probe = UrlState::new("http://127.0.0.1:3");
        healthy(&probe, 1);
        probe.record_failure("reset", Instant::now());
        assert!(probe.unusable_reason(Instant::now(), Duration::from_secs(30)).unwrap().contains("benched"));
        std::thread::sleep(BENCH_MIN + Duration::from_millis(50));
        assert!(probe.unusable_reason(Instant::now(), Duration::from_secs(30)).unwrap().contains("no successful check"));
        healthy(&probe, 2);
        assert!(probe.usable(Instant::now(), Duration::from_secs(30)));
    }

    #[test]
    fn node_health_is_its_best_url_and_staleness_counts() {
        let fleet = Fleet::new(&[entry("n", &["http://127.0.0.1:1", "http://127.0.0.1:2"], &[1])], Duration::from_millis(30));
        let node = &fleet.nodes[0];
        assert!(node.gate().unwrap_err().message.contains("no check has answered"));
        assert!(!node.has_answered());
        node.urls[0].health.borrow_mut().record_error("refused".into());
        healthy(&node.urls[1], 77);
        assert_eq!(node.gate().unwrap().height, 77);
        std::thread::sleep(Duration::from_millis(50));
        assert!(node.gate().unwrap_err().message.contains("unavailable"), "the only fresh URL went stale");
        node.select(false);
        assert!(node.gate().unwrap_err().message.contains("last successful check"), "the current URL's reason comes first");
    }

    #[test]
    fn latency_switch_needs_a_large_gap() {
        let fleet = Fleet::new(&[entry("n", &["http://127.0.0.1:1", "http://127.0.0.1:2"], &[1])], Duration::from_secs(30));
        let node = &fleet.nodes[0];
        let (a, b) = (&node.urls[0], &node.urls[1]);
        healthy(a, 1);
        healthy(b, 1);
        a.record_latency(Duration::from_millis(80));
        b.record_latency(Duration::from_millis(120));
        assert!(Rc::ptr_eq(&node.select(true).0, a), "first choice: keys-file order");
        for _ in 0..20 {
            b.record_latency(Duration::from_millis(20));
        }
        node.rt.selected_at.set(Some(Instant::now() - LATENCY_HOLD));
        assert!(Rc::ptr_eq(&node.select(true).0, a), "20 vs 80 ms: under the margin, stay");
        assert!(node.select(true).1.is_none());
        for _ in 0..40 {
            a.record_latency(Duration::from_millis(400));
        }
        node.rt.selected_at.set(Some(Instant::now()));
        assert!(node.select(true).1.is_none(), "a large gap, but the node switched too recently");
        node.rt.selected_at.set(Some(Instant::now() - LATENCY_HOLD));
        let (chosen, switched) = node.select(true);
        assert!(Rc::ptr_eq(&chosen, b));
        assert!(switched.unwrap().reason.starts_with("latency"));
        assert!(node.select(false).1.is_none());
    }

    #[test]
    fn rebuild_keeps_matching_nodes_and_reports_changes() {
        let stale = Duration::from_secs(30);
        let old = Fleet::new(
            &[entry("a", &["http://127.0.0.1:1"], &[1, 2]), entry("b", &["http://127.0.0.1:2"], &[3]), entry("c", &["http://127.0.0.1:3"], &[4])],
            stale,
        );
        healthy(&old.nodes[0].urls[0], 5);
        let (a_id, b_id, c_id) = (old.nodes[0].id(), old.nodes[1].id(), old.nodes[2].id());
        let (new, changes) = old.rebuild(&[
            entry("a", &["http://127.0.0.1:1"], &[1, 2]),
            // b gains a URL and a key; c is gone; d is new.
            entry("b", &["http://127.0.0.1:2", "http://127.0.0.1:9"], &[3, 5]),
            entry("d", &["http://127.0.0.1:4"], &[4]),
        ]);
        assert_eq!(new.node(a_id).unwrap().gate().unwrap().height, 5, "a keeps its health");
        assert!(Rc::ptr_eq(&new.nodes[0].rt, &old.nodes[0].rt));
        assert!(Rc::ptr_eq(&new.nodes[1].urls[0], &old.nodes[1].urls[0]), "b keeps its known URL state");
        assert_eq!(new.nodes[1].id(), b_id);
        assert!(new.node(c_id).is_none());
        assert_eq!(changes.unchanged, 1);
        assert_eq!(changes.changed, ["b"]);
        assert_eq!(changes.added.len(), 1);
        assert_eq!(changes.added[0].name, "d");
        assert_eq!(changes.removed.len(), 1);
        assert_eq!(changes.removed[0].id(), c_id);
        assert_eq!((changes.addresses_added, changes.addresses_removed), (1, 0), "key 4 moved from c to d");
        assert_eq!(new.servicer_count(), 5);
        assert_eq!(new.servicer(&key(4).public_bytes()).unwrap().node.name, "d");
        assert!(new.owns_address(&crate::protocol::address_of(&key(5).public_bytes())));

        let (same, none) = new.rebuild(&[
            entry("a", &["http://127.0.0.1:1"], &[1, 2]),
            entry("b", &["http://127.0.0.1:2", "http://127.0.0.1:9"], &[3, 5]),
            entry("d", &["http://127.0.0.1:4"], &[4]),
        ]);
        assert!(none.is_empty() && none.unchanged == 3);
        assert_eq!(same.nodes.iter().map(|n| n.id()).collect::<Vec<_>>(), new.nodes.iter().map(|n| n.id()).collect::<Vec<_>>());
    }

    #[test]
    fn five_hundred_addresses_index_quickly() {
        let entries: Vec<NodeEntry> =
            (0..20u16).map(|n| entry(&format!("n{n}"), &[&format!("http://127.0.0.1:{}", 1000 + n)], &(n * 25..n * 25 + 25).collect::<Vec<_>>())).collect();
        let started = Instant::now();
        let fleet = Fleet::new(&entries, Duration::from_secs(30));
        let elapsed = started.elapsed();
        assert_eq!((fleet.nodes.len(), fleet.servicer_count()), (20, 500));
        assert_eq!(fleet.servicer(&key(260).public_bytes()).unwrap().node.name, "n10");
        assert!(elapsed < Duration::from_secs(2), "indexing 500 servicers took {elapsed:?}");
    }
}
