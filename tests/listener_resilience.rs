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

#[test]
fn stalled_uploads_do_not_starve_the_relay_path() {
    use std::io::Write;
    let mut stack = Stack::new("stall", 1_000_000, json!({}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    // More stalled uploads than the blocking pool has threads (32): each announces a 4 KiB body
    // (larger than tiny_http buffers itself) and sends only part of it.
    let stalled: Vec<TcpStream> = (0..48)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", stack.port)).ok()?;
            let head = "POST /v1/client/relay HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"payload\":";
            s.write_all(head.as_bytes()).ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(stalled.len(), 48);
    std::thread::sleep(Duration::from_millis(300));
    // Relays (which need chain calls, queue commits and notifies) still go through.
    let started = std::time::Instant::now();
    for i in 0..5 {
        let sent = send(&agent, &stack.url(), &stack.relay(100 + i), &stack.servicer_key);
        assert!(matches!(sent, Sent::Served(_)), "relay {i} while uploads stall: {sent:?}\n{}", stack.log_tail());
    }
    assert!(started.elapsed() < Duration::from_secs(5), "relays took {:?} while uploads stalled", started.elapsed());
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 6));
    drop(stalled);
}
