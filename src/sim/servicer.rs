//! Servicer ("full node") simulator: the three private mesh routes a Geo-Mesh-enabled
//! pocket-core servicer exposes (`/v1/private/mesh/{check,session,relay}`), re-validating every
//! notified relay the way a real servicer does, plus unauthenticated `/sim/*` routes that let
//! tests and `meshd demo` inspect counters and flip the node between healthy, syncing and down,
//! and one public query route (`POST /v1/query/height`) for testing meshd's proxy.
//! State lives in memory only: a restarted *process* starts from zero counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use super::http::{Handler, HttpServer, Incoming, Reply};
use crate::base64::encode as base64;
use crate::protocol::errors;
use crate::protocol::keys::address_of;
use crate::protocol::session::{latest_session_height, session_header_hash, within_tolerance};
use crate::protocol::{PocketError, Relay};

/// Servicer simulator configuration (JSON file for `meshd sim servicer --config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServicerSimConfig {
    /// Loopback `ip:port`; port 0 picks a free one.
    pub listen: String,
    /// Expected raw `Authorization` header value (no `Bearer`). Empty authorizes an absent
    /// header, as a servicer with an empty token file does.
    pub auth_token: String,
    /// Last committed block height.
    pub height: i64,
    pub blocks_per_session: i64,
    /// Sessions of slack accepted for relay session heights (pocket `client_session_sync_allowance`).
    pub client_session_sync_allowance: i64,
    /// Allowed distance of `meta.block_height` from `height` (pocket `ClientBlockSyncAllowance`).
    pub client_block_sync_allowance: i64,
    /// pocketcore `SessionNodeCount`: the divisor of an app's max relays, and the most nodes a
    /// dispatch lists (mainnet: 24), so a simulator hosting hundreds of servicers still answers
    /// sessions of a real size.
    pub session_node_count: i64,
    /// `service_url` advertised for every node in dispatch responses.
    pub service_url: String,
    /// Ed25519 public keys (64 hex) of the servicers this node hosts (lean mode).
    pub servicers: Vec<String>,
    /// Chains hosted by this node.
    pub chains: Vec<String>,
    /// Staked applications known to the simulated world state.
    pub apps: Vec<SimApp>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimApp {
    pub public_key: String,
    pub chains: Vec<String>,
    pub max_relays: u64,
}

impl Default for ServicerSimConfig {
    fn default() -> Self {
        ServicerSimConfig {
            listen: "127.0.0.1:0".into(),
            auth_token: String::new(),
            height: 101,
            blocks_per_session: 4,
            client_session_sync_allowance: 1,
            client_block_sync_allowance: 10,
            session_node_count: 5,
            service_url: "http://127.0.0.1:8081".into(),
            servicers: Vec::new(),
            chains: vec!["0021".into()],
            apps: Vec::new(),
            version: "RC-0.11.1".into(),
        }
    }
}

impl ServicerSimConfig {
    /// Parse and validate a config; `source` (e.g. the file path) prefixes every error.
    pub fn from_json(bytes: &[u8], source: &str) -> Result<Self, String> {
        let cfg: ServicerSimConfig = parse_naming_field(bytes, source)?;
        cfg.validate().map_err(|e| format!("{source}: {e}"))?;
        Ok(cfg)
    }

    pub fn load(path: &str) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        Self::from_json(&bytes, path)
    }

    /// Semantic checks; each error names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let addr: SocketAddr = self.listen.parse().map_err(|e| format!("listen: {:?} is not ip:port: {e}", self.listen))?;
        if !addr.ip().is_loopback() {
            return Err(format!("listen: {} is not a loopback address", self.listen));
        }
        if self.height < 1 {
            return Err(format!("height: must be >= 1, got {}", self.height));
        }
        if self.blocks_per_session < 1 {
            return Err(format!("blocks_per_session: must be >= 1, got {}", self.blocks_per_session));
        }
        if self.client_session_sync_allowance < 0 {
            return Err("client_session_sync_allowance: must be >= 0".into());
        }
        if self.client_block_sync_allowance < 0 {
            return Err("client_block_sync_allowance: must be >= 0".into());
        }
        if self.session_node_count < 1 {
            return Err(format!("session_node_count: must be >= 1, got {}", self.session_node_count));
        }
        for (i, s) in self.servicers.iter().enumerate() {
            pub_key_bytes(s).ok_or_else(|| format!("servicers[{i}]: not a 64-hex ed25519 public key: {s:?}"))?;
        }
        for (i, c) in self.chains.iter().enumerate() {
            check_chain_id(c).map_err(|e| format!("chains[{i}]: {e}"))?;
        }
        for (i, a) in self.apps.iter().enumerate() {
            pub_key_bytes(&a.public_key).ok_or_else(|| format!("apps[{i}].public_key: not a 64-hex ed25519 public key: {:?}", a.public_key))?;
            if a.chains.is_empty() {
                // A staked app always has chains; MaxPossibleRelays divides by their number.
                return Err(format!("apps[{i}].chains: must not be empty"));
            }
            for (j, c) in a.chains.iter().enumerate() {
                check_chain_id(c).map_err(|e| format!("apps[{i}].chains[{j}]: {e}"))?;
            }
        }
        Ok(())
    }
}

fn check_chain_id(c: &str) -> Result<(), String> {
    match hex::decode(c) {
        Ok(b) if (1..=4).contains(&b.len()) => Ok(()),
        _ => Err(format!("{c:?} is not a 1..4 byte hex chain id")),
    }
}

fn pub_key_bytes(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// Lowercase hex address of a hex public key, if it is one.
fn address_of_hex(pub_hex: &str) -> Option<String> {
    pub_key_bytes(pub_hex).map(|pk| hex::encode(address_of(&pk)))
}

/// Deserialize `T` (a struct whose fields all default) and, when that fails, pin the error on
/// the first top-level field that fails alone — serde's own messages do not say which field
/// had the wrong type.
pub(crate) fn parse_naming_field<T: DeserializeOwned>(bytes: &[u8], source: &str) -> Result<T, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("{source}: invalid JSON: {e}"))?;
    match serde_json::from_value::<T>(v.clone()) {
        Ok(t) => Ok(t),
        Err(e) => {
            if let Value::Object(m) = &v {
                for (k, fv) in m {
                    let single = Value::Object(std::iter::once((k.clone(), fv.clone())).collect());
                    if let Err(e2) = serde_json::from_value::<T>(single) {
                        return Err(format!("{source}: field `{k}`: {e2}"));
                    }
                }
            }
            Err(format!("{source}: {e}"))
        }
    }
}

