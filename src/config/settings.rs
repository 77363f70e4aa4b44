//! `config.json`: every key of the Geo-Mesh `MeshConfig` (reference geo-mesh §6.2) with the
//! incumbent's code defaults, plus meshd's own keys. Durations are milliseconds unless the
//! field's doc says seconds. Parsing is table-driven over `serde_json::Value` so that every
//! key gets its own error (file + key + expected type) and unknown keys become warnings.

use std::path::Path;

use serde_json::{Map, Value};

use super::ConfigError;

/// Field names are the JSON keys verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Overrides `--datadir` when non-empty (see `config::load`). The incumbent defaults it to the
    /// flag or `~/.pocket`; meshd defaults to "" so the flag always applies unless set here.
    pub data_dir: String,
    pub rpc_port: String,
    /// meshd: interface the relay listener binds (default "0.0.0.0").
    pub listen_address: String,
    pub client_rpc_timeout: u64,
    pub client_rpc_read_timeout: u64,
    pub client_rpc_read_header_timeout: u64,
    pub client_rpc_write_timeout: u64,
    pub client_rpc_max_bytes_size: u64,
    /// Tendermint-style level (`*:info`, `*:error`, or plain `info`); see [`parse_log_level`].
    /// meshd defaults to `*:info`, not the incumbent's `*:error`: operators need the startup
    /// summary and notify/retry messages, which are logged at info.
    pub log_level: String,
    pub log_relay_request: bool,
    pub log_chain_request: bool,
    pub log_chain_response: bool,
    pub user_agent: String,
    pub auth_token_file: String,
    pub json_sort_relay_responses: bool,
    pub chains_name: String,
    pub chains_name_map: String,
    pub remote_chains_name_map: String,
    pub chain_rpc_timeout: u64,
    pub chain_rpc_max_idle_connections: u64,
    pub chain_rpc_max_conns_per_host: u64,
    pub chain_rpc_max_idle_conns_per_host: u64,
    pub chain_drop_connections: bool,
    pub chain_request_path_cleanup: bool,
    pub relay_cache_file: String,
    pub relay_cache_background_sync_interval: u64,
    pub relay_cache_background_compaction_interval: u64,
    /// 0 disables.
    pub keys_hot_reload_interval: u64,
    /// 0 disables.
    pub chains_hot_reload_interval: u64,
    pub servicer_private_key_file: String,
    pub servicer_auth_token_file: String,
    pub servicer_rpc_timeout: u64,
    pub servicer_rpc_max_idle_connections: u64,
    pub servicer_rpc_max_conns_per_host: u64,
    pub servicer_rpc_max_idle_conns_per_host: u64,
    pub servicer_retry_max_times: u64,
    pub servicer_retry_wait_min: u64,
    pub servicer_retry_wait_max: u64,
    pub servicer_worker_strategy: String,
    pub servicer_max_workers: u64,
    pub servicer_max_workers_capacity: u64,
    pub servicer_workers_idle_timeout: u64,
    pub session_storage_worker_strategy: String,
    pub session_storage_max_workers: u64,
    pub session_storage_max_workers_capacity: u64,
    pub session_storage_workers_idle_timeout: u64,
    pub session_storage_validate_retry_max_times: u64,
    /// seconds
    pub node_check_interval: u64,
    /// seconds
    pub session_cache_clean_up_interval: u64,
    pub pocket_prometheus_port: String,
    pub prometheus_max_open_files: u64,
    pub metrics_moniker: String,
    pub metrics_worker_strategy: String,
    pub metrics_max_workers: u64,
    pub metrics_max_workers_capacity: u64,
    pub metrics_workers_idle_timeout: u64,
    pub metrics_attach_servicer_label: bool,
    /// seconds
    pub metrics_report_interval: u64,
    /// meshd: LMDB directory of the durable relay queue (replaces the incumbent's pogreb
    /// `relay_cache_file`, which is accepted and ignored).
    pub relay_queue_dir: String,
    /// meshd: LMDB map size in MiB — the most the queue may ever hold on disk. Virtual address
    /// space only (the file stays sparse), so 64-bit defaults to 4096; 32-bit builds default to
    /// 512 because the map must fit the process's address space.
    pub relay_queue_map_size: u64,
    /// meshd: `sync` (default: a relay is fsynced before it is answered 200) or `async`
    /// (fsync at most every second: a power loss may drop the last second of relays; a
    /// process crash loses nothing).
    pub relay_durability: String,
    /// meshd: most client connections open at once on each client listener (relay, Spacemesh).
    /// At the cap the connection idle longest is closed for a new one; with none idle, new
    /// connections wait in the kernel's backlog (see `http/server.rs`).
    pub client_max_connections: u64,
    /// meshd: interface the Prometheus listener binds (default "127.0.0.1": opening the relay
    /// port to the world does not open the metrics port).
    pub metrics_listen_address: String,
    /// meshd, seconds: while a servicer node's checks fail (e.g. it restarts), relays of
    /// sessions already cached with budget left are still served until its last successful
    /// check is this old; uncached sessions are refused at once. 0 disables.
    pub servicer_outage_grace: u64,
}

