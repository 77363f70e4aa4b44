//! Outbound HTTP/1.1 client for the hot path (servicer, chain, Spacemesh upstreams).
//!
//! Every call runs as a future on the daemon's single-threaded smol `LocalExecutor`: no thread per
//! call and no blocking pool, so a relay waiting on its upstream costs a few hundred bytes of task
//! state instead of a parked thread. hyper does the HTTP/1.1 framing; this module adds what ureq
//! used to give us: URL parsing, DNS with a small cache, TCP/TLS connect, a keep-alive pool per
//! (scheme, host, port), timeouts and a bounded response body.
//!
//! The only blocking step left is name resolution (getaddrinfo has no async form); it runs on
//! the `blocking` pool and its result is cached for [`DNS_TTL`], so steady-state calls never
//! leave the executor thread. IP literals and `localhost` never touch the resolver.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::future;
use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::pki_types::ServerName;
use futures_rustls::{rustls, TlsConnector};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};

use crate::base64::encode as base64;
use crate::http::deadline::Deadline;

/// How long a resolved name is trusted. Short, so a moved upstream is followed quickly, but long
/// enough that a busy node resolves each upstream a couple of times a minute at most.
/// Upper bound on a response body held in memory, unless the settings say otherwise.
pub const MAX_RESPONSE_BYTES: u64 = 16 << 20;

pub const DNS_TTL: Duration = Duration::from_secs(30);
/// Names kept in one client's DNS cache; a client talks to a handful of upstreams.
const DNS_CACHE_MAX: usize = 64;
/// How long a finished connection may take to become reusable before it is dropped instead of pooled
/// (hyper's connection task normally gets there before the caller has the body).
const RETURN_WAIT: Duration = Duration::from_secs(2);

/// Settings of one client (one per upstream family: servicer, chain, spacemesh).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Whole call, connect included (like ureq's `timeout_global`).
    pub timeout: Duration,
    /// DNS + TCP + TLS handshake; also bounded by `timeout`.
    pub connect_timeout: Duration,
    pub max_idle_per_host: usize,
    pub max_idle: usize,
    /// Empty: no User-Agent header.
    pub user_agent: String,
    pub max_response_bytes: u64,
    /// An idle pooled connection older than this is dropped instead of reused (Go's default: 90 s).
    pub idle_timeout: Duration,
}

impl ClientSettings {
    pub fn new(timeout: Duration) -> Self {
        ClientSettings {
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(5)),
            max_idle_per_host: 32,
            max_idle: 256,
            user_agent: String::new(),
            max_response_bytes: MAX_RESPONSE_BYTES,
            idle_timeout: Duration::from_secs(90),
        }
    }

    /// The keep-alive pool's bounds from the `*_max_idle_connections` / `*_max_idle_conns_per_host`
    /// config keys (clamped to 1..=4096). The per-host bound must cover the calls in flight to one
    /// upstream: above it, every finished connection is closed and the next call connects again.
    pub fn pool_limits(mut self, max_idle: u64, max_idle_per_host: u64) -> Self {
        self.max_idle = max_idle.clamp(1, 4096) as usize;
        self.max_idle_per_host = max_idle_per_host.clamp(1, 4096) as usize;
        self
    }
}

/// One request. The URL may carry `user:pass@`, which becomes a Basic `Authorization` header.
pub struct Outgoing {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Overrides `ClientSettings::timeout` for this call.
    pub timeout: Option<Duration>,
    /// false: `Connection: close` is sent and the connection is never pooled (config `chain_drop_connections`).
    pub reuse: bool,
}

impl Outgoing {
    pub fn new(method: &str, url: &str) -> Self {
        Outgoing { method: method.to_string(), url: url.to_string(), headers: Vec::new(), body: Vec::new(), timeout: None, reuse: true }
    }

    /// Add a header (appended: repeated names are sent repeatedly).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn reuse(mut self, reuse: bool) -> Self {
        self.reuse = reuse;
        self
    }
}

/// A complete HTTP answer; header names are lower case.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// First value of a header, name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    pub fn is_json(&self) -> bool {
        self.content_type().contains("json")
    }
}

#[derive(Debug)]
pub enum ClientError {
    /// Unparseable URL or unsupported scheme: not sent.
    InvalidUrl(String),
    /// Method or header that HTTP cannot carry: not sent.
    InvalidRequest(String),
    /// DNS or TCP connect failed: not sent.
    Connect(io::Error),
    /// DNS + TCP + TLS did not finish in time: not sent.
    ConnectTimeout,
    /// TLS handshake failed: not sent.
    Tls(String),
    /// The request went out (maybe) and no full answer came in time.
    Timeout,
    /// The connection broke mid-request.
    Io(String),
    BodyTooLarge {
        limit: u64,
    },
}

