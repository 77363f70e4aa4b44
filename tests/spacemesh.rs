//! Spacemesh node-service gateway end to end: the meshd binary with a `spacemesh`
//! section and no Pocket files (a home smesher's data dir), node-service simulators written
//! from spacemesh-node-split.md §1.1, and an HTTP client standing in for smeshing services.
//! Everything is on 127.0.0.1 and bounded in time. `cors_from_headless_chromium` needs
//! Chromium and runs from tests/spacemesh_cors.sh.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{agent, temp_dir, wait_until};
use meshd::demo::free_port;
use meshd::sim::node_service::{start_json_api, start_node_service, NodeServiceSim, NodeServiceSimConfig, NOT_READY};
use serde_json::{json, Value};

const KNOWN_NODE: [u8; 32] = [0x11; 32];

/// A meshd child process with only a `spacemesh` section configured.
struct Gateway {
    dir: PathBuf,
    listen: SocketAddr,
    api: Option<SocketAddr>,
    child: Option<Child>,
    log: PathBuf,
}

impl Gateway {
    /// `section` is the `spacemesh` object; `listen` (and `api_listen` when `v2_api_nodes` is
    /// given) are filled in with free loopback ports.
    fn new(name: &str, mut section: Value) -> Gateway {
        let dir = temp_dir(&format!("sm-{name}"));
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
        section["listen"] = json!(listen.to_string());
        let api = section.get("v2_api_nodes").map(|_| format!("127.0.0.1:{}", free_port().unwrap()).parse::<SocketAddr>().unwrap());
        if let Some(a) = api {
            section["api_listen"] = json!(a.to_string());
        }
        let config = json!({
            "rpc_port": free_port().unwrap().to_string(),
            "listen_address": "127.0.0.1",
            "pocket_prometheus_port": free_port().unwrap().to_string(),
            "log_level": "*:info",
            "relay_queue_map_size": 64,
            "spacemesh": section,
        });
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = dir.join("meshd.log");
        Gateway { dir, listen, api, child: None, log }
    }

    fn start(&mut self) {
        self.child = Some(common::launch_meshd(&self.dir, &self.log, self.listen.port()));
    }

