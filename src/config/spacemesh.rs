//! The optional `spacemesh` object of `config.json`: the Spacemesh node-service gateway
//! (src/spacemesh/). `settings.rs` is table-driven over flat keys, so this nested object is
//! parsed here, from the same file, with errors naming `spacemesh.KEY` or `spacemesh.nodes[i]`.
//! Absent (or `null`) means the gateway is off.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Map, Value};

use super::ConfigError;

/// The top-level key this module owns (`Settings` skips it).
pub const KEY: &str = "spacemesh";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpacemeshSettings {
    /// Where smeshing services point `--node-service-address` (default `127.0.0.1:9099`).
    pub listen: SocketAddr,
    /// Node-service base URLs (`api.node-service-listener` of each full node), in preference order.
    pub nodes: Vec<String>,
    /// Optional listener of the v2 JSON API proxy (smesher-app, tools).
    pub api_listen: Option<SocketAddr>,
    /// JSON API base URLs (`api.grpc-json-listener` of the nodes) behind `api_listen`.
    pub v2_api_nodes: Vec<String>,
    /// Allow-all CORS on every proxied answer; upstream `Access-Control-*` headers are dropped.
    pub json_cors_everywhere: bool,
    /// Seconds between health probes of each node.
    pub health_interval: u64,
    /// Path of the readiness probe (any node-service GET answers 503 until the node is synced).
    pub health_path: String,
    /// Milliseconds one client request may spend across all failover attempts.
    pub request_timeout: u64,
    /// Milliseconds: cap of the exponential backoff between delivery attempts of queued publishes.
    pub publish_retry_wait_max: u64,
    /// Seconds a publish may wait for a synced node before it expires (default 14 days, a
    /// mainnet epoch: an ATX not published within its epoch is worthless).
    pub publish_max_age: u64,
}

impl Default for SpacemeshSettings {
    fn default() -> SpacemeshSettings {
        SpacemeshSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9099)),
            nodes: Vec::new(),
            api_listen: None,
            v2_api_nodes: Vec::new(),
            json_cors_everywhere: false,
            health_interval: 2,
            health_path: "/beacon/0".into(),
            request_timeout: 10_000,
            publish_retry_wait_max: 30_000,
            publish_max_age: 14 * 24 * 3600,
        }
    }
}

/// Parse the `spacemesh` object out of the whole config text. `Ok((None, _))` when absent.
pub fn from_json(text: &str, file: &Path) -> Result<(Option<SpacemeshSettings>, Vec<String>), ConfigError> {
    let Value::Object(top) = super::parse_json(text, file)? else {
        return Err(ConfigError::file(file, "expected a JSON object of settings"));
    };
    match top.get(KEY) {
        None | Some(Value::Null) => Ok((None, Vec::new())),
        Some(Value::Object(map)) => parse(map, file).map(|(s, w)| (Some(s), w)),
        Some(other) => Err(ConfigError::at(file, KEY, format!("expected an object, got {}", super::show_value(other)))),
    }
}

/// The keys of the `spacemesh` object (an unknown one is refused with the closest of these).
const KEYS: [&str; 10] = [
    "listen",
    "api_listen",
    "nodes",
    "v2_api_nodes",
    "json_cors_everywhere",
    "health_interval",
    "request_timeout",
    "publish_retry_wait_max",
    "publish_max_age",
    "health_path",
];

