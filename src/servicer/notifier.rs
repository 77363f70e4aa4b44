//! Notifier: drains the durable queue to the servicer nodes (`POST /v1/private/mesh/relay`).
//!
//! One dispatcher per node walks its servicers' FIFOs in LMDB and keeps at most
//! [`IN_FLIGHT_PER_NODE`] notifies in flight. A notify's slot is freed as soon as the servicer
//! answers; the record's queue update (its deletion, mostly) is then committed by the group
//! writer while the next notifies are already on the wire, so deletions share fsyncs instead of
//! each one holding a slot through its own (`bench/run.sh drain`). Until that commit the record
//! stays marked in flight, so no scan sends it again; at most [`UNSETTLED_PER_NODE`] records
//! per node are notified or waiting for their commit. A crash before the commit loses nothing:
//! the record is still queued and its next notify is answered 37 (already known), which counts
//! as delivered. Answers decide what happens to a record:
//! - accepted, or 37 (the servicer already has the proof) → deleted;
//! - a non-retryable code → dead-letter store with the servicer's reason;
//! - a retryable code → retried with backoff between `servicer_retry_wait_min/max`; after
//!   `servicer_retry_max_times` it moves to a slow lane (every [`SLOW_LANE`]) until its session
//!   can no longer be claimed, then to the dead-letter store — never dropped silently;
//! - the node is down (transport error, 5xx, syncing) → the URL used is benched and the record
//!   is untouched: an outage costs no attempts and loses nothing. When the node has another
//!   usable URL the record goes there on the next pass (failover); otherwise the node pauses
//!   with backoff.
//!
//! Records are keyed by servicer address, never by URL: each pass asks `App::endpoint` where
//! the node is reachable now and reads the node's current address list, so a failover or a hot
//! reload (a node gaining, losing or taking over addresses) needs no queue change. A node
//! removed by a reload has its dispatcher end; its relays wait in LMDB for the address to
//! come back.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::app::{App, Counters};
use crate::logline;
use crate::protocol::session::latest_session_height;
use crate::queue::record::now_ms;
use crate::queue::{PendingKey, QueuedRelay, WriteOp, WriteResult};
use crate::servicer::api::NotifyOutcome;
use crate::servicer::fleet::{Fleet, Node};

/// Notifies in flight per servicer node.
pub const IN_FLIGHT_PER_NODE: usize = 8;
/// Records of one node that are being notified or whose answer awaits its queue commit.
pub const UNSETTLED_PER_NODE: usize = 512;
/// Records read from LMDB per dispatcher pass.
pub const SCAN_BATCH: usize = 64;
/// Retry interval once a relay has used its `servicer_retry_max_times` attempts.
pub const SLOW_LANE: Duration = Duration::from_secs(60);
/// Longest a dispatcher sleeps without a wake-up (also picks up `meshd queue replay-dead`).
pub const IDLE_POLL: Duration = Duration::from_secs(1);
/// After a wake-up with nothing due (a relay just served, a notify just settled), the
/// dispatcher waits this long before it reads the queue again: the relays served meanwhile are
/// read in one scan and notified together, so their deletions share commits. Without it a
/// lightly loaded node paid one scan and one fsync'd deletion per relay (`bench/run.sh chainlat
/// --rate 100`). A relay is claimable for sessions to come: 100 ms later costs nothing.
pub const NOTIFY_LINGER: Duration = Duration::from_millis(100);

/// Per-node delivery state shared by its dispatcher and deliveries; lives in the node's
/// runtime (`fleet::NodeRuntime`), so it survives reloads that keep the node.
#[derive(Debug, Default)]
pub(crate) struct NodeLane {
    wake: Event,
    in_flight: RefCell<HashSet<PendingKey>>,
    paused_until: Cell<Option<Instant>>,
    consecutive_failures: Cell<u32>,
}

impl NodeLane {
    /// Wake the dispatcher (it re-reads the fleet, so a retired node's dispatcher ends).
    pub(crate) fn wake_all(&self) {
        self.wake.notify(usize::MAX);
    }
}

