//! Connection guard for the tiny_http listeners. tiny_http reads with no deadline, spends one
//! thread per connection with no cap, and its accept thread ends (or, when a `dup` fails,
//! panics) once descriptors run out. This module bounds all of that from outside tiny_http:
//! - each connection gets the deadlines of the Go server the config describes
//!   (`client_rpc_read_header_timeout`, `_read_timeout`, `_write_timeout`); a connection past
//!   its deadline is shut down, which ends its tiny_http thread;
//! - a connection whose request nobody reads (tiny_http queued it behind a busy thread) makes
//!   the oldest idle connection give its thread up;
//! - at `client_max_connections` (lowered if the descriptor limit cannot afford it), or with
//!   fewer than [`FD_RESERVE`] descriptors left, the oldest idle connections are closed first;
//!   if that is not enough the listener is paused — its socket shut down, so new clients are
//!   refused at once instead of piling up — and it binds again once back under the limits
//!   (see `listener.rs`).
//!
//! tiny_http keeps its sockets to itself, so one guard thread per listener finds the
//! listener's connections in `/proc/self/fd` every [`TICK`]; requests report their progress
//! ([`request_started`], [`body_read`], [`request_done`]) keyed by the client's address.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::config::settings::Settings;

/// How often a guard looks at its listener's connections.
pub const TICK: Duration = Duration::from_millis(200);
/// How often it checks the process's thread count, which moves faster than a scan can follow
/// under a connection flood: tiny_http starts a thread for each accepted connection once its
/// idle threads are taken, so threads started since the last scan are connections it has not
/// seen yet.
const THREAD_CHECK: Duration = Duration::from_millis(25);
/// Descriptors kept free for the queue, outbound calls and logs: below this, accepting pauses.
pub const FD_RESERVE: u64 = 32;
/// Descriptors kept free for connections tiny_http accepts between two looks (a burst can fill
/// a 128-connection accept backlog at once, two descriptors each); when the descriptor limit
/// cannot afford it next to `client_max_connections`, the cap shrinks (at most half of what is
/// free goes to this reserve).
const FD_BURST: u64 = 256;
/// A connection younger than this is never evicted (a client that just connected is about to
/// send its request).
const EVICT_MIN_AGE: Duration = Duration::from_secs(1);
/// Accepting resumes below this share of `client_max_connections` (per cent), so a listener at
/// the cap does not flap every tick.
const RESUME_PERCENT: usize = 90;
/// Under pressure (at the cap, short of descriptors, or paused) idle connections are closed
/// down to this share (per cent), leaving room for new clients once accepting resumes.
const EVICT_TO_PERCENT: usize = 80;
/// A connection whose request bytes sit unread this long has no tiny_http thread: tiny_http
/// hands a connection to a thread it believes idle, so under a burst several can queue behind
/// one thread that is busy with another connection (bench/RESULTS.md finding 5). For each such
/// connection the oldest idle connection that holds a thread is closed, which frees the thread.
const STARVED_AFTER: Duration = Duration::from_millis(300);
/// A table entry not refreshed by a scan or a request for this long belongs to a closed
/// connection.
const FORGET_AFTER: Duration = Duration::from_secs(5);

/// Per-connection deadlines, as Go's `http.Server` applies them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeouts {
    /// From accept until a request's head is read (`client_rpc_read_header_timeout`).
    pub header: Duration,
    /// A request's head and body (`client_rpc_read_timeout`); also how long a kept-alive
    /// connection may idle (Go's `IdleTimeout` falls back to `ReadTimeout`).
    pub read: Duration,
    /// From the request's head to the end of the answer: `client_rpc_write_timeout`, but never
    /// shorter than `client_rpc_timeout` so that bound's 503 still reaches the client.
    pub write: Duration,
}

impl Timeouts {
    /// The incumbent's defaults (reference `pocket-geo-mesh.md` §6.2).
    pub const GO_DEFAULTS: Timeouts =
        Timeouts { header: Duration::from_millis(50_000), read: Duration::from_millis(60_000), write: Duration::from_millis(121_000) };

