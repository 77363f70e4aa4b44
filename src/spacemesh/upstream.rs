//! Upstream pools and failover. A pool is a list of node URLs with a health state each, kept
//! fresh by a probe task per node and by the outcome of every forwarded request (passive
//! checks react faster than probes). Two policies:
//! - `Sticky` (node-service API): keep using one node until it fails, then move on — the
//!   docs' advice for smeshing services, whose per-epoch caches and hare rounds are better
//!   served by one consistent view (spacemesh-node-split.md §4, issue #6683).
//! - `RoundRobin` (v2 JSON API): stateless reads, "balancing v2 api is 100% safe" (§4).
//!
//! [`forward`] tries candidates in preference order within one deadline and only moves to the
//! next node on answers that say "not this node" (no connection, 502/503/504); every other
//! status is the node's real answer and is passed through.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::client::{self, Client};

use crate::queue::record::now_ms;

/// The body prefix of go-spacemesh's readiness middleware (§1.1: `service not ready: not in
/// sync with the network`).
pub const NOT_READY_PREFIX: &[u8] = b"service not ready";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not probed yet.
    Unknown,
    /// Answers (for node services: passed the readiness check, i.e. synced).
    Ready,
    /// Answered 503 `service not ready…`: up but syncing.
    NotSynced,
    /// No connection, a timeout, or a proxy's 502/503/504 in front of it.
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ready => "ready",
            Health::NotSynced => "not_synced",
            Health::Down => "down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Sticky,
    RoundRobin,
}

/// Counters of one upstream (exported by the stats endpoint; the metrics exporter can read them).
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    /// Attempts sent to this node (client requests, retries on it, queued deliveries).
    pub requests: Cell<u64>,
    /// Attempts that failed over to the next node (no connection, timeout, 502/503/504).
    pub failures: Cell<u64>,
    /// Times the pool's traffic moved away from this node while it was the sticky one.
    pub failovers: Cell<u64>,
    /// Queued publishes this node accepted.
    pub publishes_delivered: Cell<u64>,
    /// Health probes sent.
    pub probes: Cell<u64>,
}

pub struct Upstream {
    /// Base URL without a trailing `/` and without `user:password@` (safe to log and show).
    pub url: String,
    /// `Basic …` from the configured URL's `user:password@`, sent on every request.
    pub authorization: Option<String>,
    pub health: Cell<Health>,
    pub since_ms: Cell<u64>,
    pub last_error: RefCell<String>,
    pub counters: UpstreamCounters,
}

pub struct Pool {
    /// "node" or "v2" (logs).
    pub kind: &'static str,
    pub upstreams: Vec<Upstream>,
    pub policy: Policy,
    sticky: Cell<Option<usize>>,
    next: Cell<usize>,
    /// Notified when a node becomes ready (the publish delivery loop waits on it).
    pub became_ready: event_listener::Event,
}

/// What one attempt against one node returned.
#[derive(Debug, Clone)]
pub struct UpstreamAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl UpstreamAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A request to replay against upstreams (shared by the attempts, which run on the blocking pool).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: String,
    /// Path and query exactly as the client sent them.
    pub path_and_query: String,
    /// End-to-end headers to pass on (hop-by-hop ones and `Host` already removed).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub enum Forwarded {
    /// A node's real answer.
    Answer { node: usize, answer: UpstreamAnswer },
    /// Every candidate failed; the last HTTP answer seen (a 503 not-ready, a 502…) if any.
    Exhausted { last: Option<UpstreamAnswer>, errors: Vec<String> },
}

/// How an attempt's result counts for failover.
enum Verdict {
    Good,
    NotSynced,
    Down(String),
}

fn verdict(result: &Result<UpstreamAnswer, String>) -> Verdict {
    match result {
        Err(e) => Verdict::Down(e.clone()),
        Ok(a) if a.status == 503 && a.body.starts_with(NOT_READY_PREFIX) => Verdict::NotSynced,
        Ok(a) if matches!(a.status, 502..=504) => Verdict::Down(format!("answered {}", a.status)),
        Ok(_) => Verdict::Good,
    }
}

