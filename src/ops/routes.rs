//! Operator routes: the identity-state history API, the status page and its JSON.
//!
//! - `GET /v1/private/mesh/states` and `GET /v1/private/mesh/status`: behind the mesh token
//!   (`Authorization: <auth_token_file Value>`), like every private route. A missing or empty
//!   token file never means "open" (the incumbent's quirk).
//! - `GET /status` (+ `/status/status.js`, `/status/status.css`): the page itself is static
//!   and carries no data, so it is served without the token; its script asks for the token
//!   (or takes it from the URL *fragment*, `/status#token=…`, which browsers never send to a
//!   server or put in access logs), keeps it in `sessionStorage`, and polls the status JSON
//!   with it in the `Authorization` header. So the page works from anywhere the relay port is
//!   reachable (SSH tunnel, LAN) while every byte of data stays behind the token — no
//!   loopback-only rule that a reverse proxy in front of meshd would silently defeat.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use serde_json::{json, Value};

use crate::app::App;
use crate::http::reply::{http_error, Reply};
use crate::ops::overall::Signals;
use crate::ops::states::{parse_time, to_json, IdentityState};
use crate::queue::StateQuery;
use crate::relay::service::redact_url;

const PAGE_HTML: &str = include_str!("status/status.html");
const PAGE_JS: &str = include_str!("status/status.js");
const PAGE_CSS: &str = include_str!("status/status.css");

/// Most states one query returns (Spacemesh's cap).
pub const MAX_LIMIT: usize = 100;
/// Recent transitions in the status JSON.
pub const STATUS_RECENT: usize = 20;

/// The operator routes; None when the path is not one of them.
pub async fn route(app: &Rc<App>, method: &str, path: &str, query: &str, authorization: Option<&str>) -> Option<Reply> {
    let reply = match (method, path) {
        ("GET", "/status" | "/status/") => static_file(PAGE_HTML, "text/html; charset=utf-8"),
        ("GET", "/status/status.js") => static_file(PAGE_JS, "text/javascript; charset=utf-8"),
        ("GET", "/status/status.css") => static_file(PAGE_CSS, "text/css; charset=utf-8"),
        ("GET", "/v1/private/mesh/states") => match authorize(app, authorization) {
            Ok(()) => states(app, query).await,
            Err(reply) => reply,
        },
        ("GET", "/v1/private/mesh/status") => match authorize(app, authorization) {
            Ok(()) => status(app).await,
            Err(reply) => reply,
        },
        _ => return None,
    };
    Some(reply)
}

fn static_file(body: &'static str, content_type: &'static str) -> Reply {
    Reply { status: 200, content_type: content_type.into(), body: body.as_bytes().to_vec(), cors: false }
}

/// The private routes' check: `Authorization` must equal the mesh token. The supplied value
/// is never echoed or logged.
pub fn authorize(app: &App, authorization: Option<&str>) -> Result<(), Reply> {
    if crate::ops::private_api::authorized(app.mesh_token.as_deref(), authorization.map(str::trim)) {
        Ok(())
    } else {
        Err(http_error(401, "wrong Authorization"))
    }
}

fn json_reply(value: &Value) -> Reply {
    crate::http::reply::json_value(value)
}

/// `application/x-www-form-urlencoded` decoding of one query component.
fn decode_component(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad percent-encoding in {s:?}"))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("query parameter {s:?} is not UTF-8"))
}

/// Parse `address=&state=&from=&to=&limit=&order=` (address and state may repeat or be
/// comma-separated). `limit` defaults to 100 and must be 1..=100; `order` is `asc` (or `0`,
/// the default) or `desc` (or `1`); `from` is inclusive, `to` exclusive, both RFC 3339 or
/// unix seconds.
pub fn parse_state_query(query: &str) -> Result<StateQuery, String> {
    let mut q = StateQuery { limit: MAX_LIMIT, ..Default::default() };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode_component(name)?, decode_component(value)?);
        match name.as_str() {
            "address" | "servicer" | "addresses" => {
                for a in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    let mut address = [0u8; 20];
                    hex::decode_to_slice(a, &mut address).map_err(|_| format!("address {a:?} is not a 40-hex servicer address"))?;
                    q.addresses.insert(address);
                }
            }
            "state" | "states" => {
                for s in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let state = IdentityState::parse(s).ok_or_else(|| {
                        let names: Vec<&str> = crate::ops::states::ALL_STATES.iter().map(|s| s.name()).collect();
                        format!("unknown state {s:?} (known: {})", names.join(", "))
                    })?;
                    q.states.insert(state as u8);
                }
            }
            "from" => q.from_us = Some(parse_time(&value)?),
            "to" => q.to_us = Some(parse_time(&value)?),
            "limit" => {
                let limit: usize = value.parse().map_err(|_| format!("limit {value:?} is not a number"))?;
                if limit == 0 {
                    return Err("limit must be set to <= 100 and > 0".into());
                }
                if limit > MAX_LIMIT {
                    return Err("limit is capped at 100".into());
                }
                q.limit = limit;
            }
            "order" => {
                q.descending = match value.to_ascii_lowercase().as_str() {
                    "asc" | "0" => false,
                    "desc" | "1" => true,
                    other => return Err(format!("order {other:?}: expected asc (0) or desc (1)")),
                }
            }
            other => return Err(format!("unknown query parameter {other:?} (address, state, from, to, limit, order)")),
        }
    }
    if let (Some(from), Some(to)) = (q.from_us, q.to_us) {
        if from >= to {
            return Err("from must be before to".into());
        }
    }
    Ok(q)
}

