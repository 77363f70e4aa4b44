//! The queue under hostile conditions (docs/relay-path.md "Durability guarantees"): notifies proven by the
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

/// Run `meshd <args>` to its end (bounded: killed after 30 s); (exit code, stderr).
fn meshd(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn a_second_daemon_on_the_same_data_dir_exits_naming_the_first() {
    let mut stack = Stack::new("twodaemons", 10_000_000, json!({}));
    stack.start_meshd();
    let first = stack.meshd.as_ref().unwrap().id();
    let (code, stderr) = meshd(&[os("start"), os("--datadir"), stack.dir.as_os_str()]);
    assert_eq!(code, Some(meshd::exit_code::ENVIRONMENT), "{stderr}");
    assert!(stderr.contains(&format!("pid {first}")) && stderr.contains("meshd.lock"), "{stderr}");
    // The first one still serves, and the queue commands still work next to it.
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    assert!(pending(&stack).contains("pending"));
    assert!(stack.queue_cli(&["dead"]).contains("0 dead letter(s)"));
}

#[test]
fn queue_stats_on_a_wrong_path_creates_nothing() {
    // A valid data dir whose queue was never created (e.g. a typo in relay_queue_dir).
    let stack = Stack::new("wrongpath", 10_000_000, json!({}));
    let dir = stack.dir.clone();
    assert!(!dir.join("data").exists());
    let (code, stderr) = meshd(&[os("queue"), os("stats"), os("--datadir"), dir.as_os_str()]);
    assert_eq!(code, Some(meshd::exit_code::CONFIG), "{stderr}");
    assert!(stderr.contains("no relay queue here"), "{stderr}");
    assert!(!dir.join("data/queue/data.mdb").exists() && !dir.join("data").exists(), "stats created a queue");
    let (code, stderr) = meshd(&[os("queue"), os("replay-dead"), os("--datadir"), dir.as_os_str()]);
    assert_eq!(code, Some(meshd::exit_code::CONFIG), "{stderr}");
    assert!(!dir.join("data").exists(), "replay-dead created a queue");
}

#[test]
fn a_removed_data_dir_stops_acknowledging_and_exits_for_a_restart() {
    let mut stack = Stack::new("vanish", 10_000_000, json!({}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1), &stack.servicer_key), Sent::Served(_)));
    std::fs::remove_dir_all(stack.dir.join("data")).unwrap();
    // No relay is acknowledged into the unlinked file: the next one gets the fixed 503.
    match send(&agent, &stack.url(), &stack.relay(2), &stack.servicer_key) {
        Sent::Refused(503, body) => assert!(body.contains("queue directory was removed or replaced"), "{body}"),
        other => panic!("expected 503, got {other:?}\n{}", stack.log_tail()),
    }
    let mut child = stack.meshd.take().unwrap();
    let exited = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(exited, "meshd kept running on a removed data dir\n{}", stack.log_tail());
    assert_eq!(status.code(), Some(meshd::exit_code::ENVIRONMENT), "{}", stack.log_tail());
    assert!(stack.log_text().contains("event=fatal"), "{}", stack.log_tail());
}

/// A queue with a few relays in it, written while no daemon runs.
fn seed_queue(stack: &Stack, n: i64) {
    use meshd::queue::{Durability, Store, WriteOp, WriteResult};
    let store = Store::open(&stack.dir.join("data/queue"), 64, Durability::Sync).unwrap();
    let ops: Vec<WriteOp> = (0..n).map(|i| WriteOp::Append(Box::new(stack.queued_relay(500 + i)))).collect();
    assert!(store.apply(&ops).unwrap().iter().all(|r| matches!(r, WriteResult::Appended(_))));
    store.close();
}

#[test]
fn a_truncated_queue_file_is_named_and_refused_not_a_sigbus() {
    let stack = Stack::new("truncated", 10_000_000, json!({}));
    seed_queue(&stack, 40);
    let file = stack.dir.join("data/queue/data.mdb");
    let len = std::fs::metadata(&file).unwrap().len();
    let page = 4096u64;
    assert!(len > 8 * page, "the seeded queue spans pages ({len} bytes)");
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(2 * page).unwrap();
    for args in [vec![os("start"), os("--datadir"), stack.dir.as_os_str()], vec![os("queue"), os("stats"), os("--datadir"), stack.dir.as_os_str()]] {
        let (code, stderr) = meshd(&args);
        assert_eq!(code, Some(meshd::exit_code::QUEUE_DAMAGED), "{args:?}: {stderr}");
        assert!(stderr.contains("data/queue/data.mdb") && stderr.contains("truncated"), "{stderr}");
    }
    // Overwritten meta pages are named too.
    std::fs::write(&file, vec![0x5Au8; 4 * page as usize]).unwrap();
    let (code, stderr) = meshd(&[os("queue"), os("dead"), os("--datadir"), stack.dir.as_os_str()]);
    assert_eq!(code, Some(meshd::exit_code::QUEUE_DAMAGED), "{stderr}");
    assert!(stderr.contains("data.mdb") && stderr.contains("magic 0x5a5a5a5a"), "{stderr}");
}

