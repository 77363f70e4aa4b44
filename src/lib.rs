//! meshd library: every part of the daemon, exposed for the binary, the integration tests,
//! the demo and the benchmarks. Data flows one way: `http` (server → router) → `relay`
//! (validation → session → chain → signature) → `queue` → `servicer` (notifier → servicer API);
//! `ops` watches and steers it, `spacemesh` is the node-service gateway, `protocol` the pure
//! Morse protocol code, `shannon` the pure Shannon protocol core and `supplier` the Shannon edge
//! (its I/O side).
//!
//! The `tools` feature (on by default) adds what a daemon never runs: `sim` (the neighbours'
//! simulators), the demos and their local Redis. The static release binaries for boards are
//! built without it (docs/deploy.md), which keeps the aarch64 binary under 3 MB.

pub mod app;
pub mod base64;
pub mod client;
pub mod config;
pub mod daemon;
#[cfg(feature = "tools")]
pub mod demo;
pub(crate) mod executor;
pub mod exit_code;
pub mod http;
#[cfg(feature = "tools")]
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
#[cfg(feature = "tools")]
pub mod shannon_demo;
pub mod signals;
#[cfg(feature = "tools")]
pub mod sim;
pub mod spacemesh;
pub mod supplier;
pub mod timefmt;
