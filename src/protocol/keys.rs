//! Ed25519 servicer keys (tendermint 64-byte `seed‖pub` hex), signing and address derivation.

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
        let _ = hex_key;
        todo!()
    }
    /// Ed25519 signature over a 32-byte digest, lowercase hex (128 chars).
    pub fn sign_hex(&self, digest: &[u8; 32]) -> String {
        let _ = digest;
        todo!()
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
    let _ = public_key;
    todo!()
}

/// Verify an ed25519 signature (hex) over a 32-byte digest with a hex public key.
pub fn verify_hex(public_hex: &str, digest: &[u8; 32], signature_hex: &str) -> bool {
    let _ = (public_hex, digest, signature_hex);
    todo!()
}
