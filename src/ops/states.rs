//! Identity states: per servicer address, what meshd last saw happen to it (node health,
//! sessions served, notify trouble, dead letters), recorded **once per transition** and
//! persisted in LMDB (`queue::states`), with the API shape of Spacemesh's
//! `SmeshingIdentitiesService/States` (reference spacemesh-node-split.md §3).
//!
//! States come in groups; a new state is recorded only when it changes its group's newest
//! record, which is kept in memory and in `state_last`, so a restart that re-observes the
//! same situation records nothing (Spacemesh's smesher-app shows duplicates after restarts
//! because every `Set()` appended a row):
//! - health (per address): SERVICER_HEALTHY ↔ SERVICER_UNHEALTHY, on change;
//! - session (per address and chain): SESSION_ACTIVE → SESSION_EXHAUSTED, only forward in
//!   (session height, state) order, so a session is active and exhausted at most once each;
//! - notify (per address): NOTIFY_FAILING / NOTIFY_BACKLOG / NOTIFY_OK, on change (NOTIFY_OK
//!   only after trouble);
//! - dead letters (per address and chain): DEAD_LETTERED once per session height.
//!
//! Everything runs on the executor thread (`RefCell`); records go to disk through the queue
//! writer's FIFO without waiting, so observing a state never slows a relay.

pub use crate::timefmt::{parse_time, rfc3339};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::{json, Map, Value};

use crate::queue::states::last_key;
use crate::queue::{StateRecord, WriteOp, Writer};

/// Stored as a number (`StateRecord::state`): never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum IdentityState {
    ServicerUnhealthy = 1,
    ServicerHealthy = 2,
    SessionActive = 3,
    SessionExhausted = 4,
    NotifyBacklog = 5,
    NotifyFailing = 6,
    NotifyOk = 7,
    DeadLettered = 8,
}

pub const ALL_STATES: [IdentityState; 8] = [
    IdentityState::ServicerUnhealthy,
    IdentityState::ServicerHealthy,
    IdentityState::SessionActive,
    IdentityState::SessionExhausted,
    IdentityState::NotifyBacklog,
    IdentityState::NotifyFailing,
    IdentityState::NotifyOk,
    IdentityState::DeadLettered,
];

/// How many recent transitions the status page shows (kept in memory).
pub const RECENT: usize = 50;
/// History older than this is pruned (the dedupe state in `state_last` is kept).
pub const RETENTION_DAYS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Health = 1,
    Session = 2,
    Notify = 3,
    Dead = 4,
}

impl IdentityState {
    pub fn from_u8(n: u8) -> Option<IdentityState> {
        ALL_STATES.iter().copied().find(|s| *s as u8 == n)
    }

    /// The API name (`SESSION_ACTIVE`).
    pub fn name(self) -> &'static str {
        match self {
            IdentityState::ServicerUnhealthy => "SERVICER_UNHEALTHY",
            IdentityState::ServicerHealthy => "SERVICER_HEALTHY",
            IdentityState::SessionActive => "SESSION_ACTIVE",
            IdentityState::SessionExhausted => "SESSION_EXHAUSTED",
            IdentityState::NotifyBacklog => "NOTIFY_BACKLOG",
            IdentityState::NotifyFailing => "NOTIFY_FAILING",
            IdentityState::NotifyOk => "NOTIFY_OK",
            IdentityState::DeadLettered => "DEAD_LETTERED",
        }
    }

    /// The metadata key (camelCase, like a proto `oneof` in JSON).
    fn metadata_key(self) -> &'static str {
        match self {
            IdentityState::ServicerUnhealthy => "servicerUnhealthy",
            IdentityState::ServicerHealthy => "servicerHealthy",
            IdentityState::SessionActive => "sessionActive",
            IdentityState::SessionExhausted => "sessionExhausted",
            IdentityState::NotifyBacklog => "notifyBacklog",
            IdentityState::NotifyFailing => "notifyFailing",
            IdentityState::NotifyOk => "notifyOk",
            IdentityState::DeadLettered => "deadLettered",
        }
    }

    /// A name (any case) or its number.
    pub fn parse(text: &str) -> Option<IdentityState> {
        if let Ok(n) = text.parse::<u8>() {
            return IdentityState::from_u8(n);
        }
        ALL_STATES.iter().copied().find(|s| s.name().eq_ignore_ascii_case(text))
    }

    fn group(self) -> Group {
        match self {
            IdentityState::ServicerUnhealthy | IdentityState::ServicerHealthy => Group::Health,
            IdentityState::SessionActive | IdentityState::SessionExhausted => Group::Session,
            IdentityState::NotifyBacklog | IdentityState::NotifyFailing | IdentityState::NotifyOk => Group::Notify,
            IdentityState::DeadLettered => Group::Dead,
        }
    }

    /// Whether the state belongs to a session (carries chain and session height).
    fn session_scoped(self) -> bool {
        matches!(self.group(), Group::Session | Group::Dead) || self == IdentityState::NotifyBacklog
    }
}

