//! `meshd relay`: build one signed relay the way pocket-js does, print the exact request, send it
//! to a meshd (or any servicer) and check the answer's signature against the servicer's key. The
//! way a node runner checks a deployment end to end with a real app key and a real chain.
//!
//! Without `--session-height` the current session is derived from `POST {to}/v1/query/height`
//! (meshd forwards it to its servicer) and `--blocks-per-session` (Pocket mainnet: 4).

use std::time::Duration;

use crate::client::{wire_json, RelayClient};
use crate::http::client::{call_blocking, Outgoing};
use crate::protocol::keys::verify_hex;
use crate::protocol::relay::response_hash;
use crate::protocol::session::latest_session_height;
use crate::protocol::{KeyPair, Payload};

/// What `meshd relay` was asked to send.
#[derive(Debug, Clone)]
pub struct RelayArgs {
    /// Base URL of the meshd (or servicer) relay port, e.g. `http://127.0.0.1:8081`.
    pub to: String,
    /// The staked app's private key (128 hex).
    pub app_key: String,
    /// The client key the AAT authorises (128 hex); the app key when absent.
    pub client_key: Option<String>,
    /// The servicer's public key (64 hex) or private key (128 hex; only its public half is used).
    pub servicer: String,
    pub chain: String,
    pub session_height: Option<i64>,
    pub blocks_per_session: i64,
    /// Request body for the chain (default: `eth_blockNumber`).
    pub data: String,
    pub method: String,
    pub path: String,
    pub timeout: Duration,
}

/// Exit code 0 when the answer is 200 with a valid servicer signature, 1 otherwise (the answer
/// is printed); `Err` for unusable arguments.
pub fn run(args: &RelayArgs) -> Result<i32, String> {
    let app = KeyPair::from_hex(args.app_key.trim()).map_err(|e| format!("--app-key: {e}"))?;
    let client = match &args.client_key {
        Some(hex) => KeyPair::from_hex(hex.trim()).map_err(|e| format!("--client-key: {e}"))?,
        None => app.clone(),
    };
    let servicer_public = servicer_public_hex(&args.servicer)?;
    let base = args.to.trim_end_matches('/');
    let post = |url: &str, body: &str| -> Result<(u16, String), String> {
        let req = Outgoing::new("POST", url).header("Content-Type", "application/json").body(body.as_bytes().to_vec());
        let answer = call_blocking(req, args.timeout).map_err(|e| format!("{url}: {e}"))?;
        Ok((answer.status, String::from_utf8_lossy(&answer.body).into_owned()))
    };
    let session_height = match args.session_height {
        Some(h) => h,
        None => {
            let url = format!("{base}/v1/query/height");
            let (status, text) = post(&url, "{}")?;
            let height = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["height"].as_i64());
            let height = height.ok_or_else(|| format!("{url}: HTTP {status}: no height in {text:?} (pass --session-height)"))?;
            latest_session_height(height, args.blocks_per_session)
        }
    };
    let payload = Payload { data: args.data.clone(), method: args.method.clone(), path: args.path.clone(), ..Default::default() };
    let entropy = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as i64 & i64::MAX);
    let relay = RelayClient::new(app, client).build(&servicer_public, &args.chain, session_height, session_height, entropy, payload);
    let body = wire_json(&relay);
    let url = format!("{base}/v1/client/relay");
    println!("request   POST {url}");
    println!("{body}");
    let (status, text) = post(&url, &body)?;
    println!("answer    HTTP {status}");
    println!("{}", text.trim_end());
    if status != 200 {
        return Ok(1);
    }
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let (Some(response), Some(signature)) = (answer["response"].as_str(), answer["signature"].as_str()) else {
        println!("signature missing: not a servicer answer");
        return Ok(1);
    };
    let verified = verify_hex(&servicer_public, &response_hash(response, &relay.proof.hash_hex()), signature);
    println!("signature {}", if verified { "verified (servicer key)" } else { "INVALID" });
    Ok(if verified { 0 } else { 1 })
}

fn servicer_public_hex(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.len() {
        64 if hex::decode(text).is_ok() => Ok(text.to_ascii_lowercase()),
        128 => KeyPair::from_hex(text).map(|k| k.public_hex).map_err(|e| format!("--servicer: {e}")),
        n => Err(format!("--servicer: expected the servicer's 64-hex public key, got {n} characters")),
    }
}
