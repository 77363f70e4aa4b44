//! The daemon's shared state, built once from the loaded configuration and shared by
//! `Rc` on the single executor thread: fleet, chains, HTTP agents, health, sessions, queue, notifier.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Chain, Loaded, Settings};
use crate::fleet::Fleet;
use crate::health::Health;
use crate::notifier::Notifier;
use crate::queue::Writer;
use crate::outbound::{agent, AgentSettings};
use crate::servicer_api::ServicerEndpoint;
use crate::sessions::SessionCache;

/// Running totals, for logs and the demo (Prometheus export is issue D).
#[derive(Default, Debug)]
pub struct Counters {
    pub served: Cell<u64>,
    pub rejected: Cell<u64>,
    pub chain_errors: Cell<u64>,
    pub notified: Cell<u64>,
    /// Notifies answered 37: the servicer already had the proof (counted as delivered).
    pub notify_already_known: Cell<u64>,
    pub dead_lettered: Cell<u64>,
    /// Relays refused with 503 because the queue was near full.
    pub queue_full: Cell<u64>,
}

pub struct App {
    pub settings: Settings,
    pub fleet: Fleet,
    pub chains: HashMap<String, Chain>,
    /// Chain ids sent in every check.
    pub chain_ids: Vec<String>,
    pub servicer_token: String,
    pub servicer_agent: ureq::Agent,
    pub chain_agent: ureq::Agent,
    pub health: Health,
    pub sessions: SessionCache,
    pub notifier: Notifier,
    /// The durable relay queue (group-committing writer over the LMDB store).
    pub queue: Writer,
    pub counters: Counters,
    pub simulate_relay: bool,
}

impl App {
    pub fn new(loaded: &Loaded, simulate_relay: bool, queue: Writer) -> App {
        let s = loaded.settings.clone();
        let fleet = Fleet::new(&loaded.nodes);
        let chains: HashMap<String, Chain> = loaded.chains.iter().map(|c| (c.id.clone(), c.clone())).collect();
        let mut chain_ids: Vec<String> = chains.keys().cloned().collect();
        chain_ids.sort();
        let servicer_agent = agent(&AgentSettings {
            timeout_ms: s.servicer_rpc_timeout,
            max_idle: s.servicer_rpc_max_idle_connections,
            max_idle_per_host: s.servicer_rpc_max_idle_conns_per_host,
            user_agent: s.user_agent.clone(),
        });
        let chain_agent = agent(&AgentSettings {
            timeout_ms: s.chain_rpc_timeout,
            max_idle: s.chain_rpc_max_idle_connections,
            max_idle_per_host: s.chain_rpc_max_idle_conns_per_host,
            user_agent: s.user_agent.clone(),
        });
        let node_count = fleet.nodes.len();
        App {
            health: Health::new(node_count, Duration::from_secs(s.node_check_interval.max(1))),
            notifier: Notifier::new(node_count),
            queue,
            sessions: SessionCache::new(),
            counters: Counters::default(),
            servicer_token: loaded.servicer_token.clone(),
            fleet,
            chains,
            chain_ids,
            servicer_agent,
            chain_agent,
            settings: s,
            simulate_relay,
        }
    }

    /// How to reach a node's servicer API right now.
    pub fn endpoint(&self, node: usize) -> ServicerEndpoint {
        ServicerEndpoint {
            agent: self.servicer_agent.clone(),
            url: self.fleet.nodes[node].url().to_string(),
            token: self.servicer_token.clone(),
        }
    }
}
