//! Every listener of the meshd binary (relay port, Prometheus port, Spacemesh gateway) against
//! hostile and careless clients, on loopback, with meshd as a real process. The server
//! (`src/http/server.rs`) is hyper on the one executor thread: no thread per connection, a
//! connection cap taken before accept (the connection idle longest is closed for a new one),
//! accept back-off when descriptors run out, the `client_rpc_*` deadlines as timers, and
//! bounded request heads and bodies. A node on the public internet meets every client below;
//! these are the acceptance criteria of replacing tiny_http and its connection guard. What is
//! asserted:
//!
//! - a connect flood (2,000 connects) with meshd's soft descriptor limit at 256: meshd never
//!   exits, never grows threads (at most 8 at every sample), says it ran out (`accept_failed`,
//!   `meshd_http_listener_pauses_total`), and serves a relay again soon after the flood (the
//!   issue asks 1 s; asserted: 3 s);
//! - 1,000 idle connections held on the relay port: at most 8 threads, bounded anonymous
//!   memory, the cap evicts idle ones, and relays on new connections are answered meanwhile;
//! - idle, trickled (slowloris) and stalled-upload connections are cut by
//!   `client_rpc_read_header_timeout` / `client_rpc_read_timeout` (408 for the upload),
//!   while relays are served;
//! - deep pipelining on one connection of each listener: read, every answer comes back in
//!   order; never read, other clients are still served, memory stays bounded and meshd closes
//!   the connection at `client_rpc_write_timeout`: its writes stall once the bounded kernel
//!   send buffer (256 KiB, `http/server.rs`) is full, whatever the answers' size;
//! - on each listener: a head over 64 KiB gets 431 and a close; `Transfer-Encoding` with
//!   `Content-Length` (either order) gets 400 and a close, the smuggled request behind it never
//!   answered; an unknown transfer coding gets 400 and a close;
//! - 2,000 connects held idle on the metrics port (cap `prometheus_max_open_files`, 3): meshd
//!   lives, at most 8 threads, the cap holds by closing idle ones, relays are served meanwhile
//!   and scrapes are answered once the idle connections are gone.
//!
//! Thread counts are sampled from `/proc/PID/status` every 5 ms on a side thread; memory is
//! `RssAnon`. Every loop is bounded in count and in time; timing bounds are loose (a noisy
//! 2-core machine), the benches hold the tight ones.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{send, wait_until, Sent, Stack};
use meshd::demo::free_port;
use meshd::sim::node_service::{start_node_service, NodeServiceSim, NodeServiceSimConfig};
use serde_json::{json, Value};

/// The bound: OS threads in the meshd process at every moment of every scenario.
const MAX_THREADS: usize = 8;
/// Generous bound on meshd's anonymous resident memory under any of these scenarios.
const MAX_RSS_ANON_KIB: u64 = 64 * 1024;

fn proc_status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

fn status_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

fn threads(pid: u32) -> usize {
    status_field(&proc_status(pid).expect("meshd is running"), "Threads:").unwrap() as usize
}

fn rss_anon_kib(pid: u32) -> u64 {
    status_field(&proc_status(pid).expect("meshd is running"), "RssAnon:").unwrap()
}

/// `tid:comm` of every thread of the process.
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut names: Vec<String> = tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            Some(format!("{}:{}", t.file_name().to_string_lossy(), comm.trim()))
        })
        .collect();
    names.sort();
    names
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Samples meshd's thread count and RssAnon every 5 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Peak>,
}

