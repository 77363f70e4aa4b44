//! Persisted identity-state history (per servicer address), stored in the queue's LMDB
//! environment so one `Env` serves the process and state writes share the queue writer's
//! group commit (one fsync per batch with the relays).
//!
//! Databases (created by [`super::Store::open`]):
//! - `states`      time µs (8, BE) ‖ servicer address (20) ‖ state (1) → versioned [`StateRecord`]:
//!   the history, in time order, so `from`/`to` filters are a key range.
//! - `state_last`  [`StateRecord::last_key`] → versioned [`StateRecord`]: the newest record of each
//!   (address, state group[, chain]). Loaded at startup so a restart compares new states with what
//!   was persisted before it instead of recording them again (the Spacemesh "duplicates" bug).

use std::collections::HashSet;
use std::ops::Bound;

use heed::{MdbError, PutFlags};
use serde::{Deserialize, Serialize};

use super::store::Store;

/// One state transition of one servicer address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    pub servicer_address: [u8; 20],
    /// `crate::ops::states::IdentityState` as a number (stable: it is stored).
    pub state: u8,
    /// Unix time in microseconds (the Spacemesh API's resolution).
    pub time_us: u64,
    /// Chain id, for session-scoped states; empty otherwise.
    pub chain: String,
    /// Session height, for session-scoped states; 0 otherwise.
    pub session_height: i64,
    /// Node name, for node-scoped states; empty otherwise.
    pub node: String,
    /// Reason or last error, when the state has one.
    pub message: String,
    /// A number whose meaning depends on the state (node height, remaining relays, attempts).
    pub value: i64,
}

#[derive(Serialize, Deserialize)]
enum StoredState {
    V1(StateRecord),
}

impl StateRecord {
    pub fn encode(&self) -> Vec<u8> {
        super::record::encode_versioned(&StoredState::V1(self.clone()))
    }

    pub fn decode(bytes: &[u8]) -> Result<StateRecord, String> {
        super::record::decode_versioned(bytes, "state").map(|StoredState::V1(r)| r)
    }

    /// Key in `states`: time first, so the history is ordered by time across all addresses.
    pub fn history_key(&self) -> [u8; 29] {
        let mut key = [0u8; 29];
        key[..8].copy_from_slice(&self.time_us.to_be_bytes());
        key[8..28].copy_from_slice(&self.servicer_address);
        key[28] = self.state;
        key
    }
}

/// Key in `state_last`: address ‖ group ‖ scope (the chain for per-chain groups).
pub fn last_key(servicer_address: &[u8; 20], group: u8, scope: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(21 + scope.len());
    key.extend_from_slice(servicer_address);
    key.push(group);
    key.extend_from_slice(scope.as_bytes());
    key
}

/// What `GET /v1/private/mesh/states` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateQuery {
    /// Empty: every address.
    pub addresses: HashSet<[u8; 20]>,
    /// Empty: every state.
    pub states: HashSet<u8>,
    /// Inclusive, µs.
    pub from_us: Option<u64>,
    /// Exclusive, µs.
    pub to_us: Option<u64>,
    pub limit: usize,
    pub descending: bool,
}

impl Store {
    /// Append a history record (a colliding key moves it 1 µs later: nothing is overwritten)
    /// and make it the newest of its group. Part of a writer batch: runs inside `wtxn`.
    pub(super) fn put_state(&self, wtxn: &mut heed::RwTxn, record: &StateRecord, last_key: &[u8]) -> Result<u64, String> {
        let mut record = record.clone();
        // Bounded: at most 64 records of one address and state in the same microsecond.
        for _ in 0..64 {
            match self.states.put_with_flags(wtxn, PutFlags::NO_OVERWRITE, &record.history_key(), &record.encode()) {
                Ok(()) => {
                    self.state_last.put(wtxn, last_key, &record.encode()).map_err(|e| self.lmdb(e))?;
                    return Ok(record.time_us);
                }
                Err(heed::Error::Mdb(MdbError::KeyExist)) => record.time_us += 1,
                Err(e) => return Err(self.lmdb(e)),
            }
        }
        Err(format!("state history key collision at {} µs", record.time_us))
    }

