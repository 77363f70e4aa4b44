//! meshd library: every part of the daemon, exposed for the binary, the integration tests,
//! the demo and the benchmarks. Data flows one way: `http` (server → router) → `relay`
//! (validation → session → chain → signature) → `queue` → `servicer` (notifier → servicer API);
//! `ops` watches and steers it, `spacemesh` is the node-service gateway, `protocol` the pure
//! Morse protocol code, `shannon` the pure Shannon protocol core and `supplier` its I/O side (full-node
//! queries and session cache; neither wired in yet), `sim` the neighbours' simulators.

pub mod app;
pub mod base64;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod exit_code;
pub mod http;
pub mod local_redis;
pub mod logline;
pub mod ops;
pub mod protocol;
pub mod queue;
pub mod relay;
pub mod relay_cmd;
pub mod sd_notify;
pub mod servicer;
pub mod shannon;
pub mod shannon_demo;
pub mod signals;
pub mod sim;
pub mod spacemesh;
pub mod supplier;
pub mod timefmt;
