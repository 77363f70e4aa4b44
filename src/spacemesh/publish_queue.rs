//! The durable publish queue of the Spacemesh gateway: ATX publishes (`POST /activation/publish`
//! and `POST /publish/ax1`) are committed here, fsynced, and only then answered. One named LMDB
//! database (`spacemesh_publish`) in the relay queue's environment, keyed by the content hash
//! sha3-256(route ‖ 0x00 ‖ body), so a blob sent twice (a client retry, a restart) is one entry.
//!
//! An entry is `Pending` until a node accepts it; then it becomes a body-less `Delivered`
//! tombstone (or `Rejected`, when the node refused it with a 4xx) that keeps deduplicating for
//! [`TOMBSTONE_RETENTION_MS`] — an epoch on mainnet, the useful life of an ATX.
//! Records are postcard inside a version enum, like src/queue/record.rs.
//! Every function blocks; callers use `smol::unblock`.

use std::sync::Arc;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, MdbError, PutFlags};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

use crate::queue::record::{decode_versioned, encode_versioned};
use crate::queue::Store;

pub const DB_NAME: &str = "spacemesh_publish";

/// Two weeks: a mainnet epoch. Tombstones older than this are pruned.
pub const TOMBSTONE_RETENTION_MS: u64 = 14 * 24 * 3600 * 1000;

pub type ContentHash = [u8; 32];

/// Which node-service route a queued blob goes back out on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// `POST /activation/publish` with the JSON body `{"AtxBlob", "PoetProof"?}`.
    ActivationPublish,
    /// `POST /publish/{protocol}` with raw octets.
    Gossip(String),
}

