//! Servicer keys file (`servicer_private_key_file`): the Geo-Mesh current format
//! `[{"name","url","urls"?,"keys":[hex…]}]` and the fallback `[{"priv_key","servicer_url"}]`.
//! Unlike the incumbent (whose JSON schemas only check the first element), every entry is
//! validated, and an address listed twice is an error instead of "first node wins".
//! Error messages locate the entry (`[2].keys[0]`) and never repeat a private key.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::ConfigError;
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

/// Read and validate a keys file.
pub fn load_keys(path: &Path) -> Result<Vec<NodeEntry>, ConfigError> {
    parse_keys(&super::read_text(path, super::file::KEYS_FILE_LIMIT)?, path)
}

/// Parse keys-file text; `path` is only used in error messages. The format is chosen by the
/// first entry (`priv_key`/`servicer_url` → fallback, otherwise current) and every entry must
/// use it. Extra properties are ignored, as the incumbent's schemas allow them.
pub fn parse_keys(json: &str, path: &Path) -> Result<Vec<NodeEntry>, ConfigError> {
    let value = super::parse_json(json, path)?;
    let Value::Array(entries) = value else {
        return Err(ConfigError::file(path, "expected a JSON array of servicer nodes"));
    };
    if entries.is_empty() {
        return Err(ConfigError::file(path, "lists no servicer nodes; meshd needs at least one key"));
    }
    let fallback = entries[0].as_object().is_some_and(|o| o.contains_key("priv_key") || o.contains_key("servicer_url"));
    let mut parser = Parser { path, addresses: HashMap::new(), urls: HashMap::new(), nodes: Vec::new() };
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(obj) = entry else {
            return Err(parser.err(format!("[{i}]"), "expected an object"));
        };
        if fallback {
            parser.fallback_entry(i, obj)?;
        } else {
            parser.current_entry(i, obj)?;
        }
    }
    Ok(parser.nodes)
}

struct Parser<'a> {
    path: &'a Path,
    /// address → where it was first listed, for duplicate errors.
    addresses: HashMap<String, String>,
    /// normalized URL → (index into `nodes`, where it was first listed).
    urls: HashMap<String, (usize, String)>,
    nodes: Vec<NodeEntry>,
}

