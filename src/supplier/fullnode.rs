//! Async client of a Shannon full node's REST (grpc-gateway) API over a list of base URLs with
//! failover: the chain queries a supplier edge needs to validate relays (reference §3.4).
//!
//! Failover: a call tries the URL that answered last, then the others in list order, skipping
//! benched ones (all are tried when every URL is benched). A URL that cannot be reached, or
//! answers 5xx (other than 501) or 429, is benched with the exponential backoff of
//! [`crate::servicer::fleet::Bench`] and the next URL is tried within the same call. Any other
//! answer is the chain's word and ends the call: 2xx is parsed, 404 is [`QueryError::NotFound`],
//! other statuses are [`QueryError::Status`].
//!
//! JSON (grpc-gateway as configured by cosmos-sdk: proto field names, int64/uint64 as decimal
//! strings, bytes as base64, zero values possibly omitted). The response messages were read from
//! poktroll's proto files at `ab401ed` (the reference's snapshot): `QueryGetSessionResponse
//! {session}`, `QueryParamsAtHeightResponse {params}` (shared), `QueryGetApplicationResponse
//! {application}` with `pending_undelegations` a `map<uint64, UndelegatingGatewayList>` (JSON
//! object keyed by the height as a string), `QueryGetRelayMiningDifficultyAtHeightResponse
//! {relayMiningDifficulty}` and `QueryComputeUnitsPerRelayAtHeightResponse
//! {computeUnitsPerRelay}`. Those two service fields are camelCase *in the .proto*, so with the
//! proto names the JSON keys are camelCase; the parsers accept the snake_case spelling too.
//! Not verified against a running node: the gateway's marshaler options (we found
//! `EmitDefaults + OrigName` only in a third-party cosmos chain's test), the cosmos auth
//! account envelope (`account` with `@type`, `pub_key {"@type", key}`, taken from cosmos-sdk's
//! `BaseAccount`) and the error body of a failed query (`{"code", "message"}`), so parsing is
//! tolerant: numbers as strings or JSON numbers, absent fields as zero.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::client::{Client, Outgoing};
use crate::servicer::fleet::Bench;
use crate::shannon::proto::SessionHeader;

/// The `@type` of the only account key a ring member or supplier may have (§2.1, §2.2).
pub const SECP256K1_PUBKEY_TYPE: &str = "/cosmos.crypto.secp256k1.PubKey";
/// Longest error-body excerpt kept in a [`QueryError::Status`].
const BODY_EXCERPT: usize = 200;

/// Why a full-node query failed. Every variant names the URL (userinfo redacted) and the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The URL could not be asked (connect, TLS, timeout, broken connection). When every URL
    /// failed, this is the last one's failure.
    Transport { url: String, query: String, error: String },
    /// A non-2xx answer other than 404 (for a failover status, the last URL's).
    Status { url: String, query: String, status: u16, body: String },
    /// 404: the account, application, session or service does not exist (or the node lacks the
    /// route).
    NotFound { url: String, query: String },
    /// The answer is not the JSON we expect; `field` is the path of the offending field.
    BadJson { url: String, query: String, field: String, why: String },
    /// The account exists but has no public key yet (it never signed a transaction).
    NoPubKey { url: String, address: String },
    /// The account key is not secp256k1.
    UnsupportedKeyType { url: String, address: String, key_type: String },
}

impl QueryError {
    /// Worth retrying soon: the node could not answer, as opposed to a definite answer.
    pub fn is_transient(&self) -> bool {
        match self {
            QueryError::Transport { .. } => true,
            QueryError::Status { status, .. } => is_failover_status(*status),
            _ => false,
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Transport { url, query, error } => write!(f, "full node {url}: {query}: {error}"),
            QueryError::Status { url, query, status, body } => write!(f, "full node {url}: {query}: HTTP {status}: {body}"),
            QueryError::NotFound { url, query } => write!(f, "full node {url}: {query}: not found"),
            QueryError::BadJson { url, query, field, why } => write!(f, "full node {url}: {query}: bad JSON at `{field}`: {why}"),
            QueryError::NoPubKey { url, address } => write!(f, "full node {url}: account {address} has no public key"),
            QueryError::UnsupportedKeyType { url, address, key_type } => {
                write!(f, "full node {url}: account {address} has a {key_type:?} key, not secp256k1")
            }
        }
    }
}

impl std::error::Error for QueryError {}

/// 5xx other than 501 Unimplemented, and 429: another node may well answer.
fn is_failover_status(status: u16) -> bool {
    status == 429 || (status >= 500 && status != 501)
}

