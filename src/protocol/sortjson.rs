//! `json_sort_relay_responses`: Go's `sortJSONResponse` — a JSON object is decoded into
//! `map[string]interface{}` and re-marshalled (sorted keys, float64 numbers, HTML escaping);
//! anything else (arrays/batches, non-JSON) is returned verbatim.
//!
//! The decoder is hand-written rather than serde_json because Go's `Unmarshal` accepts things
//! serde_json rejects and the output must match Go's: lone UTF-16 surrogate escapes and invalid
//! UTF-8 inside strings become U+FFFD, nesting is allowed up to Go's 10000 levels, numbers are
//! float64 (values that overflow it are an error, as in Go), duplicate keys keep the last value.

use serde_json::{Map, Number, Value};

/// Go's `maxNestingDepth` in `encoding/json/scanner.go`.
const MAX_NESTING_DEPTH: usize = 10_000;

pub fn sort_json_response(body: &str) -> String {
    match sorted(body.as_bytes()) {
        // `sorted` only produces Go-encoded (hence valid UTF-8) output.
        Some(out) => String::from_utf8(out).expect("gojson output is UTF-8"),
        None => body.to_string(),
    }
}

/// Byte variant for upstream bodies that are not guaranteed UTF-8: Go decodes such bytes inside
/// JSON strings as U+FFFD (one per invalid byte); a non-object or invalid body is returned as is.
pub fn sort_json_response_bytes(body: &[u8]) -> Vec<u8> {
    sorted(body).unwrap_or_else(|| body.to_vec())
}

/// `Some(re-encoded)` when Go's `Unmarshal` into a map succeeds, `None` when Go returns the body verbatim.
fn sorted(body: &[u8]) -> Option<Vec<u8>> {
    let mut parser = Parser { b: body, i: 0 };
    parser.skip_ws();
    let value = parser.document().ok()?;
    parser.skip_ws();
    let out = if parser.i != body.len() {
        None
    } else {
        match &value {
            Value::Object(_) => Some(super::gojson::to_vec(&value)),
            // `null` leaves the map nil without error, and Go marshals a nil map as `null`.
            Value::Null => Some(b"null".to_vec()),
            // Any other top-level type is an UnmarshalTypeError.
            _ => None,
        }
    };
    dispose(value);
    out
}

