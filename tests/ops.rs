//! Issue D, operator experience, against the real meshd binary: `--simulate-relay`, identity
//! states (persisted, once per transition, across restarts), the Prometheus scrape, systemd
//! notify (READY/WATCHDOG/STOPPING), signals (graceful SIGTERM under load, second SIGTERM,
//! SIGHUP) and logs (switches honoured, no secret ever logged).

mod common;

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{agent, send, wait_until, Sent, Stack};
use meshd::demo::TOKEN;
use meshd::queue::{Durability, Store};
use meshd::sim::ChainSimConfig;
use serde_json::{json, Value};

const MESH_TOKEN: &str = "demo-mesh-token";

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent = agent(Duration::from_secs(10));
    let mut request = agent.get(url);
    if let Some(t) = token {
        request = request.header("Authorization", t);
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

fn post(url: &str, body: &str) -> (u16, String) {
    let agent = agent(Duration::from_secs(10));
    let mut response = agent.post(url).header("Content-Type", "application/json").send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

fn base(stack: &Stack) -> String {
    format!("http://127.0.0.1:{}", stack.port)
}

fn states(stack: &Stack, query: &str) -> Vec<Value> {
    let (status, body) = get(&format!("{}/v1/private/mesh/states?{query}", base(stack)), Some(MESH_TOKEN));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["states"].as_array().unwrap().clone()
}

fn count_state(list: &[Value], state: &str) -> usize {
    list.iter().filter(|s| s["state"] == state).count()
}

fn metrics_url(stack: &Stack) -> String {
    format!("http://127.0.0.1:{}/metrics", stack.config_value("pocket_prometheus_port").as_str().unwrap())
}

/// Wait for meshd to exit by itself, at most `bound`.
fn wait_exit(stack: &mut Stack, bound: Duration) -> Option<std::process::ExitStatus> {
    let child = stack.meshd.as_mut().unwrap();
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            stack.meshd = None;
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn simulate_relay_runs_the_chain_call_without_validation() {
    let mut stack = Stack::new("sim", 1_000, json!({}));
    stack.start_meshd_with(&["--simulate-relay"], &[("RUST_LOG", Some("info"))]);
    let body = json!({"relay_network_id": "0021", "payload": {"data": r#"{"jsonrpc":"2.0","method":"eth_chainId","params":[],"id":7}"#, "method": "POST"}});
    let (status, text) = post(&format!("{}/v1/client/sim", base(&stack)), &body.to_string());
    assert_eq!(status, 200, "{text}");
    // The chain body comes back as a JSON *string*, unsigned.
    let inner: String = serde_json::from_str(&text).expect("the answer is a JSON string");
    let chain: Value = serde_json::from_str(&inner).expect("holding the chain's JSON");
    assert_eq!(chain["id"], 7, "{inner}");
    assert!(chain["result"].is_string(), "{inner}");
    assert_eq!(stack.chain.stats().requests, 1, "the chain was called once");
    assert_eq!(stack.servicer.lock().unwrap().stats().accepted_total, 0, "nothing is notified");

    let (status, text) = post(&format!("{}/v1/client/sim", base(&stack)), r#"{"relay_network_id":"9999","payload":{"data":"{}"}}"#);
    assert_eq!(status, 400, "{text}");
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["code"], 400);
    assert!(e["message"].as_str().unwrap().contains("9999"), "{text}");

    // Without the flag the route does not exist.
    stack.kill_meshd();
    stack.start_meshd();
    let (status, _) = post(&format!("{}/v1/client/sim", base(&stack)), &body.to_string());
    assert_eq!(status, 404);
}

#[test]
fn identity_states_are_recorded_once_per_transition_and_not_again_after_restarts() {
    // max_relays 15 over 5 session nodes: a budget of 3 relays.
    let mut stack = Stack::new("states", 15, json!({"servicer_rpc_timeout": 2000}));
    stack.start_meshd();
    let address = stack.servicer_key.address_hex.clone();
    let agent = agent(Duration::from_secs(5));
    for i in 0..3 {
        assert!(matches!(send(&agent, &stack.url(), &stack.relay(10 + i), &stack.servicer_key), Sent::Served(_)));
    }
    // The budget (3) is spent: the 4th is refused 71 and the session is exhausted.
    let refused = send(&agent, &stack.url(), &stack.relay(13), &stack.servicer_key);
    assert!(matches!(&refused, Sent::Refused(400, body) if body.contains("\"code\":71")), "{refused:?}");
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 3));

    let wanted = ["SERVICER_HEALTHY", "SESSION_ACTIVE", "SESSION_EXHAUSTED"];
    assert!(
        wait_until(Duration::from_secs(5), || {
            let all = states(&stack, "");
            wanted.iter().all(|w| count_state(&all, w) == 1)
        }),
        "{:?}\n{}",
        states(&stack, ""),
        stack.log_tail()
    );
    let all = states(&stack, "");
    let active = all.iter().find(|s| s["state"] == "SESSION_ACTIVE").unwrap();
    assert_eq!(active["servicer"], address);
    assert_eq!(active["sessionHeight"], 101);
    assert_eq!(active["sessionActive"]["chain"], "0021");
    assert_eq!(active["sessionActive"]["remainingRelays"], 3);
    assert!(active["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(all[0]["state"], "SERVICER_HEALTHY", "ascending order by default: {all:?}");

    // Restart twice (graceful, then SIGKILL): meshd re-observes a healthy node and an
    // exhausted session, and records nothing twice.
    stack.signal("TERM");
    assert_eq!(wait_exit(&mut stack, Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    stack.start_meshd();
    assert!(wait_until(Duration::from_secs(5), || stack.log_text().matches("event=ready").count() == 2));
    let refused = send(&agent, &stack.url(), &stack.relay(14), &stack.servicer_key);
    assert!(matches!(&refused, Sent::Refused(400, body) if body.contains("\"code\":71")), "still exhausted after restart: {refused:?}");
    stack.kill_meshd();
    stack.start_meshd();
    std::thread::sleep(Duration::from_millis(1500));
    let all = states(&stack, "");
    for w in wanted {
        assert_eq!(count_state(&all, w), 1, "{w} recorded again after restarts: {all:?}");
    }
    assert_eq!(all.len(), 3, "{all:?}");

    // Filters, order, limit and the token.
    let only = states(&stack, &format!("address={address}&state=SESSION_EXHAUSTED"));
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["sessionExhausted"]["chain"], "0021");
    assert!(states(&stack, &format!("address={}", "00".repeat(20))).is_empty());
    let desc = states(&stack, "order=desc&limit=2");
    assert_eq!(desc.len(), 2);
    assert_eq!(desc[0]["state"], "SESSION_EXHAUSTED");
    let first_time = all[0]["time"].as_str().unwrap();
    let later = states(&stack, &format!("from={}", first_time.replace(':', "%3A")));
    assert_eq!(later.len(), 3, "from is inclusive");
    let before = states(&stack, &format!("to={}", first_time.replace(':', "%3A")));
    assert!(before.is_empty(), "to is exclusive");
    let url = format!("{}/v1/private/mesh/states", base(&stack));
    assert_eq!(get(&format!("{url}?limit=101"), Some(MESH_TOKEN)).0, 400);
    let (status, body) = get(&url, None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(&url, Some("guess"));
    assert_eq!(status, 401);
    assert!(!body.contains("guess"), "the supplied token is not echoed: {body}");
    assert_eq!(get(&format!("{}/v1/private/mesh/status", base(&stack)), Some("guess")).0, 401);
}

#[test]
fn notify_failures_and_recovery_are_states() {
    let mut stack = Stack::new("notify-states", 1_000, json!({"servicer_rpc_timeout": 2000, "servicer_retry_wait_max": 100}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 1));
    // Notifies now fail with 503 (the node is not taking them); the relay is served anyway.
    stack.servicer.lock().unwrap().control(&meshd::sim::SimControl { fail_notify_status: Some(503), ..Default::default() }).unwrap();
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(2), &stack.servicer_key), Sent::Served(_)));
    assert!(wait_until(Duration::from_secs(10), || count_state(&states(&stack, ""), "NOTIFY_FAILING") == 1), "{:?}\n{}", states(&stack, ""), stack.log_tail());
    // The overall state says so (the node itself is healthy: degraded, not down).
    let (_, body) = get(&format!("{}/v1/private/mesh/status", base(&stack)), Some(MESH_TOKEN));
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["overall"]["state"], "degraded", "{body}");
    assert!(st["overall"]["reasons"][0].as_str().unwrap().contains("notifies to servicer node demo-servicer failing"), "{body}");
    stack.servicer.lock().unwrap().control(&meshd::sim::SimControl { fail_notify_status: Some(0), ..Default::default() }).unwrap();
    assert!(wait_until(Duration::from_secs(15), || stack.servicer.lock().unwrap().stats().accepted_total == 2));
    assert!(wait_until(Duration::from_secs(5), || count_state(&states(&stack, ""), "NOTIFY_OK") == 1), "{:?}", states(&stack, ""));
    let failing = states(&stack, "state=NOTIFY_FAILING");
    assert!(failing[0]["notifyFailing"]["reason"].as_str().unwrap().contains("503"), "{failing:?}");
    // The status JSON shows the same picture.
    let (status, body) = get(&format!("{}/v1/private/mesh/status", base(&stack)), Some(MESH_TOKEN));
    assert_eq!(status, 200, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["nodes"][0]["healthy"], true);
    assert_eq!(st["nodes"][0]["height"], 101);
    assert_eq!(st["addresses"][0]["address"], stack.servicer_key.address_hex);
    assert_eq!(st["addresses"][0]["served"], 2);
    assert_eq!(st["addresses"][0]["sessions"], 1);
    assert_eq!(st["addresses"][0]["state"]["state"], "NOTIFY_OK");
    assert_eq!(st["queue"]["pending"], 0);
    assert_eq!(st["counters"]["served"], 2);
    assert!(st["recent_states"].as_array().unwrap().len() >= 4, "{body}");
    assert_eq!(st["overall"]["state"], "ok", "{body}");
    assert_eq!(st["overall"]["reasons"].as_array().unwrap().len(), 0, "{body}");
    assert_eq!(st["last_minute"]["relays"], 2, "{body}");
    assert!(
        st["last_minute"]["p50_ms"].as_f64().unwrap() > 0.0 && st["last_minute"]["p99_ms"].as_f64().unwrap() >= st["last_minute"]["p50_ms"].as_f64().unwrap()
    );
    assert_eq!(st["chains"][0]["id"], "0021", "{body}");
    assert_eq!((st["chains"][0]["healthy"].as_bool(), st["chains"][0]["calls_last_minute"].as_u64()), (Some(true), Some(2)), "{body}");
    assert_eq!(st["dead_letters"].as_array().unwrap().len(), 0, "{body}");

    // After a restart the same session is served again: SESSION_ACTIVE is not recorded twice.
    stack.kill_meshd();
    stack.start_meshd();
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(3), &stack.servicer_key), Sent::Served(_)));
    std::thread::sleep(Duration::from_millis(500));
    let all = states(&stack, "");
    assert_eq!(count_state(&all, "SESSION_ACTIVE"), 1, "{all:?}");
    assert_eq!(count_state(&all, "SERVICER_HEALTHY"), 1, "{all:?}");
}

#[test]
fn metrics_scrape_has_the_incumbent_families_and_meshd_gauges() {
    let mut stack =
        Stack::new("metrics", 1_000, json!({"metrics_moniker": "fra-mesh-1", "chains_name_map": "chains_name_map.json", "prometheus_max_open_files": 2}));
    std::fs::write(stack.dir.join("chains_name_map.json"), r#"{"0021":"eth-mainnet"}"#).unwrap();
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    for i in 0..5 {
        assert!(matches!(send(&agent, &stack.url(), &stack.relay(100 + i), &stack.servicer_key), Sent::Served(_)));
    }
    let mut tampered = stack.relay(200);
    tampered.payload.data.push(' ');
    assert!(matches!(send(&agent, &stack.url(), &tampered, &stack.servicer_key), Sent::Refused(400, _)));
    // A chain meshd does not host: counted under chain_id="unknown", never under the
    // client's string (labels must not grow with what clients send).
    let mut foreign = stack.relay(201);
    foreign.proof.blockchain = "beef".into();
    assert!(matches!(send(&agent, &stack.url(), &foreign, &stack.servicer_key), Sent::Refused(400, _)));
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 5));

    // Any path answers the metrics (like promhttp on the incumbent's port).
    let (status, text) = get(&metrics_url(&stack).replace("/metrics", "/anything"), None);
    assert_eq!(status, 200, "{text}");
    let m = "moniker=\"fra-mesh-1\"";
    let ok_labels = format!("{m},chain_id=\"0021\",chain_name=\"eth-mainnet\",is_notify=\"false\",success=\"true\",status_code=\"200\"");
    for line in [
        format!("pocketcore_geo_mesh_relay_count{{{ok_labels}}} 5"),
        format!("pocketcore_geo_mesh_relay_time_count{{{ok_labels}}} 5"),
        format!("pocketcore_geo_mesh_relay_handler_time_bucket{{{ok_labels},le=\"+Inf\"}} 5"),
        format!("pocketcore_geo_mesh_relay_count{{{m},chain_id=\"0021\",chain_name=\"eth-mainnet\",is_notify=\"true\",success=\"true\",status_code=\"200\"}} 5"),
        format!("pocketcore_geo_mesh_error_count{{{m},chain_id=\"0021\",chain_name=\"eth-mainnet\",is_notify=\"false\",status_type=\"bad_request\",status_code=\"74\",success=\"false\"}} 1"),
        format!("pocketcore_geo_mesh_chain_time_count{{{m},chain_id=\"0021\",chain_name=\"eth-mainnet\",status_code=\"200\"}} 5"),
        format!("pocketcore_geo_mesh_relay_count{{{m},chain_id=\"unknown\",chain_name=\"unknown\",is_notify=\"false\",success=\"false\",status_code=\"400\"}} 1"),
        format!("meshd_served_total{{{m}}} 5"),
        format!("meshd_rejected_total{{{m}}} 2"),
        format!("meshd_notified_total{{{m}}} 5"),
        format!("meshd_queue_pending{{{m}}} 0"),
        format!("meshd_queue_dead_letters{{{m}}} 0"),
        format!("meshd_session_cache_entries{{{m}}} 1"),
        format!("meshd_node_healthy{{{m},node=\"demo-servicer\"}} 1"),
        format!("meshd_node_height{{{m},node=\"demo-servicer\"}} 101"),
        format!("meshd_servicers{{{m}}} 1"),
        format!("meshd_node_failovers_total{{{m},node=\"demo-servicer\"}} 0"),
        format!("meshd_chain_healthy{{{m},chain_id=\"0021\",chain_name=\"eth-mainnet\"}} 1"),
        format!("meshd_chain_endpoint_healthy{{{m},chain_id=\"0021\",chain_name=\"eth-mainnet\",endpoint=\"urls[0]\"}} 1"),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("# TYPE pocketcore_geo_mesh_relay_time histogram"));
    assert!(text.contains("# TYPE meshd_node_failovers_total counter"), "failovers only grow: a counter");
    // Every counter family ends in _total, except the two incumbent Geo-Mesh names.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ") && l.ends_with(" counter")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(name.ends_with("_total") || name.starts_with("pocketcore_geo_mesh_"), "{line}");
    }
    assert!(text.contains("le=\"381\""), "LinearBuckets(1,20,20) ends at 381 ms");
    assert!(!text.contains("servicer_address"), "no servicer label unless metrics_attach_servicer_label");
    assert!(!text.contains("beef"), "client-chosen chain ids are not labels");
    // Every sample line is `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample {line:?}");
    }
    // prometheus_max_open_files caps the exposition's connections, not threads: scrapes are
    // served on the executor like every other listener.
    let pid = stack.meshd.as_ref().unwrap().id();
    let threads: Vec<String> =
        std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok()).collect();
    assert!(threads.len() <= 8, "no thread per scrape or connection: {threads:?}");
    assert!(stack.log_text().contains("event=metrics_listening") && stack.log_text().contains("max_open=2"), "{}", stack.log_tail());
    // Concurrent scrapes beyond the cap wait their turn and are all answered.
    let scrapers: Vec<_> = (0..5)
        .map(|_| {
            let url = metrics_url(&stack);
            std::thread::spawn(move || get(&url, None).0)
        })
        .collect();
    assert!(scrapers.into_iter().all(|s| s.join().unwrap() == 200));

    // Kept for tests/metrics_check.sh, which runs the real `promtool check metrics` on it.
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics-scrape.txt");
    std::fs::write(&out, &text).unwrap();
    println!("scrape written to {}", out.display());
}