impl Pool {
    pub fn new(kind: &'static str, urls: &[String], policy: Policy) -> Pool {
        let now = now_ms();
        Pool {
            kind,
            upstreams: urls
                .iter()
                .map(|u| {
                    let (url, authorization) = split_userinfo(u);
                    Upstream {
                        url,
                        authorization,
                        health: Cell::new(Health::Unknown),
                        since_ms: Cell::new(now),
                        last_error: RefCell::new(String::new()),
                        counters: UpstreamCounters::default(),
                    }
                })
                .collect(),
            policy,
            sticky: Cell::new(None),
            next: Cell::new(0),
            became_ready: event_listener::Event::new(),
        }
    }

    pub fn sticky(&self) -> Option<usize> {
        self.sticky.get()
    }

    pub fn any_ready(&self) -> bool {
        self.upstreams.iter().any(|u| u.health.get() == Health::Ready)
    }

    /// Attempt order for one request: the sticky node while it is ready (Sticky), or the next
    /// in rotation (RoundRobin); then the other ready nodes, then unprobed ones, and last the
    /// nodes believed down or syncing (a probe result may be seconds old).
    pub fn candidates(&self) -> Vec<usize> {
        let n = self.upstreams.len();
        if n == 0 {
            return Vec::new();
        }
        let start = match self.policy {
            Policy::Sticky => match self.sticky.get() {
                Some(s) if self.upstreams[s].health.get() == Health::Ready => s,
                Some(s) => (s + 1) % n,
                None => self.next.get() % n,
            },
            Policy::RoundRobin => {
                let s = self.next.get() % n;
                self.next.set(s + 1);
                s
            }
        };
        let rotation: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        let rank = |h: Health| match h {
            Health::Ready => 0,
            Health::Unknown => 1,
            Health::Down => 2,
            Health::NotSynced => 3,
        };
        let mut order = rotation;
        // Stable sort keeps the rotation order within each rank.
        order.sort_by_key(|&i| rank(self.upstreams[i].health.get()));
        order
    }

    /// Only the nodes that are ready now (inline publish delivery must not wait on dead ones).
    pub fn ready_candidates(&self) -> Vec<usize> {
        self.candidates().into_iter().filter(|&i| self.upstreams[i].health.get() == Health::Ready).collect()
    }

    fn set_health(&self, i: usize, h: Health, error: Option<String>) {
        let u = &self.upstreams[i];
        let before = u.health.get();
        if let Some(e) = error {
            *u.last_error.borrow_mut() = e;
        }
        if before == h {
            return;
        }
        u.health.set(h);
        u.since_ms.set(now_ms());
        match h {
            Health::Ready => {
                log::info!("event=spacemesh_upstream_ready pool={} url={} was={}", self.kind, u.url, before.as_str());
                self.became_ready.notify(usize::MAX);
            }
            _ => log::warn!(
                "event=spacemesh_upstream_unhealthy {}",
                crate::logline::fields(&[("pool", self.kind), ("url", &u.url), ("state", h.as_str()), ("error", &u.last_error.borrow()),])
            ),
        }
        if self.policy == Policy::Sticky && h != Health::Ready && self.sticky.get() == Some(i) {
            // The next request moves on; count the failover against the node we leave.
            u.counters.failovers.set(u.counters.failovers.get() + 1);
            self.sticky.set(None);
            self.next.set(i + 1);
        }
    }

    /// A request was answered by node `i`: it becomes the sticky node.
    fn served_by(&self, i: usize) {
        if self.policy == Policy::Sticky && self.sticky.get() != Some(i) {
            if let Some(old) = self.sticky.get() {
                // Moved off a node that still looked ready (it failed this very request).
                let c = &self.upstreams[old].counters;
                c.failovers.set(c.failovers.get() + 1);
            }
            log::info!("event=spacemesh_sticky_node url={}", self.upstreams[i].url);
            self.sticky.set(Some(i));
        }
    }

    /// Record a probe result.
    pub fn record_probe(&self, i: usize, result: &Result<UpstreamAnswer, String>) {
        self.upstreams[i].counters.probes.set(self.upstreams[i].counters.probes.get() + 1);
        match verdict(result) {
            Verdict::Good => self.set_health(i, Health::Ready, None),
            Verdict::NotSynced => self.set_health(i, Health::NotSynced, Some("service not ready (syncing)".into())),
            Verdict::Down(e) => self.set_health(i, Health::Down, Some(e)),
        }
    }
}

