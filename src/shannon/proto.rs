//! The Shannon relay messages and their exact gogoproto encoding (reference §1.1–1.2).
//!
//! Hand-written instead of generated so the byte layout the chain hashes and signs is explicit:
//! - fields are written in ascending field number;
//! - the non-nullable `meta` of `RelayRequest` and `RelayResponse` is always written, even empty;
//! - empty strings and bytes and zero integers are omitted; int64 is a plain varint (no zigzag);
//! - unknown fields are skipped on decode and so dropped on re-encode;
//! - a message field seen twice is merged, as gogoproto's `Unmarshal` into the existing value does;
//! - a present but empty `payload_hash` is kept as `Some(vec![])` (Go decodes it as a non-nil
//!   empty slice), which matters for the response signable bytes (§2.2).
//!
//! Stricter than Go: strings must be UTF-8 (gogoproto does not check).

use super::keys::OperatorKey;
use super::mining;
use super::sign;
use sha2::{Digest, Sha256};

/// Why bytes did not decode as the expected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a field.
    Truncated,
    /// A varint longer than 10 bytes.
    VarintOverflow,
    /// A wire type that is not valid here (or a group, which these messages never use).
    WireType,
    /// Field number 0.
    BadTag,
    /// A string field that is not UTF-8.
    Utf8,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeError::Truncated => "protobuf: truncated input",
            DecodeError::VarintOverflow => "protobuf: varint overflow",
            DecodeError::WireType => "protobuf: unexpected wire type",
            DecodeError::BadTag => "protobuf: illegal tag 0",
            DecodeError::Utf8 => "protobuf: string is not UTF-8",
        })
    }
}

impl std::error::Error for DecodeError {}

/// A message decoded from `buf`: its default, with every field of `buf` merged in (proto3:
/// absent fields keep their defaults).
pub(super) fn decoded<T: Default>(buf: &[u8], merge: impl FnOnce(&mut T, &[u8]) -> Result<(), DecodeError>) -> Result<T, DecodeError> {
    let mut m = T::default();
    merge(&mut m, buf)?;
    Ok(m)
}

// ---- wire primitives (shared with `payload` and `mined`) ----

/// `v` as a protobuf varint: the bytes and how many of them are used.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let (mut bytes, mut n) = ([0u8; 10], 0);
    while v >= 0x80 {
        bytes[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

pub(super) fn put_varint(out: &mut Vec<u8>, v: u64) {
    let (bytes, n) = varint_bytes(v);
    out.extend_from_slice(&bytes[..n]);
}

pub(super) fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

pub(super) fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        put_key(out, field, 2);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

pub(super) fn put_u64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(out, field, 0);
        put_varint(out, v);
    }
}

/// A message field: always written when called (the callers decide nullability).
/// The message is encoded in place and its key and length put in front of it afterwards (one
/// move of its bytes instead of a buffer of its own per nesting level).
pub(super) fn put_message(out: &mut Vec<u8>, field: u32, encode: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    encode(out);
    let (key, key_len) = varint_bytes((u64::from(field) << 3) | 2);
    let (len, len_len) = varint_bytes((out.len() - start) as u64);
    out.splice(start..start, key[..key_len].iter().chain(&len[..len_len]).copied());
}

struct Reader<'a> {
    buf: &'a [u8],
}

/// One decoded field value.
pub(super) enum Value<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(DecodeError::BadTag);
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
                Value::Len(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError::WireType),
        };
        Ok(Some((field, value)))
    }
}

pub(super) fn fields(buf: &[u8], mut f: impl FnMut(u64, Value<'_>) -> Result<(), DecodeError>) -> Result<(), DecodeError> {
    let mut r = Reader { buf };
    while let Some((field, value)) = r.next()? {
        f(field, value)?;
    }
    Ok(())
}

pub(super) fn as_len<'a>(v: Value<'a>) -> Result<&'a [u8], DecodeError> {
    match v {
        Value::Len(b) => Ok(b),
        _ => Err(DecodeError::WireType),
    }
}