    pub fn from_settings(s: &Settings) -> Timeouts {
        Timeouts {
            header: Duration::from_millis(s.client_rpc_read_header_timeout),
            read: Duration::from_millis(s.client_rpc_read_timeout),
            write: Duration::from_millis(s.client_rpc_write_timeout.max(s.client_rpc_timeout.saturating_add(1_000))),
        }
    }
}

static TIMEOUTS: Mutex<Timeouts> = Mutex::new(Timeouts::GO_DEFAULTS);

/// Set the deadlines every listener applies (once, at start).
pub fn set_timeouts(timeouts: Timeouts) {
    *lock(&TIMEOUTS) = timeouts;
}

fn timeouts() -> Timeouts {
    *lock(&TIMEOUTS)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Connected or kept alive, no request head yet.
    Waiting,
    /// Head handed over, body still on the wire.
    Reading,
    /// meshd works on the request or writes the answer: never evicted.
    Processing,
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    phase: Phase,
    since: Instant,
    deadline: Instant,
    /// Last time a scan or a request showed the connection open.
    seen: Instant,
    /// Since when scans have found request bytes unread in its socket.
    unread_since: Option<Instant>,
}

/// Every guarded connection, by client address (unique per connection while it is open).
static CONNS: LazyLock<Mutex<HashMap<SocketAddr, Conn>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// A request's head arrived; `body_pending`: its body is still to be read from the socket.
pub fn request_started(peer: Option<&SocketAddr>, body_pending: bool) {
    mark(peer, if body_pending { Phase::Reading } else { Phase::Processing });
}

/// The request's body has been read (the write deadline still counts from its head).
pub fn body_read(peer: Option<&SocketAddr>) {
    mark(peer, Phase::Processing);
}

/// The answer was written: the connection idles until its next request.
pub fn request_done(peer: Option<&SocketAddr>) {
    mark(peer, Phase::Waiting);
}

fn mark(peer: Option<&SocketAddr>, phase: Phase) {
    let Some(peer) = peer else { return };
    let now = Instant::now();
    let t = timeouts();
    let mut conns = lock(&CONNS);
    let conn = conns.entry(*peer).or_insert(Conn { phase, since: now, deadline: now, seen: now, unread_since: None });
    if !(conn.phase == Phase::Reading && phase == Phase::Processing) {
        conn.since = now;
    }
    conn.phase = phase;
    conn.seen = now;
    conn.deadline = conn.since
        + match phase {
            Phase::Waiting | Phase::Reading => t.read,
            Phase::Processing => t.write,
        };
}

/// One listener's admission state, shared by its hand-off thread and its guard.
pub struct Gate {
    pub name: &'static str,
    port: u16,
    max_connections: usize,
    paused: AtomicBool,
    /// A duplicate of the listening socket tiny_http accepts on: shutting it down wakes the
    /// accept thread with an error, which ends it cleanly.
    socket: Mutex<Option<TcpListener>>,
    open: AtomicUsize,
    /// `max_connections`, or fewer when the descriptor limit cannot afford it.
    cap: AtomicUsize,
    /// The process's thread count when the last scan began.
    threads_at_scan: AtomicUsize,
    closed_timeout: AtomicU64,
    closed_evicted: AtomicU64,
    pauses: AtomicU64,
}

/// Every gate, for the metrics.
static GATES: Mutex<Vec<Weak<Gate>>> = Mutex::new(Vec::new());

/// What the metrics show of one listener.
pub struct GateStats {
    pub name: &'static str,
    pub open: usize,
    pub paused: bool,
    pub closed_timeout: u64,
    pub closed_evicted: u64,
    pub pauses: u64,
}

pub fn stats() -> Vec<GateStats> {
    lock(&GATES)
        .iter()
        .filter_map(Weak::upgrade)
        .map(|g| GateStats {
            name: g.name,
            open: g.open.load(Ordering::Relaxed),
            paused: g.paused.load(Ordering::SeqCst),
            closed_timeout: g.closed_timeout.load(Ordering::Relaxed),
            closed_evicted: g.closed_evicted.load(Ordering::Relaxed),
            pauses: g.pauses.load(Ordering::Relaxed),
        })
        .collect()
}

