//! Shannon supplier-edge parts of the load generator (bench/README.md "Shannon supplier edge";
//! README "Shannon supplier at the edge"; shannon-relay.md §1–§5):
//! - `sh-setup` writes a meshd data dir with a `shannon` section and N supplier keys, and the
//!   full-node simulator's config (the suppliers staked for one service, A applications each
//!   delegating to one gateway, the accounts with their public keys);
//! - [`Relays::build`] builds and ring-signs (the gateway's cost, §2.1) every relay of a run
//!   before the timed phase: distinct requests (unique JSON-RPC id and signature randomness),
//!   suppliers varying fastest, then applications (one session per application);
//! - `sh-crypto` times on one core the per-relay work an edge cannot avoid (§7 items 2, 4, 5, 8):
//!   decode + `ValidateBasic`, ring-signature parse + membership + verify over the signable hash,
//!   payload decode, the signed response, the dehydrated relay hash and the request hash;
//! - `sh-streams` reads the central miner's Redis streams after a run: messages, distinct relay
//!   hashes, duplicates (§5).
//!
//! Keys are deterministic (`OperatorKey::from_secret` of a fixed text), so `sh-setup`, `run
//! --shannon` and `sh-crypto` agree without sharing files.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use meshd::shannon::client::{build_relay_request, check_relay_response};
use meshd::shannon::keys::OperatorKey;
use meshd::shannon::mined::MinedRelayMessage;
use meshd::shannon::payload::{POKTHTTPRequest, POKTHTTPResponse};
use meshd::shannon::proto::{Relay, RelayRequest, RelayResponse, RelayResponseMetadata, SessionHeader};
use meshd::shannon::ring_members::{ring_addresses, ring_pubkeys};
use meshd::shannon::{mining, ring, ring_sign, session};
use meshd::sim::fullnode::{FullNodeSimConfig, SimAccount, SimApplication, SimService, SimSupplier};
use meshd::supplier::resp::{Connection, RedisTarget, Reply};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{build_parallel, median, parse_url, unix_ms, write_file, Conn, Opts};

/// The one service every relay is for.
pub const SERVICE: &str = "anvil";
/// The chain simulator's answer, for the in-process floor (the backend answer meshd wraps).
const BACKEND_ANSWER: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x10d4f\"}\n";

pub fn supplier_key(i: usize) -> OperatorKey {
    OperatorKey::from_secret(format!("meshd-bench-supplier-{i}").as_bytes())
}
fn app_key(i: usize) -> OperatorKey {
    OperatorKey::from_secret(format!("meshd-bench-app-{i}").as_bytes())
}
fn gateway_key(i: usize) -> OperatorKey {
    OperatorKey::from_secret(format!("meshd-bench-gateway-{i}").as_bytes())
}

fn counts(o: &Opts) -> Result<(usize, usize), String> {
    let (s, a): (usize, usize) = (o.num("suppliers", 1)?, o.num("apps", 1)?);
    if !(1..=10_000).contains(&s) || !(1..=100).contains(&a) {
        return Err("--suppliers 1..10000, --apps 1..100".into());
    }
    Ok((s, a))
}

// ----- sh-setup --------------------------------------------------------------------------------

