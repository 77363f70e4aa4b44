//! The HTTP payload carried inside relays: `POKTHTTPRequest` (in `RelayRequest.payload`) and
//! `POKTHTTPResponse` (in `RelayResponse.payload`), package `sdk.types` (reference §1.4).
//!
//! The gateway and the reference RelayMiner marshal these with protobuf-go and
//! `proto.MarshalOptions{Deterministic: true}` (§1.4). We encode the same bytes:
//! - fields in ascending field number; empty scalars (string, bytes, zero ints) omitted;
//! - `header` (`map<string, Header>`, field 2) as one length-delimited entry per key, **sorted by
//!   key** (bytewise, as Go's `sort.Slice` over string keys does), each entry being the message
//!   `{1: key string, 2: Header}`;
//! - inside a map entry, protobuf-go writes the key and the value **unconditionally**: its map
//!   coder uses the per-value coders (no zero check) for the key and always writes the value's tag
//!   and length for a message value (`internal/impl/codec_map.go` `appendMapItem`). So an empty key
//!   is `0a 00` and an empty `Header` is `12 00`; we do the same, so that our bytes are a fixed
//!   point of Go's unmarshal→marshal;
//! - `Header.values` is a repeated string: every element is written, empty ones included.
//!
//! Decoding is tolerant, as protobuf-go's is: unknown fields are skipped, and a known field with an
//! unexpected wire type is skipped as unknown. A map key seen twice keeps the last entry (Go's
//! `SetMapIndex`). Strings must be UTF-8 (protobuf-go validates proto3 strings).

use super::proto::{as_string, decoded, fields, put_bytes, put_key, put_message, put_u64, put_varint, DecodeError, Value};
use std::collections::BTreeMap;

/// `sdk.types.Header`: one HTTP header name with all its values in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub key: String,         // 1
    pub values: Vec<String>, // 2, repeated
}

/// `sdk.types.POKTHTTPRequest`: the backend request a gateway asks the supplier to make (§1.4).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct POKTHTTPRequest {
    pub method: String,                    // 1
    pub headers: BTreeMap<String, Header>, // 2, `header`
    /// "URL with all its components"; the RelayMiner keeps only its path and query (§1.4).
    pub url: String, // 3
    pub body: Vec<u8>,                     // 4, `body_bz`
}

/// `sdk.types.POKTHTTPResponse`: the backend's answer, wrapped by the supplier (§1.4).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct POKTHTTPResponse {
    pub status_code: u32,                  // 1
    pub headers: BTreeMap<String, Header>, // 2, `header`
    pub body: Vec<u8>,                     // 3, `body_bz`
}

/// A length-delimited field written even when empty (map-entry keys, repeated-string elements).
fn put_bytes_always(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

impl Header {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_bytes(out, 1, self.key.as_bytes());
        for v in &self.values {
            put_bytes_always(out, 2, v.as_bytes());
        }
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match (field, v) {
                (1, v @ Value::Len(_)) => self.key = as_string(v)?,
                (2, v @ Value::Len(_)) => self.values.push(as_string(v)?),
                _ => {}
            }
            Ok(())
        })
    }
}

/// Writes a `map<string, Header>` at `field` the deterministic way (module doc).
fn put_header_map(out: &mut Vec<u8>, field: u32, map: &BTreeMap<String, Header>) {
    // BTreeMap<String, _> iterates in bytewise key order, which is Go's string order.
    for (key, header) in map {
        put_message(out, field, |entry| {
            put_bytes_always(entry, 1, key.as_bytes());
            put_message(entry, 2, |o| header.encode_into(o));
        });
    }
}

