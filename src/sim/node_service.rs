//! Simulator of a go-spacemesh node service's HTTP API (spacemesh-node-split.md §1.1) and of a
//! node's v2 JSON API, for the Spacemesh gateway tests. It answers every §1.1 endpoint with
//! plausible payloads (hex path IDs, base64 IDs in JSON, the documented 204/404/400 cases),
//! answers 503 `service not ready: not in sync with the network` to everything until synced,
//! and records what was published so tests can count deliveries. Controls: synced on/off,
//! pause/resume (the port closes: clients see refused connections), a response delay, and
//! rejecting ATXs with 400.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use sha3::{Digest, Sha3_256};

use super::http::{Handler, HttpServer, Incoming, Reply};
use crate::base64::{decode as base64_decode, encode as base64};

/// The readiness middleware's body (PR #6700).
pub const NOT_READY: &str = "service not ready: not in sync with the network";

/// Protocols accepted by `POST /publish/{protocol}`: the yaml enum plus what the client sends.
pub const PROTOCOLS: &[&str] = &["ax1", "pp1", "tx1", "bc1", "b1", "bw1", "bp1", "bf1", "bo1", "mp1", "hare3", "testnet-hare3-workaround"];

#[derive(Debug, Clone)]
pub struct NodeServiceSimConfig {
    pub listen: String,
    pub synced: bool,
    /// Current layer; epochs are `layer / layers_per_epoch`.
    pub layer: u32,
    pub layers_per_epoch: u32,
    /// Node IDs with an ATX, eligibility and weight; others get 404 / 0 / 204.
    pub identities: Vec<[u8; 32]>,
}

impl Default for NodeServiceSimConfig {
    fn default() -> Self {
        NodeServiceSimConfig { listen: "127.0.0.1:0".into(), synced: true, layer: 1000, layers_per_epoch: 288, identities: vec![[0x11; 32], [0x22; 32]] }
    }
}

/// One publish the node accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `activation` for `/activation/publish`, else the `{protocol}` path segment.
    pub route: String,
    /// For `activation`: the decoded AtxBlob; else the raw body.
    pub body: Vec<u8>,
    /// `/activation/publish` carried a PoetProof.
    pub with_poet_proof: bool,
}

#[derive(Debug, Clone, Default)]
pub struct NodeServiceStats {
    /// Every request that reached the handler (including 503 answers).
    pub requests: u64,
    pub not_ready_answers: u64,
    /// Requests per route template, e.g. `GET /hare/round_template`.
    pub by_route: BTreeMap<String, u64>,
    pub published: Vec<Published>,
    /// `Host` header values seen (the JSON API proxy must rewrite it to this node).
    pub hosts: Vec<String>,
}

impl NodeServiceStats {
    pub fn published_count(&self, route: &str, body: &[u8]) -> usize {
        self.published.iter().filter(|p| p.route == route && p.body == body).count()
    }
    pub fn route(&self, key: &str) -> u64 {
        self.by_route.get(key).copied().unwrap_or(0)
    }
}

struct State {
    cfg: NodeServiceSimConfig,
    synced: bool,
    delay: Duration,
    reject_atx: bool,
    stats: NodeServiceStats,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which API the simulator serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    NodeService,
    JsonApi,
}

/// A running simulator. Dropping it stops it.
pub struct NodeServiceSim {
    shared: Arc<Shared>,
    server: Option<HttpServer>,
    addr: SocketAddr,
    api: Api,
}

/// Start a node-service API simulator.
pub fn start_node_service(cfg: NodeServiceSimConfig) -> io::Result<NodeServiceSim> {
    start(cfg, Api::NodeService)
}

/// Start a v2 JSON API simulator (`GET /spacemesh.v2beta1.NodeService/Status`,
/// `…NetworkService/Info`, grpc-gateway-style 404 otherwise). It sets its own
/// `Access-Control-Allow-Origin: http://upstream.invalid` so tests see the proxy replace it.
pub fn start_json_api(cfg: NodeServiceSimConfig) -> io::Result<NodeServiceSim> {
    start(cfg, Api::JsonApi)
}

