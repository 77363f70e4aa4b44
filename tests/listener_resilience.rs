//! The relay listener survives descriptor exhaustion: tiny_http's accept thread ends for good
//! on an accept error such as EMFILE; meshd must listen again once descriptors are free.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{agent, send, wait_until, Sent, Stack};
use serde_json::json;

#[test]
fn accept_errors_do_not_leave_meshd_deaf() {
    let mut stack = Stack::new("emfile", 1_000_000, json!({}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    drop(agent);

    // Leave meshd a handful of spare descriptors, then hold more connections than that.
    let pid = stack.meshd.as_ref().unwrap().id();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let limit = open + 6;
    let status = Command::new("prlimit").arg(format!("--pid={pid}")).arg(format!("--nofile={limit}:{limit}")).status().unwrap();
    assert!(status.success(), "prlimit failed");
    let held: Vec<TcpStream> = (0..40).filter_map(|_| TcpStream::connect(("127.0.0.1", stack.port)).ok()).collect();
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&stack.log).unwrap_or_default().contains("event=listener_failed")),
        "accepting past the descriptor limit should have failed:\n{}",
        stack.log_tail()
    );
    drop(held);

    // Descriptors are free again: meshd listens again and serves.
    let agent = common::agent(Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(20), || matches!(send(&agent, &stack.url(), &stack.relay(2), &stack.servicer_key), Sent::Served(_))),
        "meshd stayed deaf after the descriptors were released:\n{}",
        stack.log_tail()
    );
    assert!(std::fs::read_to_string(&stack.log).unwrap().contains("event=listener_restored"));
}