    /// Forget history older than `before_us` (`state_last` is kept: it is what dedupes).
    pub(super) fn prune_states(&self, wtxn: &mut heed::RwTxn, before_us: u64) -> Result<usize, String> {
        let end = before_us.to_be_bytes();
        let range: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Unbounded, Bound::Excluded(&end[..]));
        self.states.delete_range(wtxn, &range).map_err(|e| self.lmdb(e))
    }

    /// The newest record of every (address, group, scope): what the state tracker starts from.
    pub fn last_states(&self) -> Result<Vec<(Vec<u8>, StateRecord)>, String> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let mut out = Vec::new();
        for item in self.state_last.iter(&rtxn).map_err(|e| self.lmdb(e))? {
            let (key, bytes) = item.map_err(|e| self.lmdb(e))?;
            match StateRecord::decode(bytes) {
                Ok(record) => out.push((key.to_vec(), record)),
                Err(e) => log::warn!("event=state_record_corrupt db=state_last key={} error={e:?}", hex::encode(key)),
            }
        }
        Ok(out)
    }

    /// History matching `query`, in time order (ascending or descending), at most `query.limit`.
    pub fn query_states(&self, query: &StateQuery) -> Result<Vec<StateRecord>, String> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let start = query.from_us.map(u64::to_be_bytes);
        let end = query.to_us.map(u64::to_be_bytes);
        let range: (Bound<&[u8]>, Bound<&[u8]>) =
            (start.as_ref().map_or(Bound::Unbounded, |s| Bound::Included(&s[..])), end.as_ref().map_or(Bound::Unbounded, |e| Bound::Excluded(&e[..])));
        let keep = |key: &[u8]| {
            key.len() == 29
                && (query.states.is_empty() || query.states.contains(&key[28]))
                && (query.addresses.is_empty() || key[8..28].try_into().is_ok_and(|a: [u8; 20]| query.addresses.contains(&a)))
        };
        let mut out = Vec::new();
        let mut take = |key: &[u8], bytes: &[u8]| {
            if keep(key) {
                match StateRecord::decode(bytes) {
                    Ok(record) => out.push(record),
                    Err(e) => log::warn!("event=state_record_corrupt db=states key={} error={e:?}", hex::encode(key)),
                }
            }
            out.len() < query.limit
        };
        if query.descending {
            for item in self.states.rev_range(&rtxn, &range).map_err(|e| self.lmdb(e))? {
                let (key, bytes) = item.map_err(|e| self.lmdb(e))?;
                if !take(key, bytes) {
                    break;
                }
            }
        } else {
            for item in self.states.range(&rtxn, &range).map_err(|e| self.lmdb(e))? {
                let (key, bytes) = item.map_err(|e| self.lmdb(e))?;
                if !take(key, bytes) {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Durability, WriteOp, WriteResult};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        crate::queue::test_dir("states", name)
    }

    fn record(address: u8, state: u8, time_us: u64) -> StateRecord {
        StateRecord {
            servicer_address: [address; 20],
            state,
            time_us,
            chain: "0021".into(),
            session_height: 101,
            node: "n".into(),
            message: String::new(),
            value: 0,
        }
    }

    fn put(store: &Store, r: StateRecord) {
        let key = last_key(&r.servicer_address, 1, "");
        assert_eq!(store.apply(&[WriteOp::RecordState(Box::new(r), key)]).unwrap(), vec![WriteResult::Done]);
    }

    #[test]
    fn records_round_trip_with_their_version() {
        let r = record(1, 3, 5);
        let bytes = r.encode();
        assert_eq!(bytes[0], 0, "variant index of V1 leads the record");
        assert_eq!(StateRecord::decode(&bytes).unwrap(), r);
        assert!(StateRecord::decode(&[7, 1]).is_err());
    }

    #[test]
    fn history_filters_orders_and_limits() {
        let dir = temp_dir("query");
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        for (i, (address, state)) in [(1, 3), (2, 3), (1, 4), (2, 6), (1, 3)].into_iter().enumerate() {
            put(&store, record(address, state, 1_000 + i as u64 * 10));
        }
        let all = StateQuery { limit: 100, ..Default::default() };
        let times: Vec<u64> = store.query_states(&all).unwrap().iter().map(|r| r.time_us).collect();
        assert_eq!(times, vec![1_000, 1_010, 1_020, 1_030, 1_040]);
        let desc = StateQuery { limit: 2, descending: true, ..Default::default() };
        let times: Vec<u64> = store.query_states(&desc).unwrap().iter().map(|r| r.time_us).collect();
        assert_eq!(times, vec![1_040, 1_030]);
        let only = StateQuery { limit: 100, addresses: [[1u8; 20]].into(), states: [3u8].into(), ..Default::default() };
        let times: Vec<u64> = store.query_states(&only).unwrap().iter().map(|r| r.time_us).collect();
        assert_eq!(times, vec![1_000, 1_040]);
        let window = StateQuery { limit: 100, from_us: Some(1_010), to_us: Some(1_030), ..Default::default() };
        let times: Vec<u64> = store.query_states(&window).unwrap().iter().map(|r| r.time_us).collect();
        assert_eq!(times, vec![1_010, 1_020], "from is inclusive, to exclusive");
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn same_microsecond_records_are_kept_and_the_last_survives_reopen() {
        let dir = temp_dir("collide");
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        put(&store, record(1, 3, 7));
        put(&store, record(1, 3, 7));
        assert_eq!(store.query_states(&StateQuery { limit: 10, ..Default::default() }).unwrap().len(), 2);
        store.close();
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        let last = store.last_states().unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].1.time_us, 8, "the second record moved 1 µs later and is the newest");
        store.apply(&[WriteOp::PruneStates { before_us: 8 }]).unwrap();
        assert_eq!(store.query_states(&StateQuery { limit: 10, ..Default::default() }).unwrap().len(), 1);
        assert_eq!(store.last_states().unwrap().len(), 1, "pruning history keeps the dedupe state");
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
