//! The one HTTP/1.1 server of every listener (relay port, metrics, Spacemesh node-service and
//! v2 API, the simulators): hyper's `http1` connection driven on a smol `LocalExecutor`
//! through async-io, one task per connection and no thread per anything.
//!
//! What a node on the public internet needs from it, and where it comes from:
//! - a connection cap taken *before* accept (at the cap the oldest idle keep-alive connection
//!   is closed; with none idle, accepting waits and the kernel backlog holds the rest);
//! - accept back-off on descriptor exhaustion (EMFILE/ENFILE) instead of dying;
//! - deadlines as timers: the request head (hyper's `header_read_timeout`, which also bounds a
//!   kept-alive connection's idle time), the body (`body_timeout`), and every write that makes
//!   no progress (`write_timeout`: a client that pipelines and never reads is cut);
//! - a bounded request head (`max_head_bytes`; hyper answers 431 and closes) and body
//!   (413 and close), and framing that cannot be smuggled (an unknown transfer coding is
//!   refused by hyper with 400; `Transfer-Encoding` beside `Content-Length` gets 400 and close).
//!
//! Handlers see a request whose body is already read ([`Request`]) and answer a [`Response`].

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use event_listener::Event;
use futures_lite::FutureExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};

use crate::http::deadline::Deadline;

/// Largest request head (request line and headers) any listener reads: far above what a
/// relay client sends, small enough that a thousand connections cannot exhaust memory.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Longest pause between two accept attempts while descriptors are exhausted.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Per-listener bounds.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most connections open at once (`client_max_connections`).
    pub max_connections: usize,
    /// Largest request head; larger gets 431 and a close.
    pub max_head_bytes: usize,
    /// Largest request body; larger gets 413 and a close.
    pub max_body_bytes: u64,
    /// From accept, or from the end of the previous answer, until a request head is read
    /// (`client_rpc_read_header_timeout`): also the idle bound of a kept-alive connection.
    pub header_timeout: Duration,
    /// Reading a request's body (`client_rpc_read_timeout`).
    pub body_timeout: Duration,
    /// Longest a write may make no progress (`client_rpc_write_timeout`).
    pub write_timeout: Duration,
}

impl Limits {
    /// The incumbent's client-facing deadlines (reference `pocket-geo-mesh.md` §6.2).
    pub fn from_settings(s: &crate::config::Settings, max_body_bytes: u64) -> Limits {
        Limits {
            max_connections: s.client_max_connections.clamp(1, 1 << 20) as usize,
            max_head_bytes: MAX_HEAD_BYTES,
            max_body_bytes,
            header_timeout: Duration::from_millis(s.client_rpc_read_header_timeout.max(1)),
            body_timeout: Duration::from_millis(s.client_rpc_read_timeout.max(1)),
            write_timeout: Duration::from_millis(s.client_rpc_write_timeout.max(1)),
        }
    }

    /// Bounds for internal listeners and tests: Go-like deadlines, `max_body_bytes` bodies.
    pub fn with_body(max_body_bytes: u64) -> Limits {
        Limits {
            max_connections: 512,
            max_head_bytes: MAX_HEAD_BYTES,
            max_body_bytes,
            header_timeout: Duration::from_secs(50),
            body_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(90),
        }
    }
}

/// A request read completely: head and body.
#[derive(Debug, Clone)]
pub struct Request {
    /// Upper case, as sent.
    pub method: String,
    /// Path and query as sent (`/v1/client/relay?x=1`).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub peer: SocketAddr,
    pub body: Vec<u8>,
}

impl Request {
    /// The path, without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw query string (after `?`), possibly empty.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An answer: status, headers (hyper adds `Content-Length` and `Date`) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(Cow<'static, str>, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Response {
        Response { status, headers: vec![(Cow::Borrowed("Content-Type"), content_type.to_string())], body }
    }

    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.as_bytes().to_vec())
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Response {
        self.headers.push((Cow::Borrowed(name), value.to_string()));
        self
    }
}

/// What a listener calls for each request.
pub type Handler = Rc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response>>>>;