/// Default `relay_queue_map_size` in MiB for this build's pointer width.
pub const DEFAULT_QUEUE_MAP_MIB: u64 = if cfg!(target_pointer_width = "64") { 4096 } else { 512 };

impl Default for Settings {
    /// The incumbent's code defaults (`DefaultMeshConfig`, not its docs), except `data_dir` ""
    /// (use the flag), `listen_address` "0.0.0.0" (meshd key) and `log_level` "*:info".
    fn default() -> Settings {
        Settings {
            data_dir: String::new(),
            rpc_port: "8081".into(),
            listen_address: "0.0.0.0".into(),
            client_rpc_timeout: 120_000,
            client_rpc_read_timeout: 60_000,
            client_rpc_read_header_timeout: 50_000,
            client_rpc_write_timeout: 90_000,
            client_rpc_max_bytes_size: 1_048_576,
            log_level: "*:info".into(),
            log_relay_request: false,
            log_chain_request: false,
            log_chain_response: false,
            user_agent: "mesh-node".into(),
            auth_token_file: "auth/mesh.json".into(),
            json_sort_relay_responses: true,
            chains_name: "chains.json".into(),
            chains_name_map: String::new(),
            remote_chains_name_map: String::new(),
            chain_rpc_timeout: 1_200,
            chain_rpc_max_idle_connections: 2_500,
            chain_rpc_max_conns_per_host: 2_500,
            chain_rpc_max_idle_conns_per_host: 2_500,
            chain_drop_connections: false,
            chain_request_path_cleanup: false,
            relay_cache_file: "data/relays.pkt".into(),
            relay_cache_background_sync_interval: 3_600,
            relay_cache_background_compaction_interval: 18_000,
            keys_hot_reload_interval: 180_000,
            chains_hot_reload_interval: 180_000,
            servicer_private_key_file: "key/key.json".into(),
            servicer_auth_token_file: "auth/servicer.json".into(),
            servicer_rpc_timeout: 60_000,
            servicer_rpc_max_idle_connections: 2_500,
            servicer_rpc_max_conns_per_host: 2_500,
            servicer_rpc_max_idle_conns_per_host: 2_500,
            servicer_retry_max_times: 3,
            servicer_retry_wait_min: 10,
            servicer_retry_wait_max: 1_200,
            servicer_worker_strategy: "balanced".into(),
            servicer_max_workers: 50,
            servicer_max_workers_capacity: 50_000,
            servicer_workers_idle_timeout: 10_000,
            session_storage_worker_strategy: "lazy".into(),
            session_storage_max_workers: 5,
            session_storage_max_workers_capacity: 10_000,
            session_storage_workers_idle_timeout: 10_000,
            session_storage_validate_retry_max_times: 10,
            node_check_interval: 10,
            session_cache_clean_up_interval: 1_800,
            pocket_prometheus_port: "8083".into(),
            prometheus_max_open_files: 3,
            metrics_moniker: "geo-mesh-node".into(),
            metrics_worker_strategy: "balanced".into(),
            metrics_max_workers: 50,
            metrics_max_workers_capacity: 50_000,
            metrics_workers_idle_timeout: 10_000,
            metrics_attach_servicer_label: false,
            metrics_report_interval: 10,
            relay_queue_dir: "data/queue".into(),
            relay_queue_map_size: DEFAULT_QUEUE_MAP_MIB,
            relay_durability: "sync".into(),
            client_max_connections: 512,
            metrics_listen_address: "127.0.0.1".into(),
            servicer_outage_grace: 600,
        }
    }
}

/// What a string key must contain.
#[derive(Clone, Copy)]
enum Text {
    /// Anything, including "".
    Any,
    /// A file path; "" makes no sense.
    Path,
    /// A TCP port number as a string, like the incumbent (`"8081"`).
    Port,
    /// An IP address literal to bind.
    Ip,
    /// `balanced`, `eager` or `lazy` (the pond strategies).
    Strategy,
    /// See [`parse_log_level`].
    LogLevel,
    /// "" or an http(s) URL.
    UrlOrEmpty,
    /// `sync` or `async`.
    Durability,
}

/// Unit of an integer key, for error messages and its valid range.
#[derive(Clone, Copy)]
enum Unit {
    Ms,
    Secs,
    Count,
    Bytes,
    /// The LMDB map size in MiB.
    MiB,
}

