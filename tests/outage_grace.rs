//! A servicer restart must not stop a region's income: while the servicer node's checks fail,
//! relays of sessions meshd already cached (with budget left) are still served for
//! `servicer_outage_grace` seconds after the last healthy check, uncached sessions are refused,
//! and everything served in the meantime is notified once the servicer is back.

mod common;

use std::time::{Duration, Instant};

use common::{agent, launch_meshd, send, temp_dir, wait_until, Sent};
use meshd::client::RelayClient;
use meshd::demo::{demo_keys, free_port, write_datadir, CHAIN, SESSION_HEIGHT, TOKEN};
use meshd::protocol::{KeyPair, Payload, Relay};
use meshd::sim::{start_chain, start_servicer, ServicerSimConfig, SimApp, SimMode};
use serde_json::json;

const GRACE_SECS: u64 = 4;

fn relay(client: &RelayClient, servicer: &KeyPair, entropy: i64) -> Relay {
    let payload =
        Payload { data: format!(r#"{{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":{entropy}}}"#), method: "POST".into(), ..Default::default() };
    client.build(&servicer.public_hex, CHAIN, SESSION_HEIGHT, SESSION_HEIGHT, entropy, payload)
}

#[test]
fn cached_sessions_are_served_through_a_servicer_restart_for_the_grace_only() {
    let (app_a, client_key, servicer_key) = demo_keys();
    let app_b = KeyPair::from_seed(&[9; 32]);
    let dir = temp_dir("outage-grace");
    let chain = start_chain(Default::default()).unwrap();
    let port = free_port().unwrap();
    let sim = start_servicer(ServicerSimConfig {
        auth_token: TOKEN.into(),
        height: SESSION_HEIGHT,
        service_url: format!("http://127.0.0.1:{port}"),
        servicers: vec![servicer_key.public_hex.clone()],
        chains: vec![CHAIN.into()],
        apps: [&app_a, &app_b].iter().map(|a| SimApp { public_key: a.public_hex.clone(), chains: vec![CHAIN.into()], max_relays: 10_000 }).collect(),
        ..Default::default()
    })
    .unwrap();
    write_datadir(&dir, port, &sim.url(), &chain.url(), &servicer_key, &json!({"servicer_outage_grace": GRACE_SECS})).unwrap();
    let log = dir.join("meshd.log");
    let mut meshd = launch_meshd(&dir, &log, port);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let url = format!("http://127.0.0.1:{port}/v1/client/relay");
    let http = agent(Duration::from_secs(10));
    let a = RelayClient::new(app_a, client_key.clone());
    let b = RelayClient::new(app_b, client_key);
    let mut served = Vec::new();
    match send(&http, &url, &relay(&a, &servicer_key, 1), &servicer_key) {
        Sent::Served(hash) => served.push(hash),
        other => panic!("healthy servicer: {other:?}\n{}", log_text()),
    }

    // The servicer restarts: its check now says it is starting, which closes the gate at once.
    sim.set_mode(SimMode::Starting);
    let outage_started = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || log_text().contains("event=node_unhealthy")), "gate never closed:\n{}", log_text());

    // Within the grace: the cached session of app A is served, app B's uncached one refused.
    match send(&http, &url, &relay(&a, &servicer_key, 2), &servicer_key) {
        Sent::Served(hash) => served.push(hash),
        other => panic!("a cached session must be served during the grace: {other:?}\n{}", log_text()),
    }
    match send(&http, &url, &relay(&b, &servicer_key, 3), &servicer_key) {
        Sent::Refused(400, body) => assert!(body.contains("unable to retrieve synced status"), "{body}"),
        other => panic!("an uncached session must be refused during an outage: {other:?}"),
    }

    // After the grace the cached session is refused too, with the gate's reason.
    let mut entropy = 10;
    let refused_at = loop {
        assert!(outage_started.elapsed() < Duration::from_secs(GRACE_SECS + 10), "still served long after the grace");
        match send(&http, &url, &relay(&a, &servicer_key, entropy), &servicer_key) {
            Sent::Served(hash) => served.push(hash),
            Sent::Refused(400, body) if body.contains("unable to retrieve synced status") => break outage_started.elapsed(),
            other => panic!("unexpected answer during the outage: {other:?}"),
        }
        entropy += 1;
        std::thread::sleep(Duration::from_millis(200));
    };
    // The last healthy check was at most one check interval (1 s) before the outage began.
    assert!(refused_at >= Duration::from_secs(GRACE_SECS - 2), "refused after {refused_at:?}, before the grace of {GRACE_SECS} s");

    // The servicer is back: every relay served during the outage is notified and accepted.
    sim.set_mode(SimMode::Ok);
    assert!(
        wait_until(Duration::from_secs(20), || sim.stats().accepted_total as usize == served.len()),
        "accepted {} of {} served:\n{}",
        sim.stats().accepted_total,
        served.len(),
        log_text()
    );
    let accepted = sim.stats().accepted_proofs.unwrap_or_default();
    for hash in &served {
        assert!(accepted.contains(hash), "relay {hash} served during the outage was not claimed");
    }
    let _ = meshd.kill();
    let _ = meshd.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