/// `GET /v1/private/mesh/states`: `{"states":[IdentityStateInfo…]}` in time order.
async fn states(app: &App, query: &str) -> Reply {
    let query = match parse_state_query(query) {
        Ok(q) => q,
        Err(e) => return http_error(400, &e),
    };
    let store = app.queue.store().clone();
    match smol::unblock(move || store.query_states(&query)).await {
        Ok(records) => json_reply(&json!({ "states": records.iter().map(to_json).collect::<Vec<_>>() })),
        Err(e) => {
            log::error!("event=states_query_failed error={e:?}");
            http_error(500, &format!("cannot read the state history: {e}"))
        }
    }
}

/// `GET /v1/private/mesh/status`: what the status page shows, in one poll.
async fn status(app: &App) -> Reply {
    let store = app.queue.store().clone();
    let (queue, pending, dead) = smol::unblock(move || (store.stats(), store.pending_by_servicer_key(), crate::queue::cli::dead_summary(&store, None))).await;
    let pending: BTreeMap<[u8; 20], u64> = pending
        .unwrap_or_else(|e| {
            log::warn!("event=status_pending_failed error={e:?}");
            BTreeMap::new()
        })
        .into_iter()
        .map(|(key, n)| (crate::protocol::address_of(&key), n))
        .collect();
    let sessions: BTreeMap<[u8; 20], usize> = app.sessions.ready_by_servicer().into_iter().map(|(key, n)| (crate::protocol::address_of(&key), n)).collect();

    let counters: serde_json::Map<String, Value> = app.counters.export().into_iter().map(|(name, _, v)| (name.to_string(), json!(v))).collect();
    let mut nodes = Vec::new();
    let mut addresses = Vec::new();
    let mut seen = HashSet::new();
    let current = app.states.current_all();
    let fleet = app.fleet();
    for node in fleet.nodes.iter() {
        let gate = node.gate();
        let (last, last_error) = node.view();
        nodes.push(json!({
            "name": node.name,
            "url": redact_url(&node.url()),
            "failovers": node.failovers(),
            "urls": node.urls.len(),
            "healthy": gate.is_ok(),
            "reason": gate.as_ref().err().map(|e| e.message.clone()),
            "height": last.as_ref().map(|s| s.height),
            "version": last.as_ref().map(|s| s.version.clone()),
            "checked_seconds_ago": last.as_ref().map(|s| s.checked_at.elapsed().as_secs()),
            "last_error": last_error,
            "servicers": node.address_bytes.len(),
        }));
        for address in node.address_bytes.iter() {
            if !seen.insert(*address) {
                continue;
            }
            addresses.push(json!({
                "address": hex::encode(address),
                "node": node.name,
                "sessions": sessions.get(address).copied().unwrap_or(0),
                "served": app.metrics.served_by(address),
                "pending": pending.get(address).copied().unwrap_or(0),
                "state": current.get(address).map(to_json),
            }));
        }
    }
    let queue_json = match &queue {
        Ok(q) => json!({
            "pending": q.pending,
            "dead_letters": q.dead,
            "used_bytes": q.used_bytes,
            "map_bytes": q.map_bytes,
            "admission_limit_bytes": q.admission_limit_bytes,
        }),
        Err(e) => json!({ "error": e }),
    };
    let mut signals = Signals {
        nodes: fleet.nodes.len(),
        unhealthy: fleet.nodes.iter().filter_map(|n| n.gate().err().map(|e| (n.name.clone(), e.message))).collect(),
        listener_problem: listener_problem(app),
        notify_failing: fleet.nodes.iter().map(|n| (n.name.clone(), app.notifier.failures(n))).filter(|(_, f)| *f > 0).collect(),
        notify_backlog: app.states.addresses_in(&[IdentityState::NotifyBacklog]).len(),
        ..Default::default()
    };
    match &queue {
        Ok(q) => {
            signals.dead_letters = q.dead;
            signals.queue_used_bytes = q.used_bytes;
            signals.queue_admission_limit_bytes = q.admission_limit_bytes;
        }
        Err(e) => signals.queue_error = Some(e.clone()),
    }
    let chain_set = app.chains();
    let mut chain_ids: Vec<&String> = chain_set.by_id.keys().collect();
    chain_ids.sort();
    let mut chains = Vec::new();
    for id in chain_ids {
        let chain = &chain_set.by_id[id];
        let up = app.chain_health.endpoints_up(chain);
        for (i, _) in up.iter().enumerate().filter(|(_, u)| !**u) {
            signals.chain_endpoints_benched.push((id.clone(), format!("urls[{i}]")));
        }
        if !up.iter().any(|u| *u) {
            signals.chains_down.push(id.clone());
        }
        let recent = app.metrics.recent_chain(id);
        chains.push(json!({
            "id": id,
            "name": chain_set.name(id),
            "healthy": up.iter().any(|u| *u),
            "endpoints": up.len(),
            "endpoints_up": up.iter().filter(|u| **u).count(),
            "failovers": app.chain_health.failovers(id),
            "calls_last_minute": recent.count,
            "errors_last_minute": recent.errors,
            "p50_ms": recent.p50_ms,
            "p99_ms": recent.p99_ms,
        }));
    }
    let data_dir = app.data_dir.display().to_string();
    let dead_letters: Vec<Value> = dead
        .unwrap_or_else(|e| {
            log::warn!("event=status_dead_letters_failed error={}", crate::logline::value_text(&e));
            Vec::new()
        })
        .into_iter()
        .map(|g| {
            json!({
                "servicer": g.servicer,
                "reason": g.reason,
                "count": g.count,
                "first": crate::queue::cli::time_ms(g.first_ms),
                "last": crate::queue::cli::time_ms(g.last_ms),
                "replay": crate::queue::cli::replay_command(&data_dir, &g.servicer),
            })
        })
        .collect();
    let recent = app.metrics.recent_relays();
    let rejections: Vec<Value> = app.metrics.rejections().into_iter().map(|(kind, code, count)| json!({"type": kind, "code": code, "count": count})).collect();
    let overall = crate::ops::overall::overall(&signals);
    let started = app.metrics.started();
    json_reply(&json!({
        "overall": overall,
        "last_minute": {
            "window_seconds": crate::ops::metrics::WINDOW_SECONDS,
            "relays": recent.count,
            "errors": recent.errors,
            "relays_per_second": recent.per_second,
            "p50_ms": recent.p50_ms,
            "p99_ms": recent.p99_ms,
        },
        "rejections": rejections,
        "chains": chains,
        "dead_letters": dead_letters,
        "version": env!("CARGO_PKG_VERSION"),
        "moniker": app.metrics.moniker(),
        "started": crate::ops::states::rfc3339(crate::timefmt::unix_micros(started)),
        "uptime_seconds": started.elapsed().unwrap_or_default().as_secs(),
        "now": crate::ops::states::rfc3339(crate::ops::states::now_us()),
        "nodes": nodes,
        "addresses": addresses,
        "queue": queue_json,
        "counters": counters,
        "session_cache_entries": app.sessions.len(),
        "notify_in_flight": app.notifier.in_flight(&fleet),
        "recent_states": app.states.recent(STATUS_RECENT).iter().map(to_json).collect::<Vec<_>>(),
    }))
}