#[derive(Debug)]
struct Peak {
    threads: usize,
    /// Threads (`tid:comm`) listed when the peak was first seen.
    names: Vec<String>,
    /// Every thread seen in any sample.
    seen: std::collections::BTreeSet<String>,
    rss_anon_kib: u64,
    samples: usize,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = Peak { threads: 0, names: Vec::new(), seen: Default::default(), rss_anon_kib: 0, samples: 0 };
            let until = Instant::now() + Duration::from_secs(300);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
                let Some(text) = proc_status(pid) else { break };
                let (Some(t), Some(rss)) = (status_field(&text, "Threads:"), status_field(&text, "RssAnon:")) else { break };
                peak.samples += 1;
                peak.rss_anon_kib = peak.rss_anon_kib.max(rss);
                let names = thread_names(pid);
                if t as usize > peak.threads {
                    peak.threads = t as usize;
                    peak.names = names.clone();
                }
                peak.seen.extend(names);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn assert_thread_bound(scenario: &str, peak: &Peak, stack: &Stack) {
    eprintln!(
        "{scenario}: peak threads {} {:?}, every thread seen {:?}, peak RssAnon {} KiB ({} samples)",
        peak.threads, peak.names, peak.seen, peak.rss_anon_kib, peak.samples
    );
    assert!(peak.samples > 10, "{scenario}: too few samples ({})", peak.samples);
    assert!(
        peak.threads <= MAX_THREADS,
        "{scenario}: {} threads in meshd at the peak (at most {MAX_THREADS}): {:?}, seen {:?}\n{}",
        peak.threads,
        peak.names,
        peak.seen,
        stack.log_tail()
    );
}

/// Set meshd's soft descriptor limit (the hard one is left alone).
fn set_soft_nofile(pid: u32, soft: u64) {
    let status = Command::new("prlimit").arg(format!("--pid={pid}")).arg(format!("--nofile={soft}:")).status().unwrap();
    assert!(status.success(), "prlimit --nofile={soft}: failed");
}

fn alive(stack: &mut Stack) -> bool {
    stack.meshd.as_mut().unwrap().try_wait().unwrap().is_none()
}

/// One relay on a new connection (a fresh agent), within `timeout`.
fn relay(stack: &Stack, entropy: i64, timeout: Duration) -> Sent {
    send(&common::agent(timeout), &stack.url(), &stack.relay(entropy), &stack.servicer_key)
}

/// `count` relays one after another, each on a new connection and answered within `each`.
fn relays_answered(stack: &Stack, first_entropy: i64, count: i64, each: Duration, scenario: &str) -> Vec<Duration> {
    (0..count)
        .map(|i| {
            let started = Instant::now();
            let sent = relay(stack, first_entropy + i, each + Duration::from_secs(3));
            let took = started.elapsed();
            assert!(matches!(sent, Sent::Served(_)), "{scenario}: relay {i}: {sent:?} after {took:?}\n{}", stack.log_tail());
            assert!(took < each, "{scenario}: relay {i} took {took:?}");
            took
        })
        .collect()
}

/// Try `total` connects from 16 threads, each bounded by `each` (once the kernel backlog is
/// full, a connect waits in SYN retries), the whole flood by 30 s: (connected, failed).
fn connect_flood(addr: SocketAddr, total: usize, each: Duration) -> (Vec<TcpStream>, usize) {
    const THREADS: usize = 16;
    let until = Instant::now() + Duration::from_secs(30);
    let workers: Vec<_> = (0..THREADS)
        .map(|w| {
            std::thread::spawn(move || {
                let mut open = Vec::new();
                let mut failed = 0;
                for _ in (w..total).step_by(THREADS) {
                    if Instant::now() > until {
                        break;
                    }
                    match TcpStream::connect_timeout(&addr, each) {
                        Ok(s) => open.push(s),
                        Err(_) => failed += 1,
                    }
                }
                (open, failed)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut failed = 0;
    for w in workers {
        let (open, f) = w.join().unwrap();
        all.extend(open);
        failed += f;
    }
    (all, failed)
}

/// The Prometheus port's exposition.
fn scrape(stack: &Stack) -> String {
    let port = stack.config_value("pocket_prometheus_port");
    let url = format!("http://127.0.0.1:{}/metrics", port.as_str().unwrap());
    let (status, _, body) = common::http("GET", &url, &[], b"");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of series `name` whose labels include every `labels` pair.
fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{')?;
        if n != name || !labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))) {
            return None;
        }
        value.parse().ok()
    })
}

fn metrics_addr(stack: &Stack) -> SocketAddr {
    format!("127.0.0.1:{}", stack.config_value("pocket_prometheus_port").as_str().unwrap()).parse().unwrap()
}

fn relay_addr(stack: &Stack) -> SocketAddr {
    format!("127.0.0.1:{}", stack.port).parse().unwrap()
}

/// One listener of the stack and a route of it answered 200 without any upstream call.
#[derive(Clone, Copy, Debug)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    cheap: &'static str,
}