/// `http://user:pass@host/x` → (`http://host/x`, `Some("Basic dXNlcjpwYXNz")`), so that
/// credentials travel as a header and never appear in logs, errors or the stats page.
pub fn split_userinfo(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://") else { return (url.to_string(), None) };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let clean = format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]);
            (clean, Some(format!("Basic {}", crate::base64::encode(userinfo.as_bytes()))))
        }
        None => (url.to_string(), None),
    }
}

/// Where and how to reach one upstream.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub authorization: Option<String>,
}

impl Upstream {
    pub fn target(&self) -> Target {
        Target { url: self.url.clone(), authorization: self.authorization.clone() }
    }
}

/// One HTTP exchange with one upstream, within `timeout`.
pub async fn send(client: &Client, target: &Target, out: &Outgoing, timeout: Duration) -> Result<UpstreamAnswer, String> {
    let url = format!("{}{}", target.url, out.path_and_query);
    let mut request = client::Outgoing::new(&out.method, &url).timeout(timeout).body(out.body.clone());
    for (k, v) in &out.headers {
        if target.authorization.is_some() && k.eq_ignore_ascii_case("authorization") {
            continue;
        }
        request = request.header(k, v);
    }
    if let Some(auth) = &target.authorization {
        request = request.header("Authorization", auth);
    }
    let answer = client.send(request).await.map_err(|e| format!("{} {url}: {e}", out.method))?;
    Ok(UpstreamAnswer { status: answer.status, headers: answer.headers, body: answer.body })
}

/// Which nodes a forwarding round may try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// Every node, best first (see [`Pool::candidates`]).
    All,
    /// Only nodes ready now (an inline publish attempt must not wait on dead ones).
    ReadyOnly,
}

/// Pause between rounds: long enough for a flapping node to settle, short against any timeout.
pub const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Try the selected nodes in order until one gives a real answer, in up to `rounds` rounds
/// (the order is recomputed each round from the health just learned) and within `deadline`.
/// Each attempt gets half of the time left (all of it for the last candidate of the last
/// round), so one hung node cannot eat the budget of a request another node could serve.
pub async fn forward(pool: &Pool, client: &Client, out: Arc<Outgoing>, select: Select, rounds: usize, deadline: Instant) -> Forwarded {
    let mut last = None;
    let mut errors = Vec::new();
    // A request the HTTP stack cannot even express (bad URI or header) is the client's fault:
    // answer 400 here rather than blaming, and marking down, every node in turn.
    if let Err(e) = check_request(&out) {
        return Forwarded::Exhausted { last: Some(super::http::text(400, &format!("meshd: invalid request: {e}"))), errors: vec![e] };
    }
    for round in 0..rounds.max(1) {
        if round > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= ROUND_PAUSE * 2 {
                break;
            }
            async_io::Timer::after(ROUND_PAUSE).await;
        }
        let candidates = match select {
            Select::All => pool.candidates(),
            Select::ReadyOnly => pool.ready_candidates(),
        };
        let count = candidates.len();
        for (k, i) in candidates.into_iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(20) {
                errors.push("request timeout reached".to_string());
                return Forwarded::Exhausted { last, errors };
            }
            let final_attempt = k + 1 == count && round + 1 == rounds.max(1);
            let budget = if final_attempt { left } else { (left / 2).max(left.min(Duration::from_secs(1))) };
            let u = &pool.upstreams[i];
            u.counters.requests.set(u.counters.requests.get() + 1);
            let result = send(client, &u.target(), &out, budget).await;
            match verdict(&result) {
                Verdict::Good => {
                    pool.set_health(i, Health::Ready, None);
                    pool.served_by(i);
                    return Forwarded::Answer { node: i, answer: result.expect("a good verdict is an answer") };
                }
                Verdict::NotSynced => {
                    u.counters.failures.set(u.counters.failures.get() + 1);
                    push_new(&mut errors, format!("{}: not synced", u.url));
                    pool.set_health(i, Health::NotSynced, Some("service not ready (syncing)".into()));
                }
                Verdict::Down(e) => {
                    u.counters.failures.set(u.counters.failures.get() + 1);
                    push_new(&mut errors, e.clone());
                    pool.set_health(i, Health::Down, Some(e));
                }
            }
            if let Ok(answer) = result {
                last = Some(answer);
            }
        }
    }
    Forwarded::Exhausted { last, errors }
}

/// Whether `out` can be sent at all (method, path and headers valid HTTP).
fn check_request(out: &Outgoing) -> Result<(), String> {
    let mut builder = hyper::Request::builder().method(out.method.as_str()).uri(format!("http://127.0.0.1{}", out.path_and_query));
    for (k, v) in &out.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder.body(()).map(|_| ()).map_err(|e| e.to_string())
}

