//! Session cache: one entry per (session header, servicer), filled from the servicer's
//! `POST /v1/private/mesh/session`. Concurrent relays of a new session share one fetch;
//! the servicer's `remaining_relays` is enforced before serving; refusals are remembered
//! briefly so a burst of bad relays does not hammer the servicer. Duplicate proofs are
//! detected by the durable queue (exactly, across restarts), not here.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::protocol::PocketError;
use crate::servicer::api::SessionGrant;

/// How long a servicer's refusal (45, 60, 90, …) answers for the same session without asking again.
pub const REFUSAL_TTL: Duration = Duration::from_secs(5);
/// How long an unreachable servicer answers for the same session without asking again.
pub const UNREACHABLE_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    /// SHA3 of the session header (app key, chain, session height).
    pub header: [u8; 32],
    /// Servicer public key.
    pub servicer: [u8; 32],
}

/// A live session meshd serves under.
#[derive(Debug)]
pub struct Session {
    pub height: i64,
    /// Relays the servicer still accepts, as of the fetch, minus what meshd reserved since.
    remaining: Cell<i64>,
    served: Cell<u64>,
    /// The servicer's dispatch for this session, already in Go's encoding (sorted keys,
    /// float64 numbers): errors 60/71/14/75 copy it verbatim. Kept as bytes, not a parsed
    /// tree, which costs several times the memory per cached session.
    pub dispatch: Option<Rc<[u8]>>,
}

/// The session's relay budget is spent (code 71).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpent;

impl Session {
    pub fn new(height: i64, grant: SessionGrant) -> Session {
        Session {
            height,
            remaining: Cell::new(grant.remaining_relays),
            served: Cell::new(0),
            dispatch: grant.dispatch.as_ref().map(|d| Rc::from(crate::protocol::gojson::to_vec(d))),
        }
    }

    /// Reserve one relay of the budget, or refuse (71) when it is spent.
    /// Single-threaded executor: check-and-reserve cannot interleave.
    pub fn reserve(&self) -> Result<(), BudgetSpent> {
        if self.remaining.get() <= 0 {
            return Err(BudgetSpent);
        }
        self.remaining.set(self.remaining.get() - 1);
        self.served.set(self.served.get() + 1);
        Ok(())
    }

    /// Give back a reservation whose relay was not served (duplicate, queue refused it).
    pub fn release(&self) {
        self.remaining.set(self.remaining.get() + 1);
        self.served.set(self.served.get().saturating_sub(1));
    }

    pub fn served(&self) -> u64 {
        self.served.get()
    }
    pub fn remaining(&self) -> i64 {
        self.remaining.get()
    }
}

/// Why no session could be had.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionFailure {
    /// The servicer answered with a Pocket error (e.g. 45 app not found, 60, 71).
    Refused(PocketError),
    /// The servicer could not be asked (transport error, odd answer); the text says why.
    Unreachable(String),
}

enum Slot {
    Fetching(Rc<Event>),
    Ready(Rc<Session>),
    Failed { failure: SessionFailure, until: Instant },
}

#[derive(Default)]
pub struct SessionCache {
    slots: RefCell<HashMap<SessionId, Slot>>,
}

/// Marks an abandoned fetch (the awaiting task was dropped) as failed so waiters wake up.
struct FetchGuard<'a> {
    cache: &'a SessionCache,
    id: SessionId,
    event: Rc<Event>,
    done: bool,
}

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let failure = SessionFailure::Unreachable("session fetch was cancelled".into());
            self.cache.slots.borrow_mut().insert(self.id, Slot::Failed { failure, until: Instant::now() });
            self.event.notify(usize::MAX);
        }
    }
}

impl SessionCache {
    pub fn new() -> SessionCache {
        SessionCache::default()
    }

    /// The cached session, or the result of `fetch` — run by the first caller only, while
    /// concurrent callers for the same id wait for its answer.
    pub async fn get<F, Fut>(&self, id: SessionId, height: i64, fetch: F) -> Result<Rc<Session>, SessionFailure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Result<SessionGrant, PocketError>, String>>,
    {
        let mut fetch = Some(fetch);
        loop {
            let listener = {
                let mut slots = self.slots.borrow_mut();
                match slots.get(&id) {
                    Some(Slot::Ready(session)) => return Ok(session.clone()),
                    Some(Slot::Failed { failure, until }) if Instant::now() < *until => return Err(failure.clone()),
                    Some(Slot::Fetching(event)) => event.listen(),
                    _ => {
                        let event = Rc::new(Event::new());
                        slots.insert(id, Slot::Fetching(event.clone()));
                        drop(slots);
                        let mut guard = FetchGuard { cache: self, id, event, done: false };
                        let fetch = fetch.take().expect("a caller fetches at most once");
                        let outcome = fetch().await;
                        let (slot, result) = match outcome {
                            Ok(Ok(grant)) => {
                                let session = Rc::new(Session::new(height, grant));
                                (Slot::Ready(session.clone()), Ok(session))
                            }
                            Ok(Err(refusal)) => {
                                let failure = SessionFailure::Refused(refusal);
                                (Slot::Failed { failure: failure.clone(), until: Instant::now() + REFUSAL_TTL }, Err(failure))
                            }
                            Err(text) => {
                                log::warn!("event=session_fetch_failed session_height={height} error={text:?}");
                                let failure = SessionFailure::Unreachable(text);
                                (Slot::Failed { failure: failure.clone(), until: Instant::now() + UNREACHABLE_TTL }, Err(failure))
                            }
                        };
                        self.slots.borrow_mut().insert(id, slot);
                        guard.done = true;
                        guard.event.notify(usize::MAX);
                        return result;
                    }
                }
            };
            listener.await;
        }
    }

