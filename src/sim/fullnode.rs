//! Shannon full-node simulator: the REST (grpc-gateway) routes a supplier edge queries
//! (reference §3.4, `supplier::fullnode`), answered from state the test sets through
//! [`FullNodeSim`] — current height, shared params, per-service difficulty target and compute
//! units per relay, applications with delegations and pending undelegations, accounts with or
//! without public keys, suppliers staked per service. JSON as grpc-gateway writes it with
//! cosmos-sdk's options: proto field names, 64-bit integers as decimal strings, bytes as base64,
//! zero values emitted; errors as `{"code", "message", "details"}` with the gRPC code.
//!
//! Sessions are computed, not stored: start = `(h − 1) / N · N + 1` for `N =
//! num_blocks_per_session` (the grid anchored at 1), end = start + N − 1, session id =
//! hex(SHA3-256(blockHash ‖ "." ‖ service ‖ "." ‖ app ‖ "." ‖ LE-u64(start))) (§3.1 "Session ID
//! derivation") with a fake block hash, SHA-256 of the start height's 8 big-endian bytes; the
//! suppliers are all suppliers staked for the service. Queries are counted per route so tests
//! can assert "one query per session"; a latency and a failure status can be injected.
//!
//! HTTP controls for out-of-process use: `GET /sim/stats`, `POST /sim/advance?blocks=N`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use sha3::{Digest, Sha3_256};

use super::http::{Handler, HttpServer, Incoming, Reply};
use crate::base64::encode as base64;
use crate::supplier::fullnode::{SharedParams, SECP256K1_PUBKEY_TYPE};

/// Route names counted in [`FullNodeStats::by_route`].
pub const ROUTE_LATEST: &str = "blocks_latest";
pub const ROUTE_SESSION: &str = "get_session";
pub const ROUTE_PARAMS_AT: &str = "shared_params_at";
pub const ROUTE_PARAMS: &str = "shared_params";
pub const ROUTE_APPLICATION: &str = "application";
pub const ROUTE_ACCOUNT: &str = "account";
pub const ROUTE_DIFFICULTY: &str = "relay_mining_difficulty_at";
pub const ROUTE_CUPR: &str = "compute_units_per_relay_at";

/// A staked application (§2.1 fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimApplication {
    pub address: String,
    pub delegatee_gateway_addresses: Vec<String>,
    /// Undelegation height → gateways.
    pub pending_undelegations: BTreeMap<u64, Vec<String>>,
}

/// A service's mining state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimService {
    pub id: String,
    /// 64 hex characters; all `ff` (every relay minable) by default.
    pub target_hash_hex: String,
    pub compute_units_per_relay: u64,
}

impl Default for SimService {
    fn default() -> Self {
        SimService { id: String::new(), target_hash_hex: "ff".repeat(32), compute_units_per_relay: 1 }
    }
}

/// An account; `pubkey_hex` (33 compressed bytes) absent: the account never signed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimAccount {
    pub address: String,
    pub pubkey_hex: Option<String>,
}

/// A supplier staked for some services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSupplier {
    pub operator_address: String,
    pub services: Vec<String>,
}

/// Simulator settings and initial chain state (the `--config` file of `meshd sim fullnode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FullNodeSimConfig {
    pub listen: String,
    pub height: i64,
    pub params: SharedParams,
    pub services: Vec<SimService>,
    pub applications: Vec<SimApplication>,
    pub accounts: Vec<SimAccount>,
    pub suppliers: Vec<SimSupplier>,
}

impl Default for FullNodeSimConfig {
    fn default() -> Self {
        FullNodeSimConfig {
            listen: "127.0.0.1:0".into(),
            height: 105,
            // The mainnet script values (§3.3), shorter sessions.
            params: SharedParams {
                num_blocks_per_session: 10,
                grace_period_end_offset_blocks: 10,
                claim_window_open_offset_blocks: 11,
                claim_window_close_offset_blocks: 10,
                proof_window_open_offset_blocks: 1,
                proof_window_close_offset_blocks: 10,
                compute_units_to_tokens_multiplier: 145_990,
                compute_unit_cost_granularity: 1_000_000,
                ..SharedParams::default()
            },
            services: Vec::new(),
            applications: Vec::new(),
            accounts: Vec::new(),
            suppliers: Vec::new(),
        }
    }
}