/// Operating mode, switchable at runtime through `/sim/control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimMode {
    #[default]
    Ok,
    /// Node syncing: check reports `is_catching_up`, session and relay are refused.
    CatchingUp,
    /// Node booting: check reports `is_starting`, session and relay are refused.
    Starting,
    /// Every private route answers 503 text/plain (e.g. a proxy in front of a dead node).
    Unavailable,
}

/// Runtime knobs (`POST /sim/control` body); absent fields are left unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimControl {
    #[serde(default)]
    pub height: Option<i64>,
    #[serde(default)]
    pub mode: Option<SimMode>,
    /// Non-zero: every notify answers this HTTP status (text/plain) without being processed.
    #[serde(default)]
    pub fail_notify_status: Option<u16>,
    /// `Some(Some(n))` sets every app's max_relays to n; `Some(None)` (JSON `null`) clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub max_relays_override: Option<Option<u64>>,
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

/// Counters; a snapshot is returned by [`SimHandle::stats`] and `GET /sim/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServicerStats {
    /// Notifies accepted (proof stored).
    pub accepted_total: u64,
    /// Accepted notifies per servicer address (hex).
    pub accepted_by_servicer: BTreeMap<String, u64>,
    /// Notifies rejected with 37 (also counted in `rejections`).
    pub duplicates: u64,
    /// Rejected notifies per error code (a syncing node's code-less `{}` error counts as 0).
    pub rejections: BTreeMap<u32, u64>,
    /// Authorized, non-`verify` calls per route.
    pub check_calls: u64,
    pub session_calls: u64,
    pub notify_calls: u64,
    /// `?verify=true` probes on any route.
    pub verify_calls: u64,
    /// Notifies answered with `fail_notify_status` (not validated, not counted above).
    pub forced_failures: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// Bodies that did not decode.
    pub bad_requests: u64,
    /// Hex proof hashes of accepted notifies, in acceptance order (`/sim/stats?proofs=1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_proofs: Option<Vec<String>>,
    pub height: i64,
    pub mode: SimMode,
}

/// Per-app relay budget for one servicer in one session, pocket's `MaxPossibleRelays`:
/// `RoundInt(Dec(max_relays) / len(chains) / session_node_count)` with 18-decimal `sdk.Dec`
/// arithmetic where each division and the final rounding are banker's rounding.
pub fn max_possible_relays(max_relays: u64, n_chains: u64, session_node_count: u64) -> u64 {
    const PREC: u128 = 1_000_000_000_000_000_000;
    // Half-to-even rounding of q + r/den given the remainder r < den.
    fn round(q: u128, r: u128, den: u128) -> u128 {
        match (2 * r).cmp(&den) {
            std::cmp::Ordering::Less => q,
            std::cmp::Ordering::Greater => q + 1,
            std::cmp::Ordering::Equal => q + (q & 1),
        }
    }
    // Dec.Quo(Dec(n)): floor(a·10^18 / n) with the last 18 digits chopped half-even, which for
    // a = k·n + m is k plus the rounding of floor(m·10^18 / n) against 10^18 (fits in u128).
    fn quo(a: u128, n: u128) -> u128 {
        let (k, m) = (a / n, a % n);
        round(k, m * PREC / n, PREC)
    }
    let (c, s) = (u128::from(n_chains.max(1)), u128::from(session_node_count.max(1)));
    let d = quo(quo(u128::from(max_relays) * PREC, c), s);
    round(d / PREC, d % PREC, PREC) as u64
}

struct State {
    cfg: ServicerSimConfig,
    height: i64,
    mode: SimMode,
    fail_notify_status: u16,
    max_relays_override: Option<u64>,
    /// Configured servicers: lowercase address → lowercase public key.
    servicers: BTreeMap<String, String>,
    /// Staked apps by lowercase public key.
    apps: HashMap<String, SimApp>,
    /// Stored proofs per (session header, servicer) — the evidence a servicer claims.
    relays_served: HashMap<String, u64>,
    /// Exact duplicate detection: proof hashes per session header.
    seen_proofs: HashMap<String, HashSet<[u8; 32]>>,
    /// Accepted proof hashes in order, kept raw (hex only on demand: benches accept millions).
    accepted_proofs: Vec<[u8; 32]>,
    stats: ServicerStats,
}

/// The session a relay belongs to, normalized so that hex case does not split counts.
fn header_key(app: &str, chain: &str, session_height: i64) -> String {
    format!("{}/{}/{}", app.to_ascii_lowercase(), chain.to_ascii_lowercase(), session_height)
}

fn evidence_key(app: &str, chain: &str, session_height: i64, servicer_pub: &str) -> String {
    format!("{}/{}", header_key(app, chain, session_height), servicer_pub.to_ascii_lowercase())
}

impl State {
    fn latest_session(&self) -> i64 {
        latest_session_height(self.height, self.cfg.blocks_per_session)
    }

    fn max_relays(&self, app: &SimApp) -> u64 {
        let m = self.max_relays_override.unwrap_or(app.max_relays);
        max_possible_relays(m, app.chains.len() as u64, self.cfg.session_node_count as u64)
    }

    /// The session as a servicer returns it. Every configured servicer serves every session, but
    /// the node list holds at most `session_node_count` of them, the asking servicer first: a
    /// real session has that many nodes, and a benchmark with 500 servicers must not get
    /// 500-node dispatches (hundreds of KiB each) that no real servicer sends.
    fn dispatch(&self, app: &str, chain: &str, session_height: i64, asking: &str) -> Value {
        let key = session_header_hash(app, chain, session_height);
        let cap = usize::try_from(self.cfg.session_node_count).unwrap_or(1).max(1);
        let all = &self.cfg.servicers;
        let listed: Vec<&String> = if all.len() <= cap {
            all.iter().collect()
        } else {
            let first = all.iter().find(|pk| pk.eq_ignore_ascii_case(asking));
            first.into_iter().chain(all.iter().filter(|pk| !pk.eq_ignore_ascii_case(asking))).take(cap).collect()
        };
        let nodes: Vec<Value> = listed
            .into_iter()
            .map(|pk| {
                json!({
                    "address": address_of_hex(pk).unwrap_or_default(),
                    "chains": self.cfg.chains,
                    "jailed": false,
                    "output_address": "",
                    "public_key": pk.to_ascii_lowercase(),
                    "service_url": self.cfg.service_url,
                    "status": 2,
                    "tokens": "1000000000",
                    "unstaking_time": "0001-01-01T00:00:00Z",
                })
            })
            .collect();
        json!({
            "block_height": self.height,
            "session": {
                "header": {"app_public_key": app, "chain": chain, "session_height": session_height},
                "key": base64(&key),
                "nodes": nodes,
            }
        })
    }

