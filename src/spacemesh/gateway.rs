//! The node-service endpoint smeshing services call (`--node-service-address`). Three kinds of
//! request:
//! - ATX publishes (`POST /activation/publish`, `POST /publish/ax1`): committed to the publish
//!   queue first; then, if a synced node is known, delivered while the client waits so the
//!   node's own verdict (200, or 400 for an invalid ATX / PoET proof) reaches the smeshing
//!   service as it would without meshd. With no synced node, or a failing one, the answer is 200
//!   "queued" and the delivery loop takes over. An ATX is useful for a whole epoch, so a late
//!   delivery still counts; a lost one costs the smesher its rewards.
//! - everything else, including time-critical publishes (hare3, pp1 proposals, bc1
//!   certificates, b1 blocks, tx1…): forwarded at once with failover inside `request_timeout`.
//!   A hare message or proposal delivered after its round is worthless, so these are never queued.
//! - `GET /_meshd/spacemesh/stats`: counters per upstream and per client, as JSON.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{self, header, text};
use super::publish_queue::{content_hash, Enqueued, PublishState, QueuedPublish, Route};
use super::upstream::{forward, Forwarded, Outgoing, Select, UpstreamAnswer};
use super::State;
use crate::http::server::{Request, Response};
use crate::queue::record::now_ms;

pub const STATS_PATH: &str = "/_meshd/spacemesh/stats";

/// Largest request body accepted (an ATX with a PoET proof is a few KiB; this leaves headroom
/// for merged ATXs with many identities).
pub const MAX_BODY_BYTES: u64 = 8 << 20;

/// Header telling what the gateway did with a publish: `delivered`, `queued`, `duplicate`.
pub const PUBLISH_HEADER: &str = "X-Meshd-Publish";

/// Rounds over the pool for a forwarded request: a node flapping between synced and syncing
/// can fail one round; the smeshing service should not see that.
pub const PASS_THROUGH_ROUNDS: usize = 3;

/// Gossip protocols whose publishes are queued; every other protocol is time-critical.
pub const QUEUED_PROTOCOLS: &[&str] = &["ax1"];

pub async fn serve(st: Rc<State>, request: Request) -> Response {
    let client = request.peer.ip().to_string();
    st.count_client(&client, |c| c.requests += 1);
    let headers = http::request_headers(&request.headers, &client);
    let out = Outgoing { method: request.method, path_and_query: request.target, headers, body: request.body };
    http::response(route(&st, out, &client).await)
}

async fn route(st: &Rc<State>, out: Outgoing, client: &str) -> UpstreamAnswer {
    let path = out.path_and_query.split('?').next().unwrap_or("").to_string();
    match (out.method.as_str(), path.as_str()) {
        ("GET", STATS_PATH) => {
            let q = st.queue.clone();
            let counts = smol::unblock(move || q.counts()).await;
            http::json(200, &st.stats_json(counts))
        }
        ("POST", "/activation/publish") => publish(st, Route::ActivationPublish, out, client).await,
        ("POST", p) if p.strip_prefix("/publish/").is_some_and(|proto| QUEUED_PROTOCOLS.contains(&proto)) => {
            let proto = p["/publish/".len()..].to_string();
            publish(st, Route::Gossip(proto), out, client).await
        }
        _ => pass_through(st, out).await,
    }
}

fn deadline(st: &State) -> Instant {
    Instant::now() + Duration::from_millis(st.settings.request_timeout)
}

/// Forward with failover; when no node gives a real answer, the last node answer (e.g. the
/// 503 "service not ready" of a syncing node) or meshd's own 503 with `Retry-After`, which the
/// smeshing service's retrying client honours (§1.2).
async fn pass_through(st: &State, out: Outgoing) -> UpstreamAnswer {
    match forward(&st.nodes, &st.client, Arc::new(out), Select::All, PASS_THROUGH_ROUNDS, deadline(st)).await {
        Forwarded::Answer { answer, .. } => answer,
        Forwarded::Exhausted { last, errors } => {
            let mut answer = last.unwrap_or_else(|| text(503, &format!("meshd: no node service available: {}", errors.join("; "))));
            if header(&answer.headers, "Retry-After").is_none() {
                answer.headers.push(("Retry-After".into(), "1".into()));
            }
            answer
        }
    }
}

/// Reject what the node would reject anyway, before it takes a place in the durable queue.
/// `/activation/publish` takes `{"AtxBlob": base64 (required), "PoetProof"?: object}`; Go
/// matches JSON keys case-insensitively, so this does too (§1.1).
pub fn validate(route: &Route, body: &[u8]) -> Result<(), String> {
    if body.is_empty() {
        return Err("empty publish body".into());
    }
    if *route != Route::ActivationPublish {
        return Ok(());
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("can't decode JSON body: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("expected a JSON object {\"AtxBlob\": …}".into());
    };
    let field = |name: &str| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
    match field("AtxBlob") {
        Some(serde_json::Value::String(b64)) if !b64.is_empty() => {
            if !is_std_base64(b64) {
                return Err("AtxBlob is not standard base64".into());
            }
        }
        _ => return Err("AtxBlob is required (a base64 string)".into()),
    }
    match field("PoetProof") {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Object(_)) => Ok(()),
        Some(_) => Err("PoetProof must be an object".into()),
    }
}

