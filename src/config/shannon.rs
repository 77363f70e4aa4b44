//! The optional `shannon` object of `config.json`: the Shannon supplier edge (src/supplier/,
//! README "Shannon supplier at the edge"). Parsed from the same file as the flat settings, with
//! errors naming `shannon.KEY`; absent (or `null`) means Shannon mode is off. The supplier
//! keys live in their own file (`supplier_keys_file`, [`load_supplier_keys`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Map, Value};

use super::spacemesh::{positive, redact, socket_addr, url_list};
use super::ConfigError;
use crate::shannon::keys::OperatorKey;

/// The top-level key this module owns (`Settings` skips it).
pub const KEY: &str = "shannon";

/// Largest supplier keys file read (500 keys are ~35 KB).
pub const KEYS_FILE_LIMIT: u64 = 4 << 20;

/// Backend URLs of one service, tried in order (the next on a transport error). `Rpc-Type`
/// (shannon-relay.md §1.3: 3 JSON_RPC, 4 REST, 5 COMET_BFT) picks a specific list when one is
/// configured, else `urls`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceBackends {
    pub urls: Vec<String>,
    pub by_rpc_type: BTreeMap<u8, Vec<String>>,
}

impl ServiceBackends {
    /// The URLs a relay of this `Rpc-Type` goes to.
    pub fn for_rpc_type(&self, rpc_type: Option<u8>) -> &[String] {
        rpc_type.and_then(|t| self.by_rpc_type.get(&t)).unwrap_or(&self.urls)
    }
}

/// `Rpc-Type` numbers of the per-type URL lists (`proto/pocket/shared/service.proto`).
const RPC_TYPE_KEYS: [(&str, u8); 3] = [("json_rpc_urls", 3), ("rest_urls", 4), ("comet_bft_urls", 5)];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShannonSettings {
    /// The supplier's staked endpoint: where gateways send relays (any path, any method).
    pub listen: SocketAddr,
    /// JSON array of hex secp256k1 operator keys (relative to the data dir).
    pub supplier_keys_file: String,
    /// Full-node REST (grpc-gateway) base URLs, in preference order, with failover.
    pub full_nodes: Vec<String>,
    /// service id → backend URLs.
    pub services: BTreeMap<String, ServiceBackends>,
    /// Where mined relays are handed to the central miner: `redis://[:password@]host:port[/db]`.
    pub redis_url: String,
    /// Streams are `{stream_prefix}:{supplier operator address}` (pocket-relay-miner's default
    /// `ha:relays`, shannon-relay.md §5).
    pub stream_prefix: String,
    /// Seconds a relay hash is remembered in Redis so a replayed hand-off never adds it twice.
    pub dedup_ttl: u64,
    /// Milliseconds between polls of the current block height.
    pub height_poll_interval: u64,
    /// Milliseconds per full-node query (all URLs together).
    pub fullnode_timeout: u64,
    /// Milliseconds per backend call.
    pub backend_timeout: u64,
    /// Largest relay request body accepted (poktroll's default `1MB`, §1.3).
    pub max_body_bytes: u64,
    /// Milliseconds: cap of the exponential backoff between hand-off attempts.
    pub handoff_retry_wait_max: u64,
    /// Add `Pocket-Supplier`, `Pocket-Service`, … headers to backend calls (§1.4).
    pub forward_pocket_headers: bool,
}

impl Default for ShannonSettings {
    fn default() -> ShannonSettings {
        ShannonSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8548)),
            supplier_keys_file: "supplier_keys.json".into(),
            full_nodes: Vec::new(),
            services: BTreeMap::new(),
            redis_url: "redis://127.0.0.1:6379".into(),
            stream_prefix: "ha:relays".into(),
            dedup_ttl: 24 * 3600,
            height_poll_interval: 1000,
            fullnode_timeout: 5000,
            backend_timeout: 10_000,
            max_body_bytes: 1 << 20,
            handoff_retry_wait_max: 30_000,
            forward_pocket_headers: false,
        }
    }
}

