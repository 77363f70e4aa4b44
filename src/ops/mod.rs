//! What an operator sees and steers: Prometheus [`metrics`], the [`private_api`], the identity
//! [`states`] and their [`routes`] (states API, status page, its [`overall`] state), the [`proxy`] to a servicer for
//! the routes the incumbent proxies, and hot [`reload`].

pub mod metrics;
pub mod overall;
pub mod private_api;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod states;