/// Longest duration any key may hold: 30 days. Durations are added to clocks (`Instant +
/// Duration` panics on overflow) and multiplied (backoff, staleness), so an absurd value such as
/// 2^64-1 ms must be refused at load, not crash `start` later.
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 3600;
/// Largest count (workers, connections, retries, …): fits `usize` on 32-bit boards and leaves
/// room for the additions made on it.
pub const MAX_COUNT: u64 = u32::MAX as u64 >> 1;
/// Largest byte size (`client_rpc_max_bytes_size`): 1 GiB.
pub const MAX_BYTES: u64 = 1 << 30;

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Ms => "milliseconds",
            Unit::Secs => "seconds",
            Unit::Count => "a count",
            Unit::Bytes => "bytes",
            Unit::MiB => "MiB",
        }
    }

    /// Largest accepted value.
    fn max(self) -> u64 {
        match self {
            Unit::Ms => MAX_DURATION_SECS * 1000,
            Unit::Secs => MAX_DURATION_SECS,
            Unit::Count => MAX_COUNT,
            Unit::Bytes => MAX_BYTES,
            Unit::MiB => crate::queue::store::MAX_MAP_MIB,
        }
    }
}

/// Whether an integer key may be 0.
#[derive(Clone, Copy, PartialEq)]
enum Zero {
    /// 0 is meaningful (disables, unlimited, no retries).
    Ok,
    /// 0 would make the daemon useless (a zero timeout, zero workers, a zero-second cron).
    Rejected,
}

type StrRef = fn(&mut Settings) -> &mut String;
type NumRef = fn(&mut Settings) -> &mut u64;
type BoolRef = fn(&mut Settings) -> &mut bool;

enum Kind {
    Str(StrRef, Text),
    Num(NumRef, Unit, Zero),
    Bool(BoolRef),
}

struct Field {
    key: &'static str,
    kind: Kind,
}

macro_rules! str_field {
    ($f:ident, $t:expr) => {
        Field { key: stringify!($f), kind: Kind::Str(|s| &mut s.$f, $t) }
    };
}
macro_rules! num_field {
    ($f:ident, $u:expr, $z:expr) => {
        Field { key: stringify!($f), kind: Kind::Num(|s| &mut s.$f, $u, $z) }
    };
}
macro_rules! bool_field {
    ($f:ident) => {
        Field { key: stringify!($f), kind: Kind::Bool(|s| &mut s.$f) }
    };
}

/// Every accepted key, in the incumbent's order; the key is the field name.
static FIELDS: &[Field] = &[
    str_field!(data_dir, Text::Any),
    str_field!(rpc_port, Text::Port),
    str_field!(listen_address, Text::Ip),
    num_field!(client_rpc_timeout, Unit::Ms, Zero::Rejected),
    num_field!(client_rpc_read_timeout, Unit::Ms, Zero::Rejected),
    num_field!(client_rpc_read_header_timeout, Unit::Ms, Zero::Rejected),
    num_field!(client_rpc_write_timeout, Unit::Ms, Zero::Rejected),
    num_field!(client_rpc_max_bytes_size, Unit::Bytes, Zero::Rejected),
    str_field!(log_level, Text::LogLevel),
    bool_field!(log_relay_request),
    bool_field!(log_chain_request),
    bool_field!(log_chain_response),
    str_field!(user_agent, Text::Any),
    str_field!(auth_token_file, Text::Path),
    bool_field!(json_sort_relay_responses),
    str_field!(chains_name, Text::Path),
    str_field!(chains_name_map, Text::Any),
    str_field!(remote_chains_name_map, Text::UrlOrEmpty),
    num_field!(chain_rpc_timeout, Unit::Ms, Zero::Rejected),
    num_field!(chain_rpc_max_idle_connections, Unit::Count, Zero::Ok),
    num_field!(chain_rpc_max_conns_per_host, Unit::Count, Zero::Ok),
    num_field!(chain_rpc_max_idle_conns_per_host, Unit::Count, Zero::Ok),
    bool_field!(chain_drop_connections),
    bool_field!(chain_request_path_cleanup),
    str_field!(relay_cache_file, Text::Path),
    num_field!(relay_cache_background_sync_interval, Unit::Ms, Zero::Ok),
    num_field!(relay_cache_background_compaction_interval, Unit::Ms, Zero::Ok),
    num_field!(keys_hot_reload_interval, Unit::Ms, Zero::Ok),
    num_field!(chains_hot_reload_interval, Unit::Ms, Zero::Ok),
    str_field!(servicer_private_key_file, Text::Path),
    str_field!(servicer_auth_token_file, Text::Path),
    num_field!(servicer_rpc_timeout, Unit::Ms, Zero::Rejected),
    num_field!(servicer_rpc_max_idle_connections, Unit::Count, Zero::Ok),
    num_field!(servicer_rpc_max_conns_per_host, Unit::Count, Zero::Ok),
    num_field!(servicer_rpc_max_idle_conns_per_host, Unit::Count, Zero::Ok),
    num_field!(servicer_retry_max_times, Unit::Count, Zero::Ok),
    num_field!(servicer_retry_wait_min, Unit::Ms, Zero::Ok),
    num_field!(servicer_retry_wait_max, Unit::Ms, Zero::Ok),
    str_field!(servicer_worker_strategy, Text::Strategy),
    num_field!(servicer_max_workers, Unit::Count, Zero::Rejected),
    num_field!(servicer_max_workers_capacity, Unit::Count, Zero::Ok),
    num_field!(servicer_workers_idle_timeout, Unit::Ms, Zero::Rejected),
    str_field!(session_storage_worker_strategy, Text::Strategy),
    num_field!(session_storage_max_workers, Unit::Count, Zero::Rejected),
    num_field!(session_storage_max_workers_capacity, Unit::Count, Zero::Ok),
    num_field!(session_storage_workers_idle_timeout, Unit::Ms, Zero::Rejected),
    num_field!(session_storage_validate_retry_max_times, Unit::Count, Zero::Ok),
    num_field!(node_check_interval, Unit::Secs, Zero::Rejected),
    num_field!(session_cache_clean_up_interval, Unit::Secs, Zero::Rejected),
    str_field!(pocket_prometheus_port, Text::Port),
    num_field!(prometheus_max_open_files, Unit::Count, Zero::Rejected),
    str_field!(metrics_moniker, Text::Any),
    str_field!(metrics_worker_strategy, Text::Strategy),
    num_field!(metrics_max_workers, Unit::Count, Zero::Rejected),
    num_field!(metrics_max_workers_capacity, Unit::Count, Zero::Ok),
    num_field!(metrics_workers_idle_timeout, Unit::Ms, Zero::Rejected),
    bool_field!(metrics_attach_servicer_label),
    num_field!(metrics_report_interval, Unit::Secs, Zero::Rejected),
    str_field!(relay_queue_dir, Text::Path),
    num_field!(relay_queue_map_size, Unit::MiB, Zero::Rejected),
    str_field!(relay_durability, Text::Durability),
    num_field!(client_max_connections, Unit::Count, Zero::Rejected),
    str_field!(metrics_listen_address, Text::Ip),
    num_field!(servicer_outage_grace, Unit::Secs, Zero::Ok),
];

