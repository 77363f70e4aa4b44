//! The pure protocol core of a Pocket Network **Shannon** edge relayer
//! (reference: `shared/reference/shannon-relay.md`).
//!
//! Role: a Shannon relay arrives as a protobuf `RelayRequest` whose `meta.signature` is a bLSAG
//! ring signature by the application or one of its gateways (§2.1); the supplier answers with a
//! `RelayResponse` signed by its operator key with ECDSA-secp256k1 (§2.2); relays whose hash is
//! below the service's difficulty target are mined (§4).
//!
//! Everything here is pure — bytes in, bytes or verdicts out, no I/O, no clocks, no chain
//! queries — so it can be checked against fixed vectors:
//! - [`ring`]: parse and verify ring signatures (with the chain's left-aligned `hash_to_scalar`);
//! - [`ring_sign`]: make ring signatures the chain's verifier accepts (for our own client);
//! - [`ring_members`]: which addresses form an application's ring, and the placeholder key;
//! - [`keys`]: operator keys from hex, compressed public keys, `pokt1…` addresses;
//! - [`sign`]: the supplier's deterministic low-S response signature;
//! - [`mining`]: the relay hash and the difficulty comparison;
//! - [`proto`]: the relay messages with gogoproto-identical encoding, signable hashes, response
//!   signing and the dehydrated relay;
//! - [`payload`]: `POKTHTTPRequest`/`POKTHTTPResponse`, the HTTP payloads inside relays, with
//!   protobuf-go's deterministic encoding (§1.4);
//! - [`session`]: `ValidateBasic`, prm's height plausibility bounds, ring membership, and the
//!   grace / claim-window arithmetic;
//! - [`mined`]: prm's `MinedRelayMessage`, the relayer → miner record (§5);
//! - [`client`]: a gateway-side relay builder and response checker, for tests, the demo and the
//!   bench.
//!
//! Not here yet (see §7): the chain queries (sessions, params, app delegations and account
//! pubkeys) and the daemon wiring.

pub mod client;
pub mod keys;
pub mod mined;
pub mod mining;
pub mod payload;
pub mod proto;
pub mod ring;
pub mod ring_members;
pub mod ring_sign;
pub mod session;
pub mod sign;