/// A stack with the Spacemesh gateway enabled next to the relay (a node-service simulator
/// behind it), and its three listeners.
fn three_listener_stack(name: &str, mut extra: Value) -> (Stack, NodeServiceSim, [Target; 3]) {
    let node = start_node_service(NodeServiceSimConfig { synced: true, ..Default::default() }).unwrap();
    let gateway: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
    extra["spacemesh"] = json!({ "listen": gateway.to_string(), "nodes": [node.url()], "health_interval": 1 });
    let mut stack = Stack::new(name, 1_000_000, extra);
    stack.start_meshd();
    assert!(wait_until(Duration::from_secs(10), || TcpStream::connect(gateway).is_ok()), "gateway not listening\n{}", stack.log_tail());
    let targets = [
        Target { name: "relay", addr: relay_addr(&stack), cheap: "/status" },
        Target { name: "metrics", addr: metrics_addr(&stack), cheap: "/metrics" },
        Target { name: "spacemesh", addr: gateway, cheap: "/_meshd/spacemesh/stats" },
    ];
    (stack, node, targets)
}

/// Everything the peer sends until it closes the connection (EOF or reset) or `within`
/// passes: (bytes, closed).
fn read_until_close(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let until = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, false);
        }
        stream.set_read_timeout(Some(left.min(Duration::from_millis(500)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
            Err(_) => return (out, true),
        }
    }
}

/// Send `bytes` on a new connection (a write cut short by the server's close is fine) and
/// read until the server closes it, at most `within`.
fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    let _ = s.write_all(bytes);
    let (out, closed) = read_until_close(&mut s, within);
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// HTTP/1.1 answers parsed one after another: (status, lower-cased head, body).
fn parse_responses(mut bytes: &[u8]) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        let body_end = (end + 4 + length).min(bytes.len());
        out.push((status, head, bytes[end + 4..body_end].to_vec()));
        bytes = &bytes[body_end..];
    }
    out
}

fn status_lines(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}