/// Go's `encoding/json` decodes `[]byte` with padded standard base64.
fn is_std_base64(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return false;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    pad <= 2 && b[..b.len() - pad].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn publish_answer(mut answer: UpstreamAnswer, what: &str) -> UpstreamAnswer {
    answer.headers.push((PUBLISH_HEADER.into(), what.into()));
    answer
}

fn ok(what: &str) -> UpstreamAnswer {
    publish_answer(UpstreamAnswer { status: 200, headers: Vec::new(), body: Vec::new() }, what)
}

async fn publish(st: &Rc<State>, route: Route, out: Outgoing, client: &str) -> UpstreamAnswer {
    if let Err(message) = validate(&route, &out.body) {
        // go-spacemesh answers 400 with its "plain/text" (sic) content type (§1.1).
        let mut a = text(400, &message);
        a.headers = vec![("Content-Type".into(), "plain/text".into())];
        return a;
    }
    st.count_client(client, |c| c.publishes += 1);
    let hash = content_hash(&route, &out.body);
    let record = QueuedPublish {
        route: route.clone(),
        content_type: header(&out.headers, "Content-Type").unwrap_or("").to_string(),
        body: out.body.clone(),
        queued_at_ms: now_ms(),
        client: client.to_string(),
        attempts: 0,
        not_before_ms: 0,
        last_error: String::new(),
        state: PublishState::Pending,
    };
    // Claim the hash first, so the delivery loop cannot pick the fresh record up between the
    // commit and the inline attempt (a claim held by a concurrent identical request means that
    // request delivers; this one only needs the durable commit).
    let owner = st.in_flight.borrow_mut().insert(hash);
    let (q, r) = (st.queue.clone(), record.clone());
    let enqueued = smol::unblock(move || q.enqueue(&hash, &r)).await;
    let answer = match enqueued {
        Err(e) => {
            log::error!("event=spacemesh_publish_not_queued route={} error={e:?}", route.path());
            // 500 makes the smeshing service retry (§1.2), so nothing is lost.
            text(500, &format!("meshd: cannot queue the publish: {e}"))
        }
        Ok(Enqueued::Full) => {
            st.publishes.refused_full.set(st.publishes.refused_full.get() + 1);
            let mut a = text(503, "meshd: publish queue full");
            a.headers.push(("Retry-After".into(), "30".into()));
            a
        }
        Ok(Enqueued::Duplicate(existing)) => {
            st.publishes.duplicates.set(st.publishes.duplicates.get() + 1);
            match existing.state {
                PublishState::Rejected { status, body, .. } => {
                    publish_answer(UpstreamAnswer { status, headers: vec![("Content-Type".into(), "plain/text".into())], body }, "duplicate")
                }
                _ => ok("duplicate"),
            }
        }
        Ok(Enqueued::New) => {
            st.publishes.queued.set(st.publishes.queued.get() + 1);
            log::info!("event=spacemesh_publish_queued route={} bytes={} client={client} hash={}", route.path(), out.body.len(), hex::encode(hash));
            if owner {
                deliver_inline(st, hash, record, out).await
            } else {
                ok("queued")
            }
        }
    };
    if owner {
        st.in_flight.borrow_mut().remove(&hash);
    }
    answer
}

/// The durable commit is done; give a synced node one chance while the client waits.
async fn deliver_inline(st: &Rc<State>, hash: [u8; 32], record: QueuedPublish, out: Outgoing) -> UpstreamAnswer {
    if !st.nodes.any_ready() {
        st.wake_delivery();
        return ok("queued");
    }
    let fwd = forward(&st.nodes, &st.client, Arc::new(out), Select::ReadyOnly, 1, deadline(st)).await;
    match super::delivery::settle(st, &hash, record, fwd).await {
        super::delivery::Settled::Delivered(answer) => {
            st.publishes.delivered_inline.set(st.publishes.delivered_inline.get() + 1);
            publish_answer(answer, "delivered")
        }
        super::delivery::Settled::Rejected(answer) => publish_answer(answer, "rejected"),
        super::delivery::Settled::Retry(_) => {
            st.wake_delivery();
            ok("queued")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_publish_bodies_are_checked_like_the_node() {
        let a = Route::ActivationPublish;
        assert!(validate(&a, br#"{"AtxBlob":"AAEC"}"#).is_ok());
        assert!(validate(&a, br#"{"atxblob":"AAEC","poetproof":{"Id":"x"}}"#).is_ok(), "keys are case-insensitive");
        assert!(validate(&a, br#"{"AtxBlob":"AAEC","PoetProof":null}"#).is_ok());
        for bad in [
            &br#"{}"#[..],
            br#"{"AtxBlob":""}"#,
            br#"{"AtxBlob":"AAE"}"#,
            br#"{"AtxBlob":"AA*C"}"#,
            br#"{"AtxBlob":5}"#,
            b"[1]",
            b"{",
            br#"{"AtxBlob":"AAEC","PoetProof":"x"}"#,
        ] {
            assert!(validate(&a, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(validate(&Route::Gossip("ax1".into()), b"\x00\x01 raw scale").is_ok());
        assert!(validate(&Route::Gossip("ax1".into()), b"").is_err());
    }

    #[test]
    fn base64_padding_rules() {
        for good in ["", "AAAA", "AAA=", "AA==", "+/+/"] {
            assert!(is_std_base64(good), "{good}");
        }
        for bad in ["A", "AAAAA", "A===", "AA-_", "AA=A"] {
            assert!(!is_std_base64(bad), "{bad}");
        }
    }
}
