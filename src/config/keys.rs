//! Servicer keys file (`servicer_private_key_file`): the Geo-Mesh current format
//! `[{"name","url","urls"?,"keys":[hex…]}]` and the fallback `[{"priv_key","servicer_url"}]`.

use crate::protocol::KeyPair;

/// One servicer node (full node) and the keys meshd signs for on its behalf.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    /// From `name`, else the URL's host.
    pub name: String,
    /// `url` first, then any `urls` entries (meshd extension), trailing `/` trimmed, deduplicated.
    pub urls: Vec<String>,
    pub keys: Vec<KeyPair>,
}
