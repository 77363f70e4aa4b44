//! SIGTERM / SIGINT / SIGHUP for `meshd start`.
//!
//! The handlers only touch atomics and write one byte to a self-pipe (both async-signal-safe);
//! the executor waits on the pipe's read end, so an idle daemon is not woken ten times a
//! second to look at the flags (bench/RESULTS.md: wake-ups per relay at low rates). Without
//! the handlers (the demo and the tests running the daemon in-process) nothing can set the
//! flags and [`next`] waits for good.
//! - First SIGTERM or SIGINT: the daemon stops accepting, lets in-flight relays finish
//!   (bounded), commits the queue and exits 0 (see `daemon::shutdown`).
//! - A second SIGTERM or SIGINT: the handler itself calls `_exit(128 + signal)` at once
//!   (143 / 130). That is safe for the queue: a relay is answered 200 only after its commit,
//!   and LMDB survives any exit (its commits are atomic).
//! - SIGHUP: [`on_sighup`] (reload).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use async_io::Async;
use futures_lite::AsyncReadExt;

use crate::app::{App, Counters};

/// Pause before reading the self-pipe again after a read error (none is expected: its write
/// end is never closed).
const PIPE_RETRY: Duration = Duration::from_millis(100);

/// The self-pipe's write end for the handler (-1: not installed).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The self-pipe's read end, for [`next`].
static WAKE_READ: OnceLock<Async<UnixStream>> = OnceLock::new();

/// SIGTERM/SIGINT received so far.
static TERMINATIONS: AtomicU32 = AtomicU32::new(0);
/// The first termination signal's number.
static TERMINATED_BY: AtomicI32 = AtomicI32::new(0);
/// SIGHUPs received so far.
static HANGUPS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    record(signal);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) and errno access are async-signal-safe; errno is restored so the
        // interrupted code sees its own. The pipe is non-blocking: when it is full a wake-up
        // is already pending, and the byte is not needed.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, [1u8].as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// The handler's flag updates.
fn record(signal: libc::c_int) {
    match signal {
        libc::SIGHUP => {
            HANGUPS.fetch_add(1, Ordering::SeqCst);
        }
        _ => {
            if TERMINATIONS.fetch_add(1, Ordering::SeqCst) >= 1 {
                // SAFETY: _exit is async-signal-safe; nothing is flushed or unwound, on purpose.
                unsafe { libc::_exit(128 + signal) };
            }
            TERMINATED_BY.store(signal, Ordering::SeqCst);
        }
    }
}

/// Install the handlers (once, from `meshd start`; the demo and tests running the daemon
/// in-process keep the default behaviour).
pub fn install() -> Result<(), String> {
    if WAKE_READ.get().is_none() {
        let (read, write) = UnixStream::pair().map_err(|e| format!("cannot create the signal self-pipe: {e}"))?;
        write.set_nonblocking(true).map_err(|e| format!("cannot create the signal self-pipe: {e}"))?;
        let read = Async::new(read).map_err(|e| format!("cannot create the signal self-pipe: {e}"))?;
        if WAKE_READ.set(read).is_ok() {
            // The write end lives as long as the process (the handler may run at any time).
            WAKE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
            std::mem::forget(write);
        }
    }
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only
        // touches atomics and _exit, which are async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(format!("cannot install the handler for signal {signal}: {}", std::io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

/// What the daemon should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Shut down gracefully; the signal number (SIGTERM 15, SIGINT 2).
    Terminate(i32),
    /// SIGHUP.
    Reload,
}

/// Wait for the next signal event (woken by the handler through the self-pipe).
pub async fn next(seen_hangups: &mut u32) -> Event {
    loop {
        if TERMINATIONS.load(Ordering::SeqCst) > 0 {
            return Event::Terminate(TERMINATED_BY.load(Ordering::SeqCst));
        }
        let hangups = HANGUPS.load(Ordering::SeqCst);
        if hangups != *seen_hangups {
            *seen_hangups = hangups;
            return Event::Reload;
        }
        let Some(mut pipe) = WAKE_READ.get() else {
            // No handlers installed: no signal can change the flags.
            return std::future::pending().await;
        };
        let mut bytes = [0u8; 64];
        if pipe.read(&mut bytes).await.is_err() {
            async_io::Timer::after(PIPE_RETRY).await;
        }
    }
}

pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// SIGHUP: reload the keys and chains files. This is the one place the reload is triggered
/// from a signal; the fleet's reload is called from here, so `kill -HUP` and
/// `systemctl reload meshd` (ExecReload) do the same as an interval reload.
pub fn on_sighup(app: &Rc<App>) {
    Counters::inc(&app.counters.reloads_requested);
    log::info!("event=reload_requested source=SIGHUP");
    crate::ops::reload::request_reload(app);
}