impl Gate {
    pub fn new(name: &'static str, port: u16, max_connections: usize) -> Arc<Gate> {
        let gate = Arc::new(Gate {
            name,
            port,
            max_connections: max_connections.max(1),
            paused: AtomicBool::new(false),
            socket: Mutex::new(None),
            open: AtomicUsize::new(0),
            threads_at_scan: AtomicUsize::new(0),
            cap: AtomicUsize::new(max_connections.max(1)),
            closed_timeout: AtomicU64::new(0),
            closed_evicted: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
        });
        let mut gates = lock(&GATES);
        gates.retain(|g| g.strong_count() > 0);
        gates.push(Arc::downgrade(&gate));
        gate
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Remember the socket tiny_http is about to accept on. False while paused: the caller
    /// drops the socket and waits (checked under the same lock as [`Gate::pause`]).
    pub fn install(&self, socket: Option<TcpListener>) -> bool {
        let mut slot = lock(&self.socket);
        if socket.is_some() && self.is_paused() {
            return false;
        }
        *slot = socket;
        true
    }

    fn pause(&self, why: &str) {
        let slot = lock(&self.socket);
        if self.paused.swap(true, Ordering::SeqCst) {
            return;
        }
        self.pauses.fetch_add(1, Ordering::Relaxed);
        if let Some(socket) = slot.as_ref() {
            // SAFETY: shutdown(2) on a descriptor this gate owns (a dup of the listener).
            unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) };
        }
        log::warn!("event=listener_paused listener={} port={} {why} (new connections are refused until it eases)", self.name, self.port);
    }

    fn resume(&self) {
        if self.paused.swap(false, Ordering::SeqCst) {
            log::info!("event=listener_resuming listener={} port={}", self.name, self.port);
        }
    }
}

/// Start the guard thread of `gate`; it ends when `closing` is set.
pub fn spawn(gate: Arc<Gate>, closing: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("guard-{}", gate.name)).stack_size(128 * 1024).spawn(move || {
        let checks_per_tick = (TICK.as_millis() / THREAD_CHECK.as_millis()).max(1) as u32;
        gate.threads_at_scan.store(process_threads(), Ordering::Relaxed);
        let mut check = 0u32;
        while !closing.load(Ordering::SeqCst) {
            std::thread::sleep(THREAD_CHECK);
            let new_threads = process_threads().saturating_sub(gate.threads_at_scan.load(Ordering::Relaxed));
            let estimate = gate.open.load(Ordering::Relaxed) + new_threads;
            let cap = gate.cap.load(Ordering::Relaxed);
            if estimate >= cap && !gate.is_paused() {
                gate.pause(&format!("reason=connections open_estimate={estimate} max={cap} (threads started since the last look)"));
            }
            check += 1;
            if check % checks_per_tick != 0 {
                continue;
            }
            if let Err(e) = guard_tick(&gate) {
                log::error!("event=connection_guard_stopped listener={} error={e} (connections are no longer bounded)", gate.name);
                return;
            }
        }
    })?;
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Why {
    TimedOut,
    Evicted,
}

