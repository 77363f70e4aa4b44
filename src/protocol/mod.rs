//! Pure Pocket (Morse) relay protocol: wire types, Go-exact canonical JSON, hashes,
//! signatures, error codes and session arithmetic. No I/O lives here, so every
//! function is unit-tested against the vectors in `shared/reference/pocket-relay-protocol.md`.

pub mod errors;
pub mod gojson;
pub mod keys;
pub mod relay;
pub mod session;
pub mod sortjson;

pub use errors::PocketError;
pub use keys::{address_of, KeyPair};
pub use relay::{Aat, Payload, Relay, RelayMeta, RelayProof};

#[cfg(test)]
pub(crate) mod vectors;
