//! `chains.json`: `[{"id":"0021","url":"http://…","basic_auth":{"username","password"}}]`, the
//! chains meshd relays to, and the optional chain-name map (chain id → label for metrics) in its
//! plain `{"0021":"Ethereum"}` and rich `{"0021":{"label":"Ethereum",…}}` forms.
//! Errors locate the entry; basic-auth passwords are never put in a message.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Hex network id, 1–4 bytes.
    pub id: String,
    pub url: String,
    /// (username, password) when a username is set.
    pub basic_auth: Option<(String, String)>,
}

/// Read and validate a chains file.
pub fn load_chains(path: &Path) -> Result<Vec<Chain>, ConfigError> {
    parse_chains(&super::read_text(path)?, path)
}

/// Parse chains-file text (`path` only names the file in errors). Ids must be 1–4 bytes of hex
/// (Pocket's `ValidateNetworkIdentifier`) and unique; URLs http(s); extra keys are ignored.
/// An empty array is valid here; `load` warns about it.
pub fn parse_chains(json: &str, path: &Path) -> Result<Vec<Chain>, ConfigError> {
    let value = super::parse_json(json, path)?;
    let Value::Array(entries) = value else {
        return Err(ConfigError::file(path, "expected a JSON array of chains"));
    };
    let mut chains = Vec::with_capacity(entries.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let err = |field: &str, msg: String| ConfigError::at(path, format!("[{i}]{field}"), msg);
        let Value::Object(obj) = entry else {
            return Err(err("", "expected an object with \"id\" and \"url\"".into()));
        };
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => return Err(err(".id", format!("expected a hex chain id string, got {}", super::show_value(v)))),
            None => return Err(err(".id", "missing: expected a hex chain id such as \"0021\"".into())),
        };
        check_chain_id(&id).map_err(|m| err(".id", m))?;
        // Compare case-insensitively: "00A1" and "00a1" are the same network bytes.
        if let Some(first) = seen.insert(id.to_ascii_lowercase(), i) {
            return Err(err(".id", format!("chain {id} is already defined at [{first}]")));
        }
        let url = match obj.get("url") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(err(".url", "expected a URL string".into())),
            None => return Err(err(".url", "missing: expected the chain node's http(s) URL".into())),
        };
        // The URL is not echoed: chain URLs often embed provider API keys.
        super::check_http_url(&url).map_err(|m| err(".url", m))?;
        let basic_auth = match obj.get("basic_auth") {
            None | Some(Value::Null) => None,
            Some(Value::Object(auth)) => {
                let username = match auth.get("username") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => return Err(err(".basic_auth.username", "expected a string".into())),
                };
                let password = match auth.get("password") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => return Err(err(".basic_auth.password", "expected a string".into())),
                };
                // Like the incumbent, basic auth is only sent when a username is set.
                (!username.is_empty()).then_some((username, password))
            }
            Some(_) => return Err(err(".basic_auth", "expected an object {\"username\":…,\"password\":…}".into())),
        };
        chains.push(Chain { id, url, basic_auth });
    }
    Ok(chains)
}

/// Pocket network identifier: hex of 1 to 4 bytes.
fn check_chain_id(id: &str) -> Result<(), String> {
    match hex::decode(id) {
        Ok(bytes) if (1..=4).contains(&bytes.len()) => Ok(()),
        _ => Err(format!("chain id must be 1 to 4 bytes of hex (2 to 8 hex digits, e.g. \"0021\"), got \"{id}\"")),
    }
}

/// Read a local chains-name map, plain or rich form, into chain id → label.
pub fn load_chain_names(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    parse_chain_names(&super::read_text(path)?, path)
}

