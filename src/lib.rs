//! meshd library: every part of the daemon, exposed for the binary, the integration tests,
//! the demo and the benchmarks. Data flows one way: listener → router → relay_service
//! (protocol validation → sessions → chain_client → signature) → notifier → servicer_api.

pub mod app;
pub mod chain_client;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod exit_code;
pub mod fleet;
pub mod health;
pub mod http;
pub mod metrics;
pub mod notifier;
pub mod ops_routes;
pub mod outbound;
pub mod private_api;
pub mod protocol;
pub mod proxy;
pub mod queue;
pub mod relay_service;
pub mod reload;
pub mod reply;
pub mod router;
pub mod servicer_api;
pub mod sim;
pub mod sd_notify;
pub mod sessions;
pub mod signals;
pub mod spacemesh;
pub mod states;
pub mod timefmt;