/// Entry points of the notifier; the per-node state is in each node's lane.
#[derive(Default)]
pub struct Notifier;

impl Notifier {
    pub fn new() -> Notifier {
        Notifier
    }

    /// A relay for this node was queued.
    pub fn wake(&self, node: &Node) {
        node.rt.lane.wake.notify(1);
    }

    /// Notify failures in a row of `node` while it does not take them (0: it does).
    pub fn failures(&self, node: &Node) -> u32 {
        node.rt.lane.consecutive_failures.get()
    }

    /// Notifies currently in flight, all nodes of `fleet`.
    pub fn in_flight(&self, fleet: &Fleet) -> usize {
        fleet.nodes.iter().map(|n| n.rt.lane.in_flight.borrow().len()).sum()
    }

    /// Start the dispatcher of node `id`; it ends when the node leaves the fleet.
    pub fn spawn_dispatcher(app: &Rc<App>, id: u64, ex: &'static smol::LocalExecutor<'static>) {
        ex.spawn(dispatch(app.clone(), id, ex)).detach();
    }
}

/// Wait before retry `attempt` (0-based): `min(wait_min * 2^attempt, wait_max)` milliseconds.
pub fn backoff(attempt: u32, wait_min_ms: u64, wait_max_ms: u64) -> Duration {
    let factor = 1u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX);
    Duration::from_millis(wait_min_ms.saturating_mul(factor).min(wait_max_ms.max(wait_min_ms)))
}

async fn dispatch(app: Rc<App>, id: u64, ex: &'static smol::LocalExecutor<'static>) {
    let permits = std::sync::Arc::new(smol::lock::Semaphore::new(IN_FLIGHT_PER_NODE));
    let unsettled = std::sync::Arc::new(smol::lock::Semaphore::new(UNSETTLED_PER_NODE));
    loop {
        // The current snapshot of the node: its addresses may have changed with a reload.
        let Some(node) = app.fleet().node(id).cloned() else {
            log::debug!("event=dispatcher_stopped id={id} reason=\"node removed by a reload\"");
            return;
        };
        let rt = node.rt.clone();
        let lane = &rt.lane;
        if let Some(until) = lane.paused_until.get() {
            if until > Instant::now() {
                drop(node);
                async_io::Timer::at(until).await;
            }
            lane.paused_until.set(None);
            continue;
        }
        let listener = lane.wake.listen();
        let servicers = node.address_bytes.clone();
        let skip = lane.in_flight.borrow().clone();
        let store = app.queue.store().clone();
        let now = now_ms();
        let scanned = smol::unblock(move || store.due(&servicers, &skip, now, SCAN_BATCH)).await;
        let (batch, next_due) = match scanned {
            Ok(found) => found,
            Err(e) => {
                log::error!("event=queue_read_failed node={} error={e:?}", node.name);
                async_io::Timer::after(IDLE_POLL).await;
                continue;
            }
        };
        if batch.is_empty() {
            drop(node);
            let wait = next_due.map_or(IDLE_POLL, |t| Duration::from_millis(t.saturating_sub(now_ms())).min(IDLE_POLL));
            let woken = futures_lite::future::or(
                async {
                    listener.await;
                    true
                },
                async {
                    async_io::Timer::after(wait).await;
                    false
                },
            )
            .await;
            if woken {
                async_io::Timer::after(NOTIFY_LINGER).await;
            }
            continue;
        }
        for (key, record) in batch {
            if lane.paused_until.get().is_some() || rt.is_retired() {
                break;
            }
            let unsettled = unsettled.acquire_arc().await;
            let permit = permits.acquire_arc().await;
            lane.in_flight.borrow_mut().insert(key);
            let (app, node) = (app.clone(), node.clone());
            ex.spawn(async move {
                deliver(&app, &node, key, record, permit).await;
                let lane = &node.rt.lane;
                lane.in_flight.borrow_mut().remove(&key);
                drop(unsettled);
                lane.wake.notify(1);
            })
            .detach();
        }
    }
}

