//! The durable queue of mined Shannon relays, in the same LMDB environment as the relay queue
//! and written through the same group-committing writer ([`WriteOp::Extra`]), so a mined relay
//! is on disk before its 200 is sent (README "Shannon supplier at the edge").
//!
//! Databases:
//! - `shannon_pending` seq (8, BE) → versioned [`MinedRelay`], handed off in seq order;
//! - `shannon_seen`    session end height (8, order-preserving) ‖ SHA-256 of the request (32) → ():
//!   the same request served twice is refused (a replay), pruned once its session can no
//!   longer be claimed;
//! - `shannon_dead`    seq (8, BE) → versioned [`DeadMined`]: relays Redis refused `max` times.

use std::sync::Arc;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Unit, U64};
use heed::{CommitOrAbort, Database, MdbError, PutFlags, RwTxn};
use serde::{Deserialize, Serialize};

use crate::queue::record::{decode_versioned, encode_versioned};
use crate::queue::store::{height_bytes, proof_key};
use crate::queue::{ExtraWrite, Room, Store, WriteOp, WriteResult, Writer};

/// One mined relay waiting for the hand-off: the fields of pocket-relay-miner's
/// `MinedRelayMessage` (shannon-relay.md §5) plus the hand-off's own bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinedRelay {
    pub supplier: String,
    pub service_id: String,
    pub application: String,
    pub session_id: String,
    pub session_start: i64,
    pub session_end: i64,
    /// The block height when the relay arrived (pinned for the grace window, §5).
    pub arrival_height: i64,
    pub compute_units: u64,
    pub relay_hash: [u8; 32],
    /// The dehydrated `Relay` (response payload removed, §4): the SMST leaf value.
    #[serde(with = "crate::queue::bytes_field")]
    pub relay_bytes: Vec<u8>,
    pub served_at_ms: u64,
    /// Hand-off attempts Redis refused (a Redis outage does not count).
    pub attempts: u32,
    pub not_before_ms: u64,
    pub last_error: String,
}

/// A mined relay the hand-off gave up on, with the reason (`meshd queue` shows them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadMined {
    pub reason: String,
    pub dead_at_ms: u64,
    pub relay: MinedRelay,
}

#[derive(Serialize, Deserialize)]
enum StoredMined {
    V1(MinedRelay),
}

#[derive(Serialize, Deserialize)]
enum StoredDeadMined {
    V1(DeadMined),
}

impl MinedRelay {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(&StoredMined::V1(self.clone()))
    }
    pub fn decode(bytes: &[u8]) -> Result<MinedRelay, String> {
        decode_versioned(bytes, "mined relay").map(|StoredMined::V1(r)| r)
    }
}

impl DeadMined {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(&StoredDeadMined::V1(self.clone()))
    }
    pub fn decode(bytes: &[u8]) -> Result<DeadMined, String> {
        decode_versioned(bytes, "dead mined relay").map(|StoredDeadMined::V1(r)| r)
    }
}

#[derive(Clone, Copy)]
struct Dbs {
    pending: Database<'static, U64<BigEndian>, Bytes>,
    seen: Database<'static, Bytes, Unit>,
    dead: Database<'static, U64<BigEndian>, Bytes>,
}

/// Handle on the mined-relay databases; cheap to clone, usable from the executor (writes go
/// through the writer) and from the hand-off thread (reads open their own transactions).
#[derive(Clone)]
pub struct MinedQueue {
    store: Arc<Store>,
    writer: Writer,
    dbs: Dbs,
}

fn mdb(e: heed::Error) -> String {
    format!("LMDB: {e}")
}

/// Counts for logs, metrics and the hand-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinedCounts {
    pub pending: u64,
    pub dead: u64,
    pub seen: u64,
}