fn start(cfg: NodeServiceSimConfig, api: Api) -> io::Result<NodeServiceSim> {
    let listen = cfg.listen.clone();
    let shared =
        Arc::new(Shared { state: Mutex::new(State { synced: cfg.synced, cfg, delay: Duration::ZERO, reject_atx: false, stats: NodeServiceStats::default() }) });
    let server = HttpServer::start(&listen, handler(shared.clone(), api))?;
    let addr = server.addr();
    Ok(NodeServiceSim { shared, server: Some(server), addr, api })
}

fn handler(shared: Arc<Shared>, api: Api) -> Handler {
    Arc::new(move |rq: Incoming| {
        let reply = match api {
            Api::NodeService => route(&shared, &rq),
            Api::JsonApi => json_api(&shared, &rq),
        };
        let mut reply = reply;
        reply.delay = shared.lock().delay;
        reply
    })
}

impl NodeServiceSim {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn stats(&self) -> NodeServiceStats {
        self.shared.lock().stats.clone()
    }
    pub fn set_synced(&self, synced: bool) {
        self.shared.lock().synced = synced;
    }
    pub fn is_synced(&self) -> bool {
        self.shared.lock().synced
    }
    /// Delay every answer (a slow or hung node).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }
    /// Answer `/activation/publish` with 400 (an invalid ATX).
    pub fn set_reject_atx(&self, reject: bool) {
        self.shared.lock().reject_atx = reject;
    }
    pub fn set_layer(&self, layer: u32) {
        self.shared.lock().cfg.layer = layer;
    }
    /// Close the port and every open connection (clients get "connection refused").
    pub fn pause(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.shutdown();
        }
    }
    /// Listen again on the same port with the state intact.
    pub fn resume(&mut self) -> io::Result<()> {
        if self.server.is_none() {
            self.server = Some(HttpServer::start(&self.addr.to_string(), handler(self.shared.clone(), self.api))?);
        }
        Ok(())
    }
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }
}

/// Deterministic bytes for IDs: sha3-256(tag ‖ parts), cut to `len`.
fn id(len: usize, tag: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha3_256::new();
    h.update(tag.as_bytes());
    for p in parts {
        h.update(p);
    }
    base64(&h.finalize()[..len])
}

fn plain_400(msg: &str) -> Reply {
    // go-spacemesh's handlers write "plain/text" (sic).
    let mut r = Reply::text(400, msg);
    r.content_type = "plain/text";
    r
}

fn empty(status: u16) -> Reply {
    let mut r = Reply::text(status, "");
    r.body.clear();
    r
}