/// `GetSession` (§1.1 `Session`): the parts a relayer uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSession {
    pub header: SessionHeader,
    pub session_id: String,
    pub session_number: i64,
    pub num_blocks_per_session: i64,
    /// `suppliers[].operator_address`, in the node's order.
    pub suppliers: Vec<String>,
}

/// The shared module's uint64 parameters (§3.3 table). Serde only for the simulator's config
/// file (plain JSON numbers there, absent fields zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedParams {
    pub num_blocks_per_session: u64,
    pub grace_period_end_offset_blocks: u64,
    pub claim_window_open_offset_blocks: u64,
    pub claim_window_close_offset_blocks: u64,
    pub proof_window_open_offset_blocks: u64,
    pub proof_window_close_offset_blocks: u64,
    pub supplier_unbonding_period_sessions: u64,
    pub application_unbonding_period_sessions: u64,
    pub compute_units_to_tokens_multiplier: u64,
    pub gateway_unbonding_period_sessions: u64,
    pub compute_unit_cost_granularity: u64,
    pub session_grid_anchor_height: u64,
    pub session_number_at_anchor: u64,
}

impl SharedParams {
    /// The grace and claim-window offsets (§3.1, §3.3).
    pub fn window(&self) -> crate::shannon::session::WindowParams {
        crate::shannon::session::WindowParams {
            grace_period_end_offset_blocks: self.grace_period_end_offset_blocks,
            claim_window_open_offset_blocks: self.claim_window_open_offset_blocks,
        }
    }
}

/// The application fields the ring depends on (§2.1 "Ring members").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainApplication {
    pub address: String,
    pub delegatee_gateway_addresses: Vec<String>,
    /// (undelegation height, gateways), sorted by height.
    pub pending_undelegations: Vec<(u64, Vec<String>)>,
}

/// One full-node base URL and how calls to it went.
struct Endpoint {
    url: String,
    /// For logs and errors: userinfo removed.
    shown: String,
    bench: Bench,
}

/// The full-node REST client. Cheap to clone; executor-only (`Rc`).
#[derive(Clone)]
pub struct FullNodeClient {
    inner: Rc<Inner>,
}

struct Inner {
    http: Client,
    endpoints: Vec<Endpoint>,
    /// Index of the URL that answered last: tried first.
    preferred: Cell<usize>,
    /// Full-node calls made (one per URL tried), for tests and metrics.
    attempts: Cell<u64>,
}

/// A parsed 2xx answer and the URL that gave it.
struct Answered {
    url: String,
    json: Value,
}

impl FullNodeClient {
    /// `urls` are base URLs (`http://node:1317`, a path prefix allowed); at least one.
    pub fn new(http: Client, urls: &[String]) -> Result<FullNodeClient, String> {
        if urls.is_empty() {
            return Err("no full-node URL configured".into());
        }
        let endpoints = urls
            .iter()
            .map(|u| {
                let url = u.trim_end_matches('/').to_string();
                Endpoint { shown: crate::config::redact_userinfo(&url), url, bench: Bench::default() }
            })
            .collect();
        Ok(FullNodeClient { inner: Rc::new(Inner { http, endpoints, preferred: Cell::new(0), attempts: Cell::new(0) }) })
    }

    /// The URL tried first on the next call (userinfo redacted).
    pub fn preferred_url(&self) -> &str {
        &self.inner.endpoints[self.inner.preferred.get()].shown
    }

    /// HTTP calls made so far, over all URLs.
    pub fn attempts(&self) -> u64 {
        self.inner.attempts.get()
    }

    /// `GET /cosmos/base/tendermint/v1beta1/blocks/latest` → `block.header.height`.
    pub async fn latest_height(&self) -> Result<i64, QueryError> {
        let query = "/cosmos/base/tendermint/v1beta1/blocks/latest".to_string();
        let a = self.get(&query).await?;
        parse_latest_height(&a.json).map_err(|e| e.at(&a.url, &query))
    }

    /// `GetSession(app, service, height)` (§3.4).
    pub async fn session(&self, app: &str, service_id: &str, block_height: i64) -> Result<ChainSession, QueryError> {
        let query = format!(
            "/pokt-network/poktroll/session/get_session?application_address={}&service_id={}&block_height={block_height}",
            encode_component(app),
            encode_component(service_id)
        );
        let a = self.get(&query).await?;
        parse_session(&a.json).map_err(|e| e.at(&a.url, &query))
    }