fn parse(map: &Map<String, Value>, file: &Path) -> Result<(SpacemeshSettings, Vec<String>), ConfigError> {
    let err = |key: &str, msg: String| ConfigError::at(file, format!("{KEY}.{key}"), msg);
    let mut s = SpacemeshSettings::default();
    let warnings = Vec::new();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let got = super::show_value(value);
        match key.as_str() {
            "listen" => s.listen = socket_addr(value).map_err(|m| err(key, format!("{m}, got {got}")))?,
            "api_listen" => s.api_listen = Some(socket_addr(value).map_err(|m| err(key, format!("{m}, got {got}")))?),
            "nodes" => s.nodes = urls(value, file, "nodes")?,
            "v2_api_nodes" => s.v2_api_nodes = urls(value, file, "v2_api_nodes")?,
            "json_cors_everywhere" => s.json_cors_everywhere = value.as_bool().ok_or_else(|| err(key, format!("expected true or false, got {got}")))?,
            "health_interval" => s.health_interval = positive(value, "seconds").map_err(|m| err(key, format!("{m}, got {got}")))?,
            "request_timeout" => s.request_timeout = positive(value, "milliseconds").map_err(|m| err(key, format!("{m}, got {got}")))?,
            "publish_retry_wait_max" => s.publish_retry_wait_max = positive(value, "milliseconds").map_err(|m| err(key, format!("{m}, got {got}")))?,
            "publish_max_age" => s.publish_max_age = positive(value, "seconds").map_err(|m| err(key, format!("{m}, got {got}")))?,
            "health_path" => match value.as_str() {
                Some(p) if p.starts_with('/') && !p.chars().any(|c| c.is_whitespace() || c.is_control()) => s.health_path = p.to_string(),
                _ => return Err(err(key, format!("expected a path starting with \"/\", e.g. \"/beacon/0\", got {got}"))),
            },
            _ => {
                let e = super::unknown_key(file, key, &KEYS);
                return Err(ConfigError::at(file, format!("{KEY}.{key}"), e.message));
            }
        }
    }
    if s.nodes.is_empty() {
        return Err(err("nodes", "lists no node services; the gateway needs at least one URL such as \"http://127.0.0.1:9099\"".into()));
    }
    match (s.api_listen, s.v2_api_nodes.is_empty()) {
        (Some(_), true) => return Err(err("v2_api_nodes", "api_listen is set but v2_api_nodes lists no JSON API URL".into())),
        (None, false) => return Err(err("api_listen", "v2_api_nodes is set but api_listen is missing (where should the proxy listen?)".into())),
        _ => {}
    }
    if s.api_listen == Some(s.listen) && s.listen.port() != 0 {
        return Err(err("api_listen", format!("must differ from spacemesh.listen ({}): both listeners cannot bind one port", s.listen)));
    }
    Ok((s, warnings))
}

pub(super) fn socket_addr(value: &Value) -> Result<SocketAddr, String> {
    value.as_str().and_then(|t| t.parse::<SocketAddr>().ok()).ok_or_else(|| "expected \"IP:PORT\" such as \"127.0.0.1:9099\"".to_string())
}

/// A positive duration in `unit` ("seconds" or "milliseconds"), at most
/// [`super::settings::MAX_DURATION_SECS`] (30 days) so no clock arithmetic can overflow.
pub(super) fn positive(value: &Value, unit: &str) -> Result<u64, String> {
    let max = if unit == "seconds" { super::settings::MAX_DURATION_SECS } else { super::settings::MAX_DURATION_SECS * 1000 };
    match value.as_u64() {
        Some(0) => Err(format!("must be greater than 0 ({unit})")),
        Some(n) if n > max => Err(format!("out of range: valid is 1 to {max} ({unit})")),
        Some(n) => Ok(n),
        None => Err(format!("expected a positive integer ({unit})")),
    }
}

/// A non-empty array of distinct http(s) URLs; a trailing `/` is dropped so paths join cleanly
/// (a base path prefix is kept, as the Go client keeps it).
fn urls(value: &Value, file: &Path, key: &str) -> Result<Vec<String>, ConfigError> {
    url_list(value, file, &format!("{KEY}.{key}"))
}

/// [`urls`] for any config path `at` (such as `shannon.services.anvil.urls`).
pub(super) fn url_list(value: &Value, file: &Path, key: &str) -> Result<Vec<String>, ConfigError> {
    let Value::Array(items) = value else {
        return Err(ConfigError::at(file, key, format!("expected an array of URLs, got {}", super::show_value(value))));
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let Some(url) = item.as_str() else {
            return Err(ConfigError::at(file, at, format!("expected a URL string, got {}", super::show_value(item))));
        };
        super::check_http_url(url).map_err(|m| ConfigError::at(file, at.clone(), format!("{m}, got {:?}", redact(url))))?;
        if url.contains(['?', '#']) {
            return Err(ConfigError::at(file, at, "a base URL cannot carry a query or fragment"));
        }
        let url = url.trim_end_matches('/').to_string();
        if let Some(j) = out.iter().position(|u| u.eq_ignore_ascii_case(&url)) {
            return Err(ConfigError::at(file, at, format!("duplicate of {key}[{j}]")));
        }
        out.push(url);
    }
    Ok(out)
}