impl MinedQueue {
    /// Create (or open) the databases in the relay queue's environment.
    pub fn open(writer: Writer) -> Result<MinedQueue, String> {
        let store = writer.store().clone();
        let env = store.env();
        let wtxn = env.write_txn().map_err(mdb)?;
        let (pending, seen, dead) = env
            .create_databases_and_commit(wtxn, |dbo, w| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(w, Some("shannon_pending"))?,
                    dbo.create_database(w, Some("shannon_seen"))?,
                    dbo.create_database(w, Some("shannon_dead"))?,
                )))
            })
            .map_err(|e| format!("{}: cannot create the Shannon queue databases: {e}", store.data_file().display()))?
            .unwrap_commit();
        let dbs = Dbs { pending, seen, dead };
        store.count_in_admission(dbs.pending.remap_types());
        store.count_in_admission(dbs.seen.remap_types());
        store.count_in_admission(dbs.dead.remap_types());
        Ok(MinedQueue { store, writer, dbs })
    }

    /// Commit a mined relay before its answer: `Done`, `Duplicate` (this request was served
    /// before), `Full` (the queue is near its map size) or `Refused` (the commit failed).
    pub async fn append(&self, relay: MinedRelay, request_hash: [u8; 32]) -> WriteResult {
        self.writer.write(WriteOp::Extra(Box::new(Append { dbs: self.dbs, relay, request_hash }))).await
    }

    /// Relays due for the hand-off (not before `now_ms`), oldest first, at most `limit`.
    pub fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<(u64, MinedRelay)>, String> {
        let rtxn = self.store.env().read_txn().map_err(mdb)?;
        let mut out = Vec::new();
        for entry in self.dbs.pending.iter(&rtxn).map_err(mdb)? {
            let (seq, bytes) = entry.map_err(mdb)?;
            match MinedRelay::decode(bytes) {
                Ok(r) if r.not_before_ms <= now_ms => out.push((seq, r)),
                Ok(_) => {}
                // Kept where it is (never deleted): `meshd queue salvage` can read it.
                Err(e) => log::error!("event=shannon_record_undecodable seq={seq} error={e:?}"),
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Earliest `not_before_ms` among pending relays (None: nothing pending).
    pub fn next_due_ms(&self) -> Result<Option<u64>, String> {
        let rtxn = self.store.env().read_txn().map_err(mdb)?;
        let mut next: Option<u64> = None;
        for entry in self.dbs.pending.iter(&rtxn).map_err(mdb)? {
            let (_, bytes) = entry.map_err(mdb)?;
            if let Ok(r) = MinedRelay::decode(bytes) {
                next = Some(next.map_or(r.not_before_ms, |n| n.min(r.not_before_ms)));
            }
        }
        Ok(next)
    }

    pub fn counts(&self) -> Result<MinedCounts, String> {
        let rtxn = self.store.env().read_txn().map_err(mdb)?;
        Ok(MinedCounts {
            pending: self.dbs.pending.len(&rtxn).map_err(mdb)?,
            dead: self.dbs.dead.len(&rtxn).map_err(mdb)?,
            seen: self.dbs.seen.len(&rtxn).map_err(mdb)?,
        })
    }

    pub fn dead_letters(&self) -> Result<Vec<(u64, DeadMined)>, String> {
        let rtxn = self.store.env().read_txn().map_err(mdb)?;
        let mut out = Vec::new();
        for entry in self.dbs.dead.iter(&rtxn).map_err(mdb)? {
            let (seq, bytes) = entry.map_err(mdb)?;
            out.push((seq, DeadMined::decode(bytes)?));
        }
        Ok(out)
    }

    /// Finished hand-off outcomes, committed together (from the hand-off thread: blocks it).
    /// One result per entry, in order (`Missing`: the relay was no longer pending).
    pub fn settle_blocking(&self, outcomes: Vec<(u64, Settle)>) -> Vec<WriteResult> {
        let n = outcomes.len();
        let results = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
        let op = SettleOp { dbs: self.dbs, outcomes, results: results.clone() };
        match self.writer.write_blocking(WriteOp::Extra(Box::new(op))) {
            WriteResult::Done => std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner())),
            other => vec![other; n],
        }
    }

    /// Forget served-request hashes of sessions that ended before `below_session_end`.
    pub async fn prune_seen(&self, below_session_end: i64) -> WriteResult {
        self.writer.write(WriteOp::Extra(Box::new(PruneSeen { dbs: self.dbs, below: below_session_end }))).await
    }
}

/// The Shannon databases of a queue the CLI opened (`meshd queue`): None when this queue never
/// ran Shannon mode. Works on a read-only environment.
fn existing(store: &Store) -> Result<Option<Dbs>, String> {
    let env = store.env();
    let rtxn = env.read_txn().map_err(mdb)?;
    let opened = env
        .open_databases_and_commit(rtxn, |dbo, r| -> heed::Result<_> {
            let pending = dbo.open_database(r, Some("shannon_pending"))?;
            let seen = dbo.open_database(r, Some("shannon_seen"))?;
            let dead = dbo.open_database(r, Some("shannon_dead"))?;
            Ok(match (pending, seen, dead) {
                (Some(pending), Some(seen), Some(dead)) => CommitOrAbort::Commit((pending, seen, dead)),
                _ => CommitOrAbort::Abort(()),
            })
        })
        .map_err(mdb)?;
    Ok(match opened {
        CommitOrAbort::Commit((pending, seen, dead)) => Some(Dbs { pending, seen, dead }),
        CommitOrAbort::Abort(()) => None,
    })
}

