//! Reverse proxy to a servicer node for the Pocket RPC routes meshd does not answer itself:
//! every route the incumbent proxies (reference geo-mesh §1.4) plus any `/v1/query/*` path.
//!
//! The target is a healthy node (round-robin over the fleet, healthiest URL of the node) —
//! not the incumbent's uniformly random servicer, which panics with no servicer loaded. The
//! request goes out with the servicer's `Host`, `X-Forwarded-Host`/`X-Forwarded-For` added and
//! hop-by-hop headers dropped; the body was already bounded by `client_rpc_max_bytes_size` and
//! the call by `servicer_rpc_timeout`. Status, body and content type come back unchanged, and
//! the servicer's CORS answer (pocket-core's `cors()` on dispatch and challenge) is kept.
//! A request that could not even be sent (connection refused, no such host) moves on to the
//! next node; once sent it is never repeated (`rawtx` must not be submitted twice).
//! No usable node → 503 `{"code":503,"message":…}`; a node that took the request but gave no
//! answer → 502.

use std::borrow::Cow;
use std::rc::Rc;

use crate::app::{App, Counters};
use crate::fleet::Node;
use crate::outbound::read_answer;
use crate::http::server::Request;
use crate::reply::{http_error, Reply};

/// Most nodes tried for one request.
pub const MAX_ATTEMPTS: usize = 3;

/// Query routes the incumbent proxies (all `POST /v1/query/<name>`); any other `/v1/query/*`
/// path is proxied as well, for routes newer servicers add.
pub const QUERY_ROUTES: [&str; 28] = [
    "account", "accounts", "accounttxs", "acl", "allparams", "app", "appparams", "apps", "balance", "block", "blocktxs",
    "daoowner", "height", "node", "nodeclaim", "nodeclaims", "nodeparams", "nodes", "param", "pocketparams", "state",
    "supply", "supportedchains", "tx", "upgrade", "signinginfo", "unconfirmedtxs", "unconfirmedtx",
];

/// Whether `method path` is forwarded to a servicer.
pub fn is_proxied(method: &str, path: &str) -> bool {
    match (method, path) {
        ("GET", "/v1" | "/v1/health") => true,
        ("POST" | "OPTIONS", "/v1/client/challenge" | "/v1/client/dispatch") => true,
        ("POST", "/v1/client/rawtx") => true,
        ("POST", "/v1/private/stop" | "/v1/private/chains" | "/v1/private/nodes") => true,
        (_, p) => p.strip_prefix("/v1/query/").is_some_and(|rest| !rest.is_empty()),
    }
}

/// Request headers that describe this hop, not the request (RFC 9110 §7.6.1), plus the ones
/// the outgoing request sets itself.
const NOT_FORWARDED: [&str; 11] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
];

/// The headers sent to the servicer: the client's end-to-end headers, plus where the request
/// came from. `Host` is not copied: the outgoing request carries the servicer's own.
pub fn forwarded_headers(headers: &[(String, String)], client_ip: Option<String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        headers.iter().filter(|(name, _)| !NOT_FORWARDED.iter().any(|h| name.eq_ignore_ascii_case(h))).cloned().collect();
    if let Some((_, host)) = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("host")) {
        out.retain(|(name, _)| !name.eq_ignore_ascii_case("x-forwarded-host"));
        out.push(("X-Forwarded-Host".into(), host.clone()));
    }
    if let Some(ip) = client_ip {
        match out.iter_mut().find(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for")) {
            Some((_, chain)) => *chain = format!("{chain}, {ip}"),
            None => out.push(("X-Forwarded-For".into(), ip)),
        }
    }
    out
}

enum Failure {
    /// The request never left: another node may take it.
    NotSent(String),
    /// Sent, but no usable answer came back.
    NoAnswer(String),
}

