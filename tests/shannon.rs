//! Shannon supplier edge end to end: the meshd binary with a `shannon` section and no Pocket
//! files, the full-node simulator (src/sim/fullnode.rs, written from shannon-relay.md §3.4), the
//! chain simulator as the service backend, a **real Redis** (Debian's `redis-server`, started and
//! stopped here) receiving the hand-off, and relays built and ring-signed by our own client
//! (src/shannon/client.rs). Every answer's supplier signature is verified; every stream message
//! is decoded. Everything is on 127.0.0.1 and bounded in time.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{temp_dir, wait_until};
use meshd::demo::free_port;
use meshd::shannon::client::{build_relay_request, check_relay_response};
use meshd::shannon::keys::OperatorKey;
use meshd::shannon::mined::MinedRelayMessage;
use meshd::shannon::payload::POKTHTTPRequest;
use meshd::shannon::proto::{Relay, RelayRequest, RelayResponse, SessionHeader};
use meshd::shannon::ring_members::{ring_addresses, ring_pubkeys};
use meshd::sim::fullnode::{start_fullnode, FullNodeSim, FullNodeSimConfig, SimAccount, SimApplication, SimService, SimSupplier};
use meshd::sim::{start_chain, ChainHandle, ChainSimConfig};
use meshd::supplier::resp::{Connection, RedisTarget, Reply};
use serde_json::{json, Value};

const SERVICE: &str = "anvil";

fn key(tag: u8, i: u8) -> OperatorKey {
    let mut raw = [tag; 32];
    raw[31] = i.wrapping_add(1);
    OperatorKey::from_bytes(&raw).unwrap()
}

