//! meshd benchmark load generator (cargo example `loadgen`, see bench/README.md).
//!
//! Subcommands:
//! - `setup`  writes a meshd data dir with N servicer keys and the matching servicer-simulator
//!   config (apps staked, budgets large) so every generated relay has a valid session;
//! - `run`    pre-signs unique valid relays (many servicers × apps × clients) *before* the timed
//!   phase, then drives meshd (or, with `--direct`, the chain simulator with the same JSON-RPC
//!   payloads) over K keep-alive HTTP/1.1 connections, closed-loop or open-loop at a fixed rate,
//!   and prints a JSON summary (status counts, latency percentiles, achieved rate);
//! - `crypto` the in-process crypto floor: the per-relay CPU work a servicer cannot avoid
//!   (parse, request hash, AAT + client signature verification, proof hash, response hash, sign);
//! - `idle`   slowloris: holds many idle/half-sent connections open, then times valid relays;
//! - `burst`  opens K connections at once and sends one relay on each: are all answered?
//! - `sh-setup`, `sh-crypto`, `sh-streams` and `run --shannon`: the Shannon supplier edge
//!   (bench/loadgen_shannon.rs).
//!
//! The HTTP client is a raw `TcpStream` (no client library): the generator shares a core with
//! both simulators, so its own per-request cost must stay small next to meshd's. Only loopback
//! addresses are accepted and every loop is bounded by a count and a deadline.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use meshd::client::{wire_json, RelayClient};
use meshd::demo::{write_datadir, CHAIN, SESSION_HEIGHT, TOKEN};
use meshd::protocol::keys::verify_hex;
use meshd::protocol::relay::response_hash;
use meshd::protocol::sortjson::sort_json_response;
use meshd::protocol::{KeyPair, Payload, Relay, RelayProof};
use meshd::relay::verified_tokens::VerifiedTokens;
use meshd::sim::{ServicerSimConfig, SimApp};
use serde_json::{json, Value};

#[path = "loadgen_shannon.rs"]
mod shannon;

/// Hard caps so a typo cannot start an unbounded run.
const MAX_RELAYS: usize = 5_000_000;
const MAX_CONNS: usize = 20_000;
const MAX_SECONDS: f64 = 3_600.0;
/// The JSON-RPC call every generated relay carries (answered by the chain simulator).
const RPC_DATA: &str = r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}"#;
/// A chain answer of the shape the chain simulator returns, for the in-process crypto floor.
const CHAIN_ANSWER: &str = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x10d4f\"}\n";

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: loadgen setup|run|crypto|idle|burst|sh-setup|sh-crypto|sh-streams [--key value …] (see bench/README.md)");
        std::process::exit(2);
    }
    let command = args.remove(0);
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => fail(&e),
    };
    let result = match command.as_str() {
        "setup" => setup(&opts),
        "run" => run(&opts),
        "crypto" => crypto(&opts),
        "idle" => idle(&opts),
        "burst" => burst(&opts),
        "sh-setup" => shannon::setup(&opts),
        "sh-crypto" => shannon::crypto(&opts),
        "sh-streams" => shannon::streams(&opts),
        other => Err(format!("unknown subcommand {other:?} (setup, run, crypto, idle, burst, sh-setup, sh-crypto, sh-streams)")),
    };
    if let Err(e) = result {
        fail(&e);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("loadgen: {message}");
    std::process::exit(2);
}

/// `--key value` options and bare `--flag`s.
struct Opts {
    values: HashMap<String, String>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut values = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let key = args[i].strip_prefix("--").ok_or_else(|| format!("unexpected argument {:?}", args[i]))?;
            match args.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    values.insert(key.to_string(), v.clone());
                    i += 2;
                }
                _ => {
                    values.insert(key.to_string(), "true".into());
                    i += 1;
                }
            }
        }
        Ok(Opts { values })
    }
    fn str(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
    fn req(&self, key: &str) -> Result<&str, String> {
        self.str(key).ok_or_else(|| format!("--{key} is required"))
    }
    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.str(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{key} {v:?}: {e}")),
        }
    }
    fn flag(&self, key: &str) -> bool {
        self.str(key) == Some("true")
    }
}

// ----- identities ------------------------------------------------------------------------------

/// Deterministic test key: the same (kind, index) gives the same key in `setup` and `run`.
fn bench_key(kind: u8, index: u32) -> KeyPair {
    let mut seed = [0x5au8; 32];
    seed[0] = kind;
    seed[1..5].copy_from_slice(&index.to_le_bytes());
    KeyPair::from_seed(&seed)
}

