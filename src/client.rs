//! A Morse relay client that builds signed relays the way pocket-js 0.9.2-rc does (AAT v0.0.1,
//! request hash, client signature over the proof hash) and prints them in pocket-js's wire
//! layout. Used by the demo, simulators, benchmarks and tests to drive a servicer.
//!
//! Hashes follow Go's rules (what a servicer recomputes), so a relay built here is accepted even
//! when its data contains `< > &` or unsorted headers, where real pocket-js would get code 74.

use crate::protocol::relay::SUPPORTED_AAT_VERSION;
use crate::protocol::{Aat, KeyPair, Payload, Relay, RelayMeta, RelayProof};

/// `PocketAAT.from(version "0.0.1", client_pub, app_pub, app_priv)`: the app authorises a client key.
pub fn sign_aat(app: &KeyPair, client_pub_hex: &str) -> Aat {
    let mut aat = Aat {
        version: SUPPORTED_AAT_VERSION.to_string(),
        app_pub_key: app.public_hex.clone(),
        client_pub_key: client_pub_hex.to_string(),
        signature: String::new(),
    };
    aat.signature = app.sign_hex(&aat.hash());
    aat
}

/// An application + client identity pair with its signed AAT.
#[derive(Debug, Clone)]
pub struct RelayClient {
    pub app: KeyPair,
    pub client: KeyPair,
    pub aat: Aat,
}

impl RelayClient {
    /// Creates and signs the AAT (v0.0.1) for `client` with `app`'s key.
    pub fn new(app: KeyPair, client: KeyPair) -> RelayClient {
        let aat = sign_aat(&app, &client.public_hex);
        RelayClient { app, client, aat }
    }

    /// A complete relay for `servicer_pub_hex`: request hash over `{payload, meta}`, proof signed
    /// by the client key. pocket-js sets `block_height` to the session height; callers choose.
    pub fn build(&self, servicer_pub_hex: &str, chain: &str, session_height: i64, block_height: i64, entropy: i64, payload: Payload) -> Relay {
        let mut relay = Relay {
            payload,
            meta: RelayMeta { block_height },
            proof: RelayProof {
                request_hash: String::new(),
                entropy,
                session_block_height: session_height,
                servicer_pub_key: servicer_pub_hex.to_string(),
                blockchain: chain.to_string(),
                aat: self.aat.clone(),
                signature: String::new(),
            },
        };
        relay.proof.request_hash = relay.request_hash_hex();
        relay.proof.signature = self.client.sign_hex(&relay.proof.hash());
        relay
    }
}

/// The exact bytes pocket-js POSTs for `relay` (`JSON.stringify(relay.toJSON())`): field order
/// payload{data,method,path,headers}, meta{block_height}, proof{entropy, session_block_height,
/// servicer_pub_key, blockchain, aat{version,app_pub_key,client_pub_key,signature}, signature,
/// request_hash}; JSON.stringify escaping. Headers come out in key order (pocket-js would keep
/// insertion order) and integers print exactly (pocket-js sends entropies above 2^53 rounded).
pub fn wire_json(relay: &Relay) -> String {
    let p = &relay.payload;
    let proof = &relay.proof;
    let aat = &proof.aat;
    let mut out = String::with_capacity(700 + p.data.len());
    out.push_str("{\"payload\":{\"data\":");
    js_string(&mut out, &p.data);
    out.push_str(",\"method\":");
    js_string(&mut out, &p.method);
    out.push_str(",\"path\":");
    js_string(&mut out, &p.path);
    out.push_str(",\"headers\":");
    match &p.headers {
        None => out.push_str("null"),
        Some(headers) => {
            out.push('{');
            for (i, (k, v)) in headers.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                js_string(&mut out, k);
                out.push(':');
                js_string(&mut out, v);
            }
            out.push('}');
        }
    }
    out.push_str(&format!(
        "}},\"meta\":{{\"block_height\":{}}},\"proof\":{{\"entropy\":{},\"session_block_height\":{},\"servicer_pub_key\":",
        relay.meta.block_height, proof.entropy, proof.session_block_height
    ));
    js_string(&mut out, &proof.servicer_pub_key);
    out.push_str(",\"blockchain\":");
    js_string(&mut out, &proof.blockchain);
    out.push_str(",\"aat\":{\"version\":");
    js_string(&mut out, &aat.version);
    out.push_str(",\"app_pub_key\":");
    js_string(&mut out, &aat.app_pub_key);
    out.push_str(",\"client_pub_key\":");
    js_string(&mut out, &aat.client_pub_key);
    out.push_str(",\"signature\":");
    js_string(&mut out, &aat.signature);
    out.push_str("},\"signature\":");
    js_string(&mut out, &proof.signature);
    out.push_str(",\"request_hash\":");
    js_string(&mut out, &proof.request_hash);
    out.push_str("}}");
    out
}

