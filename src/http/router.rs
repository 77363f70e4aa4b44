//! Routes one HTTP request to its handler, under the `client_rpc_timeout` bound: the relay
//! route, meshd's private routes (`/v1/private/mesh/*`, token-protected), the routes the
//! incumbent reverse-proxies to a servicer plus a `/v1/query/*` catch-all, else 404.

use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;

use crate::app::App;
use crate::http::reply::{http_error, Reply};
use crate::http::server::{Request, Response};
use crate::ops::{private_api, proxy};
use crate::protocol::{gojson, Payload};
use crate::relay::chain::ChainCall;
use crate::relay::service as relay_service;

/// Answer one request of the relay listener (its body already read within
/// `client_rpc_max_bytes_size` by the server).
pub async fn serve(app: Rc<App>, mut request: Request) -> Response {
    let _active = app.track_request();
    let body = std::mem::take(&mut request.body);
    let timeout = Duration::from_millis(app.settings.client_rpc_timeout.max(1));
    let reply = futures_lite::future::or(route(&app, &request, body), async move {
        crate::http::deadline::Deadline::after(timeout).await;
        http_error(503, "server Timeout Handling Request")
    })
    .await;
    reply.into()
}

async fn route(app: &Rc<App>, request: &Request, body: Vec<u8>) -> Reply {
    let (method, path) = (request.method.as_str(), request.path());
    match (method, path) {
        ("POST", "/v1/client/relay") => relay_service::handle(app, body).await,
        ("OPTIONS", "/v1/client/relay") => Reply::json(200, Vec::new()).with_cors(),
        ("POST", "/v1/client/sim") if app.simulate_relay => simulate_relay(app, body).await,
        // --- operator routes: states API, status page and its JSON ---
        _ => match crate::ops::routes::route(app, method, path, request.query(), request.header("Authorization")).await {
            Some(reply) => reply,
            // --- fleet routes: private API, proxy to a servicer ---
            None if path.starts_with(private_api::PREFIX) => private_api::handle(app, method, path, request, body).await,
            None if proxy::is_proxied(method, path) => proxy::forward(app, request, body).await,
            None => http_error(404, &format!("no route for {method} {path}")),
        },
    }
}

#[derive(Deserialize)]
struct SimRelay {
    relay_network_id: String,
    #[serde(default)]
    payload: Payload,
}

/// `--simulate-relay`: run the chain call of a payload with no validation and no signature
/// (the incumbent's `/v1/client/sim`), answering the chain body as a JSON string.
async fn simulate_relay(app: &App, body: Vec<u8>) -> Reply {
    let sim: SimRelay = match serde_json::from_slice(&body) {
        Ok(sim) => sim,
        Err(e) => return http_error(400, &format!("invalid simulation body: {e}")),
    };
    let chains = app.chains();
    let Some(chain) = chains.get(&sim.relay_network_id) else {
        return http_error(400, &format!("chain {} is not in chains.json", sim.relay_network_id));
    };
    let s = &app.settings;
    let call = ChainCall::new(chain, &sim.payload, s.chain_request_path_cleanup, s.chain_drop_connections);
    let call = if chain.urls.len() > 1 { call.ordered(&app.chain_health.order(chain)) } else { call };
    let outcome = call.execute_with_failover(&app.chain_client).await;
    match crate::relay::chain::record_outcome(app, chain, outcome) {
        Ok((_, text)) => {
            let mut out = Vec::with_capacity(text.len() + 3);
            gojson::write_string(&mut out, &text);
            Reply::json(200, out)
        }
        Err(e) => http_error(400, &e),
    }
}