    /// The session if it is cached and ready, without fetching (the outage grace serves only
    /// sessions the servicer already vouched for).
    pub fn cached(&self, id: &SessionId) -> Option<Rc<Session>> {
        match self.slots.borrow().get(id) {
            Some(Slot::Ready(session)) => Some(session.clone()),
            _ => None,
        }
    }

    /// Drop sessions below `min_height` (no longer claimable or servable) and expired refusals.
    /// Returns how many entries were removed.
    pub fn evict_below(&self, min_height: i64) -> usize {
        let now = Instant::now();
        let mut slots = self.slots.borrow_mut();
        let before = slots.len();
        slots.retain(|_, slot| match slot {
            Slot::Ready(s) => s.height >= min_height,
            Slot::Failed { until, .. } => *until > now,
            Slot::Fetching(_) => true,
        });
        before - slots.len()
    }

    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    /// Sessions being served per servicer public key (the status page).
    pub fn ready_by_servicer(&self) -> HashMap<[u8; 32], usize> {
        let mut out = HashMap::new();
        for (id, slot) in self.slots.borrow().iter() {
            if matches!(slot, Slot::Ready(_)) {
                *out.entry(id.servicer).or_insert(0) += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn id(n: u8) -> SessionId {
        SessionId { header: [n; 32], servicer: [0; 32] }
    }
    fn grant(remaining: i64) -> SessionGrant {
        SessionGrant { remaining_relays: remaining, dispatch: None }
    }

    #[test]
    fn concurrent_relays_share_one_fetch() {
        let cache = SessionCache::new();
        let calls = Cell::new(0);
        let ex = smol::LocalExecutor::new();
        smol::block_on(ex.run(async {
            let fetch = || async {
                calls.set(calls.get() + 1);
                async_io::Timer::after(Duration::from_millis(30)).await;
                Ok(Ok(grant(10)))
            };
            let (a, (b, c)) =
                futures_lite::future::zip(cache.get(id(1), 5, fetch), futures_lite::future::zip(cache.get(id(1), 5, fetch), cache.get(id(1), 5, fetch))).await;
            assert!(Rc::ptr_eq(&a.unwrap(), &b.unwrap()));
            assert!(c.is_ok());
        }));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn the_budget_is_enforced_before_serving_and_can_be_given_back() {
        let s = Session::new(5, grant(2));
        assert_eq!(s.reserve(), Ok(()));
        assert_eq!(s.reserve(), Ok(()));
        assert_eq!(s.reserve(), Err(BudgetSpent));
        assert_eq!(s.served(), 2);
        s.release();
        assert_eq!(s.remaining(), 1);
        assert_eq!(s.reserve(), Ok(()));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn refusals_are_cached_briefly_and_eviction_drops_old_sessions() {
        let cache = SessionCache::new();
        let calls = Cell::new(0);
        smol::block_on(async {
            for _ in 0..3 {
                let r = cache
                    .get(id(2), 5, || async {
                        calls.set(calls.get() + 1);
                        Ok(Err(PocketError::pocket(45, "the app could not be found in the world state")))
                    })
                    .await;
                assert!(matches!(r, Err(SessionFailure::Refused(e)) if e.code == 45));
            }
            cache.get(id(3), 9, || async { Ok(Ok(grant(1))) }).await.unwrap();
            cache.get(id(4), 13, || async { Ok(Ok(grant(1))) }).await.unwrap();
        });
        assert_eq!(calls.get(), 1, "the refusal must be served from cache");
        assert_eq!(cache.evict_below(10), 1);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_cancelled_fetch_wakes_waiters_instead_of_hanging_them() {
        let cache = SessionCache::new();
        smol::block_on(async {
            let slow = cache.get(id(5), 5, || async {
                async_io::Timer::after(Duration::from_secs(60)).await;
                Ok(Ok(grant(1)))
            });
            // Poll the slow fetch briefly, then drop it.
            let _ = futures_lite::future::or(async { slow.await.ok() }, async {
                async_io::Timer::after(Duration::from_millis(20)).await;
                None
            })
            .await;
            let r = cache.get(id(5), 5, || async { Ok(Ok(grant(3))) }).await;
            assert_eq!(r.unwrap().remaining(), 3);
        });
    }
}
