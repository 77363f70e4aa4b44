//! Notifier: delivers every served relay to the servicer node that claims it
//! (`POST /v1/private/mesh/relay`), with a bounded number of notifies in flight per node and
//! exponential backoff between `servicer_retry_wait_min` and `_max`.
//! This version keeps its queue in memory; the durable LMDB queue replaces it (issue B).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::servicer_api::NotifyOutcome;

/// Notifies in flight per servicer node.
pub const IN_FLIGHT_PER_NODE: usize = 4;

/// One served relay waiting to be claimed by its servicer.
#[derive(Debug, Clone)]
pub struct NotifyJob {
    pub node: usize,
    pub servicer_address: String,
    pub chain: String,
    pub app_public_key: String,
    /// The relay exactly as the client sent it.
    pub relay_json: Arc<Vec<u8>>,
}

pub struct Notifier {
    queues: Vec<async_channel::Sender<NotifyJob>>,
    receivers: Vec<async_channel::Receiver<NotifyJob>>,
}

impl Notifier {
    pub fn new(node_count: usize, capacity: usize) -> Notifier {
        let (queues, receivers) = (0..node_count).map(|_| async_channel::bounded(capacity.max(1))).unzip();
        Notifier { queues, receivers }
    }

    /// Queue a relay; false when the node's queue is full (the relay is logged as lost).
    pub fn enqueue(&self, job: NotifyJob) -> bool {
        self.queues[job.node].try_send(job).is_ok()
    }

    pub fn depth(&self) -> usize {
        self.queues.iter().map(|q| q.len()).sum()
    }

    /// Spawn the delivery workers for every node on the executor.
    pub fn spawn_workers(app: &Rc<App>, ex: &smol::LocalExecutor<'static>) {
        for rx in &app.notifier.receivers {
            for _ in 0..IN_FLIGHT_PER_NODE {
                ex.spawn(worker(app.clone(), rx.clone())).detach();
            }
        }
    }
}

/// Wait before retry `attempt` (0-based): `min(wait_min * 2^attempt, wait_max)` milliseconds.
pub fn backoff(attempt: u32, wait_min_ms: u64, wait_max_ms: u64) -> Duration {
    let factor = 1u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX);
    Duration::from_millis(wait_min_ms.saturating_mul(factor).min(wait_max_ms.max(wait_min_ms)))
}

async fn worker(app: Rc<App>, rx: async_channel::Receiver<NotifyJob>) {
    while let Ok(job) = rx.recv().await {
        deliver(&app, job).await;
    }
}

async fn deliver(app: &App, job: NotifyJob) {
    let s = &app.settings;
    let endpoint = app.endpoint(job.node);
    let mut attempt = 0u32;
    loop {
        let (ep, j) = (endpoint.clone(), job.clone());
        let outcome = smol::unblock(move || ep.notify(&j.chain, &j.app_public_key, &j.servicer_address, &j.relay_json)).await;
        match outcome {
            NotifyOutcome::Accepted => {
                app.counters.notified.set(app.counters.notified.get() + 1);
                return;
            }
            NotifyOutcome::Rejected(e) => {
                app.counters.notify_rejected.set(app.counters.notify_rejected.get() + 1);
                log::warn!("event=notify_rejected servicer={} chain={} code={} message={:?}", job.servicer_address, job.chain, e.code, e.message);
                return;
            }
            NotifyOutcome::Retry(why) if u64::from(attempt) < s.servicer_retry_max_times => {
                log::debug!("event=notify_retry servicer={} attempt={} reason={why:?}", job.servicer_address, attempt + 1);
                async_io::Timer::after(backoff(attempt, s.servicer_retry_wait_min, s.servicer_retry_wait_max)).await;
                attempt += 1;
            }
            NotifyOutcome::Retry(why) => {
                app.counters.notify_failed.set(app.counters.notify_failed.get() + 1);
                log::error!(
                    "event=notify_gave_up servicer={} chain={} attempts={} reason={why:?}",
                    job.servicer_address,
                    job.chain,
                    attempt + 1
                );
                return;
            }
        }
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