impl Parser<'_> {
    fn err(&self, at: String, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, at, message)
    }

    /// `[{"name"?, "url"?, "urls"?, "keys":[…]}]`; at least one of url/urls.
    fn current_entry(&mut self, i: usize, obj: &Map<String, Value>) -> Result<(), ConfigError> {
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(self.err(format!("[{i}].name"), "expected a string")),
        };

        let mut raw_urls: Vec<(String, &str)> = Vec::new();
        match obj.get("url") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => raw_urls.push((format!("[{i}].url"), s)),
            Some(_) => return Err(self.err(format!("[{i}].url"), "expected a URL string")),
        }
        match obj.get("urls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (j, u) in list.iter().enumerate() {
                    match u {
                        Value::String(s) => raw_urls.push((format!("[{i}].urls[{j}]"), s)),
                        _ => return Err(self.err(format!("[{i}].urls[{j}]"), "expected a URL string")),
                    }
                }
            }
            Some(_) => return Err(self.err(format!("[{i}].urls"), "expected an array of URL strings")),
        }
        if raw_urls.is_empty() {
            let hint = if obj.contains_key("priv_key") { " (entry [0] uses the current format; every entry must)" } else { "" };
            return Err(self.err(format!("[{i}]"), format!("needs \"url\" (or \"urls\"): the servicer's base URL{hint}")));
        }

        let mut urls: Vec<String> = Vec::new();
        let mut host = String::new();
        for (at, raw) in &raw_urls {
            let (url, h) = checked_url(raw).map_err(|m| self.err(at.clone(), m))?;
            if host.is_empty() {
                host = h;
            }
            if urls.contains(&url) {
                continue;
            }
            // Two entries for one servicer would make it ambiguous which name/pool owns it.
            if let Some((_, first)) = self.urls.get(&url) {
                return Err(self.err(at.clone(), format!("URL {url} is already used by {first}; list all of a servicer's keys in one entry")));
            }
            self.urls.insert(url.clone(), (self.nodes.len(), at.clone()));
            urls.push(url);
        }

        let keys = match obj.get("keys") {
            Some(Value::Array(list)) if list.is_empty() => return Err(self.err(format!("[{i}].keys"), "must list at least one private key")),
            Some(Value::Array(list)) => list,
            None => {
                let hint = if obj.contains_key("priv_key") { " (entry [0] uses the current format; every entry must)" } else { "" };
                return Err(self.err(format!("[{i}].keys"), format!("missing: expected an array of hex private keys{hint}")));
            }
            Some(_) => return Err(self.err(format!("[{i}].keys"), "expected an array of hex private keys")),
        };
        let mut pairs = Vec::with_capacity(keys.len());
        for (j, k) in keys.iter().enumerate() {
            let at = format!("[{i}].keys[{j}]");
            pairs.push(self.key(at, k)?);
        }
        self.nodes.push(NodeEntry { name: name.unwrap_or(host), urls, keys: pairs });
        Ok(())
    }

    /// `[{"priv_key","servicer_url"}]`: one key per entry; entries with one URL form one node.
    fn fallback_entry(&mut self, i: usize, obj: &Map<String, Value>) -> Result<(), ConfigError> {
        let hint = if obj.contains_key("keys") || obj.contains_key("url") {
            " (entry [0] uses the fallback priv_key/servicer_url format; every entry must)"
        } else {
            ""
        };
        let key_value = obj.get("priv_key").ok_or_else(|| self.err(format!("[{i}].priv_key"), format!("missing: expected a hex private key{hint}")))?;
        let raw_url = match obj.get("servicer_url") {
            Some(Value::String(s)) => s,
            Some(_) => return Err(self.err(format!("[{i}].servicer_url"), "expected a URL string")),
            None => return Err(self.err(format!("[{i}].servicer_url"), format!("missing: expected the servicer's URL{hint}"))),
        };
        let (url, host) = checked_url(raw_url).map_err(|m| self.err(format!("[{i}].servicer_url"), m))?;
        let pair = self.key(format!("[{i}].priv_key"), key_value)?;
        match self.urls.get(&url) {
            Some((node, _)) => self.nodes[*node].keys.push(pair),
            None => {
                self.urls.insert(url.clone(), (self.nodes.len(), format!("[{i}].servicer_url")));
                self.nodes.push(NodeEntry { name: host, urls: vec![url], keys: vec![pair] });
            }
        }
        Ok(())
    }

    /// Decode one key and reject an address seen before, naming both places.
    fn key(&mut self, at: String, value: &Value) -> Result<KeyPair, ConfigError> {
        let Value::String(hex_key) = value else {
            return Err(self.err(at, "expected a hex private key string"));
        };
        let pair = KeyPair::from_hex(hex_key).map_err(|m| self.err(at.clone(), m))?;
        if let Some(first) = self.addresses.get(&pair.address_hex) {
            return Err(self.err(at, format!("address {} is also listed at {first}; each address may appear only once", pair.address_hex)));
        }
        self.addresses.insert(pair.address_hex.clone(), at);
        Ok(pair)
    }
}

