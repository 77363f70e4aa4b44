//! Issue C: a fleet of servicer nodes — 500 addresses, failover between a node's URLs with no
//! relay lost, hot reload that survives a broken keys file and re-attaches orphaned relays,
//! the token-protected private routes (including an atomic `updatechains` and `stop`), and the
//! reverse proxy.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{agent, file_tail, http, launch_meshd, send, servicer_sim, temp_dir, wait_until, Sent};
use meshd::client::RelayClient;
use meshd::demo::{demo_keys, free_port, write_datadir, CHAIN, SESSION_HEIGHT};
use meshd::protocol::{KeyPair, Payload, Relay};
use meshd::sim::{start_chain, ChainHandle, SimControl, SimHandle};
use serde_json::{json, Value};

const MESH_TOKEN: &str = "demo-mesh-token";

/// A meshd data dir with the demo chain and app; the test writes the keys file.
struct Harness {
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    chain: ChainHandle,
    client: RelayClient,
    meshd: Option<Child>,
}

impl Harness {
    /// `first` is written as a one-node keys file until the test writes its own.
    fn new(name: &str, first: (&str, &KeyPair), extra: Value) -> Harness {
        let (app, client, _) = demo_keys();
        let dir = temp_dir(name);
        let chain = start_chain(Default::default()).unwrap();
        let port = free_port().unwrap();
        write_datadir(&dir, port, first.0, &chain.url(), first.1, &extra).unwrap();
        let log = dir.join("meshd.log");
        Harness { dir, port, log, chain, client: RelayClient::new(app, client), meshd: None }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Replace the keys file the way an operator's tooling should: write aside, then rename.
    fn write_keys(&self, keys: &Value) {
        write_atomically(&self.dir.join("key/key.json"), serde_json::to_vec_pretty(keys).unwrap().as_slice());
    }

    fn start(&mut self) {
        self.meshd = Some(launch_meshd(&self.dir, &self.log, self.port));
    }

    fn relay(&self, servicer: &KeyPair, entropy: i64) -> Relay {
        let payload = Payload {
            data: format!(r#"{{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":{entropy}}}"#),
            method: "POST".into(),
            ..Default::default()
        };
        self.client.build(&servicer.public_hex, CHAIN, SESSION_HEIGHT, SESSION_HEIGHT, entropy, payload)
    }

    fn send(&self, servicer: &KeyPair, entropy: i64) -> Sent {
        send(&agent(Duration::from_secs(10)), &format!("{}/v1/client/relay", self.base()), &self.relay(servicer, entropy), servicer)
    }

    /// Send relays with fresh entropy until one is served (a node may still be starting).
    fn serve_one(&self, servicer: &KeyPair, first_entropy: i64, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut entropy = first_entropy;
        loop {
            match self.send(servicer, entropy) {
                Sent::Served(proof) => return proof,
                other if Instant::now() > deadline => panic!("no relay served within {within:?}: {other:?}\n{}", self.log_tail()),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
            entropy += 1;
        }
    }

    fn private(&self, method: &str, route: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let url = format!("{}/v1/private/mesh/{route}", self.base());
        let headers: Vec<(&str, &str)> = token.map(|t| vec![("Authorization", t)]).unwrap_or_default();
        let body = if method == "GET" { "" } else { body };
        let (status, _, text) = http(method, &url, &headers, body.as_bytes());
        (status, text)
    }

    fn health(&self) -> Value {
        let (status, text) = self.private("GET", "health", Some(MESH_TOKEN), "");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        file_tail(&self.log, 40)
    }

    fn wait_log(&self, needle: &str, within: Duration) {
        assert!(wait_until(within, || self.log_text().contains(needle)), "log never showed {needle:?}:\n{}", self.log_tail());
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut child) = self.meshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // MESHD_KEEP_LOGS=DIR keeps each test's meshd log for inspection.
        if let Some(keep) = std::env::var_os("MESHD_KEEP_LOGS") {
            let name = self.dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let _ = std::fs::copy(&self.log, Path::new(&keep).join(format!("{name}.log")));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Deterministic test keys: seed = tag ‖ index.
fn key(tag: u8, i: u16) -> KeyPair {
    let mut seed = [tag; 32];
    seed[..2].copy_from_slice(&i.to_be_bytes());
    KeyPair::from_seed(&seed)
}

fn node(name: &str, urls: &[String], keys: &[&KeyPair]) -> Value {
    json!({"name": name, "urls": urls, "keys": keys.iter().map(|k| k.private_hex()).collect::<Vec<_>>()})
}

fn accepted(sim: &SimHandle) -> HashSet<String> {
    sim.stats().accepted_proofs.unwrap_or_default().into_iter().collect()
}

#[test]
fn five_hundred_addresses_load_fast_and_serve_a_key_in_the_middle() {
    const NODES: u16 = 20;
    const PER_NODE: u16 = 25;
    let keys: Vec<KeyPair> = (0..NODES * PER_NODE).map(|i| key(0x50, i)).collect();
    let (app, _, _) = demo_keys();
    let sims: Vec<SimHandle> = (0..NODES as usize)
        .map(|n| {
            let mine: Vec<&KeyPair> = keys[n * PER_NODE as usize..(n + 1) * PER_NODE as usize].iter().collect();
            servicer_sim(&mine, &app, 1_000_000, "http://127.0.0.1:1")
        })
        .collect();
    let mut h = Harness::new("fleet500", (&sims[0].url(), &keys[0]), json!({}));
    let entries: Vec<Value> = (0..NODES as usize)
        .map(|n| {
            let mine: Vec<&KeyPair> = keys[n * PER_NODE as usize..(n + 1) * PER_NODE as usize].iter().collect();
            node(&format!("node-{n:02}"), &[sims[n].url()], &mine)
        })
        .collect();
    h.write_keys(&Value::Array(entries));

    // Load time of the whole configuration (500 keys are parsed and verified) plus the index.
    let started = Instant::now();
    let loaded = meshd::config::load(&h.dir, None).unwrap();
    let fleet = meshd::servicer::fleet::Fleet::new(&loaded.nodes, Duration::from_secs(30));
    let elapsed = started.elapsed();
    println!("500 addresses in {NODES} nodes: config load + fleet index took {elapsed:?}");
    assert_eq!((fleet.nodes.len(), fleet.servicer_count()), (NODES as usize, 500));
    assert!(elapsed < Duration::from_secs(5), "loading 500 addresses took {elapsed:?}");

    h.start();
    let middle = &keys[260]; // node 10
    let proof = h.serve_one(middle, 1, Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(15), || accepted(&sims[10]).contains(&proof)),
        "the relay was not notified to its node's servicer\n{}",
        h.log_tail()
    );
    assert!(sims.iter().enumerate().all(|(n, s)| n == 10 || s.stats().accepted_total == 0), "notified to the wrong node");

    assert!(wait_until(Duration::from_secs(15), || h.health()["healthy_nodes"] == NODES as u64), "not every node became healthy: {}", h.health());
    let health = h.health();
    assert_eq!((health["full_nodes"].as_u64(), health["servicers"].as_u64()), (Some(NODES as u64), Some(500)));
    let n10 = &health["nodes"][10];
    assert_eq!(n10["name"], "node-10");
    assert_eq!(n10["servicers"], PER_NODE as u64);
    assert_eq!(n10["wrong_servicers"], json!([]));
    assert_eq!(n10["url"], sims[10].url());
    // The startup connectivity probes reached every node's three servicer routes.
    assert!(
        wait_until(Duration::from_secs(10), || sims.iter().all(|s| s.stats().verify_calls == 3)),
        "verify probes: {:?}",
        sims.iter().map(|s| s.stats().verify_calls).collect::<Vec<_>>()
    );
}

#[test]
fn a_node_url_killed_mid_load_fails_over_without_losing_a_relay() {
    let (app, _, servicer) = demo_keys();
    let primary = Arc::new(Mutex::new(servicer_sim(&[&servicer], &app, 10_000_000, "http://127.0.0.1:1")));
    let standby = servicer_sim(&[&servicer], &app, 10_000_000, "http://127.0.0.1:1");
    let primary_url = primary.lock().unwrap().url();
    // async durability: this test is about routing, and fsync per relay would make the load slow.
    let mut h = Harness::new("failover", (&primary_url, &servicer), json!({"servicer_rpc_timeout": 3000, "relay_durability": "async"}));
    h.write_keys(&json!([node("ha", &[primary_url.clone(), standby.url()], &[&servicer])]));
    h.start();
    h.serve_one(&servicer, 1, Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(10), || h.health()["nodes"][0]["urls"][1]["usable"] == true), "standby never usable");

    const CLIENTS: usize = 4;
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for t in 0..CLIENTS as i64 {
        let relays: Vec<Relay> = (0..120).map(|i| h.relay(&servicer, 1_000_000 * (t + 1) + i)).collect();
        let (served, failed, total, url, key) = (served.clone(), failed.clone(), total.clone(), format!("{}/v1/client/relay", h.base()), servicer.clone());
        clients.push(std::thread::spawn(move || {
            let agent = agent(Duration::from_secs(10));
            for relay in relays {
                match send(&agent, &url, &relay, &key) {
                    Sent::Served(proof) => served.lock().unwrap().push(proof),
                    other => failed.lock().unwrap().push(format!("{other:?}")),
                }
                total.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Kill the primary URL once under a third of the load went through.
    assert!(wait_until(Duration::from_secs(30), || total.load(Ordering::Relaxed) >= 150), "load did not progress");
    primary.lock().unwrap().pause();
    let at_pause = total.load(Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let served = served.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    println!("served {} relays, {} failed, primary paused after {at_pause}", served.len(), failed.len());
    assert!(failed.len() <= CLIENTS, "more relays failed than were in flight at the kill: {failed:?}\n{}", h.log_tail());
    assert!(at_pause < served.len() + failed.len(), "the kill happened mid-load");

    // Every served relay reaches a servicer: the primary got some before it died, the standby the rest.
    let all_notified = || {
        let mut got = accepted(&standby);
        got.extend(accepted(&primary.lock().unwrap()));
        served.iter().all(|p| got.contains(p))
    };
    assert!(wait_until(Duration::from_secs(40), all_notified), "served relays were not all notified\n{}", h.log_tail());
    assert!(standby.stats().accepted_total > 0, "nothing was notified through the standby URL");

    let health = h.health();
    let n = &health["nodes"][0];
    assert_eq!(n["url"], standby.url(), "{n}");
    assert!(n["failovers"].as_u64() >= Some(1), "{n}");
    assert_eq!(n["urls"][1]["current"], true);
    assert!(health["counters"]["failovers"].as_u64() >= Some(1));
    let log = h.log_text();
    let line = log.lines().find(|l| l.contains("event=failover")).expect("failover logged");
    assert!(line.contains(&format!("from={primary_url}")) && line.contains(&format!("to={}", standby.url())), "{line}");
    assert!(wait_until(Duration::from_secs(5), || h.health()["queue"]["pending"] == 0), "{}", h.health());
}

#[test]
fn a_new_session_is_fetched_from_the_next_url_when_the_current_one_dies() {
    let (app, client, servicer) = demo_keys();
    let other_app = key(0x70, 1);
    let sim = |apps: &[&KeyPair]| {
        meshd::sim::start_servicer(meshd::sim::ServicerSimConfig {
            auth_token: meshd::demo::TOKEN.into(),
            height: SESSION_HEIGHT,
            service_url: "http://127.0.0.1:1".into(),
            servicers: vec![servicer.public_hex.clone()],
            chains: vec![CHAIN.into()],
            apps: apps.iter().map(|a| meshd::sim::SimApp { public_key: a.public_hex.clone(), chains: vec![CHAIN.into()], max_relays: 1000 }).collect(),
            ..Default::default()
        })
        .unwrap()
    };
    let mut primary = sim(&[&app, &other_app]);
    let standby = sim(&[&app, &other_app]);
    let mut h = Harness::new("session-failover", (&primary.url(), &servicer), json!({"servicer_rpc_timeout": 3000}));
    h.write_keys(&json!([node("ha", &[primary.url(), standby.url()], &[&servicer])]));
    h.start();
    h.serve_one(&servicer, 1, Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(10), || h.health()["nodes"][0]["urls"][1]["usable"] == true));
    assert_eq!(primary.stats().session_calls, 1);

    // The primary dies; a relay of a session meshd has not seen yet needs a session lookup at once.
    primary.pause();
    let other = RelayClient::new(other_app, client);
    let payload = Payload { data: r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}"#.into(), method: "POST".into(), ..Default::default() };
    let relay = other.build(&servicer.public_hex, CHAIN, SESSION_HEIGHT, SESSION_HEIGHT, 9, payload);
    let sent = send(&agent(Duration::from_secs(10)), &format!("{}/v1/client/relay", h.base()), &relay, &servicer);
    assert!(matches!(sent, Sent::Served(_)), "{sent:?}\n{}", h.log_tail());
    assert_eq!(standby.stats().session_calls, 1, "the session came from the standby URL");
    assert!(h.log_text().contains("event=failover node=ha"), "{}", h.log_tail());
}

#[test]
fn a_broken_keys_file_keeps_serving_and_reload_adds_and_reattaches_nodes() {
    let (app, _, k1) = demo_keys();
    let k2 = key(0x60, 2);
    let sim1 = servicer_sim(&[&k1], &app, 1_000_000, "http://127.0.0.1:1");
    let sim2 = servicer_sim(&[&k2], &app, 1_000_000, "http://127.0.0.1:1");
    let mut h = Harness::new("reload", (&sim1.url(), &k1), json!({"keys_hot_reload_interval": 300, "chains_hot_reload_interval": 300}));
    let one = json!([node("n1", &[sim1.url()], &[&k1])]);
    let two = json!([node("n1", &[sim1.url()], &[&k1]), node("n2", &[sim2.url()], &[&k2])]);
    h.write_keys(&one);
    h.start();
    h.serve_one(&k1, 1, Duration::from_secs(20));
    let sessions_before = sim1.stats().session_calls;

    // A broken entry: the reload is refused, the previous set keeps serving.
    let mut broken = two.clone();
    broken[1]["keys"] = json!(["not-a-key"]);
    h.write_keys(&broken);
    h.wait_log("event=reload_failed kind=keys", Duration::from_secs(10));
    let line = h.log_text().lines().find(|l| l.contains("event=reload_failed")).unwrap().to_string();
    assert!(line.contains("key.json") && line.contains("[1].keys[0]"), "the error names the file and entry: {line}");
    assert!(matches!(h.send(&k1, 100), Sent::Served(_)), "old set still serves");
    assert!(matches!(h.send(&k2, 101), Sent::Refused(400, ref body) if body.contains("Failed to find correct servicer PK")));
    std::thread::sleep(Duration::from_millis(1000));
    let health = h.health();
    assert_eq!(health["counters"]["reload_failures"], 1, "reported once per broken content, not every interval");
    assert_eq!(health["reload"]["keys"]["ok"], false);
    assert_eq!(health["full_nodes"], 1);

    // Fixed: the new node is added, the unchanged one kept (same session, no new session fetch).
    h.write_keys(&two);
    let first_on_n2 = h.serve_one(&k2, 200, Duration::from_secs(15));
    // Delivered before n2's notifies start failing below, so exactly one relay is orphaned there.
    assert!(wait_until(Duration::from_secs(10), || accepted(&sim2).contains(&first_on_n2)), "not notified\n{}", h.log_tail());
    assert!(matches!(h.send(&k1, 300), Sent::Served(_)));
    assert_eq!(sim1.stats().session_calls, sessions_before, "n1 kept its session across the reloads");
    let reloaded = h.log_text().lines().find(|l| l.contains("event=keys_reloaded")).unwrap().to_string();
    assert!(reloaded.contains(r#"added ["n2"]"#) && reloaded.contains("1 unchanged"), "{reloaded}");

    // n2 stops taking notifies; its served relay waits in the queue. Removing n2 orphans it…
    sim2.control(&SimControl { fail_notify_status: Some(503), ..Default::default() }).unwrap();
    let waiting = match h.send(&k2, 400) {
        Sent::Served(proof) => proof,
        other => panic!("{other:?}"),
    };
    h.write_keys(&one);
    assert!(wait_until(Duration::from_secs(10), || h.health()["orphaned"]["pending"] == 1), "orphan not reported: {}", h.health());
    assert_eq!(h.health()["orphaned"]["servicers"][&k2.address_hex], 1);
    assert!(!accepted(&sim2).contains(&waiting));

    // …and bringing n2 back (servicer healthy again) delivers it.
    sim2.control(&SimControl { fail_notify_status: Some(0), ..Default::default() }).unwrap();
    h.write_keys(&two);
    assert!(wait_until(Duration::from_secs(15), || accepted(&sim2).contains(&waiting)), "orphan not notified\n{}", h.log_tail());
    assert!(wait_until(Duration::from_secs(5), || h.health()["orphaned"]["pending"] == 0));

    // Chains reload the same way: a new chain is picked up; a broken or empty file is refused.
    let chains_path = h.dir.join("chains.json");
    let chains = json!([{"id": CHAIN, "url": h.chain.url()}, {"id": "0001", "url": h.chain.url()}]);
    write_atomically(&chains_path, chains.to_string().as_bytes());
    assert!(wait_until(Duration::from_secs(10), || h.health()["chains"] == 2), "{}", h.log_tail());
    let failures = h.health()["counters"]["reload_failures"].as_u64().unwrap();
    write_atomically(&chains_path, br#"[{"id":"0021","url":"not a url"}]"#);
    h.wait_log("event=reload_failed kind=chains", Duration::from_secs(10));
    write_atomically(&chains_path, b"[]");
    assert!(wait_until(Duration::from_secs(10), || h.health()["counters"]["reload_failures"].as_u64() == Some(failures + 2)), "{}", h.log_tail());
    assert_eq!(h.health()["chains"], 2, "the previous chains keep running");
    assert!(matches!(h.send(&k1, 500), Sent::Served(_)));
}

#[test]
fn private_routes_need_the_token_and_updatechains_rewrites_atomically() {
    let (app, _, k1) = demo_keys();
    let sim = servicer_sim(&[&k1], &app, 1_000_000, "http://127.0.0.1:1");
    let mut h = Harness::new("private", (&sim.url(), &k1), json!({}));
    h.start();
    h.serve_one(&k1, 1, Duration::from_secs(20));

    let secret_guess = "not-the-token-but-a-guess-7f3a";
    for (method, route) in [("GET", "health"), ("POST", "chains"), ("POST", "servicers"), ("POST", "updatechains"), ("POST", "stop")] {
        for token in [None, Some(secret_guess), Some("")] {
            let (status, body) = h.private(method, route, token, "[]");
            assert_eq!((status, body.as_str()), (401, "{\"code\":401,\"message\":\"wrong Authorization\"}\n"), "{method} {route} {token:?}");
        }
    }
    assert!(!h.log_text().contains(secret_guess), "a supplied token must never be logged");

    let health = h.health();
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!((health["full_nodes"].as_u64(), health["servicers"].as_u64(), health["chains"].as_u64()), (Some(1), Some(1), Some(1)));
    let n = &health["nodes"][0];
    assert_eq!((n["name"].as_str(), n["healthy"].as_bool(), n["height"].as_i64()), (Some("demo-servicer"), Some(true), Some(SESSION_HEIGHT)));
    assert_eq!(n["urls"][0]["url"], sim.url());
    assert!(health["queue"]["pending"].is_u64() && health["queue"]["dead"].is_u64(), "{health}");
    assert_eq!(health["orphaned"]["pending"], 0);

    let (status, body) = h.private("POST", "chains", Some(MESH_TOKEN), "");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!([{"id": CHAIN, "url": h.chain.url(), "basic_auth": {"username": "", "password": ""}}]));
    let (status, body) = h.private("POST", "servicers", Some(MESH_TOKEN), "");
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, json!([{"address": k1.address_hex}])));
    assert_eq!(h.private("GET", "servicers", Some(MESH_TOKEN), "").0, 405);
    assert_eq!(h.private("POST", "nothing", Some(MESH_TOKEN), "").0, 404);

    // updatechains: a dead endpoint first, the live one second (chain failover), plus a new chain.
    let chains_path = h.dir.join("chains.json");
    let before = std::fs::read(&chains_path).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
    let update = json!([{"id": CHAIN, "url": dead, "urls": [h.chain.url()]}, {"id": "0001", "url": h.chain.url()}]);
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let inode_before = inode(&chains_path);
    let (status, body) = h.private("POST", "updatechains", Some(MESH_TOKEN), &update.to_string());
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer[CHAIN]["urls"], json!([dead, h.chain.url()]));
    assert_eq!(answer["0001"]["url"], h.chain.url());
    let written: Value = serde_json::from_slice(&std::fs::read(&chains_path).unwrap()).unwrap();
    assert_eq!(written.as_array().map(Vec::len), Some(2));
    assert_ne!(std::fs::read(&chains_path).unwrap(), before);
    assert_ne!(inode(&chains_path), inode_before, "replaced by rename, not rewritten in place");
    let leftovers: Vec<String> =
        std::fs::read_dir(&h.dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let (_, listed) = h.private("POST", "chains", Some(MESH_TOKEN), "");
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap().as_array().map(Vec::len), Some(2));
    // Relays still work although the chain's first endpoint is dead.
    assert!(matches!(h.send(&k1, 50), Sent::Served(_)));
    assert!(h.health()["counters"]["chain_failovers"].as_u64() >= Some(1));

    // Invalid chains: 400 naming the entry, nothing changes. A shorter list leaves no old bytes.
    let current = std::fs::read(&chains_path).unwrap();
    let (status, body) = h.private("POST", "updatechains", Some(MESH_TOKEN), r#"[{"id":"zz","url":"http://127.0.0.1:1"}]"#);
    assert!(status == 400 && body.contains("[0].id"), "{status} {body}");
    assert_eq!(std::fs::read(&chains_path).unwrap(), current);
    assert_eq!(h.private("POST", "updatechains", Some(MESH_TOKEN), "[]").0, 400);
    let (status, _) = h.private("POST", "updatechains", Some(MESH_TOKEN), &json!([{"id": CHAIN, "url": h.chain.url()}]).to_string());
    assert_eq!(status, 200);
    let parsed = meshd::config::chains::load_chains(&chains_path).unwrap();
    assert_eq!(parsed.len(), 1);

    // stop: answered, then the process ends by itself.
    let (status, body) = h.private("POST", "stop", Some(MESH_TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let mut child = h.meshd.take().unwrap();
    let exited = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    assert!(exited, "meshd did not stop\n{}", h.log_tail());
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_proxy_reaches_the_servicer_and_answers_503_when_it_is_down() {
    let (app, _, k1) = demo_keys();
    let mut sim = servicer_sim(&[&k1], &app, 1_000_000, "http://127.0.0.1:1");
    let mut h = Harness::new("proxy", (&sim.url(), &k1), json!({"client_rpc_max_bytes_size": 4096}));
    h.start();
    h.serve_one(&k1, 1, Duration::from_secs(20));

    let (status, content_type, body) = http("POST", &format!("{}/v1/query/height", h.base()), &[("Content-Type", "application/json")], b"{}");
    assert_eq!((status, body.as_str()), (200, "{\"height\":101}\n"));
    assert!(content_type.starts_with("application/json"), "{content_type}");
    // Catch-all: a query route the simulator does not know comes back with its status and type.
    let (status, content_type, body) = http("POST", &format!("{}/v1/query/not-a-route?x=1", h.base()), &[], b"{}");
    assert_eq!((status, body.as_str()), (404, "404 page not found\n"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let (status, _, _) = http("POST", &format!("{}/v1/query/height", h.base()), &[], &vec![b'x'; 5000]);
    assert_eq!(status, 413, "body limit applies to proxied routes");
    let health = h.health();
    assert!(health["counters"]["proxied"].as_u64() >= Some(2), "{health}");

    sim.pause();
    let mut last = (0, String::new(), String::new());
    let down = wait_until(Duration::from_secs(15), || {
        last = http("POST", &format!("{}/v1/query/height", h.base()), &[], b"{}");
        last.0 == 503
    });
    assert!(down, "no 503 with the only node down: {last:?}");
    let error: Value = serde_json::from_str(&last.2).unwrap();
    assert_eq!(error["code"], 503);
    assert!(error["message"].as_str().unwrap().contains("cannot proxy"), "{error}");
    assert!(h.meshd.as_mut().unwrap().try_wait().unwrap().is_none(), "meshd is still running");
}
