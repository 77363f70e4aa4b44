//! Servicer node health: the last `POST /v1/private/mesh/check` answer per node URL, the gate
//! every relay passes (unknown, stale, starting or catching-up nodes refuse service), the
//! periodic check loop and the startup connectivity probes. Unlike the incumbent, a status
//! older than `stale_after` counts as unhealthy, and a failed probe never stops meshd.
//!
//! A node is as healthy as its best URL (`fleet::Node::gate`). The check loop checks every URL
//! of a node each `node_check_interval`, which is also how a benched URL is probed back.
//!
//! Outage grace: each URL also remembers its last *healthy* status (fresh, not starting, not
//! catching up). While the gate is closed — the servicer restarts, is unreachable, or is
//! starting again — relays of sessions already cached are still served under that status until
//! it is `servicer_outage_grace` old ([`UrlHealth::grace_status`], `relay::service`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::protocol::PocketError;
use crate::servicer::api::{snippet, CheckAnswer};

/// Blocks per session assumed until the first check answers (the incumbent's default).
pub const DEFAULT_BLOCKS_PER_SESSION: i64 = 4;
/// Startup probes of a URL are retried this many times (backoff 1 s doubling to 60 s, about
/// 17 minutes in all); after that only the check loop keeps watching the URL.
pub const PROBE_ATTEMPTS: u32 = 20;
/// The servicer routes a probe must reach.
pub const PROBED_ENDPOINTS: [&str; 3] = ["relay", "session", "check"];

/// How long a check answer is trusted: three intervals (at least 30 s), so one lost check does
/// not stop service but a dead servicer soon does.
pub fn stale_after(check_interval: Duration) -> Duration {
    (check_interval * 3).max(Duration::from_secs(30))
}

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub height: i64,
    pub blocks_per_session: i64,
    pub client_session_sync_allowance: i64,
    pub is_starting: bool,
    pub is_catching_up: bool,
    pub version: String,
    pub checked_at: Instant,
}

/// Check results of one URL.
#[derive(Debug, Default, Clone)]
pub struct UrlHealth {
    status: Option<NodeStatus>,
    /// The last status that passed the gate's own tests (not starting, not catching up).
    last_healthy: Option<NodeStatus>,
    last_error: Option<String>,
    consecutive_failures: u32,
    /// From the last successful check: addresses the servicer does not host, chains it lacks.
    pub wrong_servicers: Vec<String>,
    pub wrong_chains: Vec<String>,
}

impl UrlHealth {
    /// Record a successful check. Returns true when the wrong_* lists changed and are not empty
    /// (worth a warning).
    pub fn record_ok(&mut self, answer: &CheckAnswer) -> bool {
        let status = answer.status.clone().unwrap_or_default();
        self.status = Some(NodeStatus {
            height: status.height,
            blocks_per_session: if answer.blocks_per_session > 0 { answer.blocks_per_session } else { DEFAULT_BLOCKS_PER_SESSION },
            client_session_sync_allowance: answer.client_session_sync_allowance,
            is_starting: status.is_starting,
            is_catching_up: status.is_catching_up,
            version: status.version,
            checked_at: Instant::now(),
        });
        if let Some(status) = self.status.as_ref().filter(|s| !s.is_starting && !s.is_catching_up) {
            self.last_healthy = Some(status.clone());
        }
        self.last_error = None;
        self.consecutive_failures = 0;
        let servicers = answer.wrong_servicers.clone().unwrap_or_default();
        let chains = answer.wrong_chains.clone().unwrap_or_default();
        let changed = servicers != self.wrong_servicers || chains != self.wrong_chains;
        self.wrong_servicers = servicers;
        self.wrong_chains = chains;
        changed && !(self.wrong_servicers.is_empty() && self.wrong_chains.is_empty())
    }