/// Validate a servicer URL; returns it without trailing `/` plus its host (the default name).
fn checked_url(raw: &str) -> Result<(String, String), String> {
    let host = super::check_http_url(raw).map_err(|m| format!("{m}, got \"{raw}\""))?;
    Ok((raw.trim_end_matches('/').to_string(), host))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{key_hex, TempDir, ADDR_03};
    use super::*;
    use std::path::PathBuf;

    fn path() -> PathBuf {
        PathBuf::from("key/key.json")
    }

    fn parse(json: &str) -> Result<Vec<NodeEntry>, ConfigError> {
        parse_keys(json, &path())
    }

    /// Asserts the error names the file and entry, and never contains key material.
    fn err(json: &str, at: &str, needle: &str) -> ConfigError {
        let e = parse(json).expect_err(json);
        assert_eq!(e.file, path(), "{json}");
        assert_eq!(e.key.as_deref(), Some(at), "{json}: {e}");
        assert!(e.message.contains(needle), "{json}: {e}");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("key/key.json: {at}: ")), "{shown}");
        for b in 1..=9u8 {
            assert!(!shown.contains(&key_hex(b)[..64]), "error leaked a key: {shown}");
        }
        e
    }

    fn addr(b: u8) -> String {
        KeyPair::from_hex(&key_hex(b)).unwrap().address_hex
    }

    #[test]
    fn current_format() {
        let json = format!(
            r#"[{{"name":"eu-1","url":"http://127.0.0.1:8082/","keys":["{}","{}"],"extra":1}},
                {{"url":"https://localhost:8443","urls":["http://127.0.0.1:9000","https://localhost:8443/"],"keys":["{}"]}}]"#,
            key_hex(3),
            key_hex(4),
            &key_hex(5)[..64]
        );
        let nodes = parse(&json).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].name, "eu-1");
        assert_eq!(nodes[0].urls, ["http://127.0.0.1:8082"]);
        assert_eq!(nodes[0].keys[0].address_hex, ADDR_03);
        assert_eq!(nodes[0].keys[1].address_hex, addr(4));
        assert_eq!(nodes[1].name, "localhost", "name defaults to the first URL's host");
        assert_eq!(nodes[1].urls, ["https://localhost:8443", "http://127.0.0.1:9000"]);
        assert_eq!(nodes[1].keys[0].address_hex, addr(5), "64-hex seed-only keys are accepted");
    }

    #[test]
    fn urls_alone_are_enough() {
        let json = format!(r#"[{{"name":"","urls":["http://127.0.0.1:1"],"keys":["{}"]}}]"#, key_hex(3));
        let nodes = parse(&json).unwrap();
        assert_eq!(nodes[0].urls, ["http://127.0.0.1:1"]);
        assert_eq!(nodes[0].name, "127.0.0.1");
    }

    #[test]
    fn fallback_format_merges_same_url() {
        let json = format!(
            r#"[{{"priv_key":"{}","servicer_url":"http://127.0.0.1:8082"}},
                {{"priv_key":"{}","servicer_url":"http://127.0.0.2:8082"}},
                {{"priv_key":"{}","servicer_url":"http://127.0.0.1:8082/"}}]"#,
            key_hex(3),
            key_hex(4),
            key_hex(5)
        );
        let nodes = parse(&json).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].name, "127.0.0.1");
        assert_eq!(nodes[0].urls, ["http://127.0.0.1:8082"]);
        let a: Vec<_> = nodes[0].keys.iter().map(|k| k.address_hex.clone()).collect();
        assert_eq!(a, [ADDR_03.to_string(), addr(5)]);
        assert_eq!(nodes[1].name, "127.0.0.2");
        assert_eq!(nodes[1].keys[0].address_hex, addr(4));
    }

    #[test]
    fn every_element_is_validated_not_only_the_first() {
        let good = key_hex(3);
        let mut bad_pub = key_hex(4);
        bad_pub.replace_range(64.., &key_hex(5)[64..]);
        let u = "http://127.0.0.1:8082";
        let v = "http://127.0.0.1:8083";
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}","keys":["{good}x"]}}]"#), "[1].keys[0]", "");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}","keys":["{bad_pub}"]}}]"#), "[1].keys[0]", "");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}","keys":["abcd"]}}]"#), "[1].keys[0]", "");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}","keys":[5]}}]"#), "[1].keys[0]", "hex private key");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}","keys":[]}}]"#), "[1].keys", "at least one");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}"}}]"#), "[1].keys", "missing");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}","keys":"{good}"}}]"#), "[1].keys", "array");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"keys":["{}"]}}]"#, key_hex(4)), "[1]", "needs \"url\"");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"ftp://h","keys":["{}"]}}]"#, key_hex(4)), "[1].url", "http://");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"http://","keys":["{}"]}}]"#, key_hex(4)), "[1].url", "no host");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":5,"keys":["{}"]}}]"#, key_hex(4)), "[1].url", "URL string");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}","urls":["x"],"keys":["{}"]}}]"#, key_hex(4)), "[1].urls[0]", "http://");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"url":"{v}","urls":"{v}","keys":["{}"]}}]"#, key_hex(4)), "[1].urls", "array");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},{{"name":7,"url":"{v}","keys":["{}"]}}]"#, key_hex(4)), "[1].name", "string");
        err(&format!(r#"[{{"url":"{u}","keys":["{good}"]}},"x"]"#), "[1]", "object");
    }

    #[test]
    fn fallback_errors() {
        let u = "http://127.0.0.1:8082";
        let k3 = key_hex(3);
        err(&format!(r#"[{{"priv_key":"{k3}","servicer_url":"{u}"}},{{"priv_key":"zz","servicer_url":"{u}"}}]"#), "[1].priv_key", "");
        err(&format!(r#"[{{"priv_key":"{k3}","servicer_url":"{u}"}},{{"servicer_url":"{u}"}}]"#), "[1].priv_key", "missing");
        err(&format!(r#"[{{"priv_key":"{k3}","servicer_url":"{u}"}},{{"priv_key":"{}"}}]"#, key_hex(4)), "[1].servicer_url", "missing");
        err(&format!(r#"[{{"priv_key":"{k3}","servicer_url":"127.0.0.1:8082"}}]"#), "[0].servicer_url", "http://");
        // Mixing formats is rejected with a hint instead of being half-read.
        err(&format!(r#"[{{"priv_key":"{k3}","servicer_url":"{u}"}},{{"url":"{u}","keys":["{}"]}}]"#, key_hex(4)), "[1].priv_key", "fallback");
        err(&format!(r#"[{{"url":"{u}","keys":["{k3}"]}},{{"priv_key":"{}","servicer_url":"{u}"}}]"#, key_hex(4)), "[1]", "current format");
    }

    #[test]
    fn duplicate_address_names_both_places() {
        let u = "http://127.0.0.1:8082";
        let v = "http://127.0.0.1:8083";
        let k3 = key_hex(3);
        let e = err(
            &format!(r#"[{{"url":"{u}","keys":["{}","{k3}"]}},{{"url":"{v}","keys":["{}","{k3}"]}}]"#, key_hex(4), key_hex(5)),
            "[1].keys[1]",
            "[0].keys[1]",
        );
        assert!(e.message.contains(ADDR_03), "{e}");
        // Same key once as seed‖pub and once as seed only: same address, same entry.
        err(&format!(r#"[{{"url":"{u}","keys":["{k3}","{}"]}}]"#, &k3[..64]), "[0].keys[1]", "[0].keys[0]");
        err(&format!(r#"[{{"priv_key":"{k3}","servicer_url":"{u}"}},{{"priv_key":"{k3}","servicer_url":"{v}"}}]"#), "[1].priv_key", "[0].priv_key");
    }

    #[test]
    fn duplicate_url_across_entries_is_ambiguous() {
        let u = "http://127.0.0.1:8082";
        err(&format!(r#"[{{"url":"{u}","keys":["{}"]}},{{"url":"{u}/","keys":["{}"]}}]"#, key_hex(3), key_hex(4)), "[1].url", "[0].url");
        err(
            &format!(r#"[{{"url":"{u}","keys":["{}"]}},{{"url":"http://127.0.0.1:1","urls":["{u}"],"keys":["{}"]}}]"#, key_hex(3), key_hex(4)),
            "[1].urls[0]",
            "[0].url",
        );
    }

    #[test]
    fn whole_file_errors() {
        for (json, needle) in [("{}", "array"), ("[]", "no servicer nodes"), ("[", "invalid JSON")] {
            let e = parse(json).unwrap_err();
            assert_eq!((e.file.as_path(), e.key.as_deref()), (path().as_path(), None));
            assert!(e.message.contains(needle), "{json}: {e}");
        }
    }

    #[test]
    fn load_from_disk() {
        let dir = TempDir::new("keys");
        let p = dir.write("key/key.json", &format!(r#"[{{"url":"http://127.0.0.1:8082","keys":["{}"]}}]"#, key_hex(3)));
        assert_eq!(load_keys(&p).unwrap()[0].keys[0].address_hex, ADDR_03);
        let missing = dir.path().join("key/none.json");
        let e = load_keys(&missing).unwrap_err();
        assert_eq!(e.file, missing);
        assert!(e.message.contains("cannot read"), "{e}");
    }
}
