//! One Shannon relay, end to end (README "Shannon supplier at the edge"; shannon-relay.md §1–§4):
//! protobuf `RelayRequest` in → `ValidateBasic` and plausibility → supplier key → session
//! (cached: one full-node query set per session) → the application's ring signature → the
//! backend call → the supplier-signed `RelayResponse` → mining → the LMDB commit → 200.
//!
//! A mined relay is committed before its answer is sent; if the commit cannot be made the client
//! gets 503 and nothing was promised. Refusals are unsigned `RelayResponse`s carrying a
//! `relay_miner_error` (poktroll's shape, §1.5) with an HTTP status that says what went wrong,
//! and the text in a `Meshd-Error` header for people reading logs and curl output.

use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::backend;
use super::sessions::SessionError;
use super::Edge;
use crate::http::server::{Request, Response};
use crate::queue::WriteResult;
use crate::shannon::mining;
use crate::shannon::proto::{Relay, RelayMinerError, RelayRequest, RelayResponse, RelayResponseMetadata, SessionHeader};
use crate::shannon::{ring, session};

/// `relay_miner_error.codespace` of meshd's refusals.
pub const CODESPACE: &str = "meshd";

/// Why a relay was not served. Each maps to an HTTP status and a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Websocket, gRPC or streaming relays (§7 item 1: not at the edge).
    Unsupported(&'static str),
    /// The body is not a `RelayRequest`, or fails `ValidateBasic`/plausibility.
    BadRequest(String),
    UnknownSupplier(String),
    UnknownService(String),
    /// The session's grace period is over (§3.1 item 1).
    SessionOver,
    /// The chain's session differs from the relay's header, or the supplier is not in it.
    SessionMismatch(String),
    BadSignature(String),
    /// This exact request was served before (a replay).
    Duplicate,
    /// No full node answered; the relay cannot be checked now.
    ChainUnavailable(String),
    BackendUnavailable(String),
    QueueFull,
    QueueFailed(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Unsupported(_) => 501,
            Refusal::BadRequest(_) | Refusal::UnknownService(_) | Refusal::SessionOver | Refusal::SessionMismatch(_) => 400,
            Refusal::UnknownSupplier(_) => 404,
            Refusal::BadSignature(_) => 401,
            Refusal::Duplicate => 409,
            Refusal::BackendUnavailable(_) => 502,
            Refusal::ChainUnavailable(_) | Refusal::QueueFull | Refusal::QueueFailed(_) => 503,
        }
    }

    pub fn code(&self) -> u32 {
        match self {
            Refusal::Unsupported(_) => 1,
            Refusal::BadRequest(_) => 2,
            Refusal::UnknownSupplier(_) => 3,
            Refusal::UnknownService(_) => 4,
            Refusal::SessionOver => 5,
            Refusal::SessionMismatch(_) => 6,
            Refusal::BadSignature(_) => 7,
            Refusal::Duplicate => 8,
            Refusal::ChainUnavailable(_) => 9,
            Refusal::BackendUnavailable(_) => 10,
            Refusal::QueueFull => 11,
            Refusal::QueueFailed(_) => 12,
        }
    }

    /// A short name for logs and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unsupported(_) => "unsupported",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::UnknownSupplier(_) => "unknown_supplier",
            Refusal::UnknownService(_) => "unknown_service",
            Refusal::SessionOver => "session_over",
            Refusal::SessionMismatch(_) => "session_mismatch",
            Refusal::BadSignature(_) => "bad_signature",
            Refusal::Duplicate => "duplicate",
            Refusal::ChainUnavailable(_) => "chain_unavailable",
            Refusal::BackendUnavailable(_) => "backend_unavailable",
            Refusal::QueueFull => "queue_full",
            Refusal::QueueFailed(_) => "queue_failed",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsupported(what) => write!(f, "{what} relays are not supported at the edge"),
            Refusal::BadRequest(why) => write!(f, "invalid relay request: {why}"),
            Refusal::UnknownSupplier(a) => write!(f, "supplier {a} is not served here"),
            Refusal::UnknownService(s) => write!(f, "service {s:?} is not configured here"),
            Refusal::SessionOver => f.write_str("the session's grace period is over"),
            Refusal::SessionMismatch(why) => write!(f, "session does not match the chain: {why}"),
            Refusal::BadSignature(why) => write!(f, "invalid ring signature: {why}"),
            Refusal::Duplicate => f.write_str("this relay request was already served"),
            Refusal::ChainUnavailable(why) => write!(f, "cannot check the session now: {why}"),
            Refusal::BackendUnavailable(why) => write!(f, "backend unavailable: {why}"),
            Refusal::QueueFull => f.write_str("the relay queue is full; try again later"),
            Refusal::QueueFailed(why) => write!(f, "the relay could not be stored: {why}"),
        }
    }
}