    /// Shared params at `height` (§3.1: read at the session end height). A node without the
    /// at-height route (404 or 501) is asked for the current params instead, with a warning.
    pub async fn shared_params_at(&self, height: i64) -> Result<SharedParams, QueryError> {
        let query = format!("/pokt-network/poktroll/shared/params/{height}");
        let a = match self.get(&query).await {
            Ok(a) => a,
            Err(QueryError::NotFound { url, .. } | QueryError::Status { url, status: 501, .. }) => {
                log::warn!("event=fullnode_params_at_height_unsupported url={url} height={height} (using the current shared params)");
                self.get("/pokt-network/poktroll/shared/params").await?
            }
            Err(e) => return Err(e),
        };
        parse_shared_params(&a.json).map_err(|e| e.at(&a.url, &query))
    }

    /// `Application(address)`: delegations and pending undelegations (§2.1).
    pub async fn application(&self, address: &str) -> Result<ChainApplication, QueryError> {
        let query = format!("/pokt-network/poktroll/application/application/{}", encode_component(address));
        let a = self.get(&query).await?;
        parse_application(&a.json).map_err(|e| e.at(&a.url, &query))
    }

    /// The 33-byte compressed secp256k1 key of an account (cosmos auth `Account`).
    pub async fn account_pubkey(&self, address: &str) -> Result<[u8; 33], QueryError> {
        let query = format!("/cosmos/auth/v1beta1/accounts/{}", encode_component(address));
        let a = self.get(&query).await?;
        match parse_account_pubkey(&a.json) {
            Ok(key) => Ok(key),
            Err(AccountKeyError::Missing) => Err(QueryError::NoPubKey { url: a.url, address: address.to_string() }),
            Err(AccountKeyError::WrongType(key_type)) => Err(QueryError::UnsupportedKeyType { url: a.url, address: address.to_string(), key_type }),
            Err(AccountKeyError::Bad(e)) => Err(e.at(&a.url, &query)),
        }
    }

    /// The service's relay-mining target hash at `height` (§4: at the session start).
    pub async fn difficulty_target_at(&self, service_id: &str, height: i64) -> Result<[u8; 32], QueryError> {
        let query = format!("/pokt-network/poktroll/service/relay_mining_difficulty/{}/at_height/{height}", encode_component(service_id));
        let a = self.get(&query).await?;
        parse_difficulty_target(&a.json).map_err(|e| e.at(&a.url, &query))
    }

    /// The service's compute units per relay at `height` (§4: at the session start).
    pub async fn compute_units_per_relay_at(&self, service_id: &str, height: i64) -> Result<u64, QueryError> {
        let query = format!("/pokt-network/poktroll/service/compute_units_per_relay/{}/at_height/{height}", encode_component(service_id));
        let a = self.get(&query).await?;
        parse_compute_units(&a.json).map_err(|e| e.at(&a.url, &query))
    }

    /// The order URLs are tried in: the preferred one, then the rest in list order; benched
    /// ones only when every URL is benched.
    fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.get();
        let all: Vec<usize> = (0..n).map(|i| (first + i) % n).collect();
        let open: Vec<usize> = all.iter().copied().filter(|&i| self.inner.endpoints[i].bench.benched_until(now).is_none()).collect();
        if open.is_empty() {
            all
        } else {
            open
        }
    }

    /// GET `query` from the first URL that answers; 2xx bodies are parsed as JSON.
    async fn get(&self, query: &str) -> Result<Answered, QueryError> {
        let inner = &*self.inner;
        let mut last = None;
        for i in self.order(Instant::now()) {
            let endpoint = &inner.endpoints[i];
            inner.attempts.set(inner.attempts.get() + 1);
            let outcome = inner.http.send(Outgoing::new("GET", &format!("{}{query}", endpoint.url)).header("Accept", "application/json")).await;
            let url = endpoint.shown.clone();
            let failure = match outcome {
                Err(e) => QueryError::Transport { url, query: query.to_string(), error: e.to_string() },
                Ok(answer) if is_failover_status(answer.status) => {
                    QueryError::Status { url, query: query.to_string(), status: answer.status, body: excerpt(&answer.body) }
                }
                Ok(answer) => {
                    endpoint.bench.succeed();
                    inner.preferred.set(i);
                    return match answer.status {
                        200..=299 => match serde_json::from_slice(&answer.body) {
                            Ok(json) => Ok(Answered { url, json }),
                            Err(e) => Err(QueryError::BadJson { url, query: query.to_string(), field: String::new(), why: e.to_string() }),
                        },
                        404 => Err(QueryError::NotFound { url, query: query.to_string() }),
                        status => Err(QueryError::Status { url, query: query.to_string(), status, body: excerpt(&answer.body) }),
                    };
                }
            };
            if let Some(pause) = endpoint.bench.fail(Instant::now()) {
                log::warn!("event=fullnode_url_benched bench_ms={} error={:?}", pause.as_millis(), failure.to_string());
            }
            last = Some(failure);
        }
        Err(last.expect("a client has at least one URL"))
    }
}

