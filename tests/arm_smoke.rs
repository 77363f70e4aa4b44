//! Issue E: the aarch64 musl binary, run under qemu-user, serves signed relays, survives a
//! SIGKILL, and drains its queue after restart. Run by tests/arm_smoke.sh, which builds the
//! emulation variant (LMDB without robust mutexes: qemu-user lacks get_robust_list) and sets
//! MESHD_BIN / MESHD_RUNNER; without them there is nothing to test, so the test is ignored.

mod common;

use std::time::Duration;

use common::{agent, send, wait_until, Sent, Stack};
use meshd::sim::SimControl;
use serde_json::json;

#[test]
#[ignore = "needs an aarch64 build and qemu-aarch64-static: run tests/arm_smoke.sh"]
fn aarch64_binary_serves_signs_survives_sigkill_and_drains() {
    assert!(std::env::var("MESHD_BIN").is_ok(), "set MESHD_BIN to the aarch64 binary (tests/arm_smoke.sh does)");
    let mut stack = Stack::new("arm", 1_000_000, json!({"relay_queue_map_size": 256, "servicer_rpc_timeout": 5000}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(30));
    // Signed relays, verified against the servicer key by `send`.
    for i in 0..5 {
        let sent = send(&agent, &stack.url(), &stack.relay(10 + i), &stack.servicer_key);
        assert!(matches!(sent, Sent::Served(_)), "relay {i}: {sent:?}\n{}", stack.log_tail());
    }
    assert!(wait_until(Duration::from_secs(60), || stack.servicer.lock().unwrap().stats().accepted_total == 5), "{}", stack.log_tail());

    // Notifies now fail: five more relays stay queued, then meshd is SIGKILLed.
    stack.servicer.lock().unwrap().control(&SimControl { fail_notify_status: Some(503), ..Default::default() }).unwrap();
    for i in 0..5 {
        let sent = send(&agent, &stack.url(), &stack.relay(100 + i), &stack.servicer_key);
        assert!(matches!(sent, Sent::Served(_)), "relay {i}: {sent:?}\n{}", stack.log_tail());
    }
    stack.kill_meshd();
    assert_eq!(stack.servicer.lock().unwrap().stats().accepted_total, 5);

    // Restarted, with the servicer healthy again: the queue drains.
    stack.servicer.lock().unwrap().control(&SimControl { fail_notify_status: Some(0), ..Default::default() }).unwrap();
    stack.start_meshd();
    assert!(
        wait_until(Duration::from_secs(90), || stack.servicer.lock().unwrap().stats().accepted_total == 10),
        "queued relays must drain after the restart: {}\n{}",
        stack.servicer.lock().unwrap().stats().accepted_total,
        stack.log_tail()
    );
    println!("aarch64 smoke: 10 relays served and signed, 5 survived SIGKILL in the queue, all 10 accepted by the servicer");
}
