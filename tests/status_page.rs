//! The status page in headless Chromium (issue D). Needs Debian's chromium and the
//! playwright-core package under tests/status/, so it is `#[ignore]`d in the plain
//! `cargo test` run and run by `tests/status_page.sh`, which installs both first.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{agent, send, wait_until, Sent, Stack};
use serde_json::json;

#[test]
#[ignore = "needs chromium and tests/status/node_modules: run tests/status_page.sh"]
fn status_page_shows_live_data_in_headless_chromium() {
    let mut stack = Stack::new("status-page", 1_000, json!({"metrics_moniker": "fra-mesh-1"}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    for i in 0..4 {
        assert!(matches!(send(&agent, &stack.url(), &stack.relay(1 + i), &stack.servicer_key), Sent::Served(_)));
    }
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 4));

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let screenshot = root.join("target/status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut node = Command::new("node")
        .arg(root.join("tests/status/check.mjs"))
        .arg(format!("http://127.0.0.1:{}/status", stack.port))
        .arg("demo-mesh-token")
        .arg(&screenshot)
        .current_dir(root.join("tests/status"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (Node.js >= 18 is needed)");
    let mut stdout = BufReader::new(node.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let shown: u64 = line.trim().strip_prefix("READY served=").unwrap_or_else(|| panic!("unexpected from check.mjs: {line:?}")).parse().unwrap();
    assert_eq!(shown, 4, "the page shows what meshd served");

    // Serve three more while the page is open: it must show 7 without a reload.
    for i in 0..3 {
        assert!(matches!(send(&agent, &stack.url(), &stack.relay(100 + i), &stack.servicer_key), Sent::Served(_)));
    }
    let mut stdin = node.stdin.take().unwrap();
    writeln!(stdin, "EXPECT 7").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let status = node.wait().unwrap();
    assert!(status.success(), "check.mjs failed ({status}); last line {line:?}\n{}", stack.log_tail());
    assert_eq!(line.trim(), "OK");
    let png = std::fs::read(&screenshot).expect("a screenshot was saved");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot at {}", screenshot.display());
    println!("screenshot: {}", screenshot.display());
}
