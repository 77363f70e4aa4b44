//! The command line as a node runner meets it: `--help` on every subcommand, `meshd relay`
//! sending one real relay, the demo printing its request, `meshd demo --shannon` against a real
//! `redis-server`, a taken relay port exiting 1 (an environment fault systemd restarts), and the
//! metrics listener on its own bind address.

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_until, Stack};
use meshd::demo::{demo_keys, CHAIN, SESSION_HEIGHT};
use serde_json::json;

fn meshd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshd")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_subcommand_answers_help() {
    for args in [
        &["demo", "--help"][..],
        &["start", "--help"],
        &["start", "--datadir", "/nonexistent", "-h"],
        &["check-config", "--help"],
        &["relay", "--help"],
        &["queue", "--help"],
        &["queue", "stats", "--help"],
        &["queue", "salvage", "--help"],
        &["address", "--help"],
        &["sim", "--help"],
        &["sim", "servicer", "--help"],
    ] {
        let (code, stdout, stderr) = meshd(args);
        assert_eq!(code, 0, "meshd {args:?}: {stderr}");
        let usage = format!("meshd {}", args[0]);
        assert!(stdout.starts_with(&usage), "meshd {args:?} printed:\n{stdout}");
    }
    let (code, stdout, _) = meshd(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("<command> --help"), "{stdout}");
    assert_eq!(meshd(&["nonsense", "--help"]).0, 2, "an unknown command stays a usage error");
}

#[test]
fn relay_command_sends_one_signed_relay_and_checks_the_signature() {
    let mut stack = Stack::new("cli-relay", 1_000, json!({}));
    stack.start_meshd();
    let (app, _, servicer) = demo_keys();
    let to = format!("http://127.0.0.1:{}", stack.port);
    let app_key = app.private_hex();
    // Session height from the node's height (meshd forwards /v1/query/height to its servicer).
    let (code, stdout, stderr) = meshd(&["relay", "--to", &to, "--app-key", &app_key, "--servicer", &servicer.public_hex, "--chain", CHAIN]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", stack.log_tail());
    assert!(stdout.contains(&format!("request   POST {to}/v1/client/relay")), "{stdout}");
    assert!(stdout.contains(&format!("\"session_block_height\":{SESSION_HEIGHT}")), "{stdout}");
    assert!(stdout.contains("answer    HTTP 200") && stdout.contains("signature verified"), "{stdout}");
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 1), "the relay was not notified");

    // A relay meshd refuses (a chain it does not host): the answer is shown, exit 1.
    let (code, stdout, _) =
        meshd(&["relay", "--to", &to, "--app-key", &app_key, "--servicer", &servicer.public_hex, "--chain", "0001", "--session-height", "101"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("answer    HTTP 400") && stdout.contains("\"code\":26"), "{stdout}");
    // Bad arguments are usage errors.
    assert_eq!(meshd(&["relay", "--to", &to, "--app-key", "zz", "--servicer", &servicer.public_hex, "--chain", CHAIN]).0, 2);
    assert_eq!(meshd(&["relay", "--to", &to]).0, 2);
}