/// `sh-setup --dir D --listen ADDR --rpc-port P --metrics-port P --fullnode-listen ADDR
/// --backend-url URL --redis-url URL --fullnode-config FILE [--suppliers N] [--apps A]
/// [--extra JSON (top-level config keys)] [--shannon-extra JSON (keys of the shannon object)]`.
pub fn setup(o: &Opts) -> Result<(), String> {
    let dir = PathBuf::from(o.req("dir")?);
    let (s, a) = counts(o)?;
    let listen = o.req("listen")?;
    let fullnode_listen = o.req("fullnode-listen")?;
    let object = |key: &str| -> Result<serde_json::Map<String, Value>, String> {
        match o.str(key) {
            None => Ok(serde_json::Map::new()),
            Some(text) => match serde_json::from_str(text) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(format!("--{key} must be a JSON object")),
            },
        }
    };
    let suppliers: Vec<OperatorKey> = (0..s).map(supplier_key).collect();
    let mut shannon = json!({
        "listen": listen,
        "full_nodes": [format!("http://{fullnode_listen}")],
        "services": {SERVICE: {"urls": [o.req("backend-url")?]}},
        "redis_url": o.req("redis-url")?,
    });
    for (k, v) in object("shannon-extra")? {
        shannon[k] = v;
    }
    let mut config = json!({
        "rpc_port": o.req("rpc-port")?,
        "listen_address": "127.0.0.1",
        "pocket_prometheus_port": o.req("metrics-port")?,
        "log_level": "*:warn",
        "shannon": shannon,
    });
    for (k, v) in object("extra")? {
        config[k] = v;
    }
    write_file(&dir.join("config.json"), &config)?;
    let keys: Vec<String> = suppliers.iter().map(|k| hex::encode(k.signing_key().to_bytes())).collect();
    write_file(&dir.join("supplier_keys.json"), &json!(keys))?;
    let apps: Vec<(OperatorKey, OperatorKey)> = (0..a).map(|i| (app_key(i), gateway_key(i))).collect();
    let sim = FullNodeSimConfig {
        listen: fullnode_listen.to_string(),
        // All `ff`: every relay is mined and handed off (§4), so the streams must hold them all.
        services: vec![SimService { id: SERVICE.into(), target_hash_hex: "ff".repeat(32), compute_units_per_relay: 1 }],
        applications: apps
            .iter()
            .map(|(app, gw)| SimApplication { address: app.address().into(), delegatee_gateway_addresses: vec![gw.address().into()], ..Default::default() })
            .collect(),
        accounts: apps
            .iter()
            .flat_map(|(app, gw)| [app, gw])
            .map(|k| SimAccount { address: k.address().into(), pubkey_hex: Some(hex::encode(k.pubkey())) })
            .collect(),
        suppliers: suppliers.iter().map(|k| SimSupplier { operator_address: k.address().into(), services: vec![SERVICE.into()] }).collect(),
        ..FullNodeSimConfig::default()
    };
    write_file(&PathBuf::from(o.req("fullnode-config")?), &serde_json::to_value(&sim).expect("config serializes"))?;
    println!("{}", json!({"datadir": dir, "suppliers": s, "apps": a, "first_supplier": suppliers[0].address()}));
    Ok(())
}

// ----- pre-built relays ------------------------------------------------------------------------

/// The session header the full node has now for (app, SERVICE): its `get_session` at the
/// current height (the simulator's height only moves on `POST /sim/advance`, so the header
/// stays valid for the whole run).
fn session_header(fullnode: &str, app: &str) -> Result<SessionHeader, String> {
    let (addr, base) = parse_url(fullnode)?;
    let base = base.trim_end_matches('/');
    let path = format!("{base}/pokt-network/poktroll/session/get_session?application_address={app}&service_id={SERVICE}&block_height=0");
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    let (status, body, _) = Conn::open(addr, Duration::from_secs(5)).and_then(|mut c| c.roundtrip(&head, b"")).map_err(|e| format!("get_session: {e}"))?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("get_session ({status}): {e}"))?;
    let h = &v["session"]["header"];
    let num = |k: &str| h[k].as_str().and_then(|s| s.parse::<i64>().ok()).ok_or_else(|| format!("get_session ({status}): no {k} in {v}"));
    Ok(SessionHeader {
        application_address: app.into(),
        service_id: SERVICE.into(),
        session_id: h["session_id"].as_str().ok_or("get_session: no session_id")?.into(),
        session_start_block_height: num("session_start_block_height")?,
        session_end_block_height: num("session_end_block_height")?,
    })
}

/// Every relay of a run, built and ring-signed before the timed phase.
pub struct Relays {
    pub bodies: Vec<Vec<u8>>,
    /// Supplier index of each relay.
    pub supplier_of: Vec<u32>,
    pub supplier_pubkeys: Vec<[u8; 33]>,
    pub suppliers: usize,
    pub apps: usize,
}