    /// Returns true when this is the first failure after a success (worth a warning).
    pub fn record_error(&mut self, error: String) -> bool {
        // Shown on the status page and stored in identity states: scrubbed like any upstream text.
        self.last_error = Some(crate::ops::redact::scrub(&error));
        self.consecutive_failures += 1;
        self.consecutive_failures == 1
    }

    /// Whether any check has completed, successfully or not.
    pub fn has_answered(&self) -> bool {
        self.status.is_some() || self.last_error.is_some()
    }

    /// When the last successful check answered.
    pub fn last_ok(&self) -> Option<Instant> {
        self.status.as_ref().map(|s| s.checked_at)
    }

    pub fn status(&self) -> Option<&NodeStatus> {
        self.status.as_ref()
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The status a relay may be served under, or the reason it may not.
    pub fn gate(&self, stale_after: Duration) -> Result<NodeStatus, PocketError> {
        let Some(status) = &self.status else {
            let why = self.last_error.as_deref().unwrap_or("no check has answered yet");
            return Err(PocketError::sdk(1, format!("pocket node is currently unavailable: {why}")));
        };
        let age = status.checked_at.elapsed();
        if age > stale_after {
            let why = self.last_error.as_deref().unwrap_or("no answer");
            return Err(PocketError::sdk(1, format!("pocket node is currently unavailable: last successful check {}s ago ({why})", age.as_secs())));
        }
        if status.is_starting {
            return Err(PocketError::sdk(1, crate::protocol::errors::NODE_STARTING));
        }
        if status.is_catching_up {
            return Err(PocketError::sdk(1, crate::protocol::errors::NODE_SYNCING));
        }
        Ok(status.clone())
    }

    /// The last healthy status if it is at most `grace` old: what relays of already cached
    /// sessions are served under while the gate is closed (an outage or a restart of the
    /// servicer). None once the grace is over, or if this URL was never healthy.
    pub fn grace_status(&self, grace: Duration) -> Option<NodeStatus> {
        self.last_healthy.as_ref().filter(|s| s.checked_at.elapsed() <= grace).cloned()
    }
}

/// Check every URL of node `id` each `node_check_interval` until the node leaves the fleet.
pub async fn check_loop(app: Rc<App>, id: u64) {
    let interval = app.check_interval();
    loop {
        let Some(node) = app.fleet().node(id).cloned() else {
            log::debug!("event=node_check_stopped id={id} (node removed by a reload)");
            return;
        };
        let was_healthy = node.is_healthy();
        let chains = app.chains().ids.clone();
        // All URLs at once: one slow URL must not delay the others' status.
        let checks: Vec<_> = node
            .urls
            .iter()
            .map(|u| {
                let endpoint = app.endpoint_to(&u.url);
                let (servicers, chains) = (&node.addresses, &chains);
                async move {
                    let started = Instant::now();
                    let result = endpoint.check(servicers, chains).await;
                    (result, started.elapsed())
                }
            })
            .collect();
        for (url, (result, elapsed)) in node.urls.iter().zip(crate::http::join_all(checks).await) {
            match result {
                Ok(answer) => {
                    let mismatch = url.health.borrow_mut().record_ok(&answer);
                    if mismatch {
                        let h = url.health.borrow();
                        log::warn!(
                            "event=node_check_mismatch node={} url={} wrong_servicers={:?} wrong_chains={:?}",
                            node.name,
                            app.shown_url(&url.url),
                            h.wrong_servicers,
                            h.wrong_chains
                        );
                    }
                    url.record_latency(elapsed);
                    // The URL answers again: once its bench is over, its failure streak is too
                    // (a later failure starts again at the shortest bench).
                    if url.bench.benched_until(Instant::now()).is_none() {
                        url.bench.succeed();
                    }
                }
                Err(e) => {
                    let first = url.health.borrow_mut().record_error(e.clone());
                    if first {
                        log::warn!("event=node_check_failed node={} url={} error={e:?}", node.name, app.shown_url(&url.url));
                    }
                    app.url_failed(&node, &url.url, &e);
                }
            }
        }
        let gate = node.gate();
        match (was_healthy, &gate) {
            (false, Ok(status)) => log::info!(
                "event=node_healthy {}",
                crate::logline::fields(&[("node", &node.name), ("height", &status.height.to_string()), ("version", &status.version)])
            ),
            (true, Err(e)) => log::warn!("event=node_unhealthy node={} reason={:?}", node.name, e.message),
            _ => {}
        }
        // Identity states: one transition record per change, per servicer address.
        for address in node.address_bytes.iter() {
            match &gate {
                Ok(status) => app.states.health(*address, &node.name, true, status.height, ""),
                Err(e) => app.states.health(*address, &node.name, false, 0, &e.message),
            };
        }
        // Fail over now rather than on the next call when the current URL went bad, and move
        // to a much faster URL when there is one.
        app.select_url(&node, true);
        drop(node);
        async_io::Timer::after(interval).await;
    }
}

/// Startup connectivity probes of node `id` (geo-mesh §2.0): `POST {url}/v1/private/mesh/
/// {relay,session,check}?verify=true` with an empty body. Results are logged; failing URLs are
/// retried with backoff. Nothing waits on them: serving depends on the check loop only.
pub async fn probe_node(app: Rc<App>, id: u64) {
    let mut passed: Vec<String> = Vec::new();
    for attempt in 0..PROBE_ATTEMPTS {
        let Some(node) = app.fleet().node(id).cloned() else { return };
        let pending: Vec<String> = node.urls.iter().map(|u| u.url.clone()).filter(|u| !passed.contains(u)).collect();
        if pending.is_empty() {
            return;
        }
        let probes: Vec<_> = pending.iter().map(|url| probe_url(&app.servicer_client, url, &app.servicer_token)).collect();
        let outcomes = crate::http::join_all(probes).await;
        let retry_in = crate::servicer::notifier::backoff(attempt, 1000, 60_000);
        for (url, outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    log::info!("event=probe_ok node={} url={}", node.name, app.shown_url(&url));
                    passed.push(url);
                }
                Err(failures) if attempt + 1 < PROBE_ATTEMPTS => log::warn!(
                    "event=probe_failed node={} url={} attempt={} retry_in_ms={} failures={:?}",
                    node.name,
                    app.shown_url(&url),
                    attempt + 1,
                    retry_in.as_millis(),
                    failures
                ),
                Err(failures) => log::warn!(
                    "event=probe_gave_up node={} url={} attempts={PROBE_ATTEMPTS} failures={:?} (the check loop keeps watching it)",
                    node.name,
                    app.shown_url(&url),
                    failures
                ),
            }
        }
        drop(node);
        if attempt + 1 < PROBE_ATTEMPTS {
            async_io::Timer::after(retry_in).await;
        }
    }
}