/// Notify one record and apply the answer. `slot` (the node's notify slot) is given back as
/// soon as the answer is in, before the queue update commits.
async fn deliver(app: &App, node: &Node, key: PendingKey, record: Result<QueuedRelay, String>, slot: smol::lock::SemaphoreGuardArc) {
    let lane = &node.rt.lane;
    let mut record = match record {
        Ok(record) => record,
        Err(decode_error) => {
            logline::note(log::Level::Error, "queue_record_corrupt", &[], &[("key", &hex::encode(key)), ("error", &decode_error)]);
            Counters::inc(&app.counters.dead_lettered);
            if let Ok(address) = <[u8; 20]>::try_from(&key[..20]) {
                app.states.dead_lettered(address, "", 0, &decode_error);
            }
            drop(slot);
            return settle(app, WriteOp::DeadLetter(key, decode_error)).await;
        }
    };
    let s = &app.settings;
    let endpoint = app.endpoint(node);
    let url = endpoint.url.clone();
    let servicer = hex::encode(record.servicer_address);
    let outcome = endpoint.notify(&record.chain, &record.app_public_key, &servicer, &record.relay_json).await;
    let node_name = node.name.as_str();
    record_notify_metrics(app, &record, &outcome);
    match &outcome {
        NotifyOutcome::NodeDown(why) => app.url_failed(node, &url, why),
        _ => app.url_ok(node, &url),
    }
    let update = match outcome {
        NotifyOutcome::Accepted => {
            node_recovered(app, node, lane);
            app.states.notify_ok(record.servicer_address, node_name);
            Counters::inc(&app.counters.notified);
            Some(WriteOp::Delivered(key))
        }
        NotifyOutcome::Rejected(e) if e.code == 37 => {
            // The servicer already holds this proof (e.g. a notify whose answer was lost when
            // meshd was killed): it will be claimed, so it is delivered, not dead.
            node_recovered(app, node, lane);
            app.states.notify_ok(record.servicer_address, node_name);
            Counters::inc(&app.counters.notify_already_known);
            logline::note(log::Level::Info, "notify_already_known", &[("servicer", &servicer)], &[("chain", &record.chain)]);
            Some(WriteOp::Delivered(key))
        }
        NotifyOutcome::Rejected(e) => {
            node_recovered(app, node, lane);
            Counters::inc(&app.counters.dead_lettered);
            let code = e.code.to_string();
            logline::note(
                log::Level::Warn,
                "notify_rejected",
                &[("code", &code), ("servicer", &servicer)],
                &[("chain", &record.chain), ("message", &e.message)],
            );
            let reason = format!("servicer refused the relay: {e}");
            app.states.dead_lettered(record.servicer_address, &record.chain, record.session_height, &reason);
            record.attempts += 1;
            record.last_error = reason.clone();
            Some(WriteOp::DeadLetterTried(key, Box::new(record), reason))
        }
        NotifyOutcome::NodeDown(why) if node.has_usable_url() => {
            // Another URL of the node is usable: the record stays pending and the next pass
            // sends it there (the failed URL is benched, so `App::endpoint` moves on).
            log::debug!("event=notify_url_down node={} url={} reason={why:?}", node.name, app.shown_url(&url));
            None
        }
        NotifyOutcome::NodeDown(why) => {
            if lane.consecutive_failures.get() == 0 {
                for address in node.address_bytes.iter() {
                    app.states.notify_failing(*address, node_name, &why);
                }
            }
            let failures = lane.consecutive_failures.get() + 1;
            lane.consecutive_failures.set(failures);
            let pause = backoff(failures - 1, s.servicer_retry_wait_min.max(10), s.servicer_retry_wait_max.max(1000));
            lane.paused_until.set(Some(Instant::now() + pause));
            if failures == 1 || failures % 100 == 0 {
                log::warn!("event=notify_node_down node={} failures={failures} pause_ms={} reason={why:?}", node.name, pause.as_millis());
            }
            None
        }
        NotifyOutcome::RetryRelay(why) => {
            node_recovered(app, node, lane);
            record.attempts += 1;
            record.last_error = why.clone();
            let op = if u64::from(record.attempts) <= s.servicer_retry_max_times {
                record.not_before_ms = now_ms() + backoff(record.attempts - 1, s.servicer_retry_wait_min, s.servicer_retry_wait_max).as_millis() as u64;
                WriteOp::Reschedule(key, Box::new(record))
            } else if let Some(height) = unclaimable_at(node, record.session_height) {
                Counters::inc(&app.counters.dead_lettered);
                let reason = format!(
                    "gave up after {} attempts: session {} can no longer be claimed at height {height}; last error: {why}",
                    record.attempts, record.session_height
                );
                logline::note(log::Level::Warn, "notify_dead_letter", &[("servicer", &servicer)], &[("reason", &reason)]);
                app.states.dead_lettered(record.servicer_address, &record.chain, record.session_height, &reason);
                WriteOp::DeadLetterTried(key, Box::new(record), reason)
            } else {
                if u64::from(record.attempts) == s.servicer_retry_max_times + 1 {
                    let attempts = record.attempts.to_string();
                    logline::note(log::Level::Warn, "notify_slow_lane", &[("servicer", &servicer)], &[("attempts", &attempts), ("last_error", &why)]);
                    app.states.notify_backlog(record.servicer_address, &record.chain, record.session_height, record.attempts, &why);
                }
                record.not_before_ms = now_ms() + SLOW_LANE.as_millis() as u64;
                WriteOp::Reschedule(key, Box::new(record))
            };
            Some(op)
        }
    };
    // The node's state is up to date (a pause is set before another notify can start): free
    // the slot, then commit the record's update.
    drop(slot);
    if let Some(op) = update {
        settle(app, op).await;
    }
}