/// Why the relay listener does not take new relays right now, if it does not.
fn listener_problem(app: &App) -> Option<String> {
    if app.stop.is_requested() {
        return Some("shutting down".into());
    }
    let listeners = crate::http::server::stats();
    let relay = listeners.iter().find(|l| l.name == "relay")?;
    relay.paused.load(std::sync::atomic::Ordering::Relaxed).then(|| "accepting paused (connection cap reached or descriptors exhausted)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_queries_parse_with_spacemesh_limits() {
        let q = parse_state_query("").unwrap();
        assert_eq!((q.limit, q.descending), (100, false));
        let a = "ab".repeat(20);
        let q = parse_state_query(&format!(
            "address={a}&state=SESSION_ACTIVE,3&state=dead_lettered&limit=5&order=desc&from=2024-11-18T12%3A39%3A18Z&to=1800000000"
        ))
        .unwrap();
        assert_eq!(q.addresses.len(), 1);
        assert_eq!(q.states, [3u8, 8].into_iter().collect());
        assert_eq!((q.limit, q.descending), (5, true));
        assert_eq!(q.from_us, Some(1_731_933_558_000_000));
        assert_eq!(q.to_us, Some(1_800_000_000_000_000));
        assert!(parse_state_query("order=1").unwrap().descending);
        for (bad, why) in [
            ("limit=101", "capped at 100"),
            ("limit=0", "> 0"),
            ("limit=x", "not a number"),
            ("order=up", "asc"),
            ("state=NOPE", "unknown state"),
            ("address=xyz", "40-hex"),
            ("from=soon", "invalid time"),
            ("from=200&to=100", "before"),
            ("color=red", "unknown query parameter"),
            ("address=%zz", "percent-encoding"),
        ] {
            let e = parse_state_query(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
