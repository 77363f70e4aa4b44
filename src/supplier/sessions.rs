//! The per-session chain view the relay path checks relays against, cached in front of the
//! full node: for a relay's (application, service, session start) one set of full-node queries
//! yields a [`SessionInfo`] — the chain's session header and suppliers (§3.1 items 3–4), the
//! expected ring at the session end height (§2.1 "Ring members"), the shared params at the
//! session end (§3.1 item 1), and the difficulty target and compute units per relay at the
//! session start (§4).
//!
//! Concurrent relays of an unknown session wait on the one fetch in flight ([`Flight`]);
//! account public keys are cached per address for good (a key, once set, never changes);
//! failures are answered from the cache only for `fail_ttl` so a transient full-node error does
//! not poison the session; sessions are evicted once their grace period is over.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use super::flight::Flight;
use super::fullnode::{ChainApplication, ChainSession, FullNodeClient, QueryError, SharedParams};
use super::height::CurrentHeight;
use crate::shannon::proto::SessionHeader;
use crate::shannon::session::WindowParams;

pub use crate::shannon::ring_members::{PLACEHOLDER_RING_ADDRESS, PLACEHOLDER_RING_PUBKEY};
/// How long a failed session or pubkey fetch is answered from the cache by default.
pub const DEFAULT_FAIL_TTL: Duration = Duration::from_secs(2);

/// The ring members' addresses for `app` at `session_end_height` (§2.1, poktroll
/// `GetRingAddressesAtSessionEndHeight` + `getRingPubKeysForAddress`, as
/// [`crate::shannon::ring_members::ring_addresses`] implements it), without duplicates
/// (membership is a set, §2.1 step 4).
pub fn ring_addresses(app: &ChainApplication, session_end_height: i64) -> Vec<String> {
    let end = u64::try_from(session_end_height).unwrap_or(0);
    let mut addresses = crate::shannon::ring_members::ring_addresses(&app.address, &app.delegatee_gateway_addresses, &app.pending_undelegations, end);
    addresses.dedup();
    addresses
}

/// A session header field (§1.1 `SessionHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderField {
    ApplicationAddress,
    ServiceId,
    SessionId,
    SessionStartBlockHeight,
    SessionEndBlockHeight,
}

/// One header field where the relay disagrees with the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMismatch {
    pub field: HeaderField,
    pub relay: String,
    pub chain: String,
}

/// poktroll `compareSessionHeaders` (§3.1 item 3): every field, not only the session id. Returns
/// every mismatching field, in field order.
pub fn compare_headers(relay: &SessionHeader, chain: &SessionHeader) -> Vec<FieldMismatch> {
    // Every relay of a session takes this path: no texts built unless something differs.
    if relay == chain {
        return Vec::new();
    }
    let pairs = [
        (HeaderField::ApplicationAddress, relay.application_address.clone(), chain.application_address.clone()),
        (HeaderField::ServiceId, relay.service_id.clone(), chain.service_id.clone()),
        (HeaderField::SessionId, relay.session_id.clone(), chain.session_id.clone()),
        (HeaderField::SessionStartBlockHeight, relay.session_start_block_height.to_string(), chain.session_start_block_height.to_string()),
        (HeaderField::SessionEndBlockHeight, relay.session_end_block_height.to_string(), chain.session_end_block_height.to_string()),
    ];
    pairs.into_iter().filter(|(_, r, c)| r != c).map(|(field, relay, chain)| FieldMismatch { field, relay, chain }).collect()
}

/// What the chain says about one session, verified against nothing yet: the relay's header is
/// compared with `header` on every lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The chain's header.
    pub header: SessionHeader,
    pub session_number: i64,
    /// Supplier operator addresses in the session.
    pub suppliers: BTreeSet<String>,
    /// Ring member addresses at the session end height, sorted (§2.1).
    pub ring_addresses: Vec<String>,
    /// Their public keys, in the same order (the placeholder key for the placeholder address).
    pub ring: Vec<[u8; 33]>,
    /// Shared params at the session end height.
    pub params: SharedParams,
    /// The relay-mining target at the session start height (§4).
    pub difficulty_target: [u8; 32],
    /// Compute units per relay at the session start height (§4).
    pub compute_units_per_relay: u64,
}

impl SessionInfo {
    pub fn window(&self) -> WindowParams {
        self.params.window()
    }

    /// §3.1 item 4: the supplier must be in the session.
    pub fn check_supplier(&self, operator_address: &str) -> Result<(), SessionError> {
        if self.suppliers.contains(operator_address) {
            Ok(())
        } else {
            Err(SessionError::SupplierNotInSession { supplier: operator_address.to_string(), session_id: self.header.session_id.clone() })
        }
    }
}