/// Decodes one map entry and inserts it (the last entry for a key wins).
fn merge_header_entry(map: &mut BTreeMap<String, Header>, entry: &[u8]) -> Result<(), DecodeError> {
    let mut key = String::new();
    let mut header = Header::default();
    fields(entry, |field, v| {
        match (field, v) {
            (1, v @ Value::Len(_)) => key = as_string(v)?,
            // A value seen twice merges into the same message, as protobuf-go unmarshals into one pointer.
            (2, Value::Len(b)) => header.merge(b)?,
            _ => {}
        }
        Ok(())
    })?;
    map.insert(key, header);
    Ok(())
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: the first letter and every letter after a hyphen upper
/// case, the rest lower case; a name with a byte that is not an HTTP token byte is left unchanged.
/// Go's `http.Header`, from which the reference RelayMiner fills `header`, holds canonical keys.
pub fn canonical_header_key(name: &str) -> String {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return name.to_owned();
    }
    let mut upper = true;
    name.bytes()
        .map(|b| {
            let c = if upper { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() };
            upper = b == b'-';
            c as char
        })
        .collect()
}

/// Builds the header map from (name, value) pairs: names are canonicalised
/// ([`canonical_header_key`]), so repeated names (in any case) merge into one `Header` whose values
/// keep their order of appearance, as Go's `http.Header.Values` lists them.
pub fn headers_from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<String, Header> {
    let mut map: BTreeMap<String, Header> = BTreeMap::new();
    for (name, value) in pairs {
        let key = canonical_header_key(name.as_ref());
        let h = map.entry(key.clone()).or_insert_with(|| Header { key, values: Vec::new() });
        h.values.push(value.as_ref().to_owned());
    }
    map
}

/// The values of a header, looked up by its canonical name.
fn values_of<'a>(map: &'a BTreeMap<String, Header>, name: &str) -> Option<&'a [String]> {
    map.get(&canonical_header_key(name)).map(|h| h.values.as_slice())
}

impl POKTHTTPRequest {
    /// A request from its parts; `headers` as (name, value) pairs merged by [`headers_from_pairs`].
    pub fn new<K: AsRef<str>, V: AsRef<str>>(method: &str, url: &str, headers: impl IntoIterator<Item = (K, V)>, body: Vec<u8>) -> Self {
        POKTHTTPRequest { method: method.to_owned(), headers: headers_from_pairs(headers), url: url.to_owned(), body }
    }

    /// The deterministic encoding (module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, 1, self.method.as_bytes());
        put_header_map(&mut out, 2, &self.headers);
        put_bytes(&mut out, 3, self.url.as_bytes());
        put_bytes(&mut out, 4, &self.body);
        out
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match (field, v) {
                (1, v @ Value::Len(_)) => self.method = as_string(v)?,
                (2, Value::Len(entry)) => merge_header_entry(&mut self.headers, entry)?,
                (3, v @ Value::Len(_)) => self.url = as_string(v)?,
                (4, Value::Len(b)) => self.body = b.to_vec(),
                _ => {}
            }
            Ok(())
        })
    }

    /// Decodes a request payload (`DeserializeHTTPRequest`).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        decoded(buf, Self::merge)
    }

    /// The values of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&[String]> {
        values_of(&self.headers, name)
    }
}

impl POKTHTTPResponse {
    /// A response from the backend's status, headers as (name, value) pairs (repeated names merged
    /// in order, [`headers_from_pairs`]) and body: what the supplier wraps (§1.4).
    pub fn from_parts<K: AsRef<str>, V: AsRef<str>>(status_code: u16, headers: impl IntoIterator<Item = (K, V)>, body: Vec<u8>) -> Self {
        POKTHTTPResponse { status_code: u32::from(status_code), headers: headers_from_pairs(headers), body }
    }

