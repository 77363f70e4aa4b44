//! HTTP on the executor: one server for every listener ([`server`]) and one keep-alive client
//! for every outbound call ([`client`]), both hyper `http1` over async-io on the single
//! `LocalExecutor` thread.

pub mod client;
pub mod server;
