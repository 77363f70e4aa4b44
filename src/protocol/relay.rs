//! The Morse relay as it travels on the wire (`POST /v1/client/relay`), and the
//! hashes a servicer computes over it: request hash, AAT hash, proof hash, response hash.

use serde::{Deserialize, Deserializer, Serialize};
use sha3::Digest;
use std::collections::BTreeMap;

use super::errors::{self, PocketError};
use super::gojson::write_string;

/// Go decodes JSON `null` into a string field as "" — mirror that.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    #[serde(default, deserialize_with = "null_as_default")]
    pub payload: Payload,
    #[serde(default, deserialize_with = "null_as_default")]
    pub meta: RelayMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub proof: RelayProof,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub method: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
    /// `None` = absent or JSON `null` (Go nil map, hashed as `null`);
    /// `Some(empty)` = `{}` (hashed as `{}`). BTreeMap keeps Go's bytewise key order.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayMeta {
    #[serde(default, deserialize_with = "null_as_default")]
    pub block_height: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayProof {
    #[serde(default, deserialize_with = "null_as_default")]
    pub request_hash: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub entropy: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub session_block_height: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub servicer_pub_key: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub blockchain: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub aat: Aat,
    #[serde(default, deserialize_with = "null_as_default")]
    pub signature: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aat {
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub app_pub_key: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub client_pub_key: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub signature: String,
}

/// The only AAT version the network accepts (`SupportedTokenVersions`).
pub const SUPPORTED_AAT_VERSION: &str = "0.0.1";
/// Maximum decoded length of a chain id (`NetworkIdentifierLength`).
pub const NETWORK_IDENTIFIER_MAX_BYTES: usize = 4;

fn sha3(bytes: &[u8]) -> [u8; 32] {
    sha3::Sha3_256::digest(bytes).into()
}

impl Relay {
    /// Parse a relay body exactly as the wire carries it (i64 numbers, never via f64).
    pub fn from_json(body: &[u8]) -> Result<Relay, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Go `json.Marshal({payload, meta})` — the request-hash preimage (§2.3).
    pub fn request_preimage(&self) -> Vec<u8> {
        let p = &self.payload;
        let mut out = Vec::with_capacity(96 + p.data.len() + p.path.len());
        out.extend_from_slice(b"{\"payload\":{\"data\":");
        write_string(&mut out, &p.data);
        out.extend_from_slice(b",\"method\":");
        write_string(&mut out, &p.method);
        out.extend_from_slice(b",\"path\":");
        write_string(&mut out, &p.path);
        // No omitempty in Go's private `payload` struct: a nil map is `null`, an empty one `{}`.
        out.extend_from_slice(b",\"headers\":");
        match &p.headers {
            None => out.extend_from_slice(b"null"),
            Some(headers) => {
                out.push(b'{');
                // BTreeMap<String, _> iterates in bytewise key order, like Go's sorted map keys.
                for (i, (k, v)) in headers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(&mut out, k);
                    out.push(b':');
                    write_string(&mut out, v);
                }
                out.push(b'}');
            }
        }
        out.extend_from_slice(b"},\"meta\":{\"block_height\":");
        out.extend_from_slice(self.meta.block_height.to_string().as_bytes());
        out.extend_from_slice(b"}}");
        out
    }

    /// `hex(SHA3-256(request_preimage))`, lowercase.
    pub fn request_hash_hex(&self) -> String {
        hex::encode(sha3(&self.request_preimage()))
    }

    /// Servicer check "request hash matches payload" (74): exact string compare, like Go, so an
    /// uppercase `request_hash` fails.
    pub fn verify_request_hash(&self) -> Result<(), PocketError> {
        if self.proof.request_hash == self.request_hash_hex() {
            Ok(())
        } else {
            Err(errors::request_hash_mismatch())
        }
    }
}

impl Payload {
    /// `Payload.Validate`: data and path both empty → 25.
    pub fn validate(&self) -> Result<(), PocketError> {
        if self.data.is_empty() && self.path.is_empty() {
            Err(errors::empty_payload_data())
        } else {
            Ok(())
        }
    }
}

