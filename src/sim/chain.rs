//! Blockchain node simulator: an EVM-flavoured JSON-RPC stub answering on any path, with an
//! optional fixed latency, that records what reached it (paths, methods, headers, basic auth)
//! so tests can check what meshd forwarded. Answers keep geth's key order
//! (`jsonrpc`, `id`, `result`) and trailing newline, so response sorting is exercised.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Handler, HttpServer, Incoming, Reply};
use crate::base64::decode as base64_decode;

/// Chain simulator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainSimConfig {
    /// Loopback `ip:port`; port 0 picks a free one.
    pub listen: String,
    /// Latency added to every answer (served from a timer thread, so concurrency is unbounded).
    pub delay_ms: u64,
}

impl Default for ChainSimConfig {
    fn default() -> Self {
        ChainSimConfig { listen: "127.0.0.1:0".into(), delay_ms: 0 }
    }
}

/// First block number reported by `eth_blockNumber`; each call returns the next one.
pub const FIRST_BLOCK: u64 = 0x10d4f;
/// How many recent requests [`ChainStats::recent`] keeps.
pub const RECENT_KEPT: usize = 64;

/// One request as the chain saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeenRequest {
    pub http_method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// `user:password` from an `Authorization: Basic` header.
    pub basic_auth: Option<String>,
    /// JSON-RPC methods in the body (several for a batch).
    pub rpc_methods: Vec<String>,
    pub body: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChainStats {
    /// HTTP requests served (`/sim/stats` excluded).
    pub requests: u64,
    /// JSON-RPC calls, counting each element of a batch.
    pub rpc_calls: u64,
    pub batches: u64,
    pub by_rpc_method: BTreeMap<String, u64>,
    pub by_path: BTreeMap<String, u64>,
    pub by_http_method: BTreeMap<String, u64>,
    /// Requests per decoded `user:password` basic-auth credential.
    pub basic_auth: BTreeMap<String, u64>,
    /// The last [`RECENT_KEPT`] requests, oldest first.
    pub recent: Vec<SeenRequest>,
    /// Next value `eth_blockNumber` returns.
    pub next_block: u64,
}

/// A running chain simulator. Dropping it stops it.
pub struct ChainHandle {
    server: Option<HttpServer>,
    stats: Arc<Mutex<ChainStats>>,
    addr: SocketAddr,
}

impl ChainHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn stats(&self) -> ChainStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Stop serving and release the port.
    pub fn stop(mut self) {
        if let Some(mut s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// Start a chain simulator on background threads.
pub fn start_chain(cfg: ChainSimConfig) -> io::Result<ChainHandle> {
    let addr: SocketAddr = cfg.listen.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("listen {:?}: {e}", cfg.listen)))?;
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("listen {}: not a loopback address", cfg.listen)));
    }
    let stats = Arc::new(Mutex::new(ChainStats { next_block: FIRST_BLOCK, ..Default::default() }));
    let delay = Duration::from_millis(cfg.delay_ms);
    let st = stats.clone();
    let handler: Handler = Arc::new(move |rq: Incoming| {
        // Stats are for the test harness, not part of the simulated chain's latency.
        let is_stats = rq.method == "GET" && rq.path == "/sim/stats";
        let mut reply = handle(&st, rq);
        if !is_stats {
            reply.delay = delay;
        }
        reply
    });
    let server = HttpServer::start(&cfg.listen, handler)?;
    let addr = server.addr();
    Ok(ChainHandle { server: Some(server), stats, addr })
}

