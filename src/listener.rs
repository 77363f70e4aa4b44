//! The HTTP listener: tiny_http accepts and parses on its own threads; one dedicated thread
//! hands each request to the executor through a channel, so the executor never blocks on
//! `recv()`. Body reads and response writes touch the socket, so they run in `smol::unblock`.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::conn_guard::{self, Gate};
use crate::reply::{http_error, Reply};

pub struct Listener {
    current: Arc<Mutex<Option<Arc<tiny_http::Server>>>>,
    closing: Arc<AtomicBool>,
    pub addr: SocketAddr,
}

/// Longest wait between two attempts to listen again after the accept thread died.
const REBIND_MAX_WAIT: Duration = Duration::from_secs(5);

impl Listener {
    /// Bind `addr` and start the hand-off thread and the connection guard (at most
    /// `max_connections` open; `name` labels logs and metrics). Requests arrive on the returned
    /// channel.
    pub fn bind(name: &'static str, addr: &str, max_connections: usize) -> Result<(Listener, async_channel::Receiver<tiny_http::Request>), String> {
        let socket = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = socket.local_addr().map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let gate = Gate::new(name, bound.port(), max_connections);
        let server = serve_on(&gate, socket).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let current = Arc::new(Mutex::new(Some(Arc::new(server))));
        let closing = Arc::new(AtomicBool::new(false));
        conn_guard::spawn(gate.clone(), closing.clone()).map_err(|e| format!("cannot start the connection guard: {e}"))?;
        let (tx, rx) = async_channel::bounded(1024);
        let (thread_current, thread_closing) = (current.clone(), closing.clone());
        std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || hand_off(bound, &gate, &thread_current, &thread_closing, &tx))
            .map_err(|e| format!("cannot start the listener thread: {e}"))?;
        Ok((Listener { current, closing, addr: bound }, rx))
    }

    /// Stop accepting: wakes the hand-off thread so it ends (and the socket closes).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(server) = lock(&self.current).as_ref() {
            server.unblock();
        }
    }
}

