//! Issue B: a relay answered 200 is never lost and never double-counted — across SIGKILLs,
//! servicer outages (503, refused connections), a full queue, and corrupt records.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{agent, send, wait_until, Sent, Stack};
use meshd::queue::{Durability, Store, WriteOp, WriteResult};
use meshd::sim::{SimControl, SimMode};
use serde_json::json;

fn set_notify_failure(stack: &Stack, status: u16) {
    stack.servicer.lock().unwrap().control(&SimControl { fail_notify_status: Some(status), ..Default::default() }).unwrap();
}

#[test]
fn sigkill_under_load_with_a_flapping_servicer_loses_nothing() {
    sigkill_under_load_loses_nothing("sync");
}

/// With async durability the commit runs on the executor instead of the writer thread
/// (src/queue/writer.rs); a process crash must still lose no relay answered 200.
#[test]
fn sigkill_under_load_loses_nothing_with_async_durability() {
    sigkill_under_load_loses_nothing("async");
}

fn sigkill_under_load_loses_nothing(durability: &str) {
    // servicer_rpc_timeout: a notify caught by an outage mid-request gives up after 3 s, not the
    // 60 s default, so the drain check below stays short.
    let extra = json!({"servicer_retry_wait_min": 5, "servicer_retry_wait_max": 100, "servicer_rpc_timeout": 3000, "relay_durability": durability});
    let mut stack = Stack::new(&format!("crash-{durability}"), 10_000_000, extra);
    stack.start_meshd();
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    // Load: 6 clients, each bounded to 3000 relays and to the stop flag.
    let mut clients = Vec::new();
    for t in 0..6i64 {
        let (served, stop, url) = (served.clone(), stop.clone(), stack.url());
        let relays: Vec<_> = (0..3000).map(|i| stack.relay(1_000_000 * (t + 1) + i)).collect();
        let key = stack.servicer_key.clone();
        clients.push(std::thread::spawn(move || {
            let agent = agent(Duration::from_secs(3));
            for relay in relays {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match send(&agent, &url, &relay, &key) {
                    Sent::Served(proof) => served.lock().unwrap().push(proof),
                    Sent::NoAnswer(_) => std::thread::sleep(Duration::from_millis(20)),
                    Sent::Refused(..) => {}
                }
            }
        }));
    }

    // Servicer flapping: up (600 ms) → notifies answered 503 (300 ms) → refused connections
    // (300 ms) → up …, bounded in count and by the stop flag.
    let flapper = {
        let (servicer, stop) = (stack.servicer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut phase = 0u32;
            while !stop.load(Ordering::Relaxed) && phase < 300 {
                let hold = {
                    let mut s = servicer.lock().unwrap();
                    match phase % 3 {
                        0 => {
                            s.resume().unwrap();
                            s.control(&SimControl { fail_notify_status: Some(0), ..Default::default() }).unwrap();
                            600
                        }
                        1 => {
                            s.control(&SimControl { fail_notify_status: Some(503), ..Default::default() }).unwrap();
                            300
                        }
                        _ => {
                            s.pause();
                            300
                        }
                    }
                };
                phase += 1;
                std::thread::sleep(Duration::from_millis(hold));
            }
        })
    };

    // Five SIGKILLs at uneven moments, each followed by a restart on the same data dir.
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(900 + 170 * round));
        stack.kill_meshd();
        std::thread::sleep(Duration::from_millis(50));
        stack.start_meshd();
    }
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    flapper.join().unwrap();
    {
        let mut s = stack.servicer.lock().unwrap();
        s.resume().unwrap();
        s.set_mode(SimMode::Ok);
    }
    set_notify_failure(&stack, 0);

    let served: Vec<String> = served.lock().unwrap().clone();
    assert!(served.len() > 100, "the load should have been served for a while, got {}", served.len());
    let answered: HashSet<String> = served.iter().cloned().collect();
    assert_eq!(answered.len(), served.len(), "meshd answered 200 twice for one proof");

    let drained = wait_until(Duration::from_secs(90), || {
        let stats = stack.servicer.lock().unwrap().stats();
        let accepted: HashSet<String> = stats.accepted_proofs.unwrap_or_default().into_iter().collect();
        answered.is_subset(&accepted)
    });
    let stats = stack.servicer.lock().unwrap().stats();
    let accepted = stats.accepted_proofs.clone().unwrap_or_default();
    let accepted_set: HashSet<String> = accepted.iter().cloned().collect();
    let lost = answered.difference(&accepted_set).count();
    let dup = accepted.len() - accepted_set.len();
    let other_rejections: u64 = stats.rejections.iter().filter(|(code, _)| **code != 37).map(|(_, n)| n).sum();
    println!(
        "crash test ({durability}): answered_200={} accepted={} lost={lost} dup={dup} redelivered_answered_37={} other_rejections={other_rejections}",
        answered.len(),
        accepted.len(),
        stats.duplicates
    );
    assert!(drained, "not every served relay reached the servicer: lost={lost}\n{}", stack.log_tail());
    assert_eq!(lost, 0);
    assert_eq!(dup, 0, "the servicer counted a relay twice");
    assert_eq!(other_rejections, 0, "every notified relay must pass the servicer's re-validation: {:?}", stats.rejections);
    // Nothing is left behind once the servicer has everything.
    assert!(wait_until(Duration::from_secs(10), || stack.queue_cli(&["stats"]).contains("pending      0")), "{}", stack.queue_cli(&["stats"]));
}

