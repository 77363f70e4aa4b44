//! `meshd demo --shannon`: the Shannon supplier edge end to end on loopback (docs/simulators.md
//! "Shannon demo"). It starts the full-node simulator (sessions, accounts, params, difficulty),
//! the chain simulator as the service backend, meshd in Shannon mode on a throw-away data dir
//! (in process, as `meshd demo` does for Morse) and uses a real local Redis
//! ([`crate::local_redis`]). It prints the first relay request decoded, sends ring-signed relays
//! as a gateway would (shannon-relay.md §1.3, §2.1), verifies the supplier signature of every
//! answer (§1.5, §2.2), shows a replay refused, then reads the mined relays back from the
//! supplier streams as pocket-relay-miner's miners would (§5) and prints the consumer-group
//! commands a miner uses.
//!
//! Randomness: one 32-byte seed from the OS (`getrandom`) expanded by
//! [`ring_sign::seeded_fill`]; the ring signer hedges its nonces with the secret and the message
//! anyway (src/shannon/ring_sign.rs), and fresh randomness per run keeps relay hashes distinct
//! when the demo runs twice against the same Redis (the hand-off deduplicates by relay hash).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::demo::free_port;
use crate::local_redis::{self, LocalRedis};
use crate::shannon::client::{build_relay_request, check_relay_response};
use crate::shannon::keys::OperatorKey;
use crate::shannon::mined::MinedRelayMessage;
use crate::shannon::payload::POKTHTTPRequest;
use crate::shannon::proto::{Relay, RelayRequest, RelayResponse, SessionHeader};
use crate::shannon::ring_members::{ring_addresses, ring_pubkeys};
use crate::shannon::ring_sign;
use crate::sim::fullnode::{start_fullnode, FullNodeSimConfig, SimAccount, SimApplication, SimService, SimSupplier};
use crate::sim::{start_chain, ChainSimConfig};
use crate::supplier::resp::{Connection, RedisTarget, Reply};

/// The demo's service id (the chain simulator answers EVM JSON-RPC).
pub const SERVICE: &str = "anvil";
/// Compute units per relay the full-node simulator reports for [`SERVICE`].
pub const CUPR: u64 = 10;
/// Supplier streams: pocket-relay-miner's default prefix (§5).
pub const STREAM_PREFIX: &str = "ha:relays";
/// pocket-relay-miner's consumer group (`{base}-{consumer_group_prefix}`, §5).
pub const CONSUMER_GROUP: &str = "ha-miners";
/// Suppliers whose keys the demo's meshd holds (relays alternate between them).
const SUPPLIERS: usize = 2;
/// Stream entries printed in full (the rest are counted).
const SHOWN_ENTRIES: usize = 12;

/// Public test keys, derived like cosmos-sdk `GenPrivKeyFromSecret` from published names.
pub struct DemoKeys {
    pub app: OperatorKey,
    pub gateway: OperatorKey,
    pub suppliers: Vec<OperatorKey>,
}

pub fn demo_keys() -> DemoKeys {
    DemoKeys {
        app: OperatorKey::from_secret(b"meshd shannon demo application"),
        gateway: OperatorKey::from_secret(b"meshd shannon demo gateway"),
        suppliers: (1..=SUPPLIERS).map(|i| OperatorKey::from_secret(format!("meshd shannon demo supplier {i}").as_bytes())).collect(),
    }
}

/// Removes the temp data dir however the demo ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn short(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        format!("{}…", &s[..n])
    }
}

/// The relay request as a reader wants to see it: every field decoded (§1.1, §1.4).
fn describe_request(url: &str, bytes: &[u8], ring_size: usize) -> Result<String, String> {
    let req = RelayRequest::decode(bytes).map_err(|e| format!("our own relay request does not decode: {e}"))?;
    let payload = POKTHTTPRequest::decode(&req.payload).map_err(|e| format!("our own payload does not decode: {e}"))?;
    let h = req.meta.session_header.clone().unwrap_or_default();
    let mut out =
        format!("request of relay 1: POST {url}  Rpc-Type: 3  Content-Type: application/json  (body: protobuf RelayRequest, {} bytes)\n", bytes.len());
    out += "  meta.session_header\n";
    out += &format!("    application_address          {}\n", h.application_address);
    out += &format!("    service_id                   {}\n", h.service_id);
    out += &format!("    session_id                   {}\n", h.session_id);
    out += &format!("    session_start/end_height     {} / {}\n", h.session_start_block_height, h.session_end_block_height);
    out += &format!("  meta.supplier_operator_address {}\n", req.meta.supplier_operator_address);
    out += &format!(
        "  meta.signature                 ring signature (bLSAG, {ring_size} members, by the gateway), {} bytes: {}\n",
        req.meta.signature.len(),
        short(&hex::encode(&req.meta.signature), 48)
    );
    out += &format!("  payload (POKTHTTPRequest)      {} bytes\n", req.payload.len());
    out += &format!("    method                       {}\n", payload.method);
    out += &format!("    url                          {}  (the supplier keeps path and query only)\n", payload.url);
    for header in payload.headers.values() {
        out += &format!("    header                       {}: {}\n", header.key, header.values.join(", "));
    }
    out += &format!("    body                         {}\n", String::from_utf8_lossy(&payload.body));
    Ok(out)
}

