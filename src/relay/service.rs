//! `POST /v1/client/relay`: the relay path. Validation in a real servicer's order as far as
//! the mesh can check it (reference protocol §4, geo-mesh §3.1), then session budget and
//! duplicate check, reservation, the chain call, the signature, and the hand-off to the notifier.
//!
//! Order: decode → servicer known → servicer healthy → session height (60) → payload (25) →
//! meta height (75) → request hash (74) → chain hosted (26) → proof basics incl. AAT and client
//! signature (60/6/42/52/23/62/29/4/39/38/41) → session from the servicer (its refusals:
//! 45, 13, 14, 60, 71, 90 …) → budget (71) → durable queue commit, which is also the exact
//! duplicate check (37), concurrently with the chain call (28) → sign → 200.
//! While a servicer node's gate is closed (an outage or a restart) and its last healthy check
//! is within `servicer_outage_grace`, relays of sessions already cached are still served under
//! that last status; uncached sessions are refused as before. Their notifies wait in the queue.
//! Duplicates and the budget are checked after the signatures, so unauthenticated requests
//! can neither burn a session's budget nor poison its proof set. No relay is answered 200
//! before it is committed to the queue.

use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::app::App;
use crate::app::Counters;
use crate::http::reply::{relay_error, relay_ok, relay_unavailable, Reply};
use crate::ops::metrics::RelayObservation;
use crate::protocol::relay::response_hash;
use crate::protocol::session::{latest_session_height, session_header_hash, within_tolerance};
use crate::protocol::sortjson::sort_json_response;
use crate::protocol::{errors, PocketError, Relay};
use crate::queue::record::now_ms;
use crate::queue::store::session_key;
use crate::queue::{QueuedRelay, WriteOp, WriteResult};
use crate::relay::chain::{ChainCall, ChainSet};
use crate::relay::sessions::{Session, SessionFailure, SessionId};
use crate::servicer::fleet::{Fleet, Servicer};
use crate::servicer::health::NodeStatus;

/// Pocket's default `ClientBlockSyncAllowance`: how far `meta.block_height` may be from the
/// servicer's height before the servicer answers 75.
pub const CLIENT_BLOCK_SYNC_ALLOWANCE: i64 = 10;

/// A refused relay: the error and, for 60/71/14/75, the session the client should use.
struct Rejection {
    error: PocketError,
    dispatch: Option<Rc<[u8]>>,
    /// meshd cannot take relays right now (queue full or failing): HTTP 503, not 400.
    unavailable: bool,
    /// The `status_type` label of `error_count` (the incumbent's names where they exist).
    status_type: &'static str,
}

impl From<PocketError> for Rejection {
    fn from(error: PocketError) -> Self {
        let status_type = default_status_type(&error);
        Rejection { error, dispatch: None, unavailable: false, status_type }
    }
}

impl Rejection {
    fn typed(error: PocketError, status_type: &'static str) -> Rejection {
        Rejection { status_type, ..error.into() }
    }
}

/// `error_count` status types by code, for rejections not classified where they arise.
fn default_status_type(e: &PocketError) -> &'static str {
    if e.codespace != errors::CODESPACE_POCKET {
        return if e.code == 2 { "bad_request" } else { "internal" };
    }
    match e.code {
        26 => "chain_not_found",
        60 => "session_height_out_of_range",
        28 => "chain",
        13 | 14 | 45 | 71 | 90 => "invalid_session",
        _ => "bad_request",
    }
}

/// The node's gate error as a relay client may read it: pocket-core's fixed starting/syncing
/// texts pass, any other reason (which quotes the servicer's answer or a transport error)
/// becomes the fixed "currently unavailable" (README "What never leaves meshd";
/// tests/secrets.rs). The reason is on the status page and in the log.
fn public_unavailable(e: PocketError) -> PocketError {
    if e.message == errors::NODE_STARTING || e.message == errors::NODE_SYNCING {
        e
    } else {
        errors::node_unavailable()
    }
}

/// `chain_id` label of relays for chains meshd does not host (or that did not decode).
pub const UNKNOWN_CHAIN: &str = "unknown";

