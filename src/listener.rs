//! The HTTP listener: tiny_http accepts and parses on its own threads; one dedicated thread
//! hands each request to the executor through a channel, so the executor never blocks on
//! `recv()`. Body reads and response writes touch the socket, so they run in `smol::unblock`.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::reply::{http_error, Reply};

pub struct Listener {
    server: Arc<tiny_http::Server>,
    pub addr: SocketAddr,
}

impl Listener {
    /// Bind `addr` and start the hand-off thread. Requests arrive on the returned channel.
    pub fn bind(addr: &str) -> Result<(Listener, async_channel::Receiver<tiny_http::Request>), String> {
        let server = tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = server.server_addr().to_ip().ok_or_else(|| format!("{addr} is not an IP address"))?;
        let server = Arc::new(server);
        let (tx, rx) = async_channel::bounded(1024);
        let accept = server.clone();
        std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || {
                while let Ok(request) = accept.recv() {
                    if tx.send_blocking(request).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the listener thread: {e}"))?;
        Ok((Listener { server, addr: bound }, rx))
    }

    /// Stop accepting: wakes the hand-off thread so it ends.
    pub fn close(&self) {
        self.server.unblock();
    }
}

/// Read a request body of at most `limit` bytes; `Err(reply)` is the 413 or 400 to send.
pub async fn read_body(request: tiny_http::Request, limit: u64) -> (tiny_http::Request, Result<Vec<u8>, Reply>) {
    let too_large = move || http_error(413, &format!("Request body too large. Max allowed bytes is: {limit}"));
    if request.body_length().is_some_and(|n| n as u64 > limit) {
        return (request, Err(too_large()));
    }
    smol::unblock(move || {
        let mut request = request;
        let mut body = Vec::with_capacity(request.body_length().unwrap_or(0).min(limit as usize));
        let result = match request.as_reader().take(limit + 1).read_to_end(&mut body) {
            Ok(_) if body.len() as u64 > limit => Err(too_large()),
            Ok(_) => Ok(body),
            Err(e) => Err(http_error(400, &format!("cannot read request body: {e}"))),
        };
        (request, result)
    })
    .await
}

/// CORS headers of the incumbent's relay route.
const CORS: [(&str, &str); 3] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST"),
    ("Access-Control-Allow-Headers", "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, Authorization"),
];

/// Write the reply off the executor thread (a slow reader must not stall other relays).
pub async fn respond(request: tiny_http::Request, reply: Reply) {
    smol::unblock(move || {
        let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
        response.add_header(header("Content-Type", &reply.content_type));
        if reply.cors {
            for (name, value) in CORS {
                response.add_header(header(name, value));
            }
        }
        if let Err(e) = request.respond(response) {
            log::debug!("event=respond_failed error={e}");
        }
    })
    .await
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Proxied content types come from a servicer: fall back rather than panic on odd bytes.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| tiny_http::Header::from_bytes(name.as_bytes(), &b"application/octet-stream"[..]).expect("static header is valid"))
}