/// Wrap an async function as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request) -> Fut + 'static,
    Fut: Future<Output = Response> + 'static,
{
    Rc::new(move |request| Box::pin(f(request)))
}

/// Why a listener could not start.
#[derive(Debug)]
pub enum BindError {
    /// The address is taken or not ours to bind (an environment fault: worth another try).
    Bind { addr: String, source: io::Error },
    /// The address does not parse (a configuration error).
    Address { addr: String },
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            BindError::Address { addr } => write!(f, "cannot listen on {addr}: not a host:port address"),
        }
    }
}

/// What the metrics show of one listener (readable from any thread).
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub name: &'static str,
    pub open: AtomicUsize,
    pub paused: AtomicBool,
    pub pauses: AtomicU64,
    pub closed_timeout: AtomicU64,
    pub closed_evicted: AtomicU64,
    pub refused_head_too_large: AtomicU64,
}

/// Every listener's stats, for the metrics.
static LISTENERS: Mutex<Vec<Weak<ListenerStats>>> = Mutex::new(Vec::new());

/// Stats of every listener still open, in the order they were bound.
pub fn stats() -> Vec<Arc<ListenerStats>> {
    LISTENERS.lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(Weak::upgrade).collect()
}

/// A listening server. [`Server::close`] (or drop) stops accepting; connections already
/// open are served on; [`Server::close_all`] also drops them, as a crash would.
pub struct Server {
    addr: SocketAddr,
    shared: Rc<Shared>,
}

struct Shared {
    stats: Arc<ListenerStats>,
    limits: Limits,
    handler: Handler,
    closing: Cell<bool>,
    /// The accept loop has ended (the listening socket is closed).
    accept_ended: Cell<bool>,
    /// Wakes the accept loop (stop, or a connection closed while at the cap).
    wake: Event,
    conns: RefCell<BTreeMap<u64, Rc<Conn>>>,
    next_id: Cell<u64>,
}

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Requests being handled or answered (hyper serves a connection's requests in order).
    busy: Cell<usize>,
    idle_since: Cell<Instant>,
    closed: Cell<bool>,
    /// Finish the request in progress, then close (a graceful stop).
    draining: Cell<bool>,
    /// Wakes the connection's task for either.
    close: Event,
}

impl Conn {
    fn close(&self) {
        self.closed.set(true);
        self.close.notify(usize::MAX);
    }

    fn drain(&self) {
        self.draining.set(true);
        self.close.notify(usize::MAX);
    }
}

