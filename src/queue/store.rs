//! The LMDB half of the relay queue (blocking; callers use `smol::unblock` or a CLI thread).
//!
//! Databases:
//! - `pending`  servicer address (20) ‖ seq (8, BE) → versioned `QueuedRelay`: one FIFO per
//!   servicer, so a node's notifier walks only its own servicers' ranges.
//! - `proofs`   session height (8, order-preserving) ‖ proof hash (32) → (): the exact duplicate
//!   index a servicer dedupes on, pruned by height range once a session can no longer be claimed.
//! - `sessions` session header hash (32) ‖ servicer public key (32) → pending count: relays
//!   served but not yet accepted, subtracted from the budget a servicer reports after a restart.
//! - `dead`     seq (8, BE) → versioned `DeadLetter`.
//! - `meta`     "next_seq".
//! - `states`, `state_last`: identity-state history (see [`super::states`]).
//!
//! Every write goes through [`Store::apply`]: one transaction (one fsync) per batch of operations.
//! Appends are refused once the databases use 3/4 of the map, so deletes always find free pages
//! (a full map would otherwise wedge the queue: rust-stack.md §7.1).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, Str, Unit, U32, U64};
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, MdbError, PutFlags, RoTxn, WithoutTls};

use super::guard::{self, FileIdentity, QueueFault, QueueLock};
use super::record::{now_ms, DeadLetter, QueuedRelay};
use super::states::StateRecord;
use crate::protocol::session::session_header_hash;

pub type PendingKey = [u8; 28];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync every commit before the relay is answered.
    Sync,
    /// No fsync per commit (a process crash loses nothing; a power loss may lose recent commits).
    Async,
}

pub enum WriteOp {
    /// Queue a served relay; refused when its proof is already known or the map is near full.
    Append(Box<QueuedRelay>),
    /// The servicer accepted (or already had) the relay.
    Delivered(PendingKey),
    /// Store a new attempt count / not-before time for a pending relay.
    Reschedule(PendingKey, Box<QueuedRelay>),
    /// Move a pending record (decodable or not) to the dead-letter store with the reason.
    DeadLetter(PendingKey, String),
    /// Move a pending relay to the dead-letter store as it stands after its last notify
    /// attempt (`attempts` counting that attempt), with the reason.
    DeadLetterTried(PendingKey, Box<QueuedRelay>, String),
    /// Forget proofs of sessions below this height (they can no longer be claimed).
    PruneProofs { below_session_height: i64 },
    /// Move a dead letter back to pending, with its attempts reset.
    ReplayDead(u64),
    /// Append an identity-state record and make it the newest under this `state_last` key.
    RecordState(Box<StateRecord>, Vec<u8>),
    /// Forget identity-state history older than this (unix µs).
    PruneStates { before_us: u64 },
    /// A write of a database kept outside the relay queue (the Shannon mined-relay queue,
    /// src/supplier/mined_queue.rs), applied in the same group commit.
    Extra(Box<dyn ExtraWrite>),
    /// Nothing to change: resolves once every operation submitted before it is committed
    /// (and, with `async` durability, flushed to disk). Used at shutdown.
    Flush,
}

/// A [`WriteOp::Extra`] write: runs inside the batch's transaction; `room` is the admission
/// budget shared with the relay queue (appends must be refused once it is spent).
pub trait ExtraWrite: Send + Sync {
    fn apply(&self, wtxn: &mut heed::RwTxn, room: &mut Room) -> heed::Result<WriteResult>;
}

/// Bytes left below the admission limit in the current batch.
pub struct Room {
    used: u64,
    limit: u64,
}