pub(super) fn as_varint(v: Value<'_>) -> Result<u64, DecodeError> {
    match v {
        Value::Varint(x) => Ok(x),
        _ => Err(DecodeError::WireType),
    }
}

pub(super) fn as_string(v: Value<'_>) -> Result<String, DecodeError> {
    String::from_utf8(as_len(v)?.to_vec()).map_err(|_| DecodeError::Utf8)
}

// ---- messages (§1.1) ----

/// `pocket.session.SessionHeader`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionHeader {
    pub application_address: String,     // 1
    pub service_id: String,              // 2
    pub session_id: String,              // 3
    pub session_start_block_height: i64, // 4
    pub session_end_block_height: i64,   // 5
}

impl SessionHeader {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_bytes(out, 1, self.application_address.as_bytes());
        put_bytes(out, 2, self.service_id.as_bytes());
        put_bytes(out, 3, self.session_id.as_bytes());
        put_u64(out, 4, self.session_start_block_height as u64);
        put_u64(out, 5, self.session_end_block_height as u64);
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match field {
                1 => self.application_address = as_string(v)?,
                2 => self.service_id = as_string(v)?,
                3 => self.session_id = as_string(v)?,
                4 => self.session_start_block_height = as_varint(v)? as i64,
                5 => self.session_end_block_height = as_varint(v)? as i64,
                _ => {}
            }
            Ok(())
        })
    }
}

/// `pocket.service.RelayRequestMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayRequestMetadata {
    pub session_header: Option<SessionHeader>, // 1, nullable
    pub signature: Vec<u8>,                    // 2, the serialized ring signature
    pub supplier_operator_address: String,     // 3
}

impl RelayRequestMetadata {
    fn encode_into(&self, out: &mut Vec<u8>) {
        if let Some(h) = &self.session_header {
            put_message(out, 1, |o| h.encode_into(o));
        }
        put_bytes(out, 2, &self.signature);
        put_bytes(out, 3, self.supplier_operator_address.as_bytes());
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match field {
                1 => self.session_header.get_or_insert_with(Default::default).merge(as_len(v)?)?,
                2 => self.signature = as_len(v)?.to_vec(),
                3 => self.supplier_operator_address = as_string(v)?,
                _ => {}
            }
            Ok(())
        })
    }
}

/// `pocket.service.RelayRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayRequest {
    pub meta: RelayRequestMetadata, // 1, non-nullable: always encoded
    pub payload: Vec<u8>,           // 2, a serialized POKTHTTPRequest in practice
}

impl RelayRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_message(out, 1, |o| self.meta.encode_into(o));
        put_bytes(out, 2, &self.payload);
    }

    /// The gogoproto encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match field {
                1 => self.meta.merge(as_len(v)?)?,
                2 => self.payload = as_len(v)?.to_vec(),
                _ => {}
            }
            Ok(())
        })
    }

    /// Decodes a request (the body of a relay POST, §1.3).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        decoded(buf, Self::merge)
    }

    /// `GetSignableBytesHash` (§2.1): SHA-256 of the encoding with `meta.signature` cleared;
    /// the message the ring signature signs. Recomputed from the decoded struct, as Go does.
    pub fn signable_hash(&self) -> [u8; 32] {
        let mut unsigned = self.clone();
        unsigned.meta.signature = Vec::new();
        Sha256::digest(unsigned.encode()).into()
    }
}

/// `pocket.service.RelayResponseMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayResponseMetadata {
    pub session_header: Option<SessionHeader>, // 1
    pub supplier_operator_signature: Vec<u8>,  // 2
}