/// URLs are shown in errors, but never a `user:password@` part.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl SpacemeshSettings {
    /// Lines for `meshd check-config`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "spacemesh gateway: {} → {} node services", self.listen, self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(out, "  node[{i}]: {}", redact(n));
        }
        if let Some(api) = self.api_listen {
            let cors = if self.json_cors_everywhere { ", CORS everywhere" } else { "" };
            let _ = writeln!(out, "  v2 API proxy: {api} → {} JSON API nodes{cors}", self.v2_api_nodes.len());
        }
        let _ = writeln!(
            out,
            "  health: GET {} every {} s; request timeout {} ms; publish retry wait max {} ms; publish max age {} s",
            self.health_path, self.health_interval, self.request_timeout, self.publish_retry_wait_max, self.publish_max_age
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file() -> PathBuf {
        PathBuf::from("/dd/config.json")
    }

    fn parse_text(text: &str) -> Result<(Option<SpacemeshSettings>, Vec<String>), ConfigError> {
        from_json(text, &file())
    }

    #[test]
    fn absent_or_null_means_off() {
        assert_eq!(parse_text(r#"{"rpc_port":"8081"}"#).unwrap(), (None, vec![]));
        assert_eq!(parse_text(r#"{"spacemesh":null}"#).unwrap(), (None, vec![]));
    }

    #[test]
    fn full_section_is_read_with_defaults_for_the_rest() {
        let (s, w) = parse_text(
            r#"{"spacemesh":{"listen":"127.0.0.1:19099","nodes":["http://127.0.0.1:9099/","https://node-b.example:443/base"],
               "api_listen":"127.0.0.1:19071","v2_api_nodes":["http://127.0.0.1:9071"],"json_cors_everywhere":true,
               "request_timeout":5000}}"#,
        )
        .unwrap();
        let s = s.unwrap();
        assert_eq!(s.listen, "127.0.0.1:19099".parse().unwrap());
        assert_eq!(s.nodes, vec!["http://127.0.0.1:9099", "https://node-b.example:443/base"], "trailing / dropped, base path kept");
        assert_eq!(s.api_listen, Some("127.0.0.1:19071".parse().unwrap()));
        assert!(s.json_cors_everywhere);
        assert_eq!((s.health_interval, s.request_timeout, s.publish_retry_wait_max), (2, 5000, 30_000));
        assert_eq!(s.health_path, "/beacon/0");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn an_unknown_key_in_the_section_is_an_error_with_the_closest_key() {
        let e = parse_text(r#"{"spacemesh":{"nodes":["http://127.0.0.1:9099"],"health_intervall":3}}"#).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("spacemesh.health_intervall"));
        assert!(e.message.contains("did you mean \"health_interval\""), "{e}");
    }

    #[test]
    fn errors_name_the_nested_key() {
        for (json, key, needle) in [
            (r#"{"spacemesh":[]}"#, "spacemesh", "expected an object"),
            (r#"{"spacemesh":{}}"#, "spacemesh.nodes", "at least one URL"),
            (r#"{"spacemesh":{"nodes":"http://a"}}"#, "spacemesh.nodes", "array of URLs"),
            (r#"{"spacemesh":{"nodes":["http://a:1","ftp://b"]}}"#, "spacemesh.nodes[1]", "http://"),
            (r#"{"spacemesh":{"nodes":["http://a:1",5]}}"#, "spacemesh.nodes[1]", "URL string"),
            (r#"{"spacemesh":{"nodes":["http://a:1","http://A:1/"]}}"#, "spacemesh.nodes[1]", "duplicate of spacemesh.nodes[0]"),
            (r#"{"spacemesh":{"nodes":["http://a:99999"]}}"#, "spacemesh.nodes[0]", "invalid port"),
            (r#"{"spacemesh":{"nodes":["http://a:1?x=1"]}}"#, "spacemesh.nodes[0]", "query"),
            (r#"{"spacemesh":{"nodes":["http://a"],"listen":"localhost:9099"}}"#, "spacemesh.listen", "IP:PORT"),
            (r#"{"spacemesh":{"nodes":["http://a"],"health_interval":0}}"#, "spacemesh.health_interval", "greater than 0 (seconds)"),
            (r#"{"spacemesh":{"nodes":["http://a"],"request_timeout":"10s"}}"#, "spacemesh.request_timeout", "positive integer"),
            (
                r#"{"spacemesh":{"nodes":["http://a"],"request_timeout":18446744073709551615}}"#,
                "spacemesh.request_timeout",
                "out of range: valid is 1 to 2592000000 (milliseconds)",
            ),
            (
                r#"{"spacemesh":{"nodes":["http://a"],"health_interval":18446744073709551615}}"#,
                "spacemesh.health_interval",
                "out of range: valid is 1 to 2592000 (seconds)",
            ),
            (r#"{"spacemesh":{"nodes":["http://a"],"json_cors_everywhere":"yes"}}"#, "spacemesh.json_cors_everywhere", "true or false"),
            (r#"{"spacemesh":{"nodes":["http://a"],"health_path":"beacon"}}"#, "spacemesh.health_path", "starting with"),
            (r#"{"spacemesh":{"nodes":["http://a"],"api_listen":"127.0.0.1:9071"}}"#, "spacemesh.v2_api_nodes", "lists no JSON API"),
            (r#"{"spacemesh":{"nodes":["http://a"],"v2_api_nodes":["http://b"]}}"#, "spacemesh.api_listen", "missing"),
            (
                r#"{"spacemesh":{"nodes":["http://a"],"listen":"127.0.0.1:9","api_listen":"127.0.0.1:9","v2_api_nodes":["http://b"]}}"#,
                "spacemesh.api_listen",
                "must differ",
            ),
        ] {
            let e = parse_text(json).expect_err(json);
            assert_eq!(e.file, file());
            assert_eq!(e.key.as_deref(), Some(key), "{json}: {e}");
            assert!(e.message.contains(needle), "{json}: {}", e.message);
        }
    }

    #[test]
    fn a_spacemesh_only_data_dir_needs_no_pocket_files() {
        use super::super::testutil::TempDir;
        let dir = TempDir::new("sm-only");
        dir.write("config.json", r#"{"spacemesh":{"nodes":["http://127.0.0.1:9099"]}}"#);
        let l = super::super::load(dir.path(), None).unwrap();
        assert!(l.nodes.is_empty() && l.chains.is_empty());
        assert_eq!(l.spacemesh.as_ref().unwrap().nodes, vec!["http://127.0.0.1:9099"]);
        assert!(l.warnings.iter().any(|w| w.contains("Spacemesh gateway only")), "{:?}", l.warnings);
        assert!(super::super::describe(&l).contains("spacemesh gateway: 127.0.0.1:9099"));
        // Present but broken Pocket files are still errors, and without the section the keys
        // file stays mandatory.
        dir.write("chains.json", "[{]");
        assert!(super::super::load(dir.path(), None).unwrap_err().to_string().contains("chains.json"));
        dir.write("config.json", "{}");
        assert!(super::super::load(dir.path(), None).unwrap_err().to_string().contains("key.json"));
    }

    #[test]
    fn credentials_in_urls_are_not_echoed() {
        let e = parse_text(r#"{"spacemesh":{"nodes":["http://user:secret@a:1 /"]}}"#).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let (s, _) = parse_text(r#"{"spacemesh":{"nodes":["http://user:secret@a:1"]}}"#).unwrap();
        assert!(!s.unwrap().describe().contains("secret"));
    }
}
