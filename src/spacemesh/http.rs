//! HTTP plumbing of the gateway's two listeners: which headers cross the proxy (end-to-end
//! ones only; `Host` is left to the outbound client so it names the upstream), local text
//! answers, the allow-all CORS set of go-spacemesh's `--json-cors-everywhere`, and writing an
//! answer with arbitrary headers off the executor thread.

use super::upstream::UpstreamAnswer;
use crate::http::server::Response;

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the framing ones the HTTP server and client set themselves.
const NOT_FORWARDED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

pub fn is_forwarded(name: &str) -> bool {
    !NOT_FORWARDED.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The client's end-to-end headers minus `Host` (rewritten to the upstream's by ureq, §8:
/// https/CDN upstreams route on it), plus `X-Forwarded-For` as Go's reverse proxy adds it.
pub fn request_headers(headers: &[(String, String)], client_ip: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut forwarded_for = None;
    for (name, value) in headers {
        let (name, value) = (name.as_str(), value.as_str());
        if name.eq_ignore_ascii_case("host") || !is_forwarded(name) {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for = Some(value.to_string());
            continue;
        }
        out.push((name.to_string(), value.to_string()));
    }
    if !client_ip.is_empty() {
        let chain = match forwarded_for {
            Some(prior) => format!("{prior}, {client_ip}"),
            None => client_ip.to_string(),
        };
        out.push(("X-Forwarded-For".into(), chain));
    }
    out
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A local plain-text answer.
pub fn text(status: u16, message: &str) -> UpstreamAnswer {
    UpstreamAnswer { status, headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())], body: format!("{message}\n").into_bytes() }
}

/// A local JSON answer.
pub fn json(status: u16, value: &serde_json::Value) -> UpstreamAnswer {
    let mut body = serde_json::to_vec_pretty(value).expect("a Value serializes");
    body.push(b'\n');
    UpstreamAnswer { status, headers: vec![("Content-Type".into(), "application/json".into())], body }
}

/// Values of rs/cors as go-spacemesh configures it (spacemesh-node-split.md §2).
pub const CORS_ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS, HEAD";
pub const CORS_EXPOSE_HEADERS: &str = "Server, Date, Content-Type, Content-Length, Connection, Vary, X-Final-Url, Access-Control-Allow-Origin";
pub const CORS_MAX_AGE: &str = "300";

/// Drop every upstream `Access-Control-*` header (two sets confuse browsers: go-spacemesh PR
/// #6586) and add the allow-all set. `request_headers` answers a preflight's
/// `Access-Control-Request-Headers` (echoed, as rs/cors does for `AllowedHeaders ["*"]`).
pub fn apply_cors(answer: &mut UpstreamAnswer, requested_headers: Option<&str>) {
    answer.headers.retain(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-"));
    let allow_headers = requested_headers.filter(|h| !h.trim().is_empty()).unwrap_or("*").to_string();
    for (k, v) in [
        ("Access-Control-Allow-Origin", "*".to_string()),
        ("Access-Control-Allow-Methods", CORS_ALLOW_METHODS.to_string()),
        ("Access-Control-Allow-Headers", allow_headers),
        ("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS.to_string()),
        ("Access-Control-Max-Age", CORS_MAX_AGE.to_string()),
    ] {
        answer.headers.push((k.to_string(), v));
    }
}

/// The answer to send: `answer` with its forwardable headers only.
pub fn response(answer: UpstreamAnswer) -> Response {
    let headers = answer.headers.into_iter().filter(|(k, _)| is_forwarded(k)).map(|(k, v)| (k.into(), v)).collect();
    Response { status: answer.status, headers, body: answer.body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_replaces_upstream_headers() {
        let mut a = UpstreamAnswer {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Access-Control-Allow-Origin".into(), "https://evil.example".into()),
                ("access-control-allow-credentials".into(), "true".into()),
            ],
            body: vec![],
        };
        apply_cors(&mut a, None);
        let acao: Vec<&str> = a.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("access-control-allow-origin")).map(|(_, v)| v.as_str()).collect();
        assert_eq!(acao, vec!["*"]);
        assert!(header(&a.headers, "access-control-allow-credentials").is_none());
        assert_eq!(header(&a.headers, "Access-Control-Allow-Headers"), Some("*"));
        assert_eq!(header(&a.headers, "Content-Type"), Some("application/json"));
        let mut p = text(204, "");
        apply_cors(&mut p, Some("content-type, x-custom"));
        assert_eq!(header(&p.headers, "Access-Control-Allow-Headers"), Some("content-type, x-custom"));
        assert_eq!(header(&p.headers, "Access-Control-Max-Age"), Some("300"));
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        for h in ["Connection", "transfer-encoding", "Content-Length", "Upgrade", "TE"] {
            assert!(!is_forwarded(h), "{h}");
        }
        for h in ["Content-Type", "Accept", "Retry-After", "X-Final-Url"] {
            assert!(is_forwarded(h), "{h}");
        }
    }
}