impl Settings {
    /// Parse `config.json` text. Absent keys keep their default and `null` does too (as Go's
    /// decoder leaves a field untouched on null). Unknown keys are returned as warnings naming
    /// the key and `file`; a wrong type or invalid value is an error naming `file` and the key.
    pub fn from_json(json: &str, file: &Path) -> Result<(Settings, Vec<String>), ConfigError> {
        let value = super::parse_json(json, file)?;
        let Value::Object(map) = value else {
            return Err(ConfigError::file(file, "expected a JSON object of settings"));
        };
        Settings::from_map(&map, file)
    }

    fn from_map(map: &Map<String, Value>, file: &Path) -> Result<(Settings, Vec<String>), ConfigError> {
        let mut settings = Settings::default();
        let warnings = Vec::new();
        for (key, value) in map {
            if key == super::spacemesh::KEY || key == super::shannon::KEY {
                continue; // nested objects, parsed by config/spacemesh.rs and config/shannon.rs
            }
            let Some(field) = FIELDS.iter().find(|f| f.key == key) else {
                let mut known: Vec<&str> = Settings::known_keys().collect();
                known.push(super::spacemesh::KEY);
                known.push(super::shannon::KEY);
                return Err(super::unknown_key(file, key, &known));
            };
            if value.is_null() {
                continue;
            }
            apply(&mut settings, field, value).map_err(|m| ConfigError::at(file, key.as_str(), m))?;
        }
        settings.check_cross(file)?;
        Ok((settings, warnings))
    }

    /// Constraints between keys.
    fn check_cross(&self, file: &Path) -> Result<(), ConfigError> {
        if self.servicer_retry_wait_max < self.servicer_retry_wait_min {
            return Err(ConfigError::at(
                file,
                "servicer_retry_wait_max",
                format!("must be at least servicer_retry_wait_min ({} ms), got {}", self.servicer_retry_wait_min, self.servicer_retry_wait_max),
            ));
        }
        if self.rpc_port == self.pocket_prometheus_port && self.rpc_port != "0" {
            return Err(ConfigError::at(
                file,
                "pocket_prometheus_port",
                format!("must differ from rpc_port ({}): both listeners cannot bind one port", self.rpc_port),
            ));
        }
        Ok(())
    }

    /// All settings as a JSON object with the same keys `from_json` accepts (for `check-config
    /// --print` style output and tests). Contains no secrets: tokens and keys live in other files.
    pub fn to_json(&self) -> Value {
        let mut copy = self.clone();
        let mut map = Map::new();
        for f in FIELDS {
            let v = match f.kind {
                Kind::Str(get, _) => Value::String(get(&mut copy).clone()),
                Kind::Num(get, _, _) => Value::from(*get(&mut copy)),
                Kind::Bool(get) => Value::Bool(*get(&mut copy)),
            };
            map.insert(f.key.to_string(), v);
        }
        Value::Object(map)
    }