/// What the metrics need to know about a relay, filled in as validation learns it.
#[derive(Default)]
struct Trace {
    chain: String,
    servicer: Option<[u8; 20]>,
    chain_call: Option<Duration>,
}

pub async fn handle(app: &Rc<App>, body: Vec<u8>) -> Reply {
    let started = Instant::now();
    let logged = app.settings.log_relay_request.then(|| body.clone());
    let mut trace = Trace { chain: UNKNOWN_CHAIN.to_string(), ..Trace::default() };
    let (reply, error) = match serve(app, body, &mut trace).await {
        Ok(reply) => (reply, None),
        Err(rejection) => {
            let error = (rejection.status_type, rejection.error.code);
            (refuse(app, rejection, logged), Some(error))
        }
    };
    app.metrics.relay(RelayObservation {
        chain: &trace.chain,
        servicer: trace.servicer.as_ref(),
        status_code: reply.status,
        success: reply.status == 200,
        total: started.elapsed(),
        chain_call: trace.chain_call,
    });
    if let Some((status_type, code)) = error {
        app.metrics.error(&trace.chain, trace.servicer.as_ref(), false, status_type, code);
    }
    reply
}

fn refuse(app: &App, rejection: Rejection, logged: Option<Vec<u8>>) -> Reply {
    Counters::inc(&app.counters.rejected);
    let e = &rejection.error;
    match logged {
        Some(body) => {
            log::info!("event=relay_rejected code={} codespace={} message={:?} relay={}", e.code, e.codespace, e.message, String::from_utf8_lossy(&body))
        }
        None => log::debug!("event=relay_rejected code={} codespace={} message={:?}", e.code, e.codespace, e.message),
    }
    if rejection.unavailable {
        relay_unavailable(e)
    } else {
        relay_error(e, rejection.dispatch.as_deref())
    }
}

async fn serve(app: &Rc<App>, body: Vec<u8>, trace: &mut Trace) -> Result<Reply, Rejection> {
    let relay = Relay::from_json(&body).map_err(|e| PocketError::sdk(2, format!("invalid relay JSON: {e}")))?;
    // One snapshot of each for the whole relay: a hot reload swaps new ones in for later relays.
    let (fleet, chains) = (app.fleet(), app.chains());
    // Metric labels only take chains meshd hosts: the client chooses this string, and
    // arbitrary values would grow the registry without bound.
    if chains.get(&relay.proof.blockchain).is_some() {
        trace.chain.clone_from(&relay.proof.blockchain);
    } else {
        trace.chain = UNKNOWN_CHAIN.to_string();
    }
    let checked = validate(app, &fleet, &chains, &relay, trace).await?;
    execute(app, &chains, relay, checked, body, trace).await
}

/// What validation established about a relay that may be served.
struct Checked<'a> {
    servicer: &'a Servicer,
    session: Rc<Session>,
    proof_hash: [u8; 32],
    /// Served under the outage grace (counted apart when answered 200).
    during_outage: bool,
}

