//! Relay mining (reference §4): which served relays are worth claiming.
//!
//! - relay hash = SHA-256 of the marshalled *dehydrated* `Relay` (response payload removed, the
//!   request payload kept); it is also the SMST key and the dedup key;
//! - a relay is mined iff its hash is below the service's `target_hash` at the session start
//!   height, compared big-endian (`bytes.Compare(relayHash, targetHash) == -1`);
//! - the base target `ff…ff` accepts every relay ("all relays are payable") except the one hash
//!   equal to it.

use sha2::{Digest, Sha256};

/// The base difficulty target: all relays are payable.
pub const BASE_TARGET: [u8; 32] = [0xff; 32];

/// SHA-256 of the dehydrated relay bytes (§4).
pub fn relay_hash(dehydrated_relay: &[u8]) -> [u8; 32] {
    Sha256::digest(dehydrated_relay).into()
}

/// `IsRelayVolumeApplicable`: hash < target, big-endian. A target of another length is compared
/// as Go's `bytes.Compare` would (lexicographically), so a shorter target with an equal prefix
/// sorts first.
pub fn is_mined(relay_hash: &[u8; 32], target: &[u8]) -> bool {
    relay_hash.as_slice() < target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shannon_mining_compare() {
        let mut t = [0u8; 32];
        t[0] = 0;
        t[1] = 0;
        t[2..].fill(0xff); // 0000ff…ff, the target of poktroll's relay fixtures (§6.2)
        let mut h = [0u8; 32];
        h[2] = 0x17;
        assert!(is_mined(&h, &t));
        h[1] = 1;
        assert!(!is_mined(&h, &t));
        assert!(!is_mined(&t, &t), "equal is not below");
        assert!(is_mined(&relay_hash(b"anything"), &BASE_TARGET));
        assert!(!is_mined(&BASE_TARGET, &BASE_TARGET));
    }

    #[test]
    fn shannon_relay_hash_is_sha256() {
        assert_eq!(hex::encode(relay_hash(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
