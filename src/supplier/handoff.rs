//! The hand-off of mined relays to the central miner: a dedicated `shannon-handoff` thread
//! reads due relays from the durable queue ([`MinedQueue`]), adds each to its supplier's Redis
//! stream exactly as pocket-relay-miner's miners consume it (`XADD {prefix}:{supplier} * data
//! <MinedRelayMessage>`, shannon-relay.md §5), and only then deletes it locally.
//!
//! Exactly once in the stream: each add runs as one (atomic) Lua script that adds only when a
//! per-relay-hash mark is absent and sets the mark (`EX dedup_ttl`) after the add. A crash between the add and
//! the local delete re-sends the relay after restart; the script then adds nothing, and the
//! relay counts as handed off.
//!
//! A Redis outage or a WAN cut keeps every relay in LMDB: the thread reconnects with capped
//! exponential backoff and never drops a record. A relay Redis itself refuses (an error reply,
//! e.g. a stream key of the wrong type) is retried with backoff and moved to the dead letters
//! after [`MAX_ATTEMPTS`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::mined_queue::{MinedQueue, MinedRelay, Settle};
use super::resp::{Connection, RedisError, RedisTarget, Reply};
use crate::queue::record::now_ms;
use crate::shannon::mined::MinedRelayMessage;

/// Relays sent in one pipeline.
pub const BATCH: usize = 256;
/// Redis error replies for one relay before it becomes a dead letter.
pub const MAX_ATTEMPTS: u32 = 8;
/// Connect, read and write bound of every Redis exchange.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the thread sleeps when idle (it is also woken by every new mined relay).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// After a wake-up, relays committed within this long are handed off together: one pipeline
/// and one deletion commit (an fsync with sync durability) for all of them instead of one per
/// relay. The miner reads the streams asynchronously, so the delay costs nothing downstream
/// (bench/RESULTS.md "Shannon supplier edge": the writer's fsyncs shared meshd's core).
const LINGER: Duration = Duration::from_millis(100);
/// First reconnect wait after a failure (doubles up to `retry_wait_max`).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The script: add to the stream only if this relay hash was never added (§5 dedup key).
/// KEYS[1] stream, KEYS[2] dedup key; ARGV[1] message, ARGV[2] dedup ttl in seconds.
/// The mark is set only after the add succeeded: a refused add (an error aborts the script, and
/// Redis scripts do not roll back earlier writes) must leave no mark, or the retry would be
/// taken for a duplicate and the relay dropped.
const ADD_ONCE: &str = "if redis.call('EXISTS', KEYS[2]) == 1 then return false end local id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[1]) redis.call('SET', KEYS[2], '1', 'EX', ARGV[2]) return id";

/// Where and how to hand off.
#[derive(Debug, Clone)]
pub struct HandoffSettings {
    pub target: RedisTarget,
    pub stream_prefix: String,
    pub dedup_ttl_secs: u64,
    pub retry_wait_max: Duration,
}

/// The stream of one supplier (pocket-relay-miner's `SupplierStreamName`).
pub fn stream_name(prefix: &str, supplier: &str) -> String {
    format!("{prefix}:{supplier}")
}

/// The key that marks a relay hash as added.
pub fn dedup_key(relay_hash: &[u8; 32]) -> String {
    format!("meshd:handoff:{}", hex::encode(relay_hash))
}

/// The `MinedRelayMessage` of a queued relay, stamped with the publish time.
pub fn message(r: &MinedRelay, published_at_unix_nano: i64) -> MinedRelayMessage {
    MinedRelayMessage {
        relay_hash: r.relay_hash.to_vec(),
        relay_bytes: r.relay_bytes.clone(),
        compute_units_per_relay: r.compute_units,
        session_id: r.session_id.clone(),
        session_end_height: r.session_end,
        supplier_operator_address: r.supplier.clone(),
        service_id: r.service_id.clone(),
        application_address: r.application.clone(),
        arrival_block_height: r.arrival_height,
        published_at_unix_nano,
        session_start_height: r.session_start,
    }
}