async fn validate<'a>(app: &App, fleet: &'a Fleet, chains: &ChainSet, relay: &Relay, trace: &mut Trace) -> Result<Checked<'a>, Rejection> {
    let proof = &relay.proof;
    let public_key = decode_key(&proof.servicer_pub_key)
        .ok_or_else(|| Rejection::typed(PocketError::sdk(1, "Could not convert servicer hex to public key"), "servicer_not_found"))?;
    let servicer =
        fleet.servicer(&public_key).ok_or_else(|| Rejection::typed(PocketError::sdk(1, "Failed to find correct servicer PK"), "servicer_not_found"))?;
    let address = crate::protocol::address_of(&public_key);
    trace.servicer = Some(address);
    // The node's gate, or during an outage of the servicer its last healthy status (the outage
    // grace): then only sessions already cached are served, and nothing is asked of the servicer.
    let (status, outage) = match servicer.node.gate() {
        Ok(status) => (status, None),
        Err(e) => match servicer.node.grace_status(Duration::from_secs(app.settings.servicer_outage_grace)) {
            Some(status) => (status, Some(e)),
            None => return Err(Rejection::typed(public_unavailable(e), "node_unhealthy")),
        },
    };

    let sbh = proof.session_block_height;
    if !session_height_acceptable(&status, sbh) {
        if outage.is_some() {
            return Err(errors::invalid_block_height().into());
        }
        return Err(with_current_dispatch(app, chains, servicer, relay, &status, errors::invalid_block_height()).await);
    }
    if relay.payload.data.is_empty() && relay.payload.path.is_empty() {
        return Err(errors::empty_payload_data().into());
    }
    if (relay.meta.block_height - status.height).abs() > CLIENT_BLOCK_SYNC_ALLOWANCE {
        if outage.is_some() {
            return Err(errors::out_of_sync_request().into());
        }
        return Err(with_current_dispatch(app, chains, servicer, relay, &status, errors::out_of_sync_request()).await);
    }
    if proof.request_hash != relay.request_hash_hex() {
        return Err(errors::request_hash_mismatch().into());
    }
    if !chains.contains(&proof.blockchain) {
        return Err(errors::unsupported_blockchain_node().into());
    }
    proof.validate_basic_with(|aat| app.verified_tokens.validate(aat))?;

    if let Some(gate_error) = outage {
        // Served from the cache or refused with the gate's reason, as without the grace.
        let Some(session) = app.sessions.cached(&session_id(servicer, relay, sbh)) else {
            return Err(Rejection::typed(public_unavailable(gate_error), "node_unhealthy"));
        };
        return reserve(app, servicer, relay, address, session).map(|checked| Checked { during_outage: true, ..checked });
    }
    let session = match session_for(app, servicer, relay, sbh).await {
        Ok(session) => session,
        Err(SessionFailure::Refused(e)) if e.warrants_dispatch() => {
            return Err(with_current_dispatch(app, chains, servicer, relay, &status, e).await);
        }
        Err(SessionFailure::Refused(e)) => {
            if e.code == 71 && e.codespace == errors::CODESPACE_POCKET {
                app.states.session_exhausted(address, &proof.blockchain, sbh);
            }
            return Err(Rejection::typed(e, "invalid_session"));
        }
        Err(SessionFailure::Unreachable(why)) => {
            // The cause (logged once per fetch as event=session_fetch_failed) stays in meshd.
            log::debug!("event=session_unavailable servicer={} reason={why:?}", hex::encode(address));
            return Err(Rejection::typed(errors::node_unavailable(), "get_session"));
        }
    };
    reserve(app, servicer, relay, address, session)
}

/// Take one relay of the session's budget (71 when it is spent).
fn reserve<'a>(app: &App, servicer: &'a Servicer, relay: &Relay, address: [u8; 20], session: Rc<Session>) -> Result<Checked<'a>, Rejection> {
    let proof = &relay.proof;
    let sbh = proof.session_block_height;
    match session.reserve() {
        Ok(()) => {
            // The first relay this process serves in the session (a restart re-observes it;
            // the tracker records a session as active only once).
            if session.served() == 1 {
                app.states.session_active(address, &proof.blockchain, sbh, session.remaining() + 1);
            }
            Ok(Checked { servicer, proof_hash: proof.hash(), session, during_outage: false })
        }
        Err(_) => {
            app.states.session_exhausted(address, &proof.blockchain, sbh);
            let dispatch = session.dispatch.clone();
            Err(Rejection { dispatch, ..Rejection::typed(errors::over_service(), "invalid_session") })
        }
    }
}

