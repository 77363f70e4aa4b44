//! The queue under hostile conditions (README "Durability guarantees"): notifies proven by the
//! servicer's answer shape, one daemon per queue, a data dir that vanishes, a damaged queue
//! file, exit codes that tell systemd what to do, and bounded reads of every file meshd reads.

mod common;

use std::time::Duration;

use common::{agent, send, wait_until, Sent, Stack};
use meshd::sim::SimControl;
use serde_json::json;

fn set_notify_failure(stack: &Stack, status: u16) {
    stack.servicer.lock().unwrap().control(&SimControl { fail_notify_status: Some(status), ..Default::default() }).unwrap();
}

fn pending(stack: &Stack) -> String {
    stack.queue_cli(&["stats"])
}

#[test]
fn a_notify_answered_200_with_garbage_is_not_delivered() {
    let mut stack = Stack::new("garbage200", 10_000_000, json!({"servicer_retry_wait_min": 10, "servicer_retry_wait_max": 200}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 1));
    // A proxy in front of the servicer answers every notify `200 text/plain "simulated failure"`.
    set_notify_failure(&stack, 200);
    for i in 0..3 {
        assert!(matches!(send(&agent, &stack.url(), &stack.relay(10 + i), &stack.servicer_key), Sent::Served(_)));
    }
    // meshd tried (the proxy saw the notifies) …
    assert!(
        wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().forced_failures >= 3),
        "{:?}\n{}",
        stack.servicer.lock().unwrap().stats(),
        stack.log_tail()
    );
    std::thread::sleep(Duration::from_millis(300));
    // … and kept every relay, saying why.
    let stats = pending(&stack);
    assert!(stats.contains("pending      3"), "{stats}\n{}", stack.log_tail());
    assert!(stack.log_text().contains("HTTP 200 but a body that is not JSON"), "{}", stack.log_tail());
    // The real servicer answers again: all three are delivered.
    set_notify_failure(&stack, 0);
    assert!(
        wait_until(Duration::from_secs(30), || stack.servicer.lock().unwrap().stats().accepted_total == 4),
        "{:?}\n{}",
        stack.servicer.lock().unwrap().stats(),
        stack.log_tail()
    );
    assert!(wait_until(Duration::from_secs(10), || pending(&stack).contains("pending      0")));
}
