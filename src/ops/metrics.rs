//! Prometheus metrics, hand-written (text exposition format 0.0.4, no client crate).
//!
//! Names: the incumbent's `pocketcore_geo_mesh_*` (reference geo-mesh §6.1), so existing
//! dashboards keep working — `relay_count`, `relay_time`, `relay_handler_time`, `error_count`,
//! `chain_time` with the same labels and `LinearBuckets(1, 20, 20)` millisecond buckets — plus
//! meshd's own `meshd_*` gauges (queue, sessions, nodes, identity states) and one
//! `meshd_<name>_total` counter per field of [`crate::app::Counters`].
//!
//! Threads: the registry lives on the executor thread (`Cell`/`RefCell`, no locks: recording a
//! relay is a map lookup and a few additions). The exposition listener (`pocket_prometheus_port`)
//! is one more listener of the same server on the same executor, with at most
//! `prometheus_max_open_files` connections and the client deadlines: a scrape renders the text
//! from live state. Nothing is rendered when nobody scrapes (an idle Pi stays idle) and every
//! scrape is current; a wedged executor stops answering scrapes and stops the systemd watchdog
//! pings, so systemd restarts it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use crate::app::App;
use crate::http::server::Response;
use crate::queue::QueueStats;

/// `prometheus.LinearBuckets(1, 20, 20)`: upper bounds in milliseconds.
pub const BUCKETS_MS: [f64; 20] = {
    let mut b = [0.0; 20];
    let mut i = 0;
    while i < 20 {
        b[i] = 1.0 + 20.0 * i as f64;
        i += 1;
    }
    b
};

/// Upper bound on exposition connections, whatever `prometheus_max_open_files` says.
pub const MAX_SCRAPE_CONNECTIONS: u64 = 64;

const NS: &str = "pocketcore_geo_mesh_";

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; rendered cumulatively.
    buckets: [u64; 20],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, ms: f64) {
        if let Some(i) = BUCKETS_MS.iter().position(|le| ms <= *le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += ms;
    }
}

/// Slots of [`RecentWindow`]: one per second.
pub const WINDOW_SECONDS: usize = 60;
/// Latency buckets of [`RecentWindow`]: upper bounds `0.5 ms × 1.25^i`, the last one open.
const WINDOW_BUCKETS: usize = 64;

fn window_bound_ms(i: usize) -> f64 {
    0.5 * 1.25f64.powi(i as i32)
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The unix second this slot counts (a slot of an older second is stale).
    second: u64,
    count: u64,
    errors: u64,
    buckets: [u32; WINDOW_BUCKETS],
}

/// The last [`WINDOW_SECONDS`] seconds of one stream of calls (client relays, one chain's
/// calls): a ring of per-second counts and latency buckets, so the rate and p50/p99 over the
/// last minute cost a fixed 60 × 64 counters, whatever the traffic. Buckets grow by 25 %, so a
/// quantile is its bucket's upper bound, at most 25 % above the true value.
#[derive(Debug, Clone)]
pub struct RecentWindow {
    slots: Box<[Slot; WINDOW_SECONDS]>,
}

impl Default for RecentWindow {
    fn default() -> Self {
        RecentWindow { slots: Box::new([Slot { second: 0, count: 0, errors: 0, buckets: [0; WINDOW_BUCKETS] }; WINDOW_SECONDS]) }
    }
}