    /// `listen_address:rpc_port` as a socket address (None only if the fields were set by hand to
    /// values `from_json` would reject).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        let ip: std::net::IpAddr = self.listen_address.parse().ok()?;
        let port: u16 = self.rpc_port.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, port))
    }

    /// Every key `from_json` accepts.
    pub fn known_keys() -> impl Iterator<Item = &'static str> {
        FIELDS.iter().map(|f| f.key)
    }
}

/// Store one JSON value into its field, or say what was expected.
fn apply(settings: &mut Settings, field: &Field, value: &Value) -> Result<(), String> {
    let got = super::show_value(value);
    match field.kind {
        Kind::Bool(get) => match value {
            Value::Bool(b) => *get(settings) = *b,
            _ => return Err(format!("expected true or false, got {got}")),
        },
        Kind::Num(get, unit, zero) => {
            let Some(n) = value.as_u64() else {
                return Err(format!("expected a non-negative integer ({}), got {got}", unit.name()));
            };
            if n == 0 && zero == Zero::Rejected {
                return Err(format!("must be greater than 0 ({}), got 0", unit.name()));
            }
            if n > unit.max() {
                let min = if zero == Zero::Rejected { 1 } else { 0 };
                return Err(format!("out of range: valid is {min} to {} ({}), got {n}", unit.max(), unit.name()));
            }
            *get(settings) = n;
        }
        Kind::Str(get, text) => {
            let Value::String(s) = value else {
                let what = match text {
                    Text::Port => "a port number as a string, e.g. \"8081\"",
                    Text::Ip => "an IP address string, e.g. \"127.0.0.1\"",
                    Text::Strategy => "a string: \"balanced\", \"eager\" or \"lazy\"",
                    Text::LogLevel => "a log level string, e.g. \"*:info\"",
                    Text::Path => "a file path string",
                    Text::UrlOrEmpty => "a URL string or \"\"",
                    Text::Durability => "a string: \"sync\" or \"async\"",
                    Text::Any => "a string",
                };
                return Err(format!("expected {what}, got {got}"));
            };
            check_text(text, s).map_err(|m| format!("{m}, got {got}"))?;
            *get(settings) = s.clone();
        }
    }
    Ok(())
}

fn check_text(text: Text, s: &str) -> Result<(), String> {
    match text {
        Text::Any => Ok(()),
        Text::Path if s.is_empty() => Err("expected a non-empty file path".into()),
        Text::Path => Ok(()),
        Text::Port => s.parse::<u16>().map(|_| ()).map_err(|_| "expected a port number 0-65535 as a string".into()),
        Text::Ip => s.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| "expected an IP address such as \"0.0.0.0\" or \"127.0.0.1\"".into()),
        Text::Strategy => match s {
            "balanced" | "eager" | "lazy" => Ok(()),
            _ => Err("expected \"balanced\", \"eager\" or \"lazy\"".into()),
        },
        Text::LogLevel => parse_log_level(s).map(|_| ()),
        Text::UrlOrEmpty if s.is_empty() => Ok(()),
        Text::UrlOrEmpty => super::check_http_url(s).map(|_| ()),
        Text::Durability => match s {
            "sync" | "async" => Ok(()),
            _ => Err("expected \"sync\" or \"async\"".into()),
        },
    }
}