fn excerpt(body: &[u8]) -> String {
    crate::ops::redact::truncate(&crate::servicer::api::snippet(body), BODY_EXCERPT)
}

/// Percent-encodes a path segment or query value (addresses and service ids are plain
/// `[a-z0-9_-]` in practice; anything else is escaped rather than trusted).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- parsers: pure, one per route, tested below ----

/// A parse failure before the URL and query are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    field: String,
    why: String,
}

impl FieldError {
    fn new(field: &str, why: &str) -> FieldError {
        FieldError { field: field.to_string(), why: why.to_string() }
    }

    fn at(self, url: &str, query: &str) -> QueryError {
        QueryError::BadJson { url: url.to_string(), query: query.to_string(), field: self.field, why: self.why }
    }
}

/// The value at a dotted `path`, or a [`FieldError`] naming it.
fn field<'a>(v: &'a Value, path: &str) -> Result<&'a Value, FieldError> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).filter(|x| !x.is_null()).ok_or_else(|| FieldError::new(path, "missing"))?;
    }
    Ok(cur)
}

/// An int64/uint64 as grpc-gateway writes it (a decimal string) or as a JSON number; absent or
/// null is zero (`EmitDefaults` off).
fn int_or_zero<T: std::str::FromStr + Default + TryFrom<u64> + TryFrom<i64>>(v: &Value, name: &str, path: &str) -> Result<T, FieldError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| FieldError::new(path, "not an integer")),
        Some(Value::Number(n)) => {
            let parsed = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => T::try_from(u).ok(),
                (None, Some(i)) => T::try_from(i).ok(),
                _ => None,
            };
            parsed.ok_or_else(|| FieldError::new(path, "integer out of range"))
        }
        Some(_) => Err(FieldError::new(path, "not an integer")),
    }
}

/// A string field; absent or null is empty.
fn str_or_empty(v: &Value, name: &str, path: &str) -> Result<String, FieldError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(FieldError::new(path, "not a string")),
    }
}

/// A repeated string field; absent or null is empty.
fn strings(v: &Value, name: &str, path: &str) -> Result<Vec<String>, FieldError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, x)| x.as_str().map(str::to_string).ok_or_else(|| FieldError::new(&format!("{path}[{i}]"), "not a string")))
            .collect(),
        Some(_) => Err(FieldError::new(path, "not an array")),
    }
}

/// The first of several spellings of a key that is present.
fn either<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(*n).filter(|x| !x.is_null()))
}

pub(crate) fn parse_latest_height(v: &Value) -> Result<i64, FieldError> {
    let header = field(v, "block.header")?;
    let height: i64 = int_or_zero(header, "height", "block.header.height")?;
    if height <= 0 {
        return Err(FieldError::new("block.header.height", "missing or not positive"));
    }
    Ok(height)
}

pub(crate) fn parse_session(v: &Value) -> Result<ChainSession, FieldError> {
    let s = field(v, "session")?;
    let h = field(s, "header").map_err(|_| FieldError::new("session.header", "missing"))?;
    let header = SessionHeader {
        application_address: str_or_empty(h, "application_address", "session.header.application_address")?,
        service_id: str_or_empty(h, "service_id", "session.header.service_id")?,
        session_id: str_or_empty(h, "session_id", "session.header.session_id")?,
        session_start_block_height: int_or_zero(h, "session_start_block_height", "session.header.session_start_block_height")?,
        session_end_block_height: int_or_zero(h, "session_end_block_height", "session.header.session_end_block_height")?,
    };
    for (value, path) in [
        (&header.application_address, "session.header.application_address"),
        (&header.service_id, "session.header.service_id"),
        (&header.session_id, "session.header.session_id"),
    ] {
        if value.is_empty() {
            return Err(FieldError::new(path, "missing"));
        }
    }
    let suppliers = match s.get("suppliers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, sup)| {
                let path = format!("session.suppliers[{i}].operator_address");
                match sup.get("operator_address").and_then(Value::as_str) {
                    Some(a) if !a.is_empty() => Ok(a.to_string()),
                    _ => Err(FieldError::new(&path, "missing")),
                }
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(FieldError::new("session.suppliers", "not an array")),
    };
    Ok(ChainSession {
        session_id: str_or_empty(s, "session_id", "session.session_id")?,
        session_number: int_or_zero(s, "session_number", "session.session_number")?,
        num_blocks_per_session: int_or_zero(s, "num_blocks_per_session", "session.num_blocks_per_session")?,
        header,
        suppliers,
    })
}

