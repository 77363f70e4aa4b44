//! meshd's private routes (`/v1/private/mesh/*`), for operators and their tooling. Every request
//! must carry `Authorization: <auth_token_file Value>` (compared in constant time); without it
//! the answer is `401 {"code":401,"message":"wrong Authorization"}`. Unlike the incumbent the
//! supplied value is never echoed (it would end up in client and proxy logs), and a missing
//! token never means "open".
//!
//! - `GET  …/health`       nodes (URLs, health, height, failovers), servicers, version, queue, orphans, reloads
//! - `POST …/chains`       the chains as in chains.json (with basic-auth passwords: authenticated only)
//! - `POST …/servicers`    `[{"address":…}]`
//! - `POST …/updatechains` validate a chains array, rewrite chains.json atomically, swap it in
//! - `POST …/stop`         ask the daemon to stop (see `App::request_stop`)

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::config::chains::{chain_to_json, chains_to_json, parse_chains};
use crate::http::reply::{http_error, Reply};
use crate::http::server::Request;
use crate::relay::chain::ChainSet;

pub const PREFIX: &str = "/v1/private/mesh/";

/// Requests refused for a wrong or missing token, since start.
static UNAUTHORIZED: AtomicU64 = AtomicU64::new(0);

pub async fn handle(app: &Rc<App>, method: &str, path: &str, request: &Request, body: Vec<u8>) -> Reply {
    let supplied = request.header("Authorization");
    if !authorized(app.mesh_token.as_deref(), supplied) {
        // Logged, but sparsely: unauthenticated clients must not be able to flood the log.
        let n = UNAUTHORIZED.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n % 1000 == 0 {
            log::warn!("event=private_unauthorized count={n} path={path:?} remote={}", request.peer.ip());
        }
        return http_error(401, "wrong Authorization");
    }
    let route = &path[PREFIX.len()..];
    let expected = match route {
        "health" => "GET",
        "chains" | "servicers" | "updatechains" | "stop" => "POST",
        _ => return http_error(404, &format!("no route for {method} {path}")),
    };
    if method != expected {
        return http_error(405, &format!("{path} takes {expected}, not {method}"));
    }
    match route {
        "health" => health(app).await,
        "chains" => json_reply(chains_to_json(&app.chains().sorted())),
        "servicers" => servicers(app),
        "updatechains" => update_chains(app, &body).await,
        _ => stop(app),
    }
}