/// The Redis server's clock in milliseconds: stream entry ids start with it, so entries added
/// from now on have ids at or above it (earlier runs against the same Redis stay out of view).
fn redis_time_ms(redis_url: &str) -> Result<u64, String> {
    let target = RedisTarget::parse(redis_url)?;
    let mut conn = Connection::connect(&target, Duration::from_secs(2)).map_err(|e| format!("redis: {e}"))?;
    let reply = conn.command(&[b"TIME"]).map_err(|e| format!("redis TIME: {e}"))?;
    let number = |r: Option<&Reply>| match r {
        Some(Reply::Bulk(Some(b))) => std::str::from_utf8(b).ok().and_then(|t| t.parse::<u64>().ok()),
        _ => None,
    };
    match &reply {
        Reply::Array(Some(parts)) => match (number(parts.first()), number(parts.get(1))) {
            (Some(secs), Some(micros)) => Ok(secs * 1000 + micros / 1000),
            _ => Err(format!("redis TIME: unexpected reply {reply:?}")),
        },
        _ => Err(format!("redis TIME: unexpected reply {reply:?}")),
    }
}

/// Entries of a stream from id `from_ms` on: (entry id, decoded message). Entries that do not
/// decode are errors.
fn read_stream(redis_url: &str, stream: &str, from_ms: u64) -> Result<Vec<(String, MinedRelayMessage)>, String> {
    let target = RedisTarget::parse(redis_url)?;
    let mut conn = Connection::connect(&target, Duration::from_secs(2)).map_err(|e| format!("redis: {e}"))?;
    let reply = conn.command(&[b"XRANGE", stream.as_bytes(), from_ms.to_string().as_bytes(), b"+"]).map_err(|e| format!("redis XRANGE: {e}"))?;
    let Reply::Array(Some(entries)) = reply else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let Reply::Array(Some(parts)) = entry else { return Err(format!("{stream}: unexpected XRANGE entry shape")) };
        let (Some(Reply::Bulk(Some(id))), Some(Reply::Array(Some(fields)))) = (parts.first(), parts.get(1)) else {
            return Err(format!("{stream}: unexpected XRANGE entry shape"));
        };
        let id = String::from_utf8_lossy(id).into_owned();
        // pocket-relay-miner reads the field `data` (§5).
        let data = fields.chunks(2).find_map(|kv| match kv {
            [Reply::Bulk(Some(k)), Reply::Bulk(Some(v))] if k == b"data" => Some(v.clone()),
            _ => None,
        });
        let data = data.ok_or_else(|| format!("{stream} {id}: no `data` field"))?;
        let message = MinedRelayMessage::decode(&data).map_err(|e| format!("{stream} {id}: not a MinedRelayMessage: {e}"))?;
        out.push((id, message));
    }
    Ok(out)
}

