//! The full nodes meshd works for: [`fleet`] (nodes, their URLs and health state),
//! [`health`] (the check loop and connectivity probes), [`api`] (the servicer's mesh routes as
//! a client calls them) and [`notifier`] (delivering queued relays so they can be claimed).

pub mod api;
pub mod fleet;
pub mod health;
pub mod notifier;