/// One look at the connections: close those past their deadline, evict under pressure, pause
/// or resume accepting.
fn guard_tick(gate: &Gate) -> std::io::Result<()> {
    let threads_at_scan = process_threads();
    let scan = scan(gate.port)?;
    let now = Instant::now();
    let limit = soft_fd_limit();
    let free = limit.saturating_sub(scan.open_fds as u64);
    let cap = gate.max_connections.min(affordable_connections(limit, scan.open_fds, scan.conns.len())).max(1);
    if cap < gate.max_connections && gate.cap.load(Ordering::Relaxed) == gate.max_connections {
        log::warn!(
            "event=connection_cap_lowered listener={} cap={cap} client_max_connections={} fd_limit={limit} (the descriptor limit cannot afford the cap; a connection flood may exhaust descriptors, which aborts meshd — raise LimitNOFILE / ulimit -n)",
            gate.name,
            gate.max_connections
        );
    }
    gate.cap.store(cap, Ordering::Relaxed);
    let resume_at = cap * RESUME_PERCENT / 100;

    let mut to_close: Vec<(RawFd, SocketAddr, Why)> = Vec::new();
    {
        let mut conns = lock(&CONNS);
        let header = timeouts().header;
        // (since, fd, peer, holds a thread)
        let mut idle: Vec<(Instant, RawFd, SocketAddr, bool)> = Vec::new();
        let mut starved = 0;
        for &(fd, peer) in &scan.conns {
            let conn = conns.entry(peer).or_insert(Conn { phase: Phase::Waiting, since: now, deadline: now + header, seen: now, unread_since: None });
            conn.seen = now;
            let age = now.duration_since(conn.since);
            // Bytes waiting in the socket, scan after scan: nobody reads it (no thread, or a
            // stalled one). One scan alone may catch a request a thread is about to read.
            let unread = unread_bytes(fd) > 0;
            conn.unread_since = if unread { conn.unread_since.or(Some(now)) } else { None };
            let left_unread = conn.unread_since.is_some_and(|t| now.duration_since(t) >= STARVED_AFTER);
            if conn.deadline <= now {
                to_close.push((fd, peer, Why::TimedOut));
            } else if conn.phase == Phase::Waiting && left_unread {
                starved += 1;
            } else if conn.phase != Phase::Processing && age >= EVICT_MIN_AGE {
                idle.push((conn.since, fd, peer, !unread));
            }
        }
        conns.retain(|_, c| now.duration_since(c.seen) < FORGET_AFTER);

        let live = scan.conns.len() - to_close.len();
        let pressured = gate.is_paused() || live >= cap;
        let over_connections = if pressured { live.saturating_sub(cap * EVICT_TO_PERCENT / 100) } else { 0 };
        let short_fds = if free < FD_RESERVE { (2 * FD_RESERVE - free).div_ceil(2) as usize } else { 0 };
        idle.sort_unstable_by_key(|&(since, ..)| since);
        // Free a thread for each starved connection, then meet the cap and descriptor limits.
        let relieve: Vec<usize> = (0..idle.len()).filter(|&i| idle[i].3).take(starved).collect();
        let evict = over_connections.max(short_fds).saturating_sub(relieve.len());
        let more: Vec<usize> = (0..idle.len()).filter(|i| !relieve.contains(i)).take(evict).collect();
        to_close.extend(relieve.into_iter().chain(more).map(|i| (idle[i].1, idle[i].2, Why::Evicted)));
        if starved > 0 {
            log::debug!("event=connections_starved listener={} starved={starved}", gate.name);
        }
    }

    let mut closed = 0;
    for (fd, peer, why) in &to_close {
        if !still_the_connection(*fd, gate.port, peer) {
            continue;
        }
        // SAFETY: shutdown(2) on a descriptor just verified to be this connection's socket; it
        // only ends the connection, tiny_http's thread still owns and closes the descriptor.
        unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        closed += 1;
        let counter = if *why == Why::TimedOut { &gate.closed_timeout } else { &gate.closed_evicted };
        counter.fetch_add(1, Ordering::Relaxed);
        log::debug!("event=connection_closed listener={} peer={peer} reason={why:?}", gate.name);
    }
    if closed > 0 {
        let evicted = to_close.iter().filter(|(_, _, w)| *w == Why::Evicted).count();
        log::info!(
            "event=connections_closed listener={} closed={closed} evicted={evicted} open={} max={} free_fds={free}",
            gate.name,
            scan.conns.len() - closed,
            cap
        );
    }

    let live = scan.conns.len() - closed;
    // A closed connection frees its socket and tiny_http's duplicate of it.
    let free = free + 2 * closed as u64;
    gate.open.store(live, Ordering::Relaxed);
    gate.threads_at_scan.store(threads_at_scan, Ordering::Relaxed);
    if !gate.is_paused() {
        if live >= cap {
            gate.pause(&format!("reason=connections open={live} max={cap}"));
        } else if free < FD_RESERVE {
            gate.pause(&format!("reason=descriptors free={free} limit={limit}"));
        }
    } else if live < resume_at.max(1) && free >= 2 * FD_RESERVE {
        gate.resume();
    }
    Ok(())
}

/// Connections the descriptor limit affords: two descriptors each (tiny_http duplicates every
/// socket), after everything else the process holds, [`FD_RESERVE`] and a reserve for bursts.
fn affordable_connections(limit: u64, open_fds: usize, conns: usize) -> usize {
    let others = (open_fds as u64).saturating_sub(2 * conns as u64);
    let spare = limit.saturating_sub(others + FD_RESERVE);
    ((spare - FD_BURST.min(spare / 2)) / 2).try_into().unwrap_or(usize::MAX)
}