pub(crate) fn parse_shared_params(v: &Value) -> Result<SharedParams, FieldError> {
    let p = field(v, "params")?;
    if !p.is_object() {
        return Err(FieldError::new("params", "not an object"));
    }
    let get = |name: &str| int_or_zero::<u64>(p, name, &format!("params.{name}"));
    Ok(SharedParams {
        num_blocks_per_session: get("num_blocks_per_session")?,
        grace_period_end_offset_blocks: get("grace_period_end_offset_blocks")?,
        claim_window_open_offset_blocks: get("claim_window_open_offset_blocks")?,
        claim_window_close_offset_blocks: get("claim_window_close_offset_blocks")?,
        proof_window_open_offset_blocks: get("proof_window_open_offset_blocks")?,
        proof_window_close_offset_blocks: get("proof_window_close_offset_blocks")?,
        supplier_unbonding_period_sessions: get("supplier_unbonding_period_sessions")?,
        application_unbonding_period_sessions: get("application_unbonding_period_sessions")?,
        compute_units_to_tokens_multiplier: get("compute_units_to_tokens_multiplier")?,
        gateway_unbonding_period_sessions: get("gateway_unbonding_period_sessions")?,
        compute_unit_cost_granularity: get("compute_unit_cost_granularity")?,
        session_grid_anchor_height: get("session_grid_anchor_height")?,
        session_number_at_anchor: get("session_number_at_anchor")?,
    })
}

pub(crate) fn parse_application(v: &Value) -> Result<ChainApplication, FieldError> {
    let a = field(v, "application")?;
    let address = str_or_empty(a, "address", "application.address")?;
    if address.is_empty() {
        return Err(FieldError::new("application.address", "missing"));
    }
    let delegatee_gateway_addresses = strings(a, "delegatee_gateway_addresses", "application.delegatee_gateway_addresses")?;
    let mut pending_undelegations = Vec::new();
    match a.get("pending_undelegations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (height, list) in map {
                let path = format!("application.pending_undelegations.{height}");
                let h: u64 = height.trim().parse().map_err(|_| FieldError::new(&path, "key is not a uint64 height"))?;
                let gateways = strings(list, "gateway_addresses", &format!("{path}.gateway_addresses"))?;
                pending_undelegations.push((h, gateways));
            }
        }
        Some(_) => return Err(FieldError::new("application.pending_undelegations", "not an object")),
    }
    pending_undelegations.sort();
    Ok(ChainApplication { address, delegatee_gateway_addresses, pending_undelegations })
}

/// Why an account answer yields no usable key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccountKeyError {
    Missing,
    WrongType(String),
    Bad(FieldError),
}

/// `account.pub_key` of a `BaseAccount`, or of the `base_account` nested in module and vesting
/// accounts (`base_vesting_account.base_account`).
pub(crate) fn parse_account_pubkey(v: &Value) -> Result<[u8; 33], AccountKeyError> {
    let account = field(v, "account").map_err(AccountKeyError::Bad)?;
    let mut base = account;
    let mut path = String::from("account");
    for _ in 0..3 {
        if base.get("pub_key").is_some() || base.get("address").is_some() {
            break;
        }
        let Some((name, next)) = ["base_account", "base_vesting_account"].iter().find_map(|n| base.get(*n).map(|x| (*n, x))) else { break };
        path = format!("{path}.{name}");
        base = next;
    }
    let Some(key) = base.get("pub_key").filter(|k| !k.is_null()) else { return Err(AccountKeyError::Missing) };
    let key_type = key.get("@type").and_then(Value::as_str).unwrap_or("");
    if key_type != SECP256K1_PUBKEY_TYPE {
        return Err(AccountKeyError::WrongType(key_type.to_string()));
    }
    let path = format!("{path}.pub_key.key");
    let b64 = key.get("key").and_then(Value::as_str).ok_or_else(|| AccountKeyError::Bad(FieldError::new(&path, "missing")))?;
    let raw = crate::base64::decode(b64).ok_or_else(|| AccountKeyError::Bad(FieldError::new(&path, "not base64")))?;
    let raw: [u8; 33] = raw.try_into().map_err(|r: Vec<u8>| AccountKeyError::Bad(FieldError::new(&path, &format!("{} bytes, not 33", r.len()))))?;
    crate::shannon::keys::parse_pubkey(&raw).map_err(|e| AccountKeyError::Bad(FieldError::new(&path, &e.to_string())))?;
    Ok(raw)
}