    /// SIGKILL: no chance to flush anything.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api.expect("api_listen configured"))
    }

    fn stats(&self) -> Value {
        let (status, _, body) = get(&self.url("/_meshd/spacemesh/stats"));
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }

    /// Wait until the gateway's probes have seen `want` ("ready", "down", "not_synced") for node `i`.
    fn wait_state(&self, i: usize, want: &str) {
        assert!(wait_until(Duration::from_secs(10), || self.stats()["nodes"][i]["state"] == want), "node {i} never became {want}: {}", self.stats());
    }

    /// The Prometheus exposition of this meshd.
    fn scrape(&self) -> String {
        let config: Value = serde_json::from_slice(&std::fs::read(self.dir.join("config.json")).unwrap()).unwrap();
        let port = config["pocket_prometheus_port"].as_str().unwrap();
        let (status, _, body) = get(&format!("http://127.0.0.1:{port}/metrics"));
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn http() -> ureq::Agent {
    agent(Duration::from_secs(20))
}

fn headers_of(r: &ureq::http::Response<ureq::Body>) -> Vec<(String, String)> {
    r.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn get(url: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut r = http().get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let h = headers_of(&r);
    (r.status().as_u16(), h, r.body_mut().read_to_vec().unwrap())
}

fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut r = http().post(url).header("Content-Type", content_type).send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let h = headers_of(&r);
    (r.status().as_u16(), h, r.body_mut().read_to_vec().unwrap())
}

fn node(synced: bool) -> NodeServiceSim {
    start_node_service(NodeServiceSimConfig { synced, ..Default::default() }).unwrap()
}

fn section(nodes: &[&NodeServiceSim], extra: Value) -> Value {
    let mut s =
        json!({"nodes": nodes.iter().map(|n| n.url()).collect::<Vec<_>>(), "health_interval": 1, "request_timeout": 5000, "publish_retry_wait_max": 2000});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

fn atx_body(tag: u8) -> (Vec<u8>, Vec<u8>) {
    let blob: Vec<u8> = (0..600u32).map(|i| (i as u8) ^ tag).collect();
    let body = format!(r#"{{"AtxBlob":"{}","PoetProof":null}}"#, meshd::base64::encode(&blob)).into_bytes();
    (blob, body)
}

#[test]
fn node_service_api_passes_through_byte_for_byte() {
    let a = node(true);
    let mut gw = Gateway::new("passthrough", section(&[&a], json!({})));
    gw.start();
    gw.wait_state(0, "ready");
    let known = hex::encode(KNOWN_NODE);
    let unknown = hex::encode([0x33; 32]);
    let paths = [
        "/activation/positioning_atx/3".to_string(),
        format!("/activation/last_atx/{known}"),
        format!("/activation/last_atx/{unknown}"),
        "/activation/last_atx/not-hex".into(),
        "/hare/round_template/1000/0/2".into(),
        "/hare/round_template/5/0/2".into(),
        "/weights/total/3".into(),
        format!("/weights/miner/{known}/3"),
        "/beacon/3".into(),
        "/beacon/900".into(),
        format!("/proposal/1001/{known}"),
        format!("/proposal/1003/{known}"),
        format!("/eligibility/slots/{known}/3"),
        format!("/eligibility/slots/{unknown}/3"),
        "/blockids/999".into(),
        "/blockids/5000".into(),
        "/no/such/route?x=1".into(),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for p in &paths {
        let direct = get(&format!("{}{p}", a.url()));
        let via = get(&gw.url(p));
        assert_eq!((via.0, &via.2), (direct.0, &direct.2), "{p}");
        assert_eq!(header(&via.1, "content-type"), header(&direct.1, "content-type"), "{p}");
        statuses.insert(direct.0);
    }
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), vec![200, 204, 400, 404, 500], "every documented status was exercised");
    // A path the HTTP stack cannot carry is the client's error, not the nodes': the server
    // refuses it (400) before any node is asked.
    let mut raw = TcpStream::connect(gw.listen).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut raw, b"GET /beacon/1<\"x\"> HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = std::io::Read::read_to_string(&mut raw, &mut reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(gw.stats()["nodes"][0]["state"], "ready");
    // A time-critical publish goes straight through: no queue entry, delivered once.
    let hare = b"\x00\x01hare message\xff".to_vec();
    let (status, h, _) = post(&gw.url("/publish/hare3"), "application/octet-stream", &hare);
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-meshd-publish"), None, "hare is forwarded, not queued");
    assert_eq!(a.stats().published_count("hare3", &hare), 1);
    let stats = gw.stats();
    assert_eq!(stats["publishes"]["stored"]["pending"], 0);
    assert_eq!(stats["publishes"]["queued"], 0);
    assert!(stats["clients"]["127.0.0.1"]["requests"].as_u64().unwrap() > paths.len() as u64, "{stats}");
    assert!(stats["nodes"][0]["requests"].as_u64().unwrap() > paths.len() as u64);
    assert_eq!(stats["nodes"][0]["sticky"], true);
}

#[test]
fn publishes_survive_a_node_outage() {
    let mut a = node(true);
    let mut b = node(true);
    a.pause();
    b.pause();
    let mut gw = Gateway::new("outage", section(&[&a, &b], json!({})));
    gw.start();
    gw.wait_state(0, "down");
    gw.wait_state(1, "down");

    let (blob, body) = atx_body(1);
    let raw_atx = b"\x05raw ax1 atx".to_vec();
    let t0 = Instant::now();
    let (s1, h1, _) = post(&gw.url("/activation/publish"), "application/json", &body);
    let (s2, h2, _) = post(&gw.url("/publish/ax1"), "application/octet-stream", &raw_atx);
    assert_eq!((s1, s2), (200, 200), "ATX publishes are answered once durably queued");
    assert_eq!((header(&h1, "x-meshd-publish"), header(&h2, "x-meshd-publish")), (Some("queued"), Some("queued")));
    assert!(t0.elapsed() < Duration::from_secs(3), "no waiting on dead nodes: {:?}", t0.elapsed());
    let (s3, h3, _) = post(&gw.url("/publish/ax1"), "application/octet-stream", &raw_atx);
    assert_eq!((s3, header(&h3, "x-meshd-publish")), (200, Some("duplicate")));
    // Time-critical publishes are not queued: the client hears the outage (and retries itself).
    let hare = b"late hare message".to_vec();
    let (s4, h4, _) = post(&gw.url("/publish/hare3"), "application/octet-stream", &hare);
    assert_eq!(s4, 503);
    assert_eq!(header(&h4, "retry-after"), Some("1"));
    assert_eq!(gw.stats()["publishes"]["stored"]["pending"], 2);

    b.resume().unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || gw.stats()["publishes"]["stored"]["pending"] == 0),
        "queued publishes not delivered: {}\n{}",
        gw.stats(),
        gw.log_tail()
    );
    let st = b.stats();
    assert_eq!(st.published_count("activation", &blob), 1);
    assert_eq!(st.published_count("ax1", &raw_atx), 1);
    assert_eq!(st.published_count("hare3", &hare), 0, "a hare message is never replayed late");
    a.resume().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(a.stats().published.is_empty(), "delivered once, to one node");
    assert_eq!(b.stats().published.len(), 2);
    let stats = gw.stats();
    assert_eq!(stats["nodes"][1]["publishes_delivered"], 2);
    assert_eq!(stats["publishes"]["delivered_queued"], 2);
    assert_eq!(stats["publishes"]["duplicates"], 1);
    assert_eq!(stats["clients"]["127.0.0.1"]["publishes"], 3);

    // The same figures in the Prometheus exposition.
    let scrape = gw.scrape();
    let b_url = stats["nodes"][1]["url"].as_str().unwrap().to_string();
    for line in [
        format!("meshd_spacemesh_upstream_publishes_delivered_total{{moniker=\"geo-mesh-node\",pool=\"node\",upstream=\"{b_url}\"}} 2"),
        format!("meshd_spacemesh_upstream_ready{{moniker=\"geo-mesh-node\",pool=\"node\",upstream=\"{b_url}\"}} 1"),
        "meshd_spacemesh_publishes_total{moniker=\"geo-mesh-node\",outcome=\"delivered_queued\"} 2".to_string(),
        "meshd_spacemesh_publishes_total{moniker=\"geo-mesh-node\",outcome=\"duplicate\"} 1".to_string(),
        "meshd_spacemesh_client_publishes_total{moniker=\"geo-mesh-node\",client=\"127.0.0.1\"} 3".to_string(),
        "meshd_spacemesh_publish_queue{moniker=\"geo-mesh-node\",state=\"pending\"} 0".to_string(),
    ] {
        assert!(scrape.lines().any(|l| l == line), "no line {line:?} in the scrape:\n{scrape}");
    }
    // Kept for tests/metrics_check.sh, which runs the real `promtool check metrics` on it.
    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics-scrape-spacemesh.txt"), &scrape).unwrap();
}

