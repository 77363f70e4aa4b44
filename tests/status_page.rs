//! The status page in headless Chromium. Needs Debian's chromium and the playwright-core
//! package under tests/status/, so it is `#[ignore]`d in the plain `cargo test` run and run by
//! `tests/status_page.sh`, which installs both first.
//!
//! meshd runs against the simulators and is driven through three states, each checked on the
//! page (header badge, state box, reasons) and saved as a screenshot under target/: healthy
//! (`status-page.png`), dead letters waiting (`status-dead-letters.png`: the servicer refuses
//! relays whose session fell out of its window) and servicer down (`status-servicer-down.png`:
//! the servicer simulator stops listening).

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
    let mut stack = Stack::new("status-page", 1_000, json!({"metrics_moniker": "fra-mesh-1", "node_check_interval": 1, "servicer_rpc_timeout": 1000}));
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
    let mut exchange = |command: &str, stdout: &mut BufReader<std::process::ChildStdout>| -> String {
        writeln!(stdin, "{command}").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    let shot = exchange("EXPECT 7", &mut stdout);
    assert_eq!(shot, "SHOT", "healthy state not shown as ok\n{}", stack.log_tail());

    // Dead letters: the servicer is away while three relays are served and comes back 40
    // blocks later, so it refuses them (75) and they are dead-lettered.
    stack.serve_relays_the_servicer_will_refuse(&agent, 700, 3);
    let dead_png = root.join("target/status-dead-letters.png");
    let shot =
        exchange(&format!("STATE degraded {} 3 dead letter(s) waiting|meshd queue replay-dead --datadir|pocketcore 75", dead_png.display()), &mut stdout);
    assert_eq!(shot, "SHOT", "dead letters not shown as degraded\n{}", stack.log_tail());

    // Servicer down: the simulator stops listening; its health checks fail.
    stack.servicer.lock().unwrap().pause();
    let down_png = root.join("target/status-servicer-down.png");
    let shot = exchange(&format!("STATE down {} no servicer node is healthy|servicer node demo-servicer unhealthy", down_png.display()), &mut stdout);
    assert_eq!(shot, "SHOT", "servicer down not shown as down\n{}", stack.log_tail());

    let line = exchange("DONE", &mut stdout);
    let status = node.wait().unwrap();
    assert!(status.success(), "check.mjs failed ({status}); last line {line:?}\n{}", stack.log_tail());
    assert_eq!(line.trim(), "OK");
    let png = std::fs::read(&screenshot).expect("a screenshot was saved");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot at {}", screenshot.display());
    for png in [&screenshot, &dead_png, &down_png] {
        let bytes = std::fs::read(png).expect("a screenshot was saved");
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "screenshot at {}", png.display());
        println!("screenshot: {}", png.display());
    }
}
