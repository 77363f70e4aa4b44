//! HTTP plumbing shared by the simulators: meshd's own server on a thread of the simulator's
//! (never on meshd's executor), requests read fully into memory, handlers as plain functions,
//! and a stop that really closes every socket (listener and keep-alive connections) so clients
//! observe "connection refused" just as they would after a crash — not a hang on a pooled
//! connection nobody reads anymore.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;

use crate::http::server::{self, Limits, Server};

/// Largest body a simulator reads; a real servicer truncates at 1 MiB, we keep some margin so
/// that truncation shows up as a JSON error rather than a read failure.
pub const MAX_BODY: u64 = 4 << 20;

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
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
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
        Reply { status, content_type: JSON, body, delay: Duration::ZERO, headers: Vec::new() }
    }
    pub fn text(status: u16, body: &str) -> Reply {
        Reply { status, content_type: TEXT, body: body.as_bytes().to_vec(), delay: Duration::ZERO, headers: Vec::new() }
    }
}

pub type Handler = Arc<dyn Fn(Incoming) -> Reply + Send + Sync>;

/// A listening simulator server: meshd's own HTTP server ([`crate::http::server`]) on a thread
/// and executor of its own. Dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Bind `listen` (retrying briefly if the port is still being released by a previous
    /// instance) and serve it with `handler`.
    pub fn start(listen: &str, handler: Handler) -> io::Result<HttpServer> {
        let listener = bind_with_retry(listen, Duration::from_secs(3))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let thread = std::thread::Builder::new().name(format!("sim-http-{}", addr.port())).spawn(move || {
            // Leaked (a few hundred bytes a start): the server's tasks borrow it for good.
            let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
            let limits = Limits { max_connections: 4096, ..Limits::with_body(MAX_BODY) };
            let served = Server::serve("sim", listener, limits, ex, server::handler(move |r| answer(handler.clone(), r)));
            let server = match served {
                Ok(server) => server,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            smol::block_on(ex.run(async {
                let _ = stop_rx.recv().await;
                // Every socket closes, as in a crash; pending delayed replies are never sent.
                server.close_all();
                server
                    .closed()
                    .or(async {
                        async_io::Timer::after(Duration::from_secs(2)).await;
                    })
                    .await;
            }));
        })?;
        ready_rx.recv().map_err(|_| io::Error::other(format!("simulator on {addr} did not start")))??;
        Ok(HttpServer { addr, stop: Some(stop_tx), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving: the listener and all open connections are closed when this returns.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send_blocking(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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

/// Run the handler (a panic answers 500 and the server goes on), then wait out the reply's
/// simulated latency on a timer.
async fn answer(handler: Handler, request: server::Request) -> server::Response {
    let (path, query) = match request.target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (request.target.clone(), String::new()),
    };
    let incoming = Incoming { method: request.method, path, query, headers: request.headers, body: request.body };
    let reply =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(incoming))).unwrap_or_else(|_| Reply::text(500, "simulator handler panicked\n"));
    if !reply.delay.is_zero() {
        async_io::Timer::after(reply.delay).await;
    }
    let mut response = server::Response::new(reply.status, reply.content_type, reply.body);
    for (k, v) in reply.headers {
        response.headers.push((k.into(), v));
    }
    response
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
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(3))).build().into()
    }

    #[test]
    fn stop_closes_keepalive_connections_and_port_can_be_rebound() {
        let h: Handler = Arc::new(|i: Incoming| Reply::text(200, &i.path));
        let mut srv = HttpServer::start("127.0.0.1:0", h.clone()).unwrap();
        let addr = srv.addr();
        let a = agent();
        let url = format!("http://{addr}/one");
        let mut r = a.get(&url).call().unwrap();
        assert_eq!(r.body_mut().read_to_string().unwrap(), "/one");
        // The agent now holds a pooled keep-alive connection to the server.
        srv.shutdown();
        let t0 = Instant::now();
        let err = a.get(&url).call();
        assert!(err.is_err(), "a stopped server must not answer: {:?}", err.map(|r| r.status()));
        assert!(t0.elapsed() < Duration::from_secs(2), "stale connection hung for {:?}", t0.elapsed());
        // Same port again, same pooled agent.
        let srv2 = HttpServer::start(&addr.to_string(), h).unwrap();
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
        let srv = HttpServer::start("127.0.0.1:0", h).unwrap();
        let a = agent();
        assert_eq!(a.get(&format!("http://{}/boom", srv.addr())).call().unwrap().status().as_u16(), 500);
        let mut r = a.get(&format!("http://{}/ok", srv.addr())).call().unwrap();
        assert_eq!((r.status().as_u16(), r.body_mut().read_to_string().unwrap()), (200, "fine".to_string()));
    }

    #[test]
    fn delayed_replies_wait_concurrently() {
        let h: Handler = Arc::new(|_i: Incoming| {
            let mut r = Reply::text(200, "late");
            r.delay = Duration::from_millis(300);
            r
        });
        let srv = HttpServer::start("127.0.0.1:0", h).unwrap();
        let url = format!("http://{}/", srv.addr());
        let t0 = Instant::now();
        // Four concurrent requests on one executor thread: they finish in about one delay, not
        // four.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || agent().get(&url).call().unwrap().body_mut().read_to_string().unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), "late");
        }
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(300), "delay not applied: {took:?}");
        assert!(took < Duration::from_millis(1000), "delays serialized: {took:?}");
    }
}