impl ClientError {
    /// The upstream never saw the request, so trying another upstream (or again) is safe.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidUrl(_) | ClientError::InvalidRequest(_) | ClientError::Connect(_) | ClientError::ConnectTimeout | ClientError::Tls(_)
        )
    }
}

// Short texts without URL or body: callers log them next to the redacted URL.
impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            ClientError::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            ClientError::Connect(e) => write!(f, "connect failed: {e}"),
            ClientError::ConnectTimeout => f.write_str("connect timed out"),
            ClientError::Tls(why) => write!(f, "TLS handshake failed: {why}"),
            ClientError::Timeout => f.write_str("timed out waiting for the answer"),
            ClientError::Io(why) => write!(f, "connection error: {why}"),
            ClientError::BodyTooLarge { limit } => write!(f, "response body over {limit} bytes"),
        }
    }
}

impl StdError for ClientError {}

/// One request from a command-line path (`meshd relay`): its own executor on the calling
/// thread, the same client as the daemon's, no pool kept. Not for the daemon (it would block
/// the executor).
pub fn call_blocking(req: Outgoing, timeout: Duration) -> Result<Answer, ClientError> {
    // One leaked executor per CLI call: the process runs one or two of them and then exits.
    let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
    let client = Client::new(ex, ClientSettings::new(timeout));
    smol::block_on(ex.run(client.send(req)))
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// TCP connections opened.
    pub connects: u64,
    /// Calls served on a pooled connection.
    pub reused: u64,
    /// Calls retried on a fresh connection because a pooled one turned out stale.
    pub stale_retries: u64,
}

type Sender = SendRequest<Full<Bytes>>;
/// Pool key: (https, lower-case host, port).
type Key = (bool, String, u16);

#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

struct Inner {
    ex: &'static smol::LocalExecutor<'static>,
    settings: ClientSettings,
    pool: RefCell<Pool>,
    dns: RefCell<HashMap<String, (Instant, Vec<IpAddr>)>>,
    stats: Cell<ClientStats>,
}

impl Client {
    /// Connection tasks are spawned on `ex`, which must be the executor the calls run on.
    pub fn new(ex: &'static smol::LocalExecutor<'static>, settings: ClientSettings) -> Client {
        let inner = Inner { ex, settings, pool: RefCell::new(Pool::default()), dns: RefCell::new(HashMap::new()), stats: Cell::new(ClientStats::default()) };
        Client { inner: Rc::new(inner) }
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    pub fn stats(&self) -> ClientStats {
        self.inner.stats.get()
    }

    /// Connections currently idle in the pool.
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.borrow().total
    }

    /// POST a JSON body with extra headers (a Content-Type among them replaces `application/json`).
    pub async fn post_json(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, ClientError> {
        let mut req = Outgoing::new("POST", url);
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            req = req.header("Content-Type", "application/json");
        }
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.body = body.to_vec();
        self.send(req).await
    }

    /// Send one request; the response body is read fully (bounded by `max_response_bytes`).
    pub async fn send(&self, req: Outgoing) -> Result<Answer, ClientError> {
        let inner = &*self.inner;
        let settings = &inner.settings;
        let target = parse_url(&req.url)?;
        let timeout = req.timeout.unwrap_or(settings.timeout);
        let reuse = req.reuse;
        let prepared = prepare(req, &target, settings)?;
        let start = Instant::now();
        let deadline = start.checked_add(timeout).unwrap_or(start + Duration::from_secs(365 * 86400));
        let key: Key = (target.https, target.host.to_ascii_lowercase(), target.port);
        let mut fresh_only = !reuse;
        loop {
            let pooled = if fresh_only { None } else { inner.pool.borrow_mut().checkout(&key, settings.idle_timeout) };
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(sender) => sender,
                None => {
                    let connect_deadline = deadline.min(Instant::now() + settings.connect_timeout);
                    within(inner.connect(&target), connect_deadline, || ClientError::ConnectTimeout).await?
                }
            };
            inner.count(|s| s.reused += u64::from(reused));
            let sent = within(async { Ok(sender.try_send_request(prepared.request()).await) }, deadline, || ClientError::Timeout).await?;
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    // A pooled connection may have been closed by the server while idle, and we only learn it
                    // when we use it. Like Go's net/http, retry once on a fresh connection, but only when that
                    // is safe: hyper handed the request back (it never reached the socket), or the method is
                    // idempotent and the connection closed before any answer. A POST that may have been
                    // written is never replayed: the upstream could have acted on it.
                    let unsent = e.message().is_some();
                    if reused && !fresh_only && (unsent || (prepared.idempotent && e.error().is_incomplete_message())) {
                        inner.count(|s| s.stale_retries += 1);
                        fresh_only = true;
                        continue;
                    }
                    return Err(ClientError::Io(describe(e.error())));
                }
            };
            let (parts, body) = response.into_parts();
            let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
            let body = within(read_body(body, declared, settings.max_response_bytes), deadline, || ClientError::Timeout).await?;
            if reuse {
                self.give_back(key, sender);
            }
            let headers = parts.headers.iter().map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
            return Ok(Answer { status: parts.status.as_u16(), headers, body });
        }
    }

    /// Pool a connection whose answer was read to the end. hyper marks it ready once its connection
    /// task has seen the end of the message, which in practice has already happened when the body
    /// ends. If not, a small task waits for it (bounded: a request body the server never read can
    /// keep the connection busy for good) so the caller gets its answer without waiting.
    fn give_back(&self, key: Key, mut sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if sender.is_ready() {
            self.inner.pool.borrow_mut().put(key, sender, &self.inner.settings);
            return;
        }
        let inner = Rc::downgrade(&self.inner);
        self.inner
            .ex
            .spawn(async move {
                let ready = async { sender.ready().await.is_ok() };
                let late = async {
                    Deadline::after(RETURN_WAIT).await;
                    false
                };
                if future::or(ready, late).await {
                    if let Some(inner) = inner.upgrade() {
                        inner.pool.borrow_mut().put(key, sender, &inner.settings);
                    }
                }
            })
            .detach();
    }
}