/// Probe the three servicer routes of one URL; `Err` lists what failed.
pub async fn probe_url(client: &crate::http::client::Client, url: &str, token: &str) -> Result<(), Vec<String>> {
    let mut failures = Vec::new();
    for endpoint in PROBED_ENDPOINTS {
        let target = format!("{url}/v1/private/mesh/{endpoint}?verify=true");
        match client.post_json(&target, &[("Authorization", token)], b"").await {
            Ok(answer) if answer.status == 200 => {}
            Ok(answer) => failures.push(format!("{endpoint}: HTTP {}: {}", answer.status, snippet(&answer.body))),
            Err(e) => failures.push(format!("{endpoint}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicer::api::NodeStatusJson;

    fn answer(catching_up: bool, starting: bool) -> CheckAnswer {
        CheckAnswer {
            success: true,
            status: Some(NodeStatusJson { version: "RC".into(), is_starting: starting, is_catching_up: catching_up, height: 101 }),
            blocks_per_session: 4,
            client_session_sync_allowance: 1,
            ..Default::default()
        }
    }

    #[test]
    fn gate_refuses_unknown_starting_and_catching_up_nodes() {
        let mut h = UrlHealth::default();
        let stale = Duration::from_secs(30);
        assert!(h.gate(stale).unwrap_err().message.contains("no check has answered"));
        h.record_error("connection refused".into());
        assert!(h.gate(stale).unwrap_err().message.contains("connection refused"));
        h.record_ok(&answer(true, false));
        assert!(h.gate(stale).unwrap_err().message.contains("syncing"));
        h.record_ok(&answer(false, true));
        assert!(h.gate(stale).unwrap_err().message.contains("tendermint"));
        h.record_ok(&answer(false, false));
        assert_eq!(h.gate(stale).unwrap().height, 101);
    }

    #[test]
    fn a_stale_status_is_unhealthy() {
        let mut h = UrlHealth::default();
        h.record_ok(&answer(false, false));
        assert!(h.gate(Duration::from_millis(20)).is_ok());
        std::thread::sleep(Duration::from_millis(40));
        let e = h.gate(Duration::from_millis(20)).unwrap_err();
        assert!(e.message.contains("last successful check"), "{}", e.message);
        assert_eq!(stale_after(Duration::from_secs(1)), Duration::from_secs(30));
        assert_eq!(stale_after(Duration::from_secs(60)), Duration::from_secs(180));
    }

    #[test]
    fn the_last_healthy_status_is_kept_for_the_outage_grace() {
        let mut h = UrlHealth::default();
        let grace = Duration::from_millis(150);
        assert!(h.grace_status(grace).is_none(), "never healthy: no grace");
        h.record_ok(&answer(true, false));
        assert!(h.grace_status(grace).is_none(), "a syncing node was never healthy");
        h.record_ok(&answer(false, false));
        // The servicer restarts: unreachable, then starting; the gate closes at once.
        h.record_error("connection refused".into());
        h.record_ok(&answer(false, true));
        assert!(h.gate(Duration::from_secs(30)).is_err());
        assert_eq!(h.grace_status(grace).expect("within the grace").height, 101);
        assert!(h.grace_status(Duration::ZERO).is_none(), "a zero grace disables it");
        std::thread::sleep(Duration::from_millis(200));
        assert!(h.grace_status(grace).is_none(), "the grace is over");
    }

    #[test]
    fn wrong_lists_warn_once_per_change() {
        let mut h = UrlHealth::default();
        let mut a = answer(false, false);
        assert!(!h.record_ok(&a), "empty lists: nothing to warn about");
        a.wrong_chains = Some(vec!["0001".into()]);
        assert!(h.record_ok(&a));
        assert!(!h.record_ok(&a), "same lists: already warned");
        assert_eq!(h.wrong_chains, ["0001"]);
        a.wrong_chains = None;
        assert!(!h.record_ok(&a));
        assert!(h.wrong_chains.is_empty());
    }

    #[test]
    fn probes_hit_the_three_routes_with_the_token() {
        use crate::sim::{start_servicer, ServicerSimConfig};
        let sim = start_servicer(ServicerSimConfig { auth_token: "tok".into(), ..Default::default() }).unwrap();
        let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
        let client = crate::http::client::Client::new(ex, crate::http::client::ClientSettings::new(std::time::Duration::from_secs(2)));
        let probe = |url: &str, token: &str| smol::block_on(ex.run(probe_url(&client, url, token)));
        assert_eq!(probe(&sim.url(), "tok"), Ok(()));
        assert_eq!(sim.stats().verify_calls, 3);
        let failures = probe(&sim.url(), "wrong").unwrap_err();
        assert_eq!(failures.len(), 3);
        assert!(failures[0].starts_with("relay: HTTP 401"), "{failures:?}");
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(probe(&format!("http://{dead}"), "tok").unwrap_err().len(), 3);
    }
}
