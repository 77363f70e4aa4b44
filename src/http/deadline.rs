//! Coarse deadlines: every per-request timeout of the HTTP server and client (the request head,
//! the body, a stalled write, the router's answer bound, an outbound call) is a [`Deadline`]
//! in one process-wide wheel driven by a single async-io timer.
//!
//! An async-io `Timer` wakes async-io's reactor on every registration (`Reactor::insert_timer`
//! calls the poller's notify), and each request used to register three to five of them: that
//! was a good part of the system calls and context switches per relay at low rates
//! (bench/RESULTS.md, "Where the CPU at 100/s goes"). Almost all of these deadlines are
//! cancelled long before they are due. Here a deadline is only an entry in a sorted map,
//! rounded up to a [`TICK`]; the one driver timer is set to the earliest entry, and it is moved
//! (one reactor wake-up) only when a new entry is earlier than the time it is set to. When it
//! fires it wakes every entry that is due and moves on to the next one: with deadlines of
//! seconds and requests of milliseconds, that is one wake-up per deadline length, not per
//! request.
//!
//! A deadline completes at the earliest at its instant and at the latest one [`TICK`] after it
//! (plus scheduling): right for timeouts of seconds, not for precise short sleeps (use
//! `async_io::Timer` for those).
//!
//! [`CoarseTimer`] is the same wheel as hyper's timer (`header_read_timeout`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use async_io::Timer;

/// Granularity of the wheel: a deadline fires within one tick after its instant.
pub(crate) const TICK: Duration = Duration::from_millis(32);

/// Entries by (tick, id); the id keeps deadlines of one tick apart.
type Key = (u64, u64);

struct Wheel {
    entries: BTreeMap<Key, Waker>,
    next_id: u64,
    /// The driver timer (created on first use) and the tick it is set to, if set.
    timer: Option<Timer>,
    armed: Option<u64>,
}

static WHEEL: Mutex<Wheel> = Mutex::new(Wheel { entries: BTreeMap::new(), next_id: 0, timer: None, armed: None });

/// Tick 0 is the first use; instants before it map to tick 0 (due at once).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn tick_nanos() -> u128 {
    TICK.as_nanos()
}

/// The first tick at or after `when`.
fn tick_at_or_after(when: Instant) -> u64 {
    let since = when.saturating_duration_since(origin()).as_nanos();
    since.div_ceil(tick_nanos()).min(u128::from(u64::MAX)) as u64
}

/// The last tick at or before `when`.
fn tick_at_or_before(when: Instant) -> u64 {
    let since = when.saturating_duration_since(origin()).as_nanos();
    (since / tick_nanos()).min(u128::from(u64::MAX)) as u64
}

fn instant_of(tick: u64) -> Instant {
    let nanos = u128::from(tick) * tick_nanos();
    let secs = (nanos / 1_000_000_000) as u64;
    origin().checked_add(Duration::new(secs, (nanos % 1_000_000_000) as u32)).unwrap_or_else(|| origin() + Duration::from_secs(86_400 * 365 * 100))
}

fn wheel() -> MutexGuard<'static, Wheel> {
    // A panic while the lock was held left the map consistent (every change is one call).
    WHEEL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The waker of the driver timer: called by async-io's reactor when the timer fires.
struct Driver;

impl Wake for Driver {
    fn wake(self: Arc<Self>) {
        fire();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        fire();
    }
}

fn driver_waker() -> &'static Waker {
    static WAKER: OnceLock<Waker> = OnceLock::new();
    WAKER.get_or_init(|| Waker::from(Arc::new(Driver)))
}

impl Wheel {
    /// Set the driver timer to `tick`. Returns false when that instant has already passed
    /// (the caller then fires the wheel once the lock is released).
    fn arm(&mut self, tick: u64) -> bool {
        self.armed = Some(tick);
        let timer = self.timer.get_or_insert_with(Timer::never);
        timer.set_at(instant_of(tick));
        let mut cx = Context::from_waker(driver_waker());
        if Pin::new(timer).poll(&mut cx).is_ready() {
            self.armed = None;
            return false;
        }
        true
    }
}

/// Wake every entry that is due and set the driver to the next one.
fn fire() {
    loop {
        let due = {
            let mut wheel = wheel();
            wheel.armed = None;
            let now = tick_at_or_before(Instant::now());
            let later = wheel.entries.split_off(&(now.saturating_add(1), 0));
            let due = std::mem::replace(&mut wheel.entries, later);
            let rearmed = match wheel.entries.keys().next() {
                Some(&(tick, _)) => wheel.arm(tick),
                None => true,
            };
            if rearmed {
                due.into_values().for_each(Waker::wake);
                return;
            }
            due
        };
        due.into_values().for_each(Waker::wake);
    }
}

/// A future that completes once its instant has passed (within one [`TICK`] after it).
#[derive(Debug)]
pub(crate) struct Deadline {
    when: Instant,
    /// The entry in the wheel, once polled and not yet due.
    key: Option<Key>,
}

