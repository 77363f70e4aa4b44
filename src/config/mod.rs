//! Loading and validating everything meshd reads from its data dir: `config.json`
//! (drop-in compatible with the Geo-Mesh keys), the servicer keys file (both formats),
//! `chains.json`, the auth token files and the optional chain-name map.
//! Every error names the file and the key/entry; `main` turns it into exit code 2.

pub mod audit;
pub mod auth;
pub mod chains;
pub mod file;
pub mod keys;
pub mod settings;
pub mod shannon;
pub mod spacemesh;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use chains::Chain;
pub use keys::NodeEntry;
pub use settings::Settings;
pub use shannon::ShannonSettings;
pub use spacemesh::SpacemeshSettings;

/// A configuration problem: which file, which key or entry, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// JSON key or entry locator, e.g. `chain_rpc_timeout` or `[2].keys[0]`.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: Option<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { file: file.to_path_buf(), key, message: message.into() }
    }
    /// Error about one key/entry of `file`.
    pub fn at(file: &Path, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::new(file, Some(key.into()), message)
    }
    /// Error about `file` as a whole (unreadable, not JSON, wrong top-level shape).
    pub fn file(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError::new(file, None, message)
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: {}: {}", self.file.display(), k, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}
impl std::error::Error for ConfigError {}

/// Everything loaded from a data dir, ready to run.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// The config file actually read (or None when no file exists and defaults are used).
    pub config_path: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub nodes: Vec<NodeEntry>,
    pub chains: Vec<Chain>,
    /// Token that clients must present on meshd's private routes (`auth_token_file`).
    /// None when the file does not exist yet (`start` creates it; `check-config` reports it).
    pub mesh_token: Option<String>,
    /// Token meshd sends to servicers (`servicer_auth_token_file`).
    pub servicer_token: String,
    /// chain id → human name for metric labels (from `chains_name_map`, local file).
    pub chain_names: BTreeMap<String, String>,
    /// Non-fatal findings (unknown keys, …) to log at startup / print in check-config.
    pub warnings: Vec<String>,
    /// The Spacemesh node-service gateway (`spacemesh` object); None = off.
    pub spacemesh: Option<SpacemeshSettings>,
    /// The Shannon supplier edge (`shannon` object); None = off.
    pub shannon: Option<ShannonSettings>,
    /// Its supplier operator keys (`shannon.supplier_keys_file`); empty when Shannon is off.
    pub supplier_keys: Vec<crate::shannon::keys::OperatorKey>,
}

impl Loaded {
    /// A file path from the config (`servicer_private_key_file`, `relay_cache_file`, …) as meshd
    /// opens it: absolute paths unchanged, relative ones under the effective data dir.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        resolve_in(&self.data_dir, rel)
    }
}

/// `rel` resolved against `data_dir` (absolute paths are kept). The incumbent joins
/// `data_dir + "/" + rel` unconditionally; keeping absolute paths is the only difference.
pub fn resolve_in(data_dir: &Path, rel: &str) -> PathBuf {
    let p = Path::new(rel);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        data_dir.join(p)
    }
}

/// Where the config file is: the explicit `--config` path, else `DIR/config.json`, else
/// `DIR/config/config.json` (the incumbent's location), else None. The second value is a
/// warning when both candidate files exist, because only one is read.
pub fn find_config(data_dir: &Path, config_file: Option<&Path>) -> (Option<PathBuf>, Option<String>) {
    if let Some(explicit) = config_file {
        return (Some(explicit.to_path_buf()), None);
    }
    let top = data_dir.join("config.json");
    let nested = data_dir.join("config").join("config.json");
    // `exists`, not `is_file`: a config path that is a device or FIFO must be refused by the read,
    // not silently skipped for the defaults.
    match (top.exists(), nested.exists()) {
        (true, true) => {
            let w = format!("both {} and {} exist; using the first, the second is ignored", top.display(), nested.display());
            (Some(top), Some(w))
        }
        (true, false) => (Some(top), None),
        (false, true) => (Some(nested), None),
        (false, false) => (None, None),
    }
}