pub(crate) fn parse_difficulty_target(v: &Value) -> Result<[u8; 32], FieldError> {
    let d = either(v, &["relayMiningDifficulty", "relay_mining_difficulty"]).ok_or_else(|| FieldError::new("relayMiningDifficulty", "missing"))?;
    let path = "relayMiningDifficulty.target_hash";
    let b64 = either(d, &["target_hash", "targetHash"]).and_then(Value::as_str).ok_or_else(|| FieldError::new(path, "missing"))?;
    let raw = crate::base64::decode(b64).ok_or_else(|| FieldError::new(path, "not base64"))?;
    raw.try_into().map_err(|r: Vec<u8>| FieldError::new(path, &format!("{} bytes, not 32", r.len())))
}

pub(crate) fn parse_compute_units(v: &Value) -> Result<u64, FieldError> {
    let name = ["computeUnitsPerRelay", "compute_units_per_relay"].into_iter().find(|n| v.get(*n).is_some_and(|x| !x.is_null()));
    let Some(name) = name else { return Err(FieldError::new("computeUnitsPerRelay", "missing")) };
    let cupr: u64 = int_or_zero(v, name, name)?;
    if cupr == 0 {
        // Services are created with compute_units_per_relay ≥ 1; a zero weight would make
        // every relay worthless in the SMST (§4).
        return Err(FieldError::new(name, "zero"));
    }
    Ok(cupr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The §6.2 app: address and public key (base64 of `0397896e…2cc5`).
    const APP: &str = "pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4";
    const APP_PUB_B64: &str = "A5eJbpsQbfcBJKhWhhzJvlL6yZgOLHoRijbBnQGYaSzF";

    fn ok<T>(r: Result<T, FieldError>) -> T {
        r.unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn latest_height_from_tendermint_block() {
        let body = json!({
            "block_id": {"hash": "q83vEjRWeJA=", "part_set_header": {"total": 1, "hash": "AAAA"}},
            "block": {"header": {"version": {"block": "11", "app": "0"}, "chain_id": "pocket", "height": "883700", "time": "2026-08-17T19:00:00Z"}, "data": {"txs": []}},
            "sdk_block": {"header": {"height": "883700"}}
        });
        assert_eq!(ok(parse_latest_height(&body)), 883_700);
        assert_eq!(ok(parse_latest_height(&json!({"block": {"header": {"height": 12}}}))), 12);
        assert_eq!(parse_latest_height(&json!({"block": {}})).unwrap_err().field, "block.header");
        assert_eq!(parse_latest_height(&json!({"block": {"header": {"height": "x"}}})).unwrap_err().field, "block.header.height");
        assert_eq!(parse_latest_height(&json!({"block": {"header": {}}})).unwrap_err().field, "block.header.height");
    }

    fn session_body() -> Value {
        json!({"session": {
            "header": {
                "application_address": APP,
                "service_id": "anvil",
                "session_id": "4a4b".repeat(16),
                "session_start_block_height": "101",
                "session_end_block_height": "110"
            },
            "session_id": "4a4b".repeat(16),
            "session_number": "11",
            "num_blocks_per_session": "10",
            "application": {"address": APP, "stake": {"denom": "upokt", "amount": "100000000"}, "delegatee_gateway_addresses": []},
            "suppliers": [
                {"owner_address": "pokt1owner", "operator_address": "pokt19a3t4yunp0dlpfjrp7qwnzwlrzd5fzs2gjaaaj", "stake": {"denom": "upokt", "amount": "1000"},
                 "services": [{"service_id": "anvil", "endpoints": [{"url": "http://relayminer1:8545", "rpc_type": "JSON_RPC", "configs": []}], "rev_share": []}],
                 "unstake_session_end_height": "0", "service_config_history": []},
                {"operator_address": "pokt1second"}
            ]
        }})
    }

    #[test]
    fn session_with_header_and_suppliers() {
        let s = ok(parse_session(&session_body()));
        assert_eq!(s.header.application_address, APP);
        assert_eq!(s.header.service_id, "anvil");
        assert_eq!(s.header.session_id, "4a4b".repeat(16));
        assert_eq!((s.header.session_start_block_height, s.header.session_end_block_height), (101, 110));
        assert_eq!((s.session_number, s.num_blocks_per_session), (11, 10));
        assert_eq!(s.suppliers, ["pokt19a3t4yunp0dlpfjrp7qwnzwlrzd5fzs2gjaaaj", "pokt1second"]);
        // No suppliers (omitted) is an empty list, not an error.
        let mut body = session_body();
        body["session"].as_object_mut().unwrap().remove("suppliers");
        assert!(ok(parse_session(&body)).suppliers.is_empty());
        let mut body = session_body();
        body["session"]["suppliers"][1] = json!({"owner_address": "x"});
        assert_eq!(parse_session(&body).unwrap_err().field, "session.suppliers[1].operator_address");
        let mut body = session_body();
        body["session"]["header"].as_object_mut().unwrap().remove("session_id");
        assert_eq!(parse_session(&body).unwrap_err().field, "session.header.session_id");
        let mut body = session_body();
        body["session"]["header"]["session_end_block_height"] = json!("1e3");
        assert_eq!(parse_session(&body).unwrap_err().field, "session.header.session_end_block_height");
        assert_eq!(parse_session(&json!({"session": null})).unwrap_err().field, "session");
    }

    #[test]
    fn shared_params_all_fields_and_omitted_zeros() {
        // The mainnet script values (§3.3), one as a JSON number, zero-valued fields omitted.
        let body = json!({"params": {
            "num_blocks_per_session": "20", "grace_period_end_offset_blocks": "10",
            "claim_window_open_offset_blocks": "11", "claim_window_close_offset_blocks": 10,
            "proof_window_open_offset_blocks": "1", "proof_window_close_offset_blocks": "10",
            "supplier_unbonding_period_sessions": "1", "application_unbonding_period_sessions": "1",
            "compute_units_to_tokens_multiplier": "145990", "gateway_unbonding_period_sessions": "1",
            "compute_unit_cost_granularity": "1000000"
        }, "effective_block_height": "1"});
        let p = ok(parse_shared_params(&body));
        assert_eq!(p.num_blocks_per_session, 20);
        assert_eq!(p.claim_window_close_offset_blocks, 10);
        assert_eq!((p.proof_window_open_offset_blocks, p.proof_window_close_offset_blocks), (1, 10));
        assert_eq!((p.compute_units_to_tokens_multiplier, p.compute_unit_cost_granularity), (145_990, 1_000_000));
        assert_eq!((p.session_grid_anchor_height, p.session_number_at_anchor), (0, 0));
        assert_eq!(p.window(), crate::shannon::session::WindowParams { grace_period_end_offset_blocks: 10, claim_window_open_offset_blocks: 11 });
        assert_eq!(parse_shared_params(&json!({"params": {"num_blocks_per_session": "-1"}})).unwrap_err().field, "params.num_blocks_per_session");
        assert_eq!(parse_shared_params(&json!({"code": 12, "message": "unknown"})).unwrap_err().field, "params");
    }

    #[test]
    fn application_delegations_and_pending_undelegations() {
        let body = json!({"application": {
            "address": APP,
            "stake": {"denom": "upokt", "amount": "1000000"},
            "service_configs": [{"service_id": "anvil"}],
            "delegatee_gateway_addresses": ["pokt1gwa", "pokt1gwb"],
            "pending_undelegations": {
                "120": {"gateway_addresses": ["pokt1gwc"]},
                "95": {"gateway_addresses": ["pokt1gwd", "pokt1gwe"]}
            },
            "unstake_session_end_height": "0"
        }});
        let a = ok(parse_application(&body));
        assert_eq!(a.address, APP);
        assert_eq!(a.delegatee_gateway_addresses, ["pokt1gwa", "pokt1gwb"]);
        assert_eq!(a.pending_undelegations, vec![(95, vec!["pokt1gwd".to_string(), "pokt1gwe".to_string()]), (120, vec!["pokt1gwc".to_string()])]);
        // Omitted repeated/map fields are empty.
        let bare = ok(parse_application(&json!({"application": {"address": APP}})));
        assert!(bare.delegatee_gateway_addresses.is_empty() && bare.pending_undelegations.is_empty());
        let bad = json!({"application": {"address": APP, "pending_undelegations": {"soon": {"gateway_addresses": []}}}});
        assert_eq!(parse_application(&bad).unwrap_err().field, "application.pending_undelegations.soon");
        let bad = json!({"application": {"address": APP, "delegatee_gateway_addresses": ["a", 3]}});
        assert_eq!(parse_application(&bad).unwrap_err().field, "application.delegatee_gateway_addresses[1]");
    }

    #[test]
    fn account_pubkeys_base_module_and_missing() {
        let expected: [u8; 33] = hex::decode("0397896e9b106df70124a856861cc9be52fac9980e2c7a118a36c19d0198692cc5").unwrap().try_into().unwrap();
        let base = json!({"account": {"@type": "/cosmos.auth.v1beta1.BaseAccount", "address": APP,
            "pub_key": {"@type": SECP256K1_PUBKEY_TYPE, "key": APP_PUB_B64}, "account_number": "42", "sequence": "7"}});
        assert_eq!(parse_account_pubkey(&base), Ok(expected));
        let vesting = json!({"account": {"@type": "/cosmos.vesting.v1beta1.ContinuousVestingAccount",
            "base_vesting_account": {"base_account": {"address": APP, "pub_key": {"@type": SECP256K1_PUBKEY_TYPE, "key": APP_PUB_B64}}}}});
        assert_eq!(parse_account_pubkey(&vesting), Ok(expected));
        let fresh = json!({"account": {"@type": "/cosmos.auth.v1beta1.BaseAccount", "address": APP, "pub_key": null, "account_number": "43", "sequence": "0"}});
        assert_eq!(parse_account_pubkey(&fresh), Err(AccountKeyError::Missing));
        let ed = json!({"account": {"address": APP, "pub_key": {"@type": "/cosmos.crypto.ed25519.PubKey", "key": APP_PUB_B64}}});
        assert_eq!(parse_account_pubkey(&ed), Err(AccountKeyError::WrongType("/cosmos.crypto.ed25519.PubKey".into())));
        let short = json!({"account": {"address": APP, "pub_key": {"@type": SECP256K1_PUBKEY_TYPE, "key": "AAEC"}}});
        assert!(matches!(parse_account_pubkey(&short), Err(AccountKeyError::Bad(e)) if e.field == "account.pub_key.key" && e.why.contains("3 bytes")));
        let off_curve = json!({"account": {"address": APP, "pub_key": {"@type": SECP256K1_PUBKEY_TYPE, "key": crate::base64::encode(&[5u8; 33])}}});
        assert!(matches!(parse_account_pubkey(&off_curve), Err(AccountKeyError::Bad(_))));
    }

    #[test]
    fn difficulty_target_both_spellings() {
        let target = [0x00, 0x00, 0xff, 0xff].iter().copied().chain(std::iter::repeat_n(0xff, 28)).collect::<Vec<u8>>();
        let body = json!({"relayMiningDifficulty": {"serviceId": "anvil", "service_id": "anvil", "block_height": "101", "num_relays_ema": "4000",
            "target_hash": crate::base64::encode(&target)}});
        assert_eq!(ok(parse_difficulty_target(&body)).to_vec(), target);
        let snake = json!({"relay_mining_difficulty": {"target_hash": crate::base64::encode(&[0xff; 32])}});
        assert_eq!(ok(parse_difficulty_target(&snake)), [0xff; 32]);
        let short = json!({"relayMiningDifficulty": {"target_hash": crate::base64::encode(&[0xff; 31])}});
        assert!(parse_difficulty_target(&short).unwrap_err().why.contains("31 bytes"));
        assert_eq!(parse_difficulty_target(&json!({})).unwrap_err().field, "relayMiningDifficulty");
    }

    #[test]
    fn compute_units_both_spellings() {
        assert_eq!(ok(parse_compute_units(&json!({"computeUnitsPerRelay": "5"}))), 5);
        assert_eq!(ok(parse_compute_units(&json!({"compute_units_per_relay": 7}))), 7);
        assert_eq!(parse_compute_units(&json!({})).unwrap_err().field, "computeUnitsPerRelay");
        assert_eq!(parse_compute_units(&json!({"computeUnitsPerRelay": "0"})).unwrap_err().why, "zero");
    }

    #[test]
    fn components_are_escaped_and_errors_name_url_and_query() {
        assert_eq!(encode_component("pokt1abc_x-y"), "pokt1abc_x-y");
        assert_eq!(encode_component("a/b?c&d"), "a%2Fb%3Fc%26d");
        let e = FieldError::new("params", "missing").at("http://node:1317", "/q");
        assert_eq!(e.to_string(), "full node http://node:1317: /q: bad JSON at `params`: missing");
        assert!(QueryError::Status { url: "u".into(), query: "q".into(), status: 503, body: String::new() }.is_transient());
        assert!(!QueryError::Status { url: "u".into(), query: "q".into(), status: 400, body: String::new() }.is_transient());
        assert!(!QueryError::NotFound { url: "u".into(), query: "q".into() }.is_transient());
    }
}