impl Server {
    /// Bind `addr` and serve it on `ex` until closed.
    pub fn bind<'a>(name: &'static str, addr: &str, limits: Limits, ex: &'a smol::LocalExecutor<'a>, handler: Handler) -> Result<Server, BindError> {
        let parsed: SocketAddr = match addr.parse() {
            Ok(a) => a,
            Err(_) => {
                use std::net::ToSocketAddrs;
                let resolved = addr.to_socket_addrs().ok().and_then(|mut a| a.next());
                resolved.ok_or_else(|| BindError::Address { addr: addr.to_string() })?
            }
        };
        let socket = TcpListener::bind(parsed).map_err(|source| BindError::Bind { addr: addr.to_string(), source })?;
        Server::serve(name, socket, limits, ex, handler).map_err(|source| BindError::Bind { addr: addr.to_string(), source })
    }

    /// Serve an already bound socket.
    pub fn serve<'a>(name: &'static str, socket: TcpListener, limits: Limits, ex: &'a smol::LocalExecutor<'a>, handler: Handler) -> io::Result<Server> {
        let addr = socket.local_addr()?;
        let listener = Async::new(socket)?;
        let stats = Arc::new(ListenerStats { name, ..ListenerStats::default() });
        {
            let mut all = LISTENERS.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&stats));
        }
        let shared = Rc::new(Shared {
            stats,
            limits,
            handler,
            closing: Cell::new(false),
            accept_ended: Cell::new(false),
            wake: Event::new(),
            conns: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(0),
        });
        let accepting = shared.clone();
        ex.spawn(async move {
            accept_loop(listener, accepting.clone(), ex).await;
            accepting.accept_ended.set(true);
            accepting.wake.notify(usize::MAX);
        })
        .detach();
        Ok(Server { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.borrow().len()
    }

    /// Stop accepting (the listening socket closes at the accept loop's next turn, which is
    /// immediate); open connections are served on.
    pub fn close(&self) {
        self.shared.closing.set(true);
        self.shared.wake.notify(usize::MAX);
    }

    /// Stop accepting; every open connection answers the request it is reading or handling,
    /// if any, and closes (`Connection: close`): a graceful stop.
    pub fn drain(&self) {
        self.close();
        for conn in self.shared.conns.borrow().values() {
            conn.drain();
        }
    }

    /// Stop accepting and drop every open connection.
    pub fn close_all(&self) {
        self.close();
        for conn in self.shared.conns.borrow().values() {
            conn.close();
        }
    }

    /// Resolves once the listening socket and every connection are closed (after
    /// [`Server::close_all`], or [`Server::close`] and the last client gone).
    pub async fn closed(&self) {
        loop {
            let listener = self.shared.wake.listen();
            if self.shared.accept_ended.get() && self.shared.conns.borrow().is_empty() {
                return;
            }
            listener.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close();
    }
}

/// Accept until closed, within the connection cap.
async fn accept_loop<'a>(listener: Async<TcpListener>, shared: Rc<Shared>, ex: &'a smol::LocalExecutor<'a>) {
    let mut backoff = Duration::from_millis(10);
    let mut exhausted_logged: Option<Instant> = None;
    loop {
        if shared.closing.get() {
            return;
        }
        if !admit(&shared).await {
            return;
        }
        let accepted = listener.accept().or(async {
            wait_closing(&shared).await;
            Err(io::Error::other("listener closed"))
        });
        match accepted.await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                set_paused(&shared, false);
                spawn_connection(stream, peer, &shared, ex);
            }
            Err(_) if shared.closing.get() => return,
            Err(e) if is_exhaustion(&e) => {
                // Out of descriptors: free one if a connection idles, wait, try again. Never
                // exit: the backlog keeps the clients until descriptors come back.
                set_paused(&shared, true);
                evict_oldest_idle(&shared);
                if exhausted_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    log::error!(
                        "event=accept_failed listener={} addr={} error={e} (descriptors exhausted; retrying)",
                        shared.stats.name,
                        listener.get_ref().local_addr().map(|a| a.to_string()).unwrap_or_default()
                    );
                    exhausted_logged = Some(Instant::now());
                }
                Timer::after(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
            // A client gone before accept (ECONNABORTED) and the like: nothing to do.
            Err(e) => log::debug!("event=accept_error listener={} error={e}", shared.stats.name),
        }
    }
}

fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

async fn wait_closing(shared: &Shared) {
    loop {
        if shared.closing.get() {
            return;
        }
        let listener = shared.wake.listen();
        if shared.closing.get() {
            return;
        }
        listener.await;
    }
}

/// Wait until a connection may be accepted: below the cap, or at it after closing the
/// connection idle longest. False: the listener is closing.
async fn admit(shared: &Shared) -> bool {
    loop {
        if shared.closing.get() {
            return false;
        }
        if shared.conns.borrow().len() < shared.limits.max_connections {
            return true;
        }
        if !evict_oldest_idle(shared) {
            set_paused(shared, true);
        }
        // Woken when a connection ends; the timer re-checks for connections that have idled
        // past the eviction grace meanwhile.
        let listener = shared.wake.listen();
        if shared.closing.get() || shared.conns.borrow().len() < shared.limits.max_connections {
            continue;
        }
        listener
            .or(async {
                Timer::after(EVICTION_GRACE / 2).await;
            })
            .await;
    }
}

/// A connection becomes evictable once it has idled this long: one just accepted has not had
/// the time to send its request yet, and must not lose its place to the next arrival.
const EVICTION_GRACE: Duration = Duration::from_millis(200);