impl Deadline {
    pub(crate) fn at(when: Instant) -> Deadline {
        Deadline { when, key: None }
    }

    pub(crate) fn after(duration: Duration) -> Deadline {
        let now = Instant::now();
        Deadline::at(now.checked_add(duration).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 100)))
    }

    /// Move the deadline (hyper resets its head timer for every request on a connection).
    pub(crate) fn reset(&mut self, when: Instant) {
        self.unregister();
        self.when = when;
    }

    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            wheel().entries.remove(&key);
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.when {
            self.unregister();
            return Poll::Ready(());
        }
        let mut wheel = wheel();
        if let Some(key) = self.key {
            match wheel.entries.get_mut(&key) {
                Some(waker) => {
                    if !waker.will_wake(cx.waker()) {
                        waker.clone_from(cx.waker());
                    }
                    return Poll::Pending;
                }
                // Woken by the driver: the entry is gone and the instant has passed, unless the
                // clock disagrees by less than a tick (then register again below).
                None => self.key = None,
            }
        }
        let tick = tick_at_or_after(self.when);
        let id = wheel.next_id;
        wheel.next_id += 1;
        wheel.entries.insert((tick, id), cx.waker().clone());
        self.key = Some((tick, id));
        if wheel.armed.is_none_or(|armed| tick < armed) && !wheel.arm(tick) {
            drop(wheel);
            fire();
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// hyper's timer on the wheel ([`Deadline`] is its `Sleep`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CoarseTimer;

impl hyper::rt::Sleep for Deadline {}

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::after(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::at(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(deadline) => deadline.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl Future<Output = T>) -> T {
        smol::block_on(f)
    }

    #[test]
    fn a_deadline_fires_after_its_instant_and_within_a_tick() {
        run(async {
            for ms in [0u64, 1, 40, 150] {
                let start = Instant::now();
                Deadline::after(Duration::from_millis(ms)).await;
                let took = start.elapsed();
                assert!(took >= Duration::from_millis(ms), "{ms} ms deadline fired after {took:?}");
                assert!(took < Duration::from_millis(ms) + TICK + Duration::from_millis(200), "{ms} ms deadline fired after {took:?}");
            }
        });
    }

    #[test]
    fn many_deadlines_fire_in_order_of_their_instants_and_dropped_ones_never() {
        run(async {
            let start = Instant::now();
            let fired = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let ex = smol::LocalExecutor::new();
            // A far deadline set first, then nearer ones: each nearer one moves the driver.
            let mut tasks = Vec::new();
            for ms in [300u64, 200, 100, 50] {
                let fired = fired.clone();
                tasks.push(ex.spawn(async move {
                    Deadline::after(Duration::from_millis(ms)).await;
                    fired.borrow_mut().push((ms, start.elapsed()));
                }));
            }
            // Dropped before it is due: its entry leaves the wheel.
            let mut dropped = Box::pin(Deadline::after(Duration::from_millis(60)));
            assert!(futures_lite::future::poll_once(dropped.as_mut()).await.is_none());
            drop(dropped);
            ex.run(async {
                for t in tasks {
                    t.await;
                }
            })
            .await;
            let fired = fired.borrow();
            assert_eq!(fired.iter().map(|(ms, _)| *ms).collect::<Vec<_>>(), vec![50, 100, 200, 300]);
            for (ms, at) in fired.iter() {
                assert!(*at >= Duration::from_millis(*ms), "{ms} ms fired at {at:?}");
            }
        });
    }

    #[test]
    fn reset_moves_a_registered_deadline() {
        run(async {
            let start = Instant::now();
            let mut d = Deadline::after(Duration::from_secs(30));
            assert!(futures_lite::future::poll_once(&mut d).await.is_none());
            d.reset(Instant::now() + Duration::from_millis(50));
            d.await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(5), "{took:?}");
        });
    }

    #[test]
    fn hyper_timer_resets_its_own_sleep_in_place() {
        use hyper::rt::Timer as _;
        run(async {
            let timer = CoarseTimer;
            let mut sleep = timer.sleep(Duration::from_secs(30));
            assert!(futures_lite::future::poll_once(sleep.as_mut()).await.is_none());
            let start = Instant::now();
            timer.reset(&mut sleep, start + Duration::from_millis(40));
            assert!(sleep.as_mut().downcast_mut_pin::<Deadline>().is_some());
            sleep.await;
            assert!(start.elapsed() >= Duration::from_millis(40));
        });
    }

    #[test]
    fn ticks_round_up_for_deadlines_and_down_for_now() {
        let o = origin();
        assert_eq!(tick_at_or_after(o), 0);
        assert_eq!(tick_at_or_after(o + Duration::from_nanos(1)), 1);
        assert_eq!(tick_at_or_after(o + TICK), 1);
        assert_eq!(tick_at_or_before(o + TICK - Duration::from_nanos(1)), 0);
        assert_eq!(tick_at_or_before(o + TICK), 1);
        assert!(instant_of(3) == o + TICK * 3);
    }
}
