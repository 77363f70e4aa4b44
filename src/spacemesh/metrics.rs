//! The Spacemesh gateway's counters in the Prometheus exposition (`meshd_spacemesh_*`): the
//! same figures as `GET /_meshd/spacemesh/stats`, per upstream (pool `node` = node services,
//! `v2` = JSON API nodes), per smeshing-service client and per publish outcome.

use super::publish_queue::QueueCounts;
use super::upstream::{Health, Pool, Upstream};
use super::{ClientCounters, State};
use crate::ops::metrics::{family, labels};

/// Append every `meshd_spacemesh_*` family. `stored`: the publish queue's counts (an LMDB read
/// the caller made off the executor), None if it was not read.
pub fn render(out: &mut String, moniker: &str, state: &State, stored: Option<&Result<QueueCounts, String>>) {
    let pools: Vec<(&str, &Pool)> = std::iter::once(("node", &*state.nodes)).chain(state.v2.as_deref().map(|v2| ("v2", v2))).collect();
    let upstreams = |value: fn(&Upstream) -> u64| {
        pools
            .iter()
            .flat_map(move |(pool, p)| p.upstreams.iter().map(move |u| (labels(&[("moniker", moniker), ("pool", pool), ("upstream", &u.url)]), value(u))))
    };
    family(
        out,
        "meshd_spacemesh_upstream_ready",
        "gauge",
        "1 when the upstream answers (node services: synced), else 0.",
        upstreams(|u| u64::from(u.health.get() == Health::Ready)),
    );
    family(out, "meshd_spacemesh_upstream_requests_total", "counter", "Attempts sent to the upstream.", upstreams(|u| u.counters.requests.get()));
    family(
        out,
        "meshd_spacemesh_upstream_failures_total",
        "counter",
        "Attempts that failed over to the next upstream (no connection, timeout, 502/503/504).",
        upstreams(|u| u.counters.failures.get()),
    );
    family(
        out,
        "meshd_spacemesh_upstream_failovers_total",
        "counter",
        "Times traffic moved away from the upstream while it was the sticky one.",
        upstreams(|u| u.counters.failovers.get()),
    );
    family(
        out,
        "meshd_spacemesh_upstream_publishes_delivered_total",
        "counter",
        "Queued publishes the upstream accepted.",
        upstreams(|u| u.counters.publishes_delivered.get()),
    );

    let clients = state.clients.borrow();
    let per_client = |value: fn(&ClientCounters) -> u64| clients.iter().map(move |(client, c)| (labels(&[("moniker", moniker), ("client", client)]), value(c)));
    family(
        out,
        "meshd_spacemesh_client_requests_total",
        "counter",
        "Node-service requests from the client (IP; \"other\" past the client limit).",
        per_client(|c| c.requests),
    );
    family(out, "meshd_spacemesh_client_api_requests_total", "counter", "v2 API requests from the client.", per_client(|c| c.api_requests));
    family(out, "meshd_spacemesh_client_publishes_total", "counter", "Publishes from the client.", per_client(|c| c.publishes));

    let p = &state.publishes;
    let outcomes = [
        ("queued", p.queued.get()),
        ("duplicate", p.duplicates.get()),
        ("delivered_inline", p.delivered_inline.get()),
        ("delivered_queued", p.delivered_queued.get()),
        ("rejected", p.rejected.get()),
        ("retry", p.retries.get()),
        ("refused_full", p.refused_full.get()),
        ("expired", p.expired.get()),
    ];
    family(
        out,
        "meshd_spacemesh_publishes_total",
        "counter",
        "Publishes by outcome since meshd started.",
        outcomes.map(|(outcome, value)| (labels(&[("moniker", moniker), ("outcome", outcome)]), value)),
    );
    if let Some(Ok(q)) = stored {
        let states = [("pending", q.pending), ("delivered", q.delivered), ("rejected", q.rejected), ("expired", q.expired), ("undecodable", q.undecodable)];
        family(
            out,
            "meshd_spacemesh_publish_queue",
            "gauge",
            "Publishes in the durable queue by state.",
            states.map(|(state, value)| (labels(&[("moniker", moniker), ("state", state)]), value)),
        );
    }
}