/// Close the open connection that has idled longest between requests (at least
/// [`EVICTION_GRACE`]); false if none qualifies.
fn evict_oldest_idle(shared: &Shared) -> bool {
    let conns = shared.conns.borrow();
    let oldest =
        conns.values().filter(|c| c.busy.get() == 0 && !c.closed.get() && c.idle_since.get().elapsed() >= EVICTION_GRACE).min_by_key(|c| c.idle_since.get());
    match oldest {
        Some(conn) => {
            conn.close();
            shared.stats.closed_evicted.fetch_add(1, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

fn set_paused(shared: &Shared, paused: bool) {
    if shared.stats.paused.swap(paused, Ordering::Relaxed) != paused && paused {
        shared.stats.pauses.fetch_add(1, Ordering::Relaxed);
        log::warn!("event=listener_paused listener={} open={} cap={}", shared.stats.name, shared.conns.borrow().len(), shared.limits.max_connections);
    }
}

fn spawn_connection<'a>(stream: Async<TcpStream>, peer: SocketAddr, shared: &Rc<Shared>, ex: &'a smol::LocalExecutor<'a>) {
    let _ = stream.get_ref().set_nodelay(true);
    bound_send_buffer(stream.get_ref());
    let id = shared.next_id.get();
    shared.next_id.set(id + 1);
    let conn =
        Rc::new(Conn { busy: Cell::new(0), idle_since: Cell::new(Instant::now()), closed: Cell::new(false), draining: Cell::new(false), close: Event::new() });
    shared.conns.borrow_mut().insert(id, conn.clone());
    shared.stats.open.store(shared.conns.borrow().len(), Ordering::Relaxed);
    let shared = shared.clone();
    ex.spawn(async move {
        serve_connection(stream, peer, &shared, &conn).await;
        shared.conns.borrow_mut().remove(&id);
        shared.stats.open.store(shared.conns.borrow().len(), Ordering::Relaxed);
        shared.wake.notify(usize::MAX);
    })
    .detach();
}

async fn serve_connection(stream: Async<TcpStream>, peer: SocketAddr, shared: &Rc<Shared>, conn: &Rc<Conn>) {
    let timed_out = Rc::new(Cell::new(false));
    let smuggling = Rc::new(Cell::new(false));
    let io = super::io::HyperIo::new(GuardedStream::new(stream, shared.limits.write_timeout, timed_out.clone(), smuggling.clone()));
    let service = {
        let (shared, conn) = (shared.clone(), conn.clone());
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (shared, conn, smuggling) = (shared.clone(), conn.clone(), smuggling.clone());
            async move {
                conn.busy.set(conn.busy.get() + 1);
                let response =
                    if smuggling.get() { closing(refusal(400, "Transfer-Encoding and Content-Length together")) } else { answer(request, peer, &shared).await };
                conn.busy.set(conn.busy.get() - 1);
                conn.idle_since.set(Instant::now());
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(crate::http::deadline::CoarseTimer)
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_head_bytes.max(8192))
        .keep_alive(true);
    let mut connection = std::pin::pin!(builder.serve_connection(io, service));
    let mut drained = false;
    // `Some(result)`: hyper finished the connection; None: closed by the listener.
    let outcome = loop {
        let signalled = async {
            loop {
                if conn.closed.get() || (conn.draining.get() && !drained) {
                    return None;
                }
                let listener = conn.close.listen();
                if conn.closed.get() || (conn.draining.get() && !drained) {
                    return None;
                }
                listener.await;
            }
        };
        match async { Some(connection.as_mut().await) }.or(signalled).await {
            Some(result) => break Some(result),
            None if conn.closed.get() => break None,
            None => {
                drained = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    let how = match outcome {
        Some(Ok(())) => "done".to_string(),
        Some(Err(e)) => {
            if e.is_timeout() || timed_out.get() {
                shared.stats.closed_timeout.fetch_add(1, Ordering::Relaxed);
            }
            if e.is_parse_too_large() {
                shared.stats.refused_head_too_large.fetch_add(1, Ordering::Relaxed);
            }
            format!("{e:?}")
        }
        None => "closed by meshd".to_string(),
    };
    log::debug!("event=connection_closed listener={} peer={peer} how={how:?}", shared.stats.name);
}

/// One request: framing checks, the body within its bounds, then the handler.
async fn answer(request: hyper::Request<Incoming>, peer: SocketAddr, shared: &Shared) -> hyper::Response<Full<Bytes>> {
    let (head, body) = request.into_parts();
    let limit = shared.limits.max_body_bytes;
    let too_large = || closing(refusal(413, &format!("Request body too large. Max allowed bytes is: {limit}")));
    let announced = head.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return too_large();
    }
    let read = async { Some(Limited::new(body, limit.min(usize::MAX as u64) as usize).collect().await) }.or(async {
        Deadline::after(shared.limits.body_timeout).await;
        None
    });
    let body = match read.await {
        Some(Ok(collected)) => collected.to_bytes().to_vec(),
        Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Some(Err(e)) => return closing(refusal(400, &format!("cannot read request body: {e}"))),
        None => {
            shared.stats.closed_timeout.fetch_add(1, Ordering::Relaxed);
            return closing(refusal(408, "request body not received in time"));
        }
    };
    let headers = head.headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    let target = head.uri.path_and_query().map_or_else(|| head.uri.path().to_string(), |pq| pq.as_str().to_string());
    let request = Request { method: head.method.as_str().to_ascii_uppercase(), target, headers, peer, body };
    to_hyper((shared.handler)(request).await)
}

/// The server's own refusals, in the `{"code":N,"message":"…"}` shape of meshd's (and the
/// incumbent's, Go `WriteErrorResponse`) other errors, so a client parses them the same way.
fn refusal(status: u16, message: &str) -> Response {
    crate::http::reply::http_error(status, message).into()
}

/// A response that also ends the connection.
fn closing(response: Response) -> hyper::Response<Full<Bytes>> {
    to_hyper(response.with_header("Connection", "close"))
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = hyper::StatusCode::from_u16(response.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    for (name, value) in response.headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes());
        // Values passed through from an upstream may hold bytes a header cannot: skip those.
        if let (Ok(name), Ok(value)) = (name, hyper::header::HeaderValue::from_str(&value)) {
            headers.append(name, value);
        }
    }
    out
}

/// Watches request heads as their bytes are read, for `Transfer-Encoding` beside
/// `Content-Length`. hyper honours Transfer-Encoding in that case and closes the connection
/// afterwards (RFC 9112 §6.3), but it drops Content-Length from the head before a service sees
/// it, so the request would be answered as if nothing were wrong. meshd refuses it instead: 400
/// and a close. The scan follows heads and `Content-Length` bodies only; after a head with
/// `Transfer-Encoding` it stops (the connection is chunked from there, and hyper closes it
/// after a smuggling attempt anyway).
#[derive(Default)]
struct HeadScan {
    state: ScanState,
    /// The start of the current head line, lower-cased (enough for the two header names and a
    /// length value).
    line: Vec<u8>,
    lines: usize,
    te: bool,
    cl: Option<u64>,
    /// A head with both was seen.
    smuggling: bool,
}

#[derive(Default, PartialEq, Debug)]
enum ScanState {
    #[default]
    Head,
    Body(u64),
    Stopped,
}

impl HeadScan {
    const LINE_KEPT: usize = 48;

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                ScanState::Stopped => return,
                ScanState::Body(left) => {
                    let n = (bytes.len() as u64).min(left);
                    bytes = &bytes[n as usize..];
                    self.state = if left == n { ScanState::Head } else { ScanState::Body(left - n) };
                }
                ScanState::Head => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    if b == b'\n' {
                        self.end_line();
                    } else if b != b'\r' && self.line.len() < Self::LINE_KEPT {
                        self.line.push(b.to_ascii_lowercase());
                    }
                }
            }
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.lines += 1;
            if let Some(value) = line.strip_prefix(b"content-length:") {
                self.cl = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok()).or(Some(0));
            } else if line.starts_with(b"transfer-encoding:") {
                self.te = true;
            }
            return;
        }
        if self.lines == 0 {
            return; // blank lines before a request line are ignored (RFC 9112 §2.2)
        }
        self.smuggling |= self.te && self.cl.is_some();
        self.state = match (self.te, self.cl) {
            (true, _) => ScanState::Stopped,
            (false, Some(n)) if n > 0 => ScanState::Body(n),
            _ => ScanState::Head,
        };
        (self.lines, self.te, self.cl) = (0, false, None);
    }
}