/// Whether `new` is a transition given its group's newest record.
fn is_transition(last: Option<&StateRecord>, new: &StateRecord) -> bool {
    let Some(state) = IdentityState::from_u8(new.state) else { return false };
    match (state.group(), last) {
        (Group::Notify, None) => state != IdentityState::NotifyOk,
        (_, None) => true,
        (Group::Health | Group::Notify, Some(last)) => last.state != new.state,
        (Group::Session, Some(last)) => (new.session_height, new.state) > (last.session_height, last.state),
        (Group::Dead, Some(last)) => new.session_height != last.session_height,
    }
}

/// The per-address state tracker shared on the executor.
pub struct States {
    last: RefCell<HashMap<Vec<u8>, StateRecord>>,
    recent: RefCell<VecDeque<StateRecord>>,
    writer: Writer,
}

impl States {
    /// Start from what was persisted (`state_last` and the newest history records).
    pub fn load(writer: Writer) -> Result<States, String> {
        let store = writer.store().clone();
        let last: HashMap<Vec<u8>, StateRecord> = store.last_states()?.into_iter().collect();
        let query = crate::queue::StateQuery { limit: RECENT, descending: true, ..Default::default() };
        let mut recent: VecDeque<StateRecord> = store.query_states(&query)?.into();
        recent.make_contiguous().reverse();
        Ok(States { last: RefCell::new(last), recent: RefCell::new(recent), writer })
    }

    /// A tracker that starts with no history (when the persisted one cannot be read).
    pub fn empty(writer: Writer) -> States {
        States { last: RefCell::default(), recent: RefCell::default(), writer }
    }

    /// Record `record` if it is a transition for its address; returns whether it was.
    pub fn observe(&self, record: StateRecord) -> bool {
        let Some(state) = IdentityState::from_u8(record.state) else { return false };
        let scope = if matches!(state.group(), Group::Session | Group::Dead) { record.chain.as_str() } else { "" };
        let key = last_key(&record.servicer_address, state.group() as u8, scope);
        let mut last = self.last.borrow_mut();
        if !is_transition(last.get(&key), &record) {
            return false;
        }
        // Only the fields this state carries: no `chain=` or `session_height=0` on a health line.
        let (height, value) = (record.session_height.to_string(), record.value.to_string());
        log::info!(
            "event=identity_state {}",
            crate::logline::fields(&[
                ("servicer", &hex::encode(record.servicer_address)),
                ("state", state.name()),
                ("chain", &record.chain),
                ("session_height", if record.session_height == 0 { "" } else { &height }),
                ("node", &record.node),
                ("value", if record.value == 0 { "" } else { &value }),
                ("message", &record.message),
            ])
        );
        last.insert(key.clone(), record.clone());
        let mut recent = self.recent.borrow_mut();
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(record.clone());
        self.writer.submit(WriteOp::RecordState(Box::new(record), key));
        true
    }

    /// Newest transitions first, at most `n`.
    pub fn recent(&self, n: usize) -> Vec<StateRecord> {
        self.recent.borrow().iter().rev().take(n).cloned().collect()
    }

    /// The addresses whose current state in some group is one of `states`.
    pub fn addresses_in(&self, states: &[IdentityState]) -> HashSet<[u8; 20]> {
        self.last.borrow().values().filter(|r| states.iter().any(|s| *s as u8 == r.state)).map(|r| r.servicer_address).collect()
    }

    /// The newest state of every address across its groups (for the status page).
    pub fn current_all(&self) -> HashMap<[u8; 20], StateRecord> {
        let mut out: HashMap<[u8; 20], StateRecord> = HashMap::new();
        for record in self.last.borrow().values() {
            match out.get(&record.servicer_address) {
                Some(newest) if newest.time_us >= record.time_us => {}
                _ => {
                    out.insert(record.servicer_address, record.clone());
                }
            }
        }
        out
    }

