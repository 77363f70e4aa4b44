//! The relay path, in the order a relay takes it: [`service`] validates it the way a servicer
//! would and signs the answer, [`sessions`] vouches for its session (one servicer lookup per
//! session, shared by concurrent relays), [`chain`] calls the blockchain; [`verified_tokens`]
//! remembers the app tokens already verified.

pub mod chain;
pub mod service;
pub mod sessions;
pub mod verified_tokens;