/// Load and validate everything. `config_file` overrides the lookup of
/// `DIR/config.json` then `DIR/config/config.json`.
///
/// A non-empty `data_dir` key in the config file replaces `data_dir` (the `--datadir` flag) as the
/// base of every relative path, like the incumbent; an empty or absent key keeps the flag. A
/// relative `data_dir` value is relative to the working directory, exactly like the flag.
/// The config file's settings and the effective data dir, without the keys, chains or token
/// files: what `meshd queue` needs (it must work on a host whose keys file is elsewhere).
pub fn load_settings(data_dir: &Path, config_file: Option<&Path>) -> Result<(Settings, PathBuf), ConfigError> {
    let (config_path, _) = find_config(data_dir, config_file);
    let settings = match &config_path {
        Some(path) => Settings::from_json(&read_text(path, file::CONFIG_FILE_LIMIT)?, path)?.0,
        None => Settings::default(),
    };
    let effective_dir = if settings.data_dir.is_empty() { data_dir.to_path_buf() } else { PathBuf::from(&settings.data_dir) };
    Ok((settings, effective_dir))
}

pub fn load(data_dir: &std::path::Path, config_file: Option<&std::path::Path>) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let (config_path, both_warning) = find_config(data_dir, config_file);
    warnings.extend(both_warning);
    let mut spacemesh = None;
    let mut shannon = None;
    let settings = match &config_path {
        Some(path) => {
            let text = read_text(path, file::CONFIG_FILE_LIMIT)?;
            let (settings, w) = Settings::from_json(&text, path)?;
            warnings.extend(w);
            let (sm, w) = spacemesh::from_json(&text, path)?;
            warnings.extend(w);
            spacemesh = sm;
            shannon = shannon::from_json(&text, path)?;
            settings
        }
        None => {
            warnings.push(format!(
                "no config file at {} or {}; using built-in defaults",
                data_dir.join("config.json").display(),
                data_dir.join("config").join("config.json").display()
            ));
            Settings::default()
        }
    };
    let effective_dir = if settings.data_dir.is_empty() { data_dir.to_path_buf() } else { PathBuf::from(&settings.data_dir) };
    if !effective_dir.is_dir() {
        let from = if settings.data_dir.is_empty() { "--datadir" } else { "the config key data_dir" };
        return Err(ConfigError::file(&effective_dir, format!("the data dir ({from}) does not exist or is not a directory")));
    }

    // A Spacemesh-only host (gateway configured) may have no Pocket files at all: each missing
    // one leaves the relay side empty instead of failing the start.
    let pocket_optional = |p: &Path| (spacemesh.is_some() || shannon.is_some()) && !p.exists();
    let keys_path = resolve_in(&effective_dir, &settings.servicer_private_key_file);
    let nodes = if pocket_optional(&keys_path) {
        warnings.push(format!("{}: not found; no Pocket servicers (Spacemesh gateway only)", keys_path.display()));
        Vec::new()
    } else {
        keys::load_keys(&keys_path)?
    };
    let chains_path = resolve_in(&effective_dir, &settings.chains_name);
    let chains = if pocket_optional(&chains_path) { Vec::new() } else { chains::load_chains(&chains_path)? };
    if chains.is_empty() && !nodes.is_empty() {
        warnings.push(format!("{}: no chains configured; every relay will be rejected", chains_path.display()));
    }

    let servicer_token_path = resolve_in(&effective_dir, &settings.servicer_auth_token_file);
    let servicer_token = if pocket_optional(&servicer_token_path) { Some(String::new()) } else { auth::read_token(&servicer_token_path)? };
    let servicer_token = servicer_token.ok_or_else(|| {
        ConfigError::file(
            &servicer_token_path,
            "file not found (servicer_auth_token_file). meshd needs the servicer's auth token to call its \
             /v1/private/mesh routes: create this file as {\"Value\":\"<the Value from the servicer's \
             <datadir>/config/auth.json>\",\"Issued\":\"2024-01-01T00:00:00Z\"} and run the servicer with \
             generate_token_on_start=false",
        )
    })?;
    let mesh_token = auth::read_token(&resolve_in(&effective_dir, &settings.auth_token_file))?;

    // The name map only feeds metric labels, so like the incumbent a broken map is not fatal.
    let mut chain_names = BTreeMap::new();
    if !settings.chains_name_map.is_empty() {
        match chains::load_chain_names(&resolve_in(&effective_dir, &settings.chains_name_map)) {
            Ok(map) => chain_names = map,
            Err(e) => warnings.push(format!("{e} (chain names fall back to chain ids)")),
        }
    }

    let supplier_keys = match &shannon {
        Some(sh) => shannon::load_supplier_keys(&resolve_in(&effective_dir, &sh.supplier_keys_file))?,
        None => Vec::new(),
    };
    Ok(Loaded {
        settings,
        config_path,
        data_dir: effective_dir,
        nodes,
        chains,
        mesh_token,
        servicer_token,
        chain_names,
        warnings,
        spacemesh,
        shannon,
        supplier_keys,
    })
}