/// The listener's connections (one descriptor each; tiny_http holds two per connection) and
/// how many descriptors the process has open.
struct Scan {
    open_fds: usize,
    conns: Vec<(RawFd, SocketAddr)>,
}

fn scan(port: u16) -> std::io::Result<Scan> {
    let mut open_fds = 0;
    let mut peers = HashSet::new();
    let mut conns = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        open_fds += 1;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        if local_addr(fd).map(|a| a.port()) != Some(port) {
            continue;
        }
        // The listening socket itself has no peer.
        if let Some(peer) = peer_addr(fd) {
            if peers.insert(peer) {
                conns.push((fd, peer));
            }
        }
    }
    Ok(Scan { open_fds, conns })
}

/// Bytes received on socket `fd` that nobody has read yet (0 if unknown).
fn unread_bytes(fd: RawFd) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD as _, &mut n) } != 0 {
        return 0;
    }
    n
}

/// Descriptors are reused at once: check again right before a shutdown that `fd` is still
/// this listener's connection to `peer`.
fn still_the_connection(fd: RawFd, port: u16, peer: &SocketAddr) -> bool {
    local_addr(fd).map(|a| a.port()) == Some(port) && peer_addr(fd).as_ref() == Some(peer)
}

fn local_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: getsockname writes at most `len` bytes into the storage.
    sock_addr(|addr, len| unsafe { libc::getsockname(fd, addr, len) })
}

fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: getpeername writes at most `len` bytes into the storage.
    sock_addr(|addr, len| unsafe { libc::getpeername(fd, addr, len) })
}

