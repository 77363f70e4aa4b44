//! Test helpers for the simulators: fixed keys, a relay builder on top of [`RelayClient`] (what
//! a pocket-js client computes), and a blocking HTTP client that returns 4xx/5xx bodies
//! instead of errors.

use std::time::Duration;

use crate::client::RelayClient;
use crate::protocol::{KeyPair, Payload, Relay};

/// Ed25519 seeds (hex) of the reference vectors: 32 × 0x01 app, 0x02 client, 0x03 servicer.
pub const APP_SEED: &str = "0101010101010101010101010101010101010101010101010101010101010101";
pub const CLIENT_SEED: &str = "0202020202020202020202020202020202020202020202020202020202020202";
pub const SERVICER_SEED: &str = "0303030303030303030303030303030303030303030303030303030303030303";
pub const SERVICER2_SEED: &str = "0404040404040404040404040404040404040404040404040404040404040404";

/// One client's relays to one servicer and session, with tweakable fields.
#[derive(Clone)]
pub struct RelayBuilder {
    pub client: RelayClient,
    pub servicer: KeyPair,
    pub chain: String,
    pub session_height: i64,
    pub block_height: i64,
    pub data: String,
    pub method: String,
    pub path: String,
}

impl RelayBuilder {
    /// `app` signs the AAT for `client`; `block_height` starts equal to the session height,
    /// as pocket-js sets it.
    pub fn new(app: KeyPair, client: KeyPair, servicer: KeyPair, chain: &str, session_height: i64) -> Self {
        RelayBuilder {
            client: RelayClient::new(app, client),
            servicer,
            chain: chain.into(),
            session_height,
            block_height: session_height,
            data: r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}"#.into(),
            method: "POST".into(),
            path: String::new(),
        }
    }

    pub fn build(&self, entropy: i64) -> Relay {
        let payload = Payload { data: self.data.clone(), method: self.method.clone(), path: self.path.clone(), headers: None };
        self.client.build(&self.servicer.public_hex, &self.chain, self.session_height, self.block_height, entropy, payload)
    }
}

/// Blocking client: 5 s overall timeout, statuses are not errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(5))).build().into()
}

/// POST `body` with `headers`; returns (status, body text). Panics on transport errors.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut rq = agent().post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        rq = rq.header(*k, *v);
    }
    let mut resp = rq.send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_else(|e| panic!("POST {url} body: {e}")))
}

/// GET; returns (status, body text). Panics on transport errors.
pub fn get(url: &str) -> (u16, String) {
    let mut resp = agent().get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_else(|e| panic!("GET {url} body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The builder must produce exactly what pocket-js produced for the reference vector
    /// (pocket-relay-protocol.md §6.1), or every simulator test would be testing a fiction.
    #[test]
    fn builder_reproduces_pocket_js_reference_relay() {
        let kp = |s: &str| KeyPair::from_hex(s).unwrap();
        let relay = RelayBuilder::new(kp(APP_SEED), kp(CLIENT_SEED), kp(SERVICER_SEED), "0021", 101).build(7226337963384726);
        assert_eq!(relay.proof.request_hash, "f682374dfaa4bd423c51f49067a36ca999af35debfef8b04a8e1cac84a64311f");
        assert_eq!(
            relay.proof.aat.signature,
            "29c69ff702fd362f82b38220960fbb110aacffc5299f47533a18fc6ea94789f83fbbf386504a65971b722ff5216909da0bb6cef5953c08ad98240f03bea22505"
        );
        assert_eq!(
            relay.proof.signature,
            "b1555fc78838b57fa7d56318242ac6b23b8df14d70455ae874a1026805bd4362755f50dbec28ce356ab33a9f1cc62795211a64ee9f8b666679809dc5cbeb7109"
        );
        assert_eq!(hex::encode(relay.proof.hash()), "4aac2ffeeaf73510d1e42cde4ce02ce3214ab7a389e0993f5c1bfb136bcf44f8");
    }
}