impl FullNodeSimConfig {
    pub fn load(path: &str) -> Result<FullNodeSimConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("parsing {path}: {e}"))
    }
}

/// Requests served, per route name (the `ROUTE_*` constants).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullNodeStats {
    pub requests: u64,
    pub by_route: BTreeMap<String, u64>,
    /// Answers replaced by the injected failure status.
    pub failed: u64,
}

impl FullNodeStats {
    pub fn route(&self, name: &str) -> u64 {
        self.by_route.get(name).copied().unwrap_or(0)
    }
}

struct State {
    height: i64,
    params: SharedParams,
    params_at_height_route: bool,
    services: BTreeMap<String, ([u8; 32], u64)>,
    applications: BTreeMap<String, SimApplication>,
    accounts: BTreeMap<String, Option<[u8; 33]>>,
    suppliers: BTreeMap<String, BTreeSet<String>>,
    delay: Duration,
    fail_status: Option<u16>,
    stats: FullNodeStats,
}

/// A running simulator and its controls. Dropping it stops it.
pub struct FullNodeSim {
    state: Arc<Mutex<State>>,
    server: Option<HttpServer>,
    addr: SocketAddr,
}

fn hex_array<const N: usize>(s: &str, what: &str) -> io::Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} {s:?}: {e}")))?;
    Ok(out)
}

/// Start a full-node simulator on a thread of its own.
pub fn start_fullnode(cfg: FullNodeSimConfig) -> io::Result<FullNodeSim> {
    let addr: SocketAddr = cfg.listen.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("listen {:?}: {e}", cfg.listen)))?;
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("listen {}: not a loopback address", cfg.listen)));
    }
    let mut state = State {
        height: cfg.height,
        params: cfg.params,
        params_at_height_route: true,
        services: BTreeMap::new(),
        applications: cfg.applications.into_iter().map(|a| (a.address.clone(), a)).collect(),
        accounts: BTreeMap::new(),
        suppliers: BTreeMap::new(),
        delay: Duration::ZERO,
        fail_status: None,
        stats: FullNodeStats::default(),
    };
    for s in cfg.services {
        state.services.insert(s.id.clone(), (hex_array(&s.target_hash_hex, "target_hash_hex")?, s.compute_units_per_relay));
    }
    for a in cfg.accounts {
        let key = a.pubkey_hex.as_deref().map(|k| hex_array::<33>(k, "pubkey_hex")).transpose()?;
        state.accounts.insert(a.address, key);
    }
    for s in cfg.suppliers {
        for svc in s.services {
            state.suppliers.entry(svc).or_default().insert(s.operator_address.clone());
        }
    }
    let state = Arc::new(Mutex::new(state));
    let st = state.clone();
    let handler: Handler = Arc::new(move |rq: Incoming| handle(&st, rq));
    let server = HttpServer::start(&cfg.listen, handler)?;
    let addr = server.addr();
    Ok(FullNodeSim { state, server: Some(server), addr })
}

impl FullNodeSim {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base URL the client is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn height(&self) -> i64 {
        self.lock().height
    }

    pub fn set_height(&self, height: i64) {
        self.lock().height = height;
    }

    /// Advance the chain by `blocks`; returns the new height.
    pub fn advance(&self, blocks: i64) -> i64 {
        let mut st = self.lock();
        st.height += blocks;
        st.height
    }

    pub fn set_params(&self, params: SharedParams) {
        self.lock().params = params;
    }