impl Room {
    /// Take `cost` bytes for an append; false (and nothing taken) when the limit would be passed.
    pub fn take(&mut self, cost: u64) -> bool {
        if self.used + cost > self.limit {
            false
        } else {
            self.used += cost;
            true
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    Appended(PendingKey),
    Duplicate,
    Full,
    Done,
    /// The record was not there (already delivered or moved).
    Missing,
    /// This operation could not be applied; the text says why (the rest of the batch was).
    Refused(String),
}

/// A record salvaged from a damaged queue, for [`Store::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// A dead letter (it gets a new sequence number).
    Dead(Box<DeadLetter>),
    /// A duplicate-index key (session height ‖ proof hash, 40 bytes).
    Proof(Vec<u8>),
    /// An identity-state history record (stored under its history key).
    State(Box<StateRecord>),
    /// The newest identity state of one `state_last` key.
    StateLast(Vec<u8>, Box<StateRecord>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub pending: u64,
    pub dead: u64,
    pub proofs: u64,
    pub used_bytes: u64,
    pub map_bytes: u64,
    pub admission_limit_bytes: u64,
}

pub struct Store {
    /// `<queue dir>/data.mdb`: named in every error.
    data_file: PathBuf,
    /// What `data_file` was when opened (a data dir replaced under the daemon is noticed).
    identity: FileIdentity,
    /// Set once `data_file` is found gone or replaced: appends are refused from then on.
    lost: AtomicBool,
    /// The queue lock of a daemon ([`OpenMode::Exclusive`]), held as long as the store.
    _lock: Option<QueueLock>,
    pub(super) env: Env<WithoutTls>,
    pending: Database<'static, Bytes, Bytes>,
    proofs: Database<'static, Bytes, Unit>,
    sessions: Database<'static, Bytes, U32<BigEndian>>,
    dead: Database<'static, U64<BigEndian>, Bytes>,
    meta: Database<'static, Str, U64<BigEndian>>,
    pub(super) states: Database<'static, Bytes, Bytes>,
    pub(super) state_last: Database<'static, Bytes, Bytes>,
    /// Next sequence number; only the writer (one at a time, LMDB's rule) advances it.
    next_seq: Mutex<u64>,
    /// Databases of other queues in this environment, counted in the admission limit.
    extra_dbs: Mutex<Vec<Database<'static, Bytes, Bytes>>>,
    map_bytes: u64,
    durability: Durability,
}

pub fn pending_key(servicer_address: &[u8; 20], seq: u64) -> PendingKey {
    let mut key = [0u8; 28];
    key[..20].copy_from_slice(servicer_address);
    key[20..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Big-endian with the sign bit flipped: byte order equals numeric order for every i64.
pub(crate) fn height_bytes(height: i64) -> [u8; 8] {
    ((height as u64) ^ (1 << 63)).to_be_bytes()
}

/// Session height ‖ a 32-byte hash: keys ordered by height, so a height range is pruned with
/// one `delete_range` (the proofs index; the Shannon queue's served-request index).
pub(crate) fn proof_key(session_height: i64, proof_hash: &[u8; 32]) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..8].copy_from_slice(&height_bytes(session_height));
    key[8..].copy_from_slice(proof_hash);
    key
}

/// Key of the per-session pending counter (same identity as the session cache).
pub fn session_key(app_public_key: &str, chain: &str, session_height: i64, servicer_public_key: &[u8; 32]) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(&session_header_hash(app_public_key, chain, session_height));
    key[32..].copy_from_slice(servicer_public_key);
    key
}

fn record_session_key(r: &QueuedRelay) -> [u8; 64] {
    session_key(&r.app_public_key, &r.chain, r.session_height, &r.servicer_public_key)
}

/// How [`Store::open_as`] opens the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read-write, no queue lock (tests, `meshd queue replay-dead` next to a running daemon).
    Shared,
    /// Read-write under the queue lock (`meshd start`): one daemon per queue directory.
    Exclusive,
    /// Read-only, and only if a queue exists (`meshd queue stats|dead`): nothing is created.
    ReadOnly,
}

/// Largest `relay_queue_map_size` in MiB: what fits the address space (`usize`) with room to
/// spare; `check-config` refuses more (src/config/settings.rs).
pub const MAX_MAP_MIB: u64 = if usize::BITS >= 64 { 1 << 30 } else { 2047 };

/// An LMDB error at open, as a fault naming the file; MDB_CORRUPTED, MDB_INVALID and
/// MDB_VERSION_MISMATCH mean the file is damaged, the rest are environment faults.
fn lmdb_fault(file: &Path, what: &str, e: heed::Error) -> QueueFault {
    match e {
        heed::Error::Mdb(MdbError::Corrupted | MdbError::Invalid | MdbError::VersionMismatch | MdbError::PageNotFound) => {
            QueueFault::Damaged { file: file.to_path_buf(), damage: format!("{what}: {e}") }
        }
        e => QueueFault::Io { path: file.to_path_buf(), message: format!("{what}: {e}") },
    }
}

impl Store {
    /// An LMDB error as text naming the queue file.
    pub(super) fn lmdb(&self, e: heed::Error) -> String {
        format!("{}: {e}", self.data_file.display())
    }

    /// The queue file (`<queue dir>/data.mdb`).
    pub fn data_file(&self) -> &Path {
        &self.data_file
    }