#[test]
fn a_publish_no_node_takes_within_publish_max_age_expires() {
    let mut a = node(true);
    a.pause();
    let mut gw = Gateway::new("expiry", section(&[&a], json!({ "publish_max_age": 2, "publish_retry_wait_max": 300 })));
    gw.start();
    gw.wait_state(0, "down");
    let raw_atx = b"\x05an atx nobody takes".to_vec();
    let (status, h, _) = post(&gw.url("/publish/ax1"), "application/octet-stream", &raw_atx);
    assert_eq!((status, header(&h, "x-meshd-publish")), (200, Some("queued")));
    assert!(wait_until(Duration::from_secs(10), || gw.stats()["publishes"]["stored"]["expired"] == 1), "not expired: {}\n{}", gw.stats(), gw.log_tail());
    let stats = gw.stats();
    assert_eq!(stats["publishes"]["expired"], 1);
    assert_eq!(stats["publishes"]["stored"]["pending"], 0);
    assert!(std::fs::read_to_string(&gw.log).unwrap().contains("event=spacemesh_publish_expired route=/publish/ax1"));
    // The node comes back: the expired blob is not sent, and a re-send is still a duplicate.
    a.resume().unwrap();
    gw.wait_state(0, "ready");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(a.stats().published_count("ax1", &raw_atx), 0);
    let (status, h, _) = post(&gw.url("/publish/ax1"), "application/octet-stream", &raw_atx);
    assert_eq!((status, header(&h, "x-meshd-publish")), (200, Some("duplicate")));
}