/// A notify got an answer from the node: end its failure streak, and when there was one,
/// mark its servicers' notifies as working again.
fn node_recovered(app: &App, node: &Node, lane: &NodeLane) {
    if lane.consecutive_failures.replace(0) > 0 {
        log::info!("event=notify_node_recovered node={}", node.name);
        for address in node.address_bytes.iter() {
            app.states.notify_ok(*address, &node.name);
        }
    }
}

/// `relay_count{is_notify="true"}` with the servicer's answer as an HTTP-like status (200
/// accepted, 400 refused, 503 node not taking notifies) and `error_count` for the failures.
fn record_notify_metrics(app: &App, record: &QueuedRelay, outcome: &NotifyOutcome) {
    let (status, success, error) = match outcome {
        NotifyOutcome::Accepted => (200, true, None),
        NotifyOutcome::Rejected(e) if e.code == 37 => (400, true, None),
        NotifyOutcome::Rejected(e) => (400, false, Some(("notify_response", e.code))),
        NotifyOutcome::RetryRelay(_) => (400, false, Some(("notify_response", 0))),
        NotifyOutcome::NodeDown(_) => (503, false, Some(("notify_request", 0))),
    };
    app.metrics.notify(&record.chain, &record.servicer_address, status, success);
    if let Some((status_type, code)) = error {
        app.metrics.error(&record.chain, Some(&record.servicer_address), true, status_type, code);
    }
}

/// The node's height if a relay of `session_height` can no longer be claimed there (the
/// servicer would refuse it as out of tolerance); None while that is unknown or still possible.
fn unclaimable_at(node: &Node, session_height: i64) -> Option<i64> {
    let status = node.gate().ok()?;
    let bps = status.blocks_per_session;
    let oldest = latest_session_height(status.height, bps) - status.client_session_sync_allowance * bps;
    (session_height < oldest).then_some(status.height)
}

async fn settle(app: &App, op: WriteOp) {
    match app.queue.write(op).await {
        WriteResult::Done | WriteResult::Missing | WriteResult::Appended(_) => {}
        other => logline::note(
            log::Level::Error,
            "queue_update_failed",
            &[],
            &[("result", &format!("{other:?}")), ("note", "the record stays pending and will be retried")],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0, 10, 1200), Duration::from_millis(10));
        assert_eq!(backoff(3, 10, 1200), Duration::from_millis(80));
        assert_eq!(backoff(10, 10, 1200), Duration::from_millis(1200));
        assert_eq!(backoff(80, 10, 1200), Duration::from_millis(1200));
    }
}