/// A board without a real-time clock boots in 1970 or earlier until NTP sets the time. hyper's
/// `Date` formatting would panic (and the release build abort) on the first connection:
/// meshd refuses to start instead, with the environment-fault code systemd retries. Needs
/// `faketime` (Debian's package; tests/run.sh installs it).
#[test]
fn a_clock_before_1970_is_refused_at_start_not_an_abort() {
    let stack = Stack::new("clock1969", 1_000, json!({}));
    let mut child = std::process::Command::new("faketime")
        .arg("1969-06-01 00:00:00")
        .arg(env!("CARGO_BIN_EXE_meshd"))
        .arg("start")
        .arg("--datadir")
        .arg(&stack.dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("faketime is installed (apt-get install faketime; tests/run.sh does it)");
    // Bounded: a meshd that started anyway is killed after 15 s (and the test fails).
    let exited = wait_until(Duration::from_secs(15), || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(exited, "meshd started with a clock before 1970\n{stderr}");
    assert_eq!(output.status.code(), Some(meshd::exit_code::ENVIRONMENT), "{:?}\n{stderr}", output.status);
    assert!(stderr.contains("wall clock reads before 1970"), "{stderr}");
}

/// `meshd queue salvage` on a queue file damaged two ways (pages overwritten in the middle, the
/// file truncated): the relays on readable pages are copied into a fresh queue that meshd
/// opens, the report says what happened, and the damaged file is left byte for byte as it was.
#[test]
fn a_damaged_queue_is_salvaged_into_a_fresh_queue() {
    use meshd::queue::{Durability, OpenMode, QueuedRelay, Store};
    const SEEDED: i64 = 200;
    for case in ["overwritten", "truncated"] {
        let stack = Stack::new(&format!("salvage-{case}"), 10_000_000, json!({}));
        seed_queue(&stack, SEEDED);
        let seeded: std::collections::HashSet<[u8; 32]> = (0..SEEDED).map(|i| stack.queued_relay(500 + i).proof_hash).collect();
        let file = stack.dir.join("data/queue/data.mdb");
        let mut bytes = std::fs::read(&file).unwrap();
        let page = 4096usize;
        let pages = bytes.len() / page;
        assert!(pages > 24, "the seeded queue spans many pages ({pages})");
        if case == "overwritten" {
            // Two pages in the middle (never the meta pages 0/1) become garbage.
            let first = pages / 2;
            for (i, b) in bytes[first * page..(first + 2) * page].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31) ^ 0xA5;
            }
            std::fs::write(&file, &bytes).unwrap();
        } else {
            std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len((pages * 2 / 3 * page) as u64).unwrap();
        }
        let damaged = std::fs::read(&file).unwrap();
        let to = stack.dir.join("data/queue.salvaged");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshd"))
            .args(["queue", "salvage", "--datadir"])
            .arg(&stack.dir)
            .arg("--to")
            .arg(&to)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let code = out.status.code();
        // 0: the walk ended (possibly at damage); 3 with the report: the walk process died.
        assert!(
            code == Some(0) || (code == Some(meshd::exit_code::QUEUE_DAMAGED) && stdout.contains("walk process died")),
            "{case}: {code:?}\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("pending relays") && stdout.contains(" copied") && stdout.contains("next steps"), "{case}: {stdout}");
        if case == "truncated" {
            assert!(stdout.contains("shorter than its meta page claims"), "{stdout}");
        }
        assert!(std::fs::read(&file).unwrap() == damaged, "{case}: the damaged file was modified");
        assert!(!stack.dir.join("data/queue.salvaged.source-copy").exists(), "the scratch copy is removed");

        // The salvaged queue is a valid meshd queue holding seeded relays only.
        let store = Store::open_as(&to, 64, Durability::Sync, OpenMode::ReadOnly).unwrap_or_else(|e| panic!("{case}: {e}\n{stdout}"));
        let recovered = store.stats().unwrap().pending;
        assert!(recovered > 0, "{case}: nothing recovered\n{stdout}\n{stderr}");
        assert!(stdout.contains(&format!("pending relays in the new queue: {recovered}\n")), "{case}: {recovered}\n{stdout}");
        let (due, _) = store.due(&[stack.queued_relay(500).servicer_address], &Default::default(), u64::MAX, SEEDED as usize + 1).unwrap();
        assert_eq!(due.len() as u64, recovered);
        for (_, record) in &due {
            let record: &QueuedRelay = record.as_ref().unwrap();
            assert!(seeded.contains(&record.proof_hash), "{case}: a relay that was never queued");
        }
        store.close();
        eprintln!("{case}: {recovered} of {SEEDED} relays salvaged\n{stdout}");

        // The swap the report describes: meshd's own commands read the salvaged queue.
        std::fs::rename(stack.dir.join("data/queue"), stack.dir.join("data/queue.damaged")).unwrap();
        std::fs::rename(&to, stack.dir.join("data/queue")).unwrap();
        let stats = stack.queue_cli(&["stats"]);
        assert!(stats.contains(&format!("pending      {recovered}\n")), "{case}: {stats}");
    }
}
