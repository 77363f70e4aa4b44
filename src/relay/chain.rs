//! The blockchain call a relay asks for (`ExecuteBlockchainHTTPRequest`): URL join, default
//! method POST, payload headers or `Content-Type: application/json`, basic auth. The upstream
//! HTTP status is ignored like a Go servicer does: whatever body comes back is signed.
//!
//! A chain may list several endpoints (`urls` in chains.json). A call that cannot reach one
//! (transport error: refused, reset, timeout) moves on to the next; the failing endpoint is
//! benched with exponential backoff ([`ChainHealth`]) so later calls try healthy ones first.
//! Endpoints are named by index in logs, never by URL: chain URLs often carry API keys.
//! Calls are async on the executor ([`crate::http::client`]): no thread waits on a chain.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::config::Chain;
use crate::http::client::{Client, ClientError, Outgoing};
use crate::servicer::fleet::Bench;

/// What a relay asks of a chain, detached from the relay (it outlives the relay's borrow).
#[derive(Debug, Clone)]
pub struct ChainCall {
    /// The first URL that will be tried (for `log_chain_request`).
    pub url: String,
    /// (index into the chain's `urls`, full request URL), in the order to try.
    pub targets: Vec<(usize, String)>,
    pub method: String,
    pub headers: Option<BTreeMap<String, String>>,
    pub data: String,
    pub basic_auth: Option<(String, String)>,
    pub drop_connection: bool,
}

/// What happened to a call: its result, the endpoints that could not be reached on the way
/// (index, error) and the endpoint that answered.
#[derive(Debug, Clone)]
pub struct ChainOutcome {
    pub result: Result<(u16, String), String>,
    pub failed: Vec<(usize, String)>,
    pub served_by: Option<usize>,
}

enum Attempt {
    Answered(u16, String),
    /// The endpoint could not be reached: try the next one.
    Unreachable(String),
    /// The request itself is unusable (e.g. a method or header that is not valid HTTP):
    /// no endpoint would take it.
    Invalid(String),
}

impl ChainCall {
    /// A call trying the chain's endpoints in configuration order.
    pub fn new(chain: &Chain, payload: &crate::protocol::Payload, path_cleanup: bool, drop_connection: bool) -> ChainCall {
        let path = if path_cleanup { clean_path(&payload.path) } else { payload.path.clone() };
        let bases: Vec<&String> = if chain.urls.is_empty() { vec![&chain.url] } else { chain.urls.iter().collect() };
        let targets: Vec<(usize, String)> = bases.iter().enumerate().map(|(i, base)| (i, join_url(base, &path))).collect();
        ChainCall {
            url: targets[0].1.clone(),
            targets,
            method: if payload.method.is_empty() { "POST".into() } else { payload.method.clone() },
            headers: payload.headers.clone(),
            data: payload.data.clone(),
            basic_auth: chain.basic_auth.clone(),
            drop_connection,
        }
    }

    /// Try the endpoints in `order` (indexes into the chain's `urls`; unknown ones are ignored,
    /// missing ones are appended) instead of configuration order.
    pub fn ordered(mut self, order: &[usize]) -> ChainCall {
        let mut targets = Vec::with_capacity(self.targets.len());
        for i in order {
            if let Some(pos) = self.targets.iter().position(|(j, _)| j == i) {
                targets.push(self.targets.remove(pos));
            }
        }
        targets.append(&mut self.targets);
        self.url = targets[0].1.clone();
        self.targets = targets;
        self
    }

    /// Run the call; `Err` carries the transport error text (reported to the client as code 28).
    pub async fn execute(&self, client: &Client) -> Result<String, String> {
        self.execute_with_failover(client).await.result.map(|(_, body)| body)
    }

    /// Run the call, moving on to the next endpoint whenever one cannot be reached. The
    /// answer carries the chain's HTTP status, which only labels the `chain_time` metric
    /// (the body is signed whatever the status).
    pub async fn execute_with_failover(&self, client: &Client) -> ChainOutcome {
        let mut failed = Vec::new();
        for (index, url) in &self.targets {
            match self.attempt(client, url).await {
                Attempt::Answered(status, body) => return ChainOutcome { result: Ok((status, body)), failed, served_by: Some(*index) },
                Attempt::Invalid(e) => return ChainOutcome { result: Err(e), failed, served_by: None },
                Attempt::Unreachable(e) => failed.push((*index, e)),
            }
        }
        let last = failed.last().map(|(_, e)| e.clone()).unwrap_or_else(|| "the chain has no endpoint".into());
        ChainOutcome { result: Err(last), failed, served_by: None }
    }