impl Relays {
    /// `n` relays: relay i goes to supplier i mod S, signed by the gateway of app (i / S) mod A.
    /// `headers` gives each app's session header (from the full node, or made up in process).
    pub fn build(o: &Opts, n: usize, entropy_base: u64, headers: &dyn Fn(&str) -> Result<SessionHeader, String>) -> Result<Relays, String> {
        let (s, a) = counts(o)?;
        let suppliers: Vec<OperatorKey> = (0..s).map(supplier_key).collect();
        let mut apps = Vec::with_capacity(a);
        for i in 0..a {
            let (app, gw) = (app_key(i), gateway_key(i));
            let addresses = ring_addresses(app.address(), &[gw.address().to_string()], &[], 0);
            let ring =
                ring_pubkeys(&addresses, |x| [&app, &gw].into_iter().find(|k| k.address() == x).map(|k| *k.pubkey())).ok_or("ring: a member key is missing")?;
            let header = headers(app.address())?;
            apps.push((gw, ring, header));
        }
        let bodies = build_parallel(n, |i| {
            let (gw, ring, header) = &apps[(i / s) % a];
            let id = entropy_base + i as u64;
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_blockNumber","params":[]}}"#);
            let payload = POKTHTTPRequest::new("POST", "http://gateway.invalid/", [("Content-Type", "application/json")], body.into_bytes());
            let mut fill = ring_sign::seeded_fill(&id.to_be_bytes());
            build_relay_request(header, suppliers[i % s].address(), gw, ring, &payload, &mut fill).map_err(|e| e.to_string())
        })
        .into_iter()
        .collect::<Result<Vec<_>, String>>()?;
        Ok(Relays {
            supplier_of: (0..n).map(|i| (i % s) as u32).collect(),
            supplier_pubkeys: suppliers.iter().map(|k| *k.pubkey()).collect(),
            bodies,
            suppliers: s,
            apps: a,
        })
    }

    /// For `run --shannon --fullnode-url URL`: the headers come from the full-node simulator.
    pub fn for_run(o: &Opts, n: usize) -> Result<Relays, String> {
        let fullnode = o.req("fullnode-url")?.to_string();
        // Distinct per run: a reused data dir answers 409 to a replayed request.
        let base = (unix_ms() % 1_000_000_000) as u64 * 1_000_000;
        Relays::build(o, n, base, &|app| session_header(&fullnode, app))
    }

    /// Does a 200 body carry a valid signature of relay i's supplier (§2.2, `check_relay_response`)?
    pub fn check(&self, i: usize, body: &[u8]) -> bool {
        check_relay_response(body, &self.supplier_pubkeys[self.supplier_of[i] as usize]).is_ok()
    }
}

// ----- crypto floor ----------------------------------------------------------------------------

/// What one relay costs meshd without I/O, in the order `supplier::relay::handle` does it.
fn floor_once(body: &[u8], ring: &[[u8; 33]], key: &OperatorKey) -> usize {
    let req = RelayRequest::decode(body).expect("pre-built relay decodes");
    let header = session::validate_request(&req).expect("ValidateBasic").clone();
    let sig = ring::RingSignature::parse(&req.meta.signature).expect("ring signature parses");
    session::ring_members_expected(&sig, ring).expect("expected ring members");
    sig.verify(&req.signable_hash()).expect("ring signature verifies");
    let payload = POKTHTTPRequest::decode(&req.payload).expect("payload decodes");
    let mut res = RelayResponse {
        meta: RelayResponseMetadata { session_header: Some(header), supplier_operator_signature: Vec::new() },
        payload: POKTHTTPResponse::from_parts(200, [("Content-Type", "application/json")], BACKEND_ANSWER.to_vec()).encode(),
        relay_miner_error: None,
        payload_hash: None,
    };
    res.sign(key).expect("signs");
    let out = res.encode();
    let request_hash: [u8; 32] = Sha256::digest(req.encode()).into();
    let relay = Relay { req: Some(req), res: Some(res) };
    let relay_hash = relay.hash();
    let dehydrated = relay.dehydrated_bytes();
    out.len() + usize::from(mining::is_mined(&relay_hash, &mining::BASE_TARGET)) + dehydrated.len() + request_hash[0] as usize + payload.body.len()
}