impl Aat {
    /// Preimage `{"version","app_pub_key","client_pub_key","signature":""}` (§2.4).
    pub fn preimage(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        out.extend_from_slice(b"{\"version\":");
        write_string(&mut out, &self.version);
        out.extend_from_slice(b",\"app_pub_key\":");
        write_string(&mut out, &self.app_pub_key);
        out.extend_from_slice(b",\"client_pub_key\":");
        write_string(&mut out, &self.client_pub_key);
        out.extend_from_slice(b",\"signature\":\"\"}");
        out
    }
    pub fn hash(&self) -> [u8; 32] {
        sha3(&self.preimage())
    }
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }
    /// Identifies the token exactly: its signed fields and its signature. Two tokens with the
    /// same identity get the same [`Aat::validate`] result.
    pub fn identity(&self) -> [u8; 32] {
        let mut bytes = self.preimage();
        bytes.extend_from_slice(self.signature.as_bytes());
        sha3(&bytes)
    }
    /// Version, key formats and the app's signature; errors are code 4 with the inner message.
    pub fn validate(&self) -> Result<(), PocketError> {
        self.validate_inner().map_err(|inner| errors::invalid_token(&inner))
    }

    /// `AAT.Validate` (aat.go): the error text Go wraps into code 4. Key-format failures are the
    /// nested sdk error's `Error()` string, exactly as Go concatenates it.
    fn validate_inner(&self) -> Result<(), String> {
        if self.version.is_empty() {
            return Err(errors::AAT_VERSION_MISSING.into());
        }
        if self.version != SUPPORTED_AAT_VERSION {
            return Err(errors::AAT_VERSION_UNSUPPORTED.into());
        }
        if self.app_pub_key.is_empty() {
            return Err(errors::AAT_APP_PUB_KEY_INVALID.into());
        }
        pub_key_verification(&self.app_pub_key).map_err(|e| e.go_error_string())?;
        if self.client_pub_key.is_empty() {
            return Err(errors::AAT_CLIENT_PUB_KEY_INVALID.into());
        }
        pub_key_verification(&self.client_pub_key).map_err(|e| e.go_error_string())?;
        // Any signature failure (hex, length, verification) collapses to one message in Go.
        signature_verification(&self.app_pub_key, &self.hash(), &self.signature).map_err(|_| errors::AAT_SIGNATURE_INVALID.to_string())
    }
}

impl RelayProof {
    /// Preimage of §2.5 (AAT replaced by its hex hash, `"signature":""`).
    pub fn preimage(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(b"{\"entropy\":");
        out.extend_from_slice(self.entropy.to_string().as_bytes());
        out.extend_from_slice(b",\"session_block_height\":");
        out.extend_from_slice(self.session_block_height.to_string().as_bytes());
        out.extend_from_slice(b",\"servicer_pub_key\":");
        write_string(&mut out, &self.servicer_pub_key);
        out.extend_from_slice(b",\"blockchain\":");
        write_string(&mut out, &self.blockchain);
        out.extend_from_slice(b",\"signature\":\"\",\"token\":\"");
        out.extend_from_slice(self.aat.hash_hex().as_bytes());
        out.extend_from_slice(b"\",\"request_hash\":");
        write_string(&mut out, &self.request_hash);
        out.push(b'}');
        out
    }
    /// The signature-less proof digest: what the client signs and what servicers dedupe on.
    pub fn hash(&self) -> [u8; 32] {
        sha3(&self.preimage())
    }
    /// Lowercase hex of [`RelayProof::hash`] (the `"Proof"` value in the response preimage).
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }
    /// Stateless checks in a servicer's order (reference §4 rows 12–18): session height ≥ 1 (60),
    /// servicer key (6/42), blockchain (52/23/62), request-hash format (52/23/62), entropy (29),
    /// AAT (4), client signature over `hash()` (39/38/6/41).
    pub fn validate_basic(&self) -> Result<(), PocketError> {
        self.validate_basic_with(Aat::validate)
    }

    /// [`RelayProof::validate_basic`] with the AAT step done by `validate_aat` (the daemon's
    /// cache of tokens that already passed [`Aat::validate`], src/relay/verified_tokens.rs).
    pub fn validate_basic_with(&self, validate_aat: impl FnOnce(&Aat) -> Result<(), PocketError>) -> Result<(), PocketError> {
        if self.session_block_height < 1 {
            return Err(errors::invalid_block_height());
        }
        pub_key_verification(&self.servicer_pub_key)?;
        network_identifier_verification(&self.blockchain)?;
        hash_verification(&self.request_hash)?;
        if self.entropy < 0 {
            return Err(errors::invalid_entropy());
        }
        validate_aat(&self.aat)?;
        signature_verification(&self.aat.client_pub_key, &self.hash(), &self.signature)
    }
}

