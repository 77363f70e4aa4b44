//! Secrets and private addresses never leave meshd (docs/deploy.md "What never leaves meshd").
//!
//! A servicer that refuses meshd's token echoes it in its 401 body, as pocket-core does
//! (`"wrong authtoken: " + token`; the servicer simulator does the same). The token must not
//! reach the log, the states API, the status JSON, the relay client's answer, or the LMDB
//! files; a servicer URL (and its userinfo) must not reach a relay client.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{http, send, wait_until, Sent, Stack};
use serde_json::json;

const STALE_TOKEN: &str = "stale-token-after-restart";
const MESH_TOKEN: &str = "demo-mesh-token";

fn write_servicer_token(dir: &Path, token: &str) {
    let file = json!({"Value": token, "Issued": "2024-01-01T00:00:00Z"});
    std::fs::write(dir.join("auth/servicer.json"), file.to_string()).unwrap();
}

/// Every file under `dir` (recursively) except `skip`, concatenated as lossy text.
fn files_text(dir: &Path, skip: &Path) -> String {
    let mut out = String::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path != skip {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn a_token_echoing_401_reaches_no_log_api_page_answer_or_database() {
    let mut stack = Stack::new("secrets-401", 1_000, json!({}));
    write_servicer_token(&stack.dir, STALE_TOKEN);
    stack.start_meshd_with(&[], &[("RUST_LOG", Some("debug"))]);
    let status_url = format!("http://127.0.0.1:{}/v1/private/mesh/status", stack.port);
    let states_url = format!("http://127.0.0.1:{}/v1/private/mesh/states", stack.port);

    // The check loop has seen the 401 (its echo is quoted, masked) and the unhealthy state
    // was recorded.
    let seen = wait_until(Duration::from_secs(20), || {
        let (_, _, status) = http("GET", &status_url, &[("Authorization", MESH_TOKEN)], b"");
        let (_, _, states) = http("GET", &states_url, &[("Authorization", MESH_TOKEN)], b"");
        status.contains("wrong authtoken: ") && states.contains("SERVICER_UNHEALTHY")
    });
    let (_, _, status) = http("GET", &status_url, &[("Authorization", MESH_TOKEN)], b"");
    assert!(seen, "no 401 on the status JSON: {status}\n{}", stack.log_tail());

    let agent = common::agent(Duration::from_secs(10));
    let answer = match send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key) {
        Sent::Refused(_, body) => body,
        other => panic!("relay through a servicer that refuses meshd's token: {other:?}"),
    };
    let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(error["error"], json!({"code": 1, "codespace": "sdk", "message": "pocket node is currently unavailable"}), "{answer}");

    let (_, _, states) = http("GET", &states_url, &[("Authorization", MESH_TOKEN)], b"");
    let (_, _, status) = http("GET", &status_url, &[("Authorization", MESH_TOKEN)], b"");
    stack.signal("TERM");
    let exited = wait_until(Duration::from_secs(20), || stack.meshd.as_mut().unwrap().try_wait().unwrap().is_some());
    assert!(exited, "meshd did not stop on SIGTERM:\n{}", stack.log_tail());
    let log = stack.log_text();
    assert!(log.contains("wrong authtoken: "), "the 401 was not logged at all:\n{}", stack.log_tail());
    let stored = files_text(&stack.dir.join("data"), &stack.dir.join("auth/servicer.json"));
    assert!(stored.contains("wrong authtoken: "), "the unhealthy state was not stored in LMDB");

    for (place, text) in [("log", &log), ("states API", &states), ("status JSON", &status), ("relay answer", &answer), ("LMDB files", &stored)] {
        assert_eq!(count(text, STALE_TOKEN), 0, "the token is in the {place}");
    }
}

#[test]
fn a_relay_client_never_sees_the_servicer_url_when_the_servicer_is_down() {
    let mut stack = Stack::new("secrets-down", 1_000, json!({}));
    // A servicer URL with userinfo on a port nothing listens on.
    let dead = meshd::demo::free_port().unwrap();
    let url = format!("http://meshuser:url-password-9@127.0.0.1:{dead}");
    let keys = json!([{"name": "down-node", "url": url, "keys": [stack.servicer_key.private_hex()]}]);
    std::fs::write(stack.dir.join("key/key.json"), keys.to_string()).unwrap();
    stack.start_meshd_with(&[], &[("RUST_LOG", Some("debug"))]);
    let status_url = format!("http://127.0.0.1:{}/v1/private/mesh/status", stack.port);
    let failed = wait_until(Duration::from_secs(20), || {
        let (_, _, status) = http("GET", &status_url, &[("Authorization", MESH_TOKEN)], b"");
        status.contains("\"last_error\":\"")
    });
    let (_, _, status) = http("GET", &status_url, &[("Authorization", MESH_TOKEN)], b"");
    assert!(failed, "the check never failed: {status}\n{}", stack.log_tail());

    let agent = common::agent(Duration::from_secs(10));
    let answer = match send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key) {
        Sent::Refused(_, body) => body,
        other => panic!("relay through a servicer that is down: {other:?}"),
    };
    let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(error["error"]["message"], "pocket node is currently unavailable", "{answer}");
    for needle in [dead.to_string().as_str(), "url-password-9", "meshuser", "/v1/private", "refused"] {
        assert!(!answer.contains(needle), "{needle:?} in the relay answer: {answer}");
    }
    assert!(!status.contains("url-password-9"), "{status}");
    stack.kill_meshd();
    assert_eq!(count(&stack.log_text(), "url-password-9"), 0, "the URL password is in the log");
}
