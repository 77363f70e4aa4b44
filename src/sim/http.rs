//! Minimal blocking HTTP plumbing shared by the simulators: a tiny_http server drained by a
//! few worker threads, requests read fully into memory, and a stop that really closes every
//! socket (listener and keep-alive connections) so clients observe "connection refused" just as
//! they would after a crash — not a hang on a pooled connection nobody reads anymore.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest body a simulator reads; a real servicer truncates at 1 MiB, we keep some margin so
/// that truncation shows up as a JSON error rather than a read failure.
pub const MAX_BODY: u64 = 4 << 20;

/// How long a worker waits in `recv` before re-checking the stop flag.
const RECV_POLL: Duration = Duration::from_millis(50);

/// A request read completely off the socket.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string (after `?`), possibly empty.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Incoming {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Value of a query parameter (no percent-decoding: the simulators only use plain tokens).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// What a handler answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Respond only after this much time (chain latency simulation) without holding a worker.
    pub delay: Duration,
    /// Extra response headers (e.g. an upstream's own CORS headers in the JSON API simulator).
    pub headers: Vec<(String, String)>,
}

pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

impl Reply {
    /// JSON the way Go's `WriteJSONResponse` writes it: sorted keys (serde_json's map is a
    /// BTreeMap here) and a trailing newline.
    pub fn json(status: u16, v: &serde_json::Value) -> Reply {
        let mut body = serde_json::to_vec(v).expect("serializing a Value cannot fail");
        body.push(b'\n');
        Reply::raw_json(status, body)
    }
    pub fn raw_json(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: TEXT,
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
}

pub type Handler = Arc<dyn Fn(Incoming) -> Reply + Send + Sync>;

/// A listening simulator server. Dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server: Option<Arc<tiny_http::Server>>,
    workers: Vec<JoinHandle<()>>,
    delayed: Arc<DelayQueue>,
}

impl HttpServer {
    /// Bind `listen` (retrying briefly if the port is still being released by a previous
    /// instance) and start `workers` threads calling `handler`.
    pub fn start(listen: &str, workers: usize, handler: Handler) -> io::Result<HttpServer> {
        let listener = bind_with_retry(listen, Duration::from_secs(3))?;
        let addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| io::Error::other(format!("starting HTTP server on {addr}: {e}")))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(DelayQueue::default());
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let (server, stop, handler, delayed) = (
                server.clone(),
                stop.clone(),
                handler.clone(),
                delayed.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sim-http-{}-{i}", addr.port()))
                    .spawn(move || worker_loop(&server, &stop, &handler, &delayed))?,
            );
        }
        {
            let (stop, delayed) = (stop.clone(), delayed.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sim-delay-{}", addr.port()))
                    .spawn(move || delayed.run(&stop))?,
            );
        }
        Ok(HttpServer {
            addr,
            stop,
            server: Some(server),
            workers: threads,
            delayed,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving: workers exit, the listener and all open connections are closed.
    pub fn shutdown(&mut self) {
        if self.server.is_none() {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        self.delayed.wake();
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
        // Kill sockets before dropping the server: tiny_http's Drop only nudges its accept
        // thread, it never closes keep-alive connections, which would otherwise stay open and
        // swallow requests without ever answering.
        reset_sockets(self.addr, true);
        drop(self.server.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while reset_sockets(self.addr, false) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind_with_retry(listen: &str, patience: Duration) -> io::Result<TcpListener> {
    let deadline = Instant::now() + patience;
    loop {
        match TcpListener::bind(listen) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("binding {listen}: {e}"))),
        }
    }
}

fn worker_loop(
    server: &tiny_http::Server,
    stop: &AtomicBool,
    handler: &Handler,
    delayed: &DelayQueue,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut rq = match server.recv_timeout(RECV_POLL) {
            Ok(Some(rq)) => rq,
            Ok(None) => continue,
            // The accept thread reported an error (e.g. listener shut down): nothing more comes.
            Err(_) => return,
        };
        let incoming = match read_incoming(&mut rq) {
            Ok(i) => i,
            Err(e) => {
                let _ = rq.respond(
                    tiny_http::Response::from_string(format!("bad request: {e}"))
                        .with_status_code(400),
                );
                continue;
            }
        };
        // A panicking handler must not cost the server a worker thread.
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(incoming)))
            .unwrap_or_else(|_| Reply::text(500, "simulator handler panicked\n"));
        if reply.delay.is_zero() {
            respond(rq, reply);
        } else {
            delayed.push(Instant::now() + reply.delay, rq, reply);
        }
    }
}

fn read_incoming(rq: &mut tiny_http::Request) -> io::Result<Incoming> {
    let url = rq.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (url, String::new()),
    };
    let headers = rq
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_string(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    rq.as_reader().take(MAX_BODY).read_to_end(&mut body)?;
    Ok(Incoming {
        method: rq.method().as_str().to_string(),
        path,
        query,
        headers,
        body,
    })
}

fn respond(rq: tiny_http::Request, reply: Reply) {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes())
        .expect("static content type is a valid header");
    let mut resp = tiny_http::Response::from_data(reply.body)
        .with_status_code(reply.status)
        .with_header(header);
    for (k, v) in &reply.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            resp.add_header(h);
        }
    }
    // The client may have gone away; a simulator has nobody to tell.
    let _ = rq.respond(resp);
}

/// Replies waiting for their simulated latency to elapse. One thread serves them in FIFO order:
/// all delays of a server are equal, so deadlines arrive (nearly) sorted.
#[derive(Default)]
struct DelayQueue {
    q: Mutex<VecDeque<(Instant, tiny_http::Request, Reply)>>,
    cv: Condvar,
}

