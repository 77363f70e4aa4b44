//! The chain's current height as the supplier edge knows it: a background task polls the full
//! node's latest block every `interval` and the relay path reads the last value (§3.1 item 1
//! needs the current height for the grace window; §7 item 7).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::fullnode::FullNodeClient;

/// The last polled height and when it was read. Executor-only.
#[derive(Debug, Default)]
pub struct CurrentHeight {
    height: Cell<Option<i64>>,
    updated: Cell<Option<Instant>>,
    failures: Cell<u64>,
}

impl CurrentHeight {
    pub fn new() -> Rc<CurrentHeight> {
        Rc::new(CurrentHeight::default())
    }

    /// The last height read, if any poll has answered.
    pub fn get(&self) -> Option<i64> {
        self.height.get()
    }

    /// How old the last height is.
    pub fn age(&self) -> Option<Duration> {
        self.updated.get().map(|t| t.elapsed())
    }

    /// Polls that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.get()
    }

    /// Record a height; heights never go back (a lagging full node behind the failover does
    /// not rewind the edge's clock).
    pub fn set(&self, height: i64) {
        if self.height.get().is_none_or(|h| height >= h) {
            self.height.set(Some(height));
        }
        self.updated.set(Some(Instant::now()));
    }

    /// Poll `latest_height` every `interval`, forever (spawn it; dropping the task stops it).
    /// `on_new` runs after each height increase (e.g. session cache eviction).
    pub async fn poll(self: Rc<Self>, client: FullNodeClient, interval: Duration, on_new: impl Fn(i64)) {
        loop {
            match client.latest_height().await {
                Ok(h) => {
                    let before = self.get();
                    self.set(h);
                    if before.is_none_or(|b| h > b) {
                        on_new(h);
                    }
                }
                Err(e) => {
                    self.failures.set(self.failures.get() + 1);
                    log::warn!("event=fullnode_height_poll_failed error={:?}", e.to_string());
                }
            }
            async_io::Timer::after(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_never_go_back() {
        let h = CurrentHeight::new();
        assert_eq!((h.get(), h.age()), (None, None));
        h.set(10);
        h.set(9);
        assert_eq!(h.get(), Some(10));
        h.set(11);
        assert_eq!(h.get(), Some(11));
        assert!(h.age().unwrap() < Duration::from_secs(1));
    }
}
