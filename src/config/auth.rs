//! Auth token files `{"Value": "...", "Issued": "..."}` (Go `sdk.AuthToken`, no JSON tags).
//! `servicer_auth_token_file` holds the token meshd sends to servicers; `auth_token_file` the
//! token meshd requires on its own private routes, created at first start. Unlike the
//! incumbent, a missing or empty token never means "no auth" (reference geo-mesh §8.6).
//! Token values never appear in messages.

use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;

use super::ConfigError;

/// Length of tokens made by [`create_token`].
pub const TOKEN_LEN: usize = 32;

/// Read a token file. Missing file → `Ok(None)`; unreadable file, bad JSON, or a missing/empty
/// `Value` → error. Like Go's decoder, `Value` is matched exactly first, then case-insensitively
/// (`value`, `VALUE`); `Issued` and other keys are ignored.
pub fn read_token(path: &Path) -> Result<Option<String>, ConfigError> {
    let bytes = match super::file::read_bounded(path, super::file::CONFIG_FILE_LIMIT) {
        Ok(b) => b,
        Err(super::file::ReadError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = super::file::text_of(bytes, path)?;
    let Value::Object(map) = super::parse_json(&text, path)? else {
        return Err(ConfigError::file(path, "expected a JSON object {\"Value\":\"<token>\",\"Issued\":\"<time>\"}"));
    };
    let value = map.get("Value").or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")).map(|(_, v)| v));
    match value {
        // A control character (newline, NUL, …) cannot travel in an HTTP header: the token would
        // fail on every call, or split the header. Refused here, naming the file.
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(ConfigError::at(path, "Value", "contains a control character (newline, tab, NUL, …); a token must be printable text"))
        }
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ConfigError::at(path, "Value", "is empty; a token file must hold a token")),
        Some(_) => Err(ConfigError::at(path, "Value", "expected the token as a string")),
        None => Err(ConfigError::at(path, "Value", "missing: expected {\"Value\":\"<token>\",\"Issued\":\"<time>\"}")),
    }
}

/// Create (or replace) a token file with a fresh random token and return the token. The file is
/// `{"Value":…,"Issued":<RFC 3339 UTC now>}`, mode 0600, written to a temp file in the same
/// directory and renamed over `path` so readers never see a partial file. Parent directories
/// are created.
pub fn create_token(path: &Path) -> Result<String, ConfigError> {
    let token = random_token().map_err(|e| ConfigError::file(path, format!("cannot generate a token: {e}")))?;
    let body = serde_json::json!({ "Value": token, "Issued": rfc3339_utc_now() }).to_string();
    write_atomic(path, body.as_bytes()).map_err(|e| ConfigError::file(path, format!("cannot write token file: {e}")))?;
    Ok(token)
}

