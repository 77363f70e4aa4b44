//! Client side of the servicer's mesh endpoints (`/v1/private/mesh/{check,session,relay}`,
//! reference geo-mesh §2): request bodies, answer parsing and the classification of a notify
//! answer as accepted / rejected / retry. Calls are async on the executor.
//!
//! Transport errors name the route, never the servicer's URL, and answer bodies are quoted only
//! through [`snippet`] (secrets masked, cut short). These texts feed logs, identity states and
//! the status page; relay clients get fixed texts instead (README "What never leaves meshd").

use serde::Deserialize;
use serde_json::Value;

use crate::http::client::{Answer, Client};
use crate::protocol::PocketError;

/// What a caller needs to reach one servicer node.
#[derive(Clone)]
pub struct ServicerEndpoint {
    pub client: Client,
    pub url: String,
    pub token: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct NodeStatusJson {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub is_starting: bool,
    #[serde(default)]
    pub is_catching_up: bool,
    #[serde(default)]
    pub height: i64,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct CheckAnswer {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub status: Option<NodeStatusJson>,
    #[serde(default)]
    pub blocks_per_session: i64,
    #[serde(default)]
    pub client_session_sync_allowance: i64,
    #[serde(default)]
    pub wrong_servicers: Option<Vec<String>>,
    #[serde(default)]
    pub wrong_chains: Option<Vec<String>>,
}

/// A session as the servicer vouches for it.
#[derive(Debug, Clone)]
pub struct SessionGrant {
    pub remaining_relays: i64,
    /// The servicer's `DispatchResponse`, returned to clients with codes 60/71/14/75.
    pub dispatch: Option<Value>,
}

/// Outcome of one notify attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyOutcome {
    Accepted,
    /// The servicer refused the relay for good (or the session is dead): do not retry.
    Rejected(PocketError),
    /// The servicer refused this relay for now with a retryable code (1, 14, 44 …).
    RetryRelay(String),
    /// The node itself is not taking notifies (transport error, HTTP 5xx/401/404, syncing):
    /// pause the node, do not count it against the relay.
    NodeDown(String),
}

impl ServicerEndpoint {
    async fn post(&self, path_and_query: &str, extra: &[(&str, &str)], body: &[u8]) -> Result<Answer, String> {
        let url = format!("{}{}", self.url, path_and_query);
        let mut headers = vec![("Authorization", self.token.as_str())];
        headers.extend_from_slice(extra);
        let route = path_and_query.split('?').next().unwrap_or("");
        self.client.post_json(&url, &headers, body).await.map_err(|e| format!("POST {route}: {e}"))
    }

    pub async fn check(&self, servicers: &[String], chains: &[String]) -> Result<CheckAnswer, String> {
        let body = serde_json::json!({ "servicers": servicers, "Chains": chains });
        let answer = self.post("/v1/private/mesh/check", &[], body.to_string().as_bytes()).await?;
        if answer.status != 200 || !answer.is_json() {
            return Err(format!("check answered HTTP {}: {}", answer.status, snippet(&answer.body)));
        }
        serde_json::from_slice(&answer.body).map_err(|e| format!("check answer is not valid JSON: {e}"))
    }

    /// `Ok(Ok(grant))`, `Ok(Err(pocket error))` when the servicer refuses the session,
    /// `Err(text)` when it could not be asked.
    pub async fn session(&self, request: &Value) -> Result<Result<SessionGrant, PocketError>, String> {
        let answer = self.post("/v1/private/mesh/session", &[], request.to_string().as_bytes()).await?;
        let parsed: Option<Value> = if answer.is_json() { serde_json::from_slice(&answer.body).ok() } else { None };
        match (answer.status, parsed) {
            (200, Some(v)) => Ok(Ok(SessionGrant {
                remaining_relays: v.get("remaining_relays").and_then(Value::as_i64).unwrap_or(0),
                dispatch: v.get("dispatch").filter(|d| !d.is_null()).cloned(),
            })),
            (400, Some(v)) => match pocket_error(v.get("error")) {
                Some(e) => Ok(Err(e)),
                None => Err(format!("session answered 400 without an error code: {}", snippet(&answer.body))),
            },
            (status, _) => Err(format!("session answered HTTP {status}: {}", snippet(&answer.body))),
        }
    }

    /// Deliver one served relay (its original JSON bytes) to the servicer.
    pub async fn notify(&self, chain: &str, app: &str, servicer_address: &str, relay_json: &[u8]) -> NotifyOutcome {
        let path = format!("/v1/private/mesh/relay?chain={}&app={}", query_safe(chain), query_safe(app));
        match self.post(&path, &[("X-Servicer", servicer_address)], relay_json).await {
            Err(e) => NotifyOutcome::NodeDown(e),
            Ok(answer) => classify_notify(&answer),
        }
    }
}

/// The incumbent's retry policy (reference geo-mesh §4.2), minus its "give up" ending:
/// 200 with the servicer's own answer shape (`mesh.RPCRelayResult`, reference geo-mesh §2.3:
/// a JSON object with `"signature": true` and a null or absent `error`) is accepted; 400 JSON
/// with a code → that code decides; everything else (5xx, 401, a plain Go error such as
/// "currently syncing" which encodes as `{}`, and any 200 of another shape — an HTML page
/// from a proxy, an empty body, other JSON) means the node is not taking notifies right now:
/// the relay stays queued and the node pauses with backoff (tests/queue_durability.rs,
/// `a_notify_answered_200_with_garbage_is_not_delivered`).
pub fn classify_notify(answer: &Answer) -> NotifyOutcome {
    if answer.status == 200 {
        return match accepted_shape(&answer.body) {
            Ok(()) => NotifyOutcome::Accepted,
            Err(why) => NotifyOutcome::NodeDown(format!("HTTP 200 but {why}, not the servicer's relay answer: {}", snippet(&answer.body))),
        };
    }
    if answer.status == 400 && answer.is_json() {
        let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
        if let Some(e) = parsed.as_ref().and_then(|v| pocket_error(v.get("error"))) {
            return if is_retryable_code(&e) { NotifyOutcome::RetryRelay(e.to_string()) } else { NotifyOutcome::Rejected(e) };
        }
    }
    NotifyOutcome::NodeDown(format!("HTTP {}: {}", answer.status, snippet(&answer.body)))
}

/// Whether a 200 body is pocket-core's success answer `{"signature":true,"error":null,…}`;
/// the error says what it is instead. The content type is not required: the body decides.
fn accepted_shape(body: &[u8]) -> Result<(), &'static str> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("an empty body");
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err("a body that is not JSON");
    };
    let Some(object) = value.as_object() else {
        return Err("JSON that is not an object");
    };
    match object.get("signature") {
        Some(Value::Bool(true)) => {}
        Some(_) => return Err("JSON whose \"signature\" is not true"),
        None => return Err("JSON without \"signature\""),
    }
    match object.get("error") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err("JSON carrying an \"error\""),
    }
}