/// What the daemon sees of the hand-off (metrics, status, tests).
#[derive(Debug, Default)]
pub struct HandoffStats {
    pub handed_off: AtomicU64,
    /// Re-sent relays the stream already had (after a crash between add and delete).
    pub already_in_stream: AtomicU64,
    /// Error replies from Redis for single relays.
    pub refused: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Failed connects or broken pipelines.
    pub redis_failures: AtomicU64,
    pub redis_up: AtomicBool,
    pub last_error: Mutex<String>,
}

/// The daemon's handle: wake the thread when a relay was committed.
#[derive(Clone)]
pub struct Handoff {
    kick: SyncSender<()>,
    pub stats: Arc<HandoffStats>,
}

impl Handoff {
    /// Start the `shannon-handoff` thread.
    pub fn spawn(queue: MinedQueue, settings: HandoffSettings) -> std::io::Result<Handoff> {
        let (kick, kicked) = std::sync::mpsc::sync_channel(1);
        let stats = Arc::new(HandoffStats::default());
        let thread_stats = stats.clone();
        std::thread::Builder::new().name("shannon-handoff".into()).spawn(move || run(queue, settings, kicked, thread_stats))?;
        Ok(Handoff { kick, stats })
    }

    /// A mined relay was committed: hand it off soon.
    pub fn kick(&self) {
        match self.kick.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => log::error!("event=shannon_handoff_stopped note=\"mined relays stay queued until restart\""),
        }
    }
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// The pipeline's commands for `due`.
fn commands(settings: &HandoffSettings, due: &[(u64, MinedRelay)]) -> Vec<Vec<Vec<u8>>> {
    let now = unix_nanos();
    due.iter()
        .map(|(_, r)| {
            vec![
                b"EVAL".to_vec(),
                ADD_ONCE.as_bytes().to_vec(),
                b"2".to_vec(),
                stream_name(&settings.stream_prefix, &r.supplier).into_bytes(),
                dedup_key(&r.relay_hash).into_bytes(),
                message(r, now).encode(),
                settings.dedup_ttl_secs.to_string().into_bytes(),
            ]
        })
        .collect()
}

/// Backoff before the next attempt of a relay Redis refused `attempts` times.
fn retry_delay(attempts: u32, max: Duration) -> Duration {
    FIRST_BACKOFF.saturating_mul(1u32 << attempts.min(16)).min(max)
}

/// What each reply means for its relay.
fn outcome(relay: &MinedRelay, reply: Reply, settings: &HandoffSettings, stats: &HandoffStats) -> Settle {
    let refusal = match reply {
        Reply::Bulk(Some(_)) => {
            stats.handed_off.fetch_add(1, Ordering::Relaxed);
            return Settle::HandedOff;
        }
        Reply::Bulk(None) => {
            stats.already_in_stream.fetch_add(1, Ordering::Relaxed);
            return Settle::HandedOff;
        }
        Reply::Error(m) => m,
        other => format!("unexpected reply {other:?}"),
    };
    stats.refused.fetch_add(1, Ordering::Relaxed);
    let mut next = relay.clone();
    next.attempts += 1;
    next.last_error = refusal.clone();
    log::warn!(
        "event=shannon_handoff_refused supplier={} relay_hash={} attempts={} error={refusal:?}",
        relay.supplier,
        hex::encode(relay.relay_hash),
        next.attempts
    );
    if next.attempts >= MAX_ATTEMPTS {
        stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        Settle::Dead(Box::new(next), format!("redis refused it {MAX_ATTEMPTS} times: {refusal}"))
    } else {
        next.not_before_ms = now_ms() + retry_delay(next.attempts, settings.retry_wait_max).as_millis() as u64;
        Settle::Retry(Box::new(next))
    }
}