/// Preimage `{"signature":"","payload":<response>,"Proof":<proof hash hex>}` (§2.6, capital `P`).
pub fn response_preimage(response: &str, proof_hash_hex: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(response.len() + 128);
    out.extend_from_slice(b"{\"signature\":\"\",\"payload\":");
    write_string(&mut out, response);
    out.extend_from_slice(b",\"Proof\":");
    write_string(&mut out, proof_hash_hex);
    out.push(b'}');
    out
}

/// Digest the servicer signs: SHA3-256 of `{"signature":"","payload":<response>,"Proof":<proof hash hex>}` (§2.6).
pub fn response_hash(response: &str, proof_hash_hex: &str) -> [u8; 32] {
    sha3(&response_preimage(response, proof_hash_hex))
}

// ----- Go verification helpers (x/pocketcore/types/crypto.go), with Go's exact error texts -----

/// Go `hex.DecodeString`: either case accepted; errors are `encoding/hex`'s texts
/// (`invalid byte: U+0067 'g'`, reported pairwise left to right; `odd length hex string`).
pub fn go_hex_decode(s: &str) -> Result<Vec<u8>, String> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let src = s.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 2);
    let mut j = 1;
    while j < src.len() {
        let (p, q) = (src[j - 1], src[j]);
        let a = nibble(p).ok_or_else(|| go_invalid_byte(p))?;
        let b = nibble(q).ok_or_else(|| go_invalid_byte(q))?;
        out.push(a << 4 | b);
        j += 2;
    }
    if src.len() % 2 == 1 {
        // Go reports a bad final character before the odd length.
        let last = src[src.len() - 1];
        if nibble(last).is_none() {
            return Err(go_invalid_byte(last));
        }
        return Err("encoding/hex: odd length hex string".into());
    }
    Ok(out)
}

/// `hex.InvalidByteError.Error()`: `%#U` of the byte taken as a rune (so UTF-8 lead bytes show
/// as Latin-1 characters, as in Go).
fn go_invalid_byte(b: u8) -> String {
    let c = char::from(b);
    if errors::go_is_print(c) {
        format!("encoding/hex: invalid byte: U+{:04X} '{}'", b, c)
    } else {
        format!("encoding/hex: invalid byte: U+{:04X}", b)
    }
}

/// `PubKeyVerification`: hex (6, no detail) and exactly 32 bytes (42).
pub fn pub_key_verification(pk: &str) -> Result<(), PocketError> {
    let bytes = go_hex_decode(pk).map_err(|_| errors::pub_key_decode())?;
    if bytes.len() != 32 {
        return Err(errors::pub_key_size());
    }
    Ok(())
}

/// `NetworkIdentifierVerification`: hex (52), non-empty (23), at most 4 bytes (62).
pub fn network_identifier_verification(chain: &str) -> Result<(), PocketError> {
    let bytes = go_hex_decode(chain).map_err(|e| errors::hex_decode(&e))?;
    if bytes.is_empty() {
        return Err(errors::empty_hash());
    }
    if bytes.len() > NETWORK_IDENTIFIER_MAX_BYTES {
        return Err(errors::invalid_hash_length());
    }
    Ok(())
}

/// `HashVerification`: hex (52), non-empty (23), exactly 32 bytes (62).
pub fn hash_verification(hash: &str) -> Result<(), PocketError> {
    let bytes = go_hex_decode(hash).map_err(|e| errors::hex_decode(&e))?;
    if bytes.is_empty() {
        return Err(errors::empty_hash());
    }
    if bytes.len() != 32 {
        return Err(errors::invalid_hash_length());
    }
    Ok(())
}

