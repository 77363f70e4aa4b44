//! `meshd check-config --probe`: what a node runner wants to know before starting — does each
//! servicer URL take the token, does it answer the check and session routes, at what height,
//! and does each chain endpoint answer. One line per URL; the calls are the daemon's own
//! (`servicer::api`, `servicer::health::probe_url`, `relay::chain`) on a throw-away executor, so
//! a probe that passes here means the daemon's calls pass too. URLs are shown without userinfo.

use std::time::Duration;

use crate::config::{redact_userinfo, Loaded};
use crate::http::client::{Client, ClientSettings};
use crate::protocol::Payload;
use crate::relay::chain::ChainCall;
use crate::servicer::api::ServicerEndpoint;

/// The report, and whether every probe passed.
pub struct Report {
    pub lines: Vec<String>,
    pub all_ok: bool,
}

/// A chain's height question: `eth_blockNumber` (EVM chains answer it; another chain's answer,
/// or error, still proves the endpoint is reachable and shows what it said).
const HEIGHT_CALL: &str = r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}"#;

/// Probe every servicer URL and chain endpoint of `loaded`.
pub fn run(loaded: &Loaded) -> Report {
    // A servicer refusing the token echoes it: every text printed here is scrubbed, as in `start`.
    crate::ops::redact::install_config(loaded);
    let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
    let s = &loaded.settings;
    let servicer = Client::new(ex, ClientSettings::new(Duration::from_millis(s.servicer_rpc_timeout.clamp(1, 30_000))));
    let chain_client = Client::new(ex, ClientSettings::new(Duration::from_millis(s.chain_rpc_timeout.clamp(1, 30_000))));
    smol::block_on(ex.run(async {
        let mut report = Report { lines: Vec::new(), all_ok: true };
        let chain_ids: Vec<String> = loaded.chains.iter().map(|c| c.id.clone()).collect();
        for node in &loaded.nodes {
            let addresses: Vec<String> = node.keys.iter().map(|k| k.address_hex.clone()).collect();
            for url in &node.urls {
                let endpoint = ServicerEndpoint { client: servicer.clone(), url: url.clone(), token: loaded.servicer_token.clone() };
                let check = match endpoint.check(&addresses, &chain_ids).await {
                    Ok(answer) => {
                        let height = answer.status.as_ref().map_or(0, |st| st.height);
                        let wrong = answer.wrong_servicers.as_ref().map_or(0, Vec::len) + answer.wrong_chains.as_ref().map_or(0, Vec::len);
                        if wrong > 0 {
                            report.all_ok = false;
                            format!("check answered, height {height}, but {wrong} servicer address(es) or chain(s) are not the servicer's")
                        } else {
                            format!("check ok (token accepted), height {height}")
                        }
                    }
                    Err(e) => {
                        report.all_ok = false;
                        format!("check FAILED: {e}")
                    }
                };
                let routes = match crate::servicer::health::probe_url(&servicer, url, &loaded.servicer_token).await {
                    Ok(()) => "check/session/relay routes ok".to_string(),
                    Err(failures) => {
                        report.all_ok = false;
                        format!("routes FAILED: {}", failures.join("; "))
                    }
                };
                let line = format!("probe servicer node={} url={}: {check}; {routes}", node.name, redact_userinfo(url));
                report.lines.push(crate::ops::redact::mask(&line).into_owned());
            }
        }
        for chain in &loaded.chains {
            let payload = Payload { data: HEIGHT_CALL.into(), ..Payload::default() };
            let call = ChainCall::new(chain, &payload, s.chain_request_path_cleanup, true);
            for (index, target) in &call.targets {
                // One endpoint at a time: the probe is about each of them, not about failover.
                let single = ChainCall { targets: vec![(*index, target.clone())], url: target.clone(), ..call.clone() };
                let outcome = single.execute_with_failover(&chain_client).await;
                let line = match outcome.result {
                    Ok((status, body)) => {
                        let height = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v.get("result").and_then(|r| r.as_str()).and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok()));
                        match (status, height) {
                            (200, Some(height)) => format!("ok, height {height}"),
                            (200, None) => "ok (answered; no eth_blockNumber height)".to_string(),
                            (status, _) => {
                                report.all_ok = false;
                                format!("answered HTTP {status}")
                            }
                        }
                    }
                    Err(e) => {
                        report.all_ok = false;
                        format!("FAILED: {e}")
                    }
                };
                report.lines.push(format!("probe chain={} urls[{index}]: {line}", chain.id));
            }
        }
        report
    }))
}