    fn syncing(&self) -> bool {
        matches!(self.mode, SimMode::CatchingUp | SimMode::Starting)
    }

    fn apply(&mut self, c: &SimControl) -> Result<(), String> {
        if let Some(h) = c.height {
            if h < 1 {
                return Err(format!("height: must be >= 1, got {h}"));
            }
        }
        if let Some(s) = c.fail_notify_status {
            if s != 0 && !(100..=999).contains(&s) {
                return Err(format!("fail_notify_status: {s} is not an HTTP status (or 0)"));
            }
        }
        if let Some(h) = c.height {
            self.height = h;
        }
        if let Some(m) = c.mode {
            self.mode = m;
        }
        if let Some(s) = c.fail_notify_status {
            self.fail_notify_status = s;
        }
        if let Some(o) = c.max_relays_override {
            self.max_relays_override = o;
        }
        Ok(())
    }

    fn control_view(&self) -> Value {
        json!({
            "height": self.height,
            "mode": self.mode,
            "fail_notify_status": self.fail_notify_status,
            "max_relays_override": self.max_relays_override,
        })
    }

    fn snapshot(&self, with_proofs: bool) -> ServicerStats {
        let mut s = self.stats.clone();
        s.height = self.height;
        s.mode = self.mode;
        if with_proofs {
            s.accepted_proofs = Some(self.accepted_proofs.iter().map(hex::encode).collect());
        }
        s
    }
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one handler must not take the simulator down for the rest of a test.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running servicer simulator. Dropping it stops it.
pub struct SimHandle {
    shared: Arc<Shared>,
    server: Option<HttpServer>,
    addr: SocketAddr,
}

/// Start a servicer simulator on background threads.
pub fn start_servicer(cfg: ServicerSimConfig) -> io::Result<SimHandle> {
    cfg.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let servicers = cfg.servicers.iter().map(|pk| (address_of_hex(pk).expect("validated"), pk.to_ascii_lowercase())).collect();
    let apps = cfg.apps.iter().map(|a| (a.public_key.to_ascii_lowercase(), a.clone())).collect();
    let state = State {
        height: cfg.height,
        mode: SimMode::Ok,
        fail_notify_status: 0,
        max_relays_override: None,
        servicers,
        apps,
        relays_served: HashMap::new(),
        seen_proofs: HashMap::new(),
        accepted_proofs: Vec::new(),
        stats: ServicerStats::default(),
        cfg,
    };
    let listen = state.cfg.listen.clone();
    let shared = Arc::new(Shared { state: Mutex::new(state) });
    let server = HttpServer::start(&listen, handler(shared.clone()))?;
    let addr = server.addr();
    Ok(SimHandle { shared, server: Some(server), addr })
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Counters, including the accepted proof hashes.
    pub fn stats(&self) -> ServicerStats {
        self.shared.lock().snapshot(true)
    }
    /// Apply runtime knobs (same semantics as `POST /sim/control`).
    pub fn control(&self, c: &SimControl) -> Result<(), String> {
        self.shared.lock().apply(c)
    }
    pub fn set_mode(&self, mode: SimMode) {
        self.shared.lock().mode = mode;
    }
    pub fn set_height(&self, height: i64) -> Result<(), String> {
        self.control(&SimControl { height: Some(height), ..Default::default() })
    }
    /// Close the port and every open connection (clients get "connection refused"); counters
    /// and sessions are kept for [`SimHandle::resume`].
    pub fn pause(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.shutdown();
        }
    }
    /// Listen again on the same port after [`SimHandle::pause`], with the state intact.
    pub fn resume(&mut self) -> io::Result<()> {
        if self.server.is_none() {
            self.server = Some(HttpServer::start(&self.addr.to_string(), handler(self.shared.clone()))?);
        }
        Ok(())
    }
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }
    /// Stop serving and release the port.
    pub fn stop(mut self) {
        self.pause();
    }
}

fn handler(shared: Arc<Shared>) -> Handler {
    Arc::new(move |rq: Incoming| route(&shared, rq))
}

fn route(shared: &Shared, rq: Incoming) -> Reply {
    match (rq.method.as_str(), rq.path.as_str()) {
        ("GET", "/sim/stats") => {
            let s = shared.lock().snapshot(rq.query_param("proofs") == Some("1"));
            return Reply::json(200, &serde_json::to_value(s).expect("stats serialize"));
        }
        ("GET", "/sim/control") => return Reply::json(200, &shared.lock().control_view()),
        // One public query route, so a proxy in front of the simulator can be tested.
        ("POST", "/v1/query/height") => return Reply::json(200, &json!({"height": shared.lock().height})),
        ("POST", "/sim/control") => {
            let c: SimControl = match serde_json::from_slice(&rq.body) {
                Ok(c) => c,
                Err(e) => return Reply::text(400, &format!("/sim/control body: {e}")),
            };
            let mut st = shared.lock();
            return match st.apply(&c) {
                Ok(()) => Reply::json(200, &st.control_view()),
                Err(e) => Reply::text(400, &e),
            };
        }
        _ => {}
    }
    let endpoint = match rq.path.as_str() {
        "/v1/private/mesh/check" => Endpoint::Check,
        "/v1/private/mesh/session" => Endpoint::Session,
        "/v1/private/mesh/relay" => Endpoint::Relay,
        _ => return Reply::text(404, "404 page not found\n"),
    };
    let mut st = shared.lock();
    if st.mode == SimMode::Unavailable {
        return Reply::text(503, "Service Unavailable\n");
    }
    if rq.method != "POST" {
        return Reply::text(405, "Method Not Allowed\n");
    }
    let token = rq.header("Authorization").unwrap_or("");
    if token != st.cfg.auth_token {
        st.stats.unauthorized += 1;
        return Reply::json(401, &json!({"code": 401, "message": format!("wrong authtoken: {token}")}));
    }
    if rq.query_param("verify") == Some("true") {
        st.stats.verify_calls += 1;
        return match endpoint {
            Endpoint::Check => Reply::json(200, &json!({})),
            Endpoint::Session => Reply::json(200, &json!({"dispatch": null, "error": null, "remaining_relays": 0, "success": true})),
            Endpoint::Relay => Reply::json(200, &json!({"dispatch": null, "error": null, "signature": true})),
        };
    }
    match endpoint {
        Endpoint::Check => {
            st.stats.check_calls += 1;
            check(&st, &rq.body)
        }
        Endpoint::Session => {
            st.stats.session_calls += 1;
            session(&mut st, &rq.body)
        }
        Endpoint::Relay => {
            if st.fail_notify_status != 0 {
                st.stats.forced_failures += 1;
                return Reply::text(st.fail_notify_status, "simulated failure\n");
            }
            st.stats.notify_calls += 1;
            // The expensive, state-free part (hashes, signatures) runs without the lock.
            drop(st);
            let pre = match Prechecked::new(&rq.body) {
                Ok(p) => p,
                Err(e) => {
                    shared.lock().stats.bad_requests += 1;
                    return Reply::json(400, &json!({"dispatch": null, "error": {"message": e}}));
                }
            };
            let mut st = shared.lock();
            notify(&mut st, &pre, rq.header("X-Servicer").unwrap_or(""))
        }
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Check,
    Session,
    Relay,
}

/// Lowercase every object key, recursively: Go's decoder matches field names
/// case-insensitively (the mesh sends `"Chains"` for a field tagged `chains`).
fn lower_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), lower_keys(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(lower_keys).collect()),
        other => other,
    }
}