fn hex32(s: &str) -> Result<[u8; 32], Reply> {
    let bytes = hex::decode(s).map_err(|_| plain_400(&format!("invalid hex id {s:?}")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| plain_400("expected 32 bytes of lowercase hex"))
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, Reply> {
    s.parse::<T>().map_err(|_| plain_400(&format!("Invalid format for parameter {what}: {s:?}")))
}

fn route(shared: &Shared, rq: &Incoming) -> Reply {
    let mut st = shared.lock();
    st.stats.requests += 1;
    if let Some(h) = rq.header("host") {
        st.stats.hosts.push(h.to_string());
    }
    let segments: Vec<&str> = rq.path.trim_start_matches('/').split('/').collect();
    let template = match (rq.method.as_str(), segments.as_slice()) {
        ("POST", ["publish", _]) => "POST /publish".to_string(),
        (m, [a, b, ..]) => format!("{m} /{a}/{b}"),
        (m, [a]) => format!("{m} /{a}"),
        (m, []) => m.to_string(),
    };
    *st.stats.by_route.entry(template).or_insert(0) += 1;
    if !st.synced {
        st.stats.not_ready_answers += 1;
        return Reply::text(503, NOT_READY);
    }
    match answer(&mut st, rq, &segments) {
        Ok(r) | Err(r) => r,
    }
}

fn answer(st: &mut State, rq: &Incoming, seg: &[&str]) -> Result<Reply, Reply> {
    let cfg = &st.cfg;
    let epoch_now = cfg.layer / cfg.layers_per_epoch.max(1);
    let known = |node: &[u8; 32]| cfg.identities.contains(node);
    Ok(match (rq.method.as_str(), seg) {
        ("GET", ["activation", "positioning_atx", epoch]) => {
            let e: u32 = num(epoch, "publish_epoch")?;
            Reply::json(200, &json!({"ID": id(32, "positioning", &[&e.to_le_bytes()])}))
        }
        ("GET", ["activation", "last_atx", node]) => {
            let node = hex32(node)?;
            if !known(&node) {
                return Ok(empty(404));
            }
            Reply::json(200, &atx_json(&node, epoch_now))
        }
        ("GET", ["activation", "atx", atx]) => {
            let atx = hex32(atx)?;
            // ATX ids this node knows: the last ATX of each identity.
            let owner = cfg.identities.iter().find(|n| atx_id(n, epoch_now) == atx).copied();
            match owner {
                Some(node) => Reply::json(200, &atx_json(&node, epoch_now)),
                None => empty(404),
            }
        }
        ("POST", ["activation", "publish"]) => {
            if st.reject_atx {
                return Ok(plain_400("invalid atx: simulated rejection"));
            }
            let v: Value = serde_json::from_slice(&rq.body).map_err(|e| plain_400(&format!("can't decode JSON body: {e}")))?;
            let obj = v.as_object().ok_or_else(|| plain_400("expected a JSON object"))?;
            let field = |name: &str| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
            let blob = field("AtxBlob").and_then(Value::as_str).and_then(base64_decode).filter(|b| !b.is_empty());
            let Some(blob) = blob else { return Err(plain_400("AtxBlob is required")) };
            let with_poet_proof = field("PoetProof").is_some_and(|p| !p.is_null());
            st.stats.published.push(Published { route: "activation".into(), body: blob, with_poet_proof });
            empty(200)
        }
        ("POST", ["publish", protocol]) => {
            // The node ignores publish errors and always answers 200 (§1.1).
            st.stats.published.push(Published { route: protocol.to_string(), body: rq.body.clone(), with_poet_proof: false });
            empty(200)
        }
        ("GET", ["hare", "round_template", layer, iter, round]) => {
            let l: u32 = num(layer, "layer")?;
            let _: u8 = num(iter, "iter")?;
            let _: u8 = num(round, "round")?;
            if l + 2 < cfg.layer || l > cfg.layer + 1 {
                return Ok(empty(204)); // hare finished for that layer / nothing yet
            }
            Reply::json(
                200,
                &json!({
                    "Proposals": [id(20, "proposal", &[layer.as_bytes(), b"0"]), id(20, "proposal", &[layer.as_bytes(), b"1"])],
                    "Reference": id(32, "reference", &[layer.as_bytes(), iter.as_bytes(), round.as_bytes()]),
                }),
            )
        }
        ("GET", ["weights", "total", epoch]) => {
            let e: u32 = num(epoch, "epoch")?;
            Reply::json(200, &json!({"weight": 1_000_000u64 + u64::from(e) * 1_000}))
        }
        ("GET", ["weights", "miner", node, epoch]) => {
            let node = hex32(node)?;
            let _: u32 = num(epoch, "epoch")?;
            Reply::json(200, &json!({"weight": if known(&node) { 4_096u64 } else { 0 }}))
        }
        ("GET", ["beacon", epoch]) => {
            let e: u32 = num(epoch, "epoch")?;
            if e > epoch_now {
                return Ok(empty(204));
            }
            Reply::json(200, &json!({"beacon": id(4, "beacon", &[&e.to_le_bytes()])}))
        }
        ("GET", ["proposal", layer, node]) => {
            let l: u32 = num(layer, "layer")?;
            let node = hex32(node)?;
            // Eligible in one layer out of three, only known identities.
            if !known(&node) || (l + u32::from(node[0])) % 3 != 0 {
                return Ok(empty(204));
            }
            let e = l / cfg.layers_per_epoch.max(1);
            Reply::json(
                200,
                &json!({
                    "Ballot": {
                        "AtxID": base64(&atx_id(&node, e)),
                        "OpinionHash": id(32, "opinion", &[layer.as_bytes()]),
                        "Votes": {
                            "Base": id(20, "ballot", &[&(l.saturating_sub(1)).to_le_bytes()]),
                            "Support": [{"ID": id(20, "block", &[&(l.saturating_sub(1)).to_le_bytes()]), "LayerID": l.saturating_sub(1), "Height": 100}],
                            "Against": [],
                            "Abstain": [],
                        },
                        "EpochData": {"ActiveSetHash": id(32, "activeset", &[&e.to_le_bytes()]), "Beacon": id(4, "beacon", &[&e.to_le_bytes()]), "EligibilityCount": 2},
                    },
                    "TxIDs": [],
                    "MeshHash": id(32, "mesh", &[layer.as_bytes()]),
                    "VrfNonce": 7u64,
                }),
            )
        }
        ("GET", ["eligibility", "slots", node, epoch]) => {
            let node = hex32(node)?;
            let _: u32 = num(epoch, "epoch")?;
            if !known(&node) {
                return Ok(Reply::text(500, "no ATX for this identity in the epoch"));
            }
            Reply::json(200, &json!({"slots": 2, "nonce": 7u64}))
        }
        ("GET", ["blockids", layer]) => {
            let l: u32 = num(layer, "layer")?;
            if l >= cfg.layer {
                return Ok(empty(404));
            }
            Reply::json(200, &json!({"BlockID": id(20, "block", &[&l.to_le_bytes()])}))
        }
        _ => Reply::text(404, "404 page not found"),
    })
}

fn atx_id(node: &[u8; 32], epoch: u32) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"atx");
    h.update(node);
    h.update(epoch.to_le_bytes());
    h.finalize().into()
}