/// What a [`RecentWindow`] saw over the last minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentStats {
    pub count: u64,
    pub errors: u64,
    pub per_second: f64,
    /// None without calls in the window.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl RecentWindow {
    /// One call finished at unix second `now_s`, taking `ms`; `error`: it failed.
    pub fn observe(&mut self, now_s: u64, ms: f64, error: bool) {
        let slot = &mut self.slots[(now_s % WINDOW_SECONDS as u64) as usize];
        if slot.second != now_s {
            *slot = Slot { second: now_s, count: 0, errors: 0, buckets: [0; WINDOW_BUCKETS] };
        }
        slot.count += 1;
        slot.errors += u64::from(error);
        let i = (0..WINDOW_BUCKETS - 1).find(|&i| ms <= window_bound_ms(i)).unwrap_or(WINDOW_BUCKETS - 1);
        slot.buckets[i] = slot.buckets[i].saturating_add(1);
    }

    /// The seconds `now_s - 59 ..= now_s`.
    pub fn stats(&self, now_s: u64) -> RecentStats {
        let mut buckets = [0u64; WINDOW_BUCKETS];
        let (mut count, mut errors) = (0, 0);
        for slot in self.slots.iter().filter(|s| s.count > 0 && s.second <= now_s && now_s - s.second < WINDOW_SECONDS as u64) {
            count += slot.count;
            errors += slot.errors;
            for (total, n) in buckets.iter_mut().zip(slot.buckets) {
                *total += u64::from(n);
            }
        }
        let quantile = |q: f64| -> Option<f64> {
            let total: u64 = buckets.iter().sum();
            if total == 0 {
                return None;
            }
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Some(window_bound_ms(i));
                }
            }
            Some(window_bound_ms(WINDOW_BUCKETS - 1))
        };
        RecentStats { count, errors, per_second: count as f64 / WINDOW_SECONDS as f64, p50_ms: quantile(0.5), p99_ms: quantile(0.99) }
    }
}

