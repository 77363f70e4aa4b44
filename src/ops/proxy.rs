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
use crate::http::client::{Answer, Client, Outgoing};
use crate::http::reply::{http_error, Reply};
use crate::http::server::Request;
use crate::servicer::fleet::Node;

/// Most nodes tried for one request.
pub const MAX_ATTEMPTS: usize = 3;

/// Query routes the incumbent proxies (all `POST /v1/query/<name>`); any other `/v1/query/*`
/// path is proxied as well, for routes newer servicers add.
pub const QUERY_ROUTES: [&str; 28] = [
    "account",
    "accounts",
    "accounttxs",
    "acl",
    "allparams",
    "app",
    "appparams",
    "apps",
    "balance",
    "block",
    "blocktxs",
    "daoowner",
    "height",
    "node",
    "nodeclaim",
    "nodeclaims",
    "nodeparams",
    "nodes",
    "param",
    "pocketparams",
    "state",
    "supply",
    "supportedchains",
    "tx",
    "upgrade",
    "signinginfo",
    "unconfirmedtxs",
    "unconfirmedtx",
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
    let mut out: Vec<(String, String)> = headers.iter().filter(|(name, _)| !NOT_FORWARDED.iter().any(|h| name.eq_ignore_ascii_case(h))).cloned().collect();
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
        let mut outgoing = Outgoing::new(&method, &format!("{base}{path_and_query}")).body(body.clone());
        outgoing.headers = headers.clone();
        match send(&app.servicer_client, outgoing).await {
            Ok((answer, cors)) => {
                app.url_ok(&node, &base);
                Counters::inc(&app.counters.proxied);
                let content_type = match answer.content_type() {
                    "" => "application/octet-stream".to_string(),
                    given => given.to_string(),
                };
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
async fn send(client: &Client, out: Outgoing) -> Result<(Answer, bool), Failure> {
    match client.send(out).await {
        Ok(answer) => {
            let cors = answer.header("access-control-allow-origin").is_some();
            Ok((answer, cors))
        }
        // Nothing reached the servicer: another node may take the request.
        Err(e) if e.not_sent() => Err(Failure::NotSent(e.to_string())),
        Err(e) => Err(Failure::NoAnswer(e.to_string())),
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
        use crate::sim::http::{Handler, HttpServer, Incoming, Reply};
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Echoes the request headers; the first answer without CORS, later ones with it.
        let answered = std::sync::Arc::new(AtomicUsize::new(0));
        let echo: Handler = std::sync::Arc::new(move |r: Incoming| {
            let seen: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let mut reply = Reply::text(418, &seen.join("\n"));
            reply.content_type = "text/x-echo";
            if answered.fetch_add(1, Ordering::SeqCst) > 0 {
                reply.headers.push(("Access-Control-Allow-Origin".into(), "*".into()));
            }
            reply
        });
        let server = HttpServer::start("127.0.0.1:0", echo).unwrap();
        let addr = server.addr();
        let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
        let client = Client::new(ex, crate::http::client::ClientSettings::new(std::time::Duration::from_secs(5)));
        let run = |out: Outgoing| smol::block_on(ex.run(send(&client, out)));
        let mut out = Outgoing::new("POST", &format!("http://{addr}/v1/query/height")).body(b"{}".to_vec());
        out.headers = forwarded_headers(&[("Host".into(), "mesh.example".into()), ("Accept".into(), "*/*".into())], None);
        let Ok((answer, cors)) = run(out) else { panic!("no answer") };
        assert!(!cors, "no CORS header came back, none is added");
        let again = Outgoing::new("OPTIONS", &format!("http://{addr}/v1/client/dispatch"));
        assert!(matches!(run(again), Ok((_, true))), "the servicer's CORS answer is kept");
        assert_eq!((answer.status, answer.content_type()), (418, "text/x-echo"));
        let seen = String::from_utf8(answer.body).unwrap();
        assert!(seen.lines().any(|l| l.eq_ignore_ascii_case(&format!("host: {addr}"))), "{seen}");
        assert!(seen.lines().any(|l| l.eq_ignore_ascii_case("x-forwarded-host: mesh.example")), "{seen}");

        // Nothing listening: the request was not sent, so another node may take it.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let out = Outgoing::new("POST", &format!("http://{dead}/v1/query/height"));
        assert!(matches!(run(out), Err(Failure::NotSent(_))));
    }
}