    async fn attempt(&self, client: &Client, url: &str) -> Attempt {
        let mut request = Outgoing::new(&self.method, url).reuse(!self.drop_connection);
        match &self.headers {
            Some(headers) if !headers.is_empty() => {
                for (name, value) in headers {
                    request = request.header(name, value);
                }
            }
            _ => request = request.header("Content-Type", "application/json"),
        }
        if let Some((user, password)) = &self.basic_auth {
            request = request.header("Authorization", &format!("Basic {}", crate::base64::encode(format!("{user}:{password}").as_bytes())));
        }
        if !self.method.eq_ignore_ascii_case("HEAD") {
            request = request.body(self.data.as_bytes());
        }
        match client.send(request).await {
            Ok(answer) => Attempt::Answered(
                answer.status,
                match String::from_utf8(answer.body) {
                    Ok(text) => text,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                },
            ),
            // The error names the bad part, never the URL.
            Err(e @ (ClientError::InvalidRequest(_) | ClientError::InvalidUrl(_))) => Attempt::Invalid(format!("invalid chain request: {e}")),
            Err(e) => Attempt::Unreachable(e.to_string()),
        }
    }
}

/// Feed a call's outcome to the bench state and the counters; returns the call's result.
pub fn record_outcome(app: &crate::app::App, chain: &Chain, outcome: ChainOutcome) -> Result<(u16, String), String> {
    // With one endpoint there is nothing to choose between: no bench to keep.
    if chain.urls.len() > 1 {
        let passed_over = app.chain_health.record(chain, &outcome);
        if passed_over > 0 {
            crate::app::Counters::inc(&app.counters.chain_failovers);
            let from = outcome.failed.first().map(|(i, _)| *i).unwrap_or(0);
            // Every call to a dead endpoint fails over: summarised, not one line per relay.
            crate::logline::note(
                log::Level::Warn,
                "chain_failover",
                &[("chain", &chain.id), ("from", &format!("urls[{from}]")), ("to", &format!("urls[{}]", outcome.served_by.unwrap_or(0)))],
                &[("reason", outcome.failed.first().map(|(_, e)| e.as_str()).unwrap_or(""))],
            );
        }
    }
    outcome.result
}

/// The chains meshd relays to: one snapshot, swapped whole by hot reload and `updatechains`.
#[derive(Debug, Default)]
pub struct ChainSet {
    pub by_id: HashMap<String, Chain>,
    /// Sorted chain ids, sent in every check.
    pub ids: Arc<[String]>,
    /// Chain id → label for metrics (`chains_name_map`, `remote_chains_name_map`).
    pub names: BTreeMap<String, String>,
}

impl ChainSet {
    pub fn new(chains: Vec<Chain>, names: BTreeMap<String, String>) -> ChainSet {
        let by_id: HashMap<String, Chain> = chains.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut ids: Vec<String> = by_id.keys().cloned().collect();
        ids.sort();
        ChainSet { by_id, ids: ids.into(), names }
    }

    pub fn get(&self, id: &str) -> Option<&Chain> {
        self.by_id.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The chain's label for metrics, or its id.
    pub fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map(String::as_str).unwrap_or(id)
    }

    /// The chains sorted by id (for the private routes and comparisons).
    pub fn sorted(&self) -> Vec<Chain> {
        self.ids.iter().map(|id| self.by_id[id].clone()).collect()
    }
}

/// Bench state of chain endpoints, keyed by URL so it survives chain reloads. Executor-only.
#[derive(Default)]
pub struct ChainHealth {
    benches: RefCell<HashMap<String, Bench>>,
    /// Calls answered by a later endpoint after earlier ones failed, per chain id.
    failovers: RefCell<HashMap<String, u64>>,
}

impl ChainHealth {
    /// Whether each of `chain`'s endpoints is usable now (not benched), in configuration order.
    pub fn endpoints_up(&self, chain: &Chain) -> Vec<bool> {
        let now = Instant::now();
        let benches = self.benches.borrow();
        chain.urls.iter().map(|url| benches.get(url).and_then(|b| b.benched_until(now)).is_none()).collect()
    }

    /// Failovers of `chain` since start.
    pub fn failovers(&self, chain: &str) -> u64 {
        self.failovers.borrow().get(chain).copied().unwrap_or(0)
    }

    /// The order to try `chain`'s endpoints in: the ones not benched in configuration order,
    /// then benched ones, soonest back first (when every endpoint is benched, one must still
    /// be tried).
    pub fn order(&self, chain: &Chain) -> Vec<usize> {
        self.order_urls(&chain.urls)
    }

    /// [`ChainHealth::order`] for any list of endpoint URLs (the Shannon service backends).
    pub fn order_urls(&self, urls: &[String]) -> Vec<usize> {
        let now = Instant::now();
        let benches = self.benches.borrow();
        let mut order: Vec<(Option<Instant>, usize)> =
            urls.iter().enumerate().map(|(i, url)| (benches.get(url).and_then(|b| b.benched_until(now)), i)).collect();
        // Stable: None (not benched) sorts first and keeps configuration order.
        order.sort_by_key(|(until, _)| *until);
        order.into_iter().map(|(_, i)| i).collect()
    }

    /// Bench the endpoints that failed and clear the one that answered. Returns how many
    /// endpoints were passed over before one answered (0: no failover happened).
    pub fn record(&self, chain: &Chain, outcome: &ChainOutcome) -> usize {
        self.record_urls("chain", &chain.id, &chain.urls, &outcome.failed, outcome.served_by)
    }

