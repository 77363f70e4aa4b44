//! `meshd demo`: one command that shows meshd working end to end on loopback. It starts the
//! chain and servicer simulators, writes a throw-away data dir with public test keys, runs the
//! daemon, sends signed relays (plus a duplicate and a tampered one), verifies every response
//! signature, and waits until the servicer simulator has re-validated and accepted each relay.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{wire_json, RelayClient};
use crate::protocol::keys::verify_hex;
use crate::protocol::relay::response_hash;
use crate::protocol::{KeyPair, Payload};
use crate::sim::{start_chain, start_servicer, ChainSimConfig, ServicerSimConfig, SimApp};

pub const CHAIN: &str = "0021";
pub const SESSION_HEIGHT: i64 = 101;
pub const TOKEN: &str = crate::config::audit::PUBLISHED_TOKENS[0];
/// The mesh token of the demo data dir (published: `check-config` flags it).
pub const MESH_TOKEN: &str = crate::config::audit::PUBLISHED_TOKENS[1];

/// Public test keys (seeds of repeated bytes, as in the protocol reference vectors).
pub fn demo_keys() -> (KeyPair, KeyPair, KeyPair) {
    (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]), KeyPair::from_seed(&[3; 32]))
}

pub fn free_port() -> Result<u16, String> {
    let socket = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free loopback port: {e}"))?;
    socket.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("JSON value")).map_err(|e| format!("{}: {e}", path.display()))
}

/// Write a runnable meshd data dir pointing at `servicer_url` and `chain_url`; `extra` config
/// keys (a JSON object) override the defaults written here. Tests and benchmarks use it too.
pub fn write_datadir(dir: &Path, rpc_port: u16, servicer_url: &str, chain_url: &str, servicer: &KeyPair, extra: &serde_json::Value) -> Result<(), String> {
    let token = json!({"Value": TOKEN, "Issued": "2024-01-01T00:00:00Z"});
    let mut config = json!({
        "rpc_port": rpc_port.to_string(),
        "listen_address": "127.0.0.1",
        "pocket_prometheus_port": free_port()?.to_string(),
        "node_check_interval": 1,
        "log_level": "*:warn",
        "servicer_retry_wait_min": 10,
        "servicer_retry_wait_max": 200,
    });
    if let (Some(base), Some(more)) = (config.as_object_mut(), extra.as_object()) {
        base.extend(more.clone());
    }
    write_json(&dir.join("config.json"), &config)?;
    write_json(&dir.join("key/key.json"), &json!([{"name": "demo-servicer", "url": servicer_url, "keys": [servicer.private_hex()]}]))?;
    write_json(&dir.join("chains.json"), &json!([{"id": CHAIN, "url": chain_url}]))?;
    write_json(&dir.join("auth/servicer.json"), &token)?;
    write_json(&dir.join("auth/mesh.json"), &json!({"Value": MESH_TOKEN, "Issued": "2024-01-01T00:00:00Z"}))
}