fn servicer_key(i: u32) -> KeyPair {
    bench_key(b'S', i)
}
fn app_key(i: u32) -> KeyPair {
    bench_key(b'A', i)
}
fn client_key(i: u32) -> KeyPair {
    bench_key(b'C', i)
}

/// The population relays are spread over.
struct Population {
    servicers: Vec<KeyPair>,
    /// One per (app, client) pair, AAT signed.
    clients: Vec<RelayClient>,
}

impl Population {
    fn from_opts(o: &Opts) -> Result<Population, String> {
        let (s, a, c): (u32, u32, u32) = (o.num("servicers", 1)?, o.num("apps", 1)?, o.num("clients", 1)?);
        if !(1..=10_000).contains(&s) || !(1..=1_000).contains(&a) || !(1..=100).contains(&c) {
            return Err("--servicers 1..10000, --apps 1..1000, --clients 1..100".into());
        }
        let servicers = (0..s).map(servicer_key).collect();
        let mut clients = Vec::new();
        for app in 0..a {
            for client in 0..c {
                clients.push(RelayClient::new(app_key(app), client_key(app * 100 + client)));
            }
        }
        Ok(Population { servicers, clients })
    }
}

// ----- setup -----------------------------------------------------------------------------------

fn write_file(path: &Path, value: &Value) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("JSON")).map_err(|e| format!("{}: {e}", path.display()))
}

fn setup(o: &Opts) -> Result<(), String> {
    let dir = PathBuf::from(o.req("dir")?);
    let rpc_port: u16 = o.num("rpc-port", 0)?;
    let servicer_url = o.req("servicer-url")?;
    let chain_url = o.req("chain-url")?;
    let sim_config = PathBuf::from(o.req("sim-config")?);
    let sim_listen = o.req("sim-listen")?;
    let extra: Value = match o.str("extra") {
        None => json!({}),
        Some(text) => serde_json::from_str(text).map_err(|e| format!("--extra is not a JSON object: {e}"))?,
    };
    let (s, a): (u32, u32) = (o.num("servicers", 1)?, o.num("apps", 1)?);
    let servicers: Vec<KeyPair> = (0..s).map(servicer_key).collect();
    write_datadir(&dir, rpc_port, servicer_url, chain_url, &servicers[0], &extra)?;
    // write_datadir writes one key; the benchmark node hosts all of them.
    let keys: Vec<String> = servicers.iter().map(KeyPair::private_hex).collect();
    write_file(&dir.join("key/key.json"), &json!([{"name": "bench-node", "url": servicer_url, "keys": keys}]))?;
    let cfg = ServicerSimConfig {
        listen: sim_listen.to_string(),
        auth_token: TOKEN.into(),
        height: SESSION_HEIGHT,
        service_url: format!("http://127.0.0.1:{rpc_port}"),
        servicers: servicers.iter().map(|k| k.public_hex.clone()).collect(),
        chains: vec![CHAIN.into()],
        // Budgets far above any run, so 71 (over service) never limits a benchmark.
        apps: (0..a).map(|i| SimApp { public_key: app_key(i).public_hex, chains: vec![CHAIN.into()], max_relays: 1_000_000_000_000 }).collect(),
        // Mainnet's SessionNodeCount: dispatches as large as a real servicer's.
        session_node_count: 24,
        ..Default::default()
    };
    cfg.validate().map_err(|e| format!("simulator config: {e}"))?;
    write_file(&sim_config, &serde_json::to_value(&cfg).expect("config serializes"))?;
    println!("{}", json!({"datadir": dir, "sim_config": sim_config, "servicers": s, "apps": a}));
    Ok(())
}

// ----- pre-signed relays -----------------------------------------------------------------------

/// One (servicer, app, client) relay template: the wire bytes around the two per-relay fields.
struct Template {
    before_entropy: String,
    before_signature: String,
    after_signature: String,
    proof: RelayProof,
    client: usize,
    servicer: usize,
}

/// A relay signed ahead of the timed phase: 80 bytes each, so a million fit comfortably.
struct Signed {
    template: u32,
    entropy: i64,
    signature: [u8; 64],
}

const ENTROPY_MARK: i64 = 987_654_321_987_654;
const SIG_MARK: &str = "SIGNATURE_PLACEHOLDER";

fn payload() -> Payload {
    Payload { data: RPC_DATA.into(), method: "POST".into(), ..Default::default() }
}