/// Human-readable summary for `meshd check-config`. Prints addresses, URLs and file paths;
/// never private keys, token values or basic-auth passwords.
pub fn describe(l: &Loaded) -> String {
    let s = &l.settings;
    let mut out = String::new();
    let config = match &l.config_path {
        Some(p) => p.display().to_string(),
        None => "none (built-in defaults)".to_string(),
    };
    let _ = writeln!(out, "config file:  {config}");
    let _ = writeln!(out, "data dir:     {}", l.data_dir.display());
    let _ = writeln!(out, "listen:       {}", join_host_port(&s.listen_address, &s.rpc_port));
    let _ = writeln!(out, "metrics:      {}", join_host_port(&s.metrics_listen_address, &s.pocket_prometheus_port));
    let _ = writeln!(out, "log level:    {}", s.log_level);
    let _ = writeln!(
        out,
        "relay queue:  {} (LMDB, map {} MiB, durability {})",
        l.resolve(&s.relay_queue_dir).display(),
        s.relay_queue_map_size,
        s.relay_durability
    );

    let total: usize = l.nodes.iter().map(|n| n.keys.len()).sum();
    let _ = writeln!(out, "keys file:    {} ({} nodes, {} addresses)", l.resolve(&s.servicer_private_key_file).display(), l.nodes.len(), total);
    for n in &l.nodes {
        let _ = writeln!(out, "  node {}: {} ({} addresses)", n.name, n.urls.join(", "), n.keys.len());
        for k in &n.keys {
            let _ = writeln!(out, "    {}", k.address_hex);
        }
    }

    let _ = writeln!(out, "chains file:  {} ({} chains)", l.resolve(&s.chains_name).display(), l.chains.len());
    for c in &l.chains {
        let name = l.chain_names.get(&c.id).map(|n| format!(" ({n})")).unwrap_or_default();
        let auth = if c.basic_auth.is_some() { "yes" } else { "no" };
        let urls: Vec<String> = c.urls.iter().map(|u| redact_userinfo(u)).collect();
        let _ = writeln!(out, "  {}{}: {}  basic auth: {}", c.id, name, urls.join(", "), auth);
    }
    if !s.chains_name_map.is_empty() {
        let _ = writeln!(out, "chain names:  {} ({} entries)", l.resolve(&s.chains_name_map).display(), l.chain_names.len());
    }
    if !s.remote_chains_name_map.is_empty() {
        let _ = writeln!(out, "remote chain names: {}", redact_userinfo(&s.remote_chains_name_map));
    }

    let servicer = if l.servicer_token.is_empty() { "absent: no Pocket relay side" } else { "present" };
    let _ = writeln!(out, "servicer token: {} ({servicer})", l.resolve(&s.servicer_auth_token_file).display());
    let mesh = if l.mesh_token.is_some() { "present" } else { "missing; `meshd start` creates it" };
    let _ = writeln!(out, "mesh token:     {} ({mesh})", l.resolve(&s.auth_token_file).display());

    if let Some(sm) = &l.spacemesh {
        out.push_str(&sm.describe());
    }
    if let Some(sh) = &l.shannon {
        out.push_str(&sh.describe());
        let _ = writeln!(out, "  supplier keys: {} ({} suppliers)", l.resolve(&sh.supplier_keys_file).display(), l.supplier_keys.len());
        for k in &l.supplier_keys {
            let _ = writeln!(out, "    {}", k.address());
        }
    }
    if l.warnings.is_empty() {
        let _ = writeln!(out, "warnings:     none");
    } else {
        let _ = writeln!(out, "warnings ({}):", l.warnings.len());
        for w in &l.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}

/// `host:port`, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Replace `user:pass@` in a URL's authority by `***@`, so summaries never show credentials.
pub fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_string() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Read a config-type file as UTF-8, dropping a leading BOM (editors on Windows add one and
/// serde_json rejects it), refusing non-regular files and files over `limit` bytes
/// ([`file::read_bounded`]). The error names the file.
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<String, ConfigError> {
    file::read_text_bounded(path, limit)
}

/// Parse JSON text; serde_json's messages give line and column, never the content.
pub(crate) fn parse_json(text: &str, path: &Path) -> Result<serde_json::Value, ConfigError> {
    serde_json::from_str(text).map_err(|e| ConfigError::file(path, format!("invalid JSON: {e}")))
}

/// The error for a key meshd does not know: a typo such as `rpc_prot` would otherwise leave
/// the intended setting at its default without a word, so `start`, hot reload and
/// `check-config` refuse it (exit 2), naming the closest known key.
pub(crate) fn unknown_key(file: &Path, key: &str, known: &[&str]) -> ConfigError {
    let hint = match closest(key, known) {
        Some(k) => format!("; did you mean \"{k}\"?"),
        None => String::new(),
    };
    ConfigError::at(file, key, format!("unknown key{hint} (keys are case-sensitive; see README \"Configuration\")"))
}

/// The known key nearest to `key` by edit distance (ignoring case), if it is near enough to
/// be a typo: at most a third of the key's length, and at least 2 edits allowed.
pub(crate) fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    let limit = (lower.chars().count() / 3).max(2);
    known.iter().map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k)).filter(|(d, _)| *d <= limit).min_by_key(|(d, _)| *d).map(|(_, k)| k)
}