#[test]
fn a_full_queue_answers_503_keeps_draining_and_recovers() {
    // A short servicer timeout: a notify caught mid-flight by the outage must not hang for the 60 s default.
    let mut stack = Stack::new("full", 10_000_000, json!({"relay_queue_map_size": 1, "servicer_rpc_timeout": 3000}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    // One relay while the servicer is up caches the session (meshd never serves a session the
    // servicer has not vouched for); its notify drains at once.
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(1_000_000), &stack.servicer_key), Sent::Served(_)));
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 1));
    // The servicer stays healthy for checks but answers every notify with 503.
    set_notify_failure(&stack, 503);
    let mut served = 0u32;
    let mut refusal = None;
    for i in 0..5000 {
        match send(&agent, &stack.url(), &stack.relay(i), &stack.servicer_key) {
            Sent::Served(_) => served += 1,
            Sent::Refused(status, body) => {
                refusal = Some((status, body));
                break;
            }
            Sent::NoAnswer(e) => panic!("meshd stopped answering: {e}\n{}", stack.log_tail()),
        }
    }
    let (status, body) = refusal.expect("a 1 MiB queue must fill up");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("queue is full"), "{body}");
    assert!(served > 50, "served {served} before the queue filled");
    let stats = stack.queue_cli(&["stats"]);
    assert!(stats.contains(&format!("pending      {served}")), "{stats}");

    set_notify_failure(&stack, 0);
    let drained = wait_until(Duration::from_secs(60), || stack.servicer.lock().unwrap().stats().accepted_total == u64::from(served) + 1);
    let stats = stack.servicer.lock().unwrap().stats();
    assert!(
        drained,
        "the queue did not drain after the servicer came back: served={served} accepted={} rejections={:?}\n{}\n{}",
        stats.accepted_total,
        stats.rejections,
        stack.queue_cli(&["stats"]),
        stack.log_tail()
    );
    let after = send(&agent, &stack.url(), &stack.relay(2_000_000), &stack.servicer_key);
    assert!(matches!(after, Sent::Served(_)), "{after:?}");
}

#[test]
fn a_corrupt_record_is_dead_lettered_and_the_rest_drain() {
    let mut stack = Stack::new("corrupt", 10_000_000, json!({}));
    let queue_dir = stack.dir.join("data/queue");
    let store = Store::open(&queue_dir, 64, Durability::Sync).unwrap();
    let address = meshd::protocol::address_of(&stack.servicer_key.public_bytes());
    let ops: Vec<WriteOp> = (0..3).map(|i| WriteOp::Append(Box::new(stack.queued_relay(500 + i)))).collect();
    assert!(store.apply(&ops).unwrap().iter().all(|r| matches!(r, WriteResult::Appended(_))));
    store.put_raw_pending(&meshd::queue::store::pending_key(&address, 1_000_000), b"\x07garbage").unwrap();
    store.close();

    stack.start_meshd();
    assert!(
        wait_until(Duration::from_secs(30), || stack.servicer.lock().unwrap().stats().accepted_total == 3),
        "the three good records must drain: {:?}\n{}",
        stack.servicer.lock().unwrap().stats(),
        stack.log_tail()
    );
    assert!(wait_until(Duration::from_secs(10), || stack.queue_cli(&["stats"]).contains("dead         1")));
    let dead = stack.queue_cli(&["dead"]);
    assert!(dead.contains("undecodable"), "{dead}");
    assert!(stack.queue_cli(&["stats"]).contains("pending      0"));
}