fn templates(pop: &Population) -> Vec<Template> {
    let mut out = Vec::with_capacity(pop.servicers.len() * pop.clients.len());
    for (ci, client) in pop.clients.iter().enumerate() {
        for (si, servicer) in pop.servicers.iter().enumerate() {
            let mut relay = client.build(&servicer.public_hex, CHAIN, SESSION_HEIGHT, SESSION_HEIGHT, ENTROPY_MARK, payload());
            let proof = relay.proof.clone();
            relay.proof.signature = SIG_MARK.into();
            let wire = wire_json(&relay);
            let (a, rest) = wire.split_once(&ENTROPY_MARK.to_string()).expect("entropy in wire");
            let (b, c) = rest.split_once(SIG_MARK).expect("signature in wire");
            out.push(Template { before_entropy: a.into(), before_signature: b.into(), after_signature: c.into(), proof, client: ci, servicer: si });
        }
    }
    out
}

/// Relay `i` → template: servicers vary fastest so consecutive relays spread over sessions.
fn template_of(i: usize, pop: &Population) -> usize {
    let s = pop.servicers.len();
    let c = pop.clients.len();
    let servicer = i % s;
    let client = (i / s) % c;
    client * s + servicer
}

fn presign(pop: &Population, tpl: &[Template], n: usize, entropy_base: i64) -> Vec<Signed> {
    build_parallel(n, |i| {
        let ti = template_of(i, pop);
        let t = &tpl[ti];
        let mut proof = t.proof.clone();
        proof.entropy = entropy_base + i as i64;
        let signature = pop.clients[t.client].client.sign(&proof.hash());
        Signed { template: ti as u32, entropy: proof.entropy, signature }
    })
}

/// `f(0) … f(n-1)` in order, computed on up to 8 threads in contiguous chunks: relays are signed
/// before the timed part, and signing hundreds of thousands of them is worth every core.
pub(crate) fn build_parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let chunk = n.div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|t| scope.spawn(move || (t * chunk..((t + 1) * chunk).min(n)).map(f).collect::<Vec<T>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("build thread")).collect()
    })
}

fn body_of(s: &Signed, tpl: &[Template]) -> String {
    let t = &tpl[s.template as usize];
    let mut body = String::with_capacity(t.before_entropy.len() + t.before_signature.len() + t.after_signature.len() + 160);
    body.push_str(&t.before_entropy);
    body.push_str(&s.entropy.to_string());
    body.push_str(&t.before_signature);
    body.push_str(&hex::encode(s.signature));
    body.push_str(&t.after_signature);
    body
}

// ----- raw HTTP/1.1 client ---------------------------------------------------------------------

/// `http://127.0.0.1:PORT/path` → (addr, path); anything but loopback is refused.
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr: SocketAddr = host.parse().map_err(|e| format!("{url}: host must be ip:port: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{url}: only loopback addresses"));
    }
    Ok((addr, path))
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr, timeout: Duration) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn { writer: stream.try_clone()?, reader: BufReader::with_capacity(16 << 10, stream) })
    }

    /// Send one request, read one response: (status, body, server wants close).
    fn roundtrip(&mut self, head: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>, bool)> {
        let mut req = Vec::with_capacity(head.len() + body.len());
        req.extend_from_slice(head.as_bytes());
        req.extend_from_slice(body);
        self.writer.write_all(&req)?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed before the status line"));
        }
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for _ in 0..100 {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        if chunked {
            for _ in 0..10_000 {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    line.clear();
                    self.reader.read_line(&mut line)?;
                    break;
                }
                let start = out.len();
                out.resize(start + size, 0);
                self.reader.read_exact(&mut out[start..])?;
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf)?;
            }
        } else if let Some(n) = length {
            out.resize(n, 0);
            self.reader.read_exact(&mut out)?;
        } else {
            self.reader.read_to_end(&mut out)?;
            close = true;
        }
        Ok((status, out, close))
    }
}

fn request_head(path: &str, addr: SocketAddr, body_len: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n")
}

// ----- statistics ------------------------------------------------------------------------------