fn run(queue: MinedQueue, settings: HandoffSettings, kicked: Receiver<()>, stats: Arc<HandoffStats>) {
    let mut conn: Option<Connection> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut failures_logged = 0u64;
    loop {
        let now = now_ms();
        let due = match queue.due(now, BATCH) {
            Ok(due) => due,
            Err(e) => {
                log::error!("event=shannon_queue_read_failed error={e:?}");
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
        };
        if due.is_empty() {
            let wait = match queue.next_due_ms() {
                Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now)).min(IDLE_WAIT),
                _ => IDLE_WAIT,
            };
            if kicked.recv_timeout(wait.max(Duration::from_millis(1))).is_ok() {
                std::thread::sleep(LINGER);
            }
            continue;
        }
        let result = match conn.as_mut() {
            Some(c) => c.pipeline(&commands(&settings, &due)),
            None => match Connection::connect(&settings.target, REDIS_TIMEOUT) {
                Ok(c) => {
                    if failures_logged > 0 || !stats.redis_up.load(Ordering::Relaxed) {
                        log::info!("event=shannon_redis_connected redis={:?} pending={}", settings.target, due.len());
                    }
                    stats.redis_up.store(true, Ordering::Relaxed);
                    failures_logged = 0;
                    conn.insert(c).pipeline(&commands(&settings, &due))
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(replies) => {
                backoff = FIRST_BACKOFF;
                let outcomes: Vec<(u64, Settle)> = due.iter().zip(replies).map(|((seq, r), reply)| (*seq, outcome(r, reply, &settings, &stats))).collect();
                // A relay whose delete fails stays pending and is re-sent: the script dedupes it.
                for r in queue.settle_blocking(outcomes) {
                    if let crate::queue::WriteResult::Refused(e) = r {
                        log::error!("event=shannon_settle_failed error={e:?} note=\"kept queued; the re-send is deduplicated\"");
                        break;
                    }
                }
            }
            Err(e) => {
                conn = None;
                stats.redis_up.store(false, Ordering::Relaxed);
                stats.redis_failures.fetch_add(1, Ordering::Relaxed);
                *stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.to_string();
                // The first failure and then one line per doubling of the wait.
                if failures_logged == 0 || backoff >= settings.retry_wait_max {
                    log::warn!(
                        "event=shannon_redis_unreachable redis={:?} pending_due={} retry_ms={} error={:?}",
                        settings.target,
                        due.len(),
                        backoff.as_millis(),
                        redis_error_text(&e)
                    );
                }
                failures_logged += 1;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(settings.retry_wait_max);
            }
        }
    }
}

fn redis_error_text(e: &RedisError) -> String {
    crate::ops::redact::scrub(&e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_dedup_keys_are_per_supplier_and_per_relay_hash() {
        assert_eq!(stream_name("ha:relays", "pokt1abc"), "ha:relays:pokt1abc");
        assert_eq!(dedup_key(&[0xab; 32]), format!("meshd:handoff:{}", "ab".repeat(32)));
    }

    #[test]
    fn retries_back_off_to_the_cap_and_end_in_a_dead_letter() {
        assert_eq!(retry_delay(1, Duration::from_secs(30)), Duration::from_millis(200));
        assert_eq!(retry_delay(20, Duration::from_secs(30)), Duration::from_secs(30));
        let settings = HandoffSettings {
            target: RedisTarget::parse("redis://127.0.0.1:1").unwrap(),
            stream_prefix: "p".into(),
            dedup_ttl_secs: 1,
            retry_wait_max: Duration::from_secs(1),
        };
        let stats = HandoffStats::default();
        let mut r = crate::supplier::mined_queue::tests::sample(1);
        assert!(matches!(outcome(&r, Reply::Bulk(Some(b"1-0".to_vec())), &settings, &stats), Settle::HandedOff));
        assert!(matches!(outcome(&r, Reply::Bulk(None), &settings, &stats), Settle::HandedOff));
        match outcome(&r, Reply::Error("WRONGTYPE".into()), &settings, &stats) {
            Settle::Retry(next) => assert!(next.attempts == 1 && next.not_before_ms > now_ms() && next.last_error == "WRONGTYPE"),
            _ => panic!("a first refusal is retried"),
        }
        r.attempts = MAX_ATTEMPTS - 1;
        assert!(matches!(outcome(&r, Reply::Error("WRONGTYPE".into()), &settings, &stats), Settle::Dead(_, ref why) if why.contains("WRONGTYPE")));
        assert_eq!(
            (stats.handed_off.load(Ordering::Relaxed), stats.already_in_stream.load(Ordering::Relaxed), stats.refused.load(Ordering::Relaxed)),
            (1, 1, 2)
        );
    }
}