impl RelayResponseMetadata {
    fn encode_into(&self, out: &mut Vec<u8>) {
        if let Some(h) = &self.session_header {
            put_message(out, 1, |o| h.encode_into(o));
        }
        put_bytes(out, 2, &self.supplier_operator_signature);
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match field {
                1 => self.session_header.get_or_insert_with(Default::default).merge(as_len(v)?)?,
                2 => self.supplier_operator_signature = as_len(v)?.to_vec(),
                _ => {}
            }
            Ok(())
        })
    }
}

/// `pocket.service.RelayMinerError`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayMinerError {
    pub codespace: String,   // 1
    pub code: u32,           // 2
    pub description: String, // 3
    pub message: String,     // 4
}

impl RelayMinerError {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_bytes(out, 1, self.codespace.as_bytes());
        put_u64(out, 2, u64::from(self.code));
        put_bytes(out, 3, self.description.as_bytes());
        put_bytes(out, 4, self.message.as_bytes());
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match field {
                1 => self.codespace = as_string(v)?,
                2 => self.code = as_varint(v)? as u32, // Go accumulates into a uint32: truncates
                3 => self.description = as_string(v)?,
                4 => self.message = as_string(v)?,
                _ => {}
            }
            Ok(())
        })
    }
}

/// Why a response could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// `UpdatePayloadHash` refuses an empty payload (§2.2).
    EmptyPayload,
}

/// `pocket.service.RelayResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayResponse {
    pub meta: RelayResponseMetadata,                // 1, non-nullable: always encoded
    pub payload: Vec<u8>,                           // 2, a serialized POKTHTTPResponse
    pub relay_miner_error: Option<RelayMinerError>, // 3
    /// 4: `None` when absent; `Some(vec![])` when present but empty (Go: non-nil empty slice).
    pub payload_hash: Option<Vec<u8>>,
}

impl RelayResponse {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_message(out, 1, |o| self.meta.encode_into(o));
        put_bytes(out, 2, &self.payload);
        if let Some(e) = &self.relay_miner_error {
            put_message(out, 3, |o| e.encode_into(o));
        }
        if let Some(h) = &self.payload_hash {
            put_bytes(out, 4, h);
        }
    }

    /// The gogoproto encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match field {
                1 => self.meta.merge(as_len(v)?)?,
                2 => self.payload = as_len(v)?.to_vec(),
                3 => self.relay_miner_error.get_or_insert_with(Default::default).merge(as_len(v)?)?,
                4 => self.payload_hash = Some(as_len(v)?.to_vec()),
                _ => {}
            }
            Ok(())
        })
    }

    /// Decodes a response.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        decoded(buf, Self::merge)
    }

    /// `GetSignableBytesHash` (§2.2): signature cleared and, when `payload_hash` is set (even
    /// empty), the payload cleared; then SHA-256 of the encoding.
    pub fn signable_hash(&self) -> [u8; 32] {
        let mut unsigned = self.clone();
        unsigned.meta.supplier_operator_signature = Vec::new();
        if unsigned.payload_hash.is_some() {
            unsigned.payload = Vec::new();
        }
        sign::signable_hash(&unsigned.encode())
    }

    /// Sets `payload_hash = SHA-256(payload)` and signs (§2.2, as prm always does).
    pub fn sign(&mut self, key: &OperatorKey) -> Result<(), SignError> {
        if self.payload.is_empty() {
            return Err(SignError::EmptyPayload);
        }
        self.payload_hash = Some(Sha256::digest(&self.payload).to_vec());
        self.meta.supplier_operator_signature = sign::sign_hash(key.signing_key(), &self.signable_hash()).to_vec();
        Ok(())
    }
}

/// `pocket.service.Relay`: the tuple stored in SMST leaves (§4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relay {
    pub req: Option<RelayRequest>,  // 1
    pub res: Option<RelayResponse>, // 2
}