    /// Off: `/shared/params/{height}` answers 501 like a node without the route.
    pub fn set_params_at_height_route(&self, on: bool) {
        self.lock().params_at_height_route = on;
    }

    pub fn set_service(&self, id: &str, target_hash: [u8; 32], compute_units_per_relay: u64) {
        self.lock().services.insert(id.to_string(), (target_hash, compute_units_per_relay));
    }

    pub fn set_application(&self, app: SimApplication) {
        self.lock().applications.insert(app.address.clone(), app);
    }

    /// Create or update an account; `None`: it has no public key.
    pub fn set_account(&self, address: &str, pubkey: Option<[u8; 33]>) {
        self.lock().accounts.insert(address.to_string(), pubkey);
    }

    pub fn stake_supplier(&self, operator_address: &str, service_id: &str) {
        self.lock().suppliers.entry(service_id.to_string()).or_default().insert(operator_address.to_string());
    }

    /// Latency added to every answer.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Answer every route (not `/sim/…`) with this status until cleared.
    pub fn fail_with(&self, status: Option<u16>) {
        self.lock().fail_status = status;
    }

    pub fn stats(&self) -> FullNodeStats {
        self.lock().stats.clone()
    }

    /// The session the simulator computes for (app, service, height), as the header JSON
    /// fields: (session id, start, end).
    pub fn session_at(&self, app: &str, service: &str, height: i64) -> (String, i64, i64) {
        let st = self.lock();
        session_of(&st.params, app, service, height)
    }