/// Drop a value without recursion: serde_json's `Drop` recurses per nesting level, which
/// 10000 levels would turn into a stack overflow on a small thread stack.
fn dispose(v: Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

/// Any syntax error, overflowing number or excessive nesting (all make Go return the body verbatim).
struct Invalid;

/// An open container while parsing; objects carry the key whose value is being parsed.
enum Frame {
    Array(Vec<Value>),
    Object(Map<String, Value>, String),
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, Invalid> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(Invalid)
        }
    }

    /// One complete JSON value starting at `self.i`. Iterative with an explicit frame stack so
    /// depth is bounded by Go's limit, not by the thread stack.
    fn document(&mut self) -> Result<Value, Invalid> {
        let mut stack: Vec<Frame> = Vec::new();
        let result = self.parse_with(&mut stack);
        // On error, open frames still own finished subtrees: release them without recursion.
        for frame in stack {
            match frame {
                Frame::Array(items) => items.into_iter().for_each(dispose),
                Frame::Object(map, _) => map.into_iter().for_each(|(_, v)| dispose(v)),
            }
        }
        result
    }

    fn parse_with(&mut self, stack: &mut Vec<Frame>) -> Result<Value, Invalid> {
        loop {
            // Start of a value.
            self.skip_ws();
            let c = self.peek().ok_or(Invalid)?;
            if matches!(c, b'{' | b'[') && stack.len() + 1 > MAX_NESTING_DEPTH {
                return Err(Invalid);
            }
            let mut value = match c {
                b'{' => {
                    self.i += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        Value::Object(Map::new())
                    } else {
                        let key = self.key()?;
                        stack.push(Frame::Object(Map::new(), key));
                        continue;
                    }
                }
                b'[' => {
                    self.i += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        Value::Array(Vec::new())
                    } else {
                        stack.push(Frame::Array(Vec::new()));
                        continue;
                    }
                }
                b'"' => Value::String(self.string()?),
                b't' => self.literal(b"true", Value::Bool(true))?,
                b'f' => self.literal(b"false", Value::Bool(false))?,
                b'n' => self.literal(b"null", Value::Null)?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(Invalid),
            };
            // A value is complete: store it in its parent, closing parents as far as possible.
            loop {
                // Each arm either continues with the next sibling (`break`) or closes the parent.
                match stack.last_mut() {
                    None => return Ok(value),
                    Some(Frame::Array(items)) => {
                        items.push(value);
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => {
                                self.i += 1;
                                break;
                            }
                            Some(b']') => self.i += 1,
                            _ => return Err(Invalid),
                        }
                    }
                    Some(Frame::Object(map, key)) => {
                        // Last duplicate wins, as with Go's map assignment.
                        if let Some(old) = map.insert(std::mem::take(key), value) {
                            dispose(old);
                        }
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => {
                                self.i += 1;
                                self.skip_ws();
                                *key = self.key()?;
                                break;
                            }
                            Some(b'}') => self.i += 1,
                            _ => return Err(Invalid),
                        }
                    }
                }
                value = match stack.pop().expect("frame present") {
                    Frame::Array(items) => Value::Array(items),
                    Frame::Object(map, _) => Value::Object(map),
                };
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Result<String, Invalid> {
        if self.peek() != Some(b'"') {
            return Err(Invalid);
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(Invalid);
        }
        self.i += 1;
        Ok(key)
    }

    /// JSON number grammar `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`, decoded as float64.
    fn number(&mut self) -> Result<Value, Invalid> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - s
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(Invalid),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(Invalid);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(Invalid);
            }
        }
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| Invalid)?;
        // Rust's parse is correctly rounded like strconv.ParseFloat; Go errors (ErrRange) where
        // the result would be infinite, and underflow quietly gives 0 in both.
        let f: f64 = text.parse().map_err(|_| Invalid)?;
        Number::from_f64(f).map(Value::Number).ok_or(Invalid)
    }

    /// A string at `self.i` (opening quote), decoded like Go's `unquote`.
    fn string(&mut self) -> Result<String, Invalid> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek().ok_or(Invalid)?;
            match c {
                b'"' => {
                    self.i += 1;
                    // Everything pushed is valid UTF-8 by construction.
                    return String::from_utf8(out).map_err(|_| Invalid);
                }
                b'\\' => {
                    self.i += 1;
                    let e = self.peek().ok_or(Invalid)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let r = self.hex4().ok_or(Invalid)?;
                            let ch = if (0xd800..0xe000).contains(&r) {
                                // A high surrogate combines with an immediately following
                                // `\uDC00-\uDFFF`; anything else (lone high or low) is U+FFFD
                                // and the following escape is left for the next iteration.
                                let low = self.escaped_u4_at(self.i);
                                match low {
                                    Some(lo) if (0xd800..0xdc00).contains(&r) && (0xdc00..0xe000).contains(&lo) => {
                                        self.i += 6;
                                        char::from_u32(0x10000 + ((r - 0xd800) << 10) + (lo - 0xdc00)).ok_or(Invalid)?
                                    }
                                    _ => '\u{fffd}',
                                }
                            } else {
                                char::from_u32(r).ok_or(Invalid)?
                            };
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(Invalid),
                    }
                }
                0x00..=0x1f => return Err(Invalid),
                0x20..=0x7f => {
                    out.push(c);
                    self.i += 1;
                }
                _ => {
                    // Go's utf8.DecodeRune: a valid sequence is copied, otherwise exactly one
                    // byte is consumed and replaced by U+FFFD.
                    let len = match c {
                        0xc2..=0xdf => 2,
                        0xe0..=0xef => 3,
                        0xf0..=0xf4 => 4,
                        _ => 0,
                    };
                    let end = self.i + len;
                    if len > 0 && end <= self.b.len() && std::str::from_utf8(&self.b[self.i..end]).is_ok() {
                        out.extend_from_slice(&self.b[self.i..end]);
                        self.i = end;
                    } else {
                        out.extend_from_slice("\u{fffd}".as_bytes());
                        self.i += 1;
                    }
                }
            }
        }
    }

    /// Four hex digits at `self.i`, consumed.
    fn hex4(&mut self) -> Option<u32> {
        let v = self.b.get(self.i..self.i + 4)?;
        let s = std::str::from_utf8(v).ok()?;
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(s, 16).ok()
    }

    /// Go's `getu4`: the value of a `\uXXXX` escape starting at `at`, not consumed.
    fn escaped_u4_at(&self, at: usize) -> Option<u32> {
        let v = self.b.get(at..at + 6)?;
        if v[0] != b'\\' || v[1] != b'u' || !v[2..].iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(&v[2..]).ok()?, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_sorted_compacted_and_html_escaped() {
        assert_eq!(
            sort_json_response("{\"jsonrpc\": \"2.0\",\n \"result\": \"0xdd03e4\", \"id\": 3905054414}\n"),
            r#"{"id":3905054414,"jsonrpc":"2.0","result":"0xdd03e4"}"#
        );
        assert_eq!(
            sort_json_response(r#"{"b":{"y":[1,{"d":2,"c":3}],"x":"<a&b>"},"a":null}"#),
            r#"{"a":null,"b":{"x":"\u003ca\u0026b\u003e","y":[1,{"c":3,"d":2}]}}"#
        );
        // Numbers become float64: big ints lose precision, exponents are rewritten.
        assert_eq!(
            sort_json_response(r#"{"n":12345678901234567890,"e":1E3,"t":1e21,"s":0.0000001,"z":-0,"f":1.50}"#),
            r#"{"e":1000,"f":1.5,"n":12345678901234567000,"s":1e-7,"t":1e+21,"z":-0}"#
        );
        // \b and \f come out as Go 1.21's \u0008 / \u000c, "\/" as "/".
        assert_eq!(sort_json_response(r#"{"k":"\b\f\/\u2028"}"#), r#"{"k":"\u0008\u000c/\u2028"}"#);
        // Duplicate keys: last wins.
        assert_eq!(sort_json_response(r#"{"a":1,"a":2}"#), r#"{"a":2}"#);
        assert_eq!(sort_json_response(" {} \r\n\t"), "{}");
        // Top-level null: Go leaves the map nil and marshals it as null.
        assert_eq!(sort_json_response(" null\n"), "null");
    }

    #[test]
    fn non_objects_and_invalid_json_are_verbatim() {
        for body in [
            "[{\"b\":1,\"a\":2}]\n",
            "[]",
            "\"string\"",
            "42",
            "true",
            "not json",
            "",
            "   ",
            "{\"a\":1} x",
            "{\"a\":1}{}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":-}",
            "{\"a\":1e}",
            "{\"a\":\"\t\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":1e400}",
            "{'a':1}",
            "{\"a\":tru}",
            "{\"a\" 1}",
            "\u{feff}{\"a\":1}",
        ] {
            assert_eq!(sort_json_response(body), body, "{body:?}");
        }
    }

    #[test]
    fn surrogates_and_invalid_utf8_follow_go() {
        // Valid pair combines.
        assert_eq!(sort_json_response(r#"{"k":"\ud83d\ude00"}"#), "{\"k\":\"😀\"}");
        // Lone high, lone low, high followed by a non-low escape: U+FFFD, next escape kept.
        assert_eq!(sort_json_response(r#"{"k":"\ud83dx"}"#), "{\"k\":\"\u{fffd}x\"}");
        assert_eq!(sort_json_response(r#"{"k":"\ude00\ude00"}"#), "{\"k\":\"\u{fffd}\u{fffd}\"}");
        assert_eq!(sort_json_response(r#"{"k":"\ud83d\u0041"}"#), "{\"k\":\"\u{fffd}A\"}");
        assert_eq!(sort_json_response(r#"{"k":"\ud83d\n"}"#), "{\"k\":\"\u{fffd}\\n\"}");
        // Invalid UTF-8 in a string: one U+FFFD per bad byte (truncated E2 82 gives two).
        let body = b"{\"k\":\"a\xe2\x82b\xffc\xc3\xa9\"}";
        assert_eq!(sort_json_response_bytes(body), "{\"k\":\"a\u{fffd}\u{fffd}b\u{fffd}c\u{e9}\"}".as_bytes());
        // Invalid UTF-8 outside strings is a syntax error: verbatim.
        let bad = b"{\"k\":1}\xff";
        assert_eq!(sort_json_response_bytes(bad), bad.to_vec());
        assert_eq!(sort_json_response_bytes(b"[1]"), b"[1]".to_vec());
    }

    #[test]
    fn nesting_limit_is_gos_and_fits_a_small_thread_stack() {
        let nested = |depth: usize| format!("{{\"a\":{}1{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1));
        // Run on a 2 MiB stack (Rust's default for spawned threads) to prove deep input is safe there.
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let ok = nested(MAX_NESTING_DEPTH);
                assert_eq!(sort_json_response(&ok), ok);
                let ok_spaced = ok.replacen(':', ": ", 1);
                assert_eq!(sort_json_response(&ok_spaced), ok);
                let too_deep = nested(MAX_NESTING_DEPTH + 1).replacen(':', ": ", 1);
                assert_eq!(sort_json_response(&too_deep), too_deep);
                // Deep values dropped on the error paths (trailing garbage, late syntax error).
                let trailing = format!("{ok} x");
                assert_eq!(sort_json_response(&trailing), trailing);
                let late_error = format!("{{\"a\":{}1{},}}", "[".repeat(9000), "]".repeat(9000));
                assert_eq!(sort_json_response(&late_error), late_error);
            })
            .unwrap();
        handle.join().unwrap();
    }
}