/// `TOKEN_LEN` characters from [A-Za-z0-9], uniform (bytes ≥ 248 are rejected so `% 62` has
/// no bias), from the kernel's CSPRNG; the loop is bounded in case the source misbehaves.
fn random_token() -> std::io::Result<String> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut token = String::with_capacity(TOKEN_LEN);
    let mut buf = [0u8; 64];
    for _ in 0..16 {
        urandom.read_exact(&mut buf)?;
        for &b in &buf {
            if b < 248 {
                token.push(ALPHABET[(b % 62) as usize] as char);
                if token.len() == TOKEN_LEN {
                    return Ok(token);
                }
            }
        }
    }
    Err(std::io::Error::other("/dev/urandom returned too few usable bytes"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{}.tmp-{}-{nanos}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Current UTC time as RFC 3339 (`2024-01-02T03:04:05Z`), which Go's `time.Time` decodes.
fn rfc3339_utc_now() -> String {
    crate::timefmt::rfc3339_secs(crate::timefmt::unix_secs(std::time::SystemTime::now()))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::*;

    #[test]
    fn missing_file_is_none() {
        let dir = TempDir::new("auth-missing");
        assert_eq!(read_token(&dir.path().join("auth/none.json")), Ok(None));
    }

    #[test]
    fn reads_go_and_lowercase_field_names() {
        let dir = TempDir::new("auth-read");
        let p = dir.write("a.json", r#"{"Value":"S6fvg51BOeUO89HafOhF6jPuT","Issued":"2022-09-29T00:00:00.000000000-00:00"}"#);
        assert_eq!(read_token(&p).unwrap().as_deref(), Some("S6fvg51BOeUO89HafOhF6jPuT"));
        let p = dir.write("b.json", r#"{"value":"lower","issued":"x"}"#);
        assert_eq!(read_token(&p).unwrap().as_deref(), Some("lower"));
        let p = dir.write("c.json", r#"{"VALUE":"upper"}"#);
        assert_eq!(read_token(&p).unwrap().as_deref(), Some("upper"));
        let p = dir.write("d.json", r#"{"value":"second","Value":"exact"}"#);
        assert_eq!(read_token(&p).unwrap().as_deref(), Some("exact"));
    }

    #[test]
    fn bad_files_are_errors_without_the_token() {
        let dir = TempDir::new("auth-bad");
        for (name, body, key, needle) in [
            ("empty.json", r#"{"Value":"","Issued":"2024-01-01T00:00:00Z"}"#, Some("Value"), "empty"),
            ("novalue.json", r#"{"Issued":"2024-01-01T00:00:00Z"}"#, Some("Value"), "missing"),
            ("number.json", r#"{"Value":12345}"#, Some("Value"), "string"),
            ("array.json", r#"["tok-secret"]"#, None, "object"),
            ("bad.json", r#"{"Value":"tok-secret""#, None, "invalid JSON"),
            ("zero.json", "", None, "invalid JSON"),
            ("newline.json", r#"{"Value":"tok-secret\n"}"#, Some("Value"), "control character"),
            ("nul.json", r#"{"Value":"tok-\u0000secret"}"#, Some("Value"), "control character"),
        ] {
            let p = dir.write(name, body);
            let e = read_token(&p).expect_err(name);
            assert_eq!(e.file, p, "{name}");
            assert_eq!(e.key.as_deref(), key, "{name}");
            assert!(e.message.contains(needle), "{name}: {e}");
            assert!(!e.to_string().contains("tok-secret"), "{name}: token leaked: {e}");
        }
    }

    #[test]
    fn create_then_read_round_trip_with_mode_0600() {
        let dir = TempDir::new("auth-create");
        let p = dir.path().join("auth/nested/mesh.json");
        let token = create_token(&p).unwrap();
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
        assert_eq!(read_token(&p).unwrap().as_deref(), Some(token.as_str()));

        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let issued = v["Issued"].as_str().unwrap();
        assert_eq!(issued.len(), 20, "{issued}");
        assert!(issued.ends_with('Z') && &issued[4..5] == "-" && &issued[10..11] == "T", "{issued}");
        assert!(issued.as_bytes()[..4].iter().all(u8::is_ascii_digit) && &issued[..2] == "20", "{issued}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }

        // Replacing gives a new token and leaves no temp files behind.
        let second = create_token(&p).unwrap();
        assert_ne!(second, token);
        assert_eq!(read_token(&p).unwrap().as_deref(), Some(second.as_str()));
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("mesh.json")]);
    }

    #[test]
    fn create_reports_unwritable_path() {
        let dir = TempDir::new("auth-unwritable");
        let blocker = dir.write("file", "x");
        let p = blocker.join("mesh.json");
        let e = create_token(&p).unwrap_err();
        assert_eq!(e.file, p);
        assert!(e.message.contains("cannot write"), "{e}");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(crate::timefmt::rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(crate::timefmt::rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(crate::timefmt::rfc3339_secs(1_704_067_199), "2023-12-31T23:59:59Z");
        assert_eq!(crate::timefmt::rfc3339_secs(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(crate::timefmt::rfc3339_secs(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
