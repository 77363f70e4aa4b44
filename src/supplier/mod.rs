//! The Shannon supplier edge's I/O side — the pure protocol stays in `src/shannon`
//! (reference: `shared/reference/shannon-relay.md`).
//!
//! - [`fullnode`]: the full node's REST (grpc-gateway) queries over a list of URLs with
//!   failover (§3.4);
//! - [`sessions`]: the per-session chain view a relay is checked against (header, suppliers,
//!   ring, params, difficulty, CUPR), one set of queries per session (§2.1, §3.1, §4);
//! - [`height`]: the polled current height;
//! - `flight`: the single-flight cache both caches of [`sessions`] use.

pub(crate) mod flight;
pub mod fullnode;
pub mod height;
pub mod sessions;