impl DelayQueue {
    fn push(&self, at: Instant, rq: tiny_http::Request, reply: Reply) {
        self.q
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((at, rq, reply));
        self.cv.notify_one();
    }
    fn wake(&self) {
        self.cv.notify_all();
    }
    fn run(&self, stop: &AtomicBool) {
        let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stop.load(Ordering::SeqCst) {
                // Pending requests are dropped unanswered, like a killed process.
                q.clear();
                return;
            }
            let now = Instant::now();
            match q.front() {
                Some((at, _, _)) if *at <= now => {
                    let (_, rq, reply) = q.pop_front().expect("front exists");
                    drop(q);
                    respond(rq, reply);
                    q = self.q.lock().unwrap_or_else(|p| p.into_inner());
                }
                Some((at, _, _)) => {
                    let wait = (*at - now).min(RECV_POLL);
                    q = self
                        .cv
                        .wait_timeout(q, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => {
                    q = self
                        .cv
                        .wait_timeout(q, RECV_POLL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

/// Shut down every TCP socket of this process bound locally to `addr` (the listener and the
/// connections accepted on it; `include_listener` = false leaves listeners alone) and return
/// how many such sockets still exist. tiny_http exposes no handle on its sockets, so they are
/// found through `/proc/self/fd`.
#[cfg(target_os = "linux")]
fn reset_sockets(addr: SocketAddr, include_listener: bool) -> usize {
    use std::mem::ManuallyDrop;
    use std::os::fd::FromRawFd;
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut found = 0;
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if !is_socket {
            continue;
        }
        // SAFETY: the fd is only borrowed: ManuallyDrop guarantees we never close it, and the
        // calls below (getsockname, getpeername, shutdown) fail harmlessly on anything that
        // is not a TCP socket (e.g. if the number was closed and reused meanwhile).
        let s = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
        if s.local_addr().ok() != Some(addr) {
            continue;
        }
        found += 1;
        let is_listener = s.peer_addr().is_err();
        if !is_listener || include_listener {
            // On Linux, shutting down a listening socket makes accept() fail, which ends
            // tiny_http's accept thread and releases the port.
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
    found
}

#[cfg(not(target_os = "linux"))]
fn reset_sockets(_addr: SocketAddr, _include_listener: bool) -> usize {
    // Elsewhere only the listener closes (when tiny_http's accept thread exits).
    0
}

#[cfg(test)]
mod tests {
    use super::*;


    #[test]
    fn query_param_parsing() {
        let inc = Incoming {
            method: "POST".into(),
            path: "/x".into(),
            query: "verify=true&chain=0021&app".into(),
            headers: vec![("X-Servicer".into(), "ab".into())],
            body: vec![],
        };
        assert_eq!(inc.query_param("verify"), Some("true"));
        assert_eq!(inc.query_param("chain"), Some("0021"));
        assert_eq!(inc.query_param("app"), Some(""));
        assert_eq!(inc.query_param("nope"), None);
        assert_eq!(inc.header("x-servicer"), Some("ab"));
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3)))
            .build()
            .into()
    }

    #[test]
    fn stop_closes_keepalive_connections_and_port_can_be_rebound() {
        let h: Handler = Arc::new(|i: Incoming| Reply::text(200, &i.path));
        let mut srv = HttpServer::start("127.0.0.1:0", 2, h.clone()).unwrap();
        let addr = srv.addr();
        let a = agent();
        let url = format!("http://{addr}/one");
        let mut r = a.get(&url).call().unwrap();
        assert_eq!(r.body_mut().read_to_string().unwrap(), "/one");
        // The agent now holds a pooled keep-alive connection to the server.
        srv.shutdown();
        let t0 = Instant::now();
        let err = a.get(&url).call();
        assert!(
            err.is_err(),
            "a stopped server must not answer: {:?}",
            err.map(|r| r.status())
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "stale connection hung for {:?}",
            t0.elapsed()
        );
        // Same port again, same pooled agent.
        let srv2 = HttpServer::start(&addr.to_string(), 2, h).unwrap();
        assert_eq!(srv2.addr(), addr);
        let mut r = a.get(&format!("http://{addr}/two")).call().unwrap();
        assert_eq!(r.body_mut().read_to_string().unwrap(), "/two");
    }

    #[test]
    fn panicking_handler_answers_500_and_keeps_serving() {
        let h: Handler = Arc::new(|i: Incoming| {
            assert!(i.path != "/boom", "deliberate test panic");
            Reply::text(200, "fine")
        });
        let srv = HttpServer::start("127.0.0.1:0", 1, h).unwrap();
        let a = agent();
        assert_eq!(
            a.get(&format!("http://{}/boom", srv.addr()))
                .call()
                .unwrap()
                .status()
                .as_u16(),
            500
        );
        let mut r = a.get(&format!("http://{}/ok", srv.addr())).call().unwrap();
        assert_eq!(
            (r.status().as_u16(), r.body_mut().read_to_string().unwrap()),
            (200, "fine".to_string())
        );
    }

    #[test]
    fn delayed_replies_do_not_block_workers() {
        let h: Handler = Arc::new(|_i: Incoming| {
            let mut r = Reply::text(200, "late");
            r.delay = Duration::from_millis(300);
            r
        });
        let srv = HttpServer::start("127.0.0.1:0", 1, h).unwrap();
        let url = format!("http://{}/", srv.addr());
        let t0 = Instant::now();
        // Four concurrent requests through a single worker: with the delay queue they finish in
        // about one delay, not four.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    agent()
                        .get(&url)
                        .call()
                        .unwrap()
                        .body_mut()
                        .read_to_string()
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), "late");
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "delay not applied: {took:?}"
        );
        assert!(
            took < Duration::from_millis(1000),
            "delays serialized: {took:?}"
        );
    }
}