impl Relay {
    /// The gogoproto encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(req) = &self.req {
            put_message(&mut out, 1, |o| req.encode_into(o));
        }
        if let Some(res) = &self.res {
            put_message(&mut out, 2, |o| res.encode_into(o));
        }
        out
    }

    fn merge(&mut self, buf: &[u8]) -> Result<(), DecodeError> {
        fields(buf, |field, v| {
            match field {
                1 => self.req.get_or_insert_with(Default::default).merge(as_len(v)?)?,
                2 => self.res.get_or_insert_with(Default::default).merge(as_len(v)?)?,
                _ => {}
            }
            Ok(())
        })
    }

    /// Decodes a relay (e.g. an SMST leaf value).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        decoded(buf, Self::merge)
    }

    /// The dehydrated encoding mined and stored: the response payload removed, the request
    /// payload kept (§4).
    pub fn dehydrated_bytes(&self) -> Vec<u8> {
        let mut d = self.clone();
        if let Some(res) = &mut d.res {
            res.payload = Vec::new();
        }
        d.encode()
    }

    /// SHA-256 of the dehydrated encoding: the relay hash (§4).
    pub fn hash(&self) -> [u8; 32] {
        mining::relay_hash(&self.dehydrated_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shannon::keys::parse_pubkey;

    /// poktroll `pkg/relayer/miner/relay_fixtures_test.go` (§6.2): dehydrated relays pre-mined
    /// against target `0000ff…ff`; five below it, five at or above it.
    const MINABLE: [&str; 5] = [
        "0a5b0a590a450a2d636f736d6f7331746a39706175616e36326363706b6833306373396376646a7a73656732786d397572636568321204737663311a0a73657373696f6e5f69642001280212109cd5ae931fedaf5c39dc9376c50fcc46126b0a470a450a2d636f736d6f7331746a39706175616e36326363706b6833306373396376646a7a73656732786d397572636568321204737663311a0a73657373696f6e5f6964200128022220f24e95391de18d8938ebcca9382df3461ad4a0eef77fae1945e478f58ec1fe8f",
        "0a5b0a590a450a2d636f736d6f73316e70687a616c70773263616a73346d6a6c6532617836306e753372717775676c33796c6a71341204737663311a0a73657373696f6e5f6964200128021210dadf6f28398634949a949eb1eab46f0c126b0a470a450a2d636f736d6f73316e70687a616c70773263616a73346d6a6c6532617836306e753372717775676c33796c6a71341204737663311a0a73657373696f6e5f69642001280222200e035f2f9528968d0c0b55d91d51d390d7f8a27ea5d8f4d0a2d29f84e5d9e060",
        "0a5b0a590a450a2d636f736d6f73313767666730753464767634647168736d64686c6a79666c373774666a7861306b6b37637933341204737663311a0a73657373696f6e5f69642001280212103e7ae54787adb034ae437fef3850d8fc126b0a470a450a2d636f736d6f73313767666730753464767634647168736d64686c6a79666c373774666a7861306b6b37637933341204737663311a0a73657373696f6e5f69642001280222203ead451a0c1bb1812f11065054d0e1a30c163cbf73e5d2da6722bca561325989",
        "0a5b0a590a450a2d636f736d6f7331323634753373373072656d6e79776a336b7875767536756c7766746a6d636464763438796d391204737663311a0a73657373696f6e5f69642001280212100a11afcb027ac8a044f3913429080c80126b0a470a450a2d636f736d6f7331323634753373373072656d6e79776a336b7875767536756c7766746a6d636464763438796d391204737663311a0a73657373696f6e5f69642001280222207042ed6f1200533eac2c19128357a7a3d4e4c22d85adfb8ff393d3aa3333add4",
        "0a5b0a590a450a2d636f736d6f73313932346c76376b6875647967657075346b68326534746a6b64653236676e7a633771703734661204737663311a0a73657373696f6e5f696420012802121056f4ec80340533a4138dfa2b47a1612a126b0a470a450a2d636f736d6f73313932346c76376b6875647967657075346b68326534746a6b64653236676e7a633771703734661204737663311a0a73657373696f6e5f69642001280222204e800ba3ca2341a10f7f6bda8e882663111cc7e30bf0344f8fce766572a9d641",
    ];
    const UNMINABLE: [&str; 5] = [
        "0a5b0a590a450a2d636f736d6f733170637564386e776b6b6d6d37726c6172687537763836356a78786c65346b6865376b756d6d711204737663311a0a73657373696f6e5f696420012802121049de43a3c306a59d5e28edc411d7e032126b0a470a450a2d636f736d6f733170637564386e776b6b6d6d37726c6172687537763836356a78786c65346b6865376b756d6d711204737663311a0a73657373696f6e5f6964200128022220dc2a44ee20ea3eae8ce17b6541413fc71c89f5b820a1f04dc1f5cb58bfd522d9",
        "0a5b0a590a450a2d636f736d6f7331346a6d63717a76706e756d64356a796878326e387537746e73776e7a663677327668616d327a1204737663311a0a73657373696f6e5f6964200128021210a77cf8cc981c1a5ae4df24fc1392a48f126b0a470a450a2d636f736d6f7331346a6d63717a76706e756d64356a796878326e387537746e73776e7a663677327668616d327a1204737663311a0a73657373696f6e5f69642001280222209e5cb9406ec5c688df78a9884b5b9904a0245b50f9e63d59f7fcea0b82c8e5ec",
        "0a5b0a590a450a2d636f736d6f7331786371336a77616b67797770637676673964723334726e787a667075736a736b613765796c711204737663311a0a73657373696f6e5f6964200128021210c8679e5f2b654187ce6b9a89c870232b126b0a470a450a2d636f736d6f7331786371336a77616b67797770637676673964723334726e787a667075736a736b613765796c711204737663311a0a73657373696f6e5f6964200128022220cc993a5ff83d55ff2bf144408885b8510f6c95aaa42031734c018c3c66b5867e",
        "0a5b0a590a450a2d636f736d6f73317178386d6d34356e656d6b7638636c7a376d38303874786c68707a32356830707373393673301204737663311a0a73657373696f6e5f6964200128021210bca57815380364c8583b6eda6b52601e126b0a470a450a2d636f736d6f73317178386d6d34356e656d6b7638636c7a376d38303874786c68707a32356830707373393673301204737663311a0a73657373696f6e5f6964200128022220b4b7caf006f9e419b16138961445bceb7e7cf64f4daee585025db8fa2963f614",
        "0a5b0a590a450a2d636f736d6f73317071683436367864396a6578367364796c7067656a373933346c6c6432347177776e30346d681204737663311a0a73657373696f6e5f6964200128021210bc4c6fb133747d6b75d46562fc20fa3d126b0a470a450a2d636f736d6f73317071683436367864396a6578367364796c7067656a373933346c6c6432347177776e30346d681204737663311a0a73657373696f6e5f69642001280222208bc4f29643be07e0869c44c3bd509deb5c5f3bd94a2109a78b6a4cd738b19413",
    ];

    fn fixture_target() -> [u8; 32] {
        let mut t = [0xffu8; 32];
        t[0] = 0;
        t[1] = 0;
        t
    }

    /// Decode → re-encode is the identity on Go-produced relays, and the relay hash (SHA-256 of
    /// the dehydrated bytes) sorts them against the fixtures' target (§4, §6.3).
    #[test]
    fn shannon_proto_poktroll_relay_fixtures() {
        for (hexes, minable) in [(MINABLE, true), (UNMINABLE, false)] {
            for h in hexes {
                let bytes = hex::decode(h).unwrap();
                let relay = Relay::decode(&bytes).unwrap();
                assert_eq!(relay.encode(), bytes);
                assert_eq!(relay.dehydrated_bytes(), bytes, "fixtures are already dehydrated");
                assert_eq!(mining::is_mined(&relay.hash(), &fixture_target()), minable, "{h}");
                let req = relay.req.as_ref().unwrap();
                let header = req.meta.session_header.as_ref().unwrap();
                assert!(header.application_address.starts_with("cosmos1"));
                assert_eq!(
                    (header.service_id.as_str(), header.session_id.as_str(), header.session_start_block_height, header.session_end_block_height),
                    ("svc1", "session_id", 1, 2)
                );
                assert_eq!(req.meta.signature.len(), 16);
                let res = relay.res.as_ref().unwrap();
                assert_eq!(res.meta.session_header.as_ref(), Some(header));
                assert_eq!(res.payload_hash.as_ref().map(Vec::len), Some(32));
                assert!(res.payload.is_empty());
            }
        }
    }

    fn header() -> SessionHeader {
        SessionHeader {
            application_address: "pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4".into(),
            service_id: "eth".into(),
            session_id: "ab".repeat(32),
            session_start_block_height: 883_661,
            session_end_block_height: 883_680,
        }
    }

    /// §1.2: meta always present, empty fields omitted, ascending tags, no zigzag.
    #[test]
    fn shannon_proto_encoding_rules() {
        assert_eq!(RelayRequest::default().encode(), vec![0x0a, 0x00]);
        assert_eq!(RelayResponse::default().encode(), vec![0x0a, 0x00]);
        assert_eq!(Relay::default().encode(), Vec::<u8>::new());
        let res = RelayResponse {
            payload: vec![7],
            relay_miner_error: Some(RelayMinerError { code: 3, ..Default::default() }),
            payload_hash: Some(vec![9]),
            ..Default::default()
        };
        assert_eq!(res.encode(), vec![0x0a, 0x00, 0x12, 0x01, 7, 0x1a, 0x02, 0x10, 0x03, 0x22, 0x01, 9]);
        let h = SessionHeader { session_end_block_height: -1, ..Default::default() };
        let mut out = Vec::new();
        h.encode_into(&mut out);
        assert_eq!(out, [&[0x28][..], &[0xff; 9], &[0x01]].concat(), "int64 -1 is a 10-byte varint");
        let mut back = SessionHeader::default();
        back.merge(&out).unwrap();
        assert_eq!(back, h);
    }

    /// Unknown fields are skipped (and dropped on re-encode); repeated message fields merge;
    /// malformed input is an error, never a panic.
    #[test]
    fn shannon_proto_decode_edge_cases() {
        let req = RelayRequest {
            meta: RelayRequestMetadata { session_header: Some(header()), signature: vec![1, 2, 3], supplier_operator_address: "pokt1x".into() },
            payload: b"{}".to_vec(),
        };
        let canonical = req.encode();
        let mut extended = canonical.clone();
        extended.extend_from_slice(&[0x48, 0x05, 0x55, 1, 2, 3, 4, 0x59, 0, 0, 0, 0, 0, 0, 0, 0, 0x7a, 0x01, 0xaa]);
        let back = RelayRequest::decode(&extended).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.encode(), canonical);
        assert_eq!(back.signable_hash(), req.signable_hash());
        // meta split over two occurrences merges
        let split = [vec![0x0a, 0x02, 0x12, 0x00], vec![0x0a, 0x03, 0x1a, 0x01, b'x']].concat();
        let m = RelayRequest::decode(&split).unwrap();
        assert_eq!(m.meta.supplier_operator_address, "x");
        // a present, empty payload_hash stays Some(empty) and still clears the payload for signing
        let r = RelayResponse::decode(&[0x0a, 0x00, 0x12, 0x01, 7, 0x22, 0x00]).unwrap();
        assert_eq!(r.payload_hash, Some(vec![]));
        let mut without_payload = r.clone();
        without_payload.payload.clear();
        assert_eq!(r.signable_hash(), without_payload.signable_hash());
        let no_hash = RelayResponse { payload: vec![7], ..Default::default() };
        assert_ne!(no_hash.signable_hash(), RelayResponse::default().signable_hash());
        for bad in [&canonical[..canonical.len() - 1], &[0x0a][..], &[0x0a, 0x05, 0x00][..], &[0x00, 0x00][..], &[0x0b][..], &[0x10, 0x01][..]] {
            assert!(RelayRequest::decode(bad).is_err(), "{bad:02x?}");
        }
        assert_eq!(RelayRequest::decode(&[0x12, 0x0b, 0xff]).err(), Some(DecodeError::Truncated));
        assert_eq!(RelayRequest::decode(&[&[0x08][..], &[0xff; 11]].concat()).err(), Some(DecodeError::VarintOverflow));
        assert_eq!(RelayRequest::decode(&[0x0a, 0x02, 0x1a, 0x01, 0xff]).err(), Some(DecodeError::Truncated));
        assert_eq!(RelayRequest::decode(&[0x0a, 0x03, 0x1a, 0x01, 0xff]).err(), Some(DecodeError::Utf8));
    }

    /// The request's signable hash ignores the signature but covers everything else (§2.1).
    #[test]
    fn shannon_proto_request_signable_hash() {
        let mut req = RelayRequest {
            meta: RelayRequestMetadata { session_header: Some(header()), signature: vec![], supplier_operator_address: "pokt1x".into() },
            payload: b"payload".to_vec(),
        };
        let unsigned = req.signable_hash();
        assert_eq!(unsigned, <[u8; 32]>::from(Sha256::digest(req.encode())));
        req.meta.signature = vec![0xaa; 199];
        assert_eq!(req.signable_hash(), unsigned);
        req.payload.push(b'!');
        assert_ne!(req.signable_hash(), unsigned);
    }

    /// Sign a response: payload_hash set, the signature covers the hash but not the payload and
    /// verifies with the supplier's public key (§2.2).
    #[test]
    fn shannon_proto_response_sign_verify() {
        let key = OperatorKey::from_hex("cd41a98ac7ac3b190c345b88e2885422d7bb553c59bca03c6e2618d49f8b1c06").unwrap();
        let vk = parse_pubkey(key.pubkey()).unwrap();
        let mut res = RelayResponse {
            meta: RelayResponseMetadata { session_header: Some(header()), ..Default::default() },
            payload: b"\x08\xc8\x01".to_vec(),
            ..Default::default()
        };
        assert_eq!(RelayResponse::default().sign(&key), Err(SignError::EmptyPayload));
        res.sign(&key).unwrap();
        assert_eq!(res.payload_hash.as_deref(), Some(&Sha256::digest(b"\x08\xc8\x01")[..]));
        let wire = res.encode();
        let received = RelayResponse::decode(&wire).unwrap();
        assert_eq!(received, res);
        let sig = received.meta.supplier_operator_signature.clone();
        assert_eq!(sign::verify_hash(&vk, &received.signable_hash(), &sig), Ok(()));
        // deterministic: signing again gives the same bytes
        let mut again = res.clone();
        again.sign(&key).unwrap();
        assert_eq!(again.encode(), wire);
        // the mined relay drops the payload and keeps a valid signature
        let relay = Relay { req: Some(RelayRequest::default()), res: Some(res.clone()) };
        let stored = Relay::decode(&relay.dehydrated_bytes()).unwrap();
        let stored_res = stored.res.unwrap();
        assert!(stored_res.payload.is_empty());
        assert_eq!(sign::verify_hash(&vk, &stored_res.signable_hash(), &sig), Ok(()));
        // a changed session header breaks it
        let mut forged = received;
        forged.meta.session_header.as_mut().unwrap().session_end_block_height += 1;
        assert_eq!(sign::verify_hash(&vk, &forged.signable_hash(), &sig), Err(sign::SignatureError::Mismatch));
    }
}