/// The relay is reserved: it is committed to the queue while the chain is called, and counts
/// whatever the chain answers (a servicer stores the proof before executing, so a relay whose
/// chain call failed is still claimable and still notified).
async fn execute(app: &Rc<App>, chains: &ChainSet, relay: Relay, checked: Checked<'_>, body: Vec<u8>, trace: &mut Trace) -> Result<Reply, Rejection> {
    let s = &app.settings;
    let Checked { servicer, session, proof_hash, during_outage } = checked;
    let chain = chains.get(&relay.proof.blockchain).expect("validated: the chain is in this snapshot");
    let record = QueuedRelay {
        servicer_address: crate::protocol::address_of(&servicer.key.public_bytes()),
        servicer_public_key: servicer.key.public_bytes(),
        chain: relay.proof.blockchain.clone(),
        app_public_key: relay.proof.aat.app_pub_key.clone(),
        session_height: relay.proof.session_block_height,
        proof_hash,
        served_at_ms: now_ms(),
        attempts: 0,
        not_before_ms: 0,
        last_error: String::new(),
        relay_json: body,
    };
    let call = ChainCall::new(chain, &relay.payload, s.chain_request_path_cleanup, s.chain_drop_connections);
    let call = if chain.urls.len() > 1 { call.ordered(&app.chain_health.order(chain)) } else { call };
    if s.log_chain_request {
        log::info!("event=chain_request chain={} method={} url={} data={:?}", chain.id, call.method, redact_url(&call.url), call.data);
    }
    let started = Instant::now();
    let (queued, chain_result) = futures_lite::future::zip(app.queue.write(WriteOp::Append(Box::new(record))), async {
        let started = Instant::now();
        (call.execute_with_failover(&app.chain_client).await, started.elapsed())
    })
    .await;
    let (chain_result, chain_elapsed) = chain_result;
    let elapsed_ms = started.elapsed().as_millis();
    let chain_result = crate::relay::chain::record_outcome(app, chain, chain_result);
    trace.chain_call = Some(chain_elapsed);
    let chain_status = chain_result.as_ref().map_or(0, |(status, _)| *status);
    app.metrics.chain_call(&chain.id, chain_status, chain_elapsed);
    match queued {
        WriteResult::Appended(_) => app.notifier.wake(&servicer.node),
        WriteResult::Duplicate => {
            session.release();
            return Err(errors::duplicate_proof().into());
        }
        WriteResult::Full => {
            session.release();
            Counters::inc(&app.counters.queue_full);
            if app.counters.queue_full.get() % 1000 == 1 {
                log::error!("event=queue_full refused={} (relays get 503 until the notifier drains the queue)", app.counters.queue_full.get());
            }
            let error = PocketError::sdk(1, "meshd relay queue is full: the servicer is not taking notifies fast enough; try again later");
            return Err(Rejection { unavailable: true, ..Rejection::typed(error, "queue_full") });
        }
        other => {
            session.release();
            // A fixed text: the cause is in the log (event=queue_commit_failed / event=fatal).
            let message = match other {
                WriteResult::Refused(why) if why == crate::queue::writer::QUEUE_FILE_LOST => {
                    "meshd cannot store relays: its queue directory was removed or replaced; it is restarting. Try again later"
                }
                _ => "meshd cannot store the relay right now (queue storage error); try again later",
            };
            let error = PocketError::sdk(1, message);
            return Err(Rejection { unavailable: true, ..Rejection::typed(error, "queue") });
        }
    }
    let body = match chain_result {
        Ok((_, body)) => body,
        Err(e) => {
            Counters::inc(&app.counters.chain_errors);
            log::warn!("event=chain_error chain={} elapsed_ms={elapsed_ms} error={:?}", chain.id, crate::ops::redact::scrub(&e));
            return Err(errors::http_execution().into());
        }
    };
    if s.log_chain_response {
        log::info!("event=chain_response chain={} elapsed_ms={elapsed_ms} body={body:?}", chain.id);
    }
    let response = if s.json_sort_relay_responses { sort_json_response(&body) } else { body };
    let signature = servicer.key.sign_hex(&response_hash(&response, &hex::encode(proof_hash)));
    Counters::inc(&app.counters.served);
    if during_outage {
        Counters::inc(&app.counters.served_during_outage);
    }
    Ok(relay_ok(&response, &signature))
}

