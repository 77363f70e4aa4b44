//! Security findings for `meshd check-config` (README "What never leaves meshd"): secret files
//! readable by group or others, keys that are published in this repository (demo, example and
//! bench keys), placeholder tokens, and 64-hex keys that may be a pasted public key.
//! Findings are warnings: the configuration still loads, but an operator should act on them.

use std::path::Path;

use super::Loaded;
use crate::protocol::KeyPair;

/// Tokens shorter than this are called weak (pocket-core generates 32+ character tokens).
pub const MIN_TOKEN_CHARS: usize = 16;

/// Every finding about `l`, one line each, naming the file and entry.
pub fn audit(l: &Loaded) -> Vec<String> {
    let s = &l.settings;
    let keys_path = l.resolve(&s.servicer_private_key_file);
    let servicer_token_path = l.resolve(&s.servicer_auth_token_file);
    let mesh_token_path = l.resolve(&s.auth_token_file);
    let mut out = Vec::new();
    for path in [&keys_path, &servicer_token_path, &mesh_token_path] {
        out.extend(permission_finding(path));
    }
    for node in &l.nodes {
        for key in &node.keys {
            if let Some(what) = published_key(key) {
                out.push(format!(
                    "{}: node {:?}: address {} is {what}: its private key is public, anyone can sign as it; use your servicer's own key",
                    keys_path.display(),
                    node.name,
                    key.address_hex
                ));
            }
        }
    }
    out.extend(short_keys(&keys_path));
    out.extend(token_finding(&servicer_token_path, "servicer_auth_token_file", Some(l.servicer_token.as_str())));
    out.extend(token_finding(&mesh_token_path, "auth_token_file", l.mesh_token.as_deref()));
    out
}

/// A secret file that group or others may read (mode `& 0o077`).
fn permission_finding(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| format!("{}: mode {:o} lets group/others read a secret; run chmod 600 {}", path.display(), mode & 0o777, path.display()))
}

/// Which published key this is, if any: the demo keys (`meshd demo`, tests), the example key in
/// `config/key/key.json`, and the bench keys (`bench/loadgen.rs`: seed `0x5a…` with a kind byte
/// and a little-endian index).
fn published_key(key: &KeyPair) -> Option<&'static str> {
    let private = key.private_hex();
    let seed = hex::decode(&private[..64]).ok()?;
    // Seeds 01…, 02…, 03… are `meshd demo`'s keys; 03… is also config/key/key.json's example.
    if seed.iter().all(|b| *b == seed[0]) && matches!(seed[0], 1..=3) {
        return Some("a demo/example key published with meshd (meshd demo, config/key/key.json)");
    }
    if seed[5..].iter().all(|b| *b == 0x5a) {
        return Some("a bench key of bench/loadgen.rs");
    }
    None
}

/// Keys given as 64 hex characters: meshd reads them as an ed25519 seed, but a public key
/// (pocket-core prints it as 64 hex) pasted here would load too, under the wrong address.
fn short_keys(path: &Path) -> Vec<String> {
    let Ok(text) = super::read_text(path, super::file::KEYS_FILE_LIMIT) else { return Vec::new() };
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_str::<serde_json::Value>(&text) else { return Vec::new() };
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let mut check = |at: String, v: Option<&serde_json::Value>| {
            if let Some(k) = v.and_then(|v| v.as_str()).filter(|k| k.len() == 64) {
                let address = KeyPair::from_hex(k).map(|p| p.address_hex).unwrap_or_default();
                out.push(format!(
                    "{}: {at}: 64 hex characters are read as a private seed (address {address}); if this is the servicer's public key, \
                     meshd signs as another account: use the 128-hex private key (`pocket accounts export-raw`)",
                    path.display()
                ));
            }
        };
        check(format!("[{i}].priv_key"), entry.get("priv_key"));
        if let Some(serde_json::Value::Array(keys)) = entry.get("keys") {
            for (j, k) in keys.iter().enumerate() {
                check(format!("[{i}].keys[{j}]"), Some(k));
            }
        }
    }
    out
}

/// The tokens the demo data dir uses (src/demo.rs): published, so never acceptable in production.
pub const PUBLISHED_TOKENS: [&str; 2] = ["demo-servicer-token", "demo-mesh-token"];

/// A token that is a placeholder, a published demo token, or short.
fn token_finding(path: &Path, key: &str, token: Option<&str>) -> Option<String> {
    let token = token?;
    let lower = token.to_ascii_lowercase();
    let placeholder = ["change-me", "changeme", "change_me", "placeholder", "example", "your-token", "<"].iter().any(|p| lower.contains(p));
    let published = PUBLISHED_TOKENS.contains(&token);
    let why = if token.is_empty() {
        return None;
    } else if placeholder || published {
        "is a placeholder or published demo token"
    } else if token.chars().count() < MIN_TOKEN_CHARS {
        "is shorter than 16 characters"
    } else {
        return None;
    };
    Some(format!("{} ({key}): the token {why}; generate a long random one (e.g. `openssl rand -hex 32`)", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn published_keys_are_recognised_and_random_ones_are_not() {
        let (a, b, c) = crate::demo::demo_keys();
        for k in [a, b, c, KeyPair::from_seed(&[3; 32])] {
            assert!(published_key(&k).is_some(), "{}", k.address_hex);
        }
        let mut bench = [0x5au8; 32];
        bench[0] = 2;
        bench[1..5].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(published_key(&KeyPair::from_seed(&bench)), Some("a bench key of bench/loadgen.rs"));
        let mut random = [0u8; 32];
        for (i, b) in random.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        assert_eq!(published_key(&KeyPair::from_seed(&random)), None);
    }

    #[test]
    fn placeholder_demo_and_short_tokens_are_flagged() {
        let p = Path::new("auth/servicer.json");
        for bad in ["example-servicer-token-CHANGE-ME", crate::demo::TOKEN, "<token>", "short"] {
            assert!(token_finding(p, "servicer_auth_token_file", Some(bad)).is_some(), "{bad}");
        }
        assert_eq!(token_finding(p, "k", Some("9f1c2e4b7a3d5f60819a2b3c4d5e6f70")), None);
        assert_eq!(token_finding(p, "k", None), None);
    }

    #[test]
    fn secret_files_readable_by_others_are_flagged() {
        let dir = std::env::temp_dir().join(format!("meshd-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("servicer.json");
        std::fs::write(&file, "{}").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let finding = permission_finding(&file).expect("0644 is flagged");
        assert!(finding.contains("mode 644") && finding.contains("chmod 600"), "{finding}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(permission_finding(&file), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_64_hex_key_is_flagged_with_its_location() {
        let dir = std::env::temp_dir().join(format!("meshd-audit-short-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key.json");
        let public = KeyPair::from_seed(&[9; 32]).public_hex;
        let full = KeyPair::from_seed(&[8; 32]).private_hex();
        std::fs::write(&file, serde_json::json!([{"url": "http://127.0.0.1:1", "keys": [full, public]}]).to_string()).unwrap();
        let found = short_keys(&file);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("[0].keys[1]") && found[0].contains("128-hex"), "{found:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