    /// `Err(why)` when the queue file at its path is no longer the one this store has open
    /// (the data dir was removed or restored under the daemon). One `stat`: cheap enough to
    /// run before every acknowledgement. Once it failed it keeps failing.
    pub fn check_identity(&self) -> Result<(), String> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(format!("{} is no longer the queue file this process opened", self.data_file.display()));
        }
        self.identity.still_at(&self.data_file).inspect_err(|_| self.lost.store(true, Ordering::Relaxed))
    }

    /// Open (creating it if needed) without the queue lock; errors are text naming the file.
    pub fn open(dir: &Path, map_mib: u64, durability: Durability) -> Result<Store, String> {
        Store::open_as(dir, map_mib, durability, OpenMode::Shared).map_err(|e| e.to_string())
    }

    /// Open the queue of `dir` in `mode`. Before LMDB maps anything: the queue lock
    /// ([`OpenMode::Exclusive`]) and a check of `data.mdb` against its meta pages
    /// (src/queue/guard.rs), so damage is an error naming the file, not a SIGBUS.
    pub fn open_as(dir: &Path, map_mib: u64, durability: Durability, mode: OpenMode) -> Result<Store, QueueFault> {
        let data_file = dir.join("data.mdb");
        let io = |message: String| QueueFault::Io { path: data_file.clone(), message };
        if map_mib > MAX_MAP_MIB {
            return Err(io(format!("relay_queue_map_size {map_mib} MiB exceeds the {MAX_MAP_MIB} MiB this build can map")));
        }
        let lock = match mode {
            OpenMode::Exclusive => Some(guard::lock(dir)?),
            OpenMode::Shared => {
                std::fs::create_dir_all(dir).map_err(|e| QueueFault::Io { path: dir.to_path_buf(), message: format!("cannot create queue directory: {e}") })?;
                None
            }
            OpenMode::ReadOnly => {
                if !data_file.is_file() {
                    return Err(QueueFault::NoQueue { dir: dir.to_path_buf() });
                }
                None
            }
        };
        guard::check_data_file(&data_file)?;
        let map_bytes = map_mib.max(1) << 20;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(map_bytes as usize).max_dbs(16).max_readers(64);
        if mode == OpenMode::ReadOnly {
            // SAFETY: READ_ONLY only forbids write transactions.
            unsafe { options.flags(EnvFlags::READ_ONLY) };
        }
        if durability == Durability::Async {
            // SAFETY: NO_SYNC only changes when LMDB calls fsync; integrity is kept
            // (rust-stack.md §2: a process crash loses nothing, a system crash may lose recent commits).
            unsafe { options.flags(EnvFlags::NO_SYNC) };
        }
        // SAFETY: the queue directory belongs to this daemon; LMDB's own lock file arbitrates
        // with other processes (the `meshd queue` CLI) that open it.
        let env = unsafe { options.open(dir) }.map_err(|e| lmdb_fault(&data_file, "cannot open the LMDB queue", e))?;
        let identity = FileIdentity::of(&data_file).map_err(|e| io(format!("cannot stat after opening: {e}")))?;
        let lmdb = |e: heed::Error| lmdb_fault(&data_file, "cannot read the queue databases", e);
        let (pending, proofs, sessions, dead, meta, states, state_last) = if mode == OpenMode::ReadOnly {
            let rtxn = env.read_txn().map_err(lmdb)?;
            let opened = env
                .open_databases_and_commit(rtxn, |dbo, r| -> heed::Result<_> {
                    macro_rules! open {
                        ($k:ty, $v:ty, $name:literal) => {
                            match dbo.open_database::<$k, $v>(r, Some($name))? {
                                Some(db) => db,
                                None => return Ok(CommitOrAbort::Abort($name)),
                            }
                        };
                    }
                    Ok(CommitOrAbort::Commit((
                        open!(Bytes, Bytes, "pending"),
                        open!(Bytes, Unit, "proofs"),
                        open!(Bytes, U32<BigEndian>, "sessions"),
                        open!(U64<BigEndian>, Bytes, "dead"),
                        open!(Str, U64<BigEndian>, "meta"),
                        open!(Bytes, Bytes, "states"),
                        open!(Bytes, Bytes, "state_last"),
                    )))
                })
                .map_err(lmdb)?;
            match opened {
                CommitOrAbort::Commit(dbs) => dbs,
                CommitOrAbort::Abort(name) => return Err(QueueFault::Damaged { file: data_file.clone(), damage: format!("the {name:?} database is missing") }),
            }
        } else {
            let wtxn = env.write_txn().map_err(lmdb)?;
            env.create_databases_and_commit(wtxn, |dbo, w| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database::<Bytes, Bytes>(w, Some("pending"))?,
                    dbo.create_database::<Bytes, Unit>(w, Some("proofs"))?,
                    dbo.create_database::<Bytes, U32<BigEndian>>(w, Some("sessions"))?,
                    dbo.create_database::<U64<BigEndian>, Bytes>(w, Some("dead"))?,
                    dbo.create_database::<Str, U64<BigEndian>>(w, Some("meta"))?,
                    dbo.create_database::<Bytes, Bytes>(w, Some("states"))?,
                    dbo.create_database::<Bytes, Bytes>(w, Some("state_last"))?,
                )))
            })
            .map_err(|e| lmdb_fault(&data_file, "cannot create the queue databases", e))?
            .unwrap_commit()
        };
        let rtxn = env.read_txn().map_err(lmdb)?;
        let next_seq = meta.get(&rtxn, "next_seq").map_err(lmdb)?.unwrap_or(0);
        let map_bytes = env.info().map_size as u64;
        drop(rtxn);
        Ok(Store {
            data_file,
            identity,
            lost: AtomicBool::new(false),
            _lock: lock,
            env,
            pending,
            proofs,
            sessions,
            dead,
            meta,
            states,
            state_last,
            next_seq: Mutex::new(next_seq),
            extra_dbs: Mutex::new(Vec::new()),
            map_bytes,
            durability,
        })
    }

    /// Appends are refused above this many bytes in use.
    pub fn admission_limit(&self) -> u64 {
        self.map_bytes / 4 * 3
    }

    fn used_bytes(&self, txn: &RoTxn<WithoutTls>) -> heed::Result<u64> {
        let mut total = 0u64;
        for stat in [
            self.pending.stat(txn)?,
            self.proofs.stat(txn)?,
            self.sessions.stat(txn)?,
            self.dead.stat(txn)?,
            self.meta.stat(txn)?,
            self.states.stat(txn)?,
            self.state_last.stat(txn)?,
        ] {
            total += (stat.branch_pages + stat.leaf_pages + stat.overflow_pages) as u64 * u64::from(stat.page_size);
        }
        for db in self.extra_dbs.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let stat = db.stat(txn)?;
            total += (stat.branch_pages + stat.leaf_pages + stat.overflow_pages) as u64 * u64::from(stat.page_size);
        }
        Ok(total)
    }

    /// Count `db` (a database another queue keeps in this environment) in the admission limit.
    pub fn count_in_admission(&self, db: Database<'static, Bytes, Bytes>) {
        self.extra_dbs.lock().unwrap_or_else(|p| p.into_inner()).push(db);
    }

    /// Apply a batch in one transaction. An LMDB failure aborts the whole batch (`Err`), so a
    /// caller never sees half of it committed.
    pub fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteResult>, String> {
        let mut seq_guard = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let mut wtxn = self.env.write_txn().map_err(|e| self.lmdb(e))?;
        // Another process (`meshd queue replay-dead` while the daemon runs) may have taken
        // sequence numbers since this one last committed: never hand one out twice.
        let mut seq = (*seq_guard).max(self.meta.get(&wtxn, "next_seq").map_err(|e| self.lmdb(e))?.unwrap_or(0));
        let mut used = self.used_bytes(&wtxn).map_err(|e| self.lmdb(e))?;
        let limit = self.admission_limit();
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op {
                WriteOp::Append(record) => {
                    let bytes = record.encode();
                    // Worst case a record costs its size plus a page split's worth of overhead.
                    let cost = bytes.len() as u64 + 256;
                    if used + cost > limit {
                        WriteResult::Full
                    } else {
                        let pk = proof_key(record.session_height, &record.proof_hash);
                        match self.proofs.put_with_flags(&mut wtxn, PutFlags::NO_OVERWRITE, &pk, &()) {
                            Err(heed::Error::Mdb(MdbError::KeyExist)) => WriteResult::Duplicate,
                            Err(e) => return Err(self.lmdb(e)),
                            Ok(()) => {
                                let key = pending_key(&record.servicer_address, seq);
                                seq += 1;
                                self.pending.put(&mut wtxn, &key, &bytes).map_err(|e| self.lmdb(e))?;
                                self.bump_session(&mut wtxn, &record_session_key(record), 1).map_err(|e| self.lmdb(e))?;
                                used += cost;
                                WriteResult::Appended(key)
                            }
                        }
                    }
                }
                WriteOp::Delivered(key) => match self.pending.get(&wtxn, key).map_err(|e| self.lmdb(e))?.map(<[u8]>::to_vec) {
                    None => WriteResult::Missing,
                    Some(bytes) => {
                        self.pending.delete(&mut wtxn, key).map_err(|e| self.lmdb(e))?;
                        if let Ok(record) = QueuedRelay::decode(&bytes) {
                            self.bump_session(&mut wtxn, &record_session_key(&record), -1).map_err(|e| self.lmdb(e))?;
                        }
                        WriteResult::Done
                    }
                },
                WriteOp::Reschedule(key, record) => {
                    if self.pending.get(&wtxn, key).map_err(|e| self.lmdb(e))?.is_none() {
                        WriteResult::Missing
                    } else {
                        self.pending.put(&mut wtxn, key, &record.encode()).map_err(|e| self.lmdb(e))?;
                        WriteResult::Done
                    }
                }
                WriteOp::DeadLetter(key, _) | WriteOp::DeadLetterTried(key, _, _) => {
                    match self.pending.get(&wtxn, key).map_err(|e| self.lmdb(e))?.map(<[u8]>::to_vec) {
                        None => WriteResult::Missing,
                        Some(stored) => {
                            let (bytes, reason) = match op {
                                WriteOp::DeadLetterTried(_, record, reason) => (record.encode(), reason),
                                WriteOp::DeadLetter(_, reason) => (stored, reason),
                                _ => unreachable!("matched above"),
                            };
                            self.pending.delete(&mut wtxn, key).map_err(|e| self.lmdb(e))?;
                            if let Ok(record) = QueuedRelay::decode(&bytes) {
                                self.bump_session(&mut wtxn, &record_session_key(&record), -1).map_err(|e| self.lmdb(e))?;
                            }
                            let letter = DeadLetter { reason: reason.clone(), dead_at_ms: now_ms(), pending_key: key.to_vec(), record: bytes };
                            self.dead.put(&mut wtxn, &seq, &letter.encode()).map_err(|e| self.lmdb(e))?;
                            seq += 1;
                            WriteResult::Done
                        }
                    }
                }
                WriteOp::PruneProofs { below_session_height } => {
                    let end = height_bytes(*below_session_height);
                    let range: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>) = (std::ops::Bound::Unbounded, std::ops::Bound::Excluded(&end[..]));
                    self.proofs.delete_range(&mut wtxn, &range).map_err(|e| self.lmdb(e))?;
                    WriteResult::Done
                }
                WriteOp::ReplayDead(dead_seq) => match self.dead.get(&wtxn, dead_seq).map_err(|e| self.lmdb(e))?.map(<[u8]>::to_vec) {
                    None => WriteResult::Missing,
                    Some(bytes) => match DeadLetter::decode(&bytes).and_then(|d| QueuedRelay::decode(&d.record)) {
                        Err(e) => WriteResult::Refused(format!("dead letter {dead_seq} cannot be replayed: {e}")),
                        Ok(mut record) => {
                            record.attempts = 0;
                            record.not_before_ms = 0;
                            record.last_error.clear();
                            let key = pending_key(&record.servicer_address, seq);
                            seq += 1;
                            self.pending.put(&mut wtxn, &key, &record.encode()).map_err(|e| self.lmdb(e))?;
                            self.bump_session(&mut wtxn, &record_session_key(&record), 1).map_err(|e| self.lmdb(e))?;
                            self.dead.delete(&mut wtxn, dead_seq).map_err(|e| self.lmdb(e))?;
                            WriteResult::Appended(key)
                        }
                    },
                },
                WriteOp::RecordState(record, last_key) => {
                    // The bound `used_bytes` keeps for deletes applies to history too.
                    if used + 512 > limit {
                        WriteResult::Full
                    } else {
                        self.put_state(&mut wtxn, record, last_key)?;
                        used += 512;
                        WriteResult::Done
                    }
                }
                WriteOp::PruneStates { before_us } => {
                    self.prune_states(&mut wtxn, *before_us)?;
                    WriteResult::Done
                }
                WriteOp::Extra(write) => {
                    let mut room = Room { used, limit };
                    let result = write.apply(&mut wtxn, &mut room).map_err(|e| self.lmdb(e))?;
                    used = room.used;
                    result
                }
                WriteOp::Flush => WriteResult::Done,
            };
            results.push(result);
        }
        if seq != *seq_guard {
            self.meta.put(&mut wtxn, "next_seq", &seq).map_err(|e| self.lmdb(e))?;
        }
        wtxn.commit().map_err(|e| self.lmdb(e))?;
        *seq_guard = seq;
        if ops.iter().any(|op| matches!(op, WriteOp::Flush)) {
            self.sync()?;
        }
        Ok(results)
    }

    fn bump_session(&self, wtxn: &mut heed::RwTxn, key: &[u8; 64], delta: i64) -> heed::Result<()> {
        let current = i64::from(self.sessions.get(wtxn, key)?.unwrap_or(0));
        let next = (current + delta).max(0);
        if next == 0 {
            self.sessions.delete(wtxn, key)?;
        } else {
            self.sessions.put(wtxn, key, &(next as u32))?;
        }
        Ok(())
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Flush to disk (async durability calls this periodically).
    pub fn sync(&self) -> Result<(), String> {
        if self.durability == Durability::Async {
            self.env.force_sync().map_err(|e| self.lmdb(e))?;
        }
        Ok(())
    }

    /// Relays served under this session and not yet accepted by the servicer.
    pub fn session_pending(&self, key: &[u8; 64]) -> Result<u32, String> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        Ok(self.sessions.get(&rtxn, key).map_err(|e| self.lmdb(e))?.unwrap_or(0))
    }

    /// Up to `limit` records of these servicers that are due at `now_ms` and not in `skip`,
    /// walking each servicer's FIFO. Also returns the earliest time a skipped record is due.
    pub fn due(
        &self,
        servicers: &[[u8; 20]],
        skip: &HashSet<PendingKey>,
        now_ms: u64,
        limit: usize,
    ) -> Result<(Vec<(PendingKey, Result<QueuedRelay, String>)>, Option<u64>), String> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let mut out = Vec::new();
        let mut next_due: Option<u64> = None;
        'servicers: for address in servicers {
            for item in self.pending.prefix_iter(&rtxn, &address[..]).map_err(|e| self.lmdb(e))? {
                let (key, bytes) = item.map_err(|e| self.lmdb(e))?;
                let Ok(key) = PendingKey::try_from(key) else { continue };
                if skip.contains(&key) {
                    continue;
                }
                match QueuedRelay::decode(bytes) {
                    Ok(record) if record.not_before_ms > now_ms => {
                        next_due = Some(next_due.map_or(record.not_before_ms, |t| t.min(record.not_before_ms)));
                    }
                    decoded => {
                        out.push((key, decoded));
                        if out.len() >= limit {
                            break 'servicers;
                        }
                    }
                }
            }
        }
        Ok((out, next_due))
    }

    pub fn stats(&self) -> Result<QueueStats, String> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        Ok(QueueStats {
            pending: self.pending.len(&rtxn).map_err(|e| self.lmdb(e))?,
            dead: self.dead.len(&rtxn).map_err(|e| self.lmdb(e))?,
            proofs: self.proofs.len(&rtxn).map_err(|e| self.lmdb(e))?,
            used_bytes: self.used_bytes(&rtxn).map_err(|e| self.lmdb(e))?,
            map_bytes: self.map_bytes,
            admission_limit_bytes: self.admission_limit(),
        })
    }

    /// Pending relays per servicer address (hex) — walks the whole queue; for the CLI.
    pub fn pending_by_servicer(&self) -> Result<BTreeMap<String, u64>, String> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let mut counts = BTreeMap::new();
        for item in self.pending.iter(&rtxn).map_err(|e| self.lmdb(e))? {
            let (key, _) = item.map_err(|e| self.lmdb(e))?;
            *counts.entry(hex::encode(&key[..20.min(key.len())])).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Relays served and not yet accepted, per servicer public key: a walk of the small
    /// `sessions` counters (one entry per live session), not of the queue itself.
    pub fn pending_by_servicer_key(&self) -> Result<BTreeMap<[u8; 32], u64>, String> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let mut counts = BTreeMap::new();
        for item in self.sessions.iter(&rtxn).map_err(|e| self.lmdb(e))? {
            let (key, count) = item.map_err(|e| self.lmdb(e))?;
            if let Ok(servicer) = <[u8; 32]>::try_from(&key[key.len().saturating_sub(32)..]) {
                *counts.entry(servicer).or_insert(0) += u64::from(count);
            }
        }
        Ok(counts)
    }

    /// Dead letters, oldest first, optionally only one servicer's.
    pub fn dead_letters(&self, servicer: Option<&[u8; 20]>) -> Result<Vec<(u64, DeadLetter)>, String> {
        let rtxn = self.env.read_txn().map_err(|e| self.lmdb(e))?;
        let mut out = Vec::new();
        for item in self.dead.iter(&rtxn).map_err(|e| self.lmdb(e))? {
            let (seq, bytes) = item.map_err(|e| self.lmdb(e))?;
            let letter = match DeadLetter::decode(bytes) {
                Ok(letter) => letter,
                Err(e) => DeadLetter { reason: e, dead_at_ms: 0, pending_key: Vec::new(), record: bytes.to_vec() },
            };
            if servicer.is_none_or(|s| letter.pending_key.starts_with(s)) {
                out.push((seq, letter));
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Close the environment and wait until LMDB released it (needed before reopening the
    /// same directory in this process).
    pub fn close(self) {
        self.env.prepare_for_closing().wait();
    }

    /// The LMDB environment, for subsystems that keep their own named databases next to the
    /// relay queue (the Spacemesh gateway's publish queue, src/spacemesh/publish_queue.rs). They
    /// never touch the queue's databases; `stats()` and the admission limit count only these.
    pub fn env(&self) -> &Env<WithoutTls> {
        &self.env
    }

    /// Write records read from a damaged queue (`meshd queue salvage`, src/queue/salvage.rs) in
    /// one transaction; pending relays go through [`WriteOp::Append`] instead, which rebuilds
    /// their duplicate-index entry and session counter. `true` per record written, `false` for
    /// one already there.
    pub fn restore(&self, records: &[Restored]) -> Result<Vec<bool>, String> {
        let mut seq_guard = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let mut seq = *seq_guard;
        let mut wtxn = self.env.write_txn().map_err(|e| self.lmdb(e))?;
        let mut out = Vec::with_capacity(records.len());
        let new = |r: heed::Result<()>| match r {
            Ok(()) => Ok(true),
            Err(heed::Error::Mdb(MdbError::KeyExist)) => Ok(false),
            Err(e) => Err(e),
        };
        for record in records {
            let written = match record {
                Restored::Dead(letter) => {
                    self.dead.put(&mut wtxn, &seq, &letter.encode()).map_err(|e| self.lmdb(e))?;
                    seq += 1;
                    true
                }
                Restored::Proof(key) => new(self.proofs.put_with_flags(&mut wtxn, PutFlags::NO_OVERWRITE, key, &())).map_err(|e| self.lmdb(e))?,
                Restored::State(state) => {
                    new(self.states.put_with_flags(&mut wtxn, PutFlags::NO_OVERWRITE, &state.history_key(), &state.encode())).map_err(|e| self.lmdb(e))?
                }
                Restored::StateLast(key, state) => {
                    new(self.state_last.put_with_flags(&mut wtxn, PutFlags::NO_OVERWRITE, key, &state.encode())).map_err(|e| self.lmdb(e))?
                }
            };
            out.push(written);
        }
        if seq != *seq_guard {
            self.meta.put(&mut wtxn, "next_seq", &seq).map_err(|e| self.lmdb(e))?;
        }
        wtxn.commit().map_err(|e| self.lmdb(e))?;
        *seq_guard = seq;
        Ok(out)
    }

    /// Write raw bytes as a pending record (tests and fault injection only).
    #[doc(hidden)]
    pub fn put_raw_pending(&self, key: &PendingKey, bytes: &[u8]) -> Result<(), String> {
        let mut wtxn = self.env.write_txn().map_err(|e| self.lmdb(e))?;
        self.pending.put(&mut wtxn, key, bytes).map_err(|e| self.lmdb(e))?;
        wtxn.commit().map_err(|e| self.lmdb(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        crate::queue::test_dir("store", name)
    }

    fn relay(servicer: u8, proof: u8, height: i64, size: usize) -> Box<QueuedRelay> {
        Box::new(QueuedRelay {
            servicer_address: [servicer; 20],
            servicer_public_key: [servicer; 32],
            chain: "0021".into(),
            app_public_key: "ab".repeat(32),
            session_height: height,
            proof_hash: [proof; 32],
            served_at_ms: 1,
            attempts: 0,
            not_before_ms: 0,
            last_error: String::new(),
            relay_json: vec![b'x'; size],
        })
    }

    fn appended(r: &WriteResult) -> PendingKey {
        match r {
            WriteResult::Appended(k) => *k,
            other => panic!("expected Appended, got {other:?}"),
        }
    }

    /// The daemon and `meshd queue replay-dead` (another process) each hold a `Store` on one
    /// queue: a sequence number the other process took (its record and `next_seq` committed
    /// behind this store's back, written here by hand) is never handed out again — a reuse would
    /// overwrite a pending relay of the same servicer.
    #[test]
    fn a_sequence_number_taken_by_another_process_is_not_reused() {
        let dir = temp_dir("two-writers");
        let store = Store::open(&dir, 16, Durability::Async).unwrap();
        appended(&store.apply(&[WriteOp::Append(relay(1, 1, 101, 10))]).unwrap()[0]);
        let taken = *store.next_seq.lock().unwrap();
        {
            let mut wtxn = store.env.write_txn().unwrap();
            store.pending.put(&mut wtxn, &pending_key(&[1; 20], taken), &relay(1, 2, 101, 10).encode()).unwrap();
            store.meta.put(&mut wtxn, "next_seq", &(taken + 1)).unwrap();
            wtxn.commit().unwrap();
        }
        let key = appended(&store.apply(&[WriteOp::Append(relay(1, 3, 101, 10))]).unwrap()[0]);
        assert_ne!(key, pending_key(&[1; 20], taken));
        assert_eq!(store.stats().unwrap().pending, 3, "no relay was overwritten");
    }

    #[test]
    fn append_dedupe_deliver_and_session_counters() {
        let dir = temp_dir("basic");
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        let r = store.apply(&[WriteOp::Append(relay(1, 1, 101, 10)), WriteOp::Append(relay(1, 1, 101, 10)), WriteOp::Append(relay(2, 2, 101, 10))]).unwrap();
        let k1 = appended(&r[0]);
        assert_eq!(r[1], WriteResult::Duplicate, "same proof in the same batch is a duplicate");
        appended(&r[2]);
        let sk = session_key(&"ab".repeat(32), "0021", 101, &[1; 32]);
        assert_eq!(store.session_pending(&sk).unwrap(), 1);
        // A later batch sees the proof too.
        assert_eq!(store.apply(&[WriteOp::Append(relay(1, 1, 101, 10))]).unwrap(), vec![WriteResult::Duplicate]);
        let (due, _) = store.due(&[[1; 20]], &HashSet::new(), 10, 100).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, k1);
        assert_eq!(store.apply(&[WriteOp::Delivered(k1), WriteOp::Delivered(k1)]).unwrap(), vec![WriteResult::Done, WriteResult::Missing]);
        assert_eq!(store.session_pending(&sk).unwrap(), 0);
        assert_eq!(store.stats().unwrap().pending, 1);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_survive_reopen_and_sequence_continues() {
        let dir = temp_dir("reopen");
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        let k1 = appended(&store.apply(&[WriteOp::Append(relay(3, 1, 5, 10))]).unwrap()[0]);
        store.close();
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        assert_eq!(store.stats().unwrap().pending, 1);
        let k2 = appended(&store.apply(&[WriteOp::Append(relay(3, 2, 5, 10))]).unwrap()[0]);
        assert!(k2 > k1, "sequence numbers keep increasing across restarts");
        assert_eq!(store.apply(&[WriteOp::Append(relay(3, 1, 5, 10))]).unwrap()[0], WriteResult::Duplicate);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn map_near_full_refuses_appends_but_keeps_draining() {
        let dir = temp_dir("full");
        let store = Store::open(&dir, 1, Durability::Async).unwrap();
        let mut keys = Vec::new();
        let mut refused = false;
        for i in 0..2000u32 {
            let mut r = relay(4, 0, 7, 900);
            r.proof_hash[..4].copy_from_slice(&i.to_be_bytes());
            match &store.apply(&[WriteOp::Append(r)]).unwrap()[0] {
                WriteResult::Appended(k) => keys.push(*k),
                WriteResult::Full => {
                    refused = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(refused, "a 1 MiB map must refuse appends before 2000 × 900 B");
        assert!(store.stats().unwrap().used_bytes <= store.admission_limit() + 4096);
        // Draining still works at the limit: no MDB_MAP_FULL wedge.
        let ops: Vec<WriteOp> = keys.iter().map(|k| WriteOp::Delivered(*k)).collect();
        assert!(store.apply(&ops).unwrap().iter().all(|r| *r == WriteResult::Done));
        assert_eq!(store.stats().unwrap().pending, 0);
        let mut r = relay(4, 0, 7, 900);
        r.proof_hash = [0xEE; 32];
        appended(&store.apply(&[WriteOp::Append(r)]).unwrap()[0]);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_record_goes_to_dead_letter_and_the_rest_stay() {
        let dir = temp_dir("corrupt");
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        let good = appended(&store.apply(&[WriteOp::Append(relay(5, 1, 9, 10))]).unwrap()[0]);
        let bad = pending_key(&[5; 20], 999);
        store.put_raw_pending(&bad, &[0xFF, 0x00, 0x13]).unwrap();
        let (due, _) = store.due(&[[5; 20]], &HashSet::new(), 0, 10).unwrap();
        assert_eq!(due.len(), 2);
        let (bad_key, decoded) = due.iter().find(|(_, d)| d.is_err()).unwrap();
        assert_eq!(*bad_key, bad);
        let reason = decoded.clone().unwrap_err();
        store.apply(&[WriteOp::DeadLetter(bad, reason.clone())]).unwrap();
        let dead = store.dead_letters(Some(&[5; 20])).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].1.reason, reason);
        assert_eq!(dead[0].1.record, vec![0xFF, 0x00, 0x13], "raw bytes are preserved");
        let (due, _) = store.due(&[[5; 20]], &HashSet::new(), 0, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, good);
        // An undecodable dead letter cannot be replayed, and says so.
        assert!(matches!(&store.apply(&[WriteOp::ReplayDead(dead[0].0)]).unwrap()[0], WriteResult::Refused(_)));
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dead_letters_replay_with_attempts_reset() {
        let dir = temp_dir("replay");
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        let mut r = relay(6, 1, 9, 10);
        r.attempts = 7;
        let k = appended(&store.apply(&[WriteOp::Append(r)]).unwrap()[0]);
        // The record as it stands after its last attempt is what the dead letter keeps.
        let mut tried = relay(6, 1, 9, 10);
        tried.attempts = 8;
        store.apply(&[WriteOp::DeadLetterTried(k, tried, "servicer refused: 45".into())]).unwrap();
        let sk = session_key(&"ab".repeat(32), "0021", 9, &[6; 32]);
        assert_eq!(store.session_pending(&sk).unwrap(), 0);
        let dead = store.dead_letters(None).unwrap();
        assert_eq!(QueuedRelay::decode(&dead[0].1.record).unwrap().attempts, 8);
        assert_eq!(dead[0].1.reason, "servicer refused: 45");
        let replayed = appended(&store.apply(&[WriteOp::ReplayDead(dead[0].0)]).unwrap()[0]);
        assert!(store.dead_letters(None).unwrap().is_empty());
        let (due, _) = store.due(&[[6; 20]], &HashSet::new(), 0, 10).unwrap();
        assert_eq!(due[0].0, replayed);
        assert_eq!(due[0].1.as_ref().unwrap().attempts, 0);
        assert_eq!(store.session_pending(&sk).unwrap(), 1);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn not_yet_due_records_are_skipped_and_reported() {
        let dir = temp_dir("due");
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        let mut later = relay(7, 1, 9, 10);
        later.not_before_ms = 5_000;
        let kl = appended(&store.apply(&[WriteOp::Append(later)]).unwrap()[0]);
        let kn = appended(&store.apply(&[WriteOp::Append(relay(7, 2, 9, 10))]).unwrap()[0]);
        let (due, next) = store.due(&[[7; 20]], &HashSet::new(), 1_000, 10).unwrap();
        assert_eq!(due.iter().map(|d| d.0).collect::<Vec<_>>(), vec![kn]);
        assert_eq!(next, Some(5_000));
        let skip: HashSet<PendingKey> = [kn].into_iter().collect();
        let (due, _) = store.due(&[[7; 20]], &skip, 6_000, 10).unwrap();
        assert_eq!(due.iter().map(|d| d.0).collect::<Vec<_>>(), vec![kl]);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pruned_sessions_forget_their_proofs_only() {
        let dir = temp_dir("prune");
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        store.apply(&[WriteOp::Append(relay(8, 1, -5, 1)), WriteOp::Append(relay(8, 2, 10, 1)), WriteOp::Append(relay(8, 3, 20, 1))]).unwrap();
        store.apply(&[WriteOp::PruneProofs { below_session_height: 20 }]).unwrap();
        assert_eq!(store.stats().unwrap().proofs, 1);
        assert!(matches!(store.apply(&[WriteOp::Append(relay(8, 2, 10, 1))]).unwrap()[0], WriteResult::Appended(_)));
        assert_eq!(store.apply(&[WriteOp::Append(relay(8, 3, 20, 1))]).unwrap()[0], WriteResult::Duplicate);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