const KEYS: [&str; 13] = [
    "listen",
    "supplier_keys_file",
    "full_nodes",
    "services",
    "redis_url",
    "stream_prefix",
    "dedup_ttl",
    "height_poll_interval",
    "fullnode_timeout",
    "backend_timeout",
    "max_body_bytes",
    "handoff_retry_wait_max",
    "forward_pocket_headers",
];

/// Parse the `shannon` object out of the whole config text. `Ok(None)` when absent.
pub fn from_json(text: &str, file: &Path) -> Result<Option<ShannonSettings>, ConfigError> {
    let Value::Object(top) = super::parse_json(text, file)? else {
        return Err(ConfigError::file(file, "expected a JSON object of settings"));
    };
    match top.get(KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => parse(map, file).map(Some),
        Some(other) => Err(ConfigError::at(file, KEY, format!("expected an object, got {}", super::show_value(other)))),
    }
}

fn parse(map: &Map<String, Value>, file: &Path) -> Result<ShannonSettings, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::at(file, format!("{KEY}.{key}"), msg);
    let mut s = ShannonSettings::default();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let got = super::show_value(value);
        let ms = |v: &Value| positive(v, "milliseconds").map_err(|m| err(key, format!("{m}, got {got}")));
        match key.as_str() {
            "listen" => s.listen = socket_addr(value).map_err(|m| err(key, format!("{m}, got {got}")))?,
            "supplier_keys_file" => s.supplier_keys_file = non_empty_str(value).ok_or_else(|| err(key, format!("expected a file name, got {got}")))?,
            "full_nodes" => s.full_nodes = url_list(value, file, &format!("{KEY}.full_nodes"))?,
            "services" => s.services = services(value, file)?,
            "redis_url" => {
                let url = non_empty_str(value).ok_or_else(|| err(key, format!("expected \"redis://host:port\", got {got}")))?;
                check_redis_url(&url).map_err(|m| err(key, format!("{m}, got {:?}", redact(&url))))?;
                s.redis_url = url;
            }
            "stream_prefix" => match non_empty_str(value) {
                Some(p) if !p.chars().any(|c| c.is_whitespace() || c.is_control()) => s.stream_prefix = p,
                _ => return Err(err(key, format!("expected a prefix without spaces such as \"ha:relays\", got {got}"))),
            },
            "dedup_ttl" => s.dedup_ttl = positive(value, "seconds").map_err(|m| err(key, format!("{m}, got {got}")))?,
            "height_poll_interval" => s.height_poll_interval = ms(value)?,
            "fullnode_timeout" => s.fullnode_timeout = ms(value)?,
            "backend_timeout" => s.backend_timeout = ms(value)?,
            "handoff_retry_wait_max" => s.handoff_retry_wait_max = ms(value)?,
            "max_body_bytes" => match value.as_u64() {
                Some(n) if (1024..=64 << 20).contains(&n) => s.max_body_bytes = n,
                _ => return Err(err(key, format!("expected bytes between 1024 and {}, got {got}", 64 << 20))),
            },
            "forward_pocket_headers" => s.forward_pocket_headers = value.as_bool().ok_or_else(|| err(key, format!("expected true or false, got {got}")))?,
            _ => {
                let e = super::unknown_key(file, key, &KEYS);
                return Err(ConfigError::at(file, format!("{KEY}.{key}"), e.message));
            }
        }
    }
    if s.full_nodes.is_empty() {
        return Err(err("full_nodes", "lists no full node; sessions and rings are read from at least one REST URL such as \"http://127.0.0.1:1317\"".into()));
    }
    if s.services.is_empty() {
        return Err(err("services", "lists no service; e.g. {\"anvil\": {\"urls\": [\"http://127.0.0.1:8545\"]}}".into()));
    }
    Ok(s)
}

fn non_empty_str(value: &Value) -> Option<String> {
    value.as_str().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string)
}

