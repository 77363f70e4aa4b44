//! Loading and validating everything meshd reads from its data dir: `config.json`
//! (drop-in compatible with the Geo-Mesh keys), the servicer keys file (both formats),
//! `chains.json`, the auth token files and the optional chain-name map.
//! Every error names the file and the key/entry; `main` turns it into exit code 2.

pub mod auth;
pub mod chains;
pub mod keys;
pub mod settings;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use chains::Chain;
pub use keys::NodeEntry;
pub use settings::Settings;

/// A configuration problem: which file, which key or entry, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// JSON key or entry locator, e.g. `chain_rpc_timeout` or `[2].keys[0]`.
    pub key: Option<String>,
    pub message: String,
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
}

/// Load and validate everything. `config_file` overrides the lookup of
/// `DIR/config.json` then `DIR/config/config.json`.
pub fn load(data_dir: &std::path::Path, config_file: Option<&std::path::Path>) -> Result<Loaded, ConfigError> {
    let _ = (data_dir, config_file);
    todo!()
}