#[test]
fn refused_relays_are_dead_lettered_with_the_reason_and_can_be_replayed() {
    let mut stack = Stack::new("dead", 10_000_000, json!({}));
    stack.start_meshd();
    let agent = agent(Duration::from_secs(5));
    assert!(matches!(send(&agent, &stack.url(), &stack.relay(699), &stack.servicer_key), Sent::Served(_)));
    assert!(wait_until(Duration::from_secs(10), || stack.servicer.lock().unwrap().stats().accepted_total == 1));
    // The servicer comes back 40 blocks later: those relays are out of its sync window (75).
    stack.serve_relays_the_servicer_will_refuse(&agent, 700, 3);
    assert!(
        wait_until(Duration::from_secs(30), || stack.queue_cli(&["stats"]).contains("dead         3")),
        "{}\n{}",
        stack.queue_cli(&["stats"]),
        stack.log_tail()
    );
    // Without the keys file (a host where it lives elsewhere) the queue commands still work.
    std::fs::rename(stack.dir.join("key/key.json"), stack.dir.join("keys.moved")).unwrap();
    // The default is a summary: one line for the servicer and cause, RFC 3339 times, and the
    // command that replays them.
    let address = stack.servicer_key.address_hex.clone();
    let dead = stack.queue_cli(&["dead"]);
    assert!(dead.starts_with("3 dead letter(s)\n"), "{dead}");
    let group = dead.lines().find(|l| l.starts_with(&address)).unwrap_or_else(|| panic!("{dead}"));
    let cols: Vec<&str> = group.split_whitespace().collect();
    assert_eq!(cols[1], "3", "{dead}");
    assert!(cols[2].ends_with('Z') && cols[2].contains('T') && cols[3].ends_with('Z'), "{dead}");
    assert!(group.ends_with("servicer refused the relay: pocketcore 75"), "{dead}");
    assert_eq!(dead.matches("pocketcore 75").count(), 1, "{dead}");
    assert!(dead.contains(&format!("replay: meshd queue replay-dead --datadir {} --servicer {address}", stack.dir.display())), "{dead}");
    // --limit lists letters one per line; each was tried once, so attempts=1.
    let listed = stack.queue_cli(&["dead", "--limit", "2", "--servicer", &address]);
    let lines: Vec<&str> = listed.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines.iter().all(|l| l.contains(" attempts=1 ") && l.contains("dead_at=20")), "{listed}");
    assert!(listed.contains("2 of 3 dead letter(s) listed"), "{listed}");
    let id = lines[0].split_whitespace().next().unwrap().trim_start_matches('#').to_string();
    let shown = stack.queue_cli(&["dead", "--show", &id]);
    assert!(shown.contains(&format!("servicer     {address}")) && shown.contains("attempts     1\n"), "{shown}");
    assert!(shown.contains("reason       servicer refused the relay: pocketcore 75"), "{shown}");
    // Three refusals of one cause are one line at once in the log (the rest is summarised).
    assert_eq!(stack.log_text().matches("event=notify_rejected code=75").count(), 1, "{}", stack.log_tail());
    std::fs::rename(stack.dir.join("keys.moved"), stack.dir.join("key/key.json")).unwrap();
    assert_eq!(stack.servicer.lock().unwrap().stats().accepted_total, 1);

    // The operator fixes the servicer (height back) and replays while meshd runs.
    stack.servicer.lock().unwrap().set_height(101).unwrap();
    let replay = stack.queue_cli(&["replay-dead"]);
    assert!(replay.contains("3 dead letter(s) moved back to pending"), "{replay}");
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || stack.servicer.lock().unwrap().stats().accepted_total == 4),
        "replayed relays must be delivered: {:?}\n{}",
        stack.servicer.lock().unwrap().stats(),
        stack.log_tail()
    );
    println!("replayed relays delivered {} ms after replay-dead", started.elapsed().as_millis());
}