/// Codes a servicer will answer the same way forever (reference geo-mesh §4.2):
/// unsupported chain (76, 13, 26), duplicate (37), request hash (74), block height (60),
/// and the session-killing 45, 90, 71, 75. Everything else (1, 14, 44, 0 …) may pass later.
pub fn is_retryable_code(e: &PocketError) -> bool {
    !(e.codespace == crate::protocol::errors::CODESPACE_POCKET && matches!(e.code, 76 | 13 | 26 | 37 | 74 | 60 | 45 | 90 | 71 | 75))
}

/// `{"code","codespace","message"}` → PocketError; `{}` or null → None.
pub fn pocket_error(v: Option<&Value>) -> Option<PocketError> {
    let v = v?;
    let code = v.get("code")?.as_u64()? as u32;
    // The message may reach a relay client (a session refusal): configured secrets are masked.
    let message = crate::ops::redact::mask(v.get("message").and_then(Value::as_str).unwrap_or("")).into_owned();
    let codespace = match v.get("codespace").and_then(Value::as_str) {
        Some("sdk") => crate::protocol::errors::CODESPACE_SDK,
        _ => crate::protocol::errors::CODESPACE_POCKET,
    };
    Some(PocketError { codespace, code, message })
}

fn query_safe(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

/// A body for log lines, identity states and the status page: configured secrets masked (a
/// servicer echoes a wrong token in its 401 body), cut to `redact::MAX_DETAIL_CHARS`.
/// Never for relay clients: their errors are fixed texts (`relay::service`).
pub fn snippet(body: &[u8]) -> String {
    // Masked before it is cut, so a token straddling the cut is still found.
    let head = &body[..body.len().min(64 * 1024)];
    crate::ops::redact::scrub(&String::from_utf8_lossy(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, ct: &str, body: &str) -> Answer {
        Answer { status, headers: vec![("content-type".into(), ct.into())], body: body.as_bytes().to_vec() }
    }

    #[test]
    fn notify_answers_are_classified_like_a_servicer_demands() {
        assert_eq!(classify_notify(&answer(200, "application/json", "{\"signature\":true}")), NotifyOutcome::Accepted);
        let ok = r#"{"signature":true,"error":null,"dispatch":{"session":{}}}"#;
        assert_eq!(classify_notify(&answer(200, "application/json; charset=utf-8", ok)), NotifyOutcome::Accepted);
        // A 200 that is not the servicer's answer shape proves nothing: the relay stays queued.
        for garbage in [
            "<html><body>Welcome to nginx!</body></html>",
            "",
            "  \n",
            "{}",
            "[]",
            "null",
            r#"{"signature":false,"error":null}"#,
            r#"{"signature":"true"}"#,
            r#"{"signature":true,"error":{"code":1}}"#,
            r#"{"status":"ok"}"#,
        ] {
            match classify_notify(&answer(200, "text/html", garbage)) {
                NotifyOutcome::NodeDown(why) => assert!(why.starts_with("HTTP 200 but "), "{why}"),
                other => panic!("200 {garbage:?} classified as {other:?}"),
            }
        }
        let dup = r#"{"signature":false,"error":{"code":37,"codespace":"pocketcore","message":"dup"},"dispatch":null}"#;
        assert!(matches!(classify_notify(&answer(400, "application/json", dup)), NotifyOutcome::Rejected(e) if e.code == 37));
        let ovr = r#"{"signature":false,"error":{"code":71,"codespace":"pocketcore","message":"over"},"dispatch":null}"#;
        assert!(matches!(classify_notify(&answer(400, "application/json", ovr)), NotifyOutcome::Rejected(e) if e.code == 71));
        let internal = r#"{"signature":false,"error":{"code":1,"codespace":"sdk","message":"x"}}"#;
        assert!(matches!(classify_notify(&answer(400, "application/json", internal)), NotifyOutcome::RetryRelay(_)));
        // "currently syncing" is a plain Go error that encodes as {}: the node, not the relay.
        assert!(matches!(classify_notify(&answer(400, "application/json", r#"{"error":{}}"#)), NotifyOutcome::NodeDown(_)));
        assert!(matches!(classify_notify(&answer(400, "text/plain", "oops")), NotifyOutcome::NodeDown(_)));
        assert!(matches!(classify_notify(&answer(503, "text/plain", "down")), NotifyOutcome::NodeDown(_)));
        assert!(matches!(classify_notify(&answer(401, "application/json", "{}")), NotifyOutcome::NodeDown(_)));
    }
}