fn unix_now_s() -> u64 {
    crate::timefmt::unix_secs(std::time::SystemTime::now())
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RelayKey {
    chain: String,
    is_notify: bool,
    success: bool,
    status_code: u16,
    servicer: String,
}

#[derive(Debug, Default)]
struct RelayStats {
    count: u64,
    relay_time: Histogram,
    handler_time: Histogram,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ErrorKey {
    chain: String,
    is_notify: bool,
    status_type: &'static str,
    status_code: u32,
    servicer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ChainKey {
    chain: String,
    status_code: u16,
}

/// One client relay as the metrics see it.
pub struct RelayObservation<'a> {
    pub chain: &'a str,
    pub servicer: Option<&'a [u8; 20]>,
    /// The HTTP status meshd answered.
    pub status_code: u16,
    pub success: bool,
    /// The whole handler, chain call included.
    pub total: Duration,
    /// The chain call's share, when there was one.
    pub chain_call: Option<Duration>,
}

/// The registry. Only touched on the executor thread.
pub struct Metrics {
    started: std::time::SystemTime,
    moniker: String,
    attach_servicer: bool,
    chain_names: RefCell<BTreeMap<String, String>>,
    relays: RefCell<BTreeMap<RelayKey, RelayStats>>,
    errors: RefCell<BTreeMap<ErrorKey, u64>>,
    chains: RefCell<BTreeMap<ChainKey, Histogram>>,
    /// Relays answered 200 per servicer address (status page; always kept, it is small).
    served_by_servicer: RefCell<HashMap<[u8; 20], u64>>,
    /// Client relays over the last minute (status page: relays/s, p50/p99).
    recent_relays: RefCell<RecentWindow>,
    /// Chain calls over the last minute, per chain id (errors: no answer or 5xx).
    recent_chains: RefCell<BTreeMap<String, RecentWindow>>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Metrics {
    pub fn new(moniker: &str, attach_servicer: bool, chain_names: BTreeMap<String, String>) -> Metrics {
        Metrics {
            started: std::time::SystemTime::now(),
            moniker: moniker.to_string(),
            attach_servicer,
            chain_names: RefCell::new(chain_names),
            relays: RefCell::default(),
            errors: RefCell::default(),
            chains: RefCell::default(),
            served_by_servicer: RefCell::default(),
            recent_relays: RefCell::default(),
            recent_chains: RefCell::default(),
        }
    }

    /// Replace the chain id → name map (labels only; e.g. after a reload).
    pub fn set_chain_names(&self, names: BTreeMap<String, String>) {
        *self.chain_names.borrow_mut() = names;
    }

    fn servicer_label(&self, servicer: Option<&[u8; 20]>) -> String {
        match (self.attach_servicer, servicer) {
            (true, Some(a)) => hex::encode(a),
            _ => String::new(),
        }
    }

    /// A client relay finished (any outcome).
    pub fn relay(&self, o: RelayObservation<'_>) {
        let key = RelayKey {
            chain: o.chain.to_string(),
            is_notify: false,
            success: o.success,
            status_code: o.status_code,
            servicer: self.servicer_label(o.servicer),
        };
        self.recent_relays.borrow_mut().observe(unix_now_s(), ms(o.total), !o.success);
        let mut relays = self.relays.borrow_mut();
        let stats = relays.entry(key).or_default();
        stats.count += 1;
        stats.relay_time.observe(ms(o.total));
        stats.handler_time.observe(ms(o.total.saturating_sub(o.chain_call.unwrap_or_default())));
        if o.success {
            if let Some(address) = o.servicer {
                *self.served_by_servicer.borrow_mut().entry(*address).or_insert(0) += 1;
            }
        }
    }

    /// A notify to the servicer finished: `relay_count{is_notify="true"}` (no histograms).
    pub fn notify(&self, chain: &str, servicer: &[u8; 20], status_code: u16, success: bool) {
        let key = RelayKey { chain: chain.to_string(), is_notify: true, success, status_code, servicer: self.servicer_label(Some(servicer)) };
        self.relays.borrow_mut().entry(key).or_default().count += 1;
    }

    /// `error_count`: `status_type` is one of the incumbent's (`bad_request`, `chain`, …) or
    /// meshd's (`node_unhealthy`, `queue_full`); `code` the Pocket error code.
    pub fn error(&self, chain: &str, servicer: Option<&[u8; 20]>, is_notify: bool, status_type: &'static str, code: u32) {
        let key = ErrorKey { chain: chain.to_string(), is_notify, status_type, status_code: code, servicer: self.servicer_label(servicer) };
        *self.errors.borrow_mut().entry(key).or_insert(0) += 1;
    }

    /// `chain_time`: one chain call; `status_code` 0 when the chain gave no HTTP answer.
    pub fn chain_call(&self, chain: &str, status_code: u16, elapsed: Duration) {
        let key = ChainKey { chain: chain.to_string(), status_code };
        self.chains.borrow_mut().entry(key).or_default().observe(ms(elapsed));
        let failed = status_code == 0 || status_code >= 500;
        self.recent_chains.borrow_mut().entry(chain.to_string()).or_default().observe(unix_now_s(), ms(elapsed), failed);
    }

    /// Client relays over the last minute.
    pub fn recent_relays(&self) -> RecentStats {
        self.recent_relays.borrow().stats(unix_now_s())
    }

    /// One chain's calls over the last minute.
    pub fn recent_chain(&self, chain: &str) -> RecentStats {
        self.recent_chains.borrow().get(chain).map(|w| w.stats(unix_now_s())).unwrap_or(RecentStats {
            count: 0,
            errors: 0,
            per_second: 0.0,
            p50_ms: None,
            p99_ms: None,
        })
    }

    /// Client relays refused since start, by error type and Pocket code (most first).
    pub fn rejections(&self) -> Vec<(&'static str, u32, u64)> {
        let mut by: BTreeMap<(&'static str, u32), u64> = BTreeMap::new();
        for (k, n) in self.errors.borrow().iter().filter(|(k, _)| !k.is_notify) {
            *by.entry((k.status_type, k.status_code)).or_insert(0) += n;
        }
        let mut out: Vec<(&'static str, u32, u64)> = by.into_iter().map(|((t, c), n)| (t, c, n)).collect();
        out.sort_by(|a, b| b.2.cmp(&a.2));
        out
    }

    /// When this registry (the daemon) started.
    pub fn started(&self) -> std::time::SystemTime {
        self.started
    }

    pub fn moniker(&self) -> &str {
        &self.moniker
    }

    /// Relays answered 200 for this servicer since start.
    pub fn served_by(&self, address: &[u8; 20]) -> u64 {
        self.served_by_servicer.borrow().get(address).copied().unwrap_or(0)
    }
}

/// Prometheus label value escaping (backslash, double quote, newline).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    out.push('}');
    out
}

pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One metric family: its header, then a sample per (label set from [`labels`], value).
pub(crate) fn family<V: std::fmt::Display>(out: &mut String, name: &str, kind: &str, help: &str, samples: impl IntoIterator<Item = (String, V)>) {
    header(out, name, kind, help);
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Histogram series: `base` holds the label text without braces.
fn histogram_lines(out: &mut String, name: &str, base: &str, h: &Histogram) {
    let mut cumulative = 0u64;
    for (le, n) in BUCKETS_MS.iter().zip(h.buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{{base},le=\"{}\"}} {cumulative}", fmt_f64(*le));
    }
    let _ = writeln!(out, "{name}_bucket{{{base},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{base}}} {}", fmt_f64(h.sum));
    let _ = writeln!(out, "{name}_count{{{base}}} {}", h.count);
}

fn strip_braces(s: &str) -> &str {
    &s[1..s.len() - 1]
}

/// Live values read outside the registry at scrape time.
pub struct Snapshot {
    pub queue: Result<QueueStats, String>,
    /// Stored publishes of the Spacemesh gateway, when it runs.
    pub spacemesh_queue: Option<Result<crate::spacemesh::publish_queue::QueueCounts, String>>,
    /// Stored mined relays of the Shannon edge, when it runs.
    pub shannon_queue: Option<Result<crate::supplier::mined_queue::MinedCounts, String>>,
}

impl Metrics {
    fn chain_name(&self, id: &str) -> String {
        self.chain_names.borrow().get(id).cloned().unwrap_or_else(|| id.to_string())
    }

    fn relay_labels(&self, k: &RelayKey) -> String {
        let name = self.chain_name(&k.chain);
        let mut pairs = vec![
            ("moniker", self.moniker.as_str()),
            ("chain_id", k.chain.as_str()),
            ("chain_name", name.as_str()),
            ("is_notify", if k.is_notify { "true" } else { "false" }),
            ("success", if k.success { "true" } else { "false" }),
        ];
        let code = k.status_code.to_string();
        pairs.push(("status_code", &code));
        if self.attach_servicer {
            pairs.push(("servicer_address", &k.servicer));
        }
        labels(&pairs)
    }

    /// The incumbent-compatible families.
    fn render_geo_mesh(&self, out: &mut String) {
        let relays = self.relays.borrow();
        let name = format!("{NS}relay_count");
        header(out, &name, "counter", "Relays handled (is_notify=true: notifies to the servicer).");
        for (k, s) in relays.iter() {
            let _ = writeln!(out, "{name}{} {}", self.relay_labels(k), s.count);
        }
        for (family, help, pick) in [
            ("relay_time", "Relay handling time with the chain call, in milliseconds.", 0),
            ("relay_handler_time", "Relay handling time without the chain call, in milliseconds.", 1),
        ] {
            let name = format!("{NS}{family}");
            header(out, &name, "histogram", help);
            for (k, s) in relays.iter().filter(|(k, _)| !k.is_notify) {
                let h = if pick == 0 { &s.relay_time } else { &s.handler_time };
                histogram_lines(out, &name, strip_braces(&self.relay_labels(k)), h);
            }
        }
        let name = format!("{NS}error_count");
        header(out, &name, "counter", "Relay and notify errors by status type and Pocket error code.");
        for (k, n) in self.errors.borrow().iter() {
            let chain_name = self.chain_name(&k.chain);
            let code = k.status_code.to_string();
            let mut pairs = vec![
                ("moniker", self.moniker.as_str()),
                ("chain_id", k.chain.as_str()),
                ("chain_name", chain_name.as_str()),
                ("is_notify", if k.is_notify { "true" } else { "false" }),
                ("status_type", k.status_type),
                ("status_code", &code),
                ("success", "false"),
            ];
            if self.attach_servicer {
                pairs.push(("servicer_address", &k.servicer));
            }
            let _ = writeln!(out, "{name}{} {n}", labels(&pairs));
        }
        let name = format!("{NS}chain_time");
        header(out, &name, "histogram", "Chain call time in milliseconds, by the chain's HTTP status (0: no answer).");
        for (k, h) in self.chains.borrow().iter() {
            let chain_name = self.chain_name(&k.chain);
            let code = k.status_code.to_string();
            let base = labels(&[("moniker", &self.moniker), ("chain_id", &k.chain), ("chain_name", &chain_name), ("status_code", &code)]);
            histogram_lines(out, &name, strip_braces(&base), h);
        }
    }
}

/// The whole exposition text.
pub fn render(app: &App, snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    app.metrics.render_geo_mesh(&mut out);
    let moniker = labels(&[("moniker", &app.metrics.moniker)]);

    let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name}{moniker} {}", fmt_f64(value));
    };
    gauge(&mut out, "meshd_up", "1 while meshd answers scrapes from its executor.", 1.0);
    let started = app.metrics.started.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    gauge(&mut out, "meshd_start_time_seconds", "Unix time meshd started.", started.floor());
    match &snapshot.queue {
        Ok(q) => {
            gauge(&mut out, "meshd_queue_pending", "Relays served and waiting for the servicer to accept the notify.", q.pending as f64);
            gauge(&mut out, "meshd_queue_dead_letters", "Relays in the dead-letter store.", q.dead as f64);
            gauge(&mut out, "meshd_queue_proofs", "Proofs in the duplicate index.", q.proofs as f64);
            gauge(&mut out, "meshd_queue_used_bytes", "Bytes the queue databases use in the LMDB map.", q.used_bytes as f64);
            gauge(&mut out, "meshd_queue_map_bytes", "Size of the LMDB map (relay_queue_map_size).", q.map_bytes as f64);
            gauge(&mut out, "meshd_queue_admission_limit_bytes", "New relays are refused with 503 above this many bytes used.", q.admission_limit_bytes as f64);
        }
        Err(e) => log::warn!("event=metrics_queue_stats_failed error={e:?}"),
    }
    gauge(&mut out, "meshd_session_cache_entries", "Sessions (and remembered refusals) in the session cache.", app.sessions.len() as f64);
    let fleet = app.fleet();
    gauge(&mut out, "meshd_notify_in_flight", "Notifies in flight, all nodes.", app.notifier.in_flight(&fleet) as f64);

    let nodes: Vec<(String, Result<crate::servicer::health::NodeStatus, crate::protocol::PocketError>, u64)> =
        fleet.nodes.iter().map(|n| (n.name.clone(), n.gate(), n.failovers())).collect();
    let node_labels = |name: &str| labels(&[("moniker", &app.metrics.moniker), ("node", name)]);
    family(
        &mut out,
        "meshd_node_healthy",
        "gauge",
        "1 when the servicer node passes the health gate (relays are served), else 0.",
        nodes.iter().map(|(name, gate, _)| (node_labels(name), u64::from(gate.is_ok()))),
    );
    family(
        &mut out,
        "meshd_node_failovers_total",
        "counter",
        "Times the servicer node's calls moved to another of its URLs since meshd started.",
        nodes.iter().map(|(name, _, failovers)| (node_labels(name), *failovers)),
    );
    family(
        &mut out,
        "meshd_node_height",
        "gauge",
        "Block height the servicer node last reported while healthy.",
        nodes.iter().filter_map(|(name, gate, _)| gate.as_ref().ok().map(|status| (node_labels(name), status.height))),
    );
    render_chains(&mut out, app);
    header(&mut out, "meshd_servicers", "gauge", "Servicer keys loaded.");
    let _ = writeln!(out, "meshd_servicers{moniker} {}", fleet.servicer_count());

    render_listeners(&mut out, &app.metrics.moniker);
    if let Some(spacemesh) = app.spacemesh.borrow().as_ref() {
        crate::spacemesh::metrics::render(&mut out, &app.metrics.moniker, spacemesh, snapshot.spacemesh_queue.as_ref());
    }
    if let Some(edge) = app.shannon.borrow().as_ref() {
        crate::supplier::metrics::render(&mut out, &app.metrics.moniker, edge, snapshot.shannon_queue.as_ref());
    }

    for (field, help, value) in app.counters.export() {
        let name = format!("meshd_{field}_total");
        header(&mut out, &name, "counter", help);
        let _ = writeln!(out, "{name}{moniker} {value}");
    }
    out
}

/// Chain health: each endpoint's bench state and whether the chain has a usable endpoint.
fn render_chains(out: &mut String, app: &App) {
    let chains = app.chains();
    let mut sorted: Vec<&crate::config::chains::Chain> = chains.by_id.values().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let up: Vec<(&crate::config::chains::Chain, Vec<bool>)> = sorted.into_iter().map(|c| (c, app.chain_health.endpoints_up(c))).collect();
    let chain_labels = |c: &crate::config::chains::Chain, extra: Option<&str>| {
        let name = chains.name(&c.id).to_string();
        let mut pairs = vec![("moniker", app.metrics.moniker.as_str()), ("chain_id", c.id.as_str()), ("chain_name", name.as_str())];
        if let Some(endpoint) = extra {
            pairs.push(("endpoint", endpoint));
        }
        labels(&pairs)
    };
    family(
        out,
        "meshd_chain_healthy",
        "gauge",
        "1 when at least one of the chain's endpoints is usable (not benched after failures), else 0.",
        up.iter().map(|(c, up)| (chain_labels(c, None), u64::from(up.iter().any(|u| *u)))),
    );
    family(
        out,
        "meshd_chain_endpoint_healthy",
        "gauge",
        "1 while the chain endpoint (urls[i] of chains.json) is usable, 0 while it is benched after failures.",
        up.iter().flat_map(|(c, up)| up.iter().enumerate().map(move |(i, u)| (chain_labels(c, Some(&format!("urls[{i}]"))), u64::from(*u)))),
    );
}

/// Each listener's connections (relay, metrics, Spacemesh gateway and API).
fn render_listeners(out: &mut String, moniker: &str) {
    use std::sync::atomic::Ordering::Relaxed;
    let listeners = crate::http::server::stats();
    let each = |value: fn(&crate::http::server::ListenerStats) -> u64| {
        listeners.iter().map(move |l| (labels(&[("moniker", moniker), ("listener", l.name)]), value(l)))
    };
    family(out, "meshd_http_connections", "gauge", "Client connections open on the listener.", each(|l| l.open.load(Relaxed) as u64));
    family(
        out,
        "meshd_http_listener_paused",
        "gauge",
        "1 while the listener waits before accepting (connection cap reached with none idle, or descriptors exhausted).",
        each(|l| u64::from(l.paused.load(Relaxed))),
    );
    family(out, "meshd_http_listener_pauses_total", "counter", "Times the listener paused accepting.", each(|l| l.pauses.load(Relaxed)));
    family(
        out,
        "meshd_http_connections_closed_total",
        "counter",
        "Connections meshd closed: past a read/write deadline (timeout), idle at the cap (evicted), or a request head over the limit (head_too_large).",
        listeners.iter().flat_map(|l| {
            [("timeout", &l.closed_timeout), ("evicted", &l.closed_evicted), ("head_too_large", &l.refused_head_too_large)]
                .map(|(reason, value)| (labels(&[("moniker", moniker), ("listener", l.name), ("reason", reason)]), value.load(Relaxed)))
        }),
    );
}

/// Answer a scrape (any path, like the incumbent's promhttp handler) with text rendered from
/// live state.
pub async fn scrape(app: Rc<App>) -> Response {
    let store = app.queue.store().clone();
    let spacemesh_queue = app.spacemesh.borrow().as_ref().map(|s| s.queue.clone());
    let shannon_queue = app.shannon.borrow().as_ref().map(|e| e.queue.clone());
    let (queue, spacemesh_queue, shannon_queue) =
        smol::unblock(move || (store.stats(), spacemesh_queue.map(|q| q.counts()), shannon_queue.map(|q| q.counts()))).await;
    let text = render(&app, &Snapshot { queue, spacemesh_queue, shannon_queue });
    Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_linear_1_by_20() {
        assert_eq!(BUCKETS_MS[0], 1.0);
        assert_eq!(BUCKETS_MS[1], 21.0);
        assert_eq!(BUCKETS_MS[19], 381.0);
        let mut h = Histogram::default();
        for v in [0.5, 1.0, 1.5, 380.0, 1000.0] {
            h.observe(v);
        }
        assert_eq!(h.buckets[0], 2, "le is inclusive");
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[19], 1);
        assert_eq!(h.count, 5, "values above the last bucket only count in +Inf");
        assert_eq!(h.sum, 1383.0);
    }

    #[test]
    fn families_render_with_the_incumbent_labels() {
        let m = Metrics::new("geo \"mesh\"", true, [("0021".to_string(), "eth-mainnet".to_string())].into());
        let servicer = [0xAB; 20];
        m.relay(RelayObservation {
            chain: "0021",
            servicer: Some(&servicer),
            status_code: 200,
            success: true,
            total: Duration::from_millis(30),
            chain_call: Some(Duration::from_millis(25)),
        });
        m.error("0040", None, false, "bad_request", 74);
        m.chain_call("0021", 200, Duration::from_millis(25));
        m.notify("0021", &servicer, 200, true);
        let mut out = String::new();
        m.render_geo_mesh(&mut out);
        let base = format!(
            "moniker=\"geo \\\"mesh\\\"\",chain_id=\"0021\",chain_name=\"eth-mainnet\",is_notify=\"false\",success=\"true\",status_code=\"200\",servicer_address=\"{}\"",
            "ab".repeat(20)
        );
        assert!(out.contains(&format!("pocketcore_geo_mesh_relay_count{{{base}}} 1\n")), "{out}");
        assert!(out.contains(&format!("pocketcore_geo_mesh_relay_time_bucket{{{base},le=\"21\"}} 0\n")), "{out}");
        assert!(out.contains(&format!("pocketcore_geo_mesh_relay_time_bucket{{{base},le=\"41\"}} 1\n")), "{out}");
        assert!(out.contains(&format!("pocketcore_geo_mesh_relay_handler_time_bucket{{{base},le=\"21\"}} 1\n")), "{out}");
        assert!(out.contains(&format!("pocketcore_geo_mesh_relay_time_sum{{{base}}} 30\n")), "{out}");
        assert!(out.contains("is_notify=\"true\""), "{out}");
        assert!(out.contains("status_type=\"bad_request\",status_code=\"74\",success=\"false\""), "{out}");
        assert!(out.contains("chain_name=\"0040\""), "unknown chains fall back to the id: {out}");
        assert!(
            out.contains(
                "pocketcore_geo_mesh_chain_time_count{moniker=\"geo \\\"mesh\\\"\",chain_id=\"0021\",chain_name=\"eth-mainnet\",status_code=\"200\"} 1\n"
            ),
            "{out}"
        );
        assert_eq!(out.matches("# TYPE pocketcore_geo_mesh_relay_time histogram").count(), 1);
        assert_eq!(m.served_by(&servicer), 1);
    }

    #[test]
    fn the_recent_window_gives_rate_and_quantiles_of_the_last_minute() {
        let mut w = RecentWindow::default();
        assert_eq!(w.stats(1000).p50_ms, None);
        // 99 fast calls (2 ms) and one slow (500 ms) in second 1000, 20 more (2 ms) in 1030.
        for _ in 0..99 {
            w.observe(1000, 2.0, false);
        }
        w.observe(1000, 500.0, true);
        for _ in 0..20 {
            w.observe(1030, 2.0, false);
        }
        let s = w.stats(1030);
        assert_eq!((s.count, s.errors), (120, 1));
        assert_eq!(s.per_second, 2.0);
        let p50 = s.p50_ms.unwrap();
        assert!((2.0..2.5).contains(&p50), "p50 {p50}");
        let p99 = s.p99_ms.unwrap();
        assert!((2.0..2.5).contains(&p99), "1 in 120 is above p99: {p99}");
        // A minute later second 1000 has left the window; the same slot reused is reset.
        let s = w.stats(1060);
        assert_eq!(s.count, 20);
        w.observe(1060, 300.0, false);
        let s = w.stats(1060);
        assert_eq!(s.count, 21);
        let p99 = s.p99_ms.unwrap();
        assert!((300.0..375.0).contains(&p99), "p99 {p99}");
        assert_eq!(w.stats(1200).count, 0);
    }

    #[test]
    fn servicer_label_only_when_asked() {
        let m = Metrics::new("x", false, BTreeMap::new());
        m.relay(RelayObservation { chain: "0021", servicer: Some(&[1; 20]), status_code: 400, success: false, total: Duration::ZERO, chain_call: None });
        let mut out = String::new();
        m.render_geo_mesh(&mut out);
        assert!(!out.contains("servicer_address"), "{out}");
    }
}