/// `SignatureVerification` over a 32-byte digest: signature hex (39), 64 bytes (38),
/// public key hex/size (6), ed25519 verification (41, also for keys that are not curve points).
pub fn signature_verification(public_hex: &str, digest: &[u8; 32], signature_hex: &str) -> Result<(), PocketError> {
    let sig = go_hex_decode(signature_hex).map_err(|_| errors::sig_decode())?;
    if sig.len() != 64 {
        return Err(errors::invalid_signature_size());
    }
    match go_hex_decode(public_hex) {
        Ok(k) if k.len() == 32 => {}
        _ => return Err(errors::pub_key_decode()),
    }
    if super::keys::verify_hex(public_hex, digest, signature_hex) {
        Ok(())
    } else {
        Err(errors::invalid_signature())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keys::{verify_hex, KeyPair};
    use crate::protocol::vectors as v;

    fn wire_relay() -> Relay {
        Relay::from_json(v::WIRE.as_bytes()).expect("§6.1 wire parses")
    }

    fn utf8(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    fn sha3_hex(s: &str) -> String {
        hex::encode(sha3(s.as_bytes()))
    }

    #[test]
    fn full_61_round_trip_from_wire_bytes() {
        let relay = wire_relay();
        // Request hash (§2.3).
        assert_eq!(utf8(relay.request_preimage()), v::REQ_PREIMAGE);
        assert_eq!(relay.request_hash_hex(), v::REQUEST_HASH);
        assert_eq!(relay.proof.request_hash, v::REQUEST_HASH);
        relay.verify_request_hash().unwrap();
        relay.payload.validate().unwrap();
        // AAT (§2.4).
        assert_eq!(utf8(relay.proof.aat.preimage()), v::aat_preimage());
        assert_eq!(relay.proof.aat.hash_hex(), v::AAT_HASH);
        relay.proof.aat.validate().unwrap();
        // Proof (§2.5).
        assert_eq!(utf8(relay.proof.preimage()), v::proof_preimage());
        assert_eq!(relay.proof.hash_hex(), v::PROOF_HASH);
        assert!(verify_hex(v::CLIENT_PUB, &relay.proof.hash(), v::CLIENT_SIG));
        relay.proof.validate_basic().unwrap();
        // Servicer response (§2.6).
        assert_eq!(utf8(response_preimage(v::UPSTREAM_BODY, &relay.proof.hash_hex())), v::RESP_PREIMAGE);
        let digest = response_hash(v::UPSTREAM_BODY, &relay.proof.hash_hex());
        assert_eq!(hex::encode(digest), v::RESP_HASH);
        let servicer = KeyPair::from_seed(&[3; 32]);
        assert_eq!(servicer.public_hex, relay.proof.servicer_pub_key);
        assert_eq!(servicer.sign_hex(&digest), v::RESP_SIG);
        // And the success body a Go servicer writes (before its trailing newline).
        let body = serde_json::json!({"signature": v::RESP_SIG, "response": v::UPSTREAM_BODY});
        assert_eq!(
            utf8(crate::protocol::gojson::to_vec(&body)),
            format!(r#"{{"response":"{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x10d4f\"}}","signature":"{}"}}"#, v::RESP_SIG)
        );
    }

    fn payload(data: &str, method: &str, headers: Option<&[(&str, &str)]>) -> Relay {
        Relay {
            payload: Payload {
                data: data.into(),
                method: method.into(),
                path: String::new(),
                headers: headers.map(|h| h.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            },
            meta: RelayMeta { block_height: 5 },
            proof: RelayProof::default(),
        }
    }

    #[test]
    fn go_escaping_vector_62_and_js_divergence() {
        let relay = payload("{\"params\":[\"<&>\",\"é\"]}\n", "", None);
        let go = r#"{"payload":{"data":"{\"params\":[\"\u003c\u0026\u003e\",\"é\"]}\n","method":"","path":"","headers":null},"meta":{"block_height":5}}"#;
        assert_eq!(utf8(relay.request_preimage()), go);
        assert_eq!(relay.request_hash_hex(), "b029a1ee53a201247fa794b01fa2daf9491f19e5b046f6afc9823b7aa70cfa1b");
        // pocket-js (JSON.stringify) leaves <&> raw and gets a different hash — a real node answers 74.
        let js = go.replace(r"\u003c\u0026\u003e", "<&>");
        assert_eq!(sha3_hex(&js), "2935096fe78248579b4e69695688e0eabfc4aef589e3c274d79e1e8895bf5c89");
        assert_ne!(sha3_hex(&js), relay.request_hash_hex());
    }

    #[test]
    fn header_vectors_62() {
        let relay = payload("x", "POST", Some(&[("b", "2"), ("A", "1")]));
        assert_eq!(
            utf8(relay.request_preimage()),
            r#"{"payload":{"data":"x","method":"POST","path":"","headers":{"A":"1","b":"2"}},"meta":{"block_height":5}}"#
        );
        assert_eq!(relay.request_hash_hex(), "67fd520c586815dc1826b870befe199bc743675510d15edc674555629be0a488");
        let empty = payload("x", "POST", Some(&[]));
        assert_eq!(empty.request_hash_hex(), "f917f277af8908ac01c150ae829b9772f77c1d01639c0284aeb8ae4e10bc059a");
        // Parsing distinguishes {} from null/absent, which hash differently.
        let parse = |headers: &str| {
            let body = format!(r#"{{"payload":{{"data":"x","method":"POST"{headers}}},"meta":{{"block_height":5}}}}"#);
            Relay::from_json(body.as_bytes()).unwrap()
        };
        assert_eq!(parse(r#","headers":{}"#).request_hash_hex(), empty.request_hash_hex());
        assert_eq!(parse(r#","headers":{"b":"2","A":"1"}"#).request_hash_hex(), relay.request_hash_hex());
        let null = parse(r#","headers":null"#);
        assert_eq!(null.payload.headers, None);
        assert_eq!(parse("").request_hash_hex(), null.request_hash_hex());
        assert!(utf8(null.request_preimage()).contains(r#""headers":null"#));
        assert_ne!(null.request_hash_hex(), empty.request_hash_hex());
    }

    #[test]
    fn third_party_aats_63_are_valid() {
        let nock = Relay::from_json(v::NOCK_RELAY.as_bytes()).unwrap();
        assert_eq!(nock.proof.aat.hash_hex(), v::NOCK_AAT_HASH);
        nock.proof.aat.validate().unwrap();
        let spec =
            Aat { version: "0.0.1".into(), app_pub_key: v::SPEC_AAT_KEY.into(), client_pub_key: v::SPEC_AAT_KEY.into(), signature: v::SPEC_AAT_SIG.into() };
        spec.validate().unwrap();
        let from =
            Aat { version: "0.0.1".into(), app_pub_key: v::NOCK_APP_PUB.into(), client_pub_key: v::NOCK_CLIENT_PUB.into(), signature: v::NOCK_FROM_SIG.into() };
        from.validate().unwrap();
    }

    #[test]
    fn nock_proof_layout_63_with_historic_request_hash() {
        let nock = Relay::from_json(v::NOCK_RELAY.as_bytes()).unwrap();
        assert_eq!(nock.proof.entropy, 25863001945781196);
        // The fixture's client signature verifies over our proof preimage layout…
        assert!(verify_hex(&nock.proof.aat.client_pub_key, &nock.proof.hash(), &nock.proof.signature));
        signature_verification(&nock.proof.aat.client_pub_key, &nock.proof.hash(), &nock.proof.signature).unwrap();
        // …and its historic request_hash is the hex of exactly our request preimage bytes.
        assert_eq!(nock.proof.request_hash, hex::encode(nock.request_preimage()));
        // A current node rejects it: not a 32-byte hash (62), and not the SHA3 (74).
        assert_eq!(nock.proof.validate_basic().unwrap_err().code, 62);
        assert_eq!(nock.verify_request_hash().unwrap_err().code, 74);
    }

    #[test]
    fn i64_numbers_are_exact_and_strict() {
        for entropy in ["64044085387363130", "9007199254740993", "9223372036854775807"] {
            let body = v::WIRE.replace("7226337963384726", entropy);
            let relay = Relay::from_json(body.as_bytes()).unwrap();
            assert_eq!(relay.proof.entropy.to_string(), entropy);
            assert!(utf8(relay.proof.preimage()).starts_with(&format!(r#"{{"entropy":{entropy},"#)));
        }
        for bad in ["1e3", "\"5\"", "1.5", "9223372036854775808", "7226337963384726.0"] {
            let body = v::WIRE.replace("7226337963384726", bad);
            assert!(Relay::from_json(body.as_bytes()).is_err(), "entropy {bad} must not parse");
        }
        let body = v::WIRE.replace(r#""block_height":101"#, r#""block_height":1.5"#);
        assert!(Relay::from_json(body.as_bytes()).is_err());
        // JSON null for a number or string field is the zero value, like Go.
        let body = v::WIRE.replace(r#""entropy":7226337963384726"#, r#""entropy":null"#);
        assert_eq!(Relay::from_json(body.as_bytes()).unwrap().proof.entropy, 0);
    }

    /// Apply `tamper` to the valid §6.1 proof and return the validate_basic error.
    fn fail(tamper: impl FnOnce(&mut RelayProof)) -> PocketError {
        let mut proof = wire_relay().proof;
        tamper(&mut proof);
        proof.validate_basic().expect_err("tampered proof must fail")
    }

    fn nested(code: u32, msg: &str) -> String {
        format!("the application authentication token is invalid : ERROR:\nCodespace: pocketcore\nCode: {code}\nMessage: \"{msg}\"\n")
    }

    #[test]
    fn validate_basic_error_paths() {
        let token = |inner: &str| format!("the application authentication token is invalid : {inner}");
        let cases: Vec<(PocketError, u32, String)> = vec![
            // 60: session height
            (fail(|p| p.session_block_height = 0), 60, "the block height passed is invalid".into()),
            (fail(|p| p.session_block_height = -5), 60, "the block height passed is invalid".into()),
            // 6 / 42: servicer key
            (fail(|p| p.servicer_pub_key.replace_range(0..2, "zz")), 6, "error decoding the string into hex bytes".into()),
            (fail(|p| p.servicer_pub_key.push('0')), 6, "error decoding the string into hex bytes".into()),
            (fail(|p| p.servicer_pub_key.truncate(62)), 42, "the public key is not the correct cap".into()),
            (fail(|p| p.servicer_pub_key.clear()), 42, "the public key is not the correct cap".into()),
            // 52 / 23 / 62: blockchain
            (fail(|p| p.blockchain = "00zz".into()), 52, "the hex string could not be decoded: encoding/hex: invalid byte: U+007A 'z'".into()),
            (fail(|p| p.blockchain = "002".into()), 52, "the hex string could not be decoded: encoding/hex: odd length hex string".into()),
            (fail(|p| p.blockchain = "é0".into()), 52, "the hex string could not be decoded: encoding/hex: invalid byte: U+00C3 'Ã'".into()),
            (fail(|p| p.blockchain = String::new()), 23, "the hash is invalid: ".into()),
            (fail(|p| p.blockchain = "0102030405".into()), 62, "the merkleHash Length is not valid".into()),
            // 52 / 23 / 62: request hash format
            (fail(|p| p.request_hash.replace_range(4..5, "G")), 52, "the hex string could not be decoded: encoding/hex: invalid byte: U+0047 'G'".into()),
            (fail(|p| p.request_hash.clear()), 23, "the hash is invalid: ".into()),
            (fail(|p| p.request_hash.truncate(62)), 62, "the merkleHash Length is not valid".into()),
            // 29: entropy
            (fail(|p| p.entropy = -1), 29, "the entropy included in the relay request is invalid".into()),
            // 4: AAT, with every inner message
            (fail(|p| p.aat.version.clear()), 4, token("the application authentication token version is missing")),
            (fail(|p| p.aat.version = "0.0.2".into()), 4, token("the application authentication token version is not supported")),
            (fail(|p| p.aat.app_pub_key.clear()), 4, token("the application public key included in the AAT is not valid")),
            (fail(|p| p.aat.app_pub_key.replace_range(0..1, "x")), 4, nested(6, "error decoding the string into hex bytes")),
            (fail(|p| p.aat.app_pub_key.truncate(32)), 4, nested(42, "the public key is not the correct cap")),
            (fail(|p| p.aat.client_pub_key.clear()), 4, token("the client public key included in the AAT is not valid")),
            (fail(|p| p.aat.client_pub_key.push_str("zz")), 4, nested(6, "error decoding the string into hex bytes")),
            (fail(|p| p.aat.client_pub_key.push_str("00")), 4, nested(42, "the public key is not the correct cap")),
            (fail(|p| p.aat.signature.replace_range(0..2, "00")), 4, token("the application signature on the AAT is not valid")),
            (fail(|p| p.aat.signature.clear()), 4, token("the application signature on the AAT is not valid")),
            (fail(|p| p.aat.signature.push('z')), 4, token("the application signature on the AAT is not valid")),
            // The AAT signature covers the client key: swapping in another valid key breaks it.
            (fail(|p| p.aat.client_pub_key = KeyPair::from_seed(&[9; 32]).public_hex), 4, token("the application signature on the AAT is not valid")),
            // 39 / 38 / 41: client signature over the proof hash
            (fail(|p| p.signature.replace_range(0..2, "zz")), 39, "the signature could not be message decoded".into()),
            (fail(|p| p.signature.push('0')), 39, "the signature could not be message decoded".into()),
            (fail(|p| p.signature.clear()), 38, "the signature Length is invalid".into()),
            (fail(|p| p.signature.truncate(126)), 38, "the signature Length is invalid".into()),
            (fail(|p| p.signature.replace_range(0..2, "00")), 41, "the signature could not be verified with the message and pub key".into()),
            // Every signed field is covered: changing any of them invalidates the client signature.
            (fail(|p| p.entropy += 1), 41, "the signature could not be verified with the message and pub key".into()),
            (fail(|p| p.session_block_height += 4), 41, "the signature could not be verified with the message and pub key".into()),
            (fail(|p| p.blockchain = "0022".into()), 41, "the signature could not be verified with the message and pub key".into()),
            (
                fail(|p| p.servicer_pub_key = KeyPair::from_seed(&[4; 32]).public_hex),
                41,
                "the signature could not be verified with the message and pub key".into(),
            ),
            (fail(|p| p.request_hash.replace_range(0..1, "0")), 41, "the signature could not be verified with the message and pub key".into()),
        ];
        for (i, (err, code, message)) in cases.into_iter().enumerate() {
            assert_eq!((err.codespace, err.code, err.message.as_str()), ("pocketcore", code, message.as_str()), "case {i}");
        }
    }

    #[test]
    fn validate_basic_checks_in_servicer_order() {
        // With several faults, the earliest check in §4 rows 12–18 reports.
        assert_eq!(
            fail(|p| {
                p.session_block_height = 0;
                p.servicer_pub_key.clear();
                p.entropy = -1
            })
            .code,
            60
        );
        assert_eq!(
            fail(|p| {
                p.servicer_pub_key.clear();
                p.blockchain.clear()
            })
            .code,
            42
        );
        assert_eq!(
            fail(|p| {
                p.blockchain.clear();
                p.request_hash = "zz".into()
            })
            .code,
            23
        );
        assert_eq!(
            fail(|p| {
                p.request_hash.clear();
                p.entropy = -1
            })
            .code,
            23
        );
        assert_eq!(
            fail(|p| {
                p.entropy = -1;
                p.aat.version.clear()
            })
            .code,
            29
        );
        assert_eq!(
            fail(|p| {
                p.aat.version.clear();
                p.signature.clear()
            })
            .code,
            4
        );
        // Uppercase hex is accepted by Go's decoder for formats, but the strings are hashed as sent,
        // so the client signature no longer matches.
        assert_eq!(fail(|p| p.request_hash = p.request_hash.to_uppercase()).code, 41);
        // Uppercase client signature hex is the same signature.
        let mut proof = wire_relay().proof;
        proof.signature = proof.signature.to_uppercase();
        proof.validate_basic().unwrap();
    }

    #[test]
    fn request_hash_and_payload_checks() {
        let mut relay = wire_relay();
        relay.proof.request_hash = relay.proof.request_hash.to_uppercase();
        assert_eq!(relay.verify_request_hash().unwrap_err(), errors::request_hash_mismatch());
        let mut relay = wire_relay();
        relay.meta.block_height += 1;
        assert_eq!(relay.verify_request_hash().unwrap_err().code, 74);
        let mut relay = wire_relay();
        relay.payload.method = "GET".into();
        assert_eq!(relay.verify_request_hash().unwrap_err().code, 74);
        // Empty data is fine if there is a path, and vice versa; both empty is 25.
        let mut p = wire_relay().payload;
        p.data.clear();
        assert_eq!(p.validate().unwrap_err(), errors::empty_payload_data());
        p.path = "/v1/height".into();
        p.validate().unwrap();
    }

    #[test]
    fn signature_verification_codes() {
        let relay = wire_relay();
        let digest = relay.proof.hash();
        signature_verification(v::CLIENT_PUB, &digest, v::CLIENT_SIG).unwrap();
        assert_eq!(signature_verification("zz", &digest, v::CLIENT_SIG).unwrap_err().code, 6);
        assert_eq!(signature_verification(&v::CLIENT_PUB[..62], &digest, v::CLIENT_SIG).unwrap_err().code, 6);
        assert_eq!(signature_verification(v::APP_PUB, &digest, v::CLIENT_SIG).unwrap_err().code, 41);
        // A 32-byte string that is not a curve point is a verification failure, not a format error.
        let not_a_point = "0200000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(signature_verification(not_a_point, &digest, v::CLIENT_SIG).unwrap_err().code, 41);
    }

    #[test]
    fn go_hex_decode_matches_encoding_hex() {
        assert_eq!(go_hex_decode("00ffAb").unwrap(), vec![0x00, 0xff, 0xab]);
        assert_eq!(go_hex_decode("").unwrap(), Vec::<u8>::new());
        let err = |s: &str| go_hex_decode(s).unwrap_err();
        assert_eq!(err("0g"), "encoding/hex: invalid byte: U+0067 'g'");
        assert_eq!(err("g0"), "encoding/hex: invalid byte: U+0067 'g'");
        assert_eq!(err("0"), "encoding/hex: odd length hex string");
        assert_eq!(err("000"), "encoding/hex: odd length hex string");
        // A bad final char of an odd-length string beats the length error; pairs are checked left to right.
        assert_eq!(err("00g"), "encoding/hex: invalid byte: U+0067 'g'");
        assert_eq!(err("xy"), "encoding/hex: invalid byte: U+0078 'x'");
        assert_eq!(err("0 "), "encoding/hex: invalid byte: U+0020 ' '");
        assert_eq!(err("\u{0}0"), "encoding/hex: invalid byte: U+0000");
        assert_eq!(err("0\u{7f}"), "encoding/hex: invalid byte: U+007F");
        assert_eq!(err("\u{a0}"), "encoding/hex: invalid byte: U+00C2 'Â'");
        assert_eq!(err("\u{80}"), "encoding/hex: invalid byte: U+00C2 'Â'");
        assert_eq!(err("0\u{ad}"), "encoding/hex: invalid byte: U+00C2 'Â'");
        // Go formats code-52 messages as printf formats (twice): a '%' byte is mangled accordingly.
        assert_eq!(
            network_identifier_verification("%0").unwrap_err().message,
            "the hex string could not be decoded: encoding/hex: invalid byte: U+0025 '%!!(MISSING)'(MISSING)"
        );
    }

    #[test]
    fn chain_and_hash_format_bounds() {
        for ok in ["00", "0021", "01020304", "ABCD"] {
            network_identifier_verification(ok).unwrap();
        }
        assert_eq!(network_identifier_verification("0102030405").unwrap_err().code, 62);
        hash_verification(v::REQUEST_HASH).unwrap();
        assert_eq!(hash_verification(&format!("{}00", v::REQUEST_HASH)).unwrap_err().code, 62);
        pub_key_verification(v::APP_PUB).unwrap();
    }
}