impl Inner {
    fn count(&self, f: impl FnOnce(&mut ClientStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// DNS, TCP (first address that answers), TLS for https, then the HTTP/1.1 handshake.
    async fn connect(&self, target: &Target) -> Result<Sender, ClientError> {
        let ips = self.resolve(&target.host).await.map_err(ClientError::Connect)?;
        let mut last_error = None;
        let mut stream = None;
        for ip in ips {
            match Async::<TcpStream>::connect(SocketAddr::new(ip, target.port)).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => return Err(ClientError::Connect(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))),
        };
        // Requests are small and written in one go; Nagle would only delay them.
        let _ = stream.get_ref().set_nodelay(true);
        self.count(|s| s.connects += 1);
        if target.https {
            let name = ServerName::try_from(target.host.clone()).map_err(|_| ClientError::Tls("host is not a valid server name".to_string()))?;
            let tls = TlsConnector::from(tls_config()).connect(name, stream).await.map_err(|e| ClientError::Tls(e.to_string()))?;
            self.handshake(tls).await
        } else {
            self.handshake(stream).await
        }
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin + 'static>(&self, io: S) -> Result<Sender, ClientError> {
        let (sender, conn) = http1::handshake(super::io::HyperIo::new(io)).await.map_err(|e| ClientError::Io(describe(&e)))?;
        // The connection future does the socket reads and writes for every request on it; it ends when
        // the socket closes or the last `SendRequest` is dropped (a call gives up, or the pool evicts it).
        self.ex
            .spawn(async move {
                let _ = conn.await;
            })
            .detach();
        Ok(sender)
    }

    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if host.eq_ignore_ascii_case("localhost") {
            return Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
        }
        let name = host.to_ascii_lowercase();
        if let Some((at, ips)) = self.dns.borrow().get(&name) {
            if at.elapsed() < DNS_TTL {
                return Ok(ips.clone());
            }
        }
        let query = name.clone();
        let ips = blocking::unblock(move || (query.as_str(), 0).to_socket_addrs().map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())).await?;
        if ips.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "name resolved to no address"));
        }
        let mut dns = self.dns.borrow_mut();
        if dns.len() >= DNS_CACHE_MAX {
            dns.retain(|_, (at, _)| at.elapsed() < DNS_TTL);
            if dns.len() >= DNS_CACHE_MAX {
                dns.clear();
            }
        }
        dns.insert(name, (Instant::now(), ips.clone()));
        Ok(ips)
    }
}