/// The unsigned error answer (poktroll `replyWithError` shape, with an HTTP status).
pub fn refusal_response(refusal: &Refusal, header: Option<&SessionHeader>) -> Response {
    let text = refusal.to_string();
    let res = RelayResponse {
        meta: RelayResponseMetadata { session_header: header.cloned(), supplier_operator_signature: Vec::new() },
        payload: text.as_bytes().to_vec(),
        relay_miner_error: Some(RelayMinerError {
            codespace: CODESPACE.into(),
            code: refusal.code(),
            description: refusal.reason().into(),
            message: text.clone(),
        }),
        payload_hash: None,
    };
    // Header values cannot carry control characters.
    let shown: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    Response {
        status: refusal.status(),
        headers: vec![("Content-Type".into(), "application/x-protobuf".into()), ("Meshd-Error".into(), shown)],
        body: res.encode(),
    }
}

/// The listener's entry point.
pub async fn serve(edge: Rc<Edge>, req: Request) -> Response {
    if req.method == "GET" && req.body.is_empty() && matches!(req.path(), "/health" | "/healthz" | "/ready") {
        return Response::text(200, "ok\n");
    }
    let _in_flight = edge.track();
    match handle(&edge, &req).await {
        Ok(served) => {
            edge.counters.served.set(edge.counters.served.get() + 1);
            if served.mined {
                edge.counters.mined.set(edge.counters.mined.get() + 1);
            }
            Response { status: 200, headers: vec![("Content-Type".into(), "application/x-protobuf".into())], body: served.body }
        }
        Err((refusal, header)) => {
            edge.counters.refused.set(edge.counters.refused.get() + 1);
            edge.count_refusal(refusal.reason());
            log::info!(
                "event=shannon_relay_refused reason={} status={} peer={} app={} service={} error={:?}",
                refusal.reason(),
                refusal.status(),
                req.peer.ip(),
                header.as_ref().map_or("-", |h| h.application_address.as_str()),
                header.as_ref().map_or("-", |h| h.service_id.as_str()),
                crate::ops::redact::scrub(&refusal.to_string())
            );
            refusal_response(&refusal, header.as_ref())
        }
    }
}

pub struct Served {
    pub body: Vec<u8>,
    pub mined: bool,
}

type Refused = (Refusal, Option<SessionHeader>);

