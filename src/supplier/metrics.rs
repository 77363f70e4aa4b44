//! The Shannon edge's figures in the Prometheus exposition (`meshd_shannon_*`): relays served,
//! mined and refused (by reason), the hand-off's progress and Redis state, and the mined-relay
//! queue's stored counts.

use std::sync::atomic::Ordering;

use super::mined_queue::MinedCounts;
use super::Edge;
use crate::ops::metrics::{family, labels};

/// Append every `meshd_shannon_*` family. `stored`: the mined queue's counts (an LMDB read the
/// caller made off the executor), None if it was not read.
pub fn render(out: &mut String, moniker: &str, edge: &Edge, stored: Option<&Result<MinedCounts, String>>) {
    let m = labels(&[("moniker", moniker)]);
    let one = |value: u64| [(m.clone(), value)];
    family(out, "meshd_shannon_suppliers", "gauge", "Shannon supplier keys loaded.", one(edge.supplier_addresses().len() as u64));
    family(
        out,
        "meshd_shannon_relays_served_total",
        "counter",
        "Shannon relays answered 200 with a supplier-signed response.",
        one(edge.counters.served.get()),
    );
    family(
        out,
        "meshd_shannon_relays_mined_total",
        "counter",
        "Served relays below the difficulty target, committed for the hand-off.",
        one(edge.counters.mined.get()),
    );
    family(
        out,
        "meshd_shannon_relays_not_claimable_total",
        "counter",
        "Served relays that cannot be claimed (claim window open or backend 5xx), not mined.",
        one(edge.counters.not_claimable.get()),
    );
    let refusals: Vec<(String, u64)> = edge.refusals.borrow().iter().map(|(reason, n)| (labels(&[("moniker", moniker), ("reason", reason)]), *n)).collect();
    family(out, "meshd_shannon_relays_refused_total", "counter", "Shannon relays refused, by reason.", refusals);
    let h = &edge.handoff.stats;
    family(out, "meshd_shannon_handoff_total", "counter", "Mined relays added to their supplier's Redis stream.", one(h.handed_off.load(Ordering::Relaxed)));
    family(
        out,
        "meshd_shannon_handoff_already_in_stream_total",
        "counter",
        "Re-sent mined relays the stream already had (deduplicated by relay hash).",
        one(h.already_in_stream.load(Ordering::Relaxed)),
    );
    family(out, "meshd_shannon_handoff_refused_total", "counter", "Redis error replies for single mined relays.", one(h.refused.load(Ordering::Relaxed)));
    family(
        out,
        "meshd_shannon_handoff_dead_lettered_total",
        "counter",
        "Mined relays moved to the dead letters.",
        one(h.dead_lettered.load(Ordering::Relaxed)),
    );
    family(out, "meshd_shannon_redis_failures_total", "counter", "Failed Redis connects or pipelines.", one(h.redis_failures.load(Ordering::Relaxed)));
    family(out, "meshd_shannon_redis_up", "gauge", "1 while the hand-off's last Redis exchange succeeded.", one(u64::from(h.redis_up.load(Ordering::Relaxed))));
    if let Some(Ok(c)) = stored {
        let states = [("pending", c.pending), ("dead", c.dead)];
        family(
            out,
            "meshd_shannon_queue_relays",
            "gauge",
            "Mined relays stored in LMDB, by state.",
            states.iter().map(|(state, n)| (labels(&[("moniker", moniker), ("state", state)]), *n)),
        );
    }
}
