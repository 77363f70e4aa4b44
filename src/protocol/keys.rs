//! Ed25519 servicer keys (tendermint 64-byte `seed‖pub` hex), signing and address derivation.

use ed25519_dalek::{Signer, Verifier};
use sha2::Digest;

/// An ed25519 identity (servicer, app or client) that can sign 32-byte digests.
#[derive(Clone)]
pub struct KeyPair {
    signing: ed25519_dalek::SigningKey,
    /// 64 lowercase hex chars of the 32-byte public key.
    pub public_hex: String,
    /// 40 lowercase hex chars: SHA-256(pub)[0..20].
    pub address_hex: String,
}

impl KeyPair {
    /// Accepts 128 hex chars (`seed‖pub`, the pocket export format; the embedded public key must match
    /// the seed) or 64 hex chars (seed only). Error text says what is wrong, never echoes the key.
    pub fn from_hex(hex_key: &str) -> Result<KeyPair, String> {
        let len = hex_key.len();
        if len != 128 && len != 64 {
            return Err(format!("private key has {len} characters; expected 128 hex (seed+public key) or 64 hex (seed)"));
        }
        // Report only the position of a bad character: the character itself is key material.
        if let Some(pos) = hex_key.bytes().position(|b| !b.is_ascii_hexdigit()) {
            return Err(format!("private key is not hex: invalid character at position {pos}"));
        }
        let bytes = hex::decode(hex_key).map_err(|_| "private key is not valid hex".to_string())?;
        let seed: [u8; 32] = bytes[..32].try_into().expect("checked length");
        let pair = KeyPair::from_seed(&seed);
        if bytes.len() == 64 && bytes[32..] != pair.public_bytes() {
            return Err("private key's embedded public key (last 64 hex chars) does not match its seed".to_string());
        }
        Ok(pair)
    }

    /// Key pair from a raw 32-byte ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = signing.verifying_key().to_bytes();
        KeyPair { signing, public_hex: hex::encode(public), address_hex: hex::encode(address_of(&public)) }
    }

    /// The raw 32-byte public key.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// 128 lowercase hex chars `seed‖pub` (pocket `import-raw` / keys-file format). Secret material:
    /// only for tooling that writes key files.
    pub fn private_hex(&self) -> String {
        hex::encode(self.signing.to_keypair_bytes())
    }

    /// Ed25519 signature over a 32-byte digest, raw.
    pub fn sign(&self, digest: &[u8; 32]) -> [u8; 64] {
        self.signing.sign(digest).to_bytes()
    }

    /// Ed25519 signature over a 32-byte digest, lowercase hex (128 chars).
    pub fn sign_hex(&self, digest: &[u8; 32]) -> String {
        hex::encode(self.sign(digest))
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private material.
        write!(f, "KeyPair({})", self.address_hex)
    }
}

/// Tendermint address of a 32-byte ed25519 public key: SHA-256(pub)[0..20].
pub fn address_of(public_key: &[u8; 32]) -> [u8; 20] {
    let digest = sha2::Sha256::digest(public_key);
    digest[..20].try_into().expect("SHA-256 is 32 bytes")
}