fn sock_addr(call: impl FnOnce(*mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if call(&mut storage as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
        return None;
    }
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(&storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Threads of this process (`/proc/self/stat`, field 20); 0 if unreadable.
fn process_threads() -> usize {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) is in parentheses and may contain spaces: count after it.
    let after_name = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
    after_name.split_whitespace().nth(17).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The soft `RLIMIT_NOFILE` now (an operator may change it while meshd runs).
fn soft_fd_limit() -> u64 {
    // SAFETY: getrlimit fills the struct.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    limit.rlim_cur as u64
}

/// Raise the soft descriptor limit to the hard one, as Go programs do at start (the incumbent
/// gets this from its runtime); returns (soft, hard) as they are afterwards.
pub fn raise_fd_limit() -> (u64, u64) {
    // SAFETY: getrlimit/setrlimit read and write the struct only.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (0, 0);
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        (limit.rlim_cur as u64, limit.rlim_max as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    #[test]
    fn a_scan_finds_the_listeners_connections_by_peer_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _unrelated = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        let _dup = server_side.try_clone().unwrap();
        let scan = scan(port).unwrap();
        assert_eq!(scan.conns.len(), 1, "{:?}", scan.conns);
        assert_eq!(scan.conns[0].1, peer);
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(scan.open_fds >= 5);
    }

    #[test]
    fn still_the_connection_rejects_a_reused_descriptor() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        let fd = server_side.as_raw_fd();
        assert!(still_the_connection(fd, port, &peer));
        assert!(!still_the_connection(fd, port + 1, &peer));
        let other_peer = SocketAddr::from(([127, 0, 0, 1], peer.port().wrapping_add(1)));
        assert!(!still_the_connection(fd, port, &other_peer));
        assert!(!still_the_connection(listener.as_raw_fd(), port, &peer), "the listener has no peer");
    }

    #[test]
    fn shutting_down_the_listening_socket_wakes_a_blocked_accept_with_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let control = listener.try_clone().unwrap();
        let accepting = std::thread::spawn(move || listener.accept().map(|_| ()));
        std::thread::sleep(Duration::from_millis(100));
        unsafe { libc::shutdown(control.as_raw_fd(), libc::SHUT_RDWR) };
        assert!(accepting.join().unwrap().is_err());
    }

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        // systemd's LimitNOFILE=65536: the configured cap is far below what it affords.
        assert!(affordable_connections(65_536, 1_100, 512) > 30_000);
        // 1,024 descriptors, 40 held besides 100 connections: (1024 - 40 - 32 - 256) / 2.
        assert_eq!(affordable_connections(1_024, 240, 100), 348);
        // 256: the burst reserve takes at most half of what is spare.
        assert_eq!(affordable_connections(256, 40, 0), 46);
        // Nothing spare.
        assert_eq!(affordable_connections(50, 60, 0), 0);
        assert!(affordable_connections(u64::MAX, 10, 0) > 1 << 40);
    }

    #[test]
    fn the_thread_count_is_read_from_proc() {
        let sleepers: Vec<_> = (0..3).map(|_| std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)))).collect();
        let from_status = || -> usize {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
        };
        // Other tests start and end threads meanwhile: one agreeing pair of reads is enough.
        let agree = (0..20).any(|_| process_threads() == from_status());
        assert!(agree, "stat says {}, status says {}", process_threads(), from_status());
        assert!(process_threads() >= 4);
        for s in sleepers {
            s.join().unwrap();
        }
    }

    #[test]
    fn request_progress_moves_the_deadline_as_go_would() {
        set_timeouts(Timeouts::GO_DEFAULTS);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let get = || *lock(&CONNS).get(&peer).unwrap();
        request_started(Some(&peer), true);
        let reading = get();
        assert_eq!(reading.phase, Phase::Reading);
        assert_eq!(reading.deadline - reading.since, Timeouts::GO_DEFAULTS.read);
        std::thread::sleep(Duration::from_millis(5));
        body_read(Some(&peer));
        let processing = get();
        assert_eq!(processing.since, reading.since, "the write deadline counts from the head");
        assert_eq!(processing.deadline - processing.since, Timeouts::GO_DEFAULTS.write);
        request_done(Some(&peer));
        let idle = get();
        assert_eq!(idle.phase, Phase::Waiting);
        assert!(idle.since > processing.since);
        assert_eq!(idle.deadline - idle.since, Timeouts::GO_DEFAULTS.read);
        lock(&CONNS).remove(&peer);
    }

    #[test]
    fn the_write_deadline_never_cuts_off_the_client_rpc_timeout_answer() {
        let mut s = Settings { client_rpc_timeout: 120_000, client_rpc_write_timeout: 90_000, ..Settings::default() };
        assert_eq!(Timeouts::from_settings(&s).write, Duration::from_millis(121_000));
        s.client_rpc_write_timeout = 200_000;
        assert_eq!(Timeouts::from_settings(&s).write, Duration::from_millis(200_000));
    }

    #[test]
    fn a_guard_tick_closes_a_connection_past_its_deadline_and_spares_the_others() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Gate::new("test", port, 100);
        let mut stale = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_stale_server, stale_peer) = listener.accept().unwrap();
        let mut fresh = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_fresh_server, _) = listener.accept().unwrap();
        // The stale one has been idle past its deadline.
        let past = Instant::now() - Duration::from_secs(1);
        lock(&CONNS).insert(stale_peer, Conn { phase: Phase::Waiting, since: past, deadline: past, seen: Instant::now(), unread_since: None });
        guard_tick(&gate).unwrap();
        stale.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(stale.read(&mut [0u8; 1]).unwrap(), 0, "the stale connection sees EOF");
        fresh.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        assert!(fresh.read(&mut [0u8; 1]).is_err(), "the fresh connection stays open");
        fresh.write_all(b"x").unwrap();
        assert_eq!(gate.closed_timeout.load(Ordering::Relaxed), 1);
        assert_eq!(gate.open.load(Ordering::Relaxed), 1);
        assert!(!gate.is_paused());
    }

    /// True if the server side shut the connection down (EOF within 300 ms).
    fn closed_by_guard(client: &mut TcpStream) -> bool {
        client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        matches!(client.read(&mut [0u8; 1]), Ok(0))
    }

    /// A connection to `listener` (client side, server side) that has been in `phase` for
    /// `age` seconds beyond the eviction minimum.
    fn connect_aged(listener: &TcpListener, now: Instant, age: u64, phase: Phase) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let since = now - EVICT_MIN_AGE - Duration::from_secs(age);
        lock(&CONNS).insert(peer, Conn { phase, since, deadline: now + Duration::from_secs(60), seen: now, unread_since: None });
        (client, server)
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connections_go_first_and_busy_ones_stay() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Gate::new("test-cap", port, 4);
        let now = Instant::now();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for age in [5u64, 4, 3, 2, 1] {
            // The oldest is busy (its request is being answered): it must stay.
            let phase = if age == 5 { Phase::Processing } else { Phase::Waiting };
            let (client, server) = connect_aged(&listener, now, age, phase);
            clients.push(client);
            servers.push(server);
        }
        guard_tick(&gate).unwrap();
        // 5 open, cap 4: down to 80 % of 4 = 3, so the two oldest idle ones (ages 4 and 3) go.
        let closed: Vec<bool> = clients.iter_mut().map(closed_by_guard).collect();
        assert_eq!(closed, [false, true, true, false, false]);
        assert_eq!(gate.closed_evicted.load(Ordering::Relaxed), 2);
        assert!(!gate.is_paused(), "eviction was enough");
    }

    #[test]
    fn a_connection_left_unread_frees_the_thread_of_the_oldest_idle_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Gate::new("test-starved", port, 100);
        let now = Instant::now();
        // Two idle connections whose threads read everything (nothing unread): ages 3 and 2.
        let (mut oldest, _s1) = connect_aged(&listener, now, 3, Phase::Waiting);
        let (mut younger, _s2) = connect_aged(&listener, now, 2, Phase::Waiting);
        // One whose request nobody reads (queued behind a busy thread) for over 300 ms.
        let (mut queued, _s3) = connect_aged(&listener, now, 0, Phase::Waiting);
        queued.write_all(b"POST /v1/client/relay HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert!(wait_until_unread(&_s3));
        // The first look only notes the unread bytes (a thread may be about to read them).
        guard_tick(&gate).unwrap();
        assert_eq!(gate.closed_evicted.load(Ordering::Relaxed), 0);
        std::thread::sleep(STARVED_AFTER);
        guard_tick(&gate).unwrap();
        assert!(closed_by_guard(&mut oldest), "the oldest idle connection gives its thread up");
        assert!(!closed_by_guard(&mut younger));
        assert!(!closed_by_guard(&mut queued), "the starved one is what the thread is for");
        assert_eq!(gate.closed_evicted.load(Ordering::Relaxed), 1);
    }

    fn wait_until_unread(s: &TcpStream) -> bool {
        (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            unread_bytes(s.as_raw_fd()) > 0
        })
    }

    #[test]
    fn a_paused_listener_evicts_idle_connections_until_it_can_resume() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Gate::new("test-paused", port, 10);
        let now = Instant::now();
        let _pairs: Vec<_> = (1..=9u64).map(|age| connect_aged(&listener, now, age, Phase::Waiting)).collect();
        // 9 open is under the cap of 10, but the listener is paused (say, by the thread check):
        // idle ones go down to 80 % (8), which is under 90 %, so it resumes.
        gate.pause("reason=test");
        guard_tick(&gate).unwrap();
        assert_eq!(gate.closed_evicted.load(Ordering::Relaxed), 1);
        assert_eq!(gate.open.load(Ordering::Relaxed), 8);
        assert!(!gate.is_paused());
        // Not paused and under the cap: nothing more is evicted.
        guard_tick(&gate).unwrap();
        assert_eq!(gate.closed_evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_cap_that_eviction_cannot_meet_pauses_the_listener_until_it_eases() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = Gate::new("test-pause", port, 2);
        assert!(gate.install(Some(listener.try_clone().unwrap())));
        let clients: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
        let servers: Vec<_> = (0..2).map(|_| listener.accept().unwrap()).collect();
        // Both are brand new: too young to evict, so the listener pauses.
        guard_tick(&gate).unwrap();
        assert!(gate.is_paused());
        assert!(!gate.install(Some(listener.try_clone().unwrap())), "no new socket while paused");
        assert!(listener.accept().is_err(), "the shut-down listener accepts nothing");
        drop(clients);
        drop(servers);
        guard_tick(&gate).unwrap();
        assert!(!gate.is_paused(), "resumed once the connections closed");
        assert_eq!(gate.pauses.load(Ordering::Relaxed), 1);
    }
}