#[test]
fn queued_publish_is_delivered_exactly_once_after_sigkill() {
    let mut a = node(true);
    a.pause();
    let mut gw = Gateway::new("sigkill", section(&[&a], json!({})));
    gw.start();
    gw.wait_state(0, "down");
    let (blob, body) = atx_body(2);
    let raw = b"\x07another atx".to_vec();
    assert_eq!(post(&gw.url("/activation/publish"), "application/json", &body).0, 200);
    assert_eq!(post(&gw.url("/publish/ax1"), "application/octet-stream", &raw).0, 200);
    gw.kill(); // right after the 200s: only what was committed before answering survives

    gw.start();
    // Sent again after the restart (a smeshing service retrying): still one entry.
    let (s, h, _) = post(&gw.url("/activation/publish"), "application/json", &body);
    assert_eq!((s, header(&h, "x-meshd-publish")), (200, Some("duplicate")));
    assert_eq!(gw.stats()["publishes"]["stored"]["pending"], 2);
    a.resume().unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || gw.stats()["publishes"]["stored"]["pending"] == 0),
        "not delivered after restart: {}\n{}",
        gw.stats(),
        gw.log_tail()
    );
    assert_eq!(a.stats().published_count("activation", &blob), 1);
    assert_eq!(a.stats().published_count("ax1", &raw), 1);

    // Tombstones outlive another restart: a re-send is not delivered again.
    gw.kill();
    gw.start();
    let (s, h, _) = post(&gw.url("/publish/ax1"), "application/octet-stream", &raw);
    assert_eq!((s, header(&h, "x-meshd-publish")), (200, Some("duplicate")));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(a.stats().published.len(), 2, "exactly once each: {:?}", a.stats().published);
    assert_eq!(gw.stats()["publishes"]["stored"]["delivered"], 2);
}