    /// The deterministic encoding (module doc); these bytes become `RelayResponse.payload`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, 1, u64::from(self.status_code));
        put_header_map(&mut out, 2, &self.headers);
        put_bytes(&mut out, 3, &self.body);
        out
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match (field, v) {
                (1, Value::Varint(x)) => self.status_code = x as u32, // protobuf-go truncates to uint32
                (2, Value::Len(entry)) => merge_header_entry(&mut self.headers, entry)?,
                (3, Value::Len(b)) => self.body = b.to_vec(),
                _ => {}
            }
            Ok(())
        })
    }

    /// Decodes a response payload (`DeserializeHTTPResponse`).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        decoded(buf, Self::merge)
    }

    /// The values of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&[String]> {
        values_of(&self.headers, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-assembled encoding: status 200, one header, body `{}`.
    #[test]
    fn shannon_payload_response_bytes() {
        let r = POKTHTTPResponse::from_parts(200, [("content-type", "application/json")], b"{}".to_vec());
        let header = [&[0x0a, 12][..], b"Content-Type", &[0x12, 16], b"application/json"].concat();
        assert_eq!(header.len(), 32);
        let entry = [&[0x0a, 12][..], b"Content-Type", &[0x12, 32], &header].concat();
        assert_eq!(entry.len(), 48);
        let expected = [&[0x08, 0xc8, 0x01][..], &[0x12, 48], &entry, &[0x1a, 0x02, b'{', b'}']].concat();
        assert_eq!(r.encode(), expected);
        assert_eq!(POKTHTTPResponse::decode(&expected).unwrap(), r);
        assert_eq!(POKTHTTPResponse::default().encode(), Vec::<u8>::new(), "all fields empty: nothing written");
    }

    /// A request with every field, byte by byte.
    #[test]
    fn shannon_payload_request_bytes() {
        let r = POKTHTTPRequest::new("POST", "http://x/y", [("A", "")], b"1".to_vec());
        // header A with one empty value: the empty element is still written (repeated string)
        let header = vec![0x0a, 1, b'A', 0x12, 0];
        let entry = [&[0x0a, 1, b'A', 0x12, header.len() as u8][..], &header].concat();
        let expected = [&[0x0a, 4][..], b"POST", &[0x12, entry.len() as u8], &entry, &[0x1a, 10], b"http://x/y", &[0x22, 1, b'1']].concat();
        assert_eq!(r.encode(), expected);
        assert_eq!(POKTHTTPRequest::decode(&expected).unwrap(), r);
    }

    /// Inside a map entry the key and the value are written even when empty (protobuf-go
    /// `appendMapItem`), so those bytes survive Go's unmarshal→marshal unchanged.
    #[test]
    fn shannon_payload_map_entry_empty_key_and_value() {
        let mut r = POKTHTTPResponse::default();
        r.headers.insert(String::new(), Header::default());
        assert_eq!(r.encode(), vec![0x12, 0x04, 0x0a, 0x00, 0x12, 0x00]);
        assert_eq!(POKTHTTPResponse::decode(&r.encode()).unwrap(), r);
        // an entry with neither key nor value decodes to ("", empty Header) and re-encodes canonically
        let sparse = POKTHTTPResponse::decode(&[0x12, 0x00]).unwrap();
        assert_eq!(sparse, r);
    }

    /// Map entries come out sorted by key (bytewise), whatever the insertion order; repeated names
    /// merge in order, case-insensitively through the canonical key.
    #[test]
    fn shannon_payload_deterministic_order_and_merge() {
        let pairs = [("x-b", "1"), ("Accept", "a"), ("set-cookie", "c1"), ("X-A", "2"), ("Set-Cookie", "c2"), ("SET-COOKIE", "c3")];
        let a = POKTHTTPResponse::from_parts(201, pairs, vec![]);
        let mut reversed = pairs;
        reversed.reverse();
        let b = POKTHTTPResponse::from_parts(201, reversed, vec![]);
        let keys: Vec<&str> = a.headers.keys().map(String::as_str).collect();
        assert_eq!(keys, ["Accept", "Set-Cookie", "X-A", "X-B"]);
        assert_eq!(a.header("set-cookie").unwrap(), ["c1", "c2", "c3"]);
        assert_eq!(b.header("Set-Cookie").unwrap(), ["c3", "c2", "c1"]);
        assert_eq!(a.headers["X-A"].key, "X-A");
        // the entries appear on the wire in key order
        let wire = a.encode();
        let pos = |needle: &[u8]| wire.windows(needle.len()).position(|w| w == needle).unwrap();
        assert!(pos(b"Accept") < pos(b"Set-Cookie") && pos(b"Set-Cookie") < pos(b"X-A") && pos(b"X-A") < pos(b"X-B"));
        // uppercase sorts before lowercase, as Go compares bytes
        let mut m = POKTHTTPRequest::default();
        m.headers.insert("b".into(), Header { key: "b".into(), values: vec![] });
        m.headers.insert("Z".into(), Header { key: "Z".into(), values: vec![] });
        let w = m.encode();
        assert_eq!(&w[..10], &[0x12, 0x08, 0x0a, 0x01, b'Z', 0x12, 0x03, 0x0a, 0x01, b'Z']);
    }

    #[test]
    fn shannon_payload_canonical_header_key() {
        assert_eq!(canonical_header_key("content-type"), "Content-Type");
        assert_eq!(canonical_header_key("CONTENT-TYPE"), "Content-Type");
        assert_eq!(canonical_header_key("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_header_key("-a--b"), "-A--B");
        assert_eq!(canonical_header_key("rpc_type"), "Rpc_type");
        assert_eq!(canonical_header_key("bad key"), "bad key", "a space: left unchanged");
        assert_eq!(canonical_header_key("h\u{e9}"), "h\u{e9}");
        assert_eq!(canonical_header_key(""), "");
    }

    #[test]
    fn shannon_payload_round_trips() {
        let req = POKTHTTPRequest::new(
            "GET",
            "https://backend.example/v1/blocks?latest=1",
            [("Content-Type", "application/json"), ("Rpc-Type", "3"), ("accept", "a"), ("Accept", "b")],
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#.to_vec(),
        );
        let bytes = req.encode();
        let back = POKTHTTPRequest::decode(&bytes).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.header("ACCEPT").unwrap(), ["a", "b"]);
        assert!(back.header("missing").is_none());

        let res = POKTHTTPResponse::from_parts(503, [("Retry-After", "5")], vec![0, 1, 2, 255]);
        let bytes = res.encode();
        assert_eq!(POKTHTTPResponse::decode(&bytes).unwrap(), res);
        assert_eq!(POKTHTTPResponse::from_parts(0, [] as [(&str, &str); 0], vec![]).encode(), Vec::<u8>::new());
    }

    /// Unknown fields and wrong wire types on known fields are skipped; a key seen twice keeps the
    /// last entry; malformed input is an error, never a panic.
    #[test]
    fn shannon_payload_decode_tolerant() {
        let res = POKTHTTPResponse::from_parts(200, [("A", "1")], b"ok".to_vec());
        let canonical = res.encode();
        let mut extended = canonical.clone();
        // field 9 varint, field 10 fixed32, field 1 as bytes (wrong wire type), field 3 as varint
        extended.extend_from_slice(&[0x48, 0x05, 0x55, 1, 2, 3, 4, 0x0a, 0x01, 0xaa, 0x18, 0x07]);
        let back = POKTHTTPResponse::decode(&extended).unwrap();
        assert_eq!(back, res);
        assert_eq!(back.encode(), canonical);
        // a map entry with an unknown field inside, and a Header with one too
        let entry = [0x0a, 0x01, b'A', 0x20, 0x01, 0x12, 0x05, 0x0a, 0x01, b'A', 0x18, 0x02];
        let wire = [&[0x12, entry.len() as u8][..], &entry].concat();
        let r = POKTHTTPResponse::decode(&wire).unwrap();
        assert_eq!(r.headers["A"], Header { key: "A".into(), values: vec![] });
        // the same key twice: the last entry wins
        let first = POKTHTTPResponse::from_parts(0, [("A", "1")], vec![]).encode();
        let second = POKTHTTPResponse::from_parts(0, [("A", "2")], vec![]).encode();
        let twice = POKTHTTPResponse::decode(&[first, second].concat()).unwrap();
        assert_eq!(twice.header("A").unwrap(), ["2"]);
        // malformed
        assert_eq!(POKTHTTPResponse::decode(&canonical[..canonical.len() - 1]).err(), Some(DecodeError::Truncated));
        assert_eq!(POKTHTTPRequest::decode(&[0x0a, 0x01, 0xff]).err(), Some(DecodeError::Utf8));
        assert_eq!(POKTHTTPRequest::decode(&[0x12, 0x03, 0x0a, 0x01, 0xff]).err(), Some(DecodeError::Utf8));
        assert_eq!(POKTHTTPRequest::decode(&[0x12, 0x03, 0x0a, 0x05, 0x41]).err(), Some(DecodeError::Truncated));
        assert_eq!(POKTHTTPRequest::decode(&[0x00]).err(), Some(DecodeError::BadTag));
    }
}