/// Constant-time comparison of fixed-size SHA-256 digests, so response timing says nothing
/// about how much of a guess was right, nor (no early return on a length mismatch) how long
/// the token is.
pub fn authorized(token: Option<&str>, supplied: Option<&str>) -> bool {
    use sha2::Digest;
    let (Some(token), Some(supplied)) = (token, supplied) else { return false };
    if token.is_empty() {
        return false;
    }
    let (a, b) = (sha2::Sha256::digest(token.as_bytes()), sha2::Sha256::digest(supplied.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_reply(v: Value) -> Reply {
    crate::http::reply::json_value(&v)
}

fn servicers(app: &App) -> Reply {
    let fleet = app.fleet();
    let list: Vec<Value> = fleet.nodes.iter().flat_map(|n| n.addresses.iter()).map(|a| json!({ "address": a })).collect();
    json_reply(Value::Array(list))
}

fn stop(app: &App) -> Reply {
    log::warn!("event=stop_requested source=private_route");
    app.request_stop();
    json_reply(json!({"code": 200, "message": "meshd is stopping"}))
}

async fn health(app: &Rc<App>) -> Reply {
    let fleet = app.fleet();
    let chains = app.chains();
    let now = Instant::now();
    let mut healthy_nodes = 0;
    let nodes: Vec<Value> = fleet
        .nodes
        .iter()
        .map(|node| {
            let gate = node.gate();
            healthy_nodes += usize::from(gate.is_ok());
            let current = node.urls.iter().find(|u| node.is_current(u));
            let (wrong_servicers, wrong_chains) = current
                .or(node.urls.first())
                .map(|u| {
                    let h = u.health.borrow();
                    (h.wrong_servicers.clone(), h.wrong_chains.clone())
                })
                .unwrap_or_default();
            let urls: Vec<Value> = node
                .urls
                .iter()
                .map(|u| {
                    let h = u.health.borrow();
                    let (calls, errors) = u.call_counts();
                    json!({
                        "url": app.shown_url(&u.url),
                        "current": node.is_current(u),
                        "healthy": h.gate(node.stale_after()).is_ok(),
                        "usable": u.usable(now, node.stale_after()),
                        "height": h.status().map(|s| s.height),
                        "last_check_ok_ms_ago": h.last_ok().map(|t| now.duration_since(t).as_millis() as u64),
                        "check_error": h.last_error(),
                        "benched_ms": u.bench.benched_until(now).map(|t| t.duration_since(now).as_millis() as u64).unwrap_or(0),
                        "failures": u.bench.failures(),
                        "last_failure": Some(u.last_failure_reason()).filter(|r| !r.is_empty()),
                        "latency_ms": u.latency_ms().map(|l| (l * 10.0).round() / 10.0),
                        "calls": calls,
                        "errors": errors,
                        "wrong_servicers": h.wrong_servicers,
                        "wrong_chains": h.wrong_chains,
                    })
                })
                .collect();
            json!({
                "name": node.name,
                "healthy": gate.is_ok(),
                "error": gate.as_ref().err().map(|e| e.message.clone()),
                "height": gate.as_ref().ok().map(|s| s.height),
                "url": app.shown_url(&node.url()),
                "failovers": node.failovers(),
                "servicers": node.addresses.len(),
                "wrong_servicers": wrong_servicers,
                "wrong_chains": wrong_chains,
                "urls": urls,
            })
        })
        .collect();

    // Queue depth and orphans (pending relays of addresses no node owns) read LMDB: off-thread.
    let store = app.queue.store().clone();
    let queue = smol::unblock(move || store.stats().and_then(|st| store.pending_by_servicer().map(|by| (st, by)))).await;
    let (queue_json, orphaned) = match queue {
        Ok((st, by_servicer)) => {
            let mut orphans = BTreeMap::new();
            for (address, count) in by_servicer {
                let mut bytes = [0u8; 20];
                let owned = hex::decode_to_slice(&address, &mut bytes).is_ok() && fleet.owns_address(&bytes);
                if !owned {
                    orphans.insert(address, count);
                }
            }
            let total: u64 = orphans.values().sum();
            (
                json!({
                    "pending": st.pending,
                    "dead": st.dead,
                    "in_flight": app.notifier.in_flight(&fleet),
                    "used_bytes": st.used_bytes,
                    "map_bytes": st.map_bytes,
                }),
                json!({"pending": total, "servicers": orphans}),
            )
        }
        Err(e) => (json!({"error": e}), Value::Null),
    };
    let edge = app.shannon.borrow().clone();
    let shannon = match edge {
        Some(edge) => {
            let queue = edge.queue.clone();
            let stored = smol::unblock(move || queue.counts()).await;
            edge.status_json(stored)
        }
        None => Value::Null,
    };
    let c = &app.counters;
    json_reply(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "shannon": shannon,
        "full_nodes": fleet.nodes.len(),
        "healthy_nodes": healthy_nodes,
        "servicers": fleet.servicer_count(),
        "chains": chains.len(),
        "nodes": nodes,
        "queue": queue_json,
        "orphaned": orphaned,
        "reload": app.reload.status_json(),
        "counters": {
            "served": c.served.get(),
            "rejected": c.rejected.get(),
            "notified": c.notified.get(),
            "dead_lettered": c.dead_lettered.get(),
            "failovers": c.failovers.get(),
            "chain_failovers": c.chain_failovers.get(),
            "reloads": c.reloads.get(),
            "reload_failures": c.reload_failures.get(),
            "proxied": c.proxied.get(),
            "proxy_errors": c.proxy_errors.get(),
        },
    }))
}

/// Validate the posted chains, write chains.json (temp file + rename), then swap them in. On
/// any error nothing changes: the file and the running set stay as they were.
async fn update_chains(app: &Rc<App>, body: &[u8]) -> Reply {
    let Ok(text) = std::str::from_utf8(body) else { return http_error(400, "body is not UTF-8") };
    let chains = match parse_chains(text, Path::new("updatechains body")) {
        Ok(chains) => chains,
        Err(e) => return http_error(400, &e.to_string()),
    };
    if chains.is_empty() {
        return http_error(400, "refusing an empty chain list: every relay would be rejected");
    }
    let path = app.resolve(&app.settings.chains_name);
    // Serialized with the chains hot reload, which could otherwise swap the old file back in.
    let _guard = app.reload.chains_lock().await;
    let (write_path, to_write) = (path.clone(), chains.clone());
    let written = match smol::unblock(move || crate::config::chains::write_chains_file(&write_path, &to_write)).await {
        Ok(bytes) => bytes,
        Err(e) => {
            log::error!("event=updatechains_failed error={e}");
            return http_error(500, &e.to_string());
        }
    };
    let names = app.chains().names.clone();
    let set = ChainSet::new(chains, names);
    let mut answer = Map::new();
    for chain in set.sorted() {
        answer.insert(chain.id.clone(), chain_to_json(&chain));
    }
    log::info!("event=chains_updated source=private_route file={} chains={}", path.display(), crate::logline::value_text(&set.ids.join(",")));
    app.reload.note_chains_written(written);
    app.set_chains(Rc::new(set));
    json_reply(Value::Object(answer))
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn authorization_is_exact_and_never_open() {
        assert!(authorized(Some("s3cret"), Some("s3cret")));
        assert!(!authorized(Some("s3cret"), Some("s3cre")));
        assert!(!authorized(Some("s3cret"), Some("s3creT")));
        assert!(!authorized(Some("s3cret"), None));
        assert!(!authorized(None, Some("")));
        assert!(!authorized(None, None), "no token configured: closed, not open");
        assert!(!authorized(Some(""), Some("")));
    }
}