fn decode_go<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    serde_json::from_value(lower_keys(v)).map_err(|e| e.to_string())
}

fn bad_request(msg: &str) -> Reply {
    Reply::json(400, &json!({"code": 400, "message": msg}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckPayload {
    servicers: Vec<String>,
    chains: Vec<String>,
}

fn check(st: &State, body: &[u8]) -> Reply {
    let req: CheckPayload = match decode_go(body) {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    let wrong_servicers: Vec<&String> = req.servicers.iter().filter(|a| !st.servicers.contains_key(&a.to_ascii_lowercase())).collect();
    let wrong_chains: Vec<&String> = req.chains.iter().filter(|c| !st.cfg.chains.contains(c)).collect();
    Reply::json(
        200,
        &json!({
            "success": true,
            "error": null,
            "status": {
                "version": st.cfg.version,
                "is_starting": st.mode == SimMode::Starting,
                "is_catching_up": st.mode == SimMode::CatchingUp,
                "height": st.height,
            },
            "blocks_per_session": st.cfg.blocks_per_session,
            "servicers": wrong_servicers.is_empty(),
            "chains": wrong_chains.is_empty(),
            "wrong_servicers": wrong_servicers,
            "wrong_chains": wrong_chains,
            "client_session_sync_allowance": st.cfg.client_session_sync_allowance,
        }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SessionHeaderReq {
    app_public_key: String,
    chain: String,
    session_height: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MeshSessionReq {
    session_header: SessionHeaderReq,
    servicer_pub_key: String,
    blockchain: String,
    session_block_height: i64,
    // `meta` is accepted and ignored: the real servicer discards its validation result.
}

fn session_error(e: &PocketError) -> Reply {
    Reply::json(
        400,
        &json!({
            "success": false,
            "error": {"code": e.code, "codespace": e.codespace, "message": e.message},
            "dispatch": null,
            "remaining_relays": 0,
        }),
    )
}

fn session(st: &mut State, body: &[u8]) -> Reply {
    let req: MeshSessionReq = match decode_go(body) {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    match session_checks(st, &req) {
        Ok((remaining, dispatch)) => Reply::json(200, &json!({"success": true, "error": null, "remaining_relays": remaining, "dispatch": dispatch})),
        Err(e) => session_error(&e),
    }
}

/// `keeper.HandleMeshSession` order: status, lean servicer, hosted chain, latest session
/// height, app, app chain, budget.
fn session_checks(st: &State, req: &MeshSessionReq) -> Result<(u64, Value), PocketError> {
    if st.syncing() {
        return Err(errors::internal(SYNCING));
    }
    let addr = address_of_hex(&req.servicer_pub_key).ok_or_else(|| errors::internal(errors::MSG_SERVICER_HEX))?;
    if !st.servicers.contains_key(&addr) {
        return Err(errors::internal(errors::MSG_SERVICER_NOT_FOUND));
    }
    let chain = if req.blockchain.is_empty() { &req.session_header.chain } else { &req.blockchain };
    if !st.cfg.chains.contains(chain) {
        return Err(errors::unsupported_blockchain_node());
    }
    if req.session_block_height != st.latest_session() {
        return Err(errors::invalid_block_height());
    }
    let h = &req.session_header;
    let app = st.apps.get(&h.app_public_key.to_ascii_lowercase()).ok_or_else(errors::app_not_found)?;
    if !app.chains.contains(chain) {
        return Err(errors::unsupported_blockchain_app());
    }
    let max = st.max_relays(app);
    let served = st.relays_served.get(&evidence_key(&h.app_public_key, chain, req.session_block_height, &req.servicer_pub_key)).copied().unwrap_or(0);
    if served >= max {
        return Err(errors::over_service());
    }
    Ok((max - served, st.dispatch(&h.app_public_key, chain, req.session_block_height, &req.servicer_pub_key)))
}

/// `app/query.go`'s refusal while the node is syncing (a plain Go error on the relay route).
const SYNCING: &str = "pocket node is currently syncing to the blockchain, cannot service in this state";

/// Everything about a notified relay that does not depend on simulator state.
struct Prechecked {
    relay: Relay,
    request_hash: String,
    proof_hash: [u8; 32],
    basic: Result<(), PocketError>,
    servicer_addr: Option<String>,
}

impl Prechecked {
    fn new(body: &[u8]) -> Result<Prechecked, String> {
        let relay = Relay::from_json(body).map_err(|e| format!("decoding relay: {e}"))?;
        Ok(Prechecked {
            request_hash: relay.request_hash_hex(),
            proof_hash: relay.proof.hash(),
            basic: relay.proof.validate_basic(),
            servicer_addr: address_of_hex(&relay.proof.servicer_pub_key),
            relay,
        })
    }
}

fn notify_error(st: &State, e: &PocketError, relay: &Relay) -> Reply {
    // A real servicer attaches a fresh dispatch when the client should refresh its session.
    let dispatch = if e.warrants_dispatch() {
        st.dispatch(&relay.proof.aat.app_pub_key, &relay.proof.blockchain, st.latest_session(), &relay.proof.servicer_pub_key)
    } else {
        Value::Null
    };
    Reply::json(
        400,
        &json!({
            "signature": false,
            "error": {"code": e.code, "codespace": e.codespace, "message": e.message},
            "dispatch": dispatch,
        }),
    )
}

fn notify(st: &mut State, pre: &Prechecked, x_servicer: &str) -> Reply {
    if st.syncing() {
        // A plain Go error: it serializes as `{}`, which the mesh reads as a retryable code 0.
        *st.stats.rejections.entry(0).or_default() += 1;
        return Reply::json(400, &json!({"signature": false, "error": {}, "dispatch": null}));
    }
    match notify_checks(st, pre, x_servicer) {
        Ok(evidence) => {
            let p = &pre.relay.proof;
            st.seen_proofs.entry(header_key(&p.aat.app_pub_key, &p.blockchain, p.session_block_height)).or_default().insert(pre.proof_hash);
            *st.relays_served.entry(evidence).or_default() += 1;
            let addr = pre.servicer_addr.clone().expect("checked in notify_checks");
            st.stats.accepted_total += 1;
            *st.stats.accepted_by_servicer.entry(addr).or_default() += 1;
            st.accepted_proofs.push(pre.proof_hash);
            Reply::json(200, &json!({"signature": true, "error": null, "dispatch": null}))
        }
        Err(e) => {
            if e.code == 37 {
                st.stats.duplicates += 1;
            }
            *st.stats.rejections.entry(e.code).or_default() += 1;
            notify_error(st, &e, &pre.relay)
        }
    }
}

/// A servicer's relay validation (reference protocol §4) in order; returns the evidence key
/// the accepted proof counts against.
fn notify_checks(st: &State, pre: &Prechecked, x_servicer: &str) -> Result<String, PocketError> {
    let r = &pre.relay;
    let p = &r.proof;
    if r.payload.data.is_empty() && r.payload.path.is_empty() {
        return Err(errors::empty_payload_data());
    }
    if r.meta.block_height.abs_diff(st.height) > st.cfg.client_block_sync_allowance.unsigned_abs() {
        return Err(errors::out_of_sync_request());
    }
    if p.request_hash != pre.request_hash {
        return Err(errors::request_hash_mismatch());
    }
    if !st.cfg.chains.contains(&p.blockchain) {
        return Err(errors::unsupported_blockchain_node());
    }
    let (bps, allowance) = (st.cfg.blocks_per_session, st.cfg.client_session_sync_allowance);
    if !within_tolerance(st.latest_session(), bps, p.session_block_height, allowance) {
        return Err(errors::invalid_block_height());
    }
    let app = st.apps.get(&p.aat.app_pub_key.to_ascii_lowercase()).ok_or_else(errors::app_not_found)?;
    let header = header_key(&p.aat.app_pub_key, &p.blockchain, p.session_block_height);
    if st.seen_proofs.get(&header).is_some_and(|s| s.contains(&pre.proof_hash)) {
        return Err(errors::duplicate_proof());
    }
    let evidence = evidence_key(&p.aat.app_pub_key, &p.blockchain, p.session_block_height, &p.servicer_pub_key);
    if st.relays_served.get(&evidence).copied().unwrap_or(0) >= st.max_relays(app) {
        return Err(errors::over_service());
    }
    pre.basic.clone()?;
    let addr = pre.servicer_addr.as_deref().ok_or_else(errors::invalid_node_pub_key)?;
    if !addr.eq_ignore_ascii_case(x_servicer) || !st.servicers.contains_key(addr) {
        return Err(errors::invalid_node_pub_key());
    }
    if !app.chains.contains(&p.blockchain) {
        return Err(errors::unsupported_blockchain_app());
    }
    // Session membership (14) needs no separate check: the simulated session's nodes are
    // exactly the configured servicers (see `State::dispatch`), which the 34 check enforced.
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::KeyPair;
    use crate::sim::testkit::{agent, post, RelayBuilder, APP_SEED, CLIENT_SEED, SERVICER2_SEED, SERVICER_SEED};

    const TOKEN: &str = "s3cret-token";

    fn kp(seed: &str) -> KeyPair {
        KeyPair::from_hex(seed).unwrap()
    }

    fn config(max_relays: u64) -> ServicerSimConfig {
        ServicerSimConfig {
            auth_token: TOKEN.into(),
            servicers: vec![kp(SERVICER_SEED).public_hex, kp(SERVICER2_SEED).public_hex],
            apps: vec![SimApp { public_key: kp(APP_SEED).public_hex, chains: vec!["0021".into()], max_relays }],
            ..Default::default()
        }
    }

    fn builder() -> RelayBuilder {
        // Height 101 with 4 blocks per session → latest session starts at 101.
        RelayBuilder::new(kp(APP_SEED), kp(CLIENT_SEED), kp(SERVICER_SEED), "0021", 101)
    }

    struct Resp {
        status: u16,
        json: Value,
    }

    fn notify_to(sim: &SimHandle, relay_json: &[u8], x_servicer: &str) -> Resp {
        let url = format!("{}/v1/private/mesh/relay?chain=0021&app=x", sim.url());
        let (status, body) = post(&url, &[("Authorization", TOKEN), ("X-Servicer", x_servicer)], relay_json);
        Resp { status, json: serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")) }
    }

    fn notify_ok(sim: &SimHandle, relay_json: &[u8]) -> Resp {
        notify_to(sim, relay_json, &kp(SERVICER_SEED).address_hex)
    }

    fn code(r: &Resp) -> u64 {
        assert_eq!(r.status, 400, "expected a rejection: {}", r.json);
        assert_eq!(r.json["signature"], false);
        r.json["error"]["code"].as_u64().unwrap_or_else(|| panic!("no code in {}", r.json))
    }

    /// `POST /v1/private/mesh/check` with the right token and an empty body.
    fn check(sim: &SimHandle) -> (u16, String) {
        post(&format!("{}/v1/private/mesh/check", sim.url()), &[("Authorization", TOKEN)], b"{}")
    }

    /// `POST /sim/control` with `body`.
    fn control(sim: &SimHandle, body: &[u8]) -> (u16, String) {
        post(&format!("{}/sim/control", sim.url()), &[], body)
    }

    fn session_req(sim: &SimHandle, servicer_pub: &str, sbh: i64) -> Resp {
        let body = json!({
            "session_header": {"app_public_key": kp(APP_SEED).public_hex, "chain": "0021", "session_height": sbh},
            "meta": {"block_height": sbh},
            "servicer_pub_key": servicer_pub,
            "blockchain": "0021",
            "session_block_height": sbh,
        });
        let (status, body) = post(&format!("{}/v1/private/mesh/session", sim.url()), &[("Authorization", TOKEN)], body.to_string().as_bytes());
        Resp { status, json: serde_json::from_str(&body).unwrap() }
    }

    #[test]
    fn banker_rounding_of_max_relays() {
        assert_eq!(max_possible_relays(5000, 1, 5), 1000);
        assert_eq!(max_possible_relays(10, 1, 4), 2, "2.5 rounds to even 2");
        assert_eq!(max_possible_relays(14, 1, 4), 4, "3.5 rounds to even 4");
        assert_eq!(max_possible_relays(5, 2, 1), 2, "2.5 rounds to even 2");
        assert_eq!(max_possible_relays(7, 2, 1), 4, "3.5 rounds to even 4");
        assert_eq!(max_possible_relays(2, 3, 1), 1, "0.67 rounds up");
        assert_eq!(max_possible_relays(1, 3, 1), 0, "0.33 rounds down");
        // 100/3 = 33.333333333333333333 (chopped), /2 = 16.666666666666666667 → 17.
        assert_eq!(max_possible_relays(100, 3, 2), 17);
        assert_eq!(max_possible_relays(u64::MAX, 1, 1), u64::MAX);
        assert_eq!(max_possible_relays(0, 1, 5), 0);
    }

    #[test]
    fn config_defaults_unknown_fields_and_field_named_errors() {
        let c = ServicerSimConfig::from_json(br#"{"auth_token":"t"}"#, "cfg.json").unwrap();
        assert_eq!(c.height, 101);
        assert_eq!(c.blocks_per_session, 4);
        assert_eq!(c.chains, vec!["0021".to_string()]);
        let e = ServicerSimConfig::from_json(br#"{"auth_tokn":"t"}"#, "cfg.json").unwrap_err();
        assert!(e.contains("cfg.json") && e.contains("auth_tokn"), "{e}");
        let e = ServicerSimConfig::from_json(br#"{"height":"tall","version":"v"}"#, "cfg.json").unwrap_err();
        assert!(e.contains("field `height`"), "{e}");
        let e = ServicerSimConfig::from_json(br#"{"servicers":["zz"]}"#, "cfg.json").unwrap_err();
        assert!(e.contains("servicers[0]"), "{e}");
        let app = kp(APP_SEED).public_hex;
        let e =
            ServicerSimConfig::from_json(format!(r#"{{"apps":[{{"public_key":"{app}","chains":[],"max_relays":1}}]}}"#).as_bytes(), "cfg.json").unwrap_err();
        assert!(e.contains("apps[0].chains"), "{e}");
        let e = ServicerSimConfig::from_json(br#"{"listen":"0.0.0.0:1"}"#, "c").unwrap_err();
        assert!(e.contains("listen") && e.contains("loopback"), "{e}");
    }

    #[test]
    fn auth_is_required_and_wrong_token_is_echoed() {
        let sim = start_servicer(config(5000)).unwrap();
        let url = format!("{}/v1/private/mesh/check", sim.url());
        let (status, body) = post(&url, &[("Authorization", "nope")], b"{}");
        assert_eq!(status, 401);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"code":401,"message":"wrong authtoken: nope"}));
        let (status, _) = post(&url, &[], b"{}");
        assert_eq!(status, 401);
        let (status, body) = post(&format!("{url}?verify=true"), &[("Authorization", TOKEN)], b"");
        assert_eq!((status, body.as_str()), (200, "{}\n"));
        let (status, body) = post(&format!("{}/v1/private/mesh/relay?verify=true", sim.url()), &[("Authorization", TOKEN)], b"");
        assert_eq!(status, 200);
        assert_eq!(body, "{\"dispatch\":null,\"error\":null,\"signature\":true}\n");
        assert_eq!(sim.stats().unauthorized, 2);
        assert_eq!(sim.stats().verify_calls, 2);
        assert_eq!(sim.stats().check_calls, 0);
    }

    #[test]
    fn check_reports_status_and_wrong_entries() {
        let sim = start_servicer(config(5000)).unwrap();
        let good = kp(SERVICER_SEED).address_hex;
        let body = json!({"servicers": [good, "00".repeat(20)], "Chains": ["0021", "0001"]});
        let (status, text) = post(&format!("{}/v1/private/mesh/check", sim.url()), &[("Authorization", TOKEN)], body.to_string().as_bytes());
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], json!({"version":"RC-0.11.1","is_starting":false,"is_catching_up":false,"height":101}));
        assert_eq!(v["blocks_per_session"], 4);
        assert_eq!(v["client_session_sync_allowance"], 1);
        assert_eq!(v["servicers"], false);
        assert_eq!(v["chains"], false);
        assert_eq!(v["wrong_servicers"], json!(["00".repeat(20)]));
        assert_eq!(v["wrong_chains"], json!(["0001"]));
        assert_eq!(v["success"], true);
        assert_eq!(sim.stats().check_calls, 1);
    }

    #[test]
    fn valid_notify_accepted_once_then_duplicate() {
        let sim = start_servicer(config(5000)).unwrap();
        let relay = builder().build(1);
        // The exact bytes a pocket-js client would send.
        let body = crate::client::wire_json(&relay).into_bytes();
        let r = notify_ok(&sim, &body);
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json, json!({"signature": true, "error": null, "dispatch": null}));
        let r = notify_ok(&sim, &body);
        assert_eq!(code(&r), 37);
        assert_eq!(r.json["error"]["codespace"], "pocketcore");
        // Same proof with a different (still valid-looking) client signature is still a duplicate:
        // dedupe is on the signature-less proof hash.
        let mut again = relay.clone();
        again.proof.signature = "00".repeat(64);
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&again).unwrap())), 37);
        let s = sim.stats();
        assert_eq!(s.accepted_total, 1);
        assert_eq!(s.duplicates, 2);
        assert_eq!(s.rejections.get(&37), Some(&2));
        assert_eq!(s.accepted_by_servicer.get(&kp(SERVICER_SEED).address_hex), Some(&1));
        assert_eq!(s.accepted_proofs, Some(vec![hex::encode(relay.proof.hash())]));
        assert_eq!(s.notify_calls, 3);
        // The HTTP view lists proofs only on request.
        let (_, text) = crate::sim::testkit::get(&format!("{}/sim/stats", sim.url()));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("accepted_proofs").is_none());
        assert_eq!(v["accepted_total"], 1);
        assert_eq!(v["rejections"]["37"], 2);
        let (_, text) = crate::sim::testkit::get(&format!("{}/sim/stats?proofs=1", sim.url()));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["accepted_proofs"], json!([hex::encode(relay.proof.hash())]));
    }

    #[test]
    fn rejections_tampered_wrong_servicer_unknown_app_bad_signature() {
        let sim = start_servicer(config(5000)).unwrap();
        // Tampered data after signing → request hash mismatch.
        let mut r = builder().build(10);
        r.payload.data.push(' ');
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&r).unwrap())), 74);
        // Valid relay for servicer 1 sent with servicer 2's X-Servicer.
        let r = builder().build(11);
        let resp = notify_to(&sim, &serde_json::to_vec(&r).unwrap(), &kp(SERVICER2_SEED).address_hex);
        assert_eq!(code(&resp), 34);
        // Missing X-Servicer is a mismatch too.
        assert_eq!(code(&notify_to(&sim, &serde_json::to_vec(&r).unwrap(), "")), 34);
        // Unknown app (the client key signs as app: valid AAT, but not staked).
        let stranger = RelayBuilder::new(kp(CLIENT_SEED), kp(CLIENT_SEED), kp(SERVICER_SEED), "0021", 101);
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&stranger.build(12)).unwrap())), 45);
        // Corrupted client signature → 41 from validate_basic.
        let mut r = builder().build(13);
        let mut sig = hex::decode(&r.proof.signature).unwrap();
        sig[0] ^= 1;
        r.proof.signature = hex::encode(sig);
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&r).unwrap())), 41);
        // Empty payload → 25; meta far from height → 75; unhosted chain → 26; old session → 60.
        let mut b = builder();
        b.data = String::new();
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&b.build(14)).unwrap())), 25);
        let mut b = builder();
        b.block_height = 101 + 11;
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&b.build(15)).unwrap())), 75);
        b.block_height = i64::MIN;
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&b.build(15)).unwrap())), 75);
        let b = RelayBuilder::new(kp(APP_SEED), kp(CLIENT_SEED), kp(SERVICER_SEED), "0040", 101);
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&b.build(16)).unwrap())), 26);
        let mut b = builder();
        b.session_height = 93; // latest 101, allowance 1 → 97 is the oldest accepted
        let resp = notify_ok(&sim, &serde_json::to_vec(&b.build(17)).unwrap());
        assert_eq!(code(&resp), 60);
        // 60 warrants a dispatch for the current session.
        assert_eq!(resp.json["dispatch"]["session"]["header"]["session_height"], 101);
        let mut b = builder();
        b.session_height = 97;
        b.block_height = 101;
        let resp = notify_ok(&sim, &serde_json::to_vec(&b.build(18)).unwrap());
        assert_eq!(resp.status, 200, "previous session within allowance: {}", resp.json);
        let s = sim.stats();
        assert_eq!(s.accepted_total, 1);
        for (c, n) in [(74, 1), (34, 2), (45, 1), (41, 1), (25, 1), (75, 2), (26, 1), (60, 1)] {
            assert_eq!(s.rejections.get(&c), Some(&n), "code {c}: {:?}", s.rejections);
        }
        assert_eq!(s.accepted_proofs.map(|p| p.len()), Some(1));
    }

    #[test]
    fn app_chain_mismatch_is_13() {
        let mut cfg = config(5000);
        cfg.chains.push("0040".into());
        let sim = start_servicer(cfg).unwrap();
        let b = RelayBuilder::new(kp(APP_SEED), kp(CLIENT_SEED), kp(SERVICER_SEED), "0040", 101);
        assert_eq!(code(&notify_ok(&sim, &serde_json::to_vec(&b.build(1)).unwrap())), 13);
    }

    #[test]
    fn dispatch_lists_at_most_session_node_count_nodes_asking_servicer_first() {
        // Six servicers, sessions of three nodes: each servicer sees itself plus the first others.
        let mut cfg = config(1_000_000);
        let extra: Vec<KeyPair> = (5u8..9).map(|b| KeyPair::from_seed(&[b; 32])).collect();
        cfg.servicers.extend(extra.iter().map(|k| k.public_hex.clone()));
        cfg.session_node_count = 3;
        let sim = start_servicer(cfg.clone()).unwrap();
        let keys_of = |r: &Resp| -> Vec<String> {
            r.json["dispatch"]["session"]["nodes"].as_array().unwrap().iter().map(|n| n["public_key"].as_str().unwrap().to_string()).collect()
        };
        let last = &extra[3];
        let r = session_req(&sim, &last.public_hex.to_ascii_uppercase(), 101);
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(keys_of(&r), vec![last.public_hex.clone(), cfg.servicers[0].clone(), cfg.servicers[1].clone()]);
        let first = session_req(&sim, &cfg.servicers[0], 101);
        assert_eq!(keys_of(&first), cfg.servicers[..3].to_vec());
        // Within the cap, every configured servicer is listed, in configuration order.
        cfg.session_node_count = 6;
        let sim = start_servicer(cfg.clone()).unwrap();
        assert_eq!(keys_of(&session_req(&sim, &last.public_hex, 101)), cfg.servicers);
    }

    #[test]
    fn over_service_and_session_remaining_relays() {
        // max = RoundInt(10 / 1 / 4) = 2 (banker's rounding of 2.5).
        let mut cfg = config(10);
        cfg.session_node_count = 4;
        let sim = start_servicer(cfg).unwrap();
        let s1 = kp(SERVICER_SEED);
        let r = session_req(&sim, &s1.public_hex, 101);
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["remaining_relays"], 2);
        assert_eq!(r.json["success"], true);
        assert_eq!(r.json["error"], Value::Null);
        let d = &r.json["dispatch"];
        assert_eq!(d["block_height"], 101);
        assert_eq!(d["session"]["header"], json!({"app_public_key": kp(APP_SEED).public_hex, "chain": "0021", "session_height": 101}));
        let key = session_header_hash(&kp(APP_SEED).public_hex, "0021", 101);
        assert_eq!(d["session"]["key"], base64(&key));
        let nodes = d["session"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            nodes[0],
            json!({"address": s1.address_hex, "chains": ["0021"], "jailed": false, "output_address": "",
                   "public_key": s1.public_hex, "service_url": "http://127.0.0.1:8081", "status": 2,
                   "tokens": "1000000000", "unstaking_time": "0001-01-01T00:00:00Z"})
        );

        assert_eq!(notify_ok(&sim, &serde_json::to_vec(&builder().build(1)).unwrap()).status, 200);
        assert_eq!(session_req(&sim, &s1.public_hex, 101).json["remaining_relays"], 1);
        assert_eq!(notify_ok(&sim, &serde_json::to_vec(&builder().build(2)).unwrap()).status, 200);
        let resp = notify_ok(&sim, &serde_json::to_vec(&builder().build(3)).unwrap());
        assert_eq!(code(&resp), 71);
        assert!(resp.json["dispatch"].is_object(), "71 warrants a dispatch");
        let r = session_req(&sim, &s1.public_hex, 101);
        assert_eq!(r.status, 400);
        assert_eq!(r.json["error"]["code"], 71);
        assert_eq!(r.json["dispatch"], Value::Null);
        assert_eq!(r.json["remaining_relays"], 0);
        assert_eq!(r.json["success"], false);
        // The budget is per servicer: servicer 2 still has its own.
        assert_eq!(session_req(&sim, &kp(SERVICER2_SEED).public_hex, 101).json["remaining_relays"], 2);
        let b2 = RelayBuilder::new(kp(APP_SEED), kp(CLIENT_SEED), kp(SERVICER2_SEED), "0021", 101);
        let resp = notify_to(&sim, &serde_json::to_vec(&b2.build(1)).unwrap(), &kp(SERVICER2_SEED).address_hex);
        assert_eq!(resp.status, 200, "{}", resp.json);
        // Raising the budget at runtime lets servicer 1 continue.
        sim.control(&SimControl { max_relays_override: Some(Some(20)), ..Default::default() }).unwrap();
        assert_eq!(session_req(&sim, &s1.public_hex, 101).json["remaining_relays"], 3);
        let s = sim.stats();
        assert_eq!(s.accepted_total, 3);
        assert_eq!(s.rejections.get(&71), Some(&1));
    }

    #[test]
    fn session_error_order() {
        let sim = start_servicer(config(5000)).unwrap();
        let r = session_req(&sim, &kp(CLIENT_SEED).public_hex, 101);
        assert_eq!((r.json["error"]["codespace"].as_str(), r.json["error"]["code"].as_u64()), (Some("sdk"), Some(1)));
        assert_eq!(r.json["error"]["message"], "Failed to find correct servicer PK");
        let r = session_req(&sim, &kp(SERVICER_SEED).public_hex, 97);
        assert_eq!(r.json["error"]["code"], 60, "session must be the latest one");
        sim.set_height(104).unwrap(); // 104 % 4 == 0 → latest session is still 101
        assert_eq!(session_req(&sim, &kp(SERVICER_SEED).public_hex, 101).status, 200);
        sim.set_height(105).unwrap();
        assert_eq!(session_req(&sim, &kp(SERVICER_SEED).public_hex, 101).json["error"]["code"], 60);
        assert_eq!(session_req(&sim, &kp(SERVICER_SEED).public_hex, 105).status, 200);
        assert_eq!(sim.stats().session_calls, 5);
    }

    #[test]
    fn catching_up_and_starting_modes() {
        let sim = start_servicer(config(5000)).unwrap();
        let (status, _) = control(&sim, br#"{"mode":"catching_up"}"#);
        assert_eq!(status, 200);
        let (_, text) = check(&sim);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"]["is_catching_up"], true);
        assert_eq!(v["status"]["is_starting"], false);
        let r = session_req(&sim, &kp(SERVICER_SEED).public_hex, 101);
        assert_eq!(r.status, 400);
        assert_eq!(r.json["error"]["codespace"], "sdk");
        let r = notify_ok(&sim, &serde_json::to_vec(&builder().build(1)).unwrap());
        assert_eq!(r.status, 400);
        assert_eq!(r.json, json!({"signature": false, "error": {}, "dispatch": null}));
        sim.set_mode(SimMode::Starting);
        let (_, text) = check(&sim);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["status"]["is_starting"], true);
        assert_eq!(notify_ok(&sim, &serde_json::to_vec(&builder().build(1)).unwrap()).status, 400);
        sim.set_mode(SimMode::Ok);
        assert_eq!(notify_ok(&sim, &serde_json::to_vec(&builder().build(1)).unwrap()).status, 200);
        let s = sim.stats();
        assert_eq!(s.rejections.get(&0), Some(&2));
        assert_eq!(s.accepted_total, 1);
    }

    #[test]
    fn unavailable_forced_failures_and_pause_resume() {
        let mut sim = start_servicer(config(5000)).unwrap();
        let relay = serde_json::to_vec(&builder().build(1)).unwrap();
        let (status, _) = control(&sim, br#"{"mode":"unavailable"}"#);
        assert_eq!(status, 200);
        let (status, _) = check(&sim);
        assert_eq!(status, 503);
        sim.set_mode(SimMode::Ok);
        let (status, _) = control(&sim, br#"{"fail_notify_status":503}"#);
        assert_eq!(status, 200);
        let url = format!("{}/v1/private/mesh/relay", sim.url());
        let xs = kp(SERVICER_SEED).address_hex;
        let (status, _) = post(&url, &[("Authorization", TOKEN), ("X-Servicer", &xs)], &relay);
        assert_eq!(status, 503);
        let (status, text) = control(&sim, br#"{"fail_notify_status":0,"bogus":1}"#);
        assert_eq!(status, 400, "unknown control fields are refused: {text}");
        sim.control(&SimControl { fail_notify_status: Some(0), ..Default::default() }).unwrap();
        let s = sim.stats();
        assert_eq!((s.forced_failures, s.notify_calls, s.accepted_total), (1, 0, 0));

        // Pooled connection + paused sim → prompt connection error, then the same port again.
        let a = agent();
        sim.pause();
        let t0 = std::time::Instant::now();
        assert!(a.post(&url).header("Authorization", TOKEN).send(&relay[..]).is_err());
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
        sim.resume().unwrap();
        let (status, _) = post(&url, &[("Authorization", TOKEN), ("X-Servicer", &xs)], &relay);
        assert_eq!(status, 200);
        assert_eq!(sim.stats().accepted_total, 1, "state survives pause/resume");
        sim.stop();
    }

    #[test]
    fn concurrent_duplicates_are_accepted_exactly_once() {
        let cfg = config(5000);
        let sim = start_servicer(cfg).unwrap();
        let relays: Vec<Vec<u8>> = (0..5).map(|e| serde_json::to_vec(&builder().build(100 + e)).unwrap()).collect();
        let url = format!("{}/v1/private/mesh/relay", sim.url());
        let xs = kp(SERVICER_SEED).address_hex;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (relays, url, xs) = (relays.clone(), url.clone(), xs.clone());
                std::thread::spawn(move || relays.iter().filter(|r| post(&url, &[("Authorization", TOKEN), ("X-Servicer", &xs)], r).0 == 200).count())
            })
            .collect();
        let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(ok, 5);
        let s = sim.stats();
        assert_eq!((s.accepted_total, s.duplicates), (5, 15));
    }
}