/// Within the servicer's tolerance window (one session less than it allows, like the
/// incumbent, so a late notify is still accepted), or the session that starts with the next
/// block when our last check saw the final block of a session.
fn session_height_acceptable(status: &NodeStatus, sbh: i64) -> bool {
    let bps = status.blocks_per_session;
    let latest = latest_session_height(status.height, bps);
    let tolerance = (status.client_session_sync_allowance - 1).max(0);
    within_tolerance(latest, bps, sbh, tolerance) || (sbh == latest + bps && status.height % bps == 0)
}

/// The session cache's key of a relay's session at height `sbh`.
fn session_id(servicer: &Servicer, relay: &Relay, sbh: i64) -> SessionId {
    SessionId { header: session_header_hash(&relay.proof.aat.app_pub_key, &relay.proof.blockchain, sbh), servicer: servicer.key.public_bytes() }
}

async fn session_for(app: &App, servicer: &Servicer, relay: &Relay, sbh: i64) -> Result<Rc<Session>, SessionFailure> {
    let app_key = &relay.proof.aat.app_pub_key;
    let chain = &relay.proof.blockchain;
    let id = session_id(servicer, relay, sbh);
    let request = json!({
        "session_header": {"app_public_key": app_key, "chain": chain, "session_height": sbh},
        "meta": {"block_height": relay.meta.block_height},
        "servicer_pub_key": servicer.key.public_hex,
        "blockchain": chain,
        "session_block_height": sbh,
    });
    let node = &servicer.node;
    let pending_key = session_key(app_key, chain, sbh, &id.servicer);
    // The servicer is asked at its healthiest URL; a URL that cannot be reached is benched and
    // the next usable one is asked at once (a session lookup has no side effect), so a dead URL
    // costs the relay a little time, not a refusal.
    let fetch = move || async move {
        let mut tried: Vec<String> = Vec::new();
        let mut last_error = String::new();
        while tried.len() < node.urls.len() {
            let endpoint = app.endpoint(node);
            let url = endpoint.url.clone();
            if tried.contains(&url) {
                break;
            }
            match endpoint.session(&request).await {
                Ok(answer) => {
                    app.url_ok(node, &url);
                    // Relays served but not yet accepted by the servicer (e.g. queued before a
                    // restart) are not in its count: subtract them so the budget is never over-served.
                    let store = app.queue.store().clone();
                    let pending = smol::unblock(move || store.session_pending(&pending_key)).await?;
                    return Ok(answer.map(|mut grant| {
                        grant.remaining_relays -= i64::from(pending);
                        grant
                    }));
                }
                Err(e) => {
                    app.url_failed(node, &url, &e);
                    last_error = e;
                    tried.push(url);
                }
            }
        }
        Err(last_error)
    };
    app.sessions.get(id, sbh, fetch).await
}

/// Attach the dispatch of the app's current session so the client can move on (what a
/// servicer does for 60/71/14/75); without one the error goes out with `dispatch: null`.
async fn with_current_dispatch(app: &App, chains: &ChainSet, servicer: &Servicer, relay: &Relay, status: &NodeStatus, error: PocketError) -> Rejection {
    let latest = latest_session_height(status.height, status.blocks_per_session);
    let mut current = relay.clone();
    current.meta.block_height = status.height;
    let dispatch = if relay.proof.session_block_height == latest && error.code != 75 {
        None
    } else if decode_key(&relay.proof.aat.app_pub_key).is_some() && chains.contains(&relay.proof.blockchain) {
        session_for(app, servicer, &current, latest).await.ok().and_then(|s| s.dispatch.clone())
    } else {
        None
    };
    Rejection { dispatch, ..error.into() }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

/// A URL as logs may show it: user info (`user:password@`) replaced, since chain URLs may
/// carry credentials.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.into() };
    let authority_end = url[scheme_end..].find(['/', '?', '#']).map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end], &url[scheme_end + at + 1..]).into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_in_urls_are_not_logged() {
        assert_eq!(redact_url("https://user:secret@host:8545/rpc?a=b@c"), "https://***@host:8545/rpc?a=b@c");
        assert_eq!(redact_url("http://127.0.0.1:8545/x@y"), "http://127.0.0.1:8545/x@y");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
