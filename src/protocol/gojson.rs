//! A writer reproducing Go 1.21 `encoding/json` output byte for byte: string escaping
//! (HTML-safe, `\u0008`, `\u000c`, U+2028/9), sorted map keys, float64 number formatting.

/// Append `s` as a Go-encoded JSON string (with quotes).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    let _ = (out, s);
    todo!()
}

/// Append a JSON value the way Go re-encodes a `map[string]interface{}` after `Unmarshal`:
/// object keys sorted bytewise, numbers as float64 (Go's 'f'/'e' choice), strings Go-escaped.
pub fn write_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    let _ = (out, v);
    todo!()
}