/// The socket as hyper sees it: a deadline on writes that make no progress (a client that
/// sends requests and never reads the answers would otherwise hold its connection and buffers
/// forever), and the [`HeadScan`] of every byte read.
struct GuardedStream {
    stream: Async<TcpStream>,
    limit: Duration,
    timer: Option<Deadline>,
    timed_out: Rc<Cell<bool>>,
    heads: HeadScan,
    smuggling: Rc<Cell<bool>>,
}

impl GuardedStream {
    fn new(stream: Async<TcpStream>, limit: Duration, timed_out: Rc<Cell<bool>>, smuggling: Rc<Cell<bool>>) -> GuardedStream {
        GuardedStream { stream, limit, timer: None, timed_out, heads: HeadScan::default(), smuggling }
    }

    /// `poll` made no progress: arm the deadline (once) and fail when it passes.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self.timer.get_or_insert_with(|| Deadline::after(limit));
        if Pin::new(timer).poll(cx).is_ready() {
            self.timed_out.set(true);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "write deadline passed")));
        }
        Poll::Pending
    }
}

impl futures_lite::AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            self.heads.feed(&buf[..n]);
            if self.heads.smuggling {
                self.smuggling.set(true);
            }
        }
        read
    }
}

impl futures_lite::AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.timer = None;
                ready
            }
        }
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.timer = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.timer = None;
                ready
            }
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// Kernel send buffer of an accepted connection. Left to autotuning, Linux lets it grow to
/// `tcp_wmem`'s maximum (4 MiB here): a client that pipelines small requests and never reads
/// would park megabytes of answers in the kernel without one write stalling, so the write
/// deadline would never fire (`tests/listener_resilience.rs`). 256 KiB still holds any answer
/// meshd writes in one go for a normal reader.
const SEND_BUFFER_BYTES: libc::c_int = 256 * 1024;

