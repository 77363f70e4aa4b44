//! `POST /v1/client/relay`: the relay path. Validation in a real servicer's order as far as
//! the mesh can check it (reference protocol §4, geo-mesh §3.1), then session budget and
//! duplicate check, reservation, the chain call, the signature, and the hand-off to the notifier.
//!
//! Order: decode → servicer known → servicer healthy → session height (60) → payload (25) →
//! meta height (75) → request hash (74) → chain hosted (26) → proof basics incl. AAT and client
//! signature (60/6/42/52/23/62/29/4/39/38/41) → session from the servicer (its refusals:
//! 45, 13, 14, 60, 71, 90 …) → duplicate (37) → budget (71) → chain (28) → sign.
//! Duplicates and the budget are checked after the signatures, so unauthenticated requests
//! can neither burn a session's budget nor poison its proof set.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::app::App;
use crate::chain_client::ChainCall;
use crate::fleet::Servicer;
use crate::health::NodeStatus;
use crate::notifier::NotifyJob;
use crate::protocol::relay::response_hash;
use crate::protocol::session::{latest_session_height, session_header_hash, within_tolerance};
use crate::protocol::sortjson::sort_json_response;
use crate::protocol::{errors, PocketError, Relay};
use crate::reply::{relay_error, relay_ok, Reply};
use crate::sessions::{Refusal, Session, SessionFailure, SessionId};

/// Pocket's default `ClientBlockSyncAllowance`: how far `meta.block_height` may be from the
/// servicer's height before the servicer answers 75.
pub const CLIENT_BLOCK_SYNC_ALLOWANCE: i64 = 10;

/// A refused relay: the error and, for 60/71/14/75, the session the client should use.
struct Rejection {
    error: PocketError,
    dispatch: Option<Value>,
}

impl From<PocketError> for Rejection {
    fn from(error: PocketError) -> Self {
        Rejection { error, dispatch: None }
    }
}

pub async fn handle(app: &Rc<App>, body: Vec<u8>) -> Reply {
    match serve(app, body).await {
        Ok(reply) => reply,
        Err((rejection, body)) => {
            app.counters.rejected.set(app.counters.rejected.get() + 1);
            let e = &rejection.error;
            if app.settings.log_relay_request {
                log::info!("event=relay_rejected code={} codespace={} message={:?} relay={}", e.code, e.codespace, e.message, String::from_utf8_lossy(&body));
            } else {
                log::debug!("event=relay_rejected code={} codespace={} message={:?}", e.code, e.codespace, e.message);
            }
            relay_error(e, rejection.dispatch.as_ref())
        }
    }
}

async fn serve(app: &Rc<App>, body: Vec<u8>) -> Result<Reply, (Rejection, Vec<u8>)> {
    let relay = match Relay::from_json(&body) {
        Ok(relay) => relay,
        Err(e) => return Err((PocketError::sdk(2, format!("invalid relay JSON: {e}")).into(), body)),
    };
    let checked = match validate(app, &relay).await {
        Ok(checked) => checked,
        Err(rejection) => return Err((rejection, body)),
    };
    Ok(execute(app, relay, checked, body).await)
}

/// What validation established about a relay that may be served.
struct Checked<'a> {
    servicer: &'a Servicer,
    proof_hash: [u8; 32],
}

async fn validate<'a>(app: &'a App, relay: &Relay) -> Result<Checked<'a>, Rejection> {
    let proof = &relay.proof;
    let public_key = decode_key(&proof.servicer_pub_key)
        .ok_or_else(|| PocketError::sdk(1, "Could not convert servicer hex to public key"))?;
    let servicer = app.fleet.servicer(&public_key).ok_or_else(|| PocketError::sdk(1, "Failed to find correct servicer PK"))?;
    let status = app.health.gate(servicer.node)?;

    let sbh = proof.session_block_height;
    if !session_height_acceptable(&status, sbh) {
        return Err(with_current_dispatch(app, servicer, relay, &status, errors::invalid_block_height()).await);
    }
    if relay.payload.data.is_empty() && relay.payload.path.is_empty() {
        return Err(errors::empty_payload_data().into());
    }
    if (relay.meta.block_height - status.height).abs() > CLIENT_BLOCK_SYNC_ALLOWANCE {
        return Err(with_current_dispatch(app, servicer, relay, &status, errors::out_of_sync_request()).await);
    }
    if proof.request_hash != relay.request_hash_hex() {
        return Err(errors::request_hash_mismatch().into());
    }
    if !app.chains.contains_key(&proof.blockchain) {
        return Err(errors::unsupported_blockchain_node().into());
    }
    proof.validate_basic()?;

    let session = match session_for(app, servicer, relay, sbh).await {
        Ok(session) => session,
        Err(SessionFailure::Refused(e)) if e.warrants_dispatch() => {
            return Err(with_current_dispatch(app, servicer, relay, &status, e).await);
        }
        Err(SessionFailure::Refused(e)) => return Err(e.into()),
        Err(SessionFailure::Unreachable(why)) => {
            return Err(PocketError::sdk(1, format!("pocket node is currently unavailable: session lookup failed: {why}")).into());
        }
    };
    let proof_hash = proof.hash();
    match session.reserve(proof_hash) {
        Ok(()) => Ok(Checked { servicer, proof_hash }),
        Err(Refusal::Duplicate) => Err(errors::duplicate_proof().into()),
        Err(Refusal::OverService) => Err(Rejection { error: errors::over_service(), dispatch: session.dispatch.clone() }),
    }
}

