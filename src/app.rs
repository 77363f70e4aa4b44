//! The daemon's shared state, built once from the loaded configuration and shared by
//! `Rc` on the single executor thread: fleet, chains, HTTP agents, health, sessions, queue, notifier.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Chain, Loaded, Settings};
use crate::fleet::Fleet;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::notifier::Notifier;
use crate::queue::Writer;
use crate::outbound::{agent, AgentSettings};
use crate::servicer_api::ServicerEndpoint;
use crate::sessions::SessionCache;
use crate::states::States;

/// Declares [`Counters`]: one `Cell<u64>` field per line, each exported to Prometheus as
/// `meshd_<field>_total` with its help text. Adding a counter is one line here; nothing else
/// has to change for it to appear in the metrics and on the status page.
macro_rules! counters {
    ($($(#[$doc:meta])* $field:ident: $help:literal,)*) => {
        /// Running totals, for logs, the demo, `/metrics` and the status page.
        #[derive(Default, Debug)]
        pub struct Counters {
            $($(#[$doc])* pub $field: Cell<u64>,)*
        }

        impl Counters {
            /// Every counter as (field name, help text, value), in declaration order.
            pub fn export(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($field), $help, self.$field.get()),)*]
            }
        }
    };
}

counters! {
    served: "Relays answered 200 (signed and queued).",
    rejected: "Relays refused with an error answer.",
    chain_errors: "Relays whose chain call failed (code 28).",
    notified: "Relays the servicer accepted.",
    /// Notifies answered 37: the servicer already had the proof (counted as delivered).
    notify_already_known: "Notifies answered 37: the servicer already had the proof (counted as delivered).",
    dead_lettered: "Relays moved to the dead-letter store.",
    /// Relays refused with 503 because the queue was near full.
    queue_full: "Relays refused with 503 because the queue was near full.",
    /// SIGHUP reload requests received.
    reloads_requested: "Reload requests received (SIGHUP).",
}

impl Counters {
    /// Add one to a counter (single executor thread: a plain Cell is enough).
    pub fn inc(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
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
    // --- operator experience (issue D) ---
    /// Token the private routes (`/v1/private/mesh/*`) require in `Authorization`.
    pub mesh_token: Option<String>,
    /// Prometheus registry (executor thread only).
    pub metrics: Metrics,
    /// Identity-state tracker (transitions per servicer address, persisted).
    pub states: States,
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
        let states = States::load(queue.clone()).unwrap_or_else(|e| {
            log::error!("event=states_load_failed error={e:?} (history continues, earlier states may be recorded again)");
            States::empty(queue.clone())
        });
        App {
            mesh_token: loaded.mesh_token.clone(),
            metrics: Metrics::new(&s.metrics_moniker, s.metrics_attach_servicer_label, loaded.chain_names.clone()),
            states,
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
