//! HTTP answers in the shapes clients expect: the servicer's relay success and error bodies
//! (Go `WriteJSONResponse`: sorted keys, HTML-escaped strings, trailing newline) and the
//! `{"code","message"}` shape of other routes.

use std::borrow::Cow;

use serde_json::Value;

use crate::http::server::Response;
use crate::protocol::{gojson, PocketError};

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// Static for meshd's own answers; owned when passed through from a proxied servicer.
    pub content_type: Cow<'static, str>,
    pub body: Vec<u8>,
    /// Add the relay route's permissive CORS headers.
    pub cors: bool,
}

pub const JSON: &str = "application/json; charset=utf-8";

impl Reply {
    pub fn json(status: u16, body: Vec<u8>) -> Reply {
        Reply { status, content_type: Cow::Borrowed(JSON), body, cors: false }
    }
    pub fn with_cors(mut self) -> Reply {
        self.cors = true;
        self
    }
}

/// CORS headers of the incumbent's relay route.
const CORS: [(&str, &str); 3] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST"),
    ("Access-Control-Allow-Headers", "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token, Authorization"),
];

impl From<Reply> for Response {
    fn from(reply: Reply) -> Response {
        let mut response = Response::new(reply.status, &reply.content_type, reply.body);
        if reply.cors {
            for (name, value) in CORS {
                response = response.with_header(name, value);
            }
        }
        response
    }
}

/// 200 `{"response":…,"signature":…}\n` — keys sorted as Go's map re-encoding leaves them.
pub fn relay_ok(response: &str, signature_hex: &str) -> Reply {
    let mut body = Vec::with_capacity(response.len() + 180);
    body.extend_from_slice(b"{\"response\":");
    gojson::write_string(&mut body, response);
    body.extend_from_slice(b",\"signature\":");
    gojson::write_string(&mut body, signature_hex);
    body.extend_from_slice(b"}\n");
    Reply::json(200, body).with_cors()
}

/// 400 `{"dispatch":…,"error":{"code":N,"codespace":"…","message":"…"}}\n`, a real servicer's shape.
/// `dispatch` is the servicer's dispatch already encoded the Go way (`gojson::to_vec`).
pub fn relay_error(error: &PocketError, dispatch: Option<&[u8]>) -> Reply {
    let mut body = Vec::with_capacity(160);
    body.extend_from_slice(b"{\"dispatch\":");
    match dispatch {
        Some(d) => body.extend_from_slice(d),
        None => body.extend_from_slice(b"null"),
    }
    body.extend_from_slice(b",\"error\":{\"code\":");
    body.extend_from_slice(error.code.to_string().as_bytes());
    body.extend_from_slice(b",\"codespace\":");
    gojson::write_string(&mut body, error.codespace);
    body.extend_from_slice(b",\"message\":");
    gojson::write_string(&mut body, &error.message);
    body.extend_from_slice(b"}}\n");
    Reply::json(400, body).with_cors()
}

/// 200 with a JSON value (serde_json's compact form and a trailing newline).
pub fn json_value(value: &Value) -> Reply {
    let mut body = serde_json::to_vec(value).expect("a JSON value serializes");
    body.push(b'\n');
    Reply::json(200, body)
}

/// 503 in the relay error shape: meshd itself cannot take relays right now.
pub fn relay_unavailable(error: &PocketError) -> Reply {
    let mut reply = relay_error(error, None);
    reply.status = 503;
    reply
}

/// `{"code":<status>,"message":"…"}\n` (Go `WriteErrorResponse`).
pub fn http_error(status: u16, message: &str) -> Reply {
    let mut body = Vec::with_capacity(message.len() + 32);
    body.extend_from_slice(b"{\"code\":");
    body.extend_from_slice(status.to_string().as_bytes());
    body.extend_from_slice(b",\"message\":");
    gojson::write_string(&mut body, message);
    body.extend_from_slice(b"}\n");
    Reply::json(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_error_has_the_real_servicer_shape() {
        let e = PocketError::pocket(74, "the request hash does not match the payload hash");
        let r = relay_error(&e, None);
        assert_eq!(r.status, 400);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "{\"dispatch\":null,\"error\":{\"code\":74,\"codespace\":\"pocketcore\",\"message\":\"the request hash does not match the payload hash\"}}\n"
        );
    }

    #[test]
    fn relay_ok_escapes_like_go_and_ends_with_newline() {
        let r = relay_ok("{\"a\":\"<b>\"}", "ab");
        assert_eq!(String::from_utf8(r.body).unwrap(), "{\"response\":\"{\\\"a\\\":\\\"\\u003cb\\u003e\\\"}\",\"signature\":\"ab\"}\n");
    }

    #[test]
    fn dispatch_is_reencoded_with_sorted_keys() {
        let d: Value = serde_json::from_str(r#"{"session":{"nodes":[],"header":{"chain":"0021"}},"block_height":101}"#).unwrap();
        let r = relay_error(&PocketError::pocket(71, "over"), Some(&gojson::to_vec(&d)));
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.starts_with("{\"dispatch\":{\"block_height\":101,\"session\":{\"header\":{\"chain\":\"0021\"},\"nodes\":[]}},"), "{text}");
    }
}