/// Why a relay's session was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// A full-node query failed (see [`QueryError::is_transient`]).
    Query(QueryError),
    /// The relay's header disagrees with the chain's (§3.1 item 3).
    HeaderMismatch(Vec<FieldMismatch>),
    /// §3.1 item 4.
    SupplierNotInSession { supplier: String, session_id: String },
    /// The session's grace period is over at the current height (§3.1 item 1).
    GraceElapsed { session_end: i64, grace_end: i128, current_height: i64 },
    /// The task fetching the session was dropped; the next lookup fetches again.
    FetchCancelled,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Query(e) => write!(f, "{e}"),
            SessionError::HeaderMismatch(m) => {
                f.write_str("session header does not match the chain's:")?;
                for x in m {
                    write!(f, " {:?} relay={:?} chain={:?};", x.field, x.relay, x.chain)?;
                }
                Ok(())
            }
            SessionError::SupplierNotInSession { supplier, session_id } => write!(f, "supplier {supplier} is not in session {session_id}"),
            SessionError::GraceElapsed { session_end, grace_end, current_height } => {
                write!(f, "session ended at {session_end}, grace period ended at {grace_end}, current height {current_height}")
            }
            SessionError::FetchCancelled => f.write_str("session fetch was cancelled"),
        }
    }
}

impl std::error::Error for SessionError {}

/// The cache key: what a relay claims, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub application_address: String,
    pub service_id: String,
    pub session_start_block_height: i64,
}

impl SessionKey {
    pub fn of(h: &SessionHeader) -> SessionKey {
        SessionKey {
            application_address: h.application_address.clone(),
            service_id: h.service_id.clone(),
            session_start_block_height: h.session_start_block_height,
        }
    }
}

/// Sessions and account keys, in front of a [`FullNodeClient`]. Executor-only.
pub struct SessionCache {
    client: FullNodeClient,
    height: Rc<CurrentHeight>,
    fail_ttl: Duration,
    sessions: Flight<SessionKey, Rc<SessionInfo>, SessionError>,
    pubkeys: Flight<String, [u8; 33], QueryError>,
}

impl SessionCache {
    /// `height` is read for the grace check and fed by [`start_height_poll`] (or the caller).
    pub fn new(client: FullNodeClient, height: Rc<CurrentHeight>, fail_ttl: Duration) -> Rc<SessionCache> {
        Rc::new(SessionCache { client, height, fail_ttl, sessions: Flight::new(), pubkeys: Flight::new() })
    }

    pub fn client(&self) -> &FullNodeClient {
        &self.client
    }

    pub fn height(&self) -> &Rc<CurrentHeight> {
        &self.height
    }

    /// The verified session of a relay's header: fetched once per (app, service, start), then
    /// compared field by field with the chain's header and checked against the grace window at
    /// the current height (when one is known).
    pub async fn session(&self, relay: &SessionHeader) -> Result<Rc<SessionInfo>, SessionError> {
        let key = SessionKey::of(relay);
        let info = self.sessions.get(&key, self.fail_ttl, || SessionError::FetchCancelled, || self.fetch(key.clone())).await?;
        let mismatches = compare_headers(relay, &info.header);
        if !mismatches.is_empty() {
            return Err(SessionError::HeaderMismatch(mismatches));
        }
        if let Some(current) = self.height.get() {
            let end = info.header.session_end_block_height;
            if info.window().grace_elapsed(end, current) {
                let grace_end = i128::from(end) + i128::from(info.params.grace_period_end_offset_blocks);
                return Err(SessionError::GraceElapsed { session_end: end, grace_end, current_height: current });
            }
        }
        Ok(info)
    }

    /// An account's public key, cached per address (failures for `fail_ttl`).
    pub async fn account_pubkey(&self, address: &str) -> Result<[u8; 33], QueryError> {
        if address == PLACEHOLDER_RING_ADDRESS {
            return Ok(PLACEHOLDER_RING_PUBKEY);
        }
        let key = address.to_string();
        let cancelled = || QueryError::Transport { url: String::new(), query: format!("account {address}"), error: "fetch cancelled".into() };
        self.pubkeys.get(&key, self.fail_ttl, cancelled, || self.client.account_pubkey(address)).await
    }

    /// Drop sessions whose grace period is over at `current_height`, and expired failures.
    pub fn evict_expired(&self, current_height: i64) -> usize {
        let evicted = self.sessions.retain(|_, info| !info.window().grace_elapsed(info.header.session_end_block_height, current_height));
        if evicted > 0 {
            log::debug!("event=shannon_sessions_evicted count={evicted} height={current_height}");
        }
        self.pubkeys.retain(|_, _| true);
        evicted
    }

    /// Cached entries (sessions ready, failed or in flight).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a session is cached and ready (no fetch).
    pub fn cached(&self, key: &SessionKey) -> Option<Rc<SessionInfo>> {
        self.sessions.cached(key)
    }

