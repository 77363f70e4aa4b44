//! Delivers queued publishes: one loop walks the pending records oldest first and sends each
//! to the pool (sticky synced node first, failover after). A round that reaches no node, or a
//! node answering 5xx, reschedules the record with exponential backoff from 1 s (the Go
//! client's `RetryWaitMin`, §1.2) capped at `publish_retry_wait_max`; a record is given up only
//! after `publish_max_age` (default 14 days: an ATX stays useful for its whole epoch). When a node becomes synced again, every
//! pending record is tried at once, whatever its backoff says.
//!
//! Exactly-once delivery by content hash holds except for one window: if meshd dies after a
//! node accepted a blob but before the tombstone is committed, the blob goes out again after
//! the restart. Gossip deduplicates it; the node sees the same ATX twice, which is harmless.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::publish_queue::{ContentHash, PublishState, QueuedPublish, TOMBSTONE_RETENTION_MS};
use super::upstream::{forward, Forwarded, Outgoing, Select, UpstreamAnswer};
use super::State;
use crate::queue::record::now_ms;

/// Records handled per pass.
pub const BATCH: usize = 64;
/// First retry delay.
pub const RETRY_WAIT_MIN_MS: u64 = 1_000;

pub enum Settled {
    /// The node accepted it; its answer.
    Delivered(UpstreamAnswer),
    /// The node refused it for good (4xx); its answer.
    Rejected(UpstreamAnswer),
    /// Try again at this time (unix ms).
    Retry(u64),
}

pub fn backoff_ms(attempts: u32, max_ms: u64) -> u64 {
    RETRY_WAIT_MIN_MS.saturating_mul(1u64 << attempts.saturating_sub(1).min(30)).min(max_ms.max(1))
}

/// The request that replays a queued record.
pub fn outgoing(record: &QueuedPublish) -> Outgoing {
    let mut headers = Vec::new();
    if !record.content_type.is_empty() {
        headers.push(("Content-Type".to_string(), record.content_type.clone()));
    }
    Outgoing { method: "POST".into(), path_and_query: record.route.path(), headers, body: record.body.clone() }
}

/// Record the outcome of one delivery round in the queue and the counters.
pub async fn settle(st: &State, hash: &ContentHash, mut record: QueuedPublish, fwd: Forwarded) -> Settled {
    let now = now_ms();
    let settled = match fwd {
        Forwarded::Answer { node, answer } if (200..300).contains(&answer.status) => {
            let url = st.nodes.upstreams[node].url.clone();
            let c = &st.nodes.upstreams[node].counters;
            c.publishes_delivered.set(c.publishes_delivered.get() + 1);
            log::info!(
                "event=spacemesh_publish_delivered route={} node={url} attempts={} queued_ms_ago={} hash={}",
                record.route.path(),
                record.attempts,
                now.saturating_sub(record.queued_at_ms),
                hex::encode(hash)
            );
            record.state = PublishState::Delivered { at_ms: now, url };
            Settled::Delivered(answer)
        }
        Forwarded::Answer { node, answer } if (400..500).contains(&answer.status) => {
            log::warn!(
                "event=spacemesh_publish_rejected route={} node={} status={} answer={:?} hash={}",
                record.route.path(),
                st.nodes.upstreams[node].url,
                answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]),
                hex::encode(hash)
            );
            st.publishes.rejected.set(st.publishes.rejected.get() + 1);
            record.state = PublishState::Rejected { at_ms: now, status: answer.status, body: answer.body.clone() };
            Settled::Rejected(answer)
        }
        other => {
            let error = match other {
                Forwarded::Answer { node, answer } => format!("{} answered {}", st.nodes.upstreams[node].url, answer.status),
                Forwarded::Exhausted { errors, .. } if errors.is_empty() => "no node service to try".to_string(),
                Forwarded::Exhausted { errors, .. } => errors.join("; "),
            };
            record.attempts = record.attempts.saturating_add(1);
            record.not_before_ms = now + backoff_ms(record.attempts, st.settings.publish_retry_wait_max);
            log::warn!(
                "event=spacemesh_publish_retry route={} attempts={} retry_in_ms={} error={error:?}",
                record.route.path(),
                record.attempts,
                record.not_before_ms - now
            );
            record.last_error = error;
            st.publishes.retries.set(st.publishes.retries.get() + 1);
            Settled::Retry(record.not_before_ms)
        }
    };
    let (q, h) = (st.queue.clone(), *hash);
    match smol::unblock(move || q.update(&h, &record)).await {
        Ok(true) => {}
        Ok(false) => log::warn!("event=spacemesh_publish_vanished hash={}", hex::encode(hash)),
        // A delivered record that could not be marked goes out again later (at-least-once).
        Err(e) => log::error!("event=spacemesh_publish_update_failed hash={} error={e:?}", hex::encode(hash)),
    }
    settled
}