/// Parse chains-name-map text. Each value is a label string or an object with a `label` string
/// (other properties of the rich form are ignored).
pub fn parse_chain_names(json: &str, path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let value = super::parse_json(json, path)?;
    let Value::Object(map) = value else {
        return Err(ConfigError::file(path, "expected a JSON object mapping chain ids to names"));
    };
    let mut names = BTreeMap::new();
    for (id, v) in map {
        let label = match &v {
            Value::String(s) => s.clone(),
            Value::Object(o) => match o.get("label") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(ConfigError::at(path, format!("{id}.label"), "expected a label string")),
            },
            other => {
                return Err(ConfigError::at(
                    path,
                    id,
                    format!("expected a name string or an object with a \"label\", got {}", super::show_value(other)),
                ))
            }
        };
        names.insert(id, label);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::*;
    use std::path::PathBuf;

    fn path() -> PathBuf {
        PathBuf::from("/dd/chains.json")
    }

    fn err(json: &str, at: &str, needle: &str) {
        let e = parse_chains(json, &path()).expect_err(json);
        assert_eq!(e.file, path());
        assert_eq!(e.key.as_deref(), Some(at), "{json}: {e}");
        assert!(e.message.contains(needle), "{json}: {e}");
        assert!(!e.to_string().contains("s3cret"), "password leaked: {e}");
    }

    #[test]
    fn valid_chains() {
        let chains = parse_chains(
            r#"[{"id":"0021","url":"http://127.0.0.1:8545","basic_auth":{"username":"","password":""}},
                {"id":"0001","url":"https://127.0.0.1:8546/rpc","basic_auth":{"username":"u","password":"p"},"extra":true},
                {"id":"03","url":"http://127.0.0.1:1","basic_auth":null},
                {"id":"0A0B0C0D","url":"http://127.0.0.1:2"}]"#,
            &path(),
        )
        .unwrap();
        assert_eq!(chains.len(), 4);
        assert_eq!(chains[0], Chain { id: "0021".into(), url: "http://127.0.0.1:8545".into(), basic_auth: None });
        assert_eq!(chains[1].basic_auth, Some(("u".into(), "p".into())));
        assert_eq!(chains[1].url, "https://127.0.0.1:8546/rpc");
        assert_eq!(chains[2].basic_auth, None);
        assert_eq!(chains[3].id, "0A0B0C0D");
        assert_eq!(parse_chains("[]", &path()).unwrap(), vec![]);
    }

    #[test]
    fn chain_errors_name_the_entry() {
        let ok = r#"{"id":"0021","url":"http://127.0.0.1:8545"}"#;
        err(&format!(r#"[{ok},{{"id":"xyz1","url":"http://127.0.0.1:1"}}]"#), "[1].id", "1 to 4 bytes of hex");
        err(&format!(r#"[{ok},{{"id":"","url":"http://127.0.0.1:1"}}]"#), "[1].id", "1 to 4 bytes");
        err(&format!(r#"[{ok},{{"id":"021","url":"http://127.0.0.1:1"}}]"#), "[1].id", "1 to 4 bytes");
        err(&format!(r#"[{ok},{{"id":"0102030405","url":"http://127.0.0.1:1"}}]"#), "[1].id", "1 to 4 bytes");
        err(&format!(r#"[{ok},{{"id":21,"url":"http://127.0.0.1:1"}}]"#), "[1].id", "got 21");
        err(&format!(r#"[{ok},{{"url":"http://127.0.0.1:1"}}]"#), "[1].id", "missing");
        err(&format!(r#"[{ok},{{"id":"0022"}}]"#), "[1].url", "missing");
        err(&format!(r#"[{ok},{{"id":"0022","url":"ws://127.0.0.1:1"}}]"#), "[1].url", "http://");
        err(&format!(r#"[{ok},{{"id":"0022","url":["x"]}}]"#), "[1].url", "URL string");
        err(&format!(r#"[{ok},{{"id":"0021","url":"http://127.0.0.1:1"}}]"#), "[1].id", "already defined at [0]");
        err(r#"[{"id":"00a1","url":"http://127.0.0.1:1"},{"id":"00A1","url":"http://127.0.0.1:2"}]"#, "[1].id", "[0]");
        err(
            &format!(r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","basic_auth":"u:s3cret"}}]"#),
            "[1].basic_auth",
            "object",
        );
        err(
            &format!(
                r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","basic_auth":{{"username":1,"password":"s3cret"}}}}]"#
            ),
            "[1].basic_auth.username",
            "string",
        );
        err(
            &format!(
                r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","basic_auth":{{"username":"u","password":5}}}}]"#
            ),
            "[1].basic_auth.password",
            "string",
        );
        err(&format!(r#"[{ok},7]"#), "[1]", "object");
    }

    #[test]
    fn chain_file_errors() {
        for (json, needle) in [(r#"{"id":"0021"}"#, "array"), ("", "invalid JSON")] {
            let e = parse_chains(json, &path()).unwrap_err();
            assert_eq!((&e.file, &e.key), (&path(), &None));
            assert!(e.message.contains(needle), "{e}");
        }
    }

    #[test]
    fn name_map_both_forms() {
        let p = PathBuf::from("/dd/names.json");
        let plain = parse_chain_names(r#"{"0021":"Ethereum","0001":"Pocket"}"#, &p).unwrap();
        assert_eq!(plain.get("0021").map(String::as_str), Some("Ethereum"));
        assert_eq!(plain.len(), 2);
        let rich = parse_chain_names(r#"{"0021":{"label":"Ethereum","chain_id":1},"0001":"Pocket"}"#, &p).unwrap();
        assert_eq!(rich, plain);

        let e = parse_chain_names(r#"{"0021":{"name":"x"}}"#, &p).unwrap_err();
        assert_eq!((e.file.as_path(), e.key.as_deref()), (p.as_path(), Some("0021.label")));
        let e = parse_chain_names(r#"{"0021":5}"#, &p).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("0021"));
        assert!(e.message.contains("got 5"), "{e}");
        let e = parse_chain_names(r#"["0021"]"#, &p).unwrap_err();
        assert_eq!(e.key, None);
    }

    #[test]
    fn load_from_disk() {
        let dir = TempDir::new("chains");
        let c = dir.write("chains.json", r#"[{"id":"0021","url":"http://127.0.0.1:8545"}]"#);
        assert_eq!(load_chains(&c).unwrap()[0].id, "0021");
        let n = dir.write("names.json", "\u{feff}{\"0021\":\"Ethereum\"}");
        assert_eq!(load_chain_names(&n).unwrap().get("0021").map(String::as_str), Some("Ethereum"), "BOM is tolerated");
        let missing = dir.path().join("none.json");
        assert_eq!(load_chains(&missing).unwrap_err().file, missing);
        assert_eq!(load_chain_names(&missing).unwrap_err().file, missing);
    }
}