/// `services`: `{"<service id>": {"urls": [...], "rest_urls": [...], …}}` or `{"<id>": "http://…"}`.
fn services(value: &Value, file: &Path) -> Result<BTreeMap<String, ServiceBackends>, ConfigError> {
    let Value::Object(map) = value else {
        return Err(ConfigError::at(file, format!("{KEY}.services"), format!("expected an object of service id → backends, got {}", super::show_value(value))));
    };
    let mut out = BTreeMap::new();
    for (id, entry) in map {
        let at = format!("{KEY}.services.{id}");
        if !crate::shannon::session::is_service_id(id) {
            return Err(ConfigError::at(file, at, "not a service id: 1 to 42 of a-z, A-Z, 0-9, _ and -"));
        }
        let backends = match entry {
            Value::String(_) => ServiceBackends { urls: url_list(&Value::Array(vec![entry.clone()]), file, &at)?, by_rpc_type: BTreeMap::new() },
            Value::Object(fields) => {
                let mut b = ServiceBackends::default();
                for (k, v) in fields {
                    let field_at = format!("{at}.{k}");
                    if k == "urls" {
                        b.urls = url_list(v, file, &field_at)?;
                    } else if let Some((_, t)) = RPC_TYPE_KEYS.iter().find(|(name, _)| name == k) {
                        b.by_rpc_type.insert(*t, url_list(v, file, &field_at)?);
                    } else {
                        let known: Vec<&str> = std::iter::once("urls").chain(RPC_TYPE_KEYS.iter().map(|(n, _)| *n)).collect();
                        return Err(ConfigError::at(file, field_at, super::unknown_key(file, k, &known).message));
                    }
                }
                if b.urls.is_empty() {
                    return Err(ConfigError::at(file, format!("{at}.urls"), "lists no backend URL (the default for every Rpc-Type)"));
                }
                b
            }
            other => return Err(ConfigError::at(file, at, format!("expected {{\"urls\": [...]}} or a URL, got {}", super::show_value(other)))),
        };
        out.insert(id.clone(), backends);
    }
    Ok(out)
}

/// `redis://[user][:password@]host:port[/db]` (no TLS: a remote Redis belongs behind a tunnel).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    crate::supplier::resp::RedisTarget::parse(url).map(|_| ())
}

/// Parse a supplier keys file: a JSON array of 64-hex-digit secp256k1 operator keys. Errors
/// name the file and entry, never the key. Duplicate keys are refused.
pub fn load_supplier_keys(path: &Path) -> Result<Vec<OperatorKey>, ConfigError> {
    let text = super::read_text(path, KEYS_FILE_LIMIT)?;
    parse_supplier_keys(&text, path)
}

pub fn parse_supplier_keys(text: &str, path: &Path) -> Result<Vec<OperatorKey>, ConfigError> {
    let Value::Array(items) = super::parse_json(text, path)? else {
        return Err(ConfigError::file(path, "expected a JSON array of hex secp256k1 keys, e.g. [\"<64 hex digits>\"]"));
    };
    let mut keys: Vec<OperatorKey> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(hex) = item.as_str() else {
            return Err(ConfigError::at(path, format!("[{i}]"), "expected a hex key string"));
        };
        let key = OperatorKey::from_hex(hex.trim()).map_err(|e| ConfigError::at(path, format!("[{i}]"), format!("not a secp256k1 operator key: {e}")))?;
        if let Some(j) = keys.iter().position(|k| k.address() == key.address()) {
            return Err(ConfigError::at(path, format!("[{i}]"), format!("duplicate of [{j}] ({})", key.address())));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(ConfigError::file(path, "lists no supplier key"));
    }
    Ok(keys)
}