pub fn run(relays: usize) -> Result<i32, String> {
    let _ = simple_logger::SimpleLogger::new().with_level(log::LevelFilter::Warn).env().init();
    let (app_key, client_key, servicer_key) = demo_keys();
    let dir: PathBuf = std::env::temp_dir().join(format!("meshd-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let chain = start_chain(ChainSimConfig::default()).map_err(|e| format!("chain simulator: {e}"))?;
    let rpc_port = free_port()?;
    let meshd_url = format!("http://127.0.0.1:{rpc_port}");
    let servicer = start_servicer(ServicerSimConfig {
        auth_token: TOKEN.into(),
        height: SESSION_HEIGHT,
        service_url: meshd_url.clone(),
        servicers: vec![servicer_key.public_hex.clone()],
        chains: vec![CHAIN.into()],
        apps: vec![SimApp { public_key: app_key.public_hex.clone(), chains: vec![CHAIN.into()], max_relays: 25_000 }],
        ..Default::default()
    })
    .map_err(|e| format!("servicer simulator: {e}"))?;
    println!("chain simulator     {}", chain.url());
    println!("servicer simulator  {}  (re-validates every notified relay like a servicer)", servicer.url());
    write_datadir(&dir, rpc_port, &servicer.url(), &chain.url(), &servicer_key, &json!({}))?;
    println!("meshd data dir      {}", dir.display());

    let addr = start_in_thread(&dir)?;
    println!("meshd               http://{addr}  serving servicer {}\n", servicer_key.address_hex);

    let client = RelayClient::new(app_key, client_key);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().into();
    let url = format!("{meshd_url}/v1/client/relay");
    let send = |body: &str| -> Result<(u16, String), String> {
        let mut response = agent.post(&url).header("Content-Type", "application/json").send(body).map_err(|e| e.to_string())?;
        let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        Ok((response.status().as_u16(), text))
    };

    let mut verified = 0;
    let mut first = None;
    for i in 0..relays {
        let payload = Payload {
            data: format!(r#"{{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":{}}}"#, i + 1),
            method: "POST".into(),
            ..Default::default()
        };
        let relay = client.build(&servicer_key.public_hex, CHAIN, SESSION_HEIGHT, SESSION_HEIGHT, 7_226_337_963_384_726 + i as i64, payload);
        let body = wire_json(&relay);
        if i == 0 {
            // The exact request, so a reader can replay it with curl or compare with pocket-js.
            println!("request of relay 1: POST {url}  (Content-Type: application/json)\n{body}\n");
        }
        let (status, text) = send(&body)?;
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let response = answer["response"].as_str().unwrap_or("");
        let signature = answer["signature"].as_str().unwrap_or("");
        let digest = response_hash(response, &relay.proof.hash_hex());
        let ok = status == 200 && verify_hex(&servicer_key.public_hex, &digest, signature);
        verified += usize::from(ok);
        println!("relay {:>3}  HTTP {status}  {}  signature {}", i + 1, response, if ok { "verified" } else { "INVALID" });
        first.get_or_insert(body);
    }

    let mut rejections_ok = true;
    if let Some(body) = &first {
        let (status, text) = send(body)?;
        let dup = status == 400 && text.contains("\"code\":37");
        rejections_ok &= dup;
        println!("duplicate of relay 1  HTTP {status}  {}", text.trim());
        let tampered = body.replacen("eth_blockNumber", "eth_chainId", 1);
        let (status, text) = send(&tampered)?;
        let t = status == 400 && text.contains("\"code\":74");
        rejections_ok &= t;
        println!("tampered relay        HTTP {status}  {}", text.trim());
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stats = servicer.stats();
    while (stats.accepted_total as usize) < verified && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        stats = servicer.stats();
    }
    println!();
    println!("served and signed    {verified}/{relays}");
    println!("notified + accepted  {} (servicer simulator re-validated each one)", stats.accepted_total);
    println!("servicer rejections  {:?}", stats.rejections);
    let ok = verified == relays && stats.accepted_total as usize == relays && stats.rejections.is_empty() && rejections_ok;
    println!("{}", if ok { "demo OK" } else { "demo FAILED" });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if ok { 0 } else { 1 })
}

/// Load the data dir `dir` and run meshd on its own thread (the demos); returns the relay
/// listener's address once the daemon reports ready (every listener is bound by then).
pub(crate) fn start_in_thread(dir: &Path) -> Result<std::net::SocketAddr, String> {
    let loaded = crate::config::load(dir, None).map_err(|e| format!("demo config: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("meshd".into())
        .spawn(move || {
            let options = crate::daemon::StartOptions {
                simulate_relay: false,
                queue: None,
                on_ready: Some(Box::new(move |addr| {
                    let _ = ready_tx.send(addr);
                })),
            };
            if let Err(e) = crate::daemon::run(loaded, options) {
                eprintln!("meshd: {e}");
            }
        })
        .map_err(|e| e.to_string())?;
    ready_rx.recv_timeout(Duration::from_secs(15)).map_err(|_| "meshd did not become ready within 15 s".to_string())
}