/// Run the demo; `Ok(0)` when every answer verified and every relay reached its stream.
pub fn run(relays: usize, redis_url: Option<&str>) -> Result<i32, String> {
    let _ = simple_logger::SimpleLogger::new().with_level(log::LevelFilter::Warn).env().init();
    let dir = std::env::temp_dir().join(format!("meshd-shannon-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _cleanup = TempDir(dir.clone());

    // Redis first: without one there is nothing to show, and nothing else was started yet.
    let redis: LocalRedis = local_redis::obtain(redis_url, &dir.join("redis"))?;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no OS randomness for the ring signatures: {e}"))?;
    let mut fill = ring_sign::seeded_fill(&seed);

    let keys = demo_keys();
    let backend = start_chain(ChainSimConfig::default()).map_err(|e| format!("chain simulator: {e}"))?;
    let node = start_fullnode(FullNodeSimConfig {
        services: vec![SimService { id: SERVICE.into(), target_hash_hex: "ff".repeat(32), compute_units_per_relay: CUPR }],
        applications: vec![SimApplication {
            address: keys.app.address().into(),
            delegatee_gateway_addresses: vec![keys.gateway.address().into()],
            ..Default::default()
        }],
        accounts: [&keys.app, &keys.gateway].iter().map(|k| SimAccount { address: k.address().into(), pubkey_hex: Some(hex::encode(k.pubkey())) }).collect(),
        suppliers: keys.suppliers.iter().map(|k| SimSupplier { operator_address: k.address().into(), services: vec![SERVICE.into()] }).collect(),
        ..FullNodeSimConfig::default()
    })
    .map_err(|e| format!("full-node simulator: {e}"))?;
    println!("full-node simulator  {}  (Shannon full node REST: sessions, accounts, params, difficulty)", node.url());
    println!("chain simulator      {}  (backend of service {SERVICE:?}: EVM JSON-RPC)", backend.url());
    println!("redis                {:?}  ({})", RedisTarget::parse(&redis.url)?, redis.origin);

    // A Shannon-only data dir: config.json with a `shannon` object and the supplier keys file
    // (src/config/shannon.rs); no Pocket files.
    let listen = format!("127.0.0.1:{}", free_port()?);
    let config = json!({
        "rpc_port": free_port()?.to_string(),
        "listen_address": "127.0.0.1",
        "pocket_prometheus_port": free_port()?.to_string(),
        "log_level": "*:warn",
        "shannon": {
            "listen": listen,
            "full_nodes": [node.url()],
            "services": {SERVICE: {"urls": [backend.url()]}},
            "redis_url": redis.url,
            "stream_prefix": STREAM_PREFIX,
            "height_poll_interval": 200,
            "handoff_retry_wait_max": 500,
        },
    });
    let write = |name: &str, value: &serde_json::Value| {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(value).expect("JSON value")).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    write("config.json", &config)?;
    write("supplier_keys.json", &json!(keys.suppliers.iter().map(|k| hex::encode(k.signing_key().to_bytes())).collect::<Vec<_>>()))?;
    println!("meshd data dir       {}", dir.display());

    // The Shannon listener is bound before the daemon reports ready.
    crate::demo::start_in_thread(&dir)?;
    let url = format!("http://{listen}/");
    println!("meshd                {url}  Shannon supplier endpoint for");
    for (i, k) in keys.suppliers.iter().enumerate() {
        println!("                       supplier {} {}", i + 1, k.address());
    }

    // The session the full node reports now, and the app's ring (app + delegated gateway, §2.1).
    let (session_id, start, end) = node.session_at(keys.app.address(), SERVICE, node.height());
    let header = SessionHeader {
        application_address: keys.app.address().into(),
        service_id: SERVICE.into(),
        session_id,
        session_start_block_height: start,
        session_end_block_height: end,
    };
    let members = ring_addresses(keys.app.address(), &[keys.gateway.address().to_string()], &[], 0);
    let pubkeys: HashMap<&str, [u8; 33]> = [(keys.app.address(), *keys.app.pubkey()), (keys.gateway.address(), *keys.gateway.pubkey())].into_iter().collect();
    let ring = ring_pubkeys(&members, |a| pubkeys.get(a).copied()).ok_or("ring: a member has no public key")?;
    println!("application          {}  (session {}, blocks {start}..={end}, height {})", keys.app.address(), short(&header.session_id, 16), node.height());
    println!("gateway              {}  (delegated by the app: signs the relays with the app's ring)\n", keys.gateway.address());

    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(20))).build().into();
    let post = |body: &[u8]| -> Result<(u16, Vec<u8>), String> {
        let mut response =
            agent.post(&url).header("Content-Type", "application/json").header("Rpc-Type", "3").send(body).map_err(|e| format!("POST {url}: {e}"))?;
        let bytes = response.body_mut().read_to_vec().map_err(|e| e.to_string())?;
        Ok((response.status().as_u16(), bytes))
    };

    let since_ms = redis_time_ms(&redis.url)?;
    let mut verified = 0;
    let mut sent: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    let mut first = None;
    for i in 0..relays {
        let supplier = &keys.suppliers[i % SUPPLIERS];
        let body = format!(r#"{{"jsonrpc":"2.0","id":{},"method":"eth_blockNumber","params":[]}}"#, i + 1);
        let payload = POKTHTTPRequest::new("POST", "http://gateway.invalid/", [("Content-Type", "application/json")], body.into_bytes());
        let request = build_relay_request(&header, supplier.address(), &keys.gateway, &ring, &payload, &mut fill)
            .map_err(|e| format!("building relay {}: {e}", i + 1))?;
        if i == 0 {
            println!("{}", describe_request(&url, &request, ring.len())?);
        }
        let (status, answer) = post(&request)?;
        let line = match check_relay_response(&answer, supplier.pubkey()) {
            Ok(backend) if status == 200 => {
                verified += 1;
                let relay = Relay {
                    req: Some(RelayRequest::decode(&request).map_err(|e| e.to_string())?),
                    res: Some(RelayResponse::decode(&answer).map_err(|e| e.to_string())?),
                };
                sent.insert(relay.hash(), i + 1);
                format!(
                    "signature verified (supplier {})  backend {} {}",
                    i % SUPPLIERS + 1,
                    backend.status_code,
                    String::from_utf8_lossy(&backend.body).trim()
                )
            }
            Ok(_) => format!("signed answer with HTTP {status}: not counted"),
            Err(e) => format!("NOT VERIFIED: {e}"),
        };
        println!("relay {:>3}  HTTP {status}  {line}", i + 1);
        first.get_or_insert(request);
    }

    // A replay of relay 1: the same signed request twice is refused (and never mined twice).
    let mut replay_refused = true;
    if let Some(request) = &first {
        let (status, answer) = post(request)?;
        let reason =
            RelayResponse::decode(&answer).ok().and_then(|r| r.relay_miner_error).map(|e| format!("{}: {}", e.codespace, e.description)).unwrap_or_default();
        replay_refused = status != 200;
        println!("replay of relay 1  HTTP {status}  {reason}");
    }

    // The hand-off adds each mined relay to its supplier's stream (§5); wait, bounded.
    let streams: Vec<String> = keys.suppliers.iter().map(|k| format!("{STREAM_PREFIX}:{}", k.address())).collect();
    let deadline = Instant::now() + Duration::from_secs(20) + Duration::from_millis(relays as u64 * 10);
    let ours = loop {
        let mut ours = Vec::new();
        for stream in &streams {
            for (id, m) in read_stream(&redis.url, stream, since_ms)? {
                if <[u8; 32]>::try_from(m.relay_hash.as_slice()).is_ok_and(|h| sent.contains_key(&h)) {
                    ours.push((stream.clone(), id, m));
                }
            }
        }
        if ours.len() >= sent.len() || Instant::now() > deadline {
            break ours;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("\nmined relays in the supplier streams (XRANGE, each `data` decoded as a MinedRelayMessage):");
    for (stream, id, m) in ours.iter().take(SHOWN_ENTRIES) {
        let relay_no = <[u8; 32]>::try_from(m.relay_hash.as_slice()).ok().and_then(|h| sent.get(&h).copied()).unwrap_or(0);
        println!(
            "  {stream}  {id}  relay {relay_no}: relay_hash {}  session {} (blocks {}..={})  CUPR {}  arrival height {}  {} relay bytes",
            short(&hex::encode(&m.relay_hash), 16),
            short(&m.session_id, 16),
            m.session_start_height,
            m.session_end_height,
            m.compute_units_per_relay,
            m.arrival_block_height,
            m.relay_bytes.len()
        );
    }
    if ours.len() > SHOWN_ENTRIES {
        println!("  … and {} more", ours.len() - SHOWN_ENTRIES);
    }
    let distinct: std::collections::BTreeSet<&[u8]> = ours.iter().map(|(_, _, m)| m.relay_hash.as_slice()).collect();
    let cupr_ok = ours.iter().all(|(_, _, m)| m.compute_units_per_relay == CUPR && m.session_id == header.session_id);

    let target = RedisTarget::parse(&redis.url)?;
    // Never the password itself (docs/deploy.md "What never leaves meshd").
    let cli = format!(
        "redis-cli -h {} -p {}{}{}",
        target.host,
        target.port,
        if target.db != 0 { format!(" -n {}", target.db) } else { String::new() },
        if target.password.is_some() { " -a <password of --redis>" } else { "" }
    );
    println!("\na miner reads them as pocket-relay-miner does (consumer group {CONSUMER_GROUP}, shannon-relay.md §5):");
    for stream in &streams {
        println!("  {cli} XGROUP CREATE {stream} {CONSUMER_GROUP} 0 MKSTREAM");
    }
    println!("  {cli} XREADGROUP GROUP {CONSUMER_GROUP} miner-1 COUNT 100 STREAMS {} {}", streams.join(" "), vec!["'>'"; streams.len()].join(" "));
    if let Some((stream, id, _)) = ours.first() {
        println!("  {cli} XACKDEL {stream} {CONSUMER_GROUP} DELREF IDS 1 {id}   (after inserting it; Redis >= 8.2)");
    }
    if redis.origin.starts_with("started") {
        println!("  (this demo's redis-server stops with the demo; run your own Redis and pass --redis to keep the streams)");
    }

    println!();
    println!("served and signed     {verified}/{relays}  (supplier signatures verified)");
    println!("in the streams        {}/{relays}  (each once: {})", distinct.len(), distinct.len() == ours.len());
    println!("replay refused        {replay_refused}");
    let ok = verified == relays && distinct.len() == relays && ours.len() == relays && cupr_ok && replay_refused;
    println!("{}", if ok { "demo OK" } else { "demo FAILED" });
    drop(node);
    drop(backend);
    drop(redis);
    Ok(if ok { 0 } else { 1 })
}