async fn handle(edge: &Edge, req: &Request) -> Result<Served, Refused> {
    // §1.3: websocket (Rpc-Type 2) and gRPC have their own paths in the RelayMiner.
    let rpc_type = req.header("Rpc-Type").and_then(|v| v.trim().parse::<u8>().ok());
    if rpc_type == Some(2) || req.header("Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err((Refusal::Unsupported("websocket"), None));
    }
    if req.header("Content-Type").is_some_and(|t| t.starts_with("application/grpc")) {
        return Err((Refusal::Unsupported("gRPC"), None));
    }
    let relay_req = RelayRequest::decode(&req.body).map_err(|e| (Refusal::BadRequest(format!("body must be a valid RelayRequest protobuf ({e})")), None))?;
    let header = match session::validate_request(&relay_req) {
        Ok(h) => h.clone(),
        Err(e) => return Err((Refusal::BadRequest(e.to_string()), relay_req.meta.session_header.clone())),
    };
    let refuse = |r: Refusal| (r, Some(header.clone()));
    let supplier = relay_req.meta.supplier_operator_address.clone();
    let key = edge.key(&supplier).ok_or_else(|| refuse(Refusal::UnknownSupplier(supplier.clone())))?;
    let service = edge.settings.services.get(&header.service_id).ok_or_else(|| refuse(Refusal::UnknownService(header.service_id.clone())))?;
    let height = current_height(edge).await.map_err(refuse)?;
    session::heights_plausible(&header, height).map_err(|e| refuse(Refusal::BadRequest(e.to_string())))?;

    // One query set per session; the lookup compares all five header fields (§3.1 item 3) and
    // the grace window (item 1); then the supplier must be in the session (item 4).
    let info = edge.sessions.session(&header).await.map_err(|e| refuse(session_refusal(e)))?;
    info.check_supplier(&supplier).map_err(|e| refuse(session_refusal(e)))?;
    edge.note_grace(info.params.grace_period_end_offset_blocks);
    // §2.1: parse, every key inside must be an expected ring member, then verify over the
    // signable hash of the re-encoded request.
    let sig = ring::RingSignature::parse(&relay_req.meta.signature).map_err(|e| refuse(Refusal::BadSignature(e.to_string())))?;
    session::ring_members_expected(&sig, &info.ring).map_err(|e| refuse(Refusal::BadSignature(e.to_string())))?;
    sig.verify(&relay_req.signable_hash()).map_err(|e| refuse(Refusal::BadSignature(e.to_string())))?;

    // §1.4: the backend call described by the payload.
    let call = super::payload_call(&relay_req.payload, edge.settings.forward_pocket_headers.then_some((&header, supplier.as_str())))
        .map_err(|e| refuse(Refusal::BadRequest(format!("payload is not a POKTHTTPRequest: {e}"))))?;
    let urls = service.for_rpc_type(rpc_type);
    let timeout = std::time::Duration::from_millis(edge.settings.backend_timeout);
    let answer = backend::call(&edge.backend_client, &edge.backend_health, &header.service_id, urls, &call, timeout).await.map_err(|e| {
        // The detail (which endpoint, which error) is logged, not sent (backend URLs are private).
        log::warn!("event=shannon_backend_failed service={} error={:?}", header.service_id, crate::ops::redact::scrub(&e.to_string()));
        refuse(Refusal::BackendUnavailable(match e {
            backend::BackendError::Unreachable { .. } => "no backend answered".into(),
            backend::BackendError::Failed(_) => "the backend call failed".into(),
            backend::BackendError::Invalid(_) => "the relay's HTTP request cannot be sent (method or headers)".into(),
        }))
    })?;

    // §1.5 / §2.2: the signed response.
    let mut res = RelayResponse {
        meta: RelayResponseMetadata { session_header: Some(header.clone()), supplier_operator_signature: Vec::new() },
        payload: super::response_payload(&answer),
        relay_miner_error: None,
        payload_hash: None,
    };
    res.sign(&key).map_err(|e| refuse(Refusal::QueueFailed(format!("signing failed: {e:?}"))))?;
    let body = res.encode();

    // §3.1 items 5 and 8, §4: mine only relays that can still be claimed and that the backend
    // answered below 500, and whose hash beats the service's target at the session start.
    let eligible = info.window().reward_eligible(header.session_end_block_height, height) && answer.status < 500;
    let request_bytes = relay_req.encode();
    let relay = Relay { req: Some(relay_req), res: Some(res) };
    // The dehydrated encoding once: hashed here, stored below (Relay::hash is SHA-256 of it, §4).
    let dehydrated = relay.dehydrated_bytes();
    let relay_hash = mining::relay_hash(&dehydrated);
    let mined = eligible && mining::is_mined(&relay_hash, &info.difficulty_target);
    if mined {
        let record = super::mined_record(&header, &supplier, height, info.compute_units_per_relay, relay_hash, dehydrated);
        let request_hash: [u8; 32] = Sha256::digest(&request_bytes).into();
        match edge.queue.append(record, request_hash).await {
            WriteResult::Done => edge.handoff.kick(),
            WriteResult::Duplicate => return Err(refuse(Refusal::Duplicate)),
            WriteResult::Full => return Err(refuse(Refusal::QueueFull)),
            other => return Err(refuse(Refusal::QueueFailed(format!("{other:?}")))),
        }
    } else if !eligible {
        edge.counters.not_claimable.set(edge.counters.not_claimable.get() + 1);
    }
    Ok(Served { body, mined })
}

/// What a failed session lookup means for the client. Full-node errors name the node's URL and
/// echo its answer: they are logged here, and the client gets a text without them (a full node
/// is often a private address; docs/deploy.md "What never leaves meshd").
fn session_refusal(e: SessionError) -> Refusal {
    match e {
        SessionError::GraceElapsed { .. } => Refusal::SessionOver,
        SessionError::HeaderMismatch(_) | SessionError::SupplierNotInSession { .. } => Refusal::SessionMismatch(e.to_string()),
        SessionError::Query(q) => {
            log::warn!("event=shannon_fullnode_query_failed error={:?}", crate::ops::redact::scrub(&q.to_string()));
            if q.is_transient() {
                Refusal::ChainUnavailable("no full node answered the session queries".into())
            } else {
                Refusal::SessionMismatch("the full node does not know this session, application or account".into())
            }
        }
        SessionError::FetchCancelled => Refusal::ChainUnavailable("the session fetch was cancelled".into()),
    }
}

/// The polled height; right after start, before the first poll answered, one query now.
async fn current_height(edge: &Edge) -> Result<i64, Refusal> {
    if let Some(h) = edge.sessions.height().get() {
        return Ok(h);
    }
    match edge.sessions.client().latest_height().await {
        Ok(h) => {
            edge.sessions.height().set(h);
            Ok(h)
        }
        Err(e) => {
            log::warn!("event=shannon_fullnode_query_failed error={:?}", crate::ops::redact::scrub(&e.to_string()));
            Err(Refusal::ChainUnavailable("no block height from any full node yet".into()))
        }
    }
}