/// Levenshtein distance (insert, delete, substitute) over chars; keys are short.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A JSON value for an error message, cut short so a huge value cannot flood the terminal.
/// Never use it on values that may be secrets (keys, tokens, passwords).
pub(crate) fn show_value(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// Check an `http://` / `https://` URL with a host (and a valid port if one is given); returns
/// the host. The message does not repeat the URL; callers add it where it is safe to show.
pub(crate) fn check_http_url(url: &str) -> Result<String, String> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else {
        return Err("expected an http:// or https:// URL".to_string());
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("URL contains whitespace or control characters".to_string());
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let Some(close) = v6.find(']') else { return Err("unterminated IPv6 address in URL".to_string()) };
        let after = &v6[close + 1..];
        let port = match after {
            "" => None,
            p if p.starts_with(':') => Some(&p[1..]),
            _ => return Err("unexpected text after the IPv6 address in URL".to_string()),
        };
        (&v6[..close], port)
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("URL has no host".to_string());
    }
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err("URL has an invalid port (expected 0-65535)".to_string());
        }
    }
    Ok(host.to_string())
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temp dir, unique per process and call, removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            let dir = std::env::temp_dir().join(format!("meshd-cfg-{tag}-{}-{n}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
        /// Write `text` at `rel` (creating parent dirs); returns the full path.
        pub fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Test key: 32 bytes of `b` as seed, in the 128-hex `seed‖pub` export format.
    pub fn key_hex(b: u8) -> String {
        let seed = [b; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        format!("{}{}", hex::encode(seed), hex::encode(public))
    }

    /// The servicer test vector of the relay protocol reference (seed 0x03 repeated).
    pub const ADDR_03: &str = "b62e867fa2f33afe62d5d6b1642e1621d5433078";
}

#[cfg(test)]
mod tests {
    use super::testutil::{key_hex, TempDir, ADDR_03};
    use super::*;

    /// A complete, valid data dir; `config_rel` is where config.json goes (None = no config file).
    fn populate(dir: &TempDir, config_rel: Option<&str>, config: &str) {
        if let Some(rel) = config_rel {
            dir.write(rel, config);
        }
        dir.write("key/key.json", &format!(r#"[{{"name":"n1","url":"http://127.0.0.1:8082","keys":["{}"]}}]"#, key_hex(3)));
        dir.write("chains.json", r#"[{"id":"0021","url":"http://127.0.0.1:8545"}]"#);
        dir.write("auth/servicer.json", r#"{"Value":"servicer-secret-token","Issued":"2024-01-01T00:00:00Z"}"#);
    }

    /// Load on a thread; fail instead of hanging the suite.
    fn load_within_5s(dir: PathBuf) -> Result<Loaded, ConfigError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(load(&dir, None));
        });
        rx.recv_timeout(std::time::Duration::from_secs(5)).expect("loading blocked for 5 s")
    }

    fn mkfifo(p: &Path) {
        let _ = std::fs::remove_file(p);
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn every_file_load_reads_is_bounded_fifo_device_and_oversized_files_are_refused() {
        let dir = TempDir::new("bounded");
        populate(&dir, Some("config.json"), "{}");
        for rel in ["key/key.json", "chains.json", "auth/servicer.json", "auth/mesh.json", "config.json"] {
            let p = dir.path().join(rel);
            let saved = std::fs::read(&p).ok();
            mkfifo(&p);
            let e = load_within_5s(dir.path().to_path_buf()).unwrap_err();
            assert_eq!(e.file, p, "{e}");
            assert!(e.message.contains("a FIFO"), "{e}");
            std::fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
            let e = load_within_5s(dir.path().to_path_buf()).unwrap_err();
            assert!(e.file == p && e.message.contains("character device"), "{e}");
            std::fs::remove_file(&p).unwrap();
            if let Some(bytes) = saved {
                std::fs::write(&p, bytes).unwrap();
            }
        }
        let keys = dir.path().join("key/key.json");
        std::fs::File::options().write(true).open(&keys).unwrap().set_len(file::KEYS_FILE_LIMIT + 1).unwrap();
        let e = load_within_5s(dir.path().to_path_buf()).unwrap_err();
        assert!(e.file == keys && e.message.contains("64 MiB limit"), "{e}");
    }

    #[test]
    fn loads_config_json_at_top_level() {
        let dir = TempDir::new("top");
        populate(&dir, Some("config.json"), r#"{"rpc_port":"9001"}"#);
        let l = load(dir.path(), None).unwrap();
        assert_eq!(l.config_path.as_deref(), Some(dir.path().join("config.json").as_path()));
        assert_eq!(l.settings.rpc_port, "9001");
        assert_eq!(l.data_dir, dir.path());
        assert_eq!(l.nodes.len(), 1);
        assert_eq!(l.nodes[0].keys[0].address_hex, ADDR_03);
        assert_eq!(l.chains[0].id, "0021");
        assert_eq!(l.servicer_token, "servicer-secret-token");
        assert_eq!(l.mesh_token, None);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn falls_back_to_config_subdir() {
        let dir = TempDir::new("nested");
        populate(&dir, Some("config/config.json"), r#"{"rpc_port":"9002"}"#);
        let l = load(dir.path(), None).unwrap();
        assert_eq!(l.config_path.as_deref(), Some(dir.path().join("config/config.json").as_path()));
        assert_eq!(l.settings.rpc_port, "9002");
        // Relative paths are still relative to the data dir, not to the config file's folder.
        assert_eq!(l.data_dir, dir.path());
    }

    #[test]
    fn top_level_config_wins_and_both_present_warns() {
        let dir = TempDir::new("both");
        populate(&dir, Some("config.json"), r#"{"rpc_port":"9003"}"#);
        dir.write("config/config.json", r#"{"rpc_port":"9004"}"#);
        let l = load(dir.path(), None).unwrap();
        assert_eq!(l.settings.rpc_port, "9003");
        assert!(l.warnings.iter().any(|w| w.contains("both") && w.contains("config.json")), "{:?}", l.warnings);
    }

    #[test]
    fn explicit_config_file_overrides_lookup() {
        let dir = TempDir::new("explicit");
        populate(&dir, Some("config.json"), r#"{"rpc_port":"9005"}"#);
        let other = dir.write("elsewhere/my.json", r#"{"rpc_port":"9006"}"#);
        let l = load(dir.path(), Some(&other)).unwrap();
        assert_eq!(l.settings.rpc_port, "9006");
        assert_eq!(l.config_path.as_deref(), Some(other.as_path()));
        // An explicit file that does not exist is an error naming it.
        let missing = dir.path().join("nope.json");
        let e = load(dir.path(), Some(&missing)).unwrap_err();
        assert_eq!(e.file, missing);
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn no_config_file_uses_defaults_with_warning() {
        let dir = TempDir::new("noconf");
        populate(&dir, None, "");
        let l = load(dir.path(), None).unwrap();
        assert_eq!(l.config_path, None);
        assert_eq!(l.settings, Settings::default());
        assert!(l.warnings.iter().any(|w| w.contains("no config file")), "{:?}", l.warnings);
    }

    #[test]
    fn relative_paths_resolve_against_data_dir_and_absolute_are_kept() {
        let dir = TempDir::new("paths");
        let abs_chains = dir.write("abs/elsewhere-chains.json", r#"[{"id":"0001","url":"https://127.0.0.1:1/x"}]"#);
        let config = format!(
            r#"{{"servicer_private_key_file":"k/my-keys.json","chains_name":{},"servicer_auth_token_file":"a/s.json","auth_token_file":"a/m.json","chains_name_map":"names.json"}}"#,
            serde_json::Value::String(abs_chains.display().to_string())
        );
        dir.write("config.json", &config);
        dir.write("k/my-keys.json", &format!(r#"[{{"url":"http://127.0.0.1:8082","keys":["{}"]}}]"#, key_hex(4)));
        dir.write("a/s.json", r#"{"Value":"s"}"#);
        dir.write("a/m.json", r#"{"value":"m"}"#);
        dir.write("names.json", r#"{"0001":"Pocket"}"#);
        let l = load(dir.path(), None).unwrap();
        assert_eq!(l.chains[0].id, "0001");
        assert_eq!(l.servicer_token, "s");
        assert_eq!(l.mesh_token.as_deref(), Some("m"));
        assert_eq!(l.chain_names.get("0001").map(String::as_str), Some("Pocket"));
        assert_eq!(l.resolve("data/relays.pkt"), dir.path().join("data/relays.pkt"));
        assert_eq!(l.resolve(abs_chains.to_str().unwrap()), abs_chains);
    }

    #[test]
    fn data_dir_key_overrides_flag_only_when_non_empty() {
        let real = TempDir::new("realdir");
        populate(&real, None, "");
        let flag = TempDir::new("flagdir");
        let cfg = format!(r#"{{"data_dir":{}}}"#, serde_json::Value::String(real.path().display().to_string()));
        let cfg_path = flag.write("config.json", &cfg);
        let l = load(flag.path(), None).unwrap();
        assert_eq!(l.data_dir, real.path());
        assert_eq!(l.config_path.as_deref(), Some(cfg_path.as_path()));
        assert_eq!(l.nodes[0].keys[0].address_hex, ADDR_03);

        // Empty data_dir keeps the flag: the flag dir has no keys, so the error names the flag dir's file.
        flag.write("config.json", r#"{"data_dir":""}"#);
        let e = load(flag.path(), None).unwrap_err();
        assert_eq!(e.file, flag.path().join("key/key.json"));
    }

    #[test]
    fn missing_servicer_token_is_an_error_that_says_how_to_fix_it() {
        let dir = TempDir::new("notoken");
        populate(&dir, Some("config.json"), "{}");
        std::fs::remove_file(dir.path().join("auth/servicer.json")).unwrap();
        let e = load(dir.path(), None).unwrap_err();
        assert_eq!(e.file, dir.path().join("auth/servicer.json"));
        assert!(e.message.contains("servicer_auth_token_file") && e.message.contains("Value"), "{e}");
    }

    #[test]
    fn an_unknown_key_is_an_error_with_the_closest_known_key() {
        let dir = TempDir::new("unknown");
        populate(&dir, Some("config.json"), r#"{"rpc_prot":"9000"}"#);
        let e = load(dir.path(), None).unwrap_err();
        assert_eq!(e.file, dir.path().join("config.json"));
        assert_eq!(e.key.as_deref(), Some("rpc_prot"));
        assert!(e.message.starts_with("unknown key; did you mean \"rpc_port\"?"), "{e}");
    }

    #[test]
    fn a_missing_data_dir_is_named() {
        let missing = std::env::temp_dir().join(format!("meshd-no-such-dir-{}", std::process::id()));
        let e = load(&missing, None).unwrap_err();
        assert_eq!(e.file, missing);
        assert!(e.message.contains("does not exist") && e.message.contains("--datadir"), "{e}");
    }

    #[test]
    fn closest_key_is_a_near_typo_or_nothing() {
        let known = ["rpc_port", "chain_rpc_timeout", "listen_address", "nodes"];
        assert_eq!(closest("rpc_prot", &known), Some("rpc_port"));
        assert_eq!(closest("Rpc_Port", &known), Some("rpc_port"));
        assert_eq!(closest("chain_rpc_timout", &known), Some("chain_rpc_timeout"));
        assert_eq!(closest("node", &known), Some("nodes"));
        assert_eq!(closest("something_else_entirely", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn settings_error_propagates_with_file_and_key() {
        let dir = TempDir::new("badset");
        populate(&dir, Some("config.json"), r#"{"chain_rpc_timeout":"abc"}"#);
        let e = load(dir.path(), None).unwrap_err();
        assert_eq!(e.file, dir.path().join("config.json"));
        assert_eq!(e.key.as_deref(), Some("chain_rpc_timeout"));
    }

    #[test]
    fn broken_name_map_is_only_a_warning() {
        let dir = TempDir::new("badnames");
        populate(&dir, Some("config.json"), r#"{"chains_name_map":"names.json"}"#);
        dir.write("names.json", "not json");
        let l = load(dir.path(), None).unwrap();
        assert!(l.chain_names.is_empty());
        assert!(l.warnings.iter().any(|w| w.contains("names.json")), "{:?}", l.warnings);
    }

    #[test]
    fn describe_shows_summary_but_no_secrets() {
        let dir = TempDir::new("describe");
        populate(&dir, Some("config.json"), r#"{"listen_address":"127.0.0.1","rpc_port":"9010"}"#);
        dir.write(
            "chains.json",
            r#"[{"id":"0021","url":"http://127.0.0.1:8545","basic_auth":{"username":"u","password":"hunter2"}},
                {"id":"0001","url":"http://user:pw@127.0.0.1:8546/"}]"#,
        );
        dir.write("auth/mesh.json", r#"{"Value":"mesh-secret-token"}"#);
        let l = load(dir.path(), None).unwrap();
        let d = describe(&l);
        assert!(d.contains("127.0.0.1:9010"), "{d}");
        assert!(d.contains(ADDR_03), "{d}");
        assert!(d.contains("node n1"), "{d}");
        assert!(d.contains("basic auth: yes") && d.contains("basic auth: no"), "{d}");
        assert!(d.contains("http://***@127.0.0.1:8546/"), "{d}");
        for secret in ["hunter2", "servicer-secret-token", "mesh-secret-token", "user:pw", &key_hex(3)[..64]] {
            assert!(!d.contains(secret), "describe leaked {secret}: {d}");
        }
    }

    #[test]
    fn example_data_dir_in_repo_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let l = load(&dir, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.config_path.as_deref(), Some(dir.join("config.json").as_path()));
        assert_eq!(l.settings.listen_address, "127.0.0.1");
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.nodes.len(), 1);
        assert_eq!(l.nodes[0].keys[0].address_hex, ADDR_03);
        assert!(!l.chains.is_empty());
        assert!(l.chains.iter().all(|c| l.chain_names.contains_key(&c.id)), "every example chain has a name");
    }

    #[test]
    fn url_check() {
        assert_eq!(check_http_url("http://127.0.0.1:8082").unwrap(), "127.0.0.1");
        assert_eq!(check_http_url("HTTPS://node.example:443/v1?x#y").unwrap(), "node.example");
        assert_eq!(check_http_url("http://u:p@host").unwrap(), "host");
        assert_eq!(check_http_url("http://[::1]:8080/").unwrap(), "::1");
        for bad in ["ftp://x", "127.0.0.1:8082", "http://", "http://:80", "http://h:99999", "http://h:x", "http://h x", "http://[::1"] {
            assert!(check_http_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn redact() {
        assert_eq!(redact_userinfo("http://a:b@h:1/p@q"), "http://***@h:1/p@q");
        assert_eq!(redact_userinfo("http://h/p@q"), "http://h/p@q");
    }
}