fn bound_send_buffer(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size = SEND_BUFFER_BYTES;
    // SAFETY: setsockopt reads `size` (a c_int of the given length) only; the descriptor is
    // the stream's own, open for the duration of the call.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
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
    use std::net::Shutdown;

    /// A server on its own thread (its own executor), answering `200 <method> <target> <body>`,
    /// or after `?sleep=ms`.
    fn start(limits: Limits) -> SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
            let h = handler(|r: Request| async move {
                if let Some(ms) = r.query().strip_prefix("sleep=") {
                    Timer::after(Duration::from_millis(ms.parse().unwrap())).await;
                }
                Response::text(200, &format!("{} {} {}", r.method, r.target, String::from_utf8_lossy(&r.body)))
            });
            let server = Server::bind("test", "127.0.0.1:0", limits, ex, h).unwrap();
            tx.send(server.addr()).unwrap();
            smol::block_on(ex.run(futures_lite::future::pending::<()>()));
        });
        rx.recv().unwrap()
    }

    fn quick() -> Limits {
        Limits {
            max_connections: 8,
            max_head_bytes: MAX_HEAD_BYTES,
            max_body_bytes: 1024,
            header_timeout: Duration::from_millis(600),
            body_timeout: Duration::from_millis(600),
            write_timeout: Duration::from_millis(600),
        }
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Everything the server sends until it closes the connection (or 5 s pass).
    fn read_all(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn status_lines(text: &str) -> Vec<&str> {
        text.matches("HTTP/1.1 ").collect()
    }

    #[test]
    fn answers_keep_alive_and_pipelined_requests_in_order() {
        let addr = start(quick());
        let mut s = connect(addr);
        let mut batch = String::new();
        for i in 0..50 {
            batch.push_str(&format!("POST /r{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{:02}", i));
        }
        batch.push_str("GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(batch.as_bytes()).unwrap();
        let text = read_all(&mut s);
        assert_eq!(status_lines(&text).len(), 51, "{text}");
        assert!(text.contains("POST /r0 00") && text.contains("POST /r49 49") && text.ends_with("GET /last "), "{text}");
        let first = text.find("/r7 07").unwrap();
        assert!(first < text.find("/r8 08").unwrap(), "answers in request order");
    }

    #[test]
    fn a_head_over_the_limit_gets_431_and_a_close() {
        let addr = start(quick());
        let mut s = connect(addr);
        let filler = "a".repeat(1000);
        let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..100 {
            head.push_str(&format!("X-Filler-{i}: {filler}\r\n"));
        }
        // The head never ends: the server must not keep reading it.
        let _ = s.write_all(head.as_bytes());
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    }

    #[test]
    fn transfer_encoding_with_content_length_gets_400_and_a_close_in_either_order() {
        let addr = start(quick());
        for framing in ["Content-Length: 4\r\nTransfer-Encoding: chunked", "Transfer-Encoding: chunked\r\nContent-Length: 4"] {
            let mut s = connect(addr);
            // The bytes after the chunked body would be a second, smuggled request.
            let smuggle = format!("POST / HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
            s.write_all(smuggle.as_bytes()).unwrap();
            let text = read_all(&mut s);
            assert!(text.starts_with("HTTP/1.1 400"), "{framing}: {text}");
            assert_eq!(status_lines(&text).len(), 1, "{framing}: the smuggled request is never answered: {text}");
            assert!(!text.contains("/smuggled"), "{framing}: {text}");
        }
    }

    #[test]
    fn the_head_scan_follows_content_length_bodies_and_finds_both_framings() {
        let mut scan = HeadScan::default();
        scan.feed(b"POST / HTTP/1.1\r\nContent-Length: 30\r\n\r\n");
        assert_eq!(scan.state, ScanState::Body(30));
        // A body that looks like a head is skipped, not scanned.
        scan.feed(b"Transfer-Encoding: chunked\r\n\r\n");
        scan.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(!scan.smuggling);
        assert_eq!(scan.state, ScanState::Head);
        for split in [1, 7, 20] {
            let mut scan = HeadScan::default();
            let text = b"\r\nPOST / HTTP/1.1\r\ncontent-LENGTH: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
            for chunk in text.chunks(split) {
                scan.feed(chunk);
            }
            assert!(scan.smuggling, "split {split}");
        }
    }

    #[test]
    fn an_unknown_transfer_coding_gets_400() {
        let addr = start(quick());
        let mut s = connect(addr);
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd").unwrap();
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }

    #[test]
    fn a_body_over_the_limit_gets_413_without_being_read() {
        let addr = start(quick());
        let mut s = connect(addr);
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n").unwrap();
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 413") && text.contains("1024"), "{text}");
        let mut s = connect(addr);
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n").unwrap();
        s.write_all(&[b'x'; 2048]).unwrap();
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 413"), "chunked: {text}");
    }

    #[test]
    fn a_stalled_body_is_cut_at_the_body_deadline() {
        let addr = start(quick());
        let mut s = connect(addr);
        let started = Instant::now();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part").unwrap();
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }

    #[test]
    fn an_idle_or_trickled_head_is_cut_at_the_header_deadline() {
        let addr = start(quick());
        let mut idle = connect(addr);
        let mut trickle = connect(addr);
        let started = Instant::now();
        for b in b"GET / HTTP/1.1\r\nHost:" {
            let _ = trickle.write_all(&[*b]);
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut buf = [0u8; 64];
        assert_eq!(idle.read(&mut buf).unwrap_or(0), 0, "idle connection closed");
        assert_eq!(trickle.read(&mut buf).unwrap_or(0), 0, "trickled head closed");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }

    #[test]
    fn a_client_that_never_reads_is_cut_at_the_write_deadline_and_others_are_served() {
        let addr = start(quick());
        let hog = connect(addr);
        // Small receive buffer and many big answers: the server's writes stall.
        let big = "x".repeat(1000);
        let mut w = hog.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if w.write_all(format!("POST /{big} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes()).is_err() {
                    return true;
                }
            }
            false
        });
        std::thread::sleep(Duration::from_millis(300));
        let mut other = connect(addr);
        other.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(read_all(&mut other).contains("GET /other"));
        // The hog's connection is reset once the write deadline passes; its writes fail.
        assert!(writer.join().unwrap(), "the server closed the connection of a client that never reads");
        drop(hog);
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_is_closed_for_a_new_one() {
        let addr = start(Limits { max_connections: 3, header_timeout: Duration::from_secs(30), ..quick() });
        let mut idle: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
        for s in &mut idle {
            s.write_all(b"GET /warm HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut buf = [0u8; 256];
            assert!(s.read(&mut buf).unwrap() > 0);
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut fresh = connect(addr);
        fresh.write_all(b"GET /fresh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(read_all(&mut fresh).contains("GET /fresh"));
        let mut buf = [0u8; 16];
        assert_eq!(idle[0].read(&mut buf).unwrap_or(0), 0, "the connection idle longest was closed");
        idle[2].write_all(b"GET /still HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(read_all(&mut idle[2]).contains("GET /still"), "a younger idle connection is kept");
    }

    #[test]
    fn at_the_cap_with_every_connection_busy_new_clients_wait_then_are_served() {
        let addr = start(Limits { max_connections: 2, ..quick() });
        let busy: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = connect(addr);
                    s.write_all(b"GET /?sleep=400 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
                    read_all(&mut s)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut late = connect(addr);
        late.write_all(b"GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert!(read_all(&mut late).contains("GET /late"));
        for b in busy {
            let got = b.join().unwrap();
            assert!(got.contains("sleep=400"), "busy requests are not evicted: {got:?}");
        }
    }

    #[test]
    fn drain_answers_the_request_in_progress_then_closes_every_connection() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (drain_tx, drain_rx) = async_channel::bounded::<()>(1);
        std::thread::spawn(move || {
            let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
            let h = handler(|r: Request| async move {
                Timer::after(Duration::from_millis(300)).await;
                Response::text(200, r.path())
            });
            let server = Server::bind("test", "127.0.0.1:0", quick(), ex, h).unwrap();
            tx.send(server.addr()).unwrap();
            smol::block_on(ex.run(async {
                let _ = drain_rx.recv().await;
                server.drain();
                server.closed().await;
                tx.send(server.addr()).unwrap();
                futures_lite::future::pending::<()>().await
            }));
        });
        let addr = rx.recv().unwrap();
        let mut idle = connect(addr);
        let mut busy = connect(addr);
        busy.write_all(b"GET /in-progress HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drain_tx.send_blocking(()).unwrap();
        let text = read_all(&mut busy);
        assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("/in-progress"), "{text}");
        assert_eq!(status_lines(&text).len(), 1);
        let mut buf = [0u8; 16];
        assert_eq!(idle.read(&mut buf).unwrap_or(0), 0, "an idle connection is closed");
        rx.recv_timeout(Duration::from_secs(5)).expect("every connection closed after the drain");
        assert!(TcpStream::connect(addr).is_err(), "listener closed");
    }

    #[test]
    fn close_all_drops_open_connections() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        std::thread::spawn(move || {
            let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
            let server = Server::bind("test", "127.0.0.1:0", quick(), ex, handler(|_r: Request| async { Response::text(200, "ok") })).unwrap();
            tx.send(server.addr()).unwrap();
            smol::block_on(ex.run(async {
                let _ = stop_rx.recv().await;
                server.close_all();
                Timer::after(Duration::from_millis(100)).await;
                tx.send(server.addr()).unwrap();
                futures_lite::future::pending::<()>().await
            }));
        });
        let addr = rx.recv().unwrap();
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 256];
        assert!(s.read(&mut buf).unwrap() > 0);
        stop_tx.send_blocking(()).unwrap();
        rx.recv().unwrap();
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "kept-alive connection closed");
        assert!(TcpStream::connect(addr).is_err(), "listener closed");
        let _ = s.shutdown(Shutdown::Both);
    }
}