/// Keep each distinct error once (later rounds usually repeat the first round's).
fn push_new(errors: &mut Vec<String>, e: String) {
    if !errors.contains(&e) {
        errors.push(e);
    }
}

/// Probe one node forever: `GET {url}{path}` every `interval`.
pub async fn probe_loop(pool: Rc<Pool>, client: Client, i: usize, path: String, interval: Duration, timeout: Duration) {
    let probe = Outgoing { method: "GET".into(), path_and_query: path, headers: Vec::new(), body: Vec::new() };
    loop {
        let result = send(&client, &pool.upstreams[i].target(), &probe, timeout).await;
        pool.record_probe(i, &result);
        async_io::Timer::after(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(policy: Policy) -> Pool {
        Pool::new("test", &["http://a".into(), "http://b".into(), "http://c".into()], policy)
    }

    fn answer(status: u16, body: &str) -> Result<UpstreamAnswer, String> {
        Ok(UpstreamAnswer { status, headers: vec![], body: body.as_bytes().to_vec() })
    }

    #[test]
    fn sticky_pool_prefers_ready_then_unknown_then_down_then_syncing() {
        let p = pool(Policy::Sticky);
        assert_eq!(p.candidates(), vec![0, 1, 2], "all unknown: config order");
        p.record_probe(0, &answer(503, "service not ready: not in sync with the network"));
        p.record_probe(1, &Err("connection refused".into()));
        p.record_probe(2, &answer(204, ""));
        assert_eq!(p.upstreams[0].health.get(), Health::NotSynced);
        assert_eq!(p.upstreams[1].health.get(), Health::Down);
        assert_eq!(p.candidates(), vec![2, 1, 0]);
        assert_eq!(p.ready_candidates(), vec![2]);
    }

    #[test]
    fn sticky_stays_until_it_fails_and_counts_the_failover() {
        let p = pool(Policy::Sticky);
        for i in 0..3 {
            p.record_probe(i, &answer(200, "{}"));
        }
        p.served_by(1);
        assert_eq!(p.candidates()[0], 1, "sticky node first although 0 is ready too");
        p.record_probe(0, &answer(500, "handler error"));
        assert_eq!(p.candidates()[0], 1, "a 500 is a real answer, not a reason to move");
        p.record_probe(1, &answer(503, "service not ready: not in sync with the network"));
        assert_eq!(p.upstreams[1].counters.failovers.get(), 1);
        assert_eq!(p.sticky(), None);
        assert_eq!(p.candidates(), vec![2, 0, 1], "rotation continues after the failed node");
        p.served_by(2);
        p.record_probe(1, &answer(200, "{}"));
        assert_eq!(p.candidates()[0], 2, "the recovered node does not take traffic back");
    }

    #[test]
    fn a_503_from_a_proxy_is_down_not_syncing() {
        let p = pool(Policy::Sticky);
        p.record_probe(0, &answer(503, "<html>Service Unavailable</html>"));
        p.record_probe(1, &answer(502, "bad gateway"));
        assert_eq!((p.upstreams[0].health.get(), p.upstreams[1].health.get()), (Health::Down, Health::Down));
    }

    #[test]
    fn credentials_become_a_header() {
        assert_eq!(split_userinfo("https://u:p@node.example:443/base"), ("https://node.example:443/base".into(), Some("Basic dTpw".into())));
        assert_eq!(split_userinfo("http://127.0.0.1:9099"), ("http://127.0.0.1:9099".into(), None));
        assert_eq!(split_userinfo("http://h/p@x"), ("http://h/p@x".into(), None), "an @ in the path is not userinfo");
        let p = Pool::new("t", &["http://u:secret@a:1".into()], Policy::Sticky);
        assert_eq!(p.upstreams[0].url, "http://a:1");
    }

    #[test]
    fn round_robin_rotates_over_ready_nodes() {
        let p = pool(Policy::RoundRobin);
        for i in 0..3 {
            p.record_probe(i, &answer(200, "{}"));
        }
        p.record_probe(1, &Err("refused".into()));
        let firsts: Vec<usize> = (0..4).map(|_| p.candidates()[0]).collect();
        assert_eq!(firsts, vec![0, 2, 2, 0], "down node 1 is never first");
    }
}