/// Verify an ed25519 signature (hex) over a 32-byte digest with a hex public key.
/// Hex of either case is accepted (Go's decoder does too); malformed input is simply `false`.
pub fn verify_hex(public_hex: &str, digest: &[u8; 32], signature_hex: &str) -> bool {
    let mut public = [0u8; 32];
    let mut sig = [0u8; 64];
    if hex::decode_to_slice(public_hex, &mut public).is_err() || hex::decode_to_slice(signature_hex, &mut sig).is_err() {
        return false;
    }
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
        return false;
    };
    // Cofactorless verification with canonical-S check, like Go's crypto/ed25519.Verify.
    key.verify(digest, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // §6.1: seeds of 32 repeated bytes.
    const VECTORS_61: &[(u8, &str, &str)] = &[
        (0x01, "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c", "34750f98bd59fcfc946da45aaabe933be154a4b5"),
        (0x02, "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394", "6a3803d5f059902a1c6dafbc9ba4729212f7caac"),
        (0x03, "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1", "b62e867fa2f33afe62d5d6b1642e1621d5433078"),
    ];

    #[test]
    fn seeds_give_reference_public_keys_and_addresses() {
        for (byte, public, address) in VECTORS_61 {
            let kp = KeyPair::from_seed(&[*byte; 32]);
            assert_eq!(kp.public_hex, *public);
            assert_eq!(kp.address_hex, *address);
            assert_eq!(hex::encode(address_of(&kp.public_bytes())), *address);
            // Both accepted textual forms give the same identity.
            let seed_only = KeyPair::from_hex(&hex::encode([*byte; 32])).unwrap();
            assert_eq!(seed_only.public_hex, *public);
            let full = KeyPair::from_hex(&kp.private_hex()).unwrap();
            assert_eq!(full.address_hex, *address);
            assert_eq!(kp.private_hex(), format!("{}{}", hex::encode([*byte; 32]), public));
        }
    }

    /// §6.3 fixed keys from pocket-core and pocket-js tests (128-hex `seed‖pub`).
    #[test]
    fn third_party_private_keys_give_reference_addresses() {
        let cases = [
            (
                "70906c8e250352e811a6ca994b674c4da1c6ba4be1e0b3edeadaf59979236c96a25e182d490e9722e72ba90eb21fe0124d03bcb75d2bf6f45b2a1d2b1dc92fac",
                "a25e182d490e9722e72ba90eb21fe0124d03bcb75d2bf6f45b2a1d2b1dc92fac",
                "fb4050225b140ec261aa0de3931b146fd0705d54",
            ),
            (
                "5d86a93dee1ef5f950ccfaafd09d9c812f790c3b2c07945501f68b339118aca0e237efc54a93ed61689959e9afa0d4bd49fa11c0b946c35e6bebaccb052ce3fc",
                "e237efc54a93ed61689959e9afa0d4bd49fa11c0b946c35e6bebaccb052ce3fc",
                "1164b9c95638fc201f35eca2af4c35fe0a81b6cf",
            ),
            (
                "15f53145bfa6efdde6e65ce5ebfd330ac0a2591ae451a8a03ace99eff894b9eed9c7f275388ca1f87900945dba7f3a90fa9bba78f158c070aa12e3eccf53a2eb",
                "d9c7f275388ca1f87900945dba7f3a90fa9bba78f158c070aa12e3eccf53a2eb",
                "84871baf5b4e01be52e5007eacf7048f24bf57e0",
            ),
        ];
        for (private, public, address) in cases {
            let kp = KeyPair::from_hex(private).unwrap();
            assert_eq!(kp.public_hex, public);
            assert_eq!(kp.address_hex, address);
            // Uppercase hex is the same key.
            assert_eq!(KeyPair::from_hex(&private.to_uppercase()).unwrap().address_hex, address);
        }
    }

    #[test]
    fn from_hex_rejects_bad_keys_without_echoing_them() {
        let good = KeyPair::from_seed(&[7; 32]).private_hex();
        // Wrong embedded public key (last char flipped).
        let mut wrong_pub = good.clone();
        wrong_pub.replace_range(127.., if good.ends_with('0') { "1" } else { "0" });
        let bad_char = format!("{}zz{}", &good[..10], &good[12..]);
        for (input, needle) in
            [(wrong_pub.as_str(), "does not match"), (bad_char.as_str(), "position 10"), (&good[..100], "100 characters"), ("", "0 characters")]
        {
            let err = KeyPair::from_hex(input).unwrap_err();
            assert!(err.contains(needle), "{err}");
            // No 8+ char run of the key appears in the message.
            for w in good.as_bytes().windows(8) {
                assert!(!err.contains(std::str::from_utf8(w).unwrap()), "error leaks key: {err}");
            }
        }
        // Debug output hides the private key too.
        let kp = KeyPair::from_hex(&good).unwrap();
        let dbg = format!("{kp:?}");
        assert!(!dbg.contains(&good[..64]) && dbg.contains(&kp.address_hex));
    }

    #[test]
    fn sign_and_verify_round_trip_and_reject_tampering() {
        let kp = KeyPair::from_seed(&[3; 32]);
        let digest = [0xab; 32];
        let sig = kp.sign_hex(&digest);
        assert_eq!(sig.len(), 128);
        assert!(verify_hex(&kp.public_hex, &digest, &sig));
        assert!(verify_hex(&kp.public_hex.to_uppercase(), &digest, &sig.to_uppercase()));
        let mut other = digest;
        other[0] ^= 1;
        assert!(!verify_hex(&kp.public_hex, &other, &sig));
        let other_key = KeyPair::from_seed(&[4; 32]);
        assert!(!verify_hex(&other_key.public_hex, &digest, &sig));
        let mut bad_sig = sig.clone().into_bytes();
        bad_sig[10] = if bad_sig[10] == b'0' { b'1' } else { b'0' };
        assert!(!verify_hex(&kp.public_hex, &digest, std::str::from_utf8(&bad_sig).unwrap()));
        assert!(!verify_hex(&kp.public_hex, &digest, &sig[..126]));
        assert!(!verify_hex(&kp.public_hex[..62], &digest, &sig));
        assert!(!verify_hex("zz", &digest, &sig));
    }
}
