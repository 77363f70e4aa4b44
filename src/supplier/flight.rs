//! A single-flight cache for the executor thread: the first caller for a key runs the fetch,
//! concurrent callers for the same key wait for its outcome (an `event_listener::Event`), and
//! the outcome is kept — successes until evicted, failures only for a short time so a
//! transient full-node error does not poison the key (the idea of `relay::sessions`, made
//! generic for the supplier caches of [`super::sessions`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::rc::Rc;
use std::time::{Duration, Instant};

use event_listener::Event;

enum Slot<V, E> {
    Fetching(Rc<Event>),
    Ready(V),
    Failed { error: E, until: Instant },
}

/// What a caller does after looking at the slot.
enum Step {
    Wait(event_listener::EventListener),
    Fetch(Rc<Event>),
}

/// Keyed single-flight cache. `V` and `E` are cloned out to every waiter (use `Rc` for big values).
pub(crate) struct Flight<K, V, E> {
    slots: RefCell<HashMap<K, Slot<V, E>>>,
}

impl<K: Eq + Hash + Clone, V: Clone, E: Clone> Flight<K, V, E> {
    pub(crate) fn new() -> Self {
        Flight { slots: RefCell::new(HashMap::new()) }
    }

    /// The cached value, or the outcome of `fetch` run once for all concurrent callers. A
    /// failure is answered from the cache for `fail_ttl`; `cancelled` is what waiters get
    /// when the fetching task is dropped mid-way.
    pub(crate) async fn get<F, Fut>(&self, key: &K, fail_ttl: Duration, cancelled: impl Fn() -> E, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let mut fetch = Some(fetch);
        loop {
            // The borrow ends with this block: nothing below holds it across an await.
            let step = {
                let mut slots = self.slots.borrow_mut();
                match slots.get(key) {
                    Some(Slot::Ready(v)) => return Ok(v.clone()),
                    Some(Slot::Failed { error, until }) if Instant::now() < *until => return Err(error.clone()),
                    Some(Slot::Fetching(event)) => Step::Wait(event.listen()),
                    _ => {
                        let event = Rc::new(Event::new());
                        slots.insert(key.clone(), Slot::Fetching(event.clone()));
                        Step::Fetch(event)
                    }
                }
            };
            match step {
                Step::Wait(listener) => listener.await,
                Step::Fetch(event) => {
                    let mut guard = Guard { flight: self, key: Some(key.clone()), event, outcome: None, cancelled: &cancelled };
                    let fetch = fetch.take().expect("a caller fetches at most once");
                    let outcome = fetch().await;
                    guard.outcome = Some(match &outcome {
                        Ok(v) => Slot::Ready(v.clone()),
                        Err(e) => Slot::Failed { error: e.clone(), until: Instant::now() + fail_ttl },
                    });
                    drop(guard);
                    return outcome;
                }
            }
        }
    }

    /// The value if it is cached, without fetching.
    pub(crate) fn cached(&self, key: &K) -> Option<V> {
        match self.slots.borrow().get(key) {
            Some(Slot::Ready(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// Keep the ready values `keep` accepts; expired failures go, fetches in flight stay.
    /// Returns how many entries were removed.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) -> usize {
        let now = Instant::now();
        let mut slots = self.slots.borrow_mut();
        let before = slots.len();
        slots.retain(|k, slot| match slot {
            Slot::Ready(v) => keep(k, v),
            Slot::Failed { until, .. } => *until > now,
            Slot::Fetching(_) => true,
        });
        before - slots.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len()
    }
}

/// Stores the fetch outcome and wakes the waiters, also when the fetching task is dropped
/// (then the waiters get the `cancelled` error, cached for no time at all).
struct Guard<'a, K: Eq + Hash, V, E> {
    flight: &'a Flight<K, V, E>,
    key: Option<K>,
    event: Rc<Event>,
    outcome: Option<Slot<V, E>>,
    cancelled: &'a dyn Fn() -> E,
}

impl<K: Eq + Hash, V, E> Drop for Guard<'_, K, V, E> {
    fn drop(&mut self) {
        let slot = self.outcome.take().unwrap_or_else(|| Slot::Failed { error: (self.cancelled)(), until: Instant::now() });
        if let Some(key) = self.key.take() {
            self.flight.slots.borrow_mut().insert(key, slot);
        }
        self.event.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn run<T>(f: impl Future<Output = T>) -> T {
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(f))
    }

    #[test]
    fn concurrent_callers_share_one_fetch_and_failures_expire() {
        let flight: Flight<u8, Rc<String>, String> = Flight::new();
        let calls = Cell::new(0);
        let fetch = |ok: bool| {
            let calls = &calls;
            move || async move {
                calls.set(calls.get() + 1);
                async_io::Timer::after(Duration::from_millis(20)).await;
                if ok {
                    Ok(Rc::new("v".to_string()))
                } else {
                    Err("down".to_string())
                }
            }
        };
        let ttl = Duration::from_millis(60);
        run(async {
            let cancel = || "cancelled".to_string();
            let (a, b) = futures_lite::future::zip(flight.get(&1, ttl, cancel, fetch(false)), flight.get(&1, ttl, cancel, fetch(false))).await;
            assert_eq!((a.unwrap_err(), b.unwrap_err()), ("down".to_string(), "down".to_string()));
            assert_eq!(calls.get(), 1, "one fetch for both callers");
            assert_eq!(flight.get(&1, ttl, cancel, fetch(true)).await.unwrap_err(), "down", "the failure is cached for its ttl");
            assert_eq!(calls.get(), 1);
            async_io::Timer::after(ttl).await;
            assert_eq!(*flight.get(&1, ttl, cancel, fetch(true)).await.unwrap(), "v");
            assert_eq!(calls.get(), 2);
            assert_eq!(*flight.get(&1, ttl, cancel, fetch(false)).await.unwrap(), "v", "successes stay");
            assert_eq!(calls.get(), 2);
        });
        assert_eq!(flight.retain(|_, _| false), 1);
        assert!(flight.cached(&1).is_none());
    }

    #[test]
    fn a_dropped_fetch_wakes_its_waiters() {
        let flight: Flight<u8, u32, String> = Flight::new();
        run(async {
            let slow = flight.get(
                &7,
                Duration::from_secs(60),
                || "cancelled".to_string(),
                || async {
                    async_io::Timer::after(Duration::from_secs(60)).await;
                    Ok(1)
                },
            );
            let waiter = flight.get(&7, Duration::from_secs(60), || "cancelled".to_string(), || async { Ok(2) });
            // The first fetch is abandoned after 20 ms; the waiter then fetches itself.
            let first = futures_lite::future::or(async { Some(slow.await) }, async {
                async_io::Timer::after(Duration::from_millis(20)).await;
                None
            });
            let (first, second) = futures_lite::future::zip(first, waiter).await;
            assert!(first.is_none());
            assert_eq!(second, Ok(2), "the waiter fetched after the abandoned fetch");
        });
    }
}
