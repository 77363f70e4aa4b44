//! The node's one overall state for the status page and its JSON: `ok`, `degraded` or `down`,
//! with the reasons. The rules (the page's help text and the README say the same):
//!
//! - **down**: no servicer node is healthy (relays are refused), or the relay listener is not
//!   serving (paused at its connection cap or out of descriptors, or shutting down);
//! - **degraded**: any servicer node unhealthy; notifies failing (a node not taking them, or
//!   relays in the slow lane after their retries); dead letters waiting; the queue near full
//!   (at least [`QUEUE_NEAR_FULL_PERCENT`] % of the space where new relays are refused); a chain
//!   endpoint benched after failures; the queue unreadable;
//! - **ok** otherwise.
//!
//! Every condition that holds is listed as a reason, the worst first.

use serde::Serialize;

/// Queue use, in percent of the admission limit, from which the node is degraded.
pub const QUEUE_NEAR_FULL_PERCENT: u64 = 80;

/// What the overall state is computed from (a snapshot taken by the status route).
#[derive(Debug, Default, Clone)]
pub struct Signals {
    /// Configured servicer nodes, and the unhealthy ones as (name, reason).
    pub nodes: usize,
    pub unhealthy: Vec<(String, String)>,
    /// Why the relay listener is not serving, if it is not.
    pub listener_problem: Option<String>,
    /// Nodes whose notifies fail (node down for notifies), as (name, consecutive failures).
    pub notify_failing: Vec<(String, u32)>,
    /// Servicer addresses whose relays are in the slow lane.
    pub notify_backlog: usize,
    pub dead_letters: u64,
    pub queue_used_bytes: u64,
    pub queue_admission_limit_bytes: u64,
    pub queue_error: Option<String>,
    /// Benched chain endpoints, as (chain id, `urls[i]`).
    pub chain_endpoints_benched: Vec<(String, String)>,
    /// Chains with no usable endpoint left.
    pub chains_down: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Degraded,
    Down,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overall {
    pub state: State,
    pub reasons: Vec<String>,
}

/// Apply the rules of the module documentation.
pub fn overall(s: &Signals) -> Overall {
    let mut down = Vec::new();
    let mut degraded = Vec::new();
    if s.nodes > 0 && s.unhealthy.len() >= s.nodes {
        down.push(format!("no servicer node is healthy ({} of {} down): relays are refused", s.unhealthy.len(), s.nodes));
    }
    if let Some(why) = &s.listener_problem {
        down.push(format!("the relay listener is not serving: {why}"));
    }
    for (name, reason) in &s.unhealthy {
        degraded.push(format!("servicer node {name} unhealthy: {reason}"));
    }
    for (name, failures) in &s.notify_failing {
        degraded.push(format!("notifies to servicer node {name} failing ({failures} in a row; relays wait in the queue)"));
    }
    if s.notify_backlog > 0 {
        degraded.push(format!("{} servicer address(es) with relays in the notify slow lane", s.notify_backlog));
    }
    if s.dead_letters > 0 {
        degraded.push(format!("{} dead letter(s) waiting (see below for the replay command)", s.dead_letters));
    }
    if let Some(e) = &s.queue_error {
        degraded.push(format!("queue statistics unavailable: {e}"));
    }
    if s.queue_admission_limit_bytes > 0 && s.queue_used_bytes.saturating_mul(100) >= s.queue_admission_limit_bytes.saturating_mul(QUEUE_NEAR_FULL_PERCENT) {
        degraded.push(format!(
            "queue near full: {} % of the space where new relays are refused",
            s.queue_used_bytes.saturating_mul(100) / s.queue_admission_limit_bytes
        ));
    }
    for chain in &s.chains_down {
        degraded.push(format!("chain {chain}: every endpoint benched"));
    }
    for (chain, endpoint) in &s.chain_endpoints_benched {
        degraded.push(format!("chain {chain}: endpoint {endpoint} benched after failures"));
    }
    let state = if !down.is_empty() {
        State::Down
    } else if !degraded.is_empty() {
        State::Degraded
    } else {
        State::Ok
    };
    down.extend(degraded);
    Overall { state, reasons: down }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Signals {
        Signals { nodes: 2, queue_admission_limit_bytes: 1000, queue_used_bytes: 10, ..Default::default() }
    }

    #[test]
    fn each_rule_sets_its_state_with_a_reason() {
        assert_eq!(overall(&healthy()), Overall { state: State::Ok, reasons: vec![] });
        let cases: Vec<(Signals, State, &str)> = vec![
            (Signals { unhealthy: vec![("a".into(), "syncing".into())], ..healthy() }, State::Degraded, "servicer node a unhealthy: syncing"),
            (Signals { unhealthy: vec![("a".into(), "x".into()), ("b".into(), "y".into())], ..healthy() }, State::Down, "no servicer node is healthy"),
            (Signals { listener_problem: Some("shutting down".into()), ..healthy() }, State::Down, "not serving: shutting down"),
            (Signals { notify_failing: vec![("a".into(), 3)], ..healthy() }, State::Degraded, "notifies to servicer node a failing"),
            (Signals { notify_backlog: 1, ..healthy() }, State::Degraded, "slow lane"),
            (Signals { dead_letters: 6008, ..healthy() }, State::Degraded, "6008 dead letter(s)"),
            (Signals { queue_used_bytes: 800, ..healthy() }, State::Degraded, "queue near full: 80 %"),
            (Signals { chain_endpoints_benched: vec![("0021".into(), "urls[1]".into())], ..healthy() }, State::Degraded, "urls[1] benched"),
            (Signals { queue_error: Some("io".into()), ..healthy() }, State::Degraded, "unavailable: io"),
        ];
        for (signals, state, reason) in cases {
            let o = overall(&signals);
            assert_eq!(o.state, state, "{signals:?}");
            assert!(o.reasons.iter().any(|r| r.contains(reason)), "{reason}: {o:?}");
        }
        assert_eq!(overall(&Signals { queue_used_bytes: 799, ..healthy() }).state, State::Ok);
        // Down reasons come first, then the degraded ones.
        let o = overall(&Signals { unhealthy: vec![("a".into(), "x".into()), ("b".into(), "y".into())], dead_letters: 1, ..healthy() });
        assert!(o.reasons[0].starts_with("no servicer node"), "{o:?}");
        assert_eq!(o.reasons.len(), 4);
    }
}