/// A `redis-server` child on a free loopback port, without persistence (the test reads what
/// meshd added while it runs; stopping it simulates an outage, not data loss on its side).
struct Redis {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Redis {
    fn new(dir: &std::path::Path) -> Redis {
        let mut r = Redis { port: free_port().unwrap(), child: None, dir: dir.to_path_buf() };
        r.start();
        r
    }

    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; tests/run.sh does)");
        self.child = Some(child);
        assert!(wait_until(Duration::from_secs(10), || self.connect().is_some()), "redis-server did not start on {}", self.port);
    }

    /// An outage: the process goes away (its in-memory streams survive in this test only as
    /// long as it runs, so outages here are made with SIGSTOP/SIGCONT instead, see `pause`).
    fn pause(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    }

    fn resume(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn connect(&self) -> Option<Connection> {
        Connection::connect(&RedisTarget::parse(&self.url()).unwrap(), Duration::from_secs(2)).ok()
    }

    /// Every message of a stream, decoded.
    fn stream(&self, name: &str) -> Vec<MinedRelayMessage> {
        let mut conn = self.connect().expect("redis answers");
        let Reply::Array(Some(entries)) = conn.command(&[b"XRANGE", name.as_bytes(), b"-", b"+"]).unwrap() else {
            return Vec::new();
        };
        entries
            .into_iter()
            .map(|entry| {
                let Reply::Array(Some(mut parts)) = entry else { panic!("stream entry shape") };
                let Reply::Array(Some(fields)) = parts.remove(1) else { panic!("stream fields shape") };
                assert_eq!(fields[0], Reply::Bulk(Some(b"data".to_vec())), "pocket-relay-miner reads the field `data`");
                let Reply::Bulk(Some(bytes)) = &fields[1] else { panic!("data is a bulk string") };
                MinedRelayMessage::decode(bytes).expect("a MinedRelayMessage")
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The chain side of a Shannon network, a backend, Redis, and a meshd child with a `shannon`
/// section holding the supplier keys.
struct Edge {
    dir: PathBuf,
    listen: SocketAddr,
    metrics_port: u16,
    child: Option<Child>,
    log: PathBuf,
    node: FullNodeSim,
    _backend: ChainHandle,
    redis: Redis,
    suppliers: Vec<OperatorKey>,
    app: OperatorKey,
    gateway: OperatorKey,
    entropy: u64,
}

impl Edge {
    fn new(name: &str, suppliers: usize, target_hash_hex: &str, extra: Value) -> Edge {
        Edge::with_backend(name, suppliers, target_hash_hex, extra, ChainSimConfig::default())
    }

    fn with_backend(name: &str, suppliers: usize, target_hash_hex: &str, extra: Value, backend: ChainSimConfig) -> Edge {
        let dir = temp_dir(&format!("shannon-{name}"));
        let backend = start_chain(backend).unwrap();
        let supplier_keys: Vec<OperatorKey> = (0..suppliers).map(|i| key(0x31, i as u8)).collect();
        let app = key(0x41, 0);
        let gateway = key(0x51, 0);
        let node = start_fullnode(FullNodeSimConfig {
            services: vec![SimService { id: SERVICE.into(), target_hash_hex: target_hash_hex.into(), compute_units_per_relay: 7 }],
            applications: vec![SimApplication {
                address: app.address().into(),
                delegatee_gateway_addresses: vec![gateway.address().into()],
                ..Default::default()
            }],
            accounts: [&app, &gateway].iter().map(|k| SimAccount { address: k.address().into(), pubkey_hex: Some(hex::encode(k.pubkey())) }).collect(),
            suppliers: supplier_keys.iter().map(|k| SimSupplier { operator_address: k.address().into(), services: vec![SERVICE.into()] }).collect(),
            ..FullNodeSimConfig::default()
        })
        .unwrap();
        let redis = Redis::new(&dir);
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
        let metrics_port = free_port().unwrap();
        let mut shannon = json!({
            "listen": listen.to_string(),
            "full_nodes": [node.url()],
            "services": {SERVICE: {"urls": [backend.url()]}},
            "redis_url": redis.url(),
            "height_poll_interval": 100,
            "handoff_retry_wait_max": 500,
        });
        for (k, v) in extra.as_object().unwrap() {
            shannon[k] = v.clone();
        }
        let config = json!({
            "rpc_port": free_port().unwrap().to_string(),
            "listen_address": "127.0.0.1",
            "pocket_prometheus_port": metrics_port.to_string(),
            "log_level": "*:info",
            "relay_queue_map_size": 64,
            "shannon": shannon,
        });
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = dir.join("meshd.log");
        let edge = Edge { dir, listen, metrics_port, child: None, log, node, _backend: backend, redis, suppliers: supplier_keys, app, gateway, entropy: 0 };
        edge.write_keys(&(0..suppliers).collect::<Vec<_>>());
        edge
    }

    /// Write the supplier keys file with the keys of these suppliers (atomically, as an operator's
    /// tooling would).
    fn write_keys(&self, which: &[usize]) {
        let keys: Vec<String> = which.iter().map(|&i| hex::encode(self.suppliers[i].signing_key().to_bytes())).collect();
        let tmp = self.dir.join("supplier_keys.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&keys).unwrap()).unwrap();
        std::fs::rename(tmp, self.dir.join("supplier_keys.json")).unwrap();
    }

    fn sighup(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn start(&mut self) {
        self.child = Some(common::launch_meshd(&self.dir, &self.log, self.listen.port()));
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The session header the chain has now for the app.
    fn header(&self) -> SessionHeader {
        let (session_id, start, end) = self.node.session_at(self.app.address(), SERVICE, self.node.height());
        SessionHeader {
            application_address: self.app.address().into(),
            service_id: SERVICE.into(),
            session_id,
            session_start_block_height: start,
            session_end_block_height: end,
        }
    }

    /// The app's ring at the session end (app + gateway, sorted by address).
    fn ring(&self) -> Vec<[u8; 33]> {
        let addresses = ring_addresses(self.app.address(), &[self.gateway.address().to_string()], &[], 0);
        let keys: HashMap<&str, [u8; 33]> = [(self.app.address(), *self.app.pubkey()), (self.gateway.address(), *self.gateway.pubkey())].into_iter().collect();
        ring_pubkeys(&addresses, |a| keys.get(a).copied()).unwrap()
    }

    /// A JSON-RPC relay for `supplier`, signed by the gateway, as encoded bytes.
    fn relay(&mut self, supplier: usize, header: &SessionHeader) -> Vec<u8> {
        self.entropy += 1;
        let body = format!(r#"{{"jsonrpc":"2.0","id":{},"method":"eth_blockNumber","params":[]}}"#, self.entropy);
        let payload = POKTHTTPRequest::new("POST", "http://gateway.invalid/", [("Content-Type", "application/json")], body.into_bytes());
        let seed = self.entropy.to_be_bytes();
        let mut fill = meshd::shannon::ring_sign::seeded_fill(&seed);
        build_relay_request(header, self.suppliers[supplier].address(), &self.gateway, &self.ring(), &payload, &mut fill).unwrap()
    }

    /// POST a relay: (status, body, Meshd-Error header).
    fn post(&self, body: &[u8], headers: &[(&str, &str)]) -> (u16, Vec<u8>, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(20))).build().into();
        let mut req = agent.post(&format!("http://{}/", self.listen)).header("Content-Type", "application/json");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("Rpc-Type")) {
            req = req.header("Rpc-Type", "3");
        }
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let mut response = req.send(body).unwrap_or_else(|e| panic!("POST relay: {e}\n{}", self.log_tail()));
        let status = response.status().as_u16();
        let error = response.headers().get("meshd-error").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let bytes = response.body_mut().read_to_vec().unwrap();
        (status, bytes, error)
    }

    /// Send a relay, check the supplier signature of the 200, return the relay hash the
    /// central miner will see (SHA-256 of the dehydrated relay, §4).
    fn serve(&mut self, supplier: usize, header: &SessionHeader) -> [u8; 32] {
        let request = self.relay(supplier, header);
        let (status, body, error) = self.post(&request, &[]);
        assert_eq!(status, 200, "{error}\n{}", self.log_tail());
        let answer = check_relay_response(&body, self.suppliers[supplier].pubkey()).expect("a supplier-signed response");
        assert_eq!(answer.status_code, 200);
        assert!(
            String::from_utf8_lossy(&answer.body).contains("\"result\":\"0x"),
            "the backend's JSON-RPC answer is wrapped: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
        Relay { req: Some(RelayRequest::decode(&request).unwrap()), res: Some(RelayResponse::decode(&body).unwrap()) }.hash()
    }

    fn scrape(&self) -> String {
        let (status, _, body) = common::http("GET", &format!("http://127.0.0.1:{}/metrics", self.metrics_port), &[], b"");
        assert_eq!(status, 200);
        body
    }

    /// The private health route (on the relay port, token from the file meshd created).
    fn health(&self) -> Value {
        let config: Value = serde_json::from_slice(&std::fs::read(self.dir.join("config.json")).unwrap()).unwrap();
        let token: Value = serde_json::from_slice(&std::fs::read(self.dir.join("auth/mesh.json")).unwrap()).unwrap();
        let url = format!("http://127.0.0.1:{}/v1/private/mesh/health", config["rpc_port"].as_str().unwrap());
        let (status, _, body) = common::http("GET", &url, &[("Authorization", token["Value"].as_str().unwrap())], b"");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn stream_of(&self, supplier: usize) -> Vec<MinedRelayMessage> {
        self.redis.stream(&format!("ha:relays:{}", self.suppliers[supplier].address()))
    }

    /// Relay hashes in all supplier streams, with how often each appears.
    fn streamed(&self) -> BTreeMap<[u8; 32], usize> {
        let mut out = BTreeMap::new();
        for i in 0..self.suppliers.len() {
            for m in self.stream_of(i) {
                *out.entry(<[u8; 32]>::try_from(m.relay_hash.as_slice()).unwrap()).or_insert(0) += 1;
            }
        }
        out
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn relays_are_verified_signed_mined_committed_and_handed_to_redis_streams() {
    let mut edge = Edge::new("serve", 3, &"ff".repeat(32), json!({}));
    edge.start();
    let header = edge.header();
    let mut hashes = Vec::new();
    for i in 0..12 {
        hashes.push(edge.serve(i % 3, &header));
    }
    // Every relay reaches its supplier's stream once, decodable as pocket-relay-miner reads it.
    assert!(wait_until(Duration::from_secs(10), || edge.streamed().len() == 12), "streams: {:?}\n{}", edge.streamed(), edge.log_tail());
    for i in 0..3 {
        let messages = edge.stream_of(i);
        assert_eq!(messages.len(), 4, "supplier {i}");
        for m in messages {
            assert_eq!(m.supplier_operator_address, edge.suppliers[i].address());
            assert_eq!((m.service_id.as_str(), m.application_address.as_str()), (SERVICE, edge.app.address()));
            assert_eq!(
                (m.session_id.as_str(), m.session_start_height, m.session_end_height),
                (header.session_id.as_str(), header.session_start_block_height, header.session_end_block_height)
            );
            assert_eq!(m.compute_units_per_relay, 7, "CUPR at the session start");
            assert_eq!(m.relay_hash, meshd::shannon::mining::relay_hash(&m.relay_bytes).to_vec(), "relay_hash is SHA-256 of relay_bytes");
            let relay = Relay::decode(&m.relay_bytes).unwrap();
            assert!(relay.res.as_ref().unwrap().payload.is_empty(), "the stored relay is dehydrated");
            assert!(!relay.res.as_ref().unwrap().meta.supplier_operator_signature.is_empty());
            assert!(hashes.contains(&<[u8; 32]>::try_from(m.relay_hash.as_slice()).unwrap()), "the hash the client computes");
            assert!(m.arrival_block_height >= header.session_start_block_height && m.published_at_unix_nano > 0);
        }
    }
    // One set of full-node queries for the session, however many relays.
    let stats = edge.node.stats();
    assert_eq!(stats.route(meshd::sim::fullnode::ROUTE_SESSION), 1, "{stats:?}");
    let metrics = edge.scrape();
    // Kept for tests/metrics_check.sh, which runs the real `promtool check metrics` on it.
    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics-scrape-shannon.txt"), &metrics).unwrap();
    assert!(metrics.contains("meshd_shannon_relays_served_total{moniker=\"geo-mesh-node\"} 12"), "{metrics}");
    assert!(metrics.contains("meshd_shannon_relays_mined_total{moniker=\"geo-mesh-node\"} 12"), "{metrics}");
    let health = edge.health();
    let sh = &health["shannon"];
    assert_eq!(sh["counters"]["served"], 12, "{health}");
    assert_eq!(sh["suppliers"].as_array().unwrap().len(), 3, "{health}");
    assert_eq!(sh["sessions_cached"], 1, "{health}");
    assert_eq!(sh["handoff"]["redis_up"], true, "{health}");
    assert!(wait_until(Duration::from_secs(5), || edge.health()["shannon"]["queue"]["pending"] == 0), "{}", edge.health());
    assert!(
        wait_until(Duration::from_secs(5), || {
            let m = edge.scrape();
            m.contains("meshd_shannon_handoff_total{moniker=\"geo-mesh-node\"} 12")
                && m.contains("meshd_shannon_queue_relays{moniker=\"geo-mesh-node\",state=\"pending\"} 0")
        }),
        "{}",
        edge.scrape()
    );
}

#[test]
fn bad_relays_get_clear_refusals_and_nothing_is_queued() {
    let mut edge = Edge::new("refuse", 1, &"ff".repeat(32), json!({}));
    edge.start();
    let header = edge.header();
    let good = edge.relay(0, &header);
    assert_eq!(edge.post(&good, &[]).0, 200);

    // A replay of the same signed request.
    let (status, body, error) = edge.post(&good, &[]);
    assert_eq!(status, 409, "{error}");
    let refusal = RelayResponse::decode(&body).unwrap();
    let e = refusal.relay_miner_error.expect("an unsigned error response with relay_miner_error");
    assert_eq!((e.codespace.as_str(), e.description.as_str()), ("meshd", "duplicate"));
    assert!(refusal.meta.supplier_operator_signature.is_empty(), "errors are not signed (§1.5)");

    // A tampered payload breaks the ring signature.
    let mut req = RelayRequest::decode(&edge.relay(0, &header)).unwrap();
    req.payload.push(b' ');
    let (status, _, error) = edge.post(&req.encode(), &[]);
    assert_eq!(status, 401, "{error}");

    // A signature by a key outside the app's ring.
    let stranger = key(0x61, 0);
    let payload = POKTHTTPRequest::new("POST", "/", [("Content-Type", "application/json")], b"{}".to_vec());
    let ring = [*stranger.pubkey(), *edge.app.pubkey()];
    let forged =
        build_relay_request(&header, edge.suppliers[0].address(), &stranger, &ring, &payload, &mut meshd::shannon::ring_sign::seeded_fill(b"x")).unwrap();
    let (status, _, error) = edge.post(&forged, &[]);
    assert_eq!((status, error.contains("ring")), (401, true), "{error}");

    // Not ours, not protobuf, not this session, not at the edge.
    let mut other = RelayRequest::decode(&edge.relay(0, &header)).unwrap();
    other.meta.supplier_operator_address = key(0x71, 0).address().into();
    assert_eq!(edge.post(&other.encode(), &[]).0, 404);
    let (status, _, error) = edge.post(b"{\"jsonrpc\":\"2.0\"}", &[]);
    assert_eq!((status, error.contains("RelayRequest protobuf")), (400, true), "{error}");
    let mut wrong = header.clone();
    wrong.session_id = "ab".repeat(32);
    let stale = edge.relay(0, &wrong);
    let (status, _, error) = edge.post(&stale, &[]);
    assert_eq!((status, error.contains("session")), (400, true), "{error}");
    // An application the chain does not know: refused without the full node's URL or answer
    // (a private address), which go to the log instead.
    let mut unknown = header.clone();
    unknown.application_address = key(0x81, 0).address().into();
    let unknown = edge.relay(0, &unknown);
    let (status, body, error) = edge.post(&unknown, &[]);
    let node = edge.node.url();
    let node = node.trim_start_matches("http://");
    assert_eq!(status, 400, "{error}");
    assert!(!error.contains(node) && !String::from_utf8_lossy(&body).contains(node), "the full node's address leaked: {error}");
    assert!(wait_until(Duration::from_secs(5), || edge.log_text().contains("event=shannon_fullnode_query_failed")), "{}", edge.log_tail());
    let (status, _, error) = edge.post(&good, &[("Rpc-Type", "2")]);
    assert_eq!((status, error.contains("websocket")), (501, true), "{error}");

    // After the grace period the session is over.
    edge.node.advance(header.session_end_block_height - edge.node.height() + 11);
    std::thread::sleep(Duration::from_millis(400));
    let late = edge.relay(0, &header);
    let (status, _, error) = edge.post(&late, &[]);
    assert_eq!((status, error.contains("grace")), (400, true), "{error}\n{}", edge.log_tail());

    assert!(wait_until(Duration::from_secs(5), || edge.streamed().len() == 1), "only the one good relay is handed off: {:?}", edge.streamed());
    let metrics = edge.scrape();
    assert!(metrics.contains("reason=\"bad_signature\"} 2") && metrics.contains("reason=\"duplicate\"} 1"), "{metrics}");
}

#[test]
fn relays_above_the_difficulty_target_are_served_but_not_handed_off() {
    let mut edge = Edge::new("target", 1, &"00".repeat(32), json!({}));
    edge.start();
    let header = edge.header();
    for _ in 0..5 {
        edge.serve(0, &header);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(edge.streamed().is_empty(), "no relay beats an all-zero target");
    let metrics = edge.scrape();
    assert!(metrics.contains("meshd_shannon_relays_mined_total{moniker=\"geo-mesh-node\"} 0"), "{metrics}");
    assert!(metrics.contains("meshd_shannon_relays_served_total{moniker=\"geo-mesh-node\"} 5"), "{metrics}");
}

/// The crash suite: Redis goes away and comes back while relays are served, meshd is
/// SIGKILLed in the middle; every relay answered 200 reaches its stream exactly once.
#[test]
fn redis_outages_and_sigkill_lose_no_answered_relay_and_add_none_twice() {
    let mut edge = Edge::new("crash", 2, &"ff".repeat(32), json!({}));
    edge.start();
    let header = edge.header();
    let mut answered = Vec::new();
    for round in 0..4 {
        if round % 2 == 0 {
            edge.redis.pause();
        }
        for i in 0..10 {
            answered.push(edge.serve(i % 2, &header));
        }
        if round == 1 {
            edge.kill();
            edge.start();
        }
        if round % 2 == 0 {
            std::thread::sleep(Duration::from_millis(300));
            edge.redis.resume();
        }
    }
    // One more SIGKILL right after answers, with Redis paused: the relays are only in LMDB.
    edge.redis.pause();
    for i in 0..10 {
        answered.push(edge.serve(i % 2, &header));
    }
    edge.kill();
    edge.redis.resume();
    edge.start();
    assert!(
        wait_until(Duration::from_secs(30), || edge.streamed().len() == answered.len()),
        "{} of {} answered relays in the streams\n{}",
        edge.streamed().len(),
        answered.len(),
        edge.log_tail()
    );
    let streamed = edge.streamed();
    for h in &answered {
        assert_eq!(streamed.get(h), Some(&1), "relay {} must be in its stream exactly once", hex::encode(h));
    }
    assert!(edge.log_tail().contains("event=shannon_ready"), "{}", edge.log_tail());
}

#[test]
fn supplier_keys_reload_adds_suppliers_and_a_broken_file_keeps_the_running_set() {
    let mut edge = Edge::new("reload", 2, &"ff".repeat(32), json!({}));
    edge.write_keys(&[0]);
    edge.start();
    let header = edge.header();
    edge.serve(0, &header);
    let not_yet = edge.relay(1, &header);
    let (status, _, error) = edge.post(&not_yet, &[]);
    assert_eq!(status, 404, "{error}");

    edge.write_keys(&[0, 1]);
    edge.sighup();
    assert!(wait_until(Duration::from_secs(10), || edge.log_text().contains("event=supplier_keys_reloaded")), "{}", edge.log_tail());
    edge.serve(1, &header);

    // A broken entry: refused with the file and entry named, the running set keeps serving.
    std::fs::write(edge.dir.join("supplier_keys.json"), format!("[\"{}\", \"not-a-key\"]", hex::encode(edge.suppliers[0].signing_key().to_bytes()))).unwrap();
    edge.sighup();
    assert!(wait_until(Duration::from_secs(10), || edge.log_text().contains("event=reload_failed kind=supplier_keys")), "{}", edge.log_tail());
    let line = edge.log_text().lines().find(|l| l.contains("kind=supplier_keys")).unwrap().to_string();
    assert!(line.contains("supplier_keys.json") && line.contains("[1]"), "{line}");
    edge.serve(1, &header);
    edge.serve(0, &header);
    assert!(wait_until(Duration::from_secs(10), || edge.streamed().len() == 4), "{:?}", edge.streamed());
    assert!(!edge.log_text().contains("kind=keys"), "no Pocket keys file is expected on a Shannon-only host:\n{}", edge.log_tail());
}

/// Redis refuses a relay (its supplier's stream key holds a string): retried with backoff, then
/// a dead letter that `meshd queue dead` shows and `meshd queue replay-dead --shannon` sends
/// again once the key is fixed. The refused attempts leave no dedup mark behind.
#[test]
fn a_relay_redis_refuses_becomes_a_dead_letter_and_replays() {
    let mut edge = Edge::new("dead", 1, &"ff".repeat(32), json!({"handoff_retry_wait_max": 200}));
    let stream = format!("ha:relays:{}", edge.suppliers[0].address());
    let mut redis = edge.redis.connect().unwrap();
    assert_eq!(redis.command(&[b"SET", stream.as_bytes(), b"not a stream"]).unwrap(), Reply::Status("OK".into()));
    edge.start();
    let header = edge.header();
    let hash = edge.serve(0, &header);
    let queue = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meshd")).args(args).arg("--datadir").arg(&edge.dir).output().unwrap();
        assert!(out.status.success(), "meshd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(15), || queue(&["queue", "dead"]).contains(&hex::encode(hash))),
        "{}\n{}",
        queue(&["queue", "dead"]),
        edge.log_tail()
    );
    let dead = queue(&["queue", "dead"]);
    assert!(dead.contains("WRONGTYPE") && dead.contains("replay-dead") && dead.contains("--shannon"), "{dead}");
    assert!(queue(&["queue", "stats"]).contains("shannon      pending=0 dead=1"), "{}", queue(&["queue", "stats"]));
    assert!(edge.log_text().contains("event=shannon_handoff_refused"), "{}", edge.log_tail());

    assert_eq!(redis.command(&[b"DEL", stream.as_bytes()]).unwrap(), Reply::Integer(1));
    assert!(queue(&["queue", "replay-dead", "--shannon"]).contains("1 dead Shannon mined relay(s) moved back to pending"));
    assert!(wait_until(Duration::from_secs(10), || edge.streamed().get(&hash) == Some(&1)), "{:?}\n{}", edge.streamed(), edge.log_tail());
    assert!(queue(&["queue", "stats"]).contains("shannon      pending=0 dead=0"));
}

/// SIGTERM while a relay waits on a slow backend: the relay is still answered 200, committed and
/// handed off, and meshd exits 0.
#[test]
fn sigterm_answers_the_relay_in_flight_then_exits_0() {
    let mut edge = Edge::with_backend("sigterm", 1, &"ff".repeat(32), json!({}), ChainSimConfig { delay_ms: 1500, ..ChainSimConfig::default() });
    edge.start();
    let header = edge.header();
    let request = edge.relay(0, &header);
    let pid = edge.child.as_ref().unwrap().id().to_string();
    let listen = edge.listen;
    let sender = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(20))).build().into();
        let mut response = agent.post(&format!("http://{listen}/")).header("Rpc-Type", "3").send(&request[..]).unwrap();
        (response.status().as_u16(), response.body_mut().read_to_vec().unwrap(), request)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let (status, body, request) = sender.join().unwrap();
    assert_eq!(status, 200, "{}", edge.log_tail());
    check_relay_response(&body, edge.suppliers[0].pubkey()).expect("signed");
    let exit = edge.child.take().unwrap().wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{}", edge.log_tail());
    let hash = Relay { req: Some(RelayRequest::decode(&request).unwrap()), res: Some(RelayResponse::decode(&body).unwrap()) }.hash();
    edge.start();
    assert!(wait_until(Duration::from_secs(10), || edge.streamed().get(&hash) == Some(&1)), "{:?}\n{}", edge.streamed(), edge.log_tail());
}

/// The crash suite under load: four clients send relays concurrently while Redis is paused and
/// resumed and meshd is SIGKILLed twice mid-stream; every relay that got a 200 (signature
/// checked) is in its supplier's stream exactly once. Relays cut by the kill got no answer and
/// promise nothing.
#[test]
fn sigkill_under_concurrent_load_with_redis_flapping_keeps_every_answered_relay_once() {
    let mut edge = Edge::new("load-crash", 2, &"ff".repeat(32), json!({}));
    edge.start();
    let header = edge.header();
    let relays: Vec<(usize, Vec<u8>)> = (0..240).map(|i| (i % 2, edge.relay(i % 2, &header))).collect();
    let listen = edge.listen;
    let pubkeys: Vec<[u8; 33]> = edge.suppliers.iter().map(|k| *k.pubkey()).collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(relays));
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<[u8; 32]>::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (queue, answered, pubkeys) = (queue.clone(), answered.clone(), pubkeys.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().into();
                while Instant::now() < deadline {
                    let Some((supplier, request)) = queue.lock().unwrap().pop() else { return };
                    // No answer (meshd is down or was killed mid-request): send it again later; if it
                    // had been committed, the retry is refused as a duplicate and counts as nothing.
                    let retry = |request: Vec<u8>| {
                        queue.lock().unwrap().insert(0, (supplier, request));
                        std::thread::sleep(Duration::from_millis(20));
                    };
                    let Ok(mut response) = agent.post(&format!("http://{listen}/")).header("Rpc-Type", "3").send(&request[..]) else {
                        retry(request);
                        continue;
                    };
                    let Ok(body) = response.body_mut().read_to_vec() else {
                        retry(request);
                        continue;
                    };
                    if response.status().as_u16() == 200 {
                        check_relay_response(&body, &pubkeys[supplier]).expect("a 200 carries a valid supplier signature");
                        let relay = Relay { req: Some(RelayRequest::decode(&request).unwrap()), res: Some(RelayResponse::decode(&body).unwrap()) };
                        answered.lock().unwrap().push(relay.hash());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let remaining = || queue.lock().unwrap().len();
    for kill in 0..2 {
        edge.redis.pause();
        while remaining() > 160 - kill * 80 {
            std::thread::sleep(Duration::from_millis(10));
        }
        edge.kill();
        edge.redis.resume();
        std::thread::sleep(Duration::from_millis(100));
        edge.start();
    }
    for s in senders {
        s.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 200, "most relays are answered around the kills: {}\n{}", answered.len(), edge.log_tail());
    assert!(
        wait_until(Duration::from_secs(30), || answered.iter().all(|h| edge.streamed().contains_key(h))),
        "{} of {} answered relays in the streams\n{}",
        answered.iter().filter(|h| edge.streamed().contains_key(*h)).count(),
        answered.len(),
        edge.log_tail()
    );
    let streamed = edge.streamed();
    assert!(streamed.values().all(|&n| n == 1), "a relay is in a stream twice: {streamed:?}");
}