/// Idle connections per key, most recently used at the back (reused first, like Go, so the
/// rest age out and get dropped).
#[derive(Default)]
struct Pool {
    idle: HashMap<Key, VecDeque<Idle>>,
    total: usize,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Pool {
    fn checkout(&mut self, key: &Key, idle_timeout: Duration) -> Option<Sender> {
        let list = self.idle.get_mut(key)?;
        let before = list.len();
        let mut found = None;
        while let Some(idle) = list.pop_back() {
            if idle.since.elapsed() > idle_timeout {
                // Everything in front of it is older still.
                list.clear();
                break;
            }
            if !idle.sender.is_closed() {
                found = Some(idle.sender);
                break;
            }
        }
        self.total -= before - list.len();
        if list.is_empty() {
            self.idle.remove(key);
        }
        found
    }

    fn put(&mut self, key: Key, sender: Sender, settings: &ClientSettings) {
        if settings.max_idle == 0 || settings.max_idle_per_host == 0 {
            return;
        }
        self.drop_expired(settings.idle_timeout);
        let list = self.idle.entry(key).or_default();
        list.push_back(Idle { sender, since: Instant::now() });
        self.total += 1;
        if list.len() > settings.max_idle_per_host {
            list.pop_front();
            self.total -= 1;
        }
        while self.total > settings.max_idle {
            let oldest = self.idle.iter().filter_map(|(k, l)| l.front().map(|i| (i.since, k.clone()))).min_by_key(|(since, _)| *since);
            let Some((_, k)) = oldest else { break };
            let list = self.idle.get_mut(&k).expect("key just seen");
            list.pop_front();
            self.total -= 1;
            if list.is_empty() {
                self.idle.remove(&k);
            }
        }
    }

    /// Drop connections idle for too long, so a host that went quiet does not hold sockets forever.
    /// Only the oldest end of each list is looked at: cheap enough to run on every return.
    fn drop_expired(&mut self, idle_timeout: Duration) {
        let mut dropped = 0;
        self.idle.retain(|_, list| {
            while list.front().is_some_and(|i| i.since.elapsed() > idle_timeout || i.sender.is_closed()) {
                list.pop_front();
                dropped += 1;
            }
            !list.is_empty()
        });
        self.total -= dropped;
    }
}

/// Parsed `http(s)://[user:pass@]host[:port][/path][?query]`.
struct Target {
    https: bool,
    /// Without IPv6 brackets.
    host: String,
    port: u16,
    /// `host[:port]` as written in the URL: the Host header.
    authority: String,
    /// Origin-form request target: `/path?query`.
    path: String,
    /// `Basic ...` from the userinfo, if any.
    basic: Option<String>,
}

fn invalid(why: &str) -> ClientError {
    ClientError::InvalidUrl(why.to_string())
}

fn parse_url(url: &str) -> Result<Target, ClientError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
    let https = if scheme.eq_ignore_ascii_case("http") {
        false
    } else if scheme.eq_ignore_ascii_case("https") {
        true
    } else {
        return Err(invalid("unsupported scheme"));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // The fragment is for the client only; it is never sent.
    let tail = tail.split('#').next().unwrap_or("");
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let close = bracketed.find(']').ok_or_else(|| invalid("unclosed IPv6 bracket"))?;
        let host = &bracketed[..close];
        host.parse::<Ipv6Addr>().map_err(|_| invalid("bad IPv6 address"))?;
        let after = &bracketed[close + 1..];
        let port = if after.is_empty() { None } else { Some(after.strip_prefix(':').ok_or_else(|| invalid("junk after IPv6 address"))?) };
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("empty host"));
    }
    if !hostport.starts_with('[') && !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
        return Err(invalid("bad character in host"));
    }
    let port = match port {
        None | Some("") => {
            if https {
                443
            } else {
                80
            }
        }
        // u16::from_str takes a leading '+'; a port is digits only.
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => return Err(invalid("bad port")),
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(invalid("bad port")),
        },
    };
    let basic = userinfo.map(|u| format!("Basic {}", base64(&percent_decode(u))));
    Ok(Target { https, host: host.to_string(), port, authority: hostport.to_string(), path, basic })
}

/// Userinfo may be percent-encoded (`p%40ss` for `p@ss`); invalid escapes stay as written.
fn percent_decode(s: &str) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A request checked once and rebuilt cheaply for each attempt (the body is a shared `Bytes`).
struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// Safe to replay after the connection closed under it (Go's list: GET, HEAD, OPTIONS, TRACE).
    idempotent: bool,
}