fn percentiles(mut v: Vec<u32>) -> Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    json!({
        "n": v.len(), "mean_us": mean.round(), "p50_us": at(0.50), "p90_us": at(0.90),
        "p99_us": at(0.99), "p999_us": at(0.999), "max_us": v[v.len() - 1], "min_us": v[0],
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One line on stderr the runner watches to bracket the timed phase (CPU tick samples).
fn event(name: &str, extra: Value) {
    let mut v = json!({"event": name, "unix_ms": unix_ms()});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    eprintln!("{v}");
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

// ----- run -------------------------------------------------------------------------------------

#[derive(Default)]
struct WorkerOut {
    latency: Vec<u32>,
    service: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    io_errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    reconnects: u64,
    /// The slowest requests: (latency µs, relay index, send offset ms, status).
    slowest: Vec<(u32, usize, u64, u16)>,
}

impl WorkerOut {
    fn note_slow(&mut self, entry: (u32, usize, u64, u16)) {
        const KEEP: usize = 10;
        if self.slowest.len() < KEEP || entry.0 > self.slowest[KEEP - 1].0 {
            self.slowest.push(entry);
            self.slowest.sort_unstable_by(|a, b| b.0.cmp(&a.0));
            self.slowest.truncate(KEEP);
        }
    }
}

fn run(o: &Opts) -> Result<(), String> {
    let url = o.req("url")?;
    let (addr, path) = parse_url(url)?;
    let direct = o.flag("direct");
    // --shannon: protobuf RelayRequests ring-signed ahead of time (bench/loadgen_shannon.rs).
    let sh = o.flag("shannon");
    let n: usize = o.num("relays", 10_000)?;
    let conns: usize = o.num("conns", 16)?;
    let rate: f64 = o.num("rate", 0.0)?;
    let max_seconds: f64 = o.num("max-seconds", 120.0)?;
    let verify: usize = o.num("verify", 200)?;
    let timeout = Duration::from_millis(o.num("timeout-ms", 10_000)?);
    let entropy_base: i64 = match o.str("entropy-base") {
        Some(_) => o.num("entropy-base", 0)?,
        // Distinct per run: a reused data dir would answer 37 to repeated proofs.
        None => (unix_ms() % 1_000_000_000) as i64 * 1_000_000,
    };
    if n == 0 || n > MAX_RELAYS || conns == 0 || conns > MAX_CONNS || !(0.0..=MAX_SECONDS).contains(&max_seconds) || rate < 0.0 {
        return Err(format!("bounds: 1 ≤ relays ≤ {MAX_RELAYS}, 1 ≤ conns ≤ {MAX_CONNS}, max-seconds ≤ {MAX_SECONDS}, rate ≥ 0"));
    }

    // Everything signed up front: the timed phase only formats bytes and does HTTP.
    let t0 = Instant::now();
    let pop = Population::from_opts(o)?;
    let tpl = templates(&pop);
    // Relays n.. are the warm-up's (--warm-relays, spread over the connections), sent concurrently
    // before the timed phase so sessions are fetched and meshd's upstream keep-alive pools are
    // open at full concurrency; `--warm-relays 0` times session fetches too.
    // Default: every session at least once (servicers × app-clients) and 2 per connection.
    // Every (supplier, app) pair once, like every (servicer, app-client) pair for Morse.
    let sessions = if sh { o.num("suppliers", 1usize)? * o.num("apps", 1usize)? } else { pop.servicers.len() * pop.clients.len() };
    let default_warm = (2 * conns).max(sessions);
    let warm_per_conn = o.num("warm-relays", default_warm)?.div_ceil(conns);
    let warm_total = warm_per_conn * conns;
    let signed = if direct || sh { Vec::new() } else { presign(&pop, &tpl, n + warm_total, entropy_base) };
    let sh_relays = if sh { Some(shannon::Relays::for_run(o, n + warm_total)?) } else { None };
    let presign_s = t0.elapsed().as_secs_f64();
    event("presigned", json!({"relays": signed.len() + sh_relays.as_ref().map_or(0, |r| r.bodies.len()), "seconds": presign_s}));
    // The request body of relay i (timed: 0..n, warm-up: n..).
    let body_at = |i: usize| -> std::borrow::Cow<'_, [u8]> {
        if direct {
            std::borrow::Cow::Borrowed(RPC_DATA.as_bytes())
        } else if let Some(r) = &sh_relays {
            std::borrow::Cow::Borrowed(r.bodies[i].as_slice())
        } else {
            std::borrow::Cow::Owned(body_of(&signed[i], &tpl).into_bytes())
        }
    };

    let next = AtomicUsize::new(0);
    let verified = AtomicUsize::new(0);
    let verify_ok = AtomicU64::new(0);
    let verify_bad = AtomicU64::new(0);
    let outs = Mutex::new(Vec::new());
    // Warm-up: every connection is opened one after the other and answers one request before
    // the timed phase. (Kept from tiny_http, which could leave a connection arriving in a burst
    // unread.) A warm-up request that gets no answer within --warm-timeout-ms is retried on a
    // new connection and counted.
    let warm_timeout = Duration::from_millis(o.num("warm-timeout-ms", 2_000)?);
    // The Shannon listener answers GET /health without counting a refusal.
    let warm_path = if sh { "/health" } else { "/loadgen-warmup" };
    let warm_head = format!("GET {warm_path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    let warm_ok = AtomicU64::new(0);
    let warm_lock = Mutex::new(());
    let warm_retries = AtomicU64::new(0);
    let opened = std::sync::Barrier::new(conns);
    let warm_next = AtomicUsize::new(0);
    let warm_failed = AtomicU64::new(0);
    let warmed = std::sync::Barrier::new(conns + 1);
    let go = std::sync::Barrier::new(conns + 1);
    let start_at = std::sync::OnceLock::new();
    let mut start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..conns {
            scope.spawn(|| {
                let mut out = WorkerOut::default();
                let mut conn: Option<Conn> = None;
                {
                    let _one_at_a_time = warm_lock.lock().expect("warm lock");
                    for _ in 0..5 {
                        let warm = Conn::open(addr, warm_timeout).and_then(|mut c| c.roundtrip(&warm_head, b"").map(|(_, _, close)| (c, close)));
                        match warm {
                            Ok((c, close)) => {
                                conn = (!close).then_some(c);
                                break;
                            }
                            Err(_) => {
                                warm_retries.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if let Some(c) = conn.as_mut() {
                        let _ = c.writer.set_read_timeout(Some(timeout));
                    }
                }
                opened.wait();
                for _ in 0..warm_per_conn {
                    let w = n + warm_next.fetch_add(1, Ordering::Relaxed);
                    let body = body_at(w);
                    let head = request_head(&path, addr, body.len());
                    let ok = match conn.as_mut().map(|c| c.roundtrip(&head, &body)) {
                        Some(Ok((200, _, close))) => {
                            warm_ok.fetch_add(1, Ordering::Relaxed);
                            if close {
                                conn = None;
                            }
                            true
                        }
                        Some(Ok(_)) => true,
                        _ => false,
                    };
                    if !ok {
                        warm_failed.fetch_add(1, Ordering::Relaxed);
                        conn = Conn::open(addr, timeout).ok();
                    }
                }
                warmed.wait();
                go.wait();
                let start: Instant = *start_at.get().expect("start time set before go");
                let deadline = start + Duration::from_secs_f64(max_seconds);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || Instant::now() >= deadline {
                        break;
                    }
                    let intended = if rate > 0.0 { start + Duration::from_secs_f64(i as f64 / rate) } else { Instant::now() };
                    if intended >= deadline {
                        break;
                    }
                    if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let body = body_at(i);
                    let head = request_head(&path, addr, body.len());
                    let sent = Instant::now();
                    // A kept-alive connection the server closed meanwhile fails at once (reset,
                    // EOF before any answer): resend once on a fresh connection. Never resend after
                    // a timeout — the relay may have been served, and a resend would be a duplicate.
                    let mut result = Err(std::io::Error::other("not sent"));
                    for _ in 0..2 {
                        let reused = conn.is_some();
                        if conn.is_none() {
                            match Conn::open(addr, timeout) {
                                Ok(c) => conn = Some(c),
                                Err(e) => {
                                    result = Err(e);
                                    break;
                                }
                            }
                        }
                        result = conn.as_mut().expect("connected").roundtrip(&head, &body);
                        match &result {
                            Ok((_, _, close)) => {
                                if *close {
                                    conn = None;
                                }
                                break;
                            }
                            Err(e) => {
                                conn = None;
                                out.reconnects += 1;
                                use std::io::ErrorKind::*;
                                if !(reused && matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted)) {
                                    break;
                                }
                            }
                        }
                    }
                    let done = Instant::now();
                    match result {
                        Ok((status, resp, _)) => {
                            let lat = done.duration_since(intended).as_micros().min(u32::MAX as u128) as u32;
                            out.note_slow((lat, i, sent.duration_since(start).as_millis() as u64, status));
                            out.latency.push(lat);
                            out.service.push(done.duration_since(sent).as_micros().min(u32::MAX as u128) as u32);
                            *out.statuses.entry(status).or_default() += 1;
                            if status != 200 && out.samples.len() < 3 {
                                out.samples.push(format!("{status} {}", String::from_utf8_lossy(&resp[..resp.len().min(300)])));
                            }
                            if status == 200 && !direct && verified.fetch_add(1, Ordering::Relaxed) < verify {
                                let ok = match &sh_relays {
                                    Some(r) => r.check(i, &resp),
                                    None => check_signature(&signed[i], &tpl, &pop, &resp),
                                };
                                if ok { &verify_ok } else { &verify_bad }.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            *out.io_errors.entry(format!("{:?}", e.kind())).or_default() += 1;
                            if out.samples.len() < 3 {
                                let at = sent.duration_since(start).as_millis();
                                out.samples.push(format!(
                                    "io error {:?} relay {i} sent at {at} ms after {} ms: {e}",
                                    e.kind(),
                                    done.duration_since(sent).as_millis()
                                ));
                            }
                        }
                    }
                }
                outs.lock().expect("outs").push(out);
            });
        }
        warmed.wait();
        event("start", json!({"relays": n, "conns": conns, "rate": rate, "direct": direct, "warm_retries": warm_retries.load(Ordering::Relaxed)}));
        start = Instant::now();
        start_at.set(start).expect("set once");
        go.wait();
    });
    let elapsed = start.elapsed().as_secs_f64();
    event("end", json!({"seconds": elapsed}));
    // Stay alive briefly: the runner samples this process's CPU ticks when it sees "end".
    std::thread::sleep(Duration::from_millis(o.num("linger-ms", 300)?));

    let mut total = WorkerOut::default();
    for out in outs.into_inner().expect("outs") {
        total.latency.extend(out.latency);
        total.service.extend(out.service);
        for (k, v) in out.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
        for (k, v) in out.io_errors {
            *total.io_errors.entry(k).or_default() += v;
        }
        total.samples.extend(out.samples);
        total.reconnects += out.reconnects;
        for e in out.slowest {
            total.note_slow(e);
        }
    }
    let answered: u64 = total.statuses.values().sum();
    let ok = total.statuses.get(&200).copied().unwrap_or(0);
    let summary = json!({
        "mode": if direct { "direct" } else { "meshd" },
        "url": url,
        "relays_requested": n,
        "answered": answered,
        "ok": ok,
        "statuses": total.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "io_errors": total.io_errors,
        "reconnects": total.reconnects,
        "conns": conns,
        "target_rate": rate,
        "elapsed_s": elapsed,
        "answered_per_s": answered as f64 / elapsed,
        "ok_per_s": ok as f64 / elapsed,
        "latency": percentiles(total.latency),
        "service": percentiles(total.service),
        "verify": {"ok": verify_ok.load(Ordering::Relaxed), "bad": verify_bad.load(Ordering::Relaxed)},
        "presign_s": presign_s,
        "servicers": pop.servicers.len(),
        "app_clients": pop.clients.len(),
        "error_samples": total.samples.iter().take(5).collect::<Vec<_>>(),
        "entropy_base": entropy_base,
        "warm_retries": warm_retries.load(Ordering::Relaxed),
        "warm_relays": warm_total,
        "warm_relays_failed": warm_failed.load(Ordering::Relaxed),
        "warm_relays_200": warm_ok.load(Ordering::Relaxed),
        "slowest": total.slowest.iter().map(|(lat, i, at, st)| json!({"latency_ms": *lat as f64 / 1e3, "relay": i, "sent_at_ms": at, "status": st})).collect::<Vec<_>>(),
    });
    println!("{summary}");
    Ok(())
}

/// Does a 200 body carry the servicer's valid signature over this relay's response?
fn check_signature(s: &Signed, tpl: &[Template], pop: &Population, body: &[u8]) -> bool {
    let t = &tpl[s.template as usize];
    let mut proof = t.proof.clone();
    proof.entropy = s.entropy;
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return false };
    let (Some(response), Some(sig)) = (v["response"].as_str(), v["signature"].as_str()) else { return false };
    let digest = response_hash(response, &proof.hash_hex());
    verify_hex(&pop.servicers[t.servicer].public_hex, &digest, sig)
}

// ----- crypto floor ----------------------------------------------------------------------------

/// The work every relay costs meshd, with no I/O: what its relay path cannot go below. With
/// `tokens` an app's token is verified once, as meshd does (src/relay/verified_tokens.rs);
/// without, on every relay (the floor before meshd remembered tokens).
fn crypto_once(body: &[u8], servicer: &KeyPair, tokens: Option<&VerifiedTokens>, sort: bool) -> usize {
    let relay = Relay::from_json(body).expect("pre-built relay parses");
    assert_eq!(relay.proof.request_hash, relay.request_hash_hex(), "request hash");
    let valid = match tokens {
        Some(tokens) => relay.proof.validate_basic_with(|aat| tokens.validate(aat)),
        None => relay.proof.validate_basic(),
    };
    valid.expect("valid proof (AAT + client signature)");
    let proof_hash = relay.proof.hash();
    let response = if sort { sort_json_response(CHAIN_ANSWER) } else { CHAIN_ANSWER.to_string() };
    let signature = servicer.sign_hex(&response_hash(&response, &hex::encode(proof_hash)));
    signature.len()
}

fn crypto(o: &Opts) -> Result<(), String> {
    let n: usize = o.num("relays", 5_000)?;
    let runs: usize = o.num("runs", 5)?;
    if !(1..=1_000_000).contains(&n) || !(1..=100).contains(&runs) {
        return Err("--relays 1..1000000, --runs 1..100".into());
    }
    let pop = Population::from_opts(o)?;
    let tpl = templates(&pop);
    let signed = presign(&pop, &tpl, n, 1);
    let bodies: Vec<String> = signed.iter().map(|s| body_of(s, &tpl)).collect();
    let servicer = &pop.servicers[0];
    let mut full = Vec::new();
    let mut sorted = Vec::new();
    let mut every_token = Vec::new();
    for _ in 0..runs {
        for (sort, remember, out) in [(false, true, &mut full), (true, true, &mut sorted), (false, false, &mut every_token)] {
            let t = Instant::now();
            let mut sink = 0;
            let tokens = VerifiedTokens::default();
            for b in &bodies {
                sink += crypto_once(b.as_bytes(), servicer, remember.then_some(&tokens), sort);
            }
            std::hint::black_box(sink);
            out.push(n as f64 / t.elapsed().as_secs_f64());
        }
    }
    // Per-step costs (one pass each) to show what dominates.
    let relays: Vec<Relay> = bodies.iter().map(|b| Relay::from_json(b.as_bytes()).expect("parses")).collect();
    let step = |f: &dyn Fn(&Relay) -> usize| -> f64 {
        let t = Instant::now();
        let mut sink = 0;
        for r in &relays {
            sink += f(r);
        }
        std::hint::black_box(sink);
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let parse_us = {
        let t = Instant::now();
        for b in &bodies {
            std::hint::black_box(Relay::from_json(b.as_bytes()).expect("parses"));
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let steps = json!({
        "parse_us": parse_us,
        "request_hash_us": step(&|r| r.request_hash_hex().len()),
        "aat_verify_us": step(&|r| usize::from(r.proof.aat.validate().is_ok())),
        "validate_basic_us (AAT + client sig)": step(&|r| usize::from(r.proof.validate_basic().is_ok())),
        "proof_hash_us": step(&|r| r.proof.hash()[0] as usize),
        "response_hash_us": step(&|r| response_hash(CHAIN_ANSWER, &r.proof.request_hash)[0] as usize),
        "sort_json_us": step(&|_| sort_json_response(CHAIN_ANSWER).len()),
        "sign_us": step(&|r| servicer.sign(&r.proof.hash())[0] as usize),
    });
    let summary = json!({
        "relays_per_run": n,
        "runs": runs,
        "floor_relays_per_s": full,
        "floor_median": median(&mut full.clone()),
        "floor_with_sort_relays_per_s": sorted,
        "floor_with_sort_median": median(&mut sorted.clone()),
        "floor_every_token_relays_per_s": every_token,
        "floor_every_token_median": median(&mut every_token.clone()),
        "steps": steps,
    });
    println!("{summary}");
    Ok(())
}

// ----- slowloris -------------------------------------------------------------------------------

fn idle(o: &Opts) -> Result<(), String> {
    let url = o.req("url")?;
    let (addr, path) = parse_url(url)?;
    let conns: usize = o.num("conns", 1_000)?;
    let mode = o.str("mode").unwrap_or("headers");
    let hold: f64 = o.num("hold-seconds", 10.0)?;
    let probes: usize = o.num("probes", 5)?;
    let probe_timeout = Duration::from_millis(o.num("probe-timeout-ms", 5_000)?);
    if conns > MAX_CONNS || !(0.0..=600.0).contains(&hold) || probes > 100 {
        return Err(format!("bounds: conns ≤ {MAX_CONNS}, hold-seconds ≤ 600, probes ≤ 100"));
    }
    // A partial request: headers never finished ("headers"), or a body announced and not sent
    // ("body", 4 KiB announced and never sent: held until the body deadline, client_rpc_read_timeout).
    let body_length: usize = o.num("body-length", 4096)?;
    let partial = match mode {
        "headers" => format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n"),
        "body" => format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {body_length}\r\n\r\n{{\"payload\":"),
        other => return Err(format!("--mode {other:?}: headers or body")),
    };
    let pop = Population::from_opts(o)?;
    let tpl = templates(&pop);
    let signed = presign(&pop, &tpl, probes.max(1), (unix_ms() % 1_000_000_000) as i64 * 1_000_000);

    let started = Instant::now();
    let open_deadline = started + Duration::from_secs(60);
    let mut held = Vec::with_capacity(conns);
    let mut open_errors: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..conns {
        if Instant::now() >= open_deadline {
            break;
        }
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)).and_then(|mut s| s.write_all(partial.as_bytes()).map(|_| s)) {
            Ok(s) => held.push(s),
            Err(e) => *open_errors.entry(format!("{:?}", e.kind())).or_default() += 1,
        }
    }
    let open_s = started.elapsed().as_secs_f64();
    event("opened", json!({"held": held.len(), "seconds": open_s}));
    std::thread::sleep(Duration::from_secs(1));

    let mut results = Vec::new();
    for s in signed.iter().take(probes) {
        let body = body_of(s, &tpl);
        let head = request_head(&path, addr, body.len());
        let t = Instant::now();
        let outcome = Conn::open(addr, probe_timeout).and_then(|mut c| c.roundtrip(&head, body.as_bytes()));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        results.push(match outcome {
            Ok((status, _, _)) => json!({"status": status, "ms": ms}),
            Err(e) => json!({"error": format!("{:?}: {e}", e.kind()), "ms": ms}),
        });
        std::thread::sleep(Duration::from_millis(300));
    }
    // Still holding: how many of our idle connections did the server close meanwhile?
    let mut closed_by_server = 0;
    for s in &held {
        let _ = s.set_nonblocking(true);
        let mut b = [0u8; 256];
        match (&*s).read(&mut b) {
            Ok(_) => closed_by_server += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => closed_by_server += 1,
        }
    }
    let remaining = Duration::from_secs_f64(hold).saturating_sub(started.elapsed());
    std::thread::sleep(remaining);
    event("closing", json!({}));
    drop(held);
    println!(
        "{}",
        json!({"mode": mode, "conns_requested": conns, "open_errors": open_errors, "open_s": open_s,
               "closed_or_answered_by_server": closed_by_server, "probes": results})
    );
    Ok(())
}

// ----- connection burst ------------------------------------------------------------------------

/// K connections opened at the same moment (one thread each), one relay on each. Every
/// connection should be answered about as fast as the others; one that is not answered within
/// the timeout was accepted by the kernel but never read by the server.
fn burst(o: &Opts) -> Result<(), String> {
    let url = o.req("url")?;
    let (addr, path) = parse_url(url)?;
    let conns: usize = o.num("conns", 16)?;
    let timeout = Duration::from_millis(o.num("timeout-ms", 3_000)?);
    if !(1..=1_000).contains(&conns) {
        return Err("--conns 1..1000".into());
    }
    let pop = Population::from_opts(o)?;
    let tpl = templates(&pop);
    let signed = presign(&pop, &tpl, conns, (unix_ms() % 1_000_000_000) as i64 * 1_000_000);
    // All threads connect at the same moment and send at once, like a client pool opening up.
    let gate = std::sync::Barrier::new(conns);
    let start = Instant::now();
    let results: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = signed
            .iter()
            .map(|s| {
                let (tpl, path, gate) = (&tpl, &path, &gate);
                scope.spawn(move || {
                    let body = body_of(s, tpl);
                    let head = request_head(path, addr, body.len());
                    gate.wait();
                    let outcome = Conn::open(addr, timeout).and_then(|mut c| c.roundtrip(&head, body.as_bytes()));
                    let ms = start.elapsed().as_secs_f64() * 1e3;
                    match outcome {
                        Ok((status, _, _)) => json!({"status": status, "ms": ms}),
                        Err(e) => json!({"error": format!("{:?}", e.kind()), "ms": ms}),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("burst thread")).collect()
    });
    let answered = results.iter().filter(|r| r.get("status").is_some()).count();
    println!("{}", json!({"conns": conns, "answered": answered, "unanswered": conns - answered, "timeout_ms": timeout.as_millis() as u64, "results": results}));
    Ok(())
}