    pub fn health(&self, address: [u8; 20], node: &str, healthy: bool, height: i64, reason: &str) -> bool {
        let state = if healthy { IdentityState::ServicerHealthy } else { IdentityState::ServicerUnhealthy };
        self.observe(record(address, state, "", 0, node, reason, height))
    }

    pub fn session_active(&self, address: [u8; 20], chain: &str, session_height: i64, remaining: i64) -> bool {
        self.observe(record(address, IdentityState::SessionActive, chain, session_height, "", "", remaining))
    }

    pub fn session_exhausted(&self, address: [u8; 20], chain: &str, session_height: i64) -> bool {
        self.observe(record(address, IdentityState::SessionExhausted, chain, session_height, "", "", 0))
    }

    pub fn notify_failing(&self, address: [u8; 20], node: &str, reason: &str) -> bool {
        self.observe(record(address, IdentityState::NotifyFailing, "", 0, node, reason, 0))
    }

    pub fn notify_backlog(&self, address: [u8; 20], chain: &str, session_height: i64, attempts: u32, last_error: &str) -> bool {
        self.observe(record(address, IdentityState::NotifyBacklog, chain, session_height, "", last_error, i64::from(attempts)))
    }

    pub fn notify_ok(&self, address: [u8; 20], node: &str) -> bool {
        self.observe(record(address, IdentityState::NotifyOk, "", 0, node, "", 0))
    }

    pub fn dead_lettered(&self, address: [u8; 20], chain: &str, session_height: i64, reason: &str) -> bool {
        self.observe(record(address, IdentityState::DeadLettered, chain, session_height, "", reason, 0))
    }
}

fn record(address: [u8; 20], state: IdentityState, chain: &str, session_height: i64, node: &str, message: &str, value: i64) -> StateRecord {
    StateRecord {
        servicer_address: address,
        state: state as u8,
        time_us: now_us(),
        chain: chain.to_string(),
        session_height,
        node: node.to_string(),
        // Stored for RETENTION_DAYS and served by the states API: upstream text is scrubbed.
        message: crate::ops::redact::scrub(message),
        value,
    }
}

pub fn now_us() -> u64 {
    crate::timefmt::unix_micros(std::time::SystemTime::now())
}

