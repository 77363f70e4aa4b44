//! Event-driven HTTP/1.1 on the daemon's single-threaded smol executor: `client` for outbound calls.

pub mod client;