/// The relay is reserved: it counts against the session and will be notified whatever the
/// chain answers (a servicer stores the proof before executing, so failed calls are claimable).
async fn execute(app: &Rc<App>, relay: Relay, checked: Checked<'_>, body: Vec<u8>) -> Reply {
    let s = &app.settings;
    let Checked { servicer, proof_hash } = checked;
    let chain = &app.chains[&relay.proof.blockchain];
    let queued = app.notifier.enqueue(NotifyJob {
        node: servicer.node,
        servicer_address: servicer.key.address_hex.clone(),
        chain: relay.proof.blockchain.clone(),
        app_public_key: relay.proof.aat.app_pub_key.clone(),
        relay_json: Arc::new(body),
    });
    if !queued {
        log::error!("event=notify_queue_full servicer={} chain={} (relay served but not queued)", servicer.key.address_hex, chain.id);
    }

    let call = ChainCall::new(chain, &relay.payload, s.chain_request_path_cleanup, s.chain_drop_connections);
    if s.log_chain_request {
        log::info!("event=chain_request chain={} method={} url={} data={:?}", chain.id, call.method, call.url, call.data);
    }
    let agent = app.chain_agent.clone();
    let started = Instant::now();
    let result = smol::unblock(move || call.execute(&agent)).await;
    let elapsed_ms = started.elapsed().as_millis();
    let body = match result {
        Ok(body) => body,
        Err(e) => {
            app.counters.chain_errors.set(app.counters.chain_errors.get() + 1);
            log::warn!("event=chain_error chain={} elapsed_ms={elapsed_ms} error={e:?}", chain.id);
            return relay_error(&errors::http_execution(&e), None);
        }
    };
    if s.log_chain_response {
        log::info!("event=chain_response chain={} elapsed_ms={elapsed_ms} body={body:?}", chain.id);
    }
    let response = if s.json_sort_relay_responses { sort_json_response(&body) } else { body };
    let signature = servicer.key.sign_hex(&response_hash(&response, &hex::encode(proof_hash)));
    app.counters.served.set(app.counters.served.get() + 1);
    relay_ok(&response, &signature)
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

async fn session_for(app: &App, servicer: &Servicer, relay: &Relay, sbh: i64) -> Result<Rc<Session>, SessionFailure> {
    let app_key = &relay.proof.aat.app_pub_key;
    let chain = &relay.proof.blockchain;
    let id = SessionId { header: session_header_hash(app_key, chain, sbh), servicer: servicer.key.public_bytes() };
    let request = json!({
        "session_header": {"app_public_key": app_key, "chain": chain, "session_height": sbh},
        "meta": {"block_height": relay.meta.block_height},
        "servicer_pub_key": servicer.key.public_hex,
        "blockchain": chain,
        "session_block_height": sbh,
    });
    let endpoint = app.endpoint(servicer.node);
    app.sessions.get(id, sbh, move || smol::unblock(move || endpoint.session(&request))).await
}

/// Attach the dispatch of the app's current session so the client can move on (what a
/// servicer does for 60/71/14/75); without one the error goes out with `dispatch: null`.
async fn with_current_dispatch(app: &App, servicer: &Servicer, relay: &Relay, status: &NodeStatus, error: PocketError) -> Rejection {
    let latest = latest_session_height(status.height, status.blocks_per_session);
    let mut current = relay.clone();
    current.meta.block_height = status.height;
    let dispatch = if relay.proof.session_block_height == latest && error.code != 75 {
        None
    } else if decode_key(&relay.proof.aat.app_pub_key).is_some() && app.chains.contains_key(&relay.proof.blockchain) {
        session_for(app, servicer, &current, latest).await.ok().and_then(|s| s.dispatch.clone())
    } else {
        None
    };
    Rejection { error, dispatch }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}