impl Prepared {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

fn prepare(req: Outgoing, target: &Target, settings: &ClientSettings) -> Result<Prepared, ClientError> {
    let bad = |why: &str| ClientError::InvalidRequest(why.to_string());
    let method = Method::from_bytes(req.method.as_bytes()).map_err(|_| bad("bad method"))?;
    let uri = Uri::try_from(target.path.as_str()).map_err(|_| invalid("bad path or query"))?;
    let mut headers = HeaderMap::with_capacity(req.headers.len() + 4);
    headers.insert(header::HOST, HeaderValue::from_str(&target.authority).map_err(|_| invalid("bad host"))?);
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("bad header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("bad header value"))?;
        if name == header::HOST {
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
    }
    if let Some(basic) = &target.basic {
        if !headers.contains_key(header::AUTHORIZATION) {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(basic).map_err(|_| invalid("bad userinfo"))?);
        }
    }
    if !settings.user_agent.is_empty() && !headers.contains_key(header::USER_AGENT) {
        headers.insert(header::USER_AGENT, HeaderValue::from_str(&settings.user_agent).map_err(|_| bad("bad user agent"))?);
    }
    if !req.reuse {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    // hyper sends no Content-Length for an empty body; some servers answer 411 to a bare POST.
    if req.body.is_empty() && matches!(method, Method::POST | Method::PUT | Method::PATCH) && !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let idempotent = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
    Ok(Prepared { method, uri, headers, body: Bytes::from(req.body), idempotent })
}

/// Read the whole body, refusing early when the declared length is already over the limit.
async fn read_body(mut body: Incoming, declared: Option<u64>, limit: u64) -> Result<Vec<u8>, ClientError> {
    if declared.is_some_and(|n| n > limit) {
        return Err(ClientError::BodyTooLarge { limit });
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(1 << 20) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Io(describe(&e)))?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > limit {
                return Err(ClientError::BodyTooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Run `fut` until `deadline`; past it, the future is dropped (hyper then closes the connection,
/// since HTTP/1.1 cannot abandon one request and keep the connection) and `late()` is returned.
async fn within<T>(fut: impl Future<Output = Result<T, ClientError>>, deadline: Instant, late: fn() -> ClientError) -> Result<T, ClientError> {
    future::or(fut, async move {
        Deadline::at(deadline).await;
        Err(late())
    })
    .await
}

/// hyper's Display names the kind only ("connection closed before message completed"); the
/// source adds the io error behind it. Neither carries a URL.
fn describe(e: &hyper::Error) -> String {
    match e.source() {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// Built once: parsing the webpki roots costs a few milliseconds.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::mpsc;
    use std::thread;

    /// One request as the test server saw it.
    #[derive(Debug)]
    struct Seen {
        line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// Read one request: head up to the blank line, then a Content-Length body. None at EOF.
    fn read_request(r: &mut BufReader<TcpStream>) -> Option<Seen> {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).ok()? == 0 {
                return None;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':')?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let len = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        Some(Seen { line: line.trim_end().to_string(), headers, body })
    }

    fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(body);
        out
    }

    struct Server {
        port: u16,
        connections: Arc<AtomicUsize>,
        seen: mpsc::Receiver<Seen>,
    }

    impl Server {
        fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    /// Keep-alive test server: one thread per connection, `reply` writes the raw answer to each request.
    fn serve(reply: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let (tx, seen) = mpsc::channel();
        let reply = Arc::new(reply);
        let count = connections.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                count.fetch_add(1, SeqCst);
                let (tx, reply) = (tx.clone(), reply.clone());
                thread::spawn(move || {
                    let mut w = stream.try_clone().unwrap();
                    let mut r = BufReader::new(stream);
                    while let Some(req) = read_request(&mut r) {
                        let out = reply(&req);
                        let close = req.header("connection") == Some("close");
                        let _ = tx.send(req);
                        if w.write_all(&out).is_err() || close {
                            break;
                        }
                    }
                });
            }
        });
        Server { port, connections, seen }
    }

    fn ok_server() -> Server {
        serve(|_| response(200, "text/plain", b"ok"))
    }

    fn client_with(settings: ClientSettings) -> (&'static smol::LocalExecutor<'static>, Client) {
        let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
        (ex, Client::new(ex, settings))
    }

    fn client() -> (&'static smol::LocalExecutor<'static>, Client) {
        client_with(ClientSettings::new(Duration::from_secs(10)))
    }

    fn run<T>(ex: &'static smol::LocalExecutor<'static>, fut: impl Future<Output = T>) -> T {
        smol::block_on(ex.run(fut))
    }

    #[test]
    fn get_and_post_round_trip() {
        let server = serve(|req| {
            let mut out = response(201, "application/json", &req.body);
            // Echo one request header back as a response header.
            let echo = format!("X-Echo: {}\r\n", req.header("x-test").unwrap_or("-"));
            let at = out.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
            out.splice(at..at, echo.into_bytes());
            out
        });
        let mut settings = ClientSettings::new(Duration::from_secs(10));
        settings.user_agent = "meshd-test/1".to_string();
        let (ex, client) = client_with(settings);
        let get = run(ex, client.send(Outgoing::new("GET", &server.url("/a/b?c=1&d=2")).header("X-Test", "hello"))).unwrap();
        assert_eq!(get.status, 201);
        assert_eq!(get.header("x-echo"), Some("hello"));
        assert_eq!(get.header("X-ECHO"), Some("hello"));
        assert!(get.body.is_empty());
        let seen = server.seen.recv().unwrap();
        assert_eq!(seen.line, "GET /a/b?c=1&d=2 HTTP/1.1");
        assert_eq!(seen.header("host"), Some(format!("127.0.0.1:{}", server.port).as_str()));
        assert_eq!(seen.header("user-agent"), Some("meshd-test/1"));
        assert_eq!(seen.header("connection"), None);

        let body = br#"{"jsonrpc":"2.0","id":1}"#;
        let post = run(ex, client.post_json(&server.url("/v1/relay"), &[("X-Test", "posted")], body)).unwrap();
        assert_eq!(post.status, 201);
        assert_eq!(post.body, body);
        assert!(post.is_json());
        assert_eq!(post.content_type(), "application/json");
        assert_eq!(post.header("x-echo"), Some("posted"));
        let seen = server.seen.recv().unwrap();
        assert_eq!(seen.line, "POST /v1/relay HTTP/1.1");
        assert_eq!(seen.body, body);
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("content-length"), Some(body.len().to_string().as_str()));

        // An empty POST still says how long it is.
        run(ex, client.send(Outgoing::new("POST", &server.url("/empty")))).unwrap();
        assert_eq!(server.seen.recv().unwrap().header("content-length"), Some("0"));
    }

    #[test]
    fn localhost_without_user_agent_setting() {
        let server = ok_server();
        let (ex, client) = client();
        let url = format!("http://localhost:{}/", server.port);
        run(ex, client.send(Outgoing::new("GET", &url))).unwrap();
        let seen = server.seen.recv().unwrap();
        assert_eq!(seen.header("user-agent"), None);
        assert_eq!(seen.header("host"), Some(format!("localhost:{}", server.port).as_str()));
    }

    #[test]
    fn keep_alive_reuses_one_connection() {
        let server = ok_server();
        let (ex, client) = client();
        run(ex, async {
            for i in 0..5 {
                let answer = client.send(Outgoing::new("POST", &server.url("/x")).body(format!("call {i}"))).await.unwrap();
                assert_eq!(answer.body, b"ok");
            }
        });
        assert_eq!(server.connections.load(SeqCst), 1);
        assert_eq!(client.stats(), ClientStats { connects: 1, reused: 4, stale_retries: 0 });
        assert_eq!(client.idle_connections(), 1);
    }

    /// `n` GETs of `url` in flight at once, each on a task of its own.
    fn concurrent_gets(ex: &'static smol::LocalExecutor<'static>, client: &Client, url: &str, n: usize) -> Vec<Result<Answer, ClientError>> {
        run(ex, async {
            let calls: Vec<_> = (0..n)
                .map(|_| {
                    let (c, url) = (client.clone(), url.to_string());
                    ex.spawn(async move { c.send(Outgoing::new("GET", &url)).await })
                })
                .collect();
            let mut answers = Vec::new();
            for call in calls {
                answers.push(call.await);
            }
            answers
        })
    }

    #[test]
    fn concurrent_calls_open_connections_and_pool_them() {
        let server = ok_server();
        let (ex, client) = client();
        for answer in concurrent_gets(ex, &client, &server.url("/"), 3) {
            assert_eq!(answer.unwrap().status, 200);
        }
        assert_eq!(server.connections.load(SeqCst), 3);
        assert_eq!(client.idle_connections(), 3);
    }

    #[test]
    fn idle_caps_are_kept() {
        let server = ok_server();
        let mut settings = ClientSettings::new(Duration::from_secs(10));
        settings.max_idle_per_host = 2;
        let (ex, client) = client_with(settings);
        for answer in concurrent_gets(ex, &client, &server.url("/"), 4) {
            answer.unwrap();
        }
        assert_eq!(server.connections.load(SeqCst), 4);
        assert_eq!(client.idle_connections(), 2);
    }

    /// 40 calls in flight to one upstream, twice: with the default per-host bound (32) the second
    /// wave has to connect again for the 8 closed after the first; with the config's bound
    /// (`pool_limits`, what the Shannon backend client now uses) every connection is reused.
    #[test]
    fn pool_limits_keep_a_whole_wave_of_connections() {
        for (settings, connections_after_two_waves) in
            [(ClientSettings::new(Duration::from_secs(10)), 48), (ClientSettings::new(Duration::from_secs(10)).pool_limits(2_500, 2_500), 40)]
        {
            let server = ok_server();
            let (ex, client) = client_with(settings);
            for _ in 0..2 {
                for answer in concurrent_gets(ex, &client, &server.url("/"), 40) {
                    assert_eq!(answer.unwrap().status, 200);
                }
            }
            assert_eq!(server.connections.load(SeqCst), connections_after_two_waves);
        }
        let clamped = ClientSettings::new(Duration::from_secs(1)).pool_limits(0, 1_000_000);
        assert_eq!((clamped.max_idle, clamped.max_idle_per_host), (1, 4096));
    }

    #[test]
    fn no_reuse_sends_connection_close_and_never_pools() {
        let server = ok_server();
        let (ex, client) = client();
        run(ex, async {
            for _ in 0..3 {
                client.send(Outgoing::new("GET", &server.url("/")).reuse(false)).await.unwrap();
            }
        });
        assert_eq!(server.connections.load(SeqCst), 3);
        for _ in 0..3 {
            assert_eq!(server.seen.recv().unwrap().header("connection"), Some("close"));
        }
        assert_eq!(client.idle_connections(), 0);
        assert_eq!(client.stats().connects, 3);
    }

    #[test]
    fn server_closing_idle_connection_is_survived() {
        // The server closes its side after each answer (without saying so). Between the calls the executor
        // is blocked, so the client cannot notice before it picks the pooled connection again.
        for method in ["POST", "GET"] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let (closed_tx, closed) = mpsc::channel();
            thread::spawn(move || {
                for stream in listener.incoming().take(2) {
                    let mut stream = stream.unwrap();
                    let _ = read_request(&mut BufReader::new(stream.try_clone().unwrap())).unwrap();
                    stream.write_all(&response(200, "text/plain", b"ok")).unwrap();
                    // Let the client read the answer and pool the connection before closing it.
                    thread::sleep(Duration::from_millis(100));
                    drop(stream);
                    let _ = closed_tx.send(());
                }
            });
            let (ex, client) = client();
            let url = format!("http://127.0.0.1:{port}/");
            run(ex, async {
                client.send(Outgoing::new(method, &url)).await.unwrap();
                assert_eq!(client.idle_connections(), 1);
                closed.recv().unwrap();
                thread::sleep(Duration::from_millis(50));
                let answer = client.send(Outgoing::new(method, &url)).await.unwrap();
                assert_eq!(answer.body, b"ok");
            });
            assert_eq!(client.stats(), ClientStats { connects: 2, reused: 1, stale_retries: 1 }, "{method}");
        }
    }

    #[test]
    fn expired_idle_connection_is_not_reused() {
        let server = ok_server();
        let mut settings = ClientSettings::new(Duration::from_secs(10));
        settings.idle_timeout = Duration::from_millis(50);
        let (ex, client) = client_with(settings);
        run(ex, async {
            client.send(Outgoing::new("GET", &server.url("/"))).await.unwrap();
            async_io::Timer::after(Duration::from_millis(120)).await;
            client.send(Outgoing::new("GET", &server.url("/"))).await.unwrap();
        });
        assert_eq!(server.connections.load(SeqCst), 2);
        assert_eq!(client.stats(), ClientStats { connects: 2, reused: 0, stale_retries: 0 });
    }

    #[test]
    fn connection_refused_is_connect_and_not_sent() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (ex, client) = client();
        let err = run(ex, client.send(Outgoing::new("POST", &format!("http://127.0.0.1:{port}/secret-path")))).unwrap_err();
        assert!(matches!(&err, ClientError::Connect(e) if e.kind() == io::ErrorKind::ConnectionRefused), "{err:?}");
        assert!(err.not_sent());
        assert!(!err.to_string().contains("secret-path"));
    }

    #[test]
    fn silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (got_tx, got) = mpsc::channel();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let seen = read_request(&mut BufReader::new(stream.try_clone().unwrap()));
            let _ = got_tx.send(seen.is_some());
            thread::sleep(Duration::from_secs(30));
            drop(stream);
        });
        let (ex, client) = client_with(ClientSettings::new(Duration::from_secs(30)));
        let started = Instant::now();
        let req = Outgoing::new("POST", &format!("http://127.0.0.1:{port}/")).body("x").timeout(Duration::from_millis(300));
        let err = run(ex, client.send(req)).unwrap_err();
        assert!(matches!(err, ClientError::Timeout), "{err:?}");
        assert!(!err.not_sent());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(got.recv().unwrap(), "the request reached the server");
        assert_eq!(client.idle_connections(), 0);
    }

    #[test]
    fn oversized_bodies_are_refused() {
        // Declared too long, and chunked (length unknown up front) too long.
        let server = serve(|req| {
            if req.line.contains("/declared") {
                response(200, "text/plain", b"0123456789A")
            } else {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n6789AB\r\n0\r\n\r\n".to_vec()
            }
        });
        let mut settings = ClientSettings::new(Duration::from_secs(10));
        settings.max_response_bytes = 10;
        let (ex, client) = client_with(settings);
        for path in ["/declared", "/chunked"] {
            let err = run(ex, client.send(Outgoing::new("GET", &server.url(path)))).unwrap_err();
            assert!(matches!(err, ClientError::BodyTooLarge { limit: 10 }), "{path}: {err:?}");
        }
        // Exactly at the limit is fine.
        let server = ok_server();
        settings = ClientSettings::new(Duration::from_secs(10));
        settings.max_response_bytes = 2;
        let (ex, client) = client_with(settings);
        assert_eq!(run(ex, client.send(Outgoing::new("GET", &server.url("/")))).unwrap().body, b"ok");
    }

    #[test]
    fn chunked_answer_is_assembled_and_connection_reused() {
        let server =
            serve(|_| b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n".to_vec());
        let (ex, client) = client();
        for _ in 0..2 {
            let answer = run(ex, client.send(Outgoing::new("GET", &server.url("/")))).unwrap();
            assert_eq!(answer.body, br#"{"a":1}"#);
            assert!(answer.is_json());
        }
        assert_eq!(server.connections.load(SeqCst), 1);
    }

    #[test]
    fn userinfo_becomes_basic_auth() {
        let server = ok_server();
        let (ex, client) = client();
        let url = format!("http://user:p%40ss@127.0.0.1:{}/rpc?x=1", server.port);
        run(ex, client.send(Outgoing::new("GET", &url))).unwrap();
        let seen = server.seen.recv().unwrap();
        assert_eq!(seen.line, "GET /rpc?x=1 HTTP/1.1");
        assert_eq!(seen.header("authorization"), Some(format!("Basic {}", base64(b"user:p@ss")).as_str()));
        assert_eq!(seen.header("host"), Some(format!("127.0.0.1:{}", server.port).as_str()));
    }

    #[test]
    fn ipv6_literal() {
        let Ok(listener) = TcpListener::bind("[::1]:0") else { return }; // no IPv6 loopback here
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let seen = read_request(&mut BufReader::new(stream.try_clone().unwrap())).unwrap();
            stream.write_all(&response(200, "text/plain", seen.header("host").unwrap().as_bytes())).unwrap();
        });
        let (ex, client) = client();
        let answer = run(ex, client.send(Outgoing::new("GET", &format!("http://[::1]:{port}/")))).unwrap();
        assert_eq!(answer.body, format!("[::1]:{port}").as_bytes());
    }

    #[test]
    fn tls_to_a_plain_server_fails_as_tls_not_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        });
        let (ex, client) = client();
        let err = run(ex, client.send(Outgoing::new("GET", &format!("https://127.0.0.1:{port}/")))).unwrap_err();
        assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
        assert!(err.not_sent());
    }

    #[test]
    fn invalid_requests_are_not_sent() {
        let (ex, client) = client();
        for url in ["ftp://host/", "127.0.0.1:80/", "http://", "http://host:99999/", "http://host:+80/", "http://[::1/", "http://ho st/"] {
            let err = run(ex, client.send(Outgoing::new("GET", url))).unwrap_err();
            assert!(matches!(err, ClientError::InvalidUrl(_)), "{url}: {err:?}");
            assert!(err.not_sent());
        }
        let err = run(ex, client.send(Outgoing::new("GET", "http://127.0.0.1:1/").header("bad name", "v"))).unwrap_err();
        assert!(matches!(err, ClientError::InvalidRequest(_)), "{err:?}");
        let err = run(ex, client.send(Outgoing::new("GET", "http://127.0.0.1:1/").header("x", "line\r\nbreak"))).unwrap_err();
        assert!(matches!(err, ClientError::InvalidRequest(_)), "{err:?}");
        assert_eq!(client.stats().connects, 0);
    }

    #[test]
    fn url_parsing() {
        let t = parse_url("http://example.com").unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port, t.authority.as_str(), t.path.as_str()), (false, "example.com", 80, "example.com", "/"));
        assert!(t.basic.is_none());
        let t = parse_url("HTTPS://Example.com?q=1#frag").unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port, t.path.as_str()), (true, "Example.com", 443, "/?q=1"));
        let t = parse_url("https://[2001:db8::1]:8443/v1/x?y#z").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str(), t.path.as_str()), ("2001:db8::1", 8443, "[2001:db8::1]:8443", "/v1/x?y"));
        let t = parse_url("http://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        let t = parse_url("http://a:b@c@node.local:26657/status").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str()), ("node.local", 26657, "node.local:26657"));
        assert_eq!(t.basic.as_deref(), Some(format!("Basic {}", base64(b"a:b@c")).as_str()));
        assert_eq!(percent_decode("a%2Fb%zz%4"), b"a/b%zz%4");
    }

    #[test]
    fn display_is_short_and_keeps_urls_out() {
        let err = parse_url("gopher://user:secret@host/path").err().unwrap();
        let text = err.to_string();
        assert!(!text.contains("secret") && !text.contains("host"), "{text}");
        assert_eq!(ClientError::BodyTooLarge { limit: 5 }.to_string(), "response body over 5 bytes");
    }
}