/// `meshd queue stats`: the mined relays stored (None: no Shannon queue here).
pub fn cli_counts(store: &Store) -> Result<Option<MinedCounts>, String> {
    let Some(dbs) = existing(store)? else { return Ok(None) };
    let rtxn = store.env().read_txn().map_err(mdb)?;
    Ok(Some(MinedCounts { pending: dbs.pending.len(&rtxn).map_err(mdb)?, dead: dbs.dead.len(&rtxn).map_err(mdb)?, seen: dbs.seen.len(&rtxn).map_err(mdb)? }))
}

/// `meshd queue dead`: the mined relays the hand-off gave up on, oldest first.
pub fn cli_dead(store: &Store) -> Result<Vec<(u64, DeadMined)>, String> {
    let Some(dbs) = existing(store)? else { return Ok(Vec::new()) };
    let rtxn = store.env().read_txn().map_err(mdb)?;
    let mut out = Vec::new();
    for entry in dbs.dead.iter(&rtxn).map_err(mdb)? {
        let (seq, bytes) = entry.map_err(mdb)?;
        out.push((seq, DeadMined::decode(bytes)?));
    }
    Ok(out)
}

/// `meshd queue replay-dead --shannon`: move every dead mined relay back to pending with its
/// attempts reset, in one transaction (safe while the daemon runs: keys are taken inside it).
pub fn cli_replay_dead(store: &Store) -> Result<usize, String> {
    let Some(dbs) = existing(store)? else { return Ok(0) };
    let mut wtxn = store.env().write_txn().map_err(mdb)?;
    let mut letters = Vec::new();
    for entry in dbs.dead.iter(&wtxn).map_err(mdb)? {
        let (seq, bytes) = entry.map_err(mdb)?;
        letters.push((seq, DeadMined::decode(bytes)?));
    }
    for (seq, letter) in &letters {
        let mut relay = letter.relay.clone();
        relay.attempts = 0;
        relay.not_before_ms = 0;
        relay.last_error.clear();
        let key = next_key(dbs.pending, &wtxn).map_err(mdb)?;
        dbs.pending.put(&mut wtxn, &key, &relay.encode()).map_err(mdb)?;
        dbs.dead.delete(&mut wtxn, seq).map_err(mdb)?;
    }
    wtxn.commit().map_err(mdb)?;
    Ok(letters.len())
}

/// The next key of `db`: past its last one, taken inside the write transaction, so two writers
/// (the daemon, `meshd queue replay-dead --shannon`) never take the same one and order is kept.
fn next_key(db: Database<'static, U64<BigEndian>, Bytes>, wtxn: &RwTxn) -> heed::Result<u64> {
    Ok(db.last(wtxn)?.map_or(0, |(k, _)| k + 1))
}

struct Append {
    dbs: Dbs,
    relay: MinedRelay,
    request_hash: [u8; 32],
}

impl ExtraWrite for Append {
    fn apply(&self, wtxn: &mut RwTxn, room: &mut Room) -> heed::Result<WriteResult> {
        let bytes = self.relay.encode();
        if !room.take(bytes.len() as u64 + 256) {
            return Ok(WriteResult::Full);
        }
        match self.dbs.seen.put_with_flags(wtxn, PutFlags::NO_OVERWRITE, &proof_key(self.relay.session_end, &self.request_hash), &()) {
            Err(heed::Error::Mdb(MdbError::KeyExist)) => Ok(WriteResult::Duplicate),
            Err(e) => Err(e),
            Ok(()) => {
                let seq = next_key(self.dbs.pending, wtxn)?;
                self.dbs.pending.put(wtxn, &seq, &bytes)?;
                Ok(WriteResult::Done)
            }
        }
    }
}

/// What the hand-off learned about one relay.
pub enum Settle {
    /// In the stream (or already there): delete it.
    HandedOff,
    /// Redis refused it: store the new attempt count and when to try again.
    Retry(Box<MinedRelay>),
    /// Give up: move it to `shannon_dead` with the reason.
    Dead(Box<MinedRelay>, String),
}

struct SettleOp {
    dbs: Dbs,
    outcomes: Vec<(u64, Settle)>,
    /// Per-outcome results, read by [`MinedQueue::settle_blocking`] once the batch committed.
    results: Arc<std::sync::Mutex<Vec<WriteResult>>>,
}