#[test]
fn demo_prints_the_request_it_sends() {
    let (code, stdout, stderr) = meshd(&["demo", "--relays", "1"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let request = stdout.lines().skip_while(|l| !l.starts_with("request of relay 1: POST http://127.0.0.1:")).nth(1).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(request).unwrap_or_else(|e| panic!("request body is not JSON ({e}):\n{stdout}"));
    assert_eq!(body["proof"]["blockchain"], CHAIN);
    assert!(stdout.contains("demo OK"), "{stdout}");
}

#[test]
fn a_taken_relay_port_exits_1_so_systemd_restarts_it() {
    let stack = Stack::new("cli-port-taken", 1_000, json!({}));
    let _squatter = TcpListener::bind(("127.0.0.1", stack.port)).unwrap();
    let log = std::fs::File::create(&stack.log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["start", "--datadir"])
        .arg(&stack.dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("meshd kept running on a taken port:\n{}", stack.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "a taken port is an environment fault, not a configuration error:\n{}", stack.log_tail());
    assert!(stack.log_text().contains(&format!("127.0.0.1:{}", stack.port)), "the error names the address:\n{}", stack.log_tail());
}

#[test]
fn metrics_bind_their_own_address() {
    // Relays on 127.0.0.1, metrics on 127.0.0.2 (also loopback on Linux).
    let mut stack = Stack::new("cli-metrics-bind", 1_000, json!({"metrics_listen_address": "127.0.0.2"}));
    stack.start_meshd();
    let port: u16 = stack.config_value("pocket_prometheus_port").as_str().unwrap().parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.2", port)).is_ok()),
        "metrics not on metrics_listen_address:\n{}",
        stack.log_tail()
    );
    let (status, _, text) = common::http("GET", &format!("http://127.0.0.2:{port}/metrics"), &[], b"");
    assert_eq!(status, 200);
    assert!(text.contains("meshd_up"), "{text}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "metrics must not follow listen_address");
    let (code, stdout, stderr) = meshd(&["check-config", "--datadir", stack.dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("metrics:      127.0.0.2:{port}")), "{stdout}");
}

#[test]
fn the_documented_servicer_simulator_config_runs() {
    use std::io::BufRead;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/simulators.md")).unwrap();
    let start = doc.find("```json\n").expect("docs/simulators.md has a JSON config block") + "```json\n".len();
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    let (app, _, servicer) = demo_keys();
    let config = block.replace("<servicer public key, 64 hex>", &servicer.public_hex).replace("<app public key, 64 hex>", &app.public_hex);
    let dir = common::temp_dir("cli-sim-doc");
    let path = dir.join("servicer-sim.json");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["sim", "servicer", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let read = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let _ = child.kill();
    let status = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(read.is_ok() && line.starts_with("listening on 127.0.0.1:"), "sim servicer with the documented config: {line:?} ({status})");
}

#[test]
fn check_config_probe_reports_each_servicer_url_and_chain_endpoint() {
    let stack = Stack::new("cli-probe", 1_000, json!({}));
    let datadir = stack.dir.to_str().unwrap();
    let (code, stdout, stderr) = meshd(&["check-config", "--datadir", datadir, "--probe"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("check ok (token accepted), height 101") && stdout.contains("check/session/relay routes ok"), "{stdout}");
    assert!(stdout.contains("probe chain=0021 urls[0]: ok"), "{stdout}");
    assert!(stdout.contains("probe: every servicer and chain endpoint answered"), "{stdout}");

    // A stale servicer token: the servicer refuses it (and echoes it); the probe says so per URL,
    // exits 1 (the environment, not the configuration) and never prints the token.
    let stale = "stale-token-after-restart";
    std::fs::write(stack.dir.join("auth/servicer.json"), json!({"Value": stale, "Issued": "2024-01-01T00:00:00Z"}).to_string()).unwrap();
    let (code, stdout, stderr) = meshd(&["check-config", "--datadir", datadir, "--probe"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("check FAILED") && stdout.contains("HTTP 401"), "{stdout}");
    assert!(!stdout.contains(stale) && !stderr.contains(stale), "the token was printed:\n{stdout}\n{stderr}");
}

/// The §6.2 vector of shannon-relay.md (the app key of pocket-relay-miner's published
/// examples): a supplier operator runner checks the address of a key before staking with it.
#[test]
fn address_shannon_prints_the_pokt_address_of_a_private_or_public_key() {
    let (code, stdout, stderr) = meshd(&["address", "--shannon", "2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("address    pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4"), "{stdout}");
    let public = stdout.lines().find_map(|l| l.strip_prefix("public_key ")).unwrap().to_string();
    assert_eq!(public.len(), 66);
    let (code, again, _) = meshd(&["address", "--shannon", &public]);
    assert_eq!((code, again), (0, stdout));
    let (code, _, stderr) = meshd(&["address", "--shannon", "abcd"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("64-hex secp256k1 private key"), "{stderr}");
}

/// `meshd demo --shannon` against a `redis-server` this test starts (docs/simulators.md
/// "Shannon demo"): every supplier signature verified, every relay in its supplier stream once,
/// and the streams really hold them (read here with XLEN, independently of the demo's output).
#[test]
fn shannon_demo_verifies_signatures_and_shows_the_mined_relays_in_redis() {
    use meshd::shannon_demo::{demo_keys, STREAM_PREFIX};
    use meshd::supplier::resp::{Connection, RedisTarget, Reply};
    let dir = common::temp_dir("cli-shannon-demo");
    let port = meshd::demo::free_port().unwrap();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server; tests/run.sh does)");
    struct Stop<'a>(&'a mut std::process::Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _stop = Stop(&mut redis);
    let url = format!("redis://127.0.0.1:{port}");
    let target = RedisTarget::parse(&url).unwrap();
    assert!(wait_until(Duration::from_secs(10), || Connection::connect(&target, Duration::from_secs(1)).is_ok()), "redis-server did not start");

    let (code, stdout, stderr) = meshd(&["demo", "--shannon", "--relays", "3", "--redis", &url]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("request of relay 1: POST http://127.0.0.1:") && stdout.contains("meta.signature                 ring signature"), "{stdout}");
    assert!(stdout.contains(r#"body                         {"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#), "{stdout}");
    let verified: Vec<&str> = stdout.lines().filter(|l| l.contains("HTTP 200  signature verified") && l.contains("backend 200 {\"jsonrpc\":\"2.0\"")).collect();
    assert_eq!(verified.len(), 3, "{stdout}");
    assert!(stdout.contains("replay of relay 1  HTTP 409"), "{stdout}");
    let keys = demo_keys();
    let streams: Vec<String> = keys.suppliers.iter().map(|k| format!("{STREAM_PREFIX}:{}", k.address())).collect();
    let shown = stdout.lines().filter(|l| streams.iter().any(|s| l.starts_with(&format!("  {s}  "))) && l.contains("CUPR 10")).count();
    assert_eq!(shown, 3, "three decoded MinedRelayMessages:\n{stdout}");
    assert!(stdout.contains("XREADGROUP GROUP ha-miners"), "{stdout}");
    assert!(stdout.contains("served and signed     3/3") && stdout.contains("in the streams        3/3"), "{stdout}");
    assert!(stdout.trim_end().ends_with("demo OK"), "{stdout}");

    let mut conn = Connection::connect(&target, Duration::from_secs(2)).unwrap();
    let total: i64 = streams
        .iter()
        .map(|s| match conn.command(&[b"XLEN", s.as_bytes()]).unwrap() {
            Reply::Integer(n) => n,
            other => panic!("XLEN {s}: {other:?}"),
        })
        .sum();
    assert_eq!(total, 3, "the demo's relays are in the supplier streams of the given Redis");

    // A Redis that does not answer: a clear error, exit 1, never a fake success.
    let dead = format!("redis://127.0.0.1:{}", meshd::demo::free_port().unwrap());
    let (code, stdout, stderr) = meshd(&["demo", "--shannon", "--relays", "1", "--redis", &dead]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("no Redis answered PING") && !stdout.contains("demo OK"), "{stdout}\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