impl Route {
    pub fn path(&self) -> String {
        match self {
            Route::ActivationPublish => "/activation/publish".into(),
            Route::Gossip(p) => format!("/publish/{p}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishState {
    Pending,
    /// Accepted by the node at `url`.
    Delivered {
        at_ms: u64,
        url: String,
    },
    /// The node refused it for good (4xx); kept with the answer to repeat it to a re-sender.
    Rejected {
        at_ms: u64,
        status: u16,
        #[serde(with = "crate::queue::bytes_field")]
        body: Vec<u8>,
    },
    /// No node took it within `publish_max_age`: given up (its body dropped), kept as a
    /// tombstone like the others. Appended last so records written before it still decode.
    Expired {
        at_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedPublish {
    pub route: Route,
    pub content_type: String,
    /// The blob exactly as the smeshing service sent it (emptied once delivered).
    #[serde(with = "crate::queue::bytes_field")]
    pub body: Vec<u8>,
    pub queued_at_ms: u64,
    /// Client address that queued it (stats and logs).
    pub client: String,
    /// Delivery rounds that reached no node or a failing one.
    pub attempts: u32,
    pub not_before_ms: u64,
    pub last_error: String,
    pub state: PublishState,
}

#[derive(Serialize, Deserialize)]
enum StoredPublish {
    V1(QueuedPublish),
}

impl QueuedPublish {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(&StoredPublish::V1(self.clone()))
    }
    pub fn decode(bytes: &[u8]) -> Result<QueuedPublish, String> {
        decode_versioned(bytes, "publish").map(|StoredPublish::V1(p)| p)
    }
}

pub fn content_hash(route: &Route, body: &[u8]) -> ContentHash {
    let mut h = Sha3_256::new();
    h.update(route.path().as_bytes());
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    New,
    /// Already known: its current record.
    Duplicate(Box<QueuedPublish>),
    /// The environment is near full (the relay queue's admission limit).
    Full,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub pending: u64,
    pub delivered: u64,
    pub rejected: u64,
    pub expired: u64,
    pub undecodable: u64,
}

pub struct PublishQueue {
    store: Arc<Store>,
    db: Database<'static, Bytes, Bytes>,
}

fn mdb(e: heed::Error) -> String {
    format!("spacemesh publish queue: {e}")
}

impl PublishQueue {
    /// Open (creating) the database in the store's environment.
    pub fn open(store: Arc<Store>) -> Result<PublishQueue, String> {
        let env = store.env();
        let wtxn = env.write_txn().map_err(mdb)?;
        let db = env
            .create_databases_and_commit(wtxn, |dbo, w| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit(dbo.create_database::<Bytes, Bytes>(w, Some(DB_NAME))?))
            })
            .map_err(mdb)?
            .unwrap_commit();
        Ok(PublishQueue { store, db })
    }

    /// Commit a new blob (fsynced whatever `relay_durability` says: publishes are rare and the
    /// smeshing service is told "published" only after this returns) or report the duplicate.
    pub fn enqueue(&self, hash: &ContentHash, record: &QueuedPublish) -> Result<Enqueued, String> {
        let env = self.store.env();
        let bytes = record.encode();
        // The relay queue refuses appends above 3/4 of the map so deletes always find pages;
        // publishes obey the same bound, counting both.
        let queue_used = self.store.stats()?.used_bytes;
        let mut wtxn = env.write_txn().map_err(mdb)?;
        let stat = self.db.stat(&wtxn).map_err(mdb)?;
        let own = (stat.branch_pages + stat.leaf_pages + stat.overflow_pages) as u64 * u64::from(stat.page_size);
        if queue_used + own + bytes.len() as u64 + 4096 > self.store.admission_limit() {
            return Ok(Enqueued::Full);
        }
        match self.db.put_with_flags(&mut wtxn, PutFlags::NO_OVERWRITE, &hash[..], &bytes) {
            Err(heed::Error::Mdb(MdbError::KeyExist)) => {
                let existing = self.db.get(&wtxn, &hash[..]).map_err(mdb)?.map(QueuedPublish::decode);
                drop(wtxn);
                match existing {
                    Some(Ok(r)) => Ok(Enqueued::Duplicate(Box::new(r))),
                    Some(Err(e)) => Err(e),
                    None => Err("spacemesh publish queue: record vanished".into()),
                }
            }
            Err(e) => Err(mdb(e)),
            Ok(()) => {
                wtxn.commit().map_err(mdb)?;
                env.force_sync().map_err(mdb)?;
                Ok(Enqueued::New)
            }
        }
    }

    /// Replace the record of `hash` (delivery outcome, new backoff). Delivered records lose
    /// their body. Returns false if the record is gone.
    pub fn update(&self, hash: &ContentHash, record: &QueuedPublish) -> Result<bool, String> {
        let env = self.store.env();
        let mut wtxn = env.write_txn().map_err(mdb)?;
        if self.db.get(&wtxn, &hash[..]).map_err(mdb)?.is_none() {
            return Ok(false);
        }
        let mut record = record.clone();
        if matches!(record.state, PublishState::Delivered { .. }) {
            record.body = Vec::new();
        }
        self.db.put(&mut wtxn, &hash[..], &record.encode()).map_err(mdb)?;
        wtxn.commit().map_err(mdb)?;
        Ok(true)
    }

    pub fn get(&self, hash: &ContentHash) -> Result<Option<QueuedPublish>, String> {
        let rtxn = self.store.env().read_txn().map_err(mdb)?;
        self.db.get(&rtxn, &hash[..]).map_err(mdb)?.map(QueuedPublish::decode).transpose()
    }

    /// Pending publishes, oldest first, at most `limit`.
    pub fn pending(&self, limit: usize) -> Result<Vec<(ContentHash, QueuedPublish)>, String> {
        let rtxn = self.store.env().read_txn().map_err(mdb)?;
        let mut out = Vec::new();
        for item in self.db.iter(&rtxn).map_err(mdb)? {
            let (key, bytes) = item.map_err(mdb)?;
            let (Ok(hash), Ok(record)) = (ContentHash::try_from(key), QueuedPublish::decode(bytes)) else { continue };
            if record.state == PublishState::Pending {
                out.push((hash, record));
            }
        }
        out.sort_by_key(|(_, r)| r.queued_at_ms);
        out.truncate(limit);
        Ok(out)
    }

    /// Drop tombstones older than `older_than_ms` (unix ms) and undecodable records (logged by
    /// the caller through the returned count). Pending records are never dropped.
    pub fn prune(&self, older_than_ms: u64) -> Result<u64, String> {
        let env = self.store.env();
        let mut wtxn = env.write_txn().map_err(mdb)?;
        let mut doomed = Vec::new();
        for item in self.db.iter(&wtxn).map_err(mdb)? {
            let (key, bytes) = item.map_err(mdb)?;
            let old = match QueuedPublish::decode(bytes) {
                Ok(r) => match r.state {
                    PublishState::Pending => false,
                    PublishState::Delivered { at_ms, .. } | PublishState::Rejected { at_ms, .. } | PublishState::Expired { at_ms } => at_ms < older_than_ms,
                },
                Err(_) => true,
            };
            if old {
                doomed.push(key.to_vec());
            }
        }
        for key in &doomed {
            self.db.delete(&mut wtxn, key).map_err(mdb)?;
        }
        wtxn.commit().map_err(mdb)?;
        Ok(doomed.len() as u64)
    }

    /// Give up pending publishes queued before `queued_before_ms` (unix ms): they become
    /// `Expired` tombstones without their body. Returns them (as they were) for the log.
    pub fn expire(&self, queued_before_ms: u64, now_ms: u64) -> Result<Vec<(ContentHash, QueuedPublish)>, String> {
        let env = self.store.env();
        let mut wtxn = env.write_txn().map_err(mdb)?;
        let mut expired = Vec::new();
        for item in self.db.iter(&wtxn).map_err(mdb)? {
            let (key, bytes) = item.map_err(mdb)?;
            let (Ok(hash), Ok(record)) = (ContentHash::try_from(key), QueuedPublish::decode(bytes)) else { continue };
            if record.state == PublishState::Pending && record.queued_at_ms < queued_before_ms {
                expired.push((hash, record));
            }
        }
        for (hash, record) in &expired {
            let tombstone = QueuedPublish { body: Vec::new(), state: PublishState::Expired { at_ms: now_ms }, ..record.clone() };
            self.db.put(&mut wtxn, &hash[..], &tombstone.encode()).map_err(mdb)?;
        }
        wtxn.commit().map_err(mdb)?;
        Ok(expired)
    }

    pub fn counts(&self) -> Result<QueueCounts, String> {
        let rtxn = self.store.env().read_txn().map_err(mdb)?;
        let mut c = QueueCounts::default();
        for item in self.db.iter(&rtxn).map_err(mdb)? {
            let (_, bytes) = item.map_err(mdb)?;
            match QueuedPublish::decode(bytes).map(|r| r.state) {
                Ok(PublishState::Pending) => c.pending += 1,
                Ok(PublishState::Delivered { .. }) => c.delivered += 1,
                Ok(PublishState::Rejected { .. }) => c.rejected += 1,
                Ok(PublishState::Expired { .. }) => c.expired += 1,
                Err(_) => c.undecodable += 1,
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Durability, WriteOp};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        crate::queue::test_dir("smq", name)
    }

    fn record(body: &[u8], at: u64) -> QueuedPublish {
        QueuedPublish {
            route: Route::Gossip("ax1".into()),
            content_type: "application/octet-stream".into(),
            body: body.to_vec(),
            queued_at_ms: at,
            client: "127.0.0.1".into(),
            attempts: 0,
            not_before_ms: 0,
            last_error: String::new(),
            state: PublishState::Pending,
        }
    }

    #[test]
    fn records_round_trip_with_their_version() {
        let mut r = record(b"atx", 5);
        r.state = PublishState::Rejected { at_ms: 9, status: 400, body: b"bad".to_vec() };
        let bytes = r.encode();
        assert_eq!(bytes[0], 0, "V1 leads the record");
        assert_eq!(QueuedPublish::decode(&bytes).unwrap(), r);
        assert!(QueuedPublish::decode(&[7, 1]).is_err());
    }

    #[test]
    fn content_hash_covers_route_and_body() {
        let ax1 = Route::Gossip("ax1".into());
        assert_eq!(content_hash(&ax1, b"x"), content_hash(&ax1, b"x"));
        assert_ne!(content_hash(&ax1, b"x"), content_hash(&ax1, b"y"));
        assert_ne!(content_hash(&ax1, b"x"), content_hash(&Route::ActivationPublish, b"x"));
    }

    #[test]
    fn dedupe_delivery_tombstones_and_reopen() {
        let dir = temp_dir("basic");
        let store = Arc::new(Store::open(&dir, 16, Durability::Sync).unwrap());
        let q = PublishQueue::open(store.clone()).unwrap();
        let (h1, h2) = ([1u8; 32], [2u8; 32]);
        assert_eq!(q.enqueue(&h1, &record(b"one", 20)).unwrap(), Enqueued::New);
        assert_eq!(q.enqueue(&h2, &record(b"two", 10)).unwrap(), Enqueued::New);
        assert!(matches!(q.enqueue(&h1, &record(b"one", 30)).unwrap(), Enqueued::Duplicate(r) if r.queued_at_ms == 20));
        let pending = q.pending(10).unwrap();
        assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), vec![h2, h1], "oldest first");
        // The relay queue's databases are untouched and keep working beside it.
        assert_eq!(store.stats().unwrap().pending, 0);
        store.apply(&[WriteOp::PruneProofs { below_session_height: 0 }]).unwrap();

        let mut done = record(b"one", 20);
        done.state = PublishState::Delivered { at_ms: 100, url: "http://a".into() };
        assert!(q.update(&h1, &done).unwrap());
        assert_eq!(q.get(&h1).unwrap().unwrap().body, Vec::<u8>::new(), "tombstones drop the body");
        assert!(!q.update(&[9; 32], &done).unwrap());
        assert_eq!(q.counts().unwrap(), QueueCounts { pending: 1, delivered: 1, rejected: 0, expired: 0, undecodable: 0 });
        drop(q);
        Arc::try_unwrap(store).ok().unwrap().close();

        let store = Arc::new(Store::open(&dir, 16, Durability::Async).unwrap());
        let q = PublishQueue::open(store.clone()).unwrap();
        assert!(matches!(q.enqueue(&h1, &record(b"one", 40)).unwrap(), Enqueued::Duplicate(r) if matches!(r.state, PublishState::Delivered { .. })));
        assert_eq!(q.pending(10).unwrap().len(), 1, "the pending one survived the reopen");
        assert_eq!(q.prune(50).unwrap(), 0, "tombstone is newer than the cut");
        assert_eq!(q.prune(101).unwrap(), 1);
        assert_eq!(q.counts().unwrap().pending, 1, "pending records are never pruned");
        drop(q);
        Arc::try_unwrap(store).ok().unwrap().close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn old_pending_publishes_expire_into_tombstones_and_are_pruned_later() {
        let dir = temp_dir("expire");
        let store = Arc::new(Store::open(&dir, 16, Durability::Sync).unwrap());
        let q = PublishQueue::open(store.clone()).unwrap();
        let (old, young, done) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        q.enqueue(&old, &record(b"old atx", 10)).unwrap();
        q.enqueue(&young, &record(b"young atx", 500)).unwrap();
        q.enqueue(&done, &record(b"delivered atx", 5)).unwrap();
        let mut delivered = record(b"delivered atx", 5);
        delivered.state = PublishState::Delivered { at_ms: 20, url: "http://a".into() };
        q.update(&done, &delivered).unwrap();

        let expired = q.expire(100, 1_000).unwrap();
        assert_eq!(expired.len(), 1, "only pending records older than the cut expire");
        assert_eq!((expired[0].0, expired[0].1.body.as_slice()), (old, &b"old atx"[..]));
        let tomb = q.get(&old).unwrap().unwrap();
        assert_eq!(tomb.state, PublishState::Expired { at_ms: 1_000 });
        assert!(tomb.body.is_empty());
        assert_eq!(q.pending(10).unwrap().iter().map(|p| p.0).collect::<Vec<_>>(), vec![young], "never delivered now");
        assert!(matches!(q.enqueue(&old, &record(b"old atx", 2_000)).unwrap(), Enqueued::Duplicate(_)), "still deduplicates");
        assert_eq!(q.counts().unwrap(), QueueCounts { pending: 1, delivered: 1, rejected: 0, expired: 1, undecodable: 0 });
        // Records written before the Expired variant existed still decode (it is appended last).
        let v1_rejected = record(b"x", 1);
        assert_eq!(QueuedPublish::decode(&v1_rejected.encode()).unwrap(), v1_rejected);
        assert_eq!(q.prune(999).unwrap(), 1, "the delivered tombstone (at 20) goes; the expired one (at 1000) stays");
        assert_eq!(q.prune(1_001).unwrap(), 1);
        assert_eq!(q.counts().unwrap().expired, 0);
        drop(q);
        Arc::try_unwrap(store).ok().unwrap().close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_near_full_environment_refuses_new_publishes() {
        let dir = temp_dir("full");
        let store = Arc::new(Store::open(&dir, 1, Durability::Async).unwrap());
        let q = PublishQueue::open(store.clone()).unwrap();
        let mut full = false;
        for i in 0..200u32 {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            match q.enqueue(&h, &record(&[0xAB; 16 * 1024], u64::from(i))).unwrap() {
                Enqueued::New => {}
                Enqueued::Full => {
                    full = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(full, "a 1 MiB map cannot take 200 × 16 KiB");
        drop(q);
        Arc::try_unwrap(store).ok().unwrap().close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