impl ExtraWrite for SettleOp {
    fn apply(&self, wtxn: &mut RwTxn, _room: &mut Room) -> heed::Result<WriteResult> {
        let mut results = Vec::with_capacity(self.outcomes.len());
        for (seq, outcome) in &self.outcomes {
            if self.dbs.pending.get(wtxn, seq)?.is_none() {
                results.push(WriteResult::Missing);
                continue;
            }
            match outcome {
                Settle::HandedOff => {
                    self.dbs.pending.delete(wtxn, seq)?;
                }
                Settle::Retry(relay) => self.dbs.pending.put(wtxn, seq, &relay.encode())?,
                Settle::Dead(relay, reason) => {
                    self.dbs.pending.delete(wtxn, seq)?;
                    let letter = DeadMined { reason: reason.clone(), dead_at_ms: crate::queue::record::now_ms(), relay: (**relay).clone() };
                    let dead_seq = next_key(self.dbs.dead, wtxn)?;
                    self.dbs.dead.put(wtxn, &dead_seq, &letter.encode())?;
                }
            }
            results.push(WriteResult::Done);
        }
        *self.results.lock().unwrap_or_else(|p| p.into_inner()) = results;
        Ok(WriteResult::Done)
    }
}

struct PruneSeen {
    dbs: Dbs,
    below: i64,
}

impl ExtraWrite for PruneSeen {
    fn apply(&self, wtxn: &mut RwTxn, _room: &mut Room) -> heed::Result<WriteResult> {
        let end = height_bytes(self.below);
        let range: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = (std::ops::Bound::Unbounded, std::ops::Bound::Excluded(&end[..]));
        self.dbs.seen.delete_range(wtxn, &range)?;
        Ok(WriteResult::Done)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::queue::Durability;

    pub(crate) fn sample(n: u8) -> MinedRelay {
        MinedRelay {
            supplier: "pokt1supplier".into(),
            service_id: "anvil".into(),
            application: "pokt1app".into(),
            session_id: "ab".repeat(32),
            session_start: 11,
            session_end: 20,
            arrival_height: 12,
            compute_units: 1,
            relay_hash: [n; 32],
            relay_bytes: vec![n; 100],
            served_at_ms: 1,
            attempts: 0,
            not_before_ms: 0,
            last_error: String::new(),
        }
    }

    fn queue(name: &str) -> (MinedQueue, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("meshd-mined-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(Store::open(&dir, 8, Durability::Async).unwrap());
        let (writer, task) = Writer::new(store).unwrap();
        std::thread::spawn(move || smol::block_on(task));
        (MinedQueue::open(writer).unwrap(), dir)
    }

    #[test]
    fn records_round_trip_with_their_version() {
        let r = sample(3);
        assert_eq!(MinedRelay::decode(&r.encode()).unwrap(), r);
        assert_eq!(r.encode()[0], 0, "version V1 is the first byte");
        assert!(MinedRelay::decode(&[9, 9]).is_err());
    }

    #[test]
    fn append_refuses_a_served_request_twice_and_settles_in_order() {
        let (q, dir) = queue("append");
        smol::block_on(async {
            assert_eq!(q.append(sample(1), [1; 32]).await, WriteResult::Done);
            assert_eq!(q.append(sample(2), [1; 32]).await, WriteResult::Duplicate, "same request hash and session");
            assert_eq!(q.append(sample(2), [2; 32]).await, WriteResult::Done);
        });
        let due = q.due(u64::MAX, 10).unwrap();
        assert_eq!(due.iter().map(|(_, r)| r.relay_hash[0]).collect::<Vec<_>>(), vec![1, 2]);
        let mut retry = due[0].1.clone();
        retry.attempts = 1;
        retry.not_before_ms = 5_000;
        assert_eq!(q.settle_blocking(vec![(due[0].0, Settle::Retry(Box::new(retry)))]), vec![WriteResult::Done]);
        assert_eq!(q.due(1_000, 10).unwrap().len(), 1, "the retried one waits");
        assert_eq!(q.next_due_ms().unwrap(), Some(0));
        assert_eq!(q.settle_blocking(vec![(due[1].0, Settle::HandedOff), (due[1].0, Settle::HandedOff)]), vec![WriteResult::Done, WriteResult::Missing]);
        assert_eq!(q.settle_blocking(vec![(due[0].0, Settle::Dead(Box::new(sample(1)), "WRONGTYPE".into()))]), vec![WriteResult::Done]);
        assert_eq!(q.counts().unwrap(), MinedCounts { pending: 0, dead: 1, seen: 2 });
        assert_eq!(q.dead_letters().unwrap()[0].1.reason, "WRONGTYPE");
        smol::block_on(async { assert_eq!(q.prune_seen(21).await, WriteResult::Done) });
        assert_eq!(q.counts().unwrap().seen, 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