    /// Stop serving and release the port.
    pub fn stop(mut self) {
        if let Some(mut s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// (session id, start, end) of the session holding `height` (module doc).
fn session_of(params: &SharedParams, app: &str, service: &str, height: i64) -> (String, i64, i64) {
    let n = params.num_blocks_per_session.max(1) as i64;
    let start = (height.max(1) - 1) / n * n + 1;
    let block_hash = Sha256::digest(start.to_be_bytes());
    let mut h = Sha3_256::new();
    h.update(block_hash);
    h.update(b".");
    h.update(service.as_bytes());
    h.update(b".");
    h.update(app.as_bytes());
    h.update(b".");
    h.update((start as u64).to_le_bytes());
    (hex::encode(h.finalize()), start, start + n - 1)
}

/// A gRPC-status error body, as grpc-gateway writes it.
fn grpc_error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(status, &json!({"code": code, "message": message, "details": []}))
}

fn params_json(p: &SharedParams) -> Value {
    let v = serde_json::to_value(p).expect("params serialize");
    // uint64 as decimal strings, as grpc-gateway writes them.
    Value::Object(v.as_object().expect("params are an object").iter().map(|(k, x)| (k.clone(), Value::String(x.to_string()))).collect())
}

fn handle(state: &Mutex<State>, rq: Incoming) -> Reply {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if rq.path == "/sim/stats" {
        return Reply::json(200, &serde_json::to_value(&st.stats).expect("stats serialize"));
    }
    if rq.path == "/sim/advance" && rq.method == "POST" {
        st.height += rq.query_param("blocks").and_then(|b| b.parse::<i64>().ok()).unwrap_or(1);
        return Reply::json(200, &json!({"height": st.height.to_string()}));
    }
    let segments: Vec<&str> = rq.path.trim_start_matches('/').split('/').collect();
    let (route, mut reply) = route(&st, &rq, &segments);
    st.stats.requests += 1;
    if let Some(route) = route {
        *st.stats.by_route.entry(route.to_string()).or_default() += 1;
    }
    if let Some(status) = st.fail_status {
        st.stats.failed += 1;
        reply = grpc_error(status, 14, "injected failure");
    }
    reply.delay = st.delay;
    reply
}

/// The route name and answer for one request.
fn route(st: &State, rq: &Incoming, seg: &[&str]) -> (Option<&'static str>, Reply) {
    if rq.method != "GET" {
        return (None, grpc_error(405, 12, "method not allowed"));
    }
    match seg {
        ["cosmos", "base", "tendermint", "v1beta1", "blocks", "latest"] => {
            let h = st.height.to_string();
            let body = json!({
                "block_id": {"hash": base64(&Sha256::digest(st.height.to_be_bytes())), "part_set_header": {"total": 1, "hash": ""}},
                "block": {"header": {"chain_id": "pocket-sim", "height": h, "time": "2026-01-01T00:00:00Z"}, "data": {"txs": []}},
                "sdk_block": {"header": {"chain_id": "pocket-sim", "height": h}}
            });
            (Some(ROUTE_LATEST), Reply::json(200, &body))
        }
        ["pokt-network", "poktroll", "session", "get_session"] => (Some(ROUTE_SESSION), get_session(st, rq)),
        ["pokt-network", "poktroll", "shared", "params"] => (Some(ROUTE_PARAMS), Reply::json(200, &json!({"params": params_json(&st.params)}))),
        ["pokt-network", "poktroll", "shared", "params", h] => {
            if !st.params_at_height_route {
                return (Some(ROUTE_PARAMS_AT), grpc_error(501, 12, "unknown method ParamsAtHeight"));
            }
            match h.parse::<i64>() {
                Ok(_) => (Some(ROUTE_PARAMS_AT), Reply::json(200, &json!({"params": params_json(&st.params)}))),
                Err(_) => (Some(ROUTE_PARAMS_AT), grpc_error(400, 3, "type mismatch, parameter: height")),
            }
        }
        ["pokt-network", "poktroll", "application", "application", address] => {
            let reply = match st.applications.get(*address) {
                Some(a) => {
                    let pending: serde_json::Map<String, Value> =
                        a.pending_undelegations.iter().map(|(h, gws)| (h.to_string(), json!({"gateway_addresses": gws}))).collect();
                    Reply::json(
                        200,
                        &json!({"application": {
                            "address": a.address,
                            "stake": {"denom": "upokt", "amount": "100000000"},
                            "service_configs": [],
                            "delegatee_gateway_addresses": a.delegatee_gateway_addresses,
                            "pending_undelegations": pending,
                            "unstake_session_end_height": "0",
                            "pending_transfer": null,
                            "per_session_spend_limit": null,
                            "service_config_history": []
                        }}),
                    )
                }
                None => grpc_error(404, 5, &format!("application not found: {address}")),
            };
            (Some(ROUTE_APPLICATION), reply)
        }
        ["cosmos", "auth", "v1beta1", "accounts", address] => {
            let reply = match st.accounts.get(*address) {
                Some(key) => {
                    let pub_key = key.map(|k| json!({"@type": SECP256K1_PUBKEY_TYPE, "key": base64(&k)})).unwrap_or(Value::Null);
                    Reply::json(
                        200,
                        &json!({"account": {"@type": "/cosmos.auth.v1beta1.BaseAccount", "address": address, "pub_key": pub_key, "account_number": "7", "sequence": "0"}}),
                    )
                }
                None => grpc_error(404, 5, &format!("account {address} not found")),
            };
            (Some(ROUTE_ACCOUNT), reply)
        }
        ["pokt-network", "poktroll", "service", "relay_mining_difficulty", service, "at_height", h] => {
            // Like the chain: a service without a recorded difficulty has the base target.
            let target = st.services.get(*service).map(|s| s.0).unwrap_or([0xff; 32]);
            let body = json!({"relayMiningDifficulty": {"service_id": service, "block_height": h, "num_relays_ema": "0", "target_hash": base64(&target)}});
            (Some(ROUTE_DIFFICULTY), Reply::json(200, &body))
        }
        ["pokt-network", "poktroll", "service", "compute_units_per_relay", service, "at_height", _] => {
            let reply = match st.services.get(*service) {
                Some((_, cupr)) => Reply::json(200, &json!({"computeUnitsPerRelay": cupr.to_string()})),
                None => grpc_error(404, 5, &format!("service {service} not found")),
            };
            (Some(ROUTE_CUPR), reply)
        }
        _ => (None, grpc_error(404, 5, "Not Found")),
    }
}

fn get_session(st: &State, rq: &Incoming) -> Reply {
    let app = rq.query_param("application_address").unwrap_or("");
    let service = rq.query_param("service_id").unwrap_or("");
    let height = match rq.query_param("block_height").unwrap_or("0").parse::<i64>() {
        Ok(0) => st.height,
        Ok(h) => h,
        Err(_) => return grpc_error(400, 3, "type mismatch, parameter: block_height"),
    };
    if height > st.height {
        return grpc_error(400, 3, &format!("session block height {height} is greater than the current height {}", st.height));
    }
    let Some(application) = st.applications.get(app) else { return grpc_error(404, 5, &format!("application not found: {app}")) };
    if !st.services.contains_key(service) {
        return grpc_error(404, 5, &format!("service {service} not found"));
    }
    let (session_id, start, end) = session_of(&st.params, app, service, height);
    let n = st.params.num_blocks_per_session.max(1) as i64;
    let suppliers: Vec<Value> = st
        .suppliers
        .get(service)
        .into_iter()
        .flatten()
        .map(|op| {
            json!({"owner_address": op, "operator_address": op, "stake": {"denom": "upokt", "amount": "1000000"},
                "services": [{"service_id": service, "endpoints": [], "rev_share": []}], "unstake_session_end_height": "0", "service_config_history": []})
        })
        .collect();
    Reply::json(
        200,
        &json!({"session": {
            "header": {
                "application_address": app,
                "service_id": service,
                "session_id": session_id,
                "session_start_block_height": start.to_string(),
                "session_end_block_height": end.to_string()
            },
            "session_id": session_id,
            "session_number": ((start - 1) / n + 1).to_string(),
            "num_blocks_per_session": n.to_string(),
            "application": {"address": app, "delegatee_gateway_addresses": application.delegatee_gateway_addresses},
            "suppliers": suppliers
        }}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::testkit::get;

    #[test]
    fn sessions_follow_the_grid_and_routes_are_counted() {
        let sim = start_fullnode(FullNodeSimConfig::default()).unwrap();
        sim.set_service("anvil", [0x0f; 32], 3);
        sim.set_application(SimApplication { address: "pokt1app".into(), ..Default::default() });
        sim.stake_supplier("pokt1sup", "anvil");
        let (status, body) =
            get(&format!("{}/pokt-network/poktroll/session/get_session?application_address=pokt1app&service_id=anvil&block_height=105", sim.url()));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let s = crate::supplier::fullnode::parse_session(&v).unwrap();
        assert_eq!((s.header.session_start_block_height, s.header.session_end_block_height, s.session_number), (101, 110, 11));
        assert_eq!(s.suppliers, ["pokt1sup"]);
        assert_eq!(s.header.session_id, sim.session_at("pokt1app", "anvil", 101).0);
        assert_ne!(s.header.session_id, sim.session_at("pokt1app", "anvil", 111).0, "the next session has another id");
        assert_eq!(sim.session_at("pokt1app", "anvil", 110).1, 101);
        // A future height is refused, an unknown app is 404.
        let (status, _) =
            get(&format!("{}/pokt-network/poktroll/session/get_session?application_address=pokt1app&service_id=anvil&block_height=106", sim.url()));
        assert_eq!(status, 400);
        let (status, body) =
            get(&format!("{}/pokt-network/poktroll/session/get_session?application_address=pokt1x&service_id=anvil&block_height=1", sim.url()));
        assert_eq!(status, 404);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 5);
        let (_, body) = get(&format!("{}/pokt-network/poktroll/service/compute_units_per_relay/anvil/at_height/101", sim.url()));
        assert_eq!(crate::supplier::fullnode::parse_compute_units(&serde_json::from_str(&body).unwrap()), Ok(3));
        let (_, body) = get(&format!("{}/pokt-network/poktroll/service/relay_mining_difficulty/anvil/at_height/101", sim.url()));
        assert_eq!(crate::supplier::fullnode::parse_difficulty_target(&serde_json::from_str(&body).unwrap()), Ok([0x0f; 32]));
        let (_, body) = get(&format!("{}/pokt-network/poktroll/shared/params/110", sim.url()));
        let p = crate::supplier::fullnode::parse_shared_params(&serde_json::from_str(&body).unwrap()).unwrap();
        assert_eq!(p, FullNodeSimConfig::default().params);
        let stats = sim.stats();
        assert_eq!((stats.route(ROUTE_SESSION), stats.route(ROUTE_CUPR), stats.route(ROUTE_DIFFICULTY), stats.route(ROUTE_PARAMS_AT)), (3, 1, 1, 1));
        assert_eq!(stats.requests, 6);
    }

    #[test]
    fn failure_injection_and_controls() {
        let sim = start_fullnode(FullNodeSimConfig { height: 7, ..Default::default() }).unwrap();
        let latest = format!("{}/cosmos/base/tendermint/v1beta1/blocks/latest", sim.url());
        let (_, body) = get(&latest);
        assert_eq!(crate::supplier::fullnode::parse_latest_height(&serde_json::from_str(&body).unwrap()), Ok(7));
        assert_eq!(sim.advance(3), 10);
        sim.fail_with(Some(503));
        assert_eq!(get(&latest).0, 503);
        sim.fail_with(None);
        let (_, body) = get(&latest);
        assert_eq!(crate::supplier::fullnode::parse_latest_height(&serde_json::from_str(&body).unwrap()), Ok(10));
        assert_eq!(sim.stats().failed, 1);
        let (_, text) = crate::sim::testkit::post(&format!("{}/sim/advance?blocks=5", sim.url()), &[], b"");
        assert!(text.contains("\"15\""), "{text}");
        sim.set_params_at_height_route(false);
        assert_eq!(get(&format!("{}/pokt-network/poktroll/shared/params/15", sim.url())).0, 501);
    }

    #[test]
    fn config_file_shape() {
        let cfg: FullNodeSimConfig = serde_json::from_str(
            r#"{"height": 50, "params": {"num_blocks_per_session": 4},
                "services": [{"id": "anvil", "compute_units_per_relay": 2}],
                "applications": [{"address": "pokt1app", "delegatee_gateway_addresses": ["pokt1gw"], "pending_undelegations": {"60": ["pokt1old"]}}],
                "accounts": [{"address": "pokt1app", "pubkey_hex": "0397896e9b106df70124a856861cc9be52fac9980e2c7a118a36c19d0198692cc5"}, {"address": "pokt1gw"}],
                "suppliers": [{"operator_address": "pokt1sup", "services": ["anvil"]}]}"#,
        )
        .unwrap();
        assert_eq!(cfg.params.grace_period_end_offset_blocks, 0, "absent params are zero");
        assert_eq!(cfg.services[0].target_hash_hex, "ff".repeat(32));
        let sim = start_fullnode(cfg).unwrap();
        let (_, body) = get(&format!("{}/pokt-network/poktroll/application/application/pokt1app", sim.url()));
        let a = crate::supplier::fullnode::parse_application(&serde_json::from_str(&body).unwrap()).unwrap();
        assert_eq!(a.pending_undelegations, vec![(60, vec!["pokt1old".to_string()])]);
        let (_, body) = get(&format!("{}/cosmos/auth/v1beta1/accounts/pokt1gw", sim.url()));
        assert_eq!(
            crate::supplier::fullnode::parse_account_pubkey(&serde_json::from_str(&body).unwrap()),
            Err(crate::supplier::fullnode::AccountKeyError::Missing)
        );
        assert!(serde_json::from_str::<FullNodeSimConfig>(r#"{"hieght": 1}"#).is_err(), "unknown fields are errors");
    }
}
