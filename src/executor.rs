//! The daemon's executor loop: runs the `LocalExecutor`'s tasks on this thread and lets this
//! thread, not async-io's helper thread, collect the socket events between bursts of tasks.
//!
//! `block_on(ex.run(..))` polls the reactor only once the executor runs dry or after 200 tasks.
//! A relay's signature checks keep the thread busy for hundreds of microseconds, and async-io's
//! `async-io` thread takes the reactor whenever it sees no reactor turn for 50 µs: it then sits
//! in `epoll_wait`, and every event is handed across threads (a futex wake-up, a context switch)
//! to the executor. Here the loop turns the reactor (a non-blocking `epoll_wait`) after each
//! [`REACTOR_TURN`] of task time and whenever the ready tasks are done, so the helper thread
//! finds the reactor turning and stays asleep (bench/RESULTS.md, "executor pacing, backend
//! pool, read buffers").

use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::future;

/// Task time after which the ready queue yields to one non-blocking reactor turn.
const REACTOR_TURN: Duration = Duration::from_micros(50);

/// Run `main` to completion while driving `ex`'s tasks on the current thread. `main` is a task
/// of its own, polled only when woken: polled beside the loop it ran on every turn (the
/// daemon's waits on the signal pipe then cost a `read` that met `EAGAIN` each time).
pub(crate) fn run<T: 'static>(ex: &'static smol::LocalExecutor<'static>, main: impl Future<Output = T> + 'static) -> T {
    let main = ex.spawn(main);
    async_io::block_on(future::or(main, async {
        loop {
            let started = Instant::now();
            let mut ran = false;
            while ex.try_tick() {
                ran = true;
                if started.elapsed() >= REACTOR_TURN {
                    break;
                }
            }
            if ran {
                // Pending but already woken: `block_on` turns the reactor without blocking, then
                // polls again.
                future::yield_now().await;
            } else {
                // Nothing ready: `block_on` blocks in the reactor until an event or a wake-up.
                ex.tick().await;
            }
        }
    }))
}