fn handle(stats: &Mutex<ChainStats>, rq: Incoming) -> Reply {
    if rq.method == "GET" && rq.path == "/sim/stats" {
        let s = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        return Reply::json(200, &serde_json::to_value(s).expect("stats serialize"));
    }
    let parsed: Result<Value, _> = serde_json::from_slice(&rq.body);
    let calls: Vec<&Value> = match &parsed {
        Ok(Value::Array(a)) => a.iter().collect(),
        Ok(v) => vec![v],
        Err(_) => vec![],
    };
    let rpc_methods: Vec<String> = calls.iter().map(|c| c.get("method").and_then(Value::as_str).unwrap_or("").to_string()).collect();
    let basic_auth = rq
        .header("Authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64_decode(b.trim()))
        .map(|b| String::from_utf8_lossy(&b).into_owned());

    let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
    st.requests += 1;
    *st.by_path.entry(rq.path.clone()).or_default() += 1;
    *st.by_http_method.entry(rq.method.clone()).or_default() += 1;
    if let Some(cred) = &basic_auth {
        *st.basic_auth.entry(cred.clone()).or_default() += 1;
    }
    for m in &rpc_methods {
        *st.by_rpc_method.entry(m.clone()).or_default() += 1;
    }
    st.rpc_calls += rpc_methods.len() as u64;
    let body = match &parsed {
        Ok(Value::Array(a)) if a.is_empty() => error_obj(&Value::Null, -32600, "empty batch"),
        Ok(Value::Array(a)) => {
            st.batches += 1;
            let parts: Vec<String> = a.iter().map(|c| answer(&mut st, c)).collect();
            format!("[{}]", parts.join(","))
        }
        Ok(v) => answer(&mut st, v),
        Err(_) if rq.body.is_empty() => error_obj(&Value::Null, -32600, "empty request body"),
        Err(e) => error_obj(&Value::Null, -32700, &format!("parse error: {e}")),
    };
    st.recent.push(SeenRequest {
        http_method: rq.method,
        path: rq.path,
        query: rq.query,
        headers: rq.headers,
        basic_auth,
        rpc_methods,
        body: String::from_utf8_lossy(&rq.body).into_owned(),
    });
    if st.recent.len() > RECENT_KEPT {
        let excess = st.recent.len() - RECENT_KEPT;
        st.recent.drain(..excess);
    }
    let mut body = body.into_bytes();
    body.push(b'\n');
    Reply::raw_json(200, body)
}

/// One JSON-RPC answer, keys in geth's order.
fn answer(st: &mut ChainStats, call: &Value) -> String {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = call.get("method").and_then(Value::as_str) else {
        return error_obj(&id, -32600, "invalid request");
    };
    let result = match method {
        "eth_blockNumber" => {
            let b = st.next_block;
            st.next_block += 1;
            format!("0x{b:x}")
        }
        "eth_chainId" => "0x1".into(),
        "net_version" => "1".into(),
        other => return error_obj(&id, -32601, &format!("the method {other} does not exist/is not available")),
    };
    format!(r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#, id, Value::String(result))
}

fn error_obj(id: &Value, code: i64, message: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{},"message":{}}}}}"#, id, code, Value::String(message.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::testkit::{agent, get, post};
    use std::time::Instant;

    #[test]
    fn answers_single_batch_and_unknown_calls() {
        let chain = start_chain(ChainSimConfig::default()).unwrap();
        let url = format!("{}/some/path?x=1", chain.url());
        let (status, body) = post(&url, &[], br#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":7}"#);
        assert_eq!(status, 200);
        assert_eq!(body, format!("{{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":\"0x{FIRST_BLOCK:x}\"}}\n"));
        let (_, body) = post(&url, &[], br#"{"jsonrpc":"2.0","method":"eth_blockNumber","id":"a"}"#);
        assert_eq!(body, format!("{{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":\"0x{:x}\"}}\n", FIRST_BLOCK + 1));
        let (_, body) = post(
            &chain.url(),
            &[],
            br#"[{"jsonrpc":"2.0","method":"eth_chainId","id":1},{"jsonrpc":"2.0","method":"net_version","id":2},{"jsonrpc":"2.0","method":"eth_foo","id":3}]"#,
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["result"], "0x1");
        assert_eq!(v[1]["result"], "1");
        assert_eq!(v[2]["error"]["code"], -32601);
        assert!(v[2]["error"]["message"].as_str().unwrap().contains("eth_foo"));
        assert_eq!(v[2]["id"], 3);
        let (_, body) = post(&chain.url(), &[], b"not json");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], -32700);

        let s = chain.stats();
        assert_eq!(s.requests, 4);
        assert_eq!(s.rpc_calls, 5);
        assert_eq!(s.batches, 1);
        assert_eq!(s.by_rpc_method.get("eth_blockNumber"), Some(&2));
        assert_eq!(s.by_path.get("/some/path"), Some(&2));
        assert_eq!(s.by_path.get("/"), Some(&2));
        assert_eq!(s.next_block, FIRST_BLOCK + 2);
        assert_eq!(s.recent[0].query, "x=1");
        assert_eq!(s.recent.len(), 4);
    }

    #[test]
    fn records_headers_and_basic_auth() {
        let chain = start_chain(ChainSimConfig::default()).unwrap();
        // "user:pa:ss" — a colon in the password must survive.
        let (status, _) = post(
            &format!("{}/v1/abc", chain.url()),
            &[("Authorization", "Basic dXNlcjpwYTpzcw=="), ("X-Custom", "42")],
            br#"{"jsonrpc":"2.0","method":"eth_chainId","id":1}"#,
        );
        assert_eq!(status, 200);
        let (_, text) = get(&format!("{}/sim/stats", chain.url()));
        let s: ChainStats = serde_json::from_str(&text).unwrap();
        assert_eq!(s.basic_auth.get("user:pa:ss"), Some(&1));
        let seen = &s.recent[0];
        assert_eq!(seen.basic_auth.as_deref(), Some("user:pa:ss"));
        assert_eq!(seen.path, "/v1/abc");
        assert_eq!(seen.http_method, "POST");
        assert!(seen.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("x-custom") && v == "42"), "{:?}", seen.headers);
        assert_eq!(seen.rpc_methods, vec!["eth_chainId".to_string()]);
        assert_eq!(s.requests, 1, "/sim/stats is not counted");
    }

    #[test]
    fn delay_is_applied_and_stop_refuses() {
        let chain = start_chain(ChainSimConfig { listen: "127.0.0.1:0".into(), delay_ms: 200 }).unwrap();
        let url = chain.url();
        let t0 = Instant::now();
        let (status, _) = post(&url, &[], br#"{"jsonrpc":"2.0","method":"net_version","id":1}"#);
        assert_eq!(status, 200);
        assert!(t0.elapsed() >= Duration::from_millis(200), "{:?}", t0.elapsed());
        chain.stop();
        assert!(agent().post(&url).send(&b"{}"[..]).is_err(), "stopped chain must refuse");
    }

    #[test]
    fn refuses_non_loopback() {
        let e = start_chain(ChainSimConfig { listen: "0.0.0.0:0".into(), delay_ms: 0 }).err().unwrap();
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
