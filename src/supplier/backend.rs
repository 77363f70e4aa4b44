//! The service backend call of a Shannon relay (shannon-relay.md §1.4): the `POKTHTTPRequest`
//! inside the relay names method, path, query, headers and body; scheme and host come from the
//! configured backend URL, never from the gateway. Several URLs per service are tried in turn
//! when one cannot be reached, with failing ones benched (the chains' [`ChainHealth`]).

use std::time::Duration;

use crate::http::client::{Client, ClientError, Outgoing};
use crate::relay::chain::ChainHealth;
use crate::shannon::payload::canonical_header_key;

/// What the relay asks of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendCall {
    pub method: String,
    /// Path and query of the gateway's URL (`/v1/blocks?x=1`), possibly empty.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The backend's answer, header names in Go's canonical form (`Content-Type`, [`canonical_header_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub enum BackendError {
    /// No configured URL could be reached (each was tried); the last error.
    Unreachable { tried: usize, last: String },
    /// Sent, but no complete answer (timeout, broken connection): not retried elsewhere, the
    /// backend may have acted on it.
    Failed(String),
    /// The request cannot be sent as HTTP (bad method or header).
    Invalid(String),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::Unreachable { tried, last } => write!(f, "no backend reachable ({tried} tried): {last}"),
            BackendError::Failed(e) => write!(f, "backend call failed: {e}"),
            BackendError::Invalid(e) => write!(f, "the relay's request cannot be sent: {e}"),
        }
    }
}

/// Headers that describe one hop, not the request: never forwarded either way.
const HOP_BY_HOP: [&str; 9] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"];

pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The path and query of the gateway's URL (`POKTHTTPRequest.url`): `http://h/a/b?q` → `/a/b?q`.
/// A bare path is taken as is.
pub fn path_and_query(url: &str) -> String {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            after.find(['/', '?']).map_or("", |j| &after[j..])
        }
        None => url,
    };
    let rest = rest.split('#').next().unwrap_or("");
    rest.to_string()
}

/// `base` + the request's path, cleaned like Go's `path.Join` (no `//`, `.`, or `..` that
/// would climb above the backend's own base path), + the query.
pub fn backend_url(base: &str, path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut segments: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut url = base.trim_end_matches('/').to_string();
    for s in segments {
        url.push('/');
        url.push_str(s);
    }
    if path.ends_with('/') && path.len() > 1 {
        url.push('/');
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Call the service: URLs in health order; a URL that never saw the request is benched and
/// the next one tried.
pub async fn call(
    client: &Client,
    health: &ChainHealth,
    service_id: &str,
    urls: &[String],
    req: &BackendCall,
    timeout: Duration,
) -> Result<BackendAnswer, BackendError> {
    let mut failed: Vec<(usize, String)> = Vec::new();
    let mut result = Err(BackendError::Unreachable { tried: 0, last: "no backend URL configured".into() });
    for i in health.order_urls(urls) {
        let mut out = Outgoing::new(&req.method, &backend_url(&urls[i], &req.path_and_query)).body(req.body.clone()).timeout(timeout);
        for (name, value) in req.headers.iter().filter(|(n, _)| !is_hop_by_hop(n)) {
            out = out.header(name, value);
        }
        match client.send(out).await {
            Ok(answer) => {
                health.record_urls("service", service_id, urls, &failed, Some(i));
                let headers = answer.headers.into_iter().filter(|(n, _)| !is_hop_by_hop(n)).map(|(n, v)| (canonical_header_key(&n), v)).collect();
                return Ok(BackendAnswer { status: answer.status, headers, body: answer.body });
            }
            Err(e @ (ClientError::InvalidRequest(_) | ClientError::InvalidUrl(_))) => return Err(BackendError::Invalid(e.to_string())),
            Err(e) if e.not_sent() => {
                failed.push((i, e.to_string()));
                result = Err(BackendError::Unreachable { tried: failed.len(), last: e.to_string() });
            }
            Err(e) => {
                failed.push((i, e.to_string()));
                result = Err(BackendError::Failed(e.to_string()));
                break;
            }
        }
    }
    health.record_urls("service", service_id, urls, &failed, None);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_host_is_ignored_and_paths_cannot_climb_above_the_base() {
        assert_eq!(path_and_query("http://gateway.example:3069/v1/status?x=1#f"), "/v1/status?x=1");
        assert_eq!(path_and_query("https://gw.example"), "");
        assert_eq!(backend_url("http://127.0.0.1:8545/", ""), "http://127.0.0.1:8545");
        assert_eq!(backend_url("http://127.0.0.1:8545/rpc", "/v1//status/?a=b"), "http://127.0.0.1:8545/rpc/v1/status/?a=b");
        assert_eq!(backend_url("http://b/api", "/../../admin"), "http://b/api/admin");
        assert_eq!(backend_url("http://b", "?q=1"), "http://b?q=1");
    }

    #[test]
    fn hop_by_hop_headers_are_recognised() {
        assert!(is_hop_by_hop("Transfer-Encoding") && is_hop_by_hop("host") && !is_hop_by_hop("content-type"));
    }
}