#[test]
fn servicer_label_is_attached_when_configured() {
    let mut stack = Stack::new("metrics-label", 1_000, json!({"metrics_attach_servicer_label": true}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    let (_, text) = get(&metrics_url(&stack), None);
    let label = format!("servicer_address=\"{}\"", stack.servicer_key.address_hex);
    assert!(text.lines().any(|l| l.starts_with("pocketcore_geo_mesh_relay_count{") && l.contains(&label)), "{text}");
}

/// Receive datagrams until `done` says enough or the bound passes.
fn collect(socket: &UnixDatagram, bound: Duration, mut done: impl FnMut(&[String]) -> bool) -> Vec<String> {
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && !done(&got) {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn systemd_notify_ready_watchdog_and_stopping_on_a_path_socket() {
    let mut stack = Stack::new("sdnotify", 1_000, json!({}));
    let path = stack.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    stack.start_meshd_with(&[], &[("RUST_LOG", Some("info")), ("NOTIFY_SOCKET", Some(path.to_str().unwrap())), ("WATCHDOG_USEC", Some("200000"))]);
    let got = collect(&socket, Duration::from_secs(15), |g| g.iter().any(|m| m.starts_with("READY=1")));
    assert!(got.iter().any(|m| m.starts_with("READY=1")), "{got:?}\n{}", stack.log_tail());
    // READY comes after the listener is up.
    assert!(std::net::TcpStream::connect(("127.0.0.1", stack.port)).is_ok());
    let started = Instant::now();
    let pings = collect(&socket, Duration::from_secs(3), |g| g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 4);
    let n = pings.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(n >= 4, "expected WATCHDOG=1 every 100 ms, got {pings:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "4 pings took {:?}", started.elapsed());
    stack.signal("TERM");
    let stopping = collect(&socket, Duration::from_secs(5), |g| g.iter().any(|m| m == "STOPPING=1"));
    assert!(stopping.iter().any(|m| m == "STOPPING=1"), "{stopping:?}");
    assert_eq!(wait_exit(&mut stack, Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
}

#[test]
fn systemd_notify_on_an_abstract_socket_and_no_watchdog_for_another_pid() {
    use std::os::linux::net::SocketAddrExt;
    let mut stack = Stack::new("sdnotify-abstract", 1_000, json!({}));
    let name = format!("meshd-it-notify-{}", std::process::id());
    let socket = UnixDatagram::bind_addr(&std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    let at = format!("@{name}");
    // WATCHDOG_PID names another process: the watchdog is not meant for meshd.
    stack.start_meshd_with(&[], &[("RUST_LOG", Some("info")), ("NOTIFY_SOCKET", Some(&at)), ("WATCHDOG_USEC", Some("100000")), ("WATCHDOG_PID", Some("1"))]);
    let got = collect(&socket, Duration::from_secs(15), |g| g.iter().any(|m| m.starts_with("READY=1")));
    assert!(got.iter().any(|m| m.starts_with("READY=1")), "{got:?}\n{}", stack.log_tail());
    let more = collect(&socket, Duration::from_millis(600), |_| false);
    assert!(!more.iter().any(|m| m == "WATCHDOG=1"), "{more:?}");
}

#[test]
fn sigterm_under_load_answers_in_flight_relays_commits_and_exits_0() {
    // A 300 ms chain keeps relays in flight when the signal arrives.
    let mut stack = Stack::with_chain("sigterm", 10_000_000, json!({}), ChainSimConfig { delay_ms: 300, ..Default::default() });
    stack.start_meshd();
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for t in 0..8i64 {
        let (served, stop, url, key) = (served.clone(), stop.clone(), stack.url(), stack.servicer_key.clone());
        let relays: Vec<_> = (0..400).map(|i| stack.relay(10_000 * (t + 1) + i)).collect();
        clients.push(std::thread::spawn(move || {
            let agent = agent(Duration::from_secs(10));
            let mut no_answer = 0;
            for relay in relays {
                if stop.load(Ordering::Relaxed) || no_answer > 20 {
                    break;
                }
                match send(&agent, &url, &relay, &key) {
                    Sent::Served(proof) => served.lock().unwrap().push(proof),
                    Sent::NoAnswer(_) => {
                        no_answer += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Sent::Refused(..) => {}
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let before = served.lock().unwrap().len();
    assert!(before > 10, "load should be flowing: {before}\n{}", stack.log_tail());
    let signalled = Instant::now();
    stack.signal("TERM");
    let status = wait_exit(&mut stack, Duration::from_secs(8)).unwrap_or_else(|| panic!("meshd did not exit within 8 s\n{}", stack.log_tail()));
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", stack.log_tail());
    assert!(took < Duration::from_secs(6), "shutdown took {took:?} (bound 5 s)");
    let log = stack.log_text();
    assert!(log.contains("event=shutdown_started signal=SIGTERM"), "{log}");
    assert!(log.contains("event=shutdown_complete"), "{log}");
    assert!(log.contains("unanswered=0"), "every in-flight relay was answered: {}", stack.log_tail());

    // Every relay answered 200 is delivered or still queued.
    let served: HashSet<String> = served.lock().unwrap().iter().cloned().collect();
    assert!(served.len() > before, "in-flight relays were answered after the signal");
    let accepted: HashSet<String> = stack.servicer.lock().unwrap().stats().accepted_proofs.unwrap_or_default().into_iter().collect();
    let store = Store::open(&stack.dir.join("data/queue"), 64, Durability::Sync).unwrap();
    let address = meshd::protocol::address_of(&stack.servicer_key.public_bytes());
    let (pending, _) = store.due(&[address], &HashSet::new(), u64::MAX, 1_000_000).unwrap();
    let queued: HashSet<String> = pending.into_iter().map(|(_, r)| hex::encode(r.unwrap().proof_hash)).collect();
    store.close();
    let lost: Vec<&String> = served.iter().filter(|p| !accepted.contains(*p) && !queued.contains(*p)).collect();
    println!("sigterm: served={} accepted={} queued={} shutdown_ms={}", served.len(), accepted.len(), queued.len(), took.as_millis());
    assert!(lost.is_empty(), "{} relays answered 200 are neither delivered nor queued", lost.len());
}

#[test]
fn a_second_sigterm_exits_at_once_with_143() {
    // A 4 s chain call keeps the first shutdown waiting on its drain bound.
    let mut stack = Stack::with_chain("sigterm2", 1_000, json!({"chain_rpc_timeout": 10_000}), ChainSimConfig { delay_ms: 4_000, ..Default::default() });
    stack.start_meshd();
    let (url, relay, key) = (stack.url(), stack.relay(1), stack.servicer_key.clone());
    let client = std::thread::spawn(move || send(&agent(Duration::from_secs(10)), &url, &relay, &key));
    assert!(wait_until(Duration::from_secs(5), || stack.chain.stats().requests == 1), "the relay reached the chain");
    stack.signal("TERM");
    assert!(wait_until(Duration::from_secs(3), || stack.log_text().contains("event=shutdown_started")));
    let second = Instant::now();
    stack.signal("TERM");
    let status = wait_exit(&mut stack, Duration::from_secs(2)).expect("the second SIGTERM ends meshd at once");
    assert!(second.elapsed() < Duration::from_millis(1000), "took {:?}", second.elapsed());
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(matches!(client.join().unwrap(), Sent::NoAnswer(_)));
    // The relay was committed before the chain answered: it is still queued for its notify.
    let store = Store::open(&stack.dir.join("data/queue"), 64, Durability::Sync).unwrap();
    assert_eq!(store.stats().unwrap().pending, 1);
    store.close();
}

#[test]
fn sigint_drains_like_sigterm_and_sighup_requests_a_reload() {
    // Interval reloads off: only SIGHUP can make meshd read chains.json again.
    let mut stack = Stack::new("sighup", 1_000, json!({"chains_hot_reload_interval": 0, "keys_hot_reload_interval": 0}));
    stack.start_meshd();
    let chains_path = stack.dir.join("chains.json");
    let mut chains: Value = serde_json::from_str(&std::fs::read_to_string(&chains_path).unwrap()).unwrap();
    let first = chains[0].clone();
    let mut extra = first.clone();
    extra["id"] = json!("0040");
    chains.as_array_mut().unwrap().push(extra);
    std::fs::write(&chains_path, serde_json::to_vec(&chains).unwrap()).unwrap();
    stack.signal("HUP");
    assert!(wait_until(Duration::from_secs(3), || stack.log_text().contains("event=reload_requested source=SIGHUP")), "{}", stack.log_tail());
    assert!(wait_until(Duration::from_secs(5), || stack.log_text().contains("event=chains_reloaded")), "SIGHUP must reload chains.json:\n{}", stack.log_tail());
    // Still serving after the reload request.
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    let (_, text) = get(&metrics_url(&stack), None);
    assert!(text.lines().any(|l| l == "meshd_reloads_requested_total{moniker=\"geo-mesh-node\"} 1"), "{text}");
    stack.signal("INT");
    let status = wait_exit(&mut stack, Duration::from_secs(8)).expect("SIGINT shuts down");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(status.signal().is_none());
    assert!(stack.log_text().contains("event=shutdown_complete signal=SIGINT"));
}

#[test]
fn logs_honour_the_switches_and_never_contain_keys_or_tokens() {
    let mut stack =
        Stack::new("logs", 1_000, json!({"log_level": "*:debug", "log_relay_request": true, "log_chain_request": true, "log_chain_response": true}));
    // log_level from the config (RUST_LOG unset), then RUST_LOG=trace overriding it.
    stack.start_meshd_with(&[], &[("RUST_LOG", None)]);
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    let mut tampered = stack.relay(2);
    tampered.payload.data.push(' ');
    assert!(matches!(send(&agent, &stack.url(), &tampered, &stack.servicer_key), Sent::Refused(400, _)));
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 1));
    // Private routes with the right and a wrong token.
    assert_eq!(get(&format!("{}/v1/private/mesh/status", base(&stack)), Some(MESH_TOKEN)).0, 200);
    assert_eq!(get(&format!("{}/v1/private/mesh/states", base(&stack)), Some("not-the-token")).0, 401);
    stack.signal("TERM");
    assert_eq!(wait_exit(&mut stack, Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    let debug_log = stack.log_text();
    assert!(debug_log.contains("DEBUG"), "log_level *:debug is honoured:\n{debug_log}");
    assert!(debug_log.contains("event=chain_request chain=0021"), "log_chain_request:\n{debug_log}");
    assert!(debug_log.contains("event=chain_response chain=0021"), "log_chain_response:\n{debug_log}");
    assert!(debug_log.contains("event=relay_rejected code=74") && debug_log.contains("relay={"), "log_relay_request:\n{debug_log}");

    // RUST_LOG overrides log_level (plain or `*:level` syntax): at warn, no INFO/DEBUG lines.
    std::fs::write(&stack.log, "").unwrap();
    stack.start_meshd_with(&[], &[("RUST_LOG", Some("*:warn"))]);
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(4), &stack.servicer_key), Sent::Served(_)));
    stack.signal("TERM");
    assert_eq!(wait_exit(&mut stack, Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    let warn_log = stack.log_text();
    assert!(!warn_log.contains(" INFO ") && !warn_log.contains("DEBUG"), "RUST_LOG=*:warn overrides log_level:\n{warn_log}");

    // The most verbose level, for the secrets check below.
    std::fs::write(&stack.log, "").unwrap();
    stack.start_meshd_with(&[], &[("RUST_LOG", Some("trace"))]);
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(3), &stack.servicer_key), Sent::Served(_)));
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 3));
    stack.signal("TERM");
    assert_eq!(wait_exit(&mut stack, Duration::from_secs(10)).and_then(|s| s.code()), Some(0));
    let trace_log = stack.log_text();
    assert!(trace_log.contains("event=chain_request"), "{trace_log}");

    let private_key = stack.servicer_key.private_hex();
    for (log, level) in [(&debug_log, "debug"), (&trace_log, "trace")] {
        for (secret, what) in [
            (private_key.as_str(), "servicer private key"),
            (&private_key[..64], "servicer private key seed"),
            (TOKEN, "servicer token"),
            (MESH_TOKEN, "mesh token"),
        ] {
            assert!(!log.contains(secret), "the {what} appears in the {level} log");
        }
    }
}
