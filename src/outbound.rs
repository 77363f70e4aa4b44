//! Outbound HTTP with ureq: agent construction from the config's timeouts and pool sizes,
//! and a blocking JSON POST used by the servicer API. Every call here blocks, so callers run
//! it inside `smol::unblock` — never on the executor thread.

use std::time::Duration;

/// Upper bound on a response body we are willing to hold in memory.
pub const MAX_RESPONSE_BYTES: u64 = 16 << 20;

pub struct AgentSettings {
    pub timeout_ms: u64,
    pub max_idle: u64,
    pub max_idle_per_host: u64,
    pub user_agent: String,
}

pub fn agent(s: &AgentSettings) -> ureq::Agent {
    let timeout = Duration::from_millis(s.timeout_ms.max(1));
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
        .max_idle_connections(s.max_idle.clamp(1, 4096) as usize)
        .max_idle_connections_per_host(s.max_idle_per_host.clamp(1, 4096) as usize)
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .allow_non_standard_methods(true)
        .max_redirects(0);
    builder = if s.user_agent.is_empty() {
        builder.user_agent(ureq::config::AutoHeaderValue::None)
    } else {
        builder.user_agent(s.user_agent.as_str())
    };
    builder.build().into()
}

/// An HTTP answer: status, content type and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_json(&self) -> bool {
        self.content_type.contains("json")
    }
}

pub fn read_answer(mut response: ureq::http::Response<ureq::Body>) -> Result<Answer, String> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| format!("reading response body: {e}"))?;
    Ok(Answer { status, content_type, body })
}

/// POST a JSON body with extra headers; transport failures become `Err(text)`.
pub fn post_json(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, String> {
    let mut request = agent.post(url).header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send(body).map_err(|e| format!("POST {url}: {e}"))?;
    read_answer(response)
}

/// Standard base64 (RFC 4648, padded): basic-auth headers, session keys in dispatches.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard base64 (padding optional); `None` on any invalid character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (i, o) in cases {
            assert_eq!(base64(i.as_bytes()), o, "input {i:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
        for (i, o) in cases {
            assert_eq!(
                base64_decode(o).as_deref(),
                Some(i.as_bytes()),
                "decoding {o:?}"
            );
        }
        assert_eq!(
            base64_decode("dXNlcjpwYXNz").as_deref(),
            Some(&b"user:pass"[..])
        );
        assert_eq!(base64_decode("a*=="), None);
        assert_eq!(base64_decode("abcde"), None);
    }
}

