//! Shared pieces of the integration tests: simulators on loopback, a data dir, the meshd binary
//! as a child process (so tests can SIGKILL it), and a relay sender that verifies signatures.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshd::client::{wire_json, RelayClient};
use meshd::demo::{demo_keys, free_port, write_datadir, CHAIN, SESSION_HEIGHT, TOKEN};
use meshd::protocol::keys::verify_hex;
use meshd::protocol::relay::response_hash;
use meshd::protocol::{KeyPair, Payload, Relay};
use meshd::sim::{start_chain, start_servicer, ChainHandle, ChainSimConfig, ServicerSimConfig, SimApp, SimHandle};

pub struct Stack {
    pub dir: PathBuf,
    pub port: u16,
    pub chain: ChainHandle,
    pub servicer: Arc<Mutex<SimHandle>>,
    pub servicer_key: KeyPair,
    pub client: RelayClient,
    pub meshd: Option<Child>,
    pub log: PathBuf,
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshd-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Stack {
    /// Simulators plus a data dir; `extra` config keys override the defaults.
    pub fn new(name: &str, max_relays: u64, extra: serde_json::Value) -> Stack {
        Stack::with_chain(name, max_relays, extra, ChainSimConfig::default())
    }

    /// [`Stack::new`] with a chain simulator configured by the test (e.g. a slow chain).
    pub fn with_chain(name: &str, max_relays: u64, extra: serde_json::Value, chain: ChainSimConfig) -> Stack {
        let (app, client, servicer_key) = demo_keys();
        let dir = temp_dir(name);
        let chain = start_chain(chain).unwrap();
        let port = free_port().unwrap();
        let servicer = start_servicer(ServicerSimConfig {
            auth_token: TOKEN.into(),
            height: SESSION_HEIGHT,
            service_url: format!("http://127.0.0.1:{port}"),
            servicers: vec![servicer_key.public_hex.clone()],
            chains: vec![CHAIN.into()],
            apps: vec![SimApp { public_key: app.public_hex.clone(), chains: vec![CHAIN.into()], max_relays }],
            ..Default::default()
        })
        .unwrap();
        write_datadir(&dir, port, &servicer.url(), &chain.url(), &servicer_key, &extra).unwrap();
        let log = dir.join("meshd.log");
        Stack { dir, port, chain, servicer: Arc::new(Mutex::new(servicer)), servicer_key, client: RelayClient::new(app, client), meshd: None, log }
    }

    /// Start the meshd binary and wait until its relay port accepts connections.
    /// `MESHD_BIN` overrides the binary and `MESHD_RUNNER` prefixes it (e.g. an aarch64 build
    /// under `qemu-aarch64-static`, see tests/arm_smoke.sh).
    pub fn start_meshd(&mut self) {
        self.start_meshd_with(&[], &[("RUST_LOG", Some("info"))]);
    }

    /// [`Stack::start_meshd`] with extra `start` arguments and environment changes
    /// (`None` removes a variable).
    pub fn start_meshd_with(&mut self, args: &[&str], env: &[(&str, Option<&str>)]) {
        self.meshd = Some(launch_meshd_with(&self.dir, &self.log, self.port, args, env));
    }

    /// SIGKILL meshd (no chance to flush or clean up) and reap it.
    pub fn kill_meshd(&mut self) {
        if let Some(mut child) = self.meshd.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// A value from the data dir's config.json (e.g. the Prometheus port the stack picked).
    pub fn config_value(&self, key: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("config.json")).unwrap();
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        config[key].clone()
    }

    /// Send a signal to the running meshd (SIGTERM, SIGHUP …).
    pub fn signal(&self, signal: &str) {
        let pid = self.meshd.as_ref().expect("meshd is running").id();
        let status = Command::new("kill").args(["-s", signal, &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill -s {signal} {pid} failed");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        file_tail(&self.log, 40)
    }

    pub fn relay(&self, entropy: i64) -> Relay {
        let payload = Payload {
            data: format!(r#"{{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":{entropy}}}"#),
            method: "POST".into(),
            ..Default::default()
        };
        self.client.build(&self.servicer_key.public_hex, CHAIN, SESSION_HEIGHT, SESSION_HEIGHT, entropy, payload)
    }

    /// Make `n` relays (entropy `first`…) dead letters: served while the servicer is away, which
    /// comes back 40 blocks later, so they are out of its sync window and refused (75).
    pub fn serve_relays_the_servicer_will_refuse(&self, agent: &ureq::Agent, first: i64, n: i64) {
        self.servicer.lock().unwrap().pause();
        for i in 0..n {
            assert!(matches!(send(agent, &self.url(), &self.relay(first + i), &self.servicer_key), Sent::Served(_)));
        }
        let mut s = self.servicer.lock().unwrap();
        s.set_height(SESSION_HEIGHT + 40).unwrap();
        s.resume().unwrap();
    }

    /// The queue record meshd would commit for `self.relay(entropy)` (for tests that write a
    /// queue while no daemon runs).
    pub fn queued_relay(&self, entropy: i64) -> meshd::queue::QueuedRelay {
        let relay = self.relay(entropy);
        meshd::queue::QueuedRelay {
            servicer_address: meshd::protocol::address_of(&self.servicer_key.public_bytes()),
            servicer_public_key: self.servicer_key.public_bytes(),
            chain: relay.proof.blockchain.clone(),
            app_public_key: relay.proof.aat.app_pub_key.clone(),
            session_height: relay.proof.session_block_height,
            proof_hash: relay.proof.hash(),
            served_at_ms: 0,
            attempts: 0,
            not_before_ms: 0,
            last_error: String::new(),
            relay_json: wire_json(&relay).into_bytes(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/client/relay", self.port)
    }

    pub fn queue_cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_meshd")).arg("queue").args(args).arg("--datadir").arg(&self.dir).output().unwrap();
        assert!(out.status.success(), "meshd queue {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_meshd();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start the meshd binary on a data dir (stderr appended to `log`) and wait until `port`
/// accepts connections; panics with the log tail if it exits or does not listen within 20 s.
pub fn launch_meshd(dir: &Path, log_path: &Path, port: u16) -> Child {
    launch_meshd_with(dir, log_path, port, &[], &[("RUST_LOG", Some("info"))])
}

/// Start `meshd start --datadir DIR` (plus `args`, with `env` changes; `None` removes a
/// variable) logging to `log_path`, and wait until `port` accepts connections.
/// `MESHD_BIN` overrides the binary and `MESHD_RUNNER` prefixes it (e.g. an aarch64 build
/// under `qemu-aarch64-static`, see tests/arm_smoke.sh).
pub fn launch_meshd_with(dir: &Path, log_path: &Path, port: u16, args: &[&str], env: &[(&str, Option<&str>)]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
    let binary = std::env::var("MESHD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_meshd").to_string());
    let mut command = match std::env::var("MESHD_RUNNER") {
        Ok(runner) if !runner.is_empty() => {
            let mut c = Command::new(runner);
            c.arg(&binary);
            c
        }
        _ => Command::new(&binary),
    };
    command.args(["start", "--datadir"]).arg(dir).args(args).stdout(Stdio::null()).stderr(log);
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    let mut child = command.spawn().expect("spawn meshd");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("meshd exited with {status}:\n{}", file_tail(log_path, 40));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("meshd did not listen within 60 s:\n{}", file_tail(log_path, 40));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The last `lines` lines of a text file.
pub fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A servicer simulator hosting `servicers` (lean mode) for the demo app on the demo chain.
pub fn servicer_sim(servicers: &[&KeyPair], app: &KeyPair, max_relays: u64, service_url: &str) -> SimHandle {
    start_servicer(ServicerSimConfig {
        auth_token: TOKEN.into(),
        height: SESSION_HEIGHT,
        service_url: service_url.into(),
        servicers: servicers.iter().map(|k| k.public_hex.clone()).collect(),
        chains: vec![CHAIN.into()],
        apps: vec![SimApp { public_key: app.public_hex.clone(), chains: vec![CHAIN.into()], max_relays }],
        ..Default::default()
    })
    .unwrap()
}

/// One HTTP exchange: (status, content type, body). Panics on transport errors.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, String) {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(body.to_vec()).unwrap();
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).allow_non_standard_methods(true).timeout_global(Some(Duration::from_secs(10))).build().into();
    let mut response = agent.run(request).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = response.body_mut().read_to_string().unwrap_or_else(|e| panic!("{method} {url} body: {e}"));
    (status, content_type, text)
}

pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into()
}

/// What happened to one relay sent to meshd.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// 200 with a valid servicer signature over the response.
    Served(String),
    /// Any other HTTP answer.
    Refused(u16, String),
    /// No HTTP answer (connection refused or cut, timeout).
    NoAnswer(String),
}

pub fn send(agent: &ureq::Agent, url: &str, relay: &Relay, servicer: &KeyPair) -> Sent {
    let body = wire_json(relay);
    let mut response = match agent.post(url).header("Content-Type", "application/json").send(&body) {
        Ok(r) => r,
        Err(e) => return Sent::NoAnswer(e.to_string()),
    };
    let status = response.status().as_u16();
    let text = match response.body_mut().read_to_string() {
        Ok(t) => t,
        Err(e) => return Sent::NoAnswer(e.to_string()),
    };
    if status != 200 {
        return Sent::Refused(status, text);
    }
    let v: serde_json::Value = serde_json::from_str(&text).expect("200 body is JSON");
    let digest = response_hash(v["response"].as_str().unwrap(), &relay.proof.hash_hex());
    assert!(verify_hex(&servicer.public_hex, &digest, v["signature"].as_str().unwrap()), "200 with a bad signature: {text}");
    Sent::Served(relay.proof.hash_hex())
}

pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
