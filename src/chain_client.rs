//! The blockchain call a relay asks for (`ExecuteBlockchainHTTPRequest`): URL join, default
//! method POST, payload headers or `Content-Type: application/json`, basic auth. The upstream
//! HTTP status is ignored like a Go servicer does: whatever body comes back is signed.
//! Blocking: call inside `smol::unblock`.

use std::collections::BTreeMap;

use crate::config::Chain;
use crate::outbound::{base64, read_answer};

/// What a relay asks of a chain, detached from the relay so it can cross into a blocking thread.
#[derive(Debug, Clone)]
pub struct ChainCall {
    pub url: String,
    pub method: String,
    pub headers: Option<BTreeMap<String, String>>,
    pub data: String,
    pub basic_auth: Option<(String, String)>,
    pub drop_connection: bool,
}

impl ChainCall {
    pub fn new(chain: &Chain, payload: &crate::protocol::Payload, path_cleanup: bool, drop_connection: bool) -> ChainCall {
        let path = if path_cleanup { clean_path(&payload.path) } else { payload.path.clone() };
        ChainCall {
            url: join_url(&chain.url, &path),
            method: if payload.method.is_empty() { "POST".into() } else { payload.method.clone() },
            headers: payload.headers.clone(),
            data: payload.data.clone(),
            basic_auth: chain.basic_auth.clone(),
            drop_connection,
        }
    }

    /// Run the call; `Err` carries the transport error text (reported to the client as code 28).
    pub fn execute(&self, agent: &ureq::Agent) -> Result<String, String> {
        self.execute_with_status(agent).map(|(_, body)| body)
    }

    /// [`ChainCall::execute`] plus the chain's HTTP status, which only labels the
    /// `chain_time` metric (the body is signed whatever the status).
    pub fn execute_with_status(&self, agent: &ureq::Agent) -> Result<(u16, String), String> {
        let mut builder = ureq::http::Request::builder().method(self.method.as_str()).uri(self.url.as_str());
        match &self.headers {
            Some(headers) if !headers.is_empty() => {
                for (name, value) in headers {
                    builder = builder.header(name.as_str(), value.as_str());
                }
            }
            _ => builder = builder.header("Content-Type", "application/json"),
        }
        if let Some((user, password)) = &self.basic_auth {
            builder = builder.header("Authorization", format!("Basic {}", base64(format!("{user}:{password}").as_bytes())));
        }
        if self.drop_connection {
            builder = builder.header("Connection", "close");
        }
        let body: &[u8] = if self.method.eq_ignore_ascii_case("HEAD") { &[] } else { self.data.as_bytes() };
        let request = builder.body(body).map_err(|e| format!("building request to {}: {e}", self.url))?;
        let response = agent.run(request).map_err(|e| e.to_string())?;
        let answer = read_answer(response)?;
        let text = match String::from_utf8(answer.body) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok((answer.status, text))
    }
}

/// `trim(url,"/") + "/" + trim(path,"/")` when there is a path (Go `strings.Trim`).
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_matches('/');
    let path = path.trim_matches('/');
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{path}")
    }
}

/// `chain_request_path_cleanup`: keep only printable characters (Go `unicode.IsGraphic`).
fn clean_path(path: &str) -> String {
    path.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_like_the_go_servicer() {
        assert_eq!(join_url("http://h:8545/", ""), "http://h:8545");
        assert_eq!(join_url("http://h:8545/", "/v1/x/"), "http://h:8545/v1/x");
        assert_eq!(join_url("http://h:8545/rpc", "status"), "http://h:8545/rpc/status");
    }

    #[test]
    fn defaults_to_post_and_keeps_basic_auth() {
        let chain = Chain { id: "0021".into(), url: "http://127.0.0.1:1/".into(), basic_auth: Some(("u".into(), "p".into())) };
        let payload = crate::protocol::Payload { data: "{}".into(), path: "a\u{7}b".into(), ..Default::default() };
        let call = ChainCall::new(&chain, &payload, true, false);
        assert_eq!(call.method, "POST");
        assert_eq!(call.url, "http://127.0.0.1:1/ab");
        assert_eq!(call.basic_auth, Some(("u".into(), "p".into())));
    }
}