#[test]
fn a_connect_flood_at_256_descriptors_never_kills_meshd_and_it_serves_again_right_after() {
    let mut stack = Stack::new("flood", 1_000_000, json!({}));
    stack.start_meshd();
    assert!(matches!(relay(&stack, 1, Duration::from_secs(5)), Sent::Served(_)), "{}", stack.log_tail());
    let pid = stack.meshd.as_ref().unwrap().id();
    std::thread::sleep(Duration::from_millis(300));
    eprintln!("baseline: {} threads {:?}, RssAnon {} KiB, {} fds", threads(pid), thread_names(pid), rss_anon_kib(pid), open_fds(pid));

    set_soft_nofile(pid, 256);
    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let (held, failed) = connect_flood(relay_addr(&stack), 2_000, Duration::from_millis(250));
    eprintln!("flood: {} connected, {failed} failed in {:?}; meshd has {} fds", held.len(), started.elapsed(), open_fds(pid));
    assert!(held.len() > 256, "the flood should outnumber meshd's descriptors ({} connected)", held.len());
    std::thread::sleep(Duration::from_secs(1));
    assert!(alive(&mut stack), "meshd died in the flood:\n{}", stack.log_tail());
    drop(held);

    // After the flood: a relay on a new connection is served soon (the issue asks for 1 s;
    // the bound here leaves room for a loaded machine).
    let flood_over = Instant::now();
    let mut attempts = 0;
    let served = loop {
        attempts += 1;
        if matches!(relay(&stack, 1_000 + attempts, Duration::from_secs(2)), Sent::Served(_)) {
            break Some(flood_over.elapsed());
        }
        if flood_over.elapsed() > Duration::from_secs(15) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let peak = sampler.finish();
    eprintln!("after the flood: served after {served:?} ({attempts} attempts)");
    let served = served.unwrap_or_else(|| panic!("meshd stayed deaf after the flood:\n{}", stack.log_tail()));
    assert!(served < Duration::from_secs(3), "first relay after the flood took {served:?}");
    assert!(alive(&mut stack), "{}", stack.log_tail());
    assert_thread_bound("connect flood", &peak, &stack);

    let log = stack.log_text();
    assert!(log.contains("event=accept_failed listener=relay"), "descriptor exhaustion not reported:\n{}", stack.log_tail());
    let exposition = scrape(&stack);
    let pauses = metric(&exposition, "meshd_http_listener_pauses_total", &[("listener", "relay")]);
    assert!(pauses.is_some_and(|p| p > 0), "pauses {pauses:?}\n{exposition}");
    assert!(!log.contains("event=panic"), "{}", stack.log_tail());
}

#[test]
fn a_thousand_idle_connections_keep_threads_and_memory_bounded_and_relays_answered() {
    let mut stack = Stack::new("idle1000", 1_000_000, json!({}));
    stack.start_meshd();
    assert!(matches!(relay(&stack, 1, Duration::from_secs(5)), Sent::Served(_)), "{}", stack.log_tail());
    let pid = stack.meshd.as_ref().unwrap().id();
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_anon_kib(pid);
    eprintln!("baseline: {} threads {:?}, RssAnon {rss_before} KiB", threads(pid), thread_names(pid));

    let sampler = Sampler::start(pid);
    let addr = relay_addr(&stack);
    // Half say nothing, half start a head and stop (both are idle to the cap: no request yet).
    let mut held = Vec::new();
    for i in 0..1_000 {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { continue };
        if i % 2 == 1 {
            let _ = s.write_all(b"POST /v1/client/relay HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        }
        held.push(s);
    }
    assert!(held.len() >= 990, "only {} of 1,000 connected", held.len());
    std::thread::sleep(Duration::from_millis(500));
    let times = relays_answered(&stack, 100, 20, Duration::from_secs(2), "1,000 idle connections");
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!("20 relays while 1,000 idle held: median {:?}, max {:?}", sorted[10], sorted[19]);
    let exposition = scrape(&stack);
    assert!(alive(&mut stack), "{}", stack.log_tail());
    drop(held);
    let peak = sampler.finish();
    assert_thread_bound("1,000 idle connections", &peak, &stack);
    assert!(peak.rss_anon_kib < MAX_RSS_ANON_KIB, "RssAnon {} KiB with 1,000 idle connections (before: {rss_before} KiB)", peak.rss_anon_kib);

    // The cap (client_max_connections, 512) held, by closing the idle ones longest idle.
    let open = metric(&exposition, "meshd_http_connections", &[("listener", "relay")]).unwrap();
    let evicted = metric(&exposition, "meshd_http_connections_closed_total", &[("listener", "relay"), ("reason", "evicted")]).unwrap();
    eprintln!("relay listener while held: {open} open, {evicted} evicted");
    assert!(open <= 512, "{open} connections open, cap 512");
    assert!(evicted > 0, "{exposition}");
}

#[test]
fn slowloris_heads_and_stalled_uploads_are_cut_by_the_client_rpc_deadlines() {
    let mut stack = Stack::new("deadlines", 1_000_000, json!({ "client_rpc_read_header_timeout": 1000, "client_rpc_read_timeout": 1000 }));
    stack.start_meshd();
    assert!(matches!(relay(&stack, 1, Duration::from_secs(5)), Sent::Served(_)), "{}", stack.log_tail());
    let pid = stack.meshd.as_ref().unwrap().id();
    let addr = relay_addr(&stack);
    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let stalled: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            let head = "POST /v1/client/relay HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"payload\":";
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    // Slowloris: a byte of a head every 100 ms, for at most 6 s, until meshd cuts them.
    let trickling: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let trickler = std::thread::spawn(move || {
        let head = b"POST /v1/client/relay HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut cut_after = vec![None; trickling.len()];
        let until = Instant::now() + Duration::from_secs(6);
        for &b in head.iter().cycle() {
            if Instant::now() > until || cut_after.iter().all(Option::is_some) {
                break;
            }
            for (i, mut s) in trickling.iter().enumerate() {
                if cut_after[i].is_none() && s.write_all(&[b]).is_err() {
                    cut_after[i] = Some(started.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        cut_after
    });

    // Relays are served while they hold on.
    std::thread::sleep(Duration::from_millis(200));
    relays_answered(&stack, 100, 3, Duration::from_secs(2), "slowloris");

    // Closed at the 1 s deadlines: not before (that would be something else), and not long after.
    let bound = Duration::from_secs(5);
    for (kind, conns) in [("idle", idle), ("stalled upload", stalled)] {
        for (i, mut s) in conns.into_iter().enumerate() {
            let (out, closed) = read_until_close(&mut s, bound.saturating_sub(started.elapsed()).max(Duration::from_millis(100)));
            let text = String::from_utf8_lossy(&out);
            assert!(closed, "{kind} connection {i} still open after {:?}: {text:?}\n{}", started.elapsed(), stack.log_tail());
            if kind == "stalled upload" {
                assert!(text.starts_with("HTTP/1.1 408"), "{kind} {i}: {text:?}");
            } else {
                assert!(out.is_empty(), "{kind} {i}: {text:?}");
            }
        }
    }
    let closed_all_by = started.elapsed();
    assert!(closed_all_by >= Duration::from_millis(900), "closed before the 1 s deadlines ({closed_all_by:?})");
    let cut_after = trickler.join().unwrap();
    eprintln!("idle and stalled closed by {closed_all_by:?}; trickled heads cut after {cut_after:?}");
    // A write may still succeed just after the close (the reset comes back with the next one).
    for (i, cut) in cut_after.iter().enumerate() {
        let cut = cut.unwrap_or_else(|| panic!("trickled head {i} never cut\n{}", stack.log_tail()));
        assert!(cut >= Duration::from_millis(900) && cut < bound, "trickled head {i} cut after {cut:?}");
    }
    let peak = sampler.finish();
    assert_thread_bound("slowloris", &peak, &stack);
    let exposition = scrape(&stack);
    let timeouts = metric(&exposition, "meshd_http_connections_closed_total", &[("listener", "relay"), ("reason", "timeout")]).unwrap();
    assert!(timeouts >= 100, "{timeouts} closed for timeout, 100 expected:\n{exposition}");
    assert!(alive(&mut stack), "{}", stack.log_tail());
}

fn pipelined(target: &Target, path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{extra}\r\n", target.addr)
}

#[test]
fn deep_pipelining_read_is_answered_in_order_on_every_listener() {
    let (mut stack, _node, targets) = three_listener_stack("pipeline", json!({}));
    let pid = stack.meshd.as_ref().unwrap().id();
    let sampler = Sampler::start(pid);
    // The relay port's static routes have distinct content types: the order is checkable.
    let relay_paths = [("/status", "text/html"), ("/status/status.js", "text/javascript"), ("/status/status.css", "text/css")];
    for target in &targets {
        let count = if target.name == "metrics" { 200 } else { 500 };
        let mut batch = String::new();
        let mut expected_types = Vec::new();
        for i in 0..count {
            let (path, ctype) = if target.name == "relay" { relay_paths[i % 3] } else { (target.cheap, "") };
            batch.push_str(&pipelined(target, path, ""));
            expected_types.push(ctype);
        }
        batch.push_str(&pipelined(target, target.cheap, "Connection: close\r\n"));
        let started = Instant::now();
        let mut s = TcpStream::connect(target.addr).unwrap();
        // Written from a side thread: meshd answers while the batch is still arriving.
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || w.write_all(batch.as_bytes()).is_ok());
        let (out, closed) = read_until_close(&mut s, Duration::from_secs(60));
        assert!(writer.join().unwrap(), "{}: the batch was not accepted", target.name);
        let answers = parse_responses(&out);
        eprintln!("{}: {} pipelined answers in {:?}", target.name, answers.len(), started.elapsed());
        assert!(closed, "{}: not closed after Connection: close", target.name);
        assert_eq!(answers.len(), count + 1, "{}: answers", target.name);
        for (i, (status, head, _)) in answers.iter().enumerate() {
            assert_eq!(*status, 200, "{} answer {i}: {head}", target.name);
            if let Some(ctype) = expected_types.get(i).filter(|c| !c.is_empty()) {
                assert!(head.contains(&format!("content-type: {ctype}")), "{} answer {i} out of order: {head}", target.name);
            }
        }
    }
    let peak = sampler.finish();
    assert_thread_bound("pipelining", &peak, &stack);
    assert!(alive(&mut stack));
}

/// A client that pipelines `path` as fast as it can and never reads an answer, with a small
/// receive buffer, for at most 20 s or until `stop`: returns (after how long its writes failed because meshd
/// cut the connection, if they did; bytes the kernel took).
fn never_reader(addr: SocketAddr, path: &'static str, stop: Arc<AtomicBool>) -> JoinHandle<(Option<Duration>, usize)> {
    std::thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        {
            use std::os::fd::AsRawFd;
            let size: libc::c_int = 4096;
            // SAFETY: setsockopt reads an int of the given size.
            unsafe {
                libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &size as *const _ as *const libc::c_void, 4);
            }
        }
        s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
        let batch = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(50);
        let started = Instant::now();
        let mut sent = 0;
        let mut w = &s;
        while started.elapsed() < Duration::from_secs(20) && !stop.load(Ordering::Relaxed) {
            match w.write(batch.as_bytes()) {
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => return (Some(started.elapsed()), sent),
            }
        }
        (None, sent)
    })
}

#[test]
fn deep_pipelining_never_read_stalls_nobody_holds_memory_bounded_and_is_cut() {
    // Write deadline 1 s; the idle bound (header deadline) 4 s: every cut must come from the
    // write deadline, before the idle bound.
    let extra = json!({ "client_rpc_write_timeout": 1000, "client_rpc_read_header_timeout": 4000 });
    let (mut stack, _node, targets) = three_listener_stack("noread", extra);
    let pid = stack.meshd.as_ref().unwrap().id();
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_anon_kib(pid);
    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> =
        targets.iter().map(|t| (t.name, never_reader(t.addr, if t.name == "relay" { "/status/status.js" } else { t.cheap }, stop.clone()))).collect();
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile every listener answers others promptly.
    for round in 0..3 {
        relays_answered(&stack, 100 + round * 10, 2, Duration::from_secs(2), "never-reading clients");
        for target in &targets {
            let asked = Instant::now();
            let (text, closed) = exchange(target.addr, pipelined(target, target.cheap, "Connection: close\r\n").as_bytes(), Duration::from_secs(5));
            assert!(closed && text.starts_with("HTTP/1.1 200"), "{}: {text:.200}", target.name);
            assert!(asked.elapsed() < Duration::from_secs(2), "{}: answered after {:?}", target.name, asked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // meshd closes every never-reader (its open-connection gauge falls back; a scrape counts
    // itself on the metrics listener).
    let open = |exposition: &str, name: &str| metric(exposition, "meshd_http_connections", &[("listener", name)]).unwrap();
    let mut last = String::new();
    let all_closed = wait_until(Duration::from_secs(15), || {
        last = scrape(&stack);
        open(&last, "relay") == 0 && open(&last, "metrics") <= 1 && open(&last, "spacemesh") == 0
    });
    eprintln!("never-readers closed by meshd after {:?}", started.elapsed());
    assert!(all_closed, "a client that never reads is still connected:\n{last}");
    for target in &targets {
        let timeouts = metric(&last, "meshd_http_connections_closed_total", &[("listener", target.name), ("reason", "timeout")]);
        assert!(timeouts.is_some_and(|n| n >= 1), "{}: {timeouts:?}", target.name);
    }
    // The relay and metrics never-readers have seen their cut by now (see below).
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for (name, hog) in hogs {
        let (cut, sent) = hog.join().unwrap();
        eprintln!("{name}: the never-reader's kernel took {sent} bytes; its writes failed after {cut:?}");
        // Answers fill the bounded send buffer (the gateway's small stats answers too), meshd's
        // writes stall: cut at the 1 s write deadline, before the 4 s idle bound, and the
        // client's writes fail (reset).
        let cut = cut.unwrap_or_else(|| panic!("{name}: the never-reader was not cut\n{}", stack.log_tail()));
        assert!(cut >= Duration::from_millis(900) && cut < Duration::from_secs(4), "{name}: cut after {cut:?}");
    }
    let peak = sampler.finish();
    assert_thread_bound("never-reading pipeliners", &peak, &stack);
    eprintln!("RssAnon before {rss_before} KiB, peak {} KiB", peak.rss_anon_kib);
    assert!(peak.rss_anon_kib < MAX_RSS_ANON_KIB, "RssAnon {} KiB", peak.rss_anon_kib);
    assert!(alive(&mut stack));
}

#[test]
fn oversized_heads_and_ambiguous_framing_get_an_error_and_a_close_on_every_listener() {
    let (mut stack, _node, targets) = three_listener_stack("framing", json!({}));
    let within = Duration::from_secs(10);
    for target in &targets {
        let name = target.name;
        // A head over 64 KiB that never ends: 431, close.
        let mut head = format!("GET {} HTTP/1.1\r\nHost: x\r\n", target.cheap);
        for i in 0..80 {
            head.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(1000)));
        }
        let (text, closed) = exchange(target.addr, head.as_bytes(), within);
        assert!(text.starts_with("HTTP/1.1 431"), "{name}: {text:.300}");
        assert!(closed && status_lines(&text) == 1, "{name}: {text:.300}");
        // Just under the limit is fine.
        let mut head = format!("GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", target.cheap);
        for i in 0..50 {
            head.push_str(&format!("X-Filler-{i}: {}\r\n", "a".repeat(1000)));
        }
        head.push_str("\r\n");
        let (text, _) = exchange(target.addr, head.as_bytes(), within);
        assert!(text.starts_with("HTTP/1.1 200"), "{name} (50 KiB head): {text:.300}");

        // Transfer-Encoding beside Content-Length, in both orders: 400, close, and the request
        // smuggled behind the chunked body is never answered.
        let smuggled = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", target.cheap);
        for framing in ["Content-Length: 4\r\nTransfer-Encoding: chunked", "Transfer-Encoding: chunked\r\nContent-Length: 4"] {
            let request = format!("POST {} HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n0\r\n\r\n{smuggled}", target.cheap);
            let (text, closed) = exchange(target.addr, request.as_bytes(), within);
            assert!(text.starts_with("HTTP/1.1 400"), "{name} {framing:?}: {text:.300}");
            assert!(closed, "{name} {framing:?}: not closed");
            assert_eq!(status_lines(&text), 1, "{name} {framing:?}: the smuggled request was answered: {text:.600}");
        }
        // An unknown transfer coding: 400 and a close.
        let request = format!("POST {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabcd", target.cheap);
        let (text, closed) = exchange(target.addr, request.as_bytes(), within);
        assert!(text.starts_with("HTTP/1.1 400"), "{name} gzip: {text:.300}");
        assert!(closed && status_lines(&text) == 1, "{name} gzip: {text:.300}");
    }
    let exposition = scrape(&stack);
    for target in &targets {
        let refused = metric(&exposition, "meshd_http_connections_closed_total", &[("listener", target.name), ("reason", "head_too_large")]);
        assert!(refused.is_some_and(|n| n >= 1), "{}: {refused:?}", target.name);
    }
    assert!(alive(&mut stack), "{}", stack.log_tail());
}

#[test]
fn thousands_of_idle_connections_to_the_metrics_port_never_crash_meshd() {
    let mut stack = Stack::new("metricsidle", 1_000_000, json!({}));
    stack.start_meshd();
    assert!(matches!(relay(&stack, 1, Duration::from_secs(5)), Sent::Served(_)), "{}", stack.log_tail());
    scrape(&stack);
    let pid = stack.meshd.as_ref().unwrap().id();
    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let (held, failed) = connect_flood(metrics_addr(&stack), 2_000, Duration::from_millis(100));
    eprintln!("metrics flood: {} connected, {failed} failed in {:?}", held.len(), started.elapsed());
    // Three at a time are accepted, the kernel backlog holds some more, the rest wait in SYN
    // retries (given up here after 100 ms); meshd keeps closing the idle ones for new ones.
    assert!(held.len() >= 100, "only {} connected", held.len());
    std::thread::sleep(Duration::from_millis(500));
    relays_answered(&stack, 100, 5, Duration::from_secs(2), "metrics port flooded");
    assert!(alive(&mut stack), "{}", stack.log_tail());
    drop(held);
    let dropped = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || {
            let port = stack.config_value("pocket_prometheus_port");
            let url = format!("http://127.0.0.1:{}/metrics", port.as_str().unwrap());
            common::agent(Duration::from_secs(2)).get(&url).call().is_ok_and(|r| r.status() == 200)
        }),
        "no scrape answered after the idle connections were dropped\n{}",
        stack.log_tail()
    );
    eprintln!("scrape answered {:?} after the idle connections were dropped", dropped.elapsed());
    let peak = sampler.finish();
    assert_thread_bound("2,000 idle metrics connections", &peak, &stack);
    assert!(peak.rss_anon_kib < MAX_RSS_ANON_KIB, "RssAnon {} KiB", peak.rss_anon_kib);
    let exposition = scrape(&stack);
    let open = metric(&exposition, "meshd_http_connections", &[("listener", "metrics")]).unwrap();
    assert!(open <= 3, "{open} metrics connections open (prometheus_max_open_files 3)");
    let evicted = metric(&exposition, "meshd_http_connections_closed_total", &[("listener", "metrics"), ("reason", "evicted")]).unwrap();
    eprintln!("metrics listener: {evicted} idle connections evicted");
    assert!(evicted > 0, "{exposition}");
    assert!(alive(&mut stack), "{}", stack.log_tail());
}
