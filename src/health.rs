//! Servicer node health: the last `POST /v1/private/mesh/check` answer per node, the gate
//! every relay passes (unknown, stale, starting or catching-up nodes refuse service), and the
//! periodic check loop. Unlike the incumbent, a status older than `stale_after` counts as unhealthy.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::protocol::PocketError;
use crate::servicer_api::CheckAnswer;

/// Blocks per session assumed until the first check answers (the incumbent's default).
pub const DEFAULT_BLOCKS_PER_SESSION: i64 = 4;

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

#[derive(Debug, Default, Clone)]
struct NodeHealth {
    status: Option<NodeStatus>,
    last_error: Option<String>,
    consecutive_failures: u32,
}

pub struct Health {
    nodes: RefCell<Vec<NodeHealth>>,
    stale_after: Duration,
}

impl Health {
    /// `check_interval`: how often nodes are checked; a status is trusted for three intervals
    /// (at least 30 s) so one lost check does not stop service, a dead servicer soon does.
    pub fn new(node_count: usize, check_interval: Duration) -> Health {
        Health {
            nodes: RefCell::new(vec![NodeHealth::default(); node_count]),
            stale_after: (check_interval * 3).max(Duration::from_secs(30)),
        }
    }

    pub fn record_ok(&self, node: usize, answer: &CheckAnswer) {
        let status = answer.status.clone().unwrap_or_default();
        let mut nodes = self.nodes.borrow_mut();
        let entry = &mut nodes[node];
        entry.status = Some(NodeStatus {
            height: status.height,
            blocks_per_session: if answer.blocks_per_session > 0 { answer.blocks_per_session } else { DEFAULT_BLOCKS_PER_SESSION },
            client_session_sync_allowance: answer.client_session_sync_allowance.max(0),
            is_starting: status.is_starting,
            is_catching_up: status.is_catching_up,
            version: status.version,
            checked_at: Instant::now(),
        });
        entry.last_error = None;
        entry.consecutive_failures = 0;
    }

    /// Returns true when this is the first failure after a success (worth a warning).
    pub fn record_error(&self, node: usize, error: String) -> bool {
        let mut nodes = self.nodes.borrow_mut();
        let entry = &mut nodes[node];
        entry.last_error = Some(error);
        entry.consecutive_failures += 1;
        entry.consecutive_failures == 1
    }

    /// Whether any check of this node has completed, successfully or not.
    pub fn has_answered(&self, node: usize) -> bool {
        let nodes = self.nodes.borrow();
        nodes[node].status.is_some() || nodes[node].last_error.is_some()
    }

    pub fn is_healthy(&self, node: usize) -> bool {
        self.gate(node).is_ok()
    }

    /// The status a relay for this node may be served under, or the reason it may not.
    pub fn gate(&self, node: usize) -> Result<NodeStatus, PocketError> {
        let nodes = self.nodes.borrow();
        let entry = &nodes[node];
        let Some(status) = &entry.status else {
            let why = entry.last_error.as_deref().unwrap_or("no check has answered yet");
            return Err(PocketError::sdk(1, format!("pocket node is currently unavailable: {why}")));
        };
        let age = status.checked_at.elapsed();
        if age > self.stale_after {
            let why = entry.last_error.as_deref().unwrap_or("no answer");
            return Err(PocketError::sdk(
                1,
                format!("pocket node is currently unavailable: last successful check {}s ago ({why})", age.as_secs()),
            ));
        }
        if status.is_starting {
            return Err(PocketError::sdk(
                1,
                "pocket node is unable to retrieve synced status from tendermint node, cannot service in this state",
            ));
        }
        if status.is_catching_up {
            return Err(PocketError::sdk(1, "pocket node is currently syncing to the blockchain, cannot service in this state"));
        }
        Ok(status.clone())
    }

    /// The last successful check's status (even if stale or syncing) and the last error, for
    /// the status page.
    pub fn view(&self, node: usize) -> (Option<NodeStatus>, Option<String>) {
        let nodes = self.nodes.borrow();
        (nodes[node].status.clone(), nodes[node].last_error.clone())
    }

    /// Highest height any healthy-or-not node reported (used to age out sessions).
    pub fn max_height(&self) -> Option<(i64, i64)> {
        self.nodes
            .borrow()
            .iter()
            .filter_map(|n| n.status.as_ref())
            .map(|s| (s.height, s.blocks_per_session))
            .max_by_key(|(h, _)| *h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicer_api::NodeStatusJson;

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
        let h = Health::new(1, Duration::from_secs(10));
        assert!(h.gate(0).unwrap_err().message.contains("no check has answered"));
        h.record_error(0, "connection refused".into());
        assert!(h.gate(0).unwrap_err().message.contains("connection refused"));
        h.record_ok(0, &answer(true, false));
        assert!(h.gate(0).unwrap_err().message.contains("syncing"));
        h.record_ok(0, &answer(false, true));
        assert!(h.gate(0).unwrap_err().message.contains("tendermint"));
        h.record_ok(0, &answer(false, false));
        assert_eq!(h.gate(0).unwrap().height, 101);
    }

    #[test]
    fn a_stale_status_is_unhealthy() {
        let h = Health { nodes: RefCell::new(vec![NodeHealth::default()]), stale_after: Duration::from_millis(20) };
        h.record_ok(0, &answer(false, false));
        assert!(h.is_healthy(0));
        std::thread::sleep(Duration::from_millis(40));
        let e = h.gate(0).unwrap_err();
        assert!(e.message.contains("last successful check"), "{}", e.message);
    }
}
