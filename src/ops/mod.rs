//! What an operator sees and steers: Prometheus [`metrics`], the [`private_api`], the identity
//! [`states`] and their [`routes`] (states API, status page, its [`overall`] state), the
//! [`proxy`] to a servicer for the routes the incumbent proxies, hot [`reload`], and the
//! [`redact`]ion of secrets from upstream text; the `check-config --probe` [`probe`].

pub mod metrics;
pub mod overall;
pub mod private_api;
pub mod probe;
pub mod proxy;
pub mod redact;
pub mod reload;
pub mod routes;
pub mod states;