struct Outgoing {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

pub async fn forward(app: &Rc<App>, request: &Request, body: Vec<u8>) -> Reply {
    let method = request.method.clone();
    let path_and_query = request.target.clone();
    let headers = forwarded_headers(&request.headers, Some(request.peer.ip().to_string()));
    // Bodies on GET/HEAD are not forwarded: HTTP gives them no meaning and clients reject them.
    let body = if method == "GET" || method == "HEAD" { Vec::new() } else { body };

    let mut tried: Vec<String> = Vec::new();
    let mut last_error: Option<String> = None;
    for _ in 0..MAX_ATTEMPTS {
        let Some(node) = pick_node(app, &tried) else { break };
        let base = app.endpoint(&node).url;
        if tried.contains(&base) {
            break;
        }
        tried.push(base.clone());
        let outgoing = Outgoing { method: method.clone(), url: format!("{base}{path_and_query}"), headers: headers.clone(), body: body.clone() };
        let agent = app.servicer_agent.clone();
        match smol::unblock(move || send(&agent, outgoing)).await {
            Ok((answer, cors)) => {
                app.url_ok(&node, &base);
                Counters::inc(&app.counters.proxied);
                let content_type = if answer.content_type.is_empty() { "application/octet-stream".to_string() } else { answer.content_type };
                return Reply { status: answer.status, content_type: Cow::Owned(content_type), body: answer.body, cors };
            }
            Err(Failure::NotSent(e)) => {
                app.url_failed(&node, &base, &e);
                log::warn!("event=proxy_retry node={} url={} path={path_and_query:?} error={e:?}", node.name, app.shown_url(&base));
                last_error = Some(e);
            }
            Err(Failure::NoAnswer(e)) => {
                app.url_failed(&node, &base, &e);
                Counters::inc(&app.counters.proxy_errors);
                log::warn!("event=proxy_failed node={} url={} path={path_and_query:?} error={e:?}", node.name, app.shown_url(&base));
                return http_error(502, &format!("servicer node {} did not answer: {e}", node.name));
            }
        }
    }
    Counters::inc(&app.counters.proxy_errors);
    let why = match (&last_error, app.fleet().nodes.is_empty()) {
        (_, true) => "no servicer node is loaded".to_string(),
        (Some(e), _) => format!("no servicer node could be reached (last error: {e})"),
        (None, _) => "no servicer node is healthy".to_string(),
    };
    http_error(503, &format!("cannot proxy this request: {why}"))
}

/// The next node to proxy to, round-robin: first among nodes that are healthy and have a usable
/// URL, else among merely healthy ones (a URL benched by one failed call may be fine again).
/// Nodes whose current URL was already tried for this request are skipped.
fn pick_node(app: &App, tried: &[String]) -> Option<Rc<Node>> {
    let fleet = app.fleet();
    let n = fleet.nodes.len();
    if n == 0 {
        return None;
    }
    let start = app.proxy_cursor.get();
    for strict in [true, false] {
        for k in 0..n {
            let i = (start + k) % n;
            let node = &fleet.nodes[i];
            if tried.contains(&node.url()) && !node.has_usable_url() {
                continue;
            }
            if node.is_healthy() && (!strict || node.has_usable_url()) {
                app.proxy_cursor.set(i + 1);
                return Some(node.clone());
            }
        }
    }
    None
}

/// The answer, and whether the servicer allowed cross-origin use (then meshd answers with the
/// same CORS headers pocket-core's `cors()` sets).
fn send(agent: &ureq::Agent, out: Outgoing) -> Result<(crate::outbound::Answer, bool), Failure> {
    let mut builder = ureq::http::Request::builder().method(out.method.as_str()).uri(out.url.as_str());
    for (name, value) in &out.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder.body(out.body).map_err(|e| Failure::NotSent(format!("invalid request: {e}")))?;
    let response = agent.run(request).map_err(|e| {
        if not_sent(&e) {
            Failure::NotSent(e.to_string())
        } else {
            Failure::NoAnswer(e.to_string())
        }
    })?;
    let cors = response.headers().contains_key("access-control-allow-origin");
    read_answer(response).map(|answer| (answer, cors)).map_err(Failure::NoAnswer)
}

/// Errors that happen before any byte of the request reached the servicer.
fn not_sent(e: &ureq::Error) -> bool {
    use ureq::Timeout;
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_routes_match_the_incumbent_list_plus_query_catch_all() {
        for (m, p) in [
            ("GET", "/v1"),
            ("GET", "/v1/health"),
            ("POST", "/v1/client/dispatch"),
            ("OPTIONS", "/v1/client/challenge"),
            ("POST", "/v1/client/rawtx"),
            ("POST", "/v1/private/nodes"),
            ("POST", "/v1/query/height"),
            ("POST", "/v1/query/some/future/route"),
            ("GET", "/v1/query/height"),
        ] {
            assert!(is_proxied(m, p), "{m} {p}");
        }
        for q in QUERY_ROUTES {
            assert!(is_proxied("POST", &format!("/v1/query/{q}")));
        }
        for (m, p) in [
            ("POST", "/v1/client/relay"),
            ("GET", "/v1/client/dispatch"),
            ("POST", "/v1/query/"),
            ("POST", "/v1/private/mesh/health"),
            ("DELETE", "/v1"),
            ("GET", "/v2"),
        ] {
            assert!(!is_proxied(m, p), "{m} {p}");
        }
    }

    #[test]
    fn host_is_rewritten_and_hop_headers_dropped() {
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let out = forwarded_headers(
            &h(&[
                ("Host", "mesh.example:8081"),
                ("Content-Type", "application/json"),
                ("Connection", "keep-alive"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "12"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("Accept", "*/*"),
            ]),
            Some("127.0.0.1".into()),
        );
        assert_eq!(
            out,
            h(&[
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", "10.0.0.1, 127.0.0.1"),
                ("Accept", "*/*"),
                ("X-Forwarded-Host", "mesh.example:8081"),
            ])
        );
        assert!(!out.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")));
    }

    #[test]
    fn the_servicer_sees_its_own_host_and_the_original_one_forwarded() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let addr = server.server_addr().to_ip().unwrap();
        let echo = std::thread::spawn(move || {
            // First answer without CORS, second with it.
            for with_cors in [false, true] {
                let rq = server.recv_timeout(std::time::Duration::from_secs(10)).unwrap().expect("a request");
                let seen: Vec<String> = rq.headers().iter().map(|h| format!("{}: {}", h.field, h.value)).collect();
                let mut reply = tiny_http::Response::from_string(seen.join("\n"))
                    .with_status_code(418)
                    .with_header(tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"text/x-echo"[..]).unwrap());
                if with_cors {
                    reply.add_header(tiny_http::Header::from_bytes(&b"Access-Control-Allow-Origin"[..], &b"*"[..]).unwrap());
                }
                rq.respond(reply).unwrap();
            }
        });
        let headers = forwarded_headers(&[("Host".into(), "mesh.example".into()), ("Accept".into(), "*/*".into())], None);
        let agent = crate::outbound::agent(&crate::outbound::AgentSettings { timeout_ms: 5000, max_idle: 2, max_idle_per_host: 2, user_agent: String::new() });
        let out = Outgoing { method: "POST".into(), url: format!("http://{addr}/v1/query/height"), headers, body: b"{}".to_vec() };
        let Ok((answer, cors)) = send(&agent, out) else { panic!("no answer") };
        assert!(!cors, "no CORS header came back, none is added");
        let again = Outgoing { method: "OPTIONS".into(), url: format!("http://{addr}/v1/client/dispatch"), headers: Vec::new(), body: Vec::new() };
        assert!(matches!(send(&agent, again), Ok((_, true))), "the servicer's CORS answer is kept");
        echo.join().unwrap();
        let seen = String::from_utf8(answer.body).unwrap();
        assert_eq!((answer.status, answer.content_type.as_str()), (418, "text/x-echo"));
        assert!(seen.lines().any(|l| l.eq_ignore_ascii_case(&format!("host: {addr}"))), "{seen}");
        assert!(seen.lines().any(|l| l.eq_ignore_ascii_case("x-forwarded-host: mesh.example")), "{seen}");

        // Nothing listening: the request was not sent, so another node may take it.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let out = Outgoing { method: "POST".into(), url: format!("http://{dead}/v1/query/height"), headers: Vec::new(), body: Vec::new() };
        assert!(matches!(send(&agent, out), Err(Failure::NotSent(_))));
    }
}
