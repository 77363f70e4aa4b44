//! The Spacemesh gateway's counters in the Prometheus exposition (`meshd_spacemesh_*`): the
//! same figures as `GET /_meshd/spacemesh/stats`, per upstream (pool `node` = node services,
//! `v2` = JSON API nodes), per smeshing-service client and per publish outcome.

use std::fmt::Write;

use super::publish_queue::QueueCounts;
use super::upstream::{Health, Pool, Upstream};
use super::State;
use crate::metrics::{header, labels};

/// Append every `meshd_spacemesh_*` family. `stored`: the publish queue's counts (an LMDB read
/// the caller made off the executor), None if it was not read.
pub fn render(out: &mut String, moniker: &str, state: &State, stored: Option<&Result<QueueCounts, String>>) {
    let pools: Vec<(&str, &Pool)> = std::iter::once(("node", &*state.nodes)).chain(state.v2.as_deref().map(|v2| ("v2", v2))).collect();
    let upstream_series = |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&Upstream) -> u64| {
        header(out, name, kind, help);
        for (pool, p) in &pools {
            for u in &p.upstreams {
                let _ = writeln!(out, "{name}{} {}", labels(&[("moniker", moniker), ("pool", pool), ("upstream", &u.url)]), value(u));
            }
        }
    };
    upstream_series(
        out,
        "meshd_spacemesh_upstream_ready",
        "gauge",
        "1 when the upstream answers (node services: synced), else 0.",
        &|u| u64::from(u.health.get() == Health::Ready),
    );
    upstream_series(out, "meshd_spacemesh_upstream_requests_total", "counter", "Attempts sent to the upstream.", &|u| {
        u.counters.requests.get()
    });
    upstream_series(
        out,
        "meshd_spacemesh_upstream_failures_total",
        "counter",
        "Attempts that failed over to the next upstream (no connection, timeout, 502/503/504).",
        &|u| u.counters.failures.get(),
    );
    upstream_series(
        out,
        "meshd_spacemesh_upstream_failovers_total",
        "counter",
        "Times traffic moved away from the upstream while it was the sticky one.",
        &|u| u.counters.failovers.get(),
    );
    upstream_series(
        out,
        "meshd_spacemesh_upstream_publishes_delivered_total",
        "counter",
        "Queued publishes the upstream accepted.",
        &|u| u.counters.publishes_delivered.get(),
    );

    let clients = state.clients.borrow();
    let client_series = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&super::ClientCounters) -> u64| {
        header(out, name, "counter", help);
        for (client, c) in clients.iter() {
            let _ = writeln!(out, "{name}{} {}", labels(&[("moniker", moniker), ("client", client)]), value(c));
        }
    };
    client_series(out, "meshd_spacemesh_client_requests_total", "Node-service requests from the client (IP; \"other\" past the client limit).", &|c| {
        c.requests
    });
    client_series(out, "meshd_spacemesh_client_api_requests_total", "v2 API requests from the client.", &|c| c.api_requests);
    client_series(out, "meshd_spacemesh_client_publishes_total", "Publishes from the client.", &|c| c.publishes);

    let p = &state.publishes;
    header(out, "meshd_spacemesh_publishes_total", "counter", "Publishes by outcome since meshd started.");
    for (outcome, value) in [
        ("queued", p.queued.get()),
        ("duplicate", p.duplicates.get()),
        ("delivered_inline", p.delivered_inline.get()),
        ("delivered_queued", p.delivered_queued.get()),
        ("rejected", p.rejected.get()),
        ("retry", p.retries.get()),
        ("refused_full", p.refused_full.get()),
        ("expired", p.expired.get()),
    ] {
        let _ = writeln!(out, "meshd_spacemesh_publishes_total{} {value}", labels(&[("moniker", moniker), ("outcome", outcome)]));
    }
    if let Some(Ok(q)) = stored {
        header(out, "meshd_spacemesh_publish_queue", "gauge", "Publishes in the durable queue by state.");
        for (state, value) in [
            ("pending", q.pending),
            ("delivered", q.delivered),
            ("rejected", q.rejected),
            ("expired", q.expired),
            ("undecodable", q.undecodable),
        ] {
            let _ = writeln!(out, "meshd_spacemesh_publish_queue{} {value}", labels(&[("moniker", moniker), ("state", state)]));
        }
    }
}
