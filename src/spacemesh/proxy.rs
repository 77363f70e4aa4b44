//! The v2 JSON API proxy on `spacemesh.api_listen` (smesher-app and tools, §2, §3.4): every
//! request goes to a healthy `v2_api_nodes` entry (round robin; "balancing v2 api is 100%
//! safe", §4), path and query unchanged, `Host` rewritten to the upstream's. Where go-spacemesh's
//! proxy answers 502 when its single upstream is down, this one fails over to the next node.
//! With `json_cors_everywhere`, preflights are answered here and every answer carries one
//! allow-all CORS set (upstream `Access-Control-*` headers are dropped).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{self, header, text};
use super::upstream::{forward, Forwarded, Outgoing, Select};
use super::State;
use crate::http::server::{Request, Response};

/// Largest request body proxied (JSON API requests are small).
pub const MAX_BODY_BYTES: u64 = 4 << 20;

pub async fn serve(st: Rc<State>, request: Request) -> Response {
    let client = request.peer.ip().to_string();
    st.count_client(&client, |c| c.api_requests += 1);
    let cors = st.settings.json_cors_everywhere;
    let headers = http::request_headers(&request.headers, &client);
    let requested = header(&headers, "Access-Control-Request-Headers").map(str::to_string);
    if cors && request.method == "OPTIONS" {
        // rs/cors answers preflights itself with 204; the upstream never sees them.
        let mut answer = text(204, "");
        answer.body.clear();
        answer.headers.clear();
        http::apply_cors(&mut answer, requested.as_deref());
        return http::response(answer);
    }
    let pool = st.v2.as_ref().expect("the proxy runs only with v2_api_nodes");
    let deadline = Instant::now() + Duration::from_millis(st.settings.request_timeout);
    let out = Arc::new(Outgoing { method: request.method, path_and_query: request.target, headers, body: request.body });
    let mut answer = match forward(pool, &st.client, out, Select::All, 2, deadline).await {
        Forwarded::Answer { answer, .. } => answer,
        // Go's reverse proxy says 502 when the upstream cannot be reached.
        Forwarded::Exhausted { last, errors } => last.unwrap_or_else(|| text(502, &format!("meshd: no JSON API node reachable: {}", errors.join("; ")))),
    };
    if cors {
        http::apply_cors(&mut answer, None);
    }
    http::response(answer)
}