/// `sh-crypto [--relays N] [--runs R]`: the floor (relays/s on this core) and per-step costs.
pub fn crypto(o: &Opts) -> Result<(), String> {
    let n: usize = o.num("relays", 2_000)?;
    let runs: usize = o.num("runs", 5)?;
    if !(1..=200_000).contains(&n) || !(1..=100).contains(&runs) {
        return Err("--relays 1..200000, --runs 1..100".into());
    }
    // A made-up session header: the floor needs no chain.
    let made_up = |app: &str| {
        Ok(SessionHeader {
            application_address: app.into(),
            service_id: SERVICE.into(),
            session_id: "ab".repeat(32),
            session_start_block_height: 101,
            session_end_block_height: 110,
        })
    };
    let t0 = Instant::now();
    let relays = Relays::build(o, n, 1, &made_up)?;
    let build_s = t0.elapsed().as_secs_f64();
    let keys: Vec<OperatorKey> = (0..relays.suppliers).map(supplier_key).collect();
    let rings: Vec<Vec<[u8; 33]>> = (0..relays.apps)
        .map(|i| {
            let (app, gw) = (app_key(i), gateway_key(i));
            let mut r = vec![*app.pubkey(), *gw.pubkey()];
            r.sort();
            r
        })
        .collect();
    let ring_of = |i: usize| &rings[(i / relays.suppliers) % relays.apps];
    let mut floor = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut sink = 0;
        for (i, b) in relays.bodies.iter().enumerate() {
            sink += floor_once(b, ring_of(i), &keys[relays.supplier_of[i] as usize]);
        }
        std::hint::black_box(sink);
        floor.push(n as f64 / t.elapsed().as_secs_f64());
    }
    // Per-step costs, one pass each.
    let reqs: Vec<RelayRequest> = relays.bodies.iter().map(|b| RelayRequest::decode(b).expect("decodes")).collect();
    let sigs: Vec<ring::RingSignature> = reqs.iter().map(|r| ring::RingSignature::parse(&r.meta.signature).expect("parses")).collect();
    let hashes: Vec<[u8; 32]> = reqs.iter().map(RelayRequest::signable_hash).collect();
    let timed = |f: &dyn Fn(usize) -> usize| -> f64 {
        let t = Instant::now();
        let mut sink = 0;
        for i in 0..n {
            sink += f(i);
        }
        std::hint::black_box(sink);
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let response = |i: usize| {
        let mut res = RelayResponse {
            meta: RelayResponseMetadata { session_header: reqs[i].meta.session_header.clone(), supplier_operator_signature: Vec::new() },
            payload: POKTHTTPResponse::from_parts(200, [("Content-Type", "application/json")], BACKEND_ANSWER.to_vec()).encode(),
            relay_miner_error: None,
            payload_hash: None,
        };
        res.sign(&keys[relays.supplier_of[i] as usize]).expect("signs");
        res
    };
    let signed: Vec<RelayResponse> = (0..n).map(response).collect();
    let steps = json!({
        "decode_validate_us": timed(&|i| session::validate_request(&RelayRequest::decode(&relays.bodies[i]).expect("decodes")).map_or(0, |h| h.session_id.len())),
        "ring_parse_us": timed(&|i| ring::RingSignature::parse(&reqs[i].meta.signature).map_or(0, |s| s.members.len())),
        "signable_hash_us": timed(&|i| reqs[i].signable_hash()[0] as usize),
        "ring_verify_us": timed(&|i| usize::from(sigs[i].verify(&hashes[i]).is_ok())),
        "payload_decode_us": timed(&|i| POKTHTTPRequest::decode(&reqs[i].payload).map_or(0, |p| p.body.len())),
        "response_build_sign_us": timed(&|i| response(i).meta.supplier_operator_signature.len()),
        "response_encode_us": timed(&|i| signed[i].encode().len()),
        "relay_hash_us": timed(&|i| Relay { req: Some(reqs[i].clone()), res: Some(signed[i].clone()) }.hash()[0] as usize),
        "request_hash_us": timed(&|i| Sha256::digest(reqs[i].encode())[0] as usize),
    });
    println!(
        "{}",
        json!({"relays_per_run": n, "runs": runs, "floor_relays_per_s": floor, "floor_median": median(&mut floor.clone()),
               "steps": steps, "build_s": build_s, "suppliers": relays.suppliers, "apps": relays.apps, "ring_size": 2})
    );
    Ok(())
}

