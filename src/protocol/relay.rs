//! The Morse relay as it travels on the wire (`POST /v1/client/relay`), and the
//! hashes a servicer computes over it: request hash, AAT hash, proof hash, response hash.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

use super::errors::PocketError;

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

impl Relay {
    /// Parse a relay body exactly as the wire carries it (i64 numbers, never via f64).
    pub fn from_json(body: &[u8]) -> Result<Relay, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Go `json.Marshal({payload, meta})` — the request-hash preimage (§2.3).
    pub fn request_preimage(&self) -> Vec<u8> {
        todo!()
    }

    /// `hex(SHA3-256(request_preimage))`, lowercase.
    pub fn request_hash_hex(&self) -> String {
        todo!()
    }
}

impl Aat {
    /// Preimage `{"version","app_pub_key","client_pub_key","signature":""}` (§2.4).
    pub fn preimage(&self) -> Vec<u8> {
        todo!()
    }
    pub fn hash(&self) -> [u8; 32] {
        todo!()
    }
    /// Version, key formats and the app's signature; errors are code 4 with the inner message.
    pub fn validate(&self) -> Result<(), PocketError> {
        todo!()
    }
}

impl RelayProof {
    /// Preimage of §2.5 (AAT replaced by its hex hash, `"signature":""`).
    pub fn preimage(&self) -> Vec<u8> {
        todo!()
    }
    /// The signature-less proof digest: what the client signs and what servicers dedupe on.
    pub fn hash(&self) -> [u8; 32] {
        todo!()
    }
    /// Stateless checks in a servicer's order (reference §4 rows 12–18): session height ≥ 1 (60),
    /// servicer key (6/42), blockchain (52/23/62), request-hash format (52/23/62), entropy (29),
    /// AAT (4), client signature over `hash()` (39/38/6/41).
    pub fn validate_basic(&self) -> Result<(), PocketError> {
        todo!()
    }
}

/// Digest the servicer signs: SHA3-256 of `{"signature":"","payload":<response>,"Proof":<proof hash hex>}` (§2.6).
pub fn response_hash(response: &str, proof_hash_hex: &str) -> [u8; 32] {
    let _ = (response, proof_hash_hex);
    todo!()
}