    /// [`ChainHealth::record`] for any list of endpoint URLs: `kind` and `id` name the owner
    /// in logs ("chain 0021", "service anvil"), endpoints are named by index.
    pub fn record_urls(&self, kind: &str, id: &str, urls: &[String], failed: &[(usize, String)], served_by: Option<usize>) -> usize {
        let now = Instant::now();
        let mut benches = self.benches.borrow_mut();
        for (i, error) in failed {
            let Some(url) = urls.get(*i) else { continue };
            if let Some(pause) = benches.entry(url.clone()).or_default().fail(now) {
                log::warn!("event={kind}_url_benched {kind}={id} url=urls[{i}] bench_ms={} error={error:?}", pause.as_millis());
            }
        }
        if let Some(url) = served_by.and_then(|i| urls.get(i)) {
            if let Some(b) = benches.get(url) {
                b.succeed();
            }
        }
        if served_by.is_some() {
            if !failed.is_empty() {
                *self.failovers.borrow_mut().entry(id.to_string()).or_insert(0) += 1;
            }
            failed.len()
        } else {
            0
        }
    }

    /// Forget endpoints no chain uses any more (after a reload).
    pub fn retain(&self, chains: &HashMap<String, Chain>) {
        let used: std::collections::HashSet<&String> = chains.values().flat_map(|c| c.urls.iter()).collect();
        self.benches.borrow_mut().retain(|url, _| used.contains(url));
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
        let chain = Chain {
            id: "0021".into(),
            url: "http://127.0.0.1:1/".into(),
            urls: vec!["http://127.0.0.1:1/".into()],
            basic_auth: Some(("u".into(), "p".into())),
        };
        let payload = crate::protocol::Payload { data: "{}".into(), path: "a\u{7}b".into(), ..Default::default() };
        let call = ChainCall::new(&chain, &payload, true, false);
        assert_eq!(call.method, "POST");
        assert_eq!(call.url, "http://127.0.0.1:1/ab");
        assert_eq!(call.basic_auth, Some(("u".into(), "p".into())));
    }

    fn two_url_chain(first: &str, second: &str) -> Chain {
        Chain { id: "0021".into(), url: first.into(), urls: vec![first.into(), second.into()], basic_auth: None }
    }

    #[test]
    fn an_unreachable_endpoint_fails_over_to_the_next_and_is_benched() {
        let sim = crate::sim::start_chain(crate::sim::ChainSimConfig::default()).unwrap();
        // A port nothing listens on: bind, read the port, close.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let chain = two_url_chain(&format!("http://{dead}"), &sim.url());
        let ex: &'static smol::LocalExecutor<'static> = Box::leak(Box::new(smol::LocalExecutor::new()));
        let client = Client::new(ex, crate::http::client::ClientSettings::new(std::time::Duration::from_secs(2)));
        let run = |call: ChainCall| smol::block_on(ex.run(async { call.execute_with_failover(&client).await }));
        let payload = crate::protocol::Payload { data: r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}"#.into(), ..Default::default() };
        let health = ChainHealth::default();
        assert_eq!(health.order(&chain), [0, 1]);
        let call = ChainCall::new(&chain, &payload, false, false).ordered(&health.order(&chain));
        let outcome = run(call);
        assert!(outcome.result.as_ref().is_ok_and(|(_, b)| b.contains("result")), "{outcome:?}");
        assert_eq!((outcome.served_by, outcome.failed.len()), (Some(1), 1));
        assert_eq!(health.record(&chain, &outcome), 1, "one endpoint passed over");
        assert_eq!(health.order(&chain), [1, 0], "the benched endpoint goes last");
        let again = run(ChainCall::new(&chain, &payload, false, false).ordered(&health.order(&chain)));
        assert_eq!((again.served_by, again.failed.len()), (Some(1), 0), "no time wasted on the benched endpoint");

        // Every endpoint down: the last transport error, nothing served.
        let chain = two_url_chain(&format!("http://{dead}"), &format!("http://{dead}/x"));
        let outcome = run(ChainCall::new(&chain, &payload, false, false));
        assert!(outcome.result.is_err() && outcome.served_by.is_none() && outcome.failed.len() == 2, "{outcome:?}");
        assert_eq!(health.record(&chain, &outcome), 0);
    }

    #[test]
    fn ordering_keeps_every_endpoint_once() {
        let chain = two_url_chain("http://127.0.0.1:1", "http://127.0.0.1:2");
        let payload = crate::protocol::Payload { path: "/p".into(), ..Default::default() };
        let call = ChainCall::new(&chain, &payload, false, false).ordered(&[1, 7]);
        assert_eq!(call.targets, [(1, "http://127.0.0.1:2/p".to_string()), (0, "http://127.0.0.1:1/p".to_string())]);
        assert_eq!(call.url, "http://127.0.0.1:2/p");
    }
}