/// One record in the API's shape: `IdentityStateInfo` with the servicer address (hex) in place
/// of `smesher`, `sessionHeight` in place of `publishEpoch` (only for session-scoped states),
/// an RFC 3339 `time`, and the state's metadata under its camelCase name.
pub fn to_json(r: &StateRecord) -> Value {
    let mut out = Map::new();
    out.insert("servicer".into(), json!(hex::encode(r.servicer_address)));
    let Some(state) = IdentityState::from_u8(r.state) else {
        out.insert("state".into(), json!("UNSPECIFIED"));
        out.insert("time".into(), json!(rfc3339(r.time_us)));
        return Value::Object(out);
    };
    out.insert("state".into(), json!(state.name()));
    if state.session_scoped() {
        out.insert("sessionHeight".into(), json!(r.session_height));
    }
    out.insert("time".into(), json!(rfc3339(r.time_us)));
    let meta = match state {
        IdentityState::ServicerUnhealthy => json!({"node": r.node, "reason": r.message}),
        IdentityState::ServicerHealthy => json!({"node": r.node, "height": r.value}),
        IdentityState::SessionActive => json!({"chain": r.chain, "remainingRelays": r.value}),
        IdentityState::SessionExhausted => json!({"chain": r.chain}),
        IdentityState::NotifyBacklog => json!({"chain": r.chain, "attempts": r.value, "lastError": r.message}),
        IdentityState::NotifyFailing => json!({"node": r.node, "reason": r.message}),
        IdentityState::NotifyOk => json!({"node": r.node}),
        IdentityState::DeadLettered => json!({"chain": r.chain, "reason": r.message}),
    };
    out.insert(state.metadata_key().into(), meta);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: IdentityState, height: i64) -> StateRecord {
        record([1; 20], state, "0021", height, "n", "", 0)
    }

    #[test]
    fn transitions_are_recorded_once() {
        use IdentityState::*;
        assert!(is_transition(None, &rec(ServicerHealthy, 0)));
        assert!(!is_transition(Some(&rec(ServicerHealthy, 0)), &rec(ServicerHealthy, 0)));
        assert!(is_transition(Some(&rec(ServicerHealthy, 0)), &rec(ServicerUnhealthy, 0)));
        // Sessions only move forward: a restart re-observing session 101 records nothing.
        assert!(is_transition(None, &rec(SessionActive, 101)));
        assert!(!is_transition(Some(&rec(SessionActive, 101)), &rec(SessionActive, 101)));
        assert!(is_transition(Some(&rec(SessionActive, 101)), &rec(SessionExhausted, 101)));
        assert!(!is_transition(Some(&rec(SessionExhausted, 101)), &rec(SessionActive, 101)));
        assert!(is_transition(Some(&rec(SessionExhausted, 101)), &rec(SessionActive, 105)));
        assert!(!is_transition(Some(&rec(SessionActive, 105)), &rec(SessionActive, 101)));
        // Notify OK only after trouble.
        assert!(!is_transition(None, &rec(NotifyOk, 0)));
        assert!(is_transition(None, &rec(NotifyFailing, 0)));
        assert!(is_transition(Some(&rec(NotifyFailing, 0)), &rec(NotifyOk, 0)));
        assert!(!is_transition(Some(&rec(NotifyFailing, 0)), &rec(NotifyFailing, 0)));
        // Dead letters: once per session.
        assert!(is_transition(None, &rec(DeadLettered, 101)));
        assert!(!is_transition(Some(&rec(DeadLettered, 101)), &rec(DeadLettered, 101)));
        assert!(is_transition(Some(&rec(DeadLettered, 101)), &rec(DeadLettered, 105)));
    }

    #[test]
    fn state_names_parse_and_stay_numbered() {
        for s in ALL_STATES {
            assert_eq!(IdentityState::parse(s.name()), Some(s));
            assert_eq!(IdentityState::parse(&(s as u8).to_string()), Some(s));
        }
        assert_eq!(IdentityState::parse("session_active"), Some(IdentityState::SessionActive));
        assert_eq!(IdentityState::parse("NOPE"), None);
        assert_eq!(IdentityState::SessionActive as u8, 3, "stored numbers never change");
    }

    #[test]
    fn times_format_and_parse() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_731_933_558_167_000), "2024-11-18T12:39:18.167000Z");
        assert_eq!(rfc3339(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(parse_time("2024-11-18T12:39:18.167Z"), Ok(1_731_933_558_167_000));
        assert_eq!(parse_time("2024-11-18T13:39:18.167+01:00"), Ok(1_731_933_558_167_000));
        assert_eq!(parse_time("2024-11-18T13:39:18.167 01:00"), Ok(1_731_933_558_167_000));
        assert_eq!(parse_time("2024-11-18T11:39:18.167-01:00"), Ok(1_731_933_558_167_000));
        assert_eq!(parse_time("2000-02-29T00:00:00.0000019Z"), Ok(951_782_400_000_001));
        assert_eq!(parse_time("1731933558"), Ok(1_731_933_558_000_000));
        for bad in ["", "2024-13-01T00:00:00Z", "2024-11-18T12:39:18", "2024-11-18T12:39:18.Z", "yesterday"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        for us in [0u64, 1, 86_399_999_999, 1_700_000_000_123_456, 4_102_444_800_000_000] {
            assert_eq!(parse_time(&rfc3339(us)), Ok(us));
        }
    }

    #[test]
    fn json_has_the_identity_state_info_shape() {
        let mut r = rec(IdentityState::SessionActive, 101);
        r.value = 25;
        r.time_us = 1_731_933_558_167_000;
        let v = to_json(&r);
        assert_eq!(v["state"], "SESSION_ACTIVE");
        assert_eq!(v["servicer"], hex::encode([1u8; 20]));
        assert_eq!(v["sessionHeight"], 101);
        assert_eq!(v["time"], "2024-11-18T12:39:18.167000Z");
        assert_eq!(v["sessionActive"], json!({"chain": "0021", "remainingRelays": 25}));
        let h = to_json(&rec(IdentityState::ServicerUnhealthy, 0));
        assert!(h.get("sessionHeight").is_none(), "node states carry no session height");
        assert_eq!(h["servicerUnhealthy"]["node"], "n");
    }
}