enum Woken {
    Timer,
    NodeReady,
    NewPublish,
}

/// Give up publishes no node took within `publish_max_age` (an ATX is worthless after its
/// epoch); each is logged with what it waited for.
async fn expire_old(st: &State) {
    let q = st.queue.clone();
    let now = now_ms();
    let cut = now.saturating_sub(st.settings.publish_max_age.saturating_mul(1000));
    match smol::unblock(move || q.expire(cut, now)).await {
        Ok(expired) => {
            for (hash, r) in &expired {
                log::warn!(
                    "event=spacemesh_publish_expired route={} client={} queued_ms_ago={} attempts={} last_error={:?} hash={} (no synced node took it within publish_max_age)",
                    r.route.path(),
                    r.client,
                    now.saturating_sub(r.queued_at_ms),
                    r.attempts,
                    r.last_error,
                    hex::encode(hash)
                );
            }
            st.publishes.expired.set(st.publishes.expired.get() + expired.len() as u64);
        }
        Err(e) => log::error!("event=spacemesh_publish_expire_failed error={e:?}"),
    }
}

/// The delivery loop (spawned once by `start`).
pub async fn run(st: Rc<State>, woken: async_channel::Receiver<()>) {
    let retry_max = Duration::from_millis(st.settings.publish_retry_wait_max.max(1));
    let mut catch_up = true;
    let mut next_prune = Instant::now();
    loop {
        // Listen before scanning, so a node turning ready during the scan still wakes us.
        let ready = st.nodes.became_ready.listen();
        if Instant::now() >= next_prune {
            let q = st.queue.clone();
            match smol::unblock(move || q.prune(now_ms().saturating_sub(TOMBSTONE_RETENTION_MS))).await {
                Ok(0) => {}
                Ok(n) => log::info!("event=spacemesh_publish_tombstones_pruned count={n}"),
                Err(e) => log::error!("event=spacemesh_publish_prune_failed error={e:?}"),
            }
            next_prune = Instant::now() + Duration::from_secs(3600);
        }
        let q = st.queue.clone();
        let pending = match smol::unblock(move || q.pending(BATCH)).await {
            Ok(p) => p,
            Err(e) => {
                log::error!("event=spacemesh_publish_scan_failed error={e:?}");
                Vec::new()
            }
        };
        let mut next_due: Option<u64> = None;
        let max_age_ms = st.settings.publish_max_age.saturating_mul(1000);
        if pending.iter().any(|(_, r)| now_ms().saturating_sub(r.queued_at_ms) > max_age_ms) {
            expire_old(&st).await;
        }
        for (hash, record) in pending {
            let now = now_ms();
            if now.saturating_sub(record.queued_at_ms) > max_age_ms {
                continue; // just expired
            }
            if !catch_up && record.not_before_ms > now {
                next_due = Some(next_due.map_or(record.not_before_ms, |t| t.min(record.not_before_ms)));
                continue;
            }
            if !st.in_flight.borrow_mut().insert(hash) {
                continue; // a client request is delivering it inline right now
            }
            let deadline = Instant::now() + Duration::from_millis(st.settings.request_timeout);
            let fwd = forward(&st.nodes, &st.client, Arc::new(outgoing(&record)), Select::All, 1, deadline).await;
            let settled = settle(&st, &hash, record, fwd).await;
            st.in_flight.borrow_mut().remove(&hash);
            match settled {
                Settled::Delivered(_) => st.publishes.delivered_queued.set(st.publishes.delivered_queued.get() + 1),
                Settled::Rejected(_) => {}
                Settled::Retry(at) => next_due = Some(next_due.map_or(at, |t| t.min(at))),
            }
        }
        catch_up = false;
        let wait = next_due.map_or(retry_max, |t| Duration::from_millis(t.saturating_sub(now_ms())).min(retry_max));
        let timer = async {
            async_io::Timer::after(wait).await;
            Woken::Timer
        };
        let on_ready = async {
            ready.await;
            Woken::NodeReady
        };
        let on_new = async {
            // A closed channel cannot happen while `st` holds the sender; treat it as a timer.
            let _ = woken.recv().await;
            Woken::NewPublish
        };
        match futures_lite::future::or(futures_lite::future::or(timer, on_ready), on_new).await {
            Woken::NodeReady => catch_up = true,
            Woken::Timer | Woken::NewPublish => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_the_cap() {
        let got: Vec<u64> = (1..=7).map(|a| backoff_ms(a, 30_000)).collect();
        assert_eq!(got, vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(backoff_ms(0, 30_000), 1_000);
        assert_eq!(backoff_ms(500, 30_000), 30_000, "no overflow on huge attempt counts");
        assert_eq!(backoff_ms(3, 500), 500);
    }
}
