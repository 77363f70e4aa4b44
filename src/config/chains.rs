//! `chains.json`: `[{"id":"0021","url":"http://…","urls"?:[…],"basic_auth":{"username","password"}}]`,
//! the chains meshd relays to, and the optional chain-name map (chain id → label for metrics) in
//! its plain `{"0021":"Ethereum"}` and rich `{"0021":{"label":"Ethereum",…}}` forms.
//! `urls` is a meshd extension: more endpoints of the same chain, tried in turn when one cannot
//! be reached (see `relay::chain`). Errors locate the entry; basic-auth passwords and chain URLs
//! (which often embed provider API keys) are never put in a message.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Hex network id, 1–4 bytes.
    pub id: String,
    /// The primary endpoint: `url`, or the first of `urls` when `url` is absent.
    pub url: String,
    /// Every endpoint in failover order, starting with `url`; duplicates removed.
    pub urls: Vec<String>,
    /// (username, password) when a username is set.
    pub basic_auth: Option<(String, String)>,
}

/// Read and validate a chains file.
pub fn load_chains(path: &Path) -> Result<Vec<Chain>, ConfigError> {
    parse_chains(&super::read_text(path, super::file::CONFIG_FILE_LIMIT)?, path)
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
        let mut urls: Vec<String> = Vec::new();
        match obj.get("url") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                // The URL is not echoed: chain URLs often embed provider API keys.
                super::check_http_url(s).map_err(|m| err(".url", m))?;
                urls.push(s.clone());
            }
            Some(_) => return Err(err(".url", "expected a URL string".into())),
        }
        match obj.get("urls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (j, u) in list.iter().enumerate() {
                    let Value::String(s) = u else {
                        return Err(err(&format!(".urls[{j}]"), "expected a URL string".into()));
                    };
                    super::check_http_url(s).map_err(|m| err(&format!(".urls[{j}]"), m))?;
                    if !urls.contains(s) {
                        urls.push(s.clone());
                    }
                }
            }
            Some(_) => return Err(err(".urls", "expected an array of URL strings".into())),
        }
        let Some(url) = urls.first().cloned() else {
            return Err(err(".url", "missing: expected the chain node's http(s) URL (\"url\" or \"urls\")".into()));
        };
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
                // Sent in an `Authorization` header: a control character would break every call.
                let printable = "contains a control character (newline, tab, NUL, …); must be printable text";
                if username.chars().any(char::is_control) {
                    return Err(err(".basic_auth.username", printable.into()));
                }
                if password.chars().any(char::is_control) {
                    return Err(err(".basic_auth.password", printable.into()));
                }
                // Like the incumbent, basic auth is only sent when a username is set.
                (!username.is_empty()).then_some((username, password))
            }
            Some(_) => return Err(err(".basic_auth", "expected an object {\"username\":…,\"password\":…}".into())),
        };
        chains.push(Chain { id, url, urls, basic_auth });
    }
    Ok(chains)
}

/// The `chains.json` form of `chains` (what `updatechains` writes and `/v1/private/mesh/chains`
/// returns): the incumbent's `{id,url,basic_auth:{username,password}}`, plus `urls` when a chain
/// has more than one endpoint. Contains passwords: only for the file and authenticated routes.
pub fn chains_to_json(chains: &[Chain]) -> Value {
    Value::Array(chains.iter().map(chain_to_json).collect())
}

pub fn chain_to_json(c: &Chain) -> Value {
    let (username, password) = c.basic_auth.clone().unwrap_or_default();
    let mut obj = serde_json::Map::new();
    obj.insert("id".into(), Value::String(c.id.clone()));
    obj.insert("url".into(), Value::String(c.url.clone()));
    if c.urls.len() > 1 {
        obj.insert("urls".into(), Value::Array(c.urls.iter().cloned().map(Value::String).collect()));
    }
    obj.insert("basic_auth".into(), serde_json::json!({"username": username, "password": password}));
    Value::Object(obj)
}

/// Replace the chains file with `chains` atomically: the JSON goes to a temp file in the same
/// directory, is fsynced, takes the old file's permissions (0600 for a new file: it may hold
/// basic-auth passwords) and is renamed over `path`, so a reader (or a crash) sees either the old
/// or the new file — never a mix (the incumbent rewrites in place without truncating).
/// Returns the bytes written.
pub fn write_chains_file(path: &Path, chains: &[Chain]) -> Result<Vec<u8>, ConfigError> {
    let mut bytes = serde_json::to_vec_pretty(&chains_to_json(chains)).expect("a JSON value serializes");
    bytes.push(b'\n');
    write_replacing(path, &bytes).map_err(|e| ConfigError::file(path, format!("cannot rewrite: {e}")))?;
    Ok(bytes)
}

fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{}.tmp-{}-{nanos}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        if let Ok(old) = std::fs::metadata(path) {
            file.set_permissions(old.permissions())?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself (best effort: not every filesystem lets a directory be synced).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
    parse_chain_names(&super::read_text(path, super::file::CONFIG_FILE_LIMIT)?, path)
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
            other => return Err(ConfigError::at(path, id, format!("expected a name string or an object with a \"label\", got {}", super::show_value(other)))),
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
        assert_eq!(chains[0], Chain { id: "0021".into(), url: "http://127.0.0.1:8545".into(), urls: vec!["http://127.0.0.1:8545".into()], basic_auth: None });
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
        err(&format!(r#"[{ok},{{"id":"0022","urls":[]}}]"#), "[1].url", "missing");
        err(&format!(r#"[{ok},{{"id":"0022","urls":"http://127.0.0.1:1"}}]"#), "[1].urls", "array");
        err(&format!(r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","urls":["http://127.0.0.1:2",5]}}]"#), "[1].urls[1]", "URL string");
        err(&format!(r#"[{ok},{{"id":"0022","urls":["http://127.0.0.1:2","ftp://s3cret@h"]}}]"#), "[1].urls[1]", "http://");
        err(&format!(r#"[{ok},{{"id":"0021","url":"http://127.0.0.1:1"}}]"#), "[1].id", "already defined at [0]");
        err(r#"[{"id":"00a1","url":"http://127.0.0.1:1"},{"id":"00A1","url":"http://127.0.0.1:2"}]"#, "[1].id", "[0]");
        err(&format!(r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","basic_auth":"u:s3cret"}}]"#), "[1].basic_auth", "object");
        err(
            &format!(r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","basic_auth":{{"username":1,"password":"s3cret"}}}}]"#),
            "[1].basic_auth.username",
            "string",
        );
        err(&format!(r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","basic_auth":{{"username":"u","password":5}}}}]"#), "[1].basic_auth.password", "string");
        err(
            &format!(r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","basic_auth":{{"username":"u","password":"s3cret\r\nX: 1"}}}}]"#),
            "[1].basic_auth.password",
            "control character",
        );
        err(
            &format!(r#"[{ok},{{"id":"0022","url":"http://127.0.0.1:1","basic_auth":{{"username":"u\u0000","password":"s3cret"}}}}]"#),
            "[1].basic_auth.username",
            "control character",
        );
        err(&format!(r#"[{ok},7]"#), "[1]", "object");
    }

    #[test]
    fn several_urls_per_chain() {
        let chains = parse_chains(
            r#"[{"id":"0021","url":"http://127.0.0.1:1","urls":["http://127.0.0.1:2","http://127.0.0.1:1"]},
                {"id":"0022","urls":["http://127.0.0.1:3","http://127.0.0.1:4"]}]"#,
            &path(),
        )
        .unwrap();
        assert_eq!(chains[0].url, "http://127.0.0.1:1");
        assert_eq!(chains[0].urls, ["http://127.0.0.1:1", "http://127.0.0.1:2"], "url first, duplicates dropped");
        assert_eq!(chains[1].url, "http://127.0.0.1:3", "url defaults to the first of urls");
        assert_eq!(chains[1].urls.len(), 2);
    }

    #[test]
    fn json_form_round_trips() {
        let text = r#"[{"id":"0021","url":"http://127.0.0.1:1","urls":["http://127.0.0.1:2"],"basic_auth":{"username":"u","password":"p"}},
                       {"id":"0001","url":"http://127.0.0.1:3"}]"#;
        let chains = parse_chains(text, &path()).unwrap();
        let v = chains_to_json(&chains);
        assert_eq!(v[1], serde_json::json!({"id":"0001","url":"http://127.0.0.1:3","basic_auth":{"username":"","password":""}}));
        assert_eq!(v[0]["urls"], serde_json::json!(["http://127.0.0.1:1", "http://127.0.0.1:2"]));
        assert_eq!(parse_chains(&v.to_string(), &path()).unwrap(), chains);
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
    fn rewrite_is_atomic_shorter_and_keeps_permissions() {
        let dir = TempDir::new("chains-write");
        let long = r#"[{"id":"0021","url":"http://127.0.0.1:8545","basic_auth":{"username":"a-long-user-name","password":"a-long-password"}},
                       {"id":"0001","url":"http://127.0.0.1:8546"},{"id":"0002","url":"http://127.0.0.1:8547"}]"#;
        let p = dir.write("chains.json", long);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let short = parse_chains(r#"[{"id":"0003","url":"http://127.0.0.1:1"}]"#, &p).unwrap();
        write_chains_file(&p, &short).unwrap();
        assert_eq!(load_chains(&p).unwrap(), short, "no trailing bytes of the longer old file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("chains.json")], "no temp file left behind");
        let blocked = dir.write("file", "x").join("chains.json");
        assert_eq!(write_chains_file(&blocked, &short).unwrap_err().file, blocked);
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