impl ShannonSettings {
    /// Lines for `meshd check-config`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "shannon supplier edge: {} → {} services; keys {}", self.listen, self.services.len(), self.supplier_keys_file);
        for (i, n) in self.full_nodes.iter().enumerate() {
            let _ = writeln!(out, "  full node[{i}]: {}", redact(n));
        }
        for (id, b) in &self.services {
            let urls: Vec<String> = b.urls.iter().map(|u| redact(u)).collect();
            let _ = writeln!(out, "  service {id}: {}", urls.join(", "));
        }
        let _ = writeln!(out, "  hand-off: {} streams {}:<supplier>", redact(&self.redis_url), self.stream_prefix);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Option<ShannonSettings>, ConfigError> {
        from_json(text, Path::new("/d/config.json"))
    }

    #[test]
    fn a_minimal_object_gets_defaults_and_urls_are_normalised() {
        let s = parse_text(r#"{"shannon": {"full_nodes": ["http://127.0.0.1:1317/"], "services": {"anvil": "http://127.0.0.1:8545"}}}"#).unwrap().unwrap();
        assert_eq!(s.full_nodes, vec!["http://127.0.0.1:1317"]);
        assert_eq!(s.services["anvil"].urls, vec!["http://127.0.0.1:8545"]);
        assert_eq!(s.stream_prefix, "ha:relays");
        assert_eq!(s.listen.port(), 8548);
        assert!(parse_text("{}").unwrap().is_none());
    }

    #[test]
    fn rpc_type_lists_route_and_fall_back_to_urls() {
        let s = parse_text(r#"{"shannon": {"full_nodes": ["http://a:1"], "services": {"eth": {"urls": ["http://b:2"], "rest_urls": ["http://c:3"]}}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(s.services["eth"].for_rpc_type(Some(4)), ["http://c:3"]);
        assert_eq!(s.services["eth"].for_rpc_type(Some(3)), ["http://b:2"]);
        assert_eq!(s.services["eth"].for_rpc_type(None), ["http://b:2"]);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse_text(r#"{"shannon": {"full_nodes": [], "services": {"a": "http://b:1"}}}"#).unwrap_err();
        assert!(e.to_string().contains("shannon.full_nodes"), "{e}");
        let e = parse_text(r#"{"shannon": {"full_nodes": ["http://a:1"], "services": {"a": {"urls": ["http://b:1"], "grpc_urls": []}}}}"#).unwrap_err();
        assert!(e.to_string().contains("shannon.services.a.grpc_urls"), "{e}");
        let e = parse_text(r#"{"shannon": {"full_nodes": ["http://a:1"], "services": {"bad id!": "http://b:1"}}}"#).unwrap_err();
        assert!(e.to_string().contains("shannon.services.bad id!"), "{e}");
        let e = parse_text(r#"{"shannon": {"full_nodes": ["http://a:1"], "services": {"a": "http://b:1"}, "redis_url": "http://x"}}"#).unwrap_err();
        assert!(e.to_string().contains("shannon.redis_url"), "{e}");
        let e = parse_text(r#"{"shannon": {"full_nodes": ["http://a:1"], "services": {"a": "http://b:1"}, "redis": "x"}}"#).unwrap_err();
        assert!(e.to_string().contains("shannon.redis: unknown key"), "{e}");
    }

    #[test]
    fn supplier_keys_name_the_entry_and_never_the_key() {
        let good = "11".repeat(32);
        let keys = parse_supplier_keys(&format!("[\"{good}\"]"), Path::new("/d/k.json")).unwrap();
        assert!(keys[0].address().starts_with("pokt1"));
        let secret = format!("{}zz", "ab".repeat(31));
        let e = parse_supplier_keys(&format!("[\"{good}\", \"{secret}\"]"), Path::new("/d/k.json")).unwrap_err().to_string();
        assert!(e.contains("/d/k.json") && e.contains("[1]") && !e.contains(&secret), "{e}");
        let e = parse_supplier_keys(&format!("[\"{good}\", \"{good}\"]"), Path::new("/d/k.json")).unwrap_err().to_string();
        assert!(e.contains("duplicate of [0]"), "{e}");
        assert!(parse_supplier_keys("[]", Path::new("/d/k.json")).is_err());
    }
}