/// ECMAScript `JSON.stringify` string quoting: short forms for `\b \t \n \f \r " \`, other
/// controls as lowercase `\u00xx`, everything else (HTML chars, U+2028/9, DEL) raw.
fn js_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::vectors as v;

    fn client_61() -> RelayClient {
        RelayClient::new(KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]))
    }

    fn payload_61() -> Payload {
        Payload { data: v::DATA.into(), method: "POST".into(), path: String::new(), headers: None }
    }

    #[test]
    fn reproduces_the_61_wire_bytes_exactly() {
        let client = client_61();
        assert_eq!(client.aat.signature, v::AAT_SIG);
        let servicer = KeyPair::from_seed(&[3; 32]);
        let relay = client.build(&servicer.public_hex, v::CHAIN, v::SESSION_HEIGHT, v::BLOCK_HEIGHT, v::ENTROPY, payload_61());
        assert_eq!(relay.proof.request_hash, v::REQUEST_HASH);
        assert_eq!(relay.proof.signature, v::CLIENT_SIG);
        assert_eq!(wire_json(&relay), v::WIRE);
        // And the wire parses back to the same relay, which a servicer accepts.
        let parsed = Relay::from_json(wire_json(&relay).as_bytes()).unwrap();
        assert_eq!(parsed, relay);
        parsed.proof.validate_basic().unwrap();
        parsed.verify_request_hash().unwrap();
    }

    #[test]
    fn pocket_aat_from_vector_63() {
        let app = KeyPair::from_hex(v::NOCK_APP_PRIV).unwrap();
        assert_eq!(app.public_hex, v::NOCK_APP_PUB);
        let aat = sign_aat(&app, v::NOCK_CLIENT_PUB);
        assert_eq!(aat.signature, v::NOCK_FROM_SIG);
        aat.validate().unwrap();
    }

    #[test]
    fn built_relays_validate_for_awkward_payloads() {
        let client = client_61();
        let headers = [("b".to_string(), "2".to_string()), ("A".to_string(), "<&>".to_string())];
        let payload = Payload {
            data: "{\"params\":[\"<&>\",\"é\",\"\u{8}\u{c}\u{2028}\u{1}\"]}\n".into(),
            method: String::new(),
            path: "/v1/query".into(),
            headers: Some(headers.into_iter().collect()),
        };
        let relay = client.build(v::SERVICER_PUB, "0001", 5, 7, 64044085387363130, payload);
        let wire = wire_json(&relay);
        // JSON.stringify style: HTML chars raw, \b and \f short forms, U+2028 raw, \u0001.
        assert!(wire.contains(r#"\"<&>\""#) && wire.contains(r"\b\f") && wire.contains('\u{2028}') && wire.contains(r"\u0001"));
        let parsed = Relay::from_json(wire.as_bytes()).unwrap();
        assert_eq!(parsed, relay);
        parsed.proof.validate_basic().unwrap();
        parsed.verify_request_hash().unwrap();
        // A different entropy gives a different proof hash (dedupe key) and signature.
        let other = client.build(v::SERVICER_PUB, "0001", 5, 7, 1, relay.payload.clone());
        assert_eq!(other.proof.request_hash, relay.proof.request_hash);
        assert_ne!(other.proof.hash(), relay.proof.hash());
        assert_ne!(other.proof.signature, relay.proof.signature);
    }

    #[test]
    fn js_string_escapes_like_json_stringify() {
        // Expected strings as printed by Node 20's JSON.stringify.
        let mut out = String::new();
        js_string(&mut out, "a\"\\/\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}<>&\u{2028}é😀");
        assert_eq!(out, "\"a\\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}<>&\u{2028}é😀\"");
    }
}