    /// The one set of queries for a session: the session, the application, the difficulty and
    /// CUPR at the start (concurrently), then the shared params at the chain's end height and
    /// the ring members' keys (concurrently).
    async fn fetch(&self, key: SessionKey) -> Result<Rc<SessionInfo>, SessionError> {
        let c = &self.client;
        let (app, svc, start) = (&key.application_address, &key.service_id, key.session_start_block_height);
        let ((session, application), (target, cupr)) = futures_lite::future::zip(
            futures_lite::future::zip(c.session(app, svc, start), c.application(app)),
            futures_lite::future::zip(c.difficulty_target_at(svc, start), c.compute_units_per_relay_at(svc, start)),
        )
        .await;
        let (session, application, target, cupr): (ChainSession, ChainApplication, _, _) = (
            session.map_err(SessionError::Query)?,
            application.map_err(SessionError::Query)?,
            target.map_err(SessionError::Query)?,
            cupr.map_err(SessionError::Query)?,
        );
        let end = session.header.session_end_block_height;
        let addresses = ring_addresses(&application, end);
        let keys = crate::http::join_all(addresses.iter().map(|a| self.account_pubkey(a)).collect());
        let (params, keys) = futures_lite::future::zip(c.shared_params_at(end), keys).await;
        let params = params.map_err(SessionError::Query)?;
        let ring = keys.into_iter().collect::<Result<Vec<_>, _>>().map_err(SessionError::Query)?;
        log::debug!(
            "event=shannon_session_fetched app={app} service={svc} start={start} session_id={} suppliers={} ring={}",
            session.header.session_id,
            session.suppliers.len(),
            ring.len()
        );
        Ok(Rc::new(SessionInfo {
            header: session.header,
            session_number: session.session_number,
            suppliers: session.suppliers.into_iter().collect(),
            ring_addresses: addresses,
            ring,
            params,
            difficulty_target: target,
            compute_units_per_relay: cupr,
        }))
    }
}

/// Spawn the current-height poll for `cache` on `ex`: every `interval` it reads the latest
/// height and evicts the sessions past their grace window. Dropping the task stops it.
pub fn start_height_poll(cache: &Rc<SessionCache>, ex: &smol::LocalExecutor<'static>, interval: Duration) -> smol::Task<()> {
    let weak = Rc::downgrade(cache);
    let height = cache.height.clone();
    let client = cache.client.clone();
    ex.spawn(height.poll(client, interval, move |h| {
        if let Some(cache) = weak.upgrade() {
            cache.evict_expired(h);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(delegatees: &[&str], pending: &[(u64, &[&str])]) -> ChainApplication {
        ChainApplication {
            address: "pokt1app".into(),
            delegatee_gateway_addresses: delegatees.iter().map(|s| s.to_string()).collect(),
            pending_undelegations: pending.iter().map(|(h, l)| (*h, l.iter().map(|s| s.to_string()).collect())).collect(),
        }
    }

    #[test]
    fn ring_rule_at_the_session_end() {
        // No gateways: the app and the placeholder, sorted by address.
        assert_eq!(ring_addresses(&app(&[], &[]), 110), vec!["pokt1app".to_string(), PLACEHOLDER_RING_ADDRESS.to_string()]);
        // Delegatees are sorted in with the app.
        assert_eq!(ring_addresses(&app(&["pokt1zz", "pokt1aa"], &[]), 110), ["pokt1aa", "pokt1app", "pokt1zz"]);
        // Undelegated at or after the session end: still a member; before: not.
        let a = app(&["pokt1gw1"], &[(109, &["pokt1old"]), (110, &["pokt1atend"]), (130, &["pokt1later", "pokt1gw1"])]);
        assert_eq!(ring_addresses(&a, 110), ["pokt1app", "pokt1atend", "pokt1gw1", "pokt1later"]);
        assert_eq!(ring_addresses(&a, 131), ["pokt1app", "pokt1gw1"]);
        // Only gateways undelegated before the end: the placeholder comes back.
        let gone = app(&[], &[(100, &["pokt1old"])]);
        assert_eq!(ring_addresses(&gone, 110), vec!["pokt1app".to_string(), PLACEHOLDER_RING_ADDRESS.to_string()]);
        assert_eq!(ring_addresses(&gone, 100), ["pokt1app", "pokt1old"]);
    }

    #[test]
    fn every_header_field_is_compared() {
        let chain = SessionHeader {
            application_address: "pokt1app".into(),
            service_id: "anvil".into(),
            session_id: "ab".repeat(32),
            session_start_block_height: 101,
            session_end_block_height: 110,
        };
        assert!(compare_headers(&chain, &chain).is_empty());
        let mut relay = chain.clone();
        relay.session_end_block_height = 111;
        relay.session_id = "cd".repeat(32);
        let m = compare_headers(&relay, &chain);
        assert_eq!(m.iter().map(|x| x.field).collect::<Vec<_>>(), [HeaderField::SessionId, HeaderField::SessionEndBlockHeight]);
        assert_eq!((m[1].relay.as_str(), m[1].chain.as_str()), ("111", "110"));
        let mut relay = chain.clone();
        relay.application_address = "pokt1other".into();
        relay.service_id = "eth".into();
        relay.session_start_block_height = 100;
        let fields: Vec<_> = compare_headers(&relay, &chain).into_iter().map(|x| x.field).collect();
        assert_eq!(fields, [HeaderField::ApplicationAddress, HeaderField::ServiceId, HeaderField::SessionStartBlockHeight]);
    }
}