// ----- sh-streams ------------------------------------------------------------------------------

/// `sh-streams --redis-url URL [--suppliers N] [--prefix ha:relays]`: every supplier stream read
/// in full (XRANGE in pages of 1,000), each message decoded as a `MinedRelayMessage`.
pub fn streams(o: &Opts) -> Result<(), String> {
    let (s, _) = counts(o)?;
    let prefix = o.str("prefix").unwrap_or("ha:relays");
    let url = o.req("redis-url")?;
    if !url.starts_with("redis://127.0.0.1:") {
        return Err(format!("{url}: only redis://127.0.0.1:PORT"));
    }
    let target = RedisTarget::parse(url)?;
    let mut conn = Connection::connect(&target, Duration::from_secs(5)).map_err(|e| format!("redis: {e}"))?;
    let (mut messages, mut undecodable, mut wrong_supplier) = (0u64, 0u64, 0u64);
    let mut seen = HashSet::new();
    let mut per_supplier = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    for i in 0..s {
        let key = supplier_key(i);
        let stream = format!("{prefix}:{}", key.address());
        let mut from = "-".to_string();
        let mut count = 0u64;
        for _ in 0..100_000 {
            if Instant::now() > deadline {
                return Err("sh-streams: over 300 s".into());
            }
            let reply = conn.command(&[b"XRANGE", stream.as_bytes(), from.as_bytes(), b"+", b"COUNT", b"1000"]).map_err(|e| format!("XRANGE: {e}"))?;
            let Reply::Array(Some(entries)) = reply else { break };
            if entries.is_empty() {
                break;
            }
            let page = entries.len();
            for entry in entries {
                let Reply::Array(Some(mut parts)) = entry else { return Err("stream entry shape".into()) };
                let Reply::Bulk(Some(id)) = parts.remove(0) else { return Err("stream id shape".into()) };
                from = format!("({}", String::from_utf8_lossy(&id));
                let Some(Reply::Array(Some(fields))) = parts.pop() else { return Err("stream fields shape".into()) };
                count += 1;
                let data = fields.iter().position(|f| *f == Reply::Bulk(Some(b"data".to_vec()))).and_then(|p| fields.get(p + 1));
                match data {
                    Some(Reply::Bulk(Some(bytes))) => match MinedRelayMessage::decode(bytes) {
                        Ok(m) => {
                            if m.supplier_operator_address != key.address() {
                                wrong_supplier += 1;
                            }
                            seen.insert(m.relay_hash);
                        }
                        Err(_) => undecodable += 1,
                    },
                    _ => undecodable += 1,
                }
            }
            if page < 1000 {
                break;
            }
        }
        messages += count;
        *per_supplier.entry(count).or_insert(0u64) += 1;
    }
    let distinct = seen.len() as u64;
    println!(
        "{}",
        json!({"streams": s, "messages": messages, "distinct_relay_hashes": distinct, "duplicates": messages - distinct,
               "undecodable": undecodable, "wrong_supplier": wrong_supplier,
               "suppliers_by_message_count": per_supplier.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()})
    );
    Ok(())
}