/// Hand `socket` to tiny_http, keeping a duplicate in the gate so the guard can pause it.
fn serve_on(gate: &Gate, socket: std::net::TcpListener) -> Result<tiny_http::Server, String> {
    let control = socket.try_clone().map_err(|e| e.to_string())?;
    if !gate.install(Some(control)) {
        return Err("paused".into());
    }
    tiny_http::Server::from_listener(socket, None).map_err(|e| {
        gate.install(None);
        e.to_string()
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pass requests to the executor. tiny_http's accept thread ends for good on any accept error:
/// EMFILE, or the guard pausing the listener (it shuts the socket down). Either way meshd must
/// not stay deaf: listen again on the same address once the guard allows it, with backoff.
fn hand_off(
    addr: SocketAddr,
    gate: &Gate,
    current: &Mutex<Option<Arc<tiny_http::Server>>>,
    closing: &AtomicBool,
    tx: &async_channel::Sender<tiny_http::Request>,
) {
    loop {
        let Some(server) = lock(current).clone() else { return };
        match server.recv() {
            Ok(request) => {
                conn_guard::request_started(request.remote_addr(), !body_is_buffered(&request));
                if tx.send_blocking(request).is_err() {
                    return;
                }
            }
            Err(_) if closing.load(Ordering::SeqCst) => return,
            Err(e) => {
                let paused = gate.is_paused();
                if !paused {
                    log::error!("event=listener_failed addr={addr} error={e:?} (listening again)");
                }
                *lock(current) = None;
                gate.install(None);
                drop(server);
                let mut wait = Duration::from_millis(100);
                loop {
                    std::thread::sleep(if gate.is_paused() { conn_guard::TICK } else { wait });
                    if closing.load(Ordering::SeqCst) {
                        return;
                    }
                    if gate.is_paused() {
                        continue;
                    }
                    match std::net::TcpListener::bind(addr).map_err(|e| e.to_string()).and_then(|socket| serve_on(gate, socket)) {
                        Ok(server) => {
                            // Publish it under the lock, re-checking `closing` there, so a
                            // concurrent close() either sees this server or stops us here.
                            let mut slot = lock(current);
                            if closing.load(Ordering::SeqCst) {
                                return;
                            }
                            if paused {
                                log::info!("event=listener_resumed addr={addr}");
                            } else {
                                log::warn!("event=listener_restored addr={addr}");
                            }
                            *slot = Some(Arc::new(server));
                            break;
                        }
                        // Paused again between the check and the bind: wait as paused.
                        Err(_) if gate.is_paused() => {}
                        Err(e) => {
                            log::error!("event=listener_rebind_failed addr={addr} error={e} retry_ms={}", wait.as_millis());
                            wait = (wait * 2).min(REBIND_MAX_WAIT);
                        }
                    }
                }
            }
        }
    }
}

/// tiny_http reads a body of at most this many bytes (announced by Content-Length, without
/// `Expect: 100-continue`) into memory on the connection's own thread before handing the request
/// over (tiny_http 0.12 `request.rs`); larger or chunked bodies are read from the socket.
const TINY_HTTP_BUFFERED_BODY: usize = 1024;

/// Read a request body of at most `limit` bytes; `Err(reply)` is the 413 or 400 to send. None:
/// no thread could be started to read it, and the request was dropped (tiny_http closes it).
///
/// A body tiny_http already buffered is read right here (no thread hop: most relays). Any other
/// body is read on a thread of its own, never on smol's blocking pool: a client that announces a
/// body and stalls would otherwise pin a pool thread for good, and that pool also runs every
/// chain call, queue commit and notify — 32 stalled uploads would stop meshd. With a thread of
/// its own, a slow client only costs one thread, like tiny_http's own connection threads.
pub async fn read_body(request: tiny_http::Request, limit: u64) -> Option<(tiny_http::Request, Result<Vec<u8>, Reply>)> {
    let too_large = move || http_error(413, &format!("Request body too large. Max allowed bytes is: {limit}"));
    if request.body_length().is_some_and(|n| n as u64 > limit) {
        return Some((request, Err(too_large())));
    }
    let read = move |mut request: tiny_http::Request| {
        let mut body = Vec::with_capacity(request.body_length().unwrap_or(0).min(limit as usize));
        let result = match request.as_reader().take(limit + 1).read_to_end(&mut body) {
            Ok(_) if body.len() as u64 > limit => Err(too_large()),
            Ok(_) => Ok(body),
            Err(e) => Err(http_error(400, &format!("cannot read request body: {e}"))),
        };
        conn_guard::body_read(request.remote_addr());
        (request, result)
    };
    if body_is_buffered(&request) {
        return Some(read(request));
    }
    let (tx, rx) = async_channel::bounded(1);
    let reader = std::thread::Builder::new().name("http-body".into()).stack_size(BODY_THREAD_STACK).spawn(move || {
        let _ = tx.send_blocking(read(request));
    });
    if let Err(e) = reader {
        log::error!("event=body_reader_unavailable error={e} (request dropped)");
        return None;
    }
    rx.recv().await.ok()
}

/// Stack of a body-reading thread: it only copies bytes into a Vec.
const BODY_THREAD_STACK: usize = 64 * 1024;

fn body_is_buffered(request: &tiny_http::Request) -> bool {
    let expects_continue = request.headers().iter().any(|h| h.field.equiv("Expect") && h.value.as_str().eq_ignore_ascii_case("100-continue"));
    request.body_length().is_some_and(|n| n <= TINY_HTTP_BUFFERED_BODY) && !expects_continue
}

/// CORS headers of the incumbent's relay route.
const CORS: [(&str, &str); 3] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST"),
    ("Access-Control-Allow-Headers", "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, Authorization"),
];

/// Answer with `reply`.
pub async fn respond(request: tiny_http::Request, reply: Reply) {
    let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    response.add_header(header("Content-Type", &reply.content_type));
    if reply.cors {
        for (name, value) in CORS {
            response.add_header(header(name, value));
        }
    }
    send(request, response).await
}

/// Write `response` off the executor thread (a slow reader must not stall other requests), then
/// tell the connection guard the connection idles until its next request. Every listener's
/// answers go through here.
pub async fn send(request: tiny_http::Request, response: tiny_http::Response<std::io::Cursor<Vec<u8>>>) {
    smol::unblock(move || {
        let peer = request.remote_addr().copied();
        if let Err(e) = request.respond(response) {
            log::debug!("event=respond_failed peer={peer:?} error={e}");
        }
        conn_guard::request_done(peer.as_ref());
    })
    .await
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Proxied content types come from a servicer: fall back rather than panic on odd bytes.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| tiny_http::Header::from_bytes(name.as_bytes(), &b"application/octet-stream"[..]).expect("static header is valid"))
}