/// Parse the incumbent's Tendermint-style level: `*:info`, `*:error`, `*:debug`, `*:none`, a
/// plain level (`info`), or a list such as `main:info,state:info,*:error`. meshd has no
/// per-module filters, so module entries are checked but only the `*` (or bare) entry counts;
/// a list with no such entry is an error rather than a silent guess. Case-insensitive; also
/// accepts `warn`/`warning`, `trace` and `off` (= `none`).
pub fn parse_log_level(s: &str) -> Result<log::LevelFilter, String> {
    fn level(word: &str) -> Option<log::LevelFilter> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => log::LevelFilter::Off,
            "error" => log::LevelFilter::Error,
            "warn" | "warning" => log::LevelFilter::Warn,
            "info" => log::LevelFilter::Info,
            "debug" => log::LevelFilter::Debug,
            "trace" => log::LevelFilter::Trace,
            _ => return None,
        })
    }
    const EXPECTED: &str = "expected a log level like \"*:info\" (levels: none, error, warn, info, debug, trace)";
    let mut global = None;
    for item in s.split(',') {
        let (module, word) = match item.split_once(':') {
            Some((m, w)) => (m.trim(), w),
            None => ("*", item),
        };
        let l = level(word).ok_or_else(|| EXPECTED.to_string())?;
        if module.is_empty() {
            return Err(EXPECTED.to_string());
        }
        if module == "*" {
            global = Some(l);
        }
    }
    global.ok_or_else(|| format!("{EXPECTED}; module-only lists need a \"*:LEVEL\" entry"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file() -> PathBuf {
        PathBuf::from("/dd/config.json")
    }

    fn parse(json: &str) -> Result<(Settings, Vec<String>), ConfigError> {
        Settings::from_json(json, &file())
    }

    fn err(json: &str) -> ConfigError {
        parse(json).expect_err(json)
    }

    #[test]
    fn defaults_match_incumbent_code_table() {
        let d = Settings::default();
        assert_eq!(d.data_dir, "");
        assert_eq!(d.rpc_port, "8081");
        assert_eq!(d.listen_address, "0.0.0.0");
        assert_eq!(
            (d.client_rpc_timeout, d.client_rpc_read_timeout, d.client_rpc_read_header_timeout, d.client_rpc_write_timeout),
            (120_000, 60_000, 50_000, 90_000)
        );
        assert_eq!(d.client_rpc_max_bytes_size, 1_048_576);
        assert_eq!(d.log_level, "*:info");
        assert_eq!(d.user_agent, "mesh-node");
        assert_eq!(d.auth_token_file, "auth/mesh.json");
        assert!(d.json_sort_relay_responses);
        assert_eq!(d.chains_name, "chains.json");
        assert_eq!(d.chain_rpc_timeout, 1_200, "code default, not the doc's 30000");
        assert_eq!(d.relay_cache_file, "data/relays.pkt");
        assert_eq!(d.keys_hot_reload_interval, 180_000);
        assert_eq!(d.servicer_private_key_file, "key/key.json");
        assert_eq!(d.servicer_auth_token_file, "auth/servicer.json");
        assert_eq!(d.servicer_rpc_timeout, 60_000);
        assert_eq!((d.servicer_retry_max_times, d.servicer_retry_wait_min, d.servicer_retry_wait_max), (3, 10, 1_200));
        assert_eq!(d.session_storage_worker_strategy, "lazy");
        assert_eq!(d.session_storage_max_workers, 5);
        assert_eq!(d.node_check_interval, 10, "code default, not the doc's 60");
        assert_eq!(d.session_cache_clean_up_interval, 1_800);
        assert_eq!((d.pocket_prometheus_port.as_str(), d.prometheus_max_open_files), ("8083", 3));
        assert_eq!(d.metrics_moniker, "geo-mesh-node");
        assert_eq!(d.metrics_worker_strategy, "balanced");
        assert_eq!(d.metrics_report_interval, 10);
        assert!(!d.metrics_attach_servicer_label && !d.log_relay_request && !d.chain_drop_connections);
    }

    #[test]
    fn empty_object_gives_defaults_without_warnings() {
        let (s, w) = parse("{}").unwrap();
        assert_eq!(s, Settings::default());
        assert!(w.is_empty());
    }

    /// Every key of the incumbent's `MeshConfig` (reference §6.2) plus meshd's `listen_address`.
    const SPEC_KEYS: &[&str] = &[
        "data_dir",
        "rpc_port",
        "listen_address",
        "client_rpc_timeout",
        "client_rpc_read_timeout",
        "client_rpc_read_header_timeout",
        "client_rpc_write_timeout",
        "client_rpc_max_bytes_size",
        "log_level",
        "log_relay_request",
        "log_chain_request",
        "log_chain_response",
        "user_agent",
        "auth_token_file",
        "json_sort_relay_responses",
        "chains_name",
        "chains_name_map",
        "remote_chains_name_map",
        "chain_rpc_timeout",
        "chain_rpc_max_idle_connections",
        "chain_rpc_max_conns_per_host",
        "chain_rpc_max_idle_conns_per_host",
        "chain_drop_connections",
        "chain_request_path_cleanup",
        "relay_cache_file",
        "relay_cache_background_sync_interval",
        "relay_cache_background_compaction_interval",
        "keys_hot_reload_interval",
        "chains_hot_reload_interval",
        "servicer_private_key_file",
        "servicer_auth_token_file",
        "servicer_rpc_timeout",
        "servicer_rpc_max_idle_connections",
        "servicer_rpc_max_conns_per_host",
        "servicer_rpc_max_idle_conns_per_host",
        "servicer_retry_max_times",
        "servicer_retry_wait_min",
        "servicer_retry_wait_max",
        "servicer_worker_strategy",
        "servicer_max_workers",
        "servicer_max_workers_capacity",
        "servicer_workers_idle_timeout",
        "session_storage_worker_strategy",
        "session_storage_max_workers",
        "session_storage_max_workers_capacity",
        "session_storage_workers_idle_timeout",
        "session_storage_validate_retry_max_times",
        "node_check_interval",
        "session_cache_clean_up_interval",
        "pocket_prometheus_port",
        "prometheus_max_open_files",
        "metrics_moniker",
        "metrics_worker_strategy",
        "metrics_max_workers",
        "metrics_max_workers_capacity",
        "metrics_workers_idle_timeout",
        "metrics_attach_servicer_label",
        "metrics_report_interval",
        "relay_queue_dir",
        "relay_queue_map_size",
        "relay_durability",
        "client_max_connections",
        "metrics_listen_address",
        "servicer_outage_grace",
    ];

    #[test]
    fn every_spec_key_is_accepted_and_round_trips() {
        let known: Vec<&str> = Settings::known_keys().collect();
        let mut sorted_known = known.clone();
        sorted_known.sort_unstable();
        let mut sorted_spec = SPEC_KEYS.to_vec();
        sorted_spec.sort_unstable();
        assert_eq!(sorted_known, sorted_spec);

        // Non-default values everywhere, written with every key, parse back identically.
        let custom = Settings {
            data_dir: "/srv/mesh".into(),
            rpc_port: "9081".into(),
            listen_address: "127.0.0.1".into(),
            client_rpc_timeout: 1,
            log_level: "*:debug".into(),
            log_chain_response: true,
            json_sort_relay_responses: false,
            remote_chains_name_map: "https://127.0.0.1:9/map.json".into(),
            chain_rpc_timeout: 30_000,
            servicer_worker_strategy: "eager".into(),
            metrics_report_interval: 99,
            client_max_connections: 64,
            metrics_listen_address: "::1".into(),
            servicer_outage_grace: 0,
            ..Settings::default()
        };
        let json = custom.to_json();
        assert_eq!(json.as_object().unwrap().len(), SPEC_KEYS.len());
        let (back, warnings) = parse(&json.to_string()).unwrap();
        assert_eq!(back, custom);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn values_are_read() {
        let (s, _) = parse(
            r#"{"rpc_port":"8090","chain_rpc_timeout":30000,"log_relay_request":true,
                "metrics_worker_strategy":"lazy","listen_address":"::1","user_agent":""}"#,
        )
        .unwrap();
        assert_eq!(s.rpc_port, "8090");
        assert_eq!(s.chain_rpc_timeout, 30_000);
        assert!(s.log_relay_request);
        assert_eq!(s.metrics_worker_strategy, "lazy");
        assert_eq!(s.listen_addr(), Some("[::1]:8090".parse().unwrap()));
        assert_eq!(s.user_agent, "");
    }

    #[test]
    fn null_keeps_default_like_go() {
        let (s, w) = parse(r#"{"chain_rpc_timeout":null,"rpc_port":null}"#).unwrap();
        assert_eq!(s, Settings::default());
        assert!(w.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_naming_file_key_and_the_closest_key() {
        let e = err(r#"{"chain_rpc_timout":5,"rpc_port":"8082"}"#);
        assert_eq!(e.file, file());
        assert_eq!(e.key.as_deref(), Some("chain_rpc_timout"));
        assert!(e.message.contains("did you mean \"chain_rpc_timeout\""), "{e}");
        let e = err(r#"{"Rpc_Port":"1"}"#);
        assert!(e.to_string().starts_with("/dd/config.json: Rpc_Port: unknown key; did you mean \"rpc_port\"?"), "{e}");
        let e = err(r#"{"spacemes":{}}"#);
        assert!(e.message.contains("did you mean \"spacemesh\""), "{e}");
        let e = err(r#"{"zzzzzzzzzzzzzz":1}"#);
        assert!(!e.message.contains("did you mean"), "{e}");
    }

    #[test]
    fn wrong_types_name_file_key_and_expectation() {
        let e = err(r#"{"chain_rpc_timeout":"abc"}"#);
        assert_eq!(e.file, file());
        assert_eq!(e.key.as_deref(), Some("chain_rpc_timeout"));
        assert_eq!(e.message, "expected a non-negative integer (milliseconds), got \"abc\"");
        assert_eq!(e.to_string(), "/dd/config.json: chain_rpc_timeout: expected a non-negative integer (milliseconds), got \"abc\"");

        for (json, key, needle) in [
            (r#"{"node_check_interval":-1}"#, "node_check_interval", "(seconds), got -1"),
            (r#"{"client_rpc_max_bytes_size":1.5}"#, "client_rpc_max_bytes_size", "(bytes), got 1.5"),
            (r#"{"servicer_max_workers":"5"}"#, "servicer_max_workers", "(a count), got \"5\""),
            (r#"{"log_relay_request":"yes"}"#, "log_relay_request", "expected true or false, got \"yes\""),
            (r#"{"rpc_port":8081}"#, "rpc_port", "expected a port number as a string, e.g. \"8081\", got 8081"),
            (r#"{"user_agent":5}"#, "user_agent", "expected a string, got 5"),
            (r#"{"chains_name":[]}"#, "chains_name", "expected a file path string, got []"),
        ] {
            let e = err(json);
            assert_eq!(e.key.as_deref(), Some(key), "{json}");
            assert!(e.message.contains(needle), "{json}: {}", e.message);
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        for (json, key, needle) in [
            (r#"{"rpc_port":"80801"}"#, "rpc_port", "port number 0-65535"),
            (r#"{"rpc_port":""}"#, "rpc_port", "port number"),
            (r#"{"pocket_prometheus_port":"x"}"#, "pocket_prometheus_port", "port number"),
            (r#"{"listen_address":"localhost"}"#, "listen_address", "IP address"),
            (r#"{"servicer_worker_strategy":"fast"}"#, "servicer_worker_strategy", "\"balanced\", \"eager\" or \"lazy\""),
            (r#"{"session_storage_worker_strategy":"Lazy"}"#, "session_storage_worker_strategy", "\"lazy\""),
            (r#"{"metrics_worker_strategy":""}"#, "metrics_worker_strategy", "\"balanced\""),
            (r#"{"client_rpc_timeout":0}"#, "client_rpc_timeout", "greater than 0 (milliseconds)"),
            (r#"{"chain_rpc_timeout":0}"#, "chain_rpc_timeout", "greater than 0"),
            (r#"{"servicer_rpc_timeout":0}"#, "servicer_rpc_timeout", "greater than 0"),
            (r#"{"client_rpc_max_bytes_size":0}"#, "client_rpc_max_bytes_size", "greater than 0 (bytes)"),
            (r#"{"node_check_interval":0}"#, "node_check_interval", "greater than 0 (seconds)"),
            (r#"{"servicer_max_workers":0}"#, "servicer_max_workers", "greater than 0"),
            (r#"{"log_level":"*:loud"}"#, "log_level", "log level"),
            (r#"{"servicer_private_key_file":""}"#, "servicer_private_key_file", "non-empty file path"),
            (r#"{"remote_chains_name_map":"ftp://x"}"#, "remote_chains_name_map", "http://"),
            (r#"{"servicer_retry_wait_min":500,"servicer_retry_wait_max":100}"#, "servicer_retry_wait_max", "at least"),
            (r#"{"rpc_port":"9000","pocket_prometheus_port":"9000"}"#, "pocket_prometheus_port", "differ"),
        ] {
            let e = err(json);
            assert_eq!(e.file, file());
            assert_eq!(e.key.as_deref(), Some(key), "{json}");
            assert!(e.message.contains(needle), "{json}: {}", e.message);
        }
    }

    #[test]
    fn zero_is_allowed_where_it_means_disabled() {
        let (s, _) = parse(r#"{"keys_hot_reload_interval":0,"chains_hot_reload_interval":0,"servicer_retry_max_times":0,"rpc_port":"0"}"#).unwrap();
        assert_eq!((s.keys_hot_reload_interval, s.chains_hot_reload_interval, s.servicer_retry_max_times), (0, 0, 0));
    }

    #[test]
    fn whole_file_errors() {
        let e = err("[1,2]");
        assert_eq!((e.file, e.key), (file(), None));
        let e = err("{\"rpc_port\": ");
        assert_eq!(e.key, None);
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
    }

    #[test]
    fn log_levels() {
        use log::LevelFilter as L;
        for (s, want) in [
            ("*:info", L::Info),
            ("*:error", L::Error),
            ("*:debug", L::Debug),
            ("*:none", L::Off),
            ("info", L::Info),
            ("ERROR", L::Error),
            ("warn", L::Warn),
            ("trace", L::Trace),
            ("main:info,state:info,*:error", L::Error),
            ("*:debug, p2p:none", L::Debug),
        ] {
            assert_eq!(parse_log_level(s), Ok(want), "{s}");
        }
        for bad in ["", "*:", "loud", "*:loud", "main:info", ":info", "main:bogus,*:info"] {
            assert!(parse_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_start_would_overflow_are_refused_naming_key_and_range() {
        // 2^64-1 ms: `Instant::now() + Duration` panics; 2^44 MiB << 20 wraps to a tiny map;
        // a count near 2^64 overflows `client_max_connections + FD_RESERVE`.
        for (key, value) in [
            ("node_check_interval", u64::MAX),
            ("session_cache_clean_up_interval", u64::MAX / 1000),
            ("keys_hot_reload_interval", u64::MAX),
            ("client_rpc_timeout", 1 << 60),
            ("servicer_retry_wait_max", u64::MAX),
            ("relay_queue_map_size", 1 << 44),
            ("client_max_connections", u64::MAX),
            ("client_rpc_max_bytes_size", 1 << 40),
        ] {
            let e = err(&format!(r#"{{"{key}":{value}}}"#));
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(e.message.contains("out of range: valid is") && e.message.contains(&value.to_string()), "{e}");
        }
        let e = err(r#"{"relay_queue_map_size":17592186044416}"#);
        assert!(e.to_string().contains(&format!("1 to {} (MiB)", crate::queue::store::MAX_MAP_MIB)), "{e}");
        // The largest values are still accepted.
        let (s, _) = parse(&format!(
            r#"{{"node_check_interval":{},"chains_hot_reload_interval":{},"relay_queue_map_size":{}}}"#,
            MAX_DURATION_SECS,
            MAX_DURATION_SECS * 1000,
            crate::queue::store::MAX_MAP_MIB
        ))
        .unwrap();
        assert_eq!(s.node_check_interval, MAX_DURATION_SECS);
        let _ = std::time::Instant::now() + std::time::Duration::from_millis(s.chains_hot_reload_interval);
    }
}