#[test]
fn inline_delivery_reports_the_nodes_verdict() {
    let a = node(true);
    let mut gw = Gateway::new("inline", section(&[&a], json!({})));
    gw.start();
    gw.wait_state(0, "ready");
    let (blob, body) = atx_body(3);
    let (s, h, _) = post(&gw.url("/activation/publish"), "application/json", &body);
    assert_eq!((s, header(&h, "x-meshd-publish")), (200, Some("delivered")));
    assert_eq!(a.stats().published_count("activation", &blob), 1, "delivered before the answer");

    a.set_reject_atx(true);
    let (_, body2) = atx_body(4);
    let (s, h, text) = post(&gw.url("/activation/publish"), "application/json", &body2);
    assert_eq!((s, header(&h, "x-meshd-publish")), (400, Some("rejected")));
    assert_eq!(String::from_utf8_lossy(&text), "invalid atx: simulated rejection", "the node's own message");
    let (s, _, text2) = post(&gw.url("/activation/publish"), "application/json", &body2);
    assert_eq!((s, &text2), (400, &text), "a re-send hears the same verdict");
    // Malformed bodies are refused before they take a queue slot.
    let (s, h, _) = post(&gw.url("/activation/publish"), "application/json", br#"{"PoetProof":{}}"#);
    assert_eq!((s, header(&h, "content-type")), (400, Some("plain/text")));
    std::thread::sleep(Duration::from_millis(1500));
    let stats = gw.stats();
    assert_eq!(stats["publishes"]["stored"], json!({"pending": 0, "delivered": 1, "rejected": 1, "expired": 0, "undecodable": 0}));
    assert_eq!(stats["publishes"]["delivered_inline"], 1);
    assert_eq!(a.stats().route("POST /activation/publish"), 2, "a rejected ATX is not retried");
}

#[test]
fn hare_calls_fail_over_within_one_retry() {
    let a = node(true);
    let b = node(true);
    // Slow probes: the failover below must come from the request itself, not from a probe.
    let mut gw = Gateway::new("hare", section(&[&a, &b], json!({"health_interval": 60})));
    gw.start();
    gw.wait_state(0, "ready");
    gw.wait_state(1, "ready");
    let round = "/hare/round_template/1000/0/1";
    assert_eq!(get(&gw.url(round)).0, 200);
    assert_eq!((a.stats().route("GET /hare/round_template"), b.stats().route("GET /hare/round_template")), (1, 0), "node A is sticky");

    a.set_synced(false);
    let msg = b"signed hare message".to_vec();
    let t0 = Instant::now();
    let (status, _, body) = get(&gw.url(round));
    assert_eq!(status, 200, "the client never sees the unsynced node: {}", String::from_utf8_lossy(&body));
    assert_eq!(post(&gw.url("/publish/hare3"), "application/octet-stream", &msg).0, 200);
    assert!(t0.elapsed() < Duration::from_secs(2), "failover took {:?}", t0.elapsed());
    assert_eq!(a.stats().not_ready_answers, 1, "exactly one attempt at the unsynced node");
    assert_eq!(b.stats().route("GET /hare/round_template"), 1);
    assert_eq!(b.stats().published_count("hare3", &msg), 1);
    assert_eq!(a.stats().published_count("hare3", &msg), 0);
    let stats = gw.stats();
    assert_eq!(stats["nodes"][0]["state"], "not_synced");
    assert_eq!(stats["nodes"][0]["failovers"], 1);
    assert_eq!(stats["nodes"][0]["failures"], 1);
    assert_eq!(stats["nodes"][1]["sticky"], true);
}

#[test]
fn sync_flapping_never_reaches_the_client_and_stickiness_holds() {
    let a = Arc::new(node(true));
    let b = Arc::new(node(true));
    let mut gw = Gateway::new("flap", section(&[a.as_ref(), b.as_ref()], json!({})));
    gw.start();
    gw.wait_state(0, "ready");
    gw.wait_state(1, "ready");
    let round = "/hare/round_template/1000/1/0";
    assert_eq!(get(&gw.url(round)).0, 200);
    assert_eq!(gw.stats()["nodes"][0]["sticky"], true, "A serves first");
    // Both nodes flap out of phase (each resyncs before the other drops out, so one is always
    // synced); every client call must still be answered by a synced node.
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        std::thread::spawn(move || {
            for k in 0..100 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (up, down) = if k % 2 == 0 { (&b, &a) } else { (&a, &b) };
                up.set_synced(true);
                down.set_synced(false);
                std::thread::sleep(Duration::from_millis(150));
            }
            a.set_synced(true);
            b.set_synced(true);
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut answered = 0;
    while Instant::now() < deadline {
        let (s, _, body) = get(&gw.url("/weights/total/3"));
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(get(&gw.url(round)).0, 200);
        answered += 2;
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    flapper.join().unwrap();
    assert!(answered > 20, "only {answered} requests in 3 s");
    let stats = gw.stats();
    let (fa, fb) = (stats["nodes"][0]["failovers"].as_u64().unwrap(), stats["nodes"][1]["failovers"].as_u64().unwrap());
    assert!(fa >= 2 && fb >= 2, "traffic followed the synced node back and forth: {stats}");
    assert!(a.stats().route("GET /hare/round_template") > 3 && b.stats().route("GET /hare/round_template") > 3);

    // Both synced again: the sticky node keeps all traffic, the other gets none.
    gw.wait_state(0, "ready");
    gw.wait_state(1, "ready");
    let sticky = if gw.stats()["nodes"][0]["sticky"] == true { 0 } else { 1 };
    let sims = [&a, &b];
    let before: Vec<u64> = sims.iter().map(|s| s.stats().route("GET /hare/round_template")).collect();
    for _ in 0..10 {
        assert_eq!(get(&gw.url(round)).0, 200);
    }
    let after: Vec<u64> = sims.iter().map(|s| s.stats().route("GET /hare/round_template")).collect();
    assert_eq!(after[sticky], before[sticky] + 10, "sticky node {sticky} serves everything");
    assert_eq!(after[1 - sticky], before[1 - sticky], "no bouncing to the other synced node");
}

#[test]
fn one_node_killed_mid_run() {
    let mut a = node(true);
    let b = node(true);
    let mut gw = Gateway::new("kill", section(&[&a, &b], json!({})));
    gw.start();
    gw.wait_state(0, "ready");
    gw.wait_state(1, "ready");
    let gw_url = gw.url("");
    let failures = Arc::new(Mutex::new(Vec::new()));
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Four "smeshing services" polling and publishing.
    let clients: Vec<_> = (0..4u8)
        .map(|c| {
            let (url, failures, ok, stop) = (gw_url.clone(), failures.clone(), ok.clone(), stop.clone());
            std::thread::spawn(move || {
                let known = hex::encode(KNOWN_NODE);
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) && n < 2_000 {
                    n += 1;
                    let result = match n % 3 {
                        0 => http().get(&format!("{url}/proposal/1001/{known}")).call().map(|r| r.status().as_u16()),
                        1 => http().get(&format!("{url}/weights/miner/{known}/3")).call().map(|r| r.status().as_u16()),
                        _ => http().post(&format!("{url}/publish/hare3")).send(&[c, n as u8][..]).map(|r| r.status().as_u16()),
                    };
                    match result {
                        Ok(200 | 204) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        other => failures.lock().unwrap().push(format!("client {c} request {n}: {other:?}")),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let before_kill = ok.load(Ordering::SeqCst);
    a.pause(); // node A (sticky) dies mid-run
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let after = ok.load(Ordering::SeqCst);
    assert!(failures.lock().unwrap().is_empty(), "{:?}", failures.lock().unwrap());
    assert!(before_kill > 10 && after > before_kill + 10, "traffic flowed before ({before_kill}) and after ({after}) the kill");
    let stats = gw.stats();
    assert_eq!(stats["nodes"][0]["state"], "down");
    assert_eq!(stats["nodes"][1]["sticky"], true);
    assert!(stats["nodes"][0]["failovers"].as_u64().unwrap() >= 1);
    assert!(b.stats().requests > 10);
}

/// The v2 JSON API proxy at the HTTP level (the browser check is `cors_from_headless_chromium`).
#[test]
fn v2_proxy_rewrites_host_fails_over_and_sets_cors() {
    let mut j1 = start_json_api(NodeServiceSimConfig::default()).unwrap();
    let mut j2 = start_json_api(NodeServiceSimConfig::default()).unwrap();
    let a = node(true);
    let mut gw = Gateway::new("v2", section(&[&a], json!({"v2_api_nodes": [j1.url(), j2.url()], "json_cors_everywhere": true})));
    gw.start();
    let api = gw.api.unwrap();
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(api).is_ok()));
    let status_path = "/spacemesh.v2beta1.NodeService/Status";
    let (s, h, body) = get(&gw.api_url(status_path));
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "SYNC_STATUS_SYNCED");
    let acao: Vec<&str> = h.iter().filter(|(k, _)| k.eq_ignore_ascii_case("access-control-allow-origin")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(acao, vec!["*"], "one allow-all origin, the upstream's own dropped");
    assert_eq!(header(&h, "access-control-allow-credentials"), None);
    assert_eq!(header(&h, "access-control-allow-methods"), Some("GET, POST, PUT, DELETE, OPTIONS, HEAD"));
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("Server, Date, Content-Type, Content-Length, Connection, Vary, X-Final-Url, Access-Control-Allow-Origin")
    );
    assert_eq!(header(&h, "x-final-url"), Some(status_path), "other upstream headers pass");
    // Host names the upstream, not the proxy.
    let hosts: Vec<String> = j1.stats().hosts.into_iter().chain(j2.stats().hosts).collect();
    assert!(!hosts.is_empty() && hosts.iter().all(|h| h == &j1.addr().to_string() || h == &j2.addr().to_string()), "{hosts:?}");
    assert!(!hosts.iter().any(|h| h == &api.to_string()));

    // Preflight answered locally.
    let mut r = http()
        .options(&gw.api_url("/spacemesh.v2alpha1.RewardService/List"))
        .header("Origin", "http://127.0.0.1:1")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .call()
        .unwrap();
    let ph = headers_of(&r);
    assert_eq!(r.status().as_u16(), 204);
    assert!(r.body_mut().read_to_vec().unwrap().is_empty());
    assert_eq!(header(&ph, "access-control-allow-headers"), Some("content-type"));
    assert_eq!(header(&ph, "access-control-max-age"), Some("300"));
    for j in [&j1, &j2] {
        assert!(!j.stats().by_route.keys().any(|k| k.starts_with("OPTIONS")), "preflight never reaches an upstream");
    }
    // POST bodies pass, query strings too.
    let (s, _, body) = post(&gw.api_url("/spacemesh.v2alpha1.RewardService/List?x=1"), "application/json", br#"{"limit":100}"#);
    assert_eq!(s, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["echo"]["limit"], 100);

    // One JSON API node down: still served. Both down: 502 (Go proxy's answer), with CORS.
    j1.pause();
    for _ in 0..4 {
        assert_eq!(get(&gw.api_url(status_path)).0, 200);
    }
    j2.pause();
    let (s, h, _) = get(&gw.api_url(status_path));
    assert_eq!(s, 502);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    let stats = gw.stats();
    assert_eq!(stats["v2_api_nodes"][0]["state"], "down");
    assert!(stats["clients"]["127.0.0.1"]["api_requests"].as_u64().unwrap() >= 8);
}

#[test]
fn unsynced_nodes_answer_503_until_synced() {
    let a = node(false);
    let mut gw = Gateway::new("unsynced", section(&[&a], json!({})));
    gw.start();
    gw.wait_state(0, "not_synced");
    let (s, h, body) = get(&gw.url("/weights/total/3"));
    assert_eq!((s, String::from_utf8_lossy(&body).into_owned()), (503, NOT_READY.to_string()), "the node's own 503 passes");
    assert_eq!(header(&h, "retry-after"), Some("1"));
    a.set_synced(true);
    gw.wait_state(0, "ready");
    assert_eq!(get(&gw.url("/weights/total/3")).0, 200);
}

/// Headless Chromium on a page served from one loopback port fetches the proxy on another:
/// the cross-origin calls (one with a preflight) must succeed, and the same fetch against the
/// node-service listener (no CORS there) must be blocked by the browser.
/// Run by tests/spacemesh_cors.sh (`--ignored`), which installs Chromium when missing.
#[test]
#[ignore = "needs Chromium: bash tests/spacemesh_cors.sh"]
fn cors_from_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let j1 = start_json_api(NodeServiceSimConfig::default()).unwrap();
    let a = node(true);
    let mut gw = Gateway::new("chromium", section(&[&a], json!({"v2_api_nodes": [j1.url()], "json_cors_everywhere": true})));
    gw.start();
    let api = gw.api.unwrap();
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(api).is_ok()));
    let page = format!(
        r#"<!doctype html><html><body><pre id="out">pending</pre><script>
const out = document.getElementById("out");
const api = "http://{api}", gw = "http://{gw}";
async function run() {{
  const lines = [];
  try {{
    const r = await fetch(api + "/spacemesh.v2beta1.NodeService/Status");
    const j = await r.json();
    lines.push("GET " + r.status + " " + j.status + " final=" + r.headers.get("X-Final-Url"));
  }} catch (e) {{ lines.push("GET failed " + e); }}
  try {{
    const r = await fetch(api + "/spacemesh.v2alpha1.RewardService/List", {{method: "POST", headers: {{"Content-Type": "application/json", "X-Smesher-App": "1"}}, body: JSON.stringify({{limit: 100}})}});
    const j = await r.json();
    lines.push("POST " + r.status + " limit=" + j.echo.limit);
  }} catch (e) {{ lines.push("POST failed " + e); }}
  try {{
    const r = await fetch(gw + "/weights/total/3");
    lines.push("NOCORS " + r.status);
  }} catch (e) {{ lines.push("NOCORS blocked"); }}
  out.textContent = lines.join("\n") + "\nDONE";
  console.log(out.textContent);
}}
run();
</script></body></html>"#,
        api = api,
        gw = gw.listen
    );
    // The page, from a plain loopback server: every connection gets it and is closed.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let page_addr = server.local_addr().unwrap();
    server.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let serving = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                match server.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                                _ => break,
                            }
                        }
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                            page.len(),
                            page
                        );
                        let _ = conn.write_all(answer.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    };
    let profile = temp_dir("chromium-profile");
    let mut child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{page_addr}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium (set CHROMIUM=path)");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = serving.join();
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout);
    // Only the <pre> the script fills counts (the script's source is in the DOM too).
    let out = dom.split_once("<pre id=\"out\">").and_then(|(_, rest)| rest.split_once("</pre>")).map(|(text, _)| text.to_string()).unwrap_or_default();
    println!("page result:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec!["GET 200 SYNC_STATUS_SYNCED final=/spacemesh.v2beta1.NodeService/Status", "POST 200 limit=100", "NOCORS blocked", "DONE",],
        "DOM:\n{dom}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let upstream = j1.stats();
    assert_eq!(upstream.route("POST /spacemesh.v2alpha1.RewardService/List"), 1);
    assert!(!upstream.by_route.keys().any(|k| k.starts_with("OPTIONS")), "the preflight was answered by meshd: {:?}", upstream.by_route);
    // The control request did reach the node service; the browser refused to hand it over.
    assert_eq!(a.stats().route("GET /weights/total"), 1);
}