fn atx_json(node: &[u8; 32], epoch: u32) -> Value {
    json!({
        "ID": base64(&atx_id(node, epoch)),
        "SmesherID": base64(node),
        "PublishEpoch": epoch,
        "NumUnits": 4,
        "TickCount": 1_000u64,
        "Weight": 4_096u64,
        "Sequence": 3u64,
    })
}

fn json_api(shared: &Shared, rq: &Incoming) -> Reply {
    let mut st = shared.lock();
    st.stats.requests += 1;
    if let Some(h) = rq.header("host") {
        st.stats.hosts.push(h.to_string());
    }
    *st.stats.by_route.entry(format!("{} {}", rq.method, rq.path)).or_insert(0) += 1;
    let layer = st.cfg.layer;
    let mut reply = match (rq.method.as_str(), rq.path.as_str()) {
        ("GET", "/spacemesh.v2beta1.NodeService/Status") => Reply::json(
            200,
            &json!({
                "connectedPeers": "8",
                "status": if st.synced { "SYNC_STATUS_SYNCED" } else { "SYNC_STATUS_SYNCING" },
                "latestLayer": layer, "appliedLayer": layer.saturating_sub(1), "processedLayer": layer.saturating_sub(1), "currentLayer": layer,
            }),
        ),
        ("GET", "/spacemesh.v2beta1.NetworkService/Info") => Reply::json(
            200,
            &json!({"genesisTime": "2023-07-14T08:00:00Z", "layerDuration": "300s", "genesisId": "n3+k8+4QQo+IhvL2gy9j4w==",
                    "hrp": "sm", "effectiveGenesisLayer": 7, "layersPerEpoch": st.cfg.layers_per_epoch, "labelsPerUnit": "4294967296"}),
        ),
        ("POST", "/spacemesh.v2alpha1.RewardService/List") => match serde_json::from_slice::<Value>(&rq.body) {
            Ok(v) => Reply::json(200, &json!({"rewards": [], "echo": v})),
            Err(_) => Reply::json(400, &json!({"code": 3, "message": "invalid JSON body", "details": []})),
        },
        _ => Reply::json(404, &json!({"code": 5, "message": "Not Found", "details": []})),
    };
    reply.headers.push(("Access-Control-Allow-Origin".into(), "http://upstream.invalid".into()));
    reply.headers.push(("Access-Control-Allow-Credentials".into(), "true".into()));
    reply.headers.push(("X-Final-Url".into(), rq.path.clone()));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(3))).build().into()
    }

    fn get(url: &str) -> (u16, String) {
        let mut r = agent().get(url).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    #[test]
    fn endpoints_answer_like_the_node_service() {
        let sim = start_node_service(NodeServiceSimConfig { synced: false, ..Default::default() }).unwrap();
        let u = sim.url();
        let known = hex::encode([0x11; 32]);
        let unknown = hex::encode([0x33; 32]);
        assert_eq!(get(&format!("{u}/weights/total/3")), (503, NOT_READY.to_string()));
        sim.set_synced(true);
        let (s, body) = get(&format!("{u}/activation/last_atx/{known}"));
        assert_eq!(s, 200);
        let atx: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(atx["SmesherID"], base64(&[0x11; 32]));
        let atx_hex = hex::encode(base64_decode(atx["ID"].as_str().unwrap()).unwrap());
        assert_eq!(get(&format!("{u}/activation/atx/{atx_hex}")).0, 200);
        assert_eq!(get(&format!("{u}/activation/atx/{unknown}")).0, 404);
        assert_eq!(get(&format!("{u}/activation/last_atx/{unknown}")).0, 404);
        assert_eq!(get(&format!("{u}/activation/last_atx/xyz")).0, 400);
        assert_eq!(get(&format!("{u}/hare/round_template/1000/0/1")).0, 200);
        assert_eq!(get(&format!("{u}/hare/round_template/10/0/1")).0, 204);
        assert_eq!(get(&format!("{u}/hare/round_template/1000/300/1")).0, 400, "iter is a u8");
        assert_eq!(get(&format!("{u}/beacon/3")).0, 200);
        assert_eq!(get(&format!("{u}/beacon/99")).0, 204);
        assert_eq!(get(&format!("{u}/blockids/999")).0, 200);
        assert_eq!(get(&format!("{u}/blockids/1000")).0, 404);
        assert_eq!(get(&format!("{u}/eligibility/slots/{unknown}/3")).0, 500);
        let statuses: Vec<u16> = (999..1002).map(|l| get(&format!("{u}/proposal/{l}/{known}")).0).collect();
        assert!(statuses.contains(&200) && statuses.contains(&204), "{statuses:?}");
        let publish = |path: &str, body: &[u8]| agent().post(&format!("{u}{path}")).send(body).unwrap().status().as_u16();
        assert_eq!(publish("/publish/hare3", b"\x01\x02"), 200);
        assert_eq!(publish("/activation/publish", br#"{"atxblob":"AQID","PoetProof":{"Id":"p"}}"#), 200);
        assert_eq!(publish("/activation/publish", br#"{"PoetProof":null}"#), 400);
        let st = sim.stats();
        assert_eq!(st.published_count("hare3", b"\x01\x02"), 1);
        assert_eq!(
            st.published,
            vec![
                Published { route: "hare3".into(), body: vec![1, 2], with_poet_proof: false },
                Published { route: "activation".into(), body: vec![1, 2, 3], with_poet_proof: true },
            ]
        );
        assert_eq!(st.not_ready_answers, 1);
        assert_eq!(st.route("GET /activation/last_atx"), 3);
    }

    #[test]
    fn pause_refuses_connections_and_resume_keeps_state() {
        let mut sim = start_node_service(NodeServiceSimConfig::default()).unwrap();
        let url = format!("{}/weights/total/1", sim.url());
        assert_eq!(get(&url).0, 200);
        sim.pause();
        assert!(agent().get(&url).call().is_err());
        sim.resume().unwrap();
        assert_eq!(get(&url).0, 200);
        assert_eq!(sim.stats().requests, 2);
    }
}
