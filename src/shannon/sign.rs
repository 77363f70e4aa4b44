//! The supplier's signature on a relay response (reference §2.2).
//!
//! The chain and the gateway check `RelayResponse.meta.supplier_operator_signature` as follows:
//! - signable bytes = marshal(response with the signature cleared and, when `payload_hash` is
//!   set, the payload cleared); signable hash = SHA-256(signable bytes);
//! - cosmos `secp256k1.PrivKey.Sign(hash)` hashes once more: ECDSA-secp256k1 over
//!   SHA-256(signable hash), RFC 6979 deterministic nonce, 64-byte `R‖S` in low-S form;
//! - verification rejects a signature that is not 64 bytes or has a high S.
//!
//! Building the signable bytes needs the protobuf messages (not here yet); this module starts
//! from those bytes or from their hash.

use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Length of a response signature: `R‖S`.
pub const SIGNATURE_LEN: usize = 64;

/// Why a response signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// Not 64 bytes, or R or S zero or not below N.
    Malformed,
    /// S is in the upper half (malleable form), which cosmos rejects.
    HighS,
    /// The signature does not match the key and message.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Malformed => "malformed supplier signature",
            SignatureError::HighS => "supplier signature is not in low-S form",
            SignatureError::Mismatch => "supplier signature does not verify",
        })
    }
}

impl std::error::Error for SignatureError {}

/// `GetSignableBytesHash`: SHA-256 of the signable bytes (§2.2).
pub fn signable_hash(signable_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(signable_bytes).into()
}

/// The digest ECDSA actually signs: cosmos `Sign` hashes its message (the signable hash) again.
fn ecdsa_digest(signable_hash: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(signable_hash).into()
}

/// Signs a signable hash as cosmos `secp256k1.PrivKey.Sign` does: RFC 6979, low-S, 64-byte R‖S.
pub fn sign_hash(key: &SigningKey, signable_hash: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
    let digest = ecdsa_digest(signable_hash);
    // A 32-byte prehash is always accepted by k256 (it only refuses digests shorter than 16 bytes).
    let sig: Signature = match key.sign_prehash(&digest) {
        Ok(sig) => sig,
        Err(_) => unreachable!("a 32-byte prehash is always signable"),
    };
    // k256 already emits low-S; normalising explicitly keeps that a local guarantee (§8).
    let sig = sig.normalize_s().unwrap_or(sig);
    let mut out = [0u8; SIGNATURE_LEN];
    out.copy_from_slice(&sig.to_bytes());
    out
}

/// Signs the signable bytes (hashes them first).
pub fn sign_bytes(key: &SigningKey, signable_bytes: &[u8]) -> [u8; SIGNATURE_LEN] {
    sign_hash(key, &signable_hash(signable_bytes))
}

/// Verifies as cosmos `VerifySignature` does: 64 bytes, low S, ECDSA over SHA-256(signable hash).
pub fn verify_hash(key: &VerifyingKey, signable_hash: &[u8; 32], sig: &[u8]) -> Result<(), SignatureError> {
    if sig.len() != SIGNATURE_LEN {
        return Err(SignatureError::Malformed);
    }
    let sig = Signature::from_slice(sig).map_err(|_| SignatureError::Malformed)?;
    if sig.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    key.verify_prehash(&ecdsa_digest(signable_hash), &sig).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shannon::keys::{parse_pubkey, OperatorKey};
    use k256::elliptic_curve::ops::Neg;
    use k256::Scalar;

    const SUPPLIER: &str = "1a11ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ab11";

    fn key() -> OperatorKey {
        OperatorKey::from_hex(SUPPLIER).unwrap()
    }

    #[test]
    fn shannon_sign_round_trip() {
        let k = key();
        let vk = parse_pubkey(k.pubkey()).unwrap();
        for i in 0..32u8 {
            let bytes = [i; 40];
            let sig = sign_bytes(k.signing_key(), &bytes);
            assert_eq!(verify_hash(&vk, &signable_hash(&bytes), &sig), Ok(()));
            // a different message, a flipped bit or another key must fail
            let other = signable_hash(&[i.wrapping_add(1); 40]);
            assert_eq!(verify_hash(&vk, &other, &sig), Err(SignatureError::Mismatch));
            let mut flipped = sig;
            flipped[5] ^= 0x10;
            assert!(verify_hash(&vk, &signable_hash(&bytes), &flipped).is_err());
        }
        let app = OperatorKey::from_hex("2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a").unwrap();
        let sig = sign_bytes(k.signing_key(), b"x");
        let app_vk = parse_pubkey(app.pubkey()).unwrap();
        assert_eq!(verify_hash(&app_vk, &signable_hash(b"x"), &sig), Err(SignatureError::Mismatch));
    }

    /// The ECDSA digest is SHA-256 of the signable hash, not the signable hash itself (§2.2).
    #[test]
    fn shannon_sign_double_sha256() {
        let k = key();
        let vk = parse_pubkey(k.pubkey()).unwrap();
        let h = signable_hash(b"relay response");
        let sig = Signature::from_slice(&sign_hash(k.signing_key(), &h)).unwrap();
        assert!(vk.verify_prehash(&Sha256::digest(h), &sig).is_ok());
        assert!(vk.verify_prehash(&h, &sig).is_err());
    }

    #[test]
    fn shannon_sign_deterministic_and_low_s() {
        let k = key();
        let mut high_s_seen = 0;
        for i in 0..64u32 {
            let h = signable_hash(&i.to_be_bytes());
            let a = sign_hash(k.signing_key(), &h);
            assert_eq!(a, sign_hash(k.signing_key(), &h), "RFC 6979: same input, same signature");
            let sig = Signature::from_slice(&a).unwrap();
            assert!(sig.normalize_s().is_none(), "low-S");
            // the high-S twin is a valid ECDSA signature that cosmos and we refuse
            let (r, s) = sig.split_scalars();
            let twin = Signature::from_scalars(r.to_bytes(), Scalar::neg(*s.as_ref()).to_bytes()).unwrap();
            let vk = parse_pubkey(k.pubkey()).unwrap();
            assert_eq!(verify_hash(&vk, &h, &twin.to_bytes()), Err(SignatureError::HighS));
            high_s_seen += 1;
        }
        assert_eq!(high_s_seen, 64);
        let h = signable_hash(b"a");
        assert_ne!(sign_hash(k.signing_key(), &h), sign_hash(k.signing_key(), &signable_hash(b"b")));
    }

    #[test]
    fn shannon_sign_rejects_malformed() {
        let k = key();
        let vk = parse_pubkey(k.pubkey()).unwrap();
        let h = signable_hash(b"m");
        let sig = sign_hash(k.signing_key(), &h);
        assert_eq!(verify_hash(&vk, &h, &sig[..63]), Err(SignatureError::Malformed));
        let mut long = sig.to_vec();
        long.push(1);
        assert_eq!(verify_hash(&vk, &h, &long), Err(SignatureError::Malformed));
        assert_eq!(verify_hash(&vk, &h, &[0u8; 64]), Err(SignatureError::Malformed));
        assert_eq!(verify_hash(&vk, &h, &[0xffu8; 64]), Err(SignatureError::Malformed));
    }
}
