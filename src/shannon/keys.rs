//! Supplier operator keys and Shannon account addresses (reference §2.2 "Supplier keys", §2.1
//! "placeholder").
//!
//! A supplier key is a raw 32-byte secp256k1 scalar, given as 64 hex characters (prm's keys file
//! holds `keys: ["<64 hex>", …]`). Its public key travels as 33 compressed bytes, and its account
//! address is `bech32("pokt", RIPEMD160(SHA256(compressed pubkey)))`.

use bech32::{Bech32, Hrp};
use k256::ecdsa::{SigningKey, VerifyingKey};
use k256::elliptic_curve::ops::ReduceNonZero;
use k256::{Scalar, U256};
use ripemd::Ripemd160;
use sha2::{Digest, Sha256};

/// The bech32 human-readable part of Shannon account addresses.
pub const ADDRESS_PREFIX: &str = "pokt";

/// The secret from which poktroll derives the ring placeholder key for apps without gateways (§2.1).
pub const PLACEHOLDER_SECRET: &[u8] = b"placeholder_ring_key_for_apps_without_gateways";

/// Why a key could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not 64 hex characters.
    BadHex,
    /// Zero or not below the curve order.
    OutOfRange,
    /// Not a 33-byte compressed secp256k1 point.
    BadPublicKey,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyError::BadHex => "a secp256k1 key must be 64 hex characters",
            KeyError::OutOfRange => "secp256k1 key out of range",
            KeyError::BadPublicKey => "not a compressed secp256k1 public key",
        })
    }
}

impl std::error::Error for KeyError {}

/// A supplier operator key: signs relay responses (§2.2).
#[derive(Clone)]
pub struct OperatorKey {
    signing: SigningKey,
    pubkey: [u8; 33],
    address: String,
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the secret
        f.debug_struct("OperatorKey").field("address", &self.address).finish()
    }
}

impl OperatorKey {
    /// Loads a key from 64 hex characters (surrounding whitespace and a `0x` prefix tolerated).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        let s = s.strip_prefix("0x").unwrap_or(s);
        if s.len() != 64 {
            return Err(KeyError::BadHex);
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(s, &mut raw).map_err(|_| KeyError::BadHex)?;
        Self::from_bytes(&raw)
    }

    /// Loads a key from its 32 big-endian bytes.
    pub fn from_bytes(raw: &[u8; 32]) -> Result<Self, KeyError> {
        let signing = SigningKey::from_bytes(raw.into()).map_err(|_| KeyError::OutOfRange)?;
        let pubkey = compressed(signing.verifying_key());
        let address = address_of(&pubkey);
        Ok(OperatorKey { signing, pubkey, address })
    }

    /// cosmos-sdk `GenPrivKeyFromSecret`: k = (SHA-256(secret) mod (N−1)) + 1 (§2.1).
    pub fn from_secret(secret: &[u8]) -> Self {
        let digest: [u8; 32] = Sha256::digest(secret).into();
        let k = <Scalar as ReduceNonZero<U256>>::reduce_nonzero(U256::from_be_slice(&digest));
        // k is in 1..N by construction, so it is a valid signing key.
        let signing = match SigningKey::from_bytes(&k.to_bytes()) {
            Ok(key) => key,
            Err(_) => unreachable!("reduce_nonzero gives a scalar in 1..N"),
        };
        let pubkey = compressed(signing.verifying_key());
        let address = address_of(&pubkey);
        OperatorKey { signing, pubkey, address }
    }

    /// The 33-byte compressed public key.
    pub fn pubkey(&self) -> &[u8; 33] {
        &self.pubkey
    }

    /// The `pokt1…` account address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The ECDSA signing key (for [`super::sign`]).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

/// The compressed SEC1 encoding of a verifying key.
pub fn compressed(key: &VerifyingKey) -> [u8; 33] {
    let mut out = [0u8; 33];
    out.copy_from_slice(key.to_encoded_point(true).as_bytes());
    out
}

/// Parses a 33-byte compressed public key.
pub fn parse_pubkey(bytes: &[u8]) -> Result<VerifyingKey, KeyError> {
    if bytes.len() != 33 {
        return Err(KeyError::BadPublicKey);
    }
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| KeyError::BadPublicKey)
}

/// The account address bytes: RIPEMD160(SHA256(compressed pubkey)) (§2.2).
pub fn address_bytes(pubkey: &[u8; 33]) -> [u8; 20] {
    Ripemd160::digest(Sha256::digest(pubkey)).into()
}

/// The bech32 `pokt1…` address of a compressed public key (§2.2).
pub fn address_of(pubkey: &[u8; 33]) -> String {
    let hrp = Hrp::parse_unchecked(ADDRESS_PREFIX);
    // Encoding 20 bytes under a 4-letter prefix is far below bech32's length limit.
    match bech32::encode::<Bech32>(hrp, &address_bytes(pubkey)) {
        Ok(s) => s,
        Err(_) => unreachable!("a 20-byte payload always fits"),
    }
}

/// Decodes a `pokt1…` address to its 20 bytes (bech32 checksum and prefix checked).
pub fn parse_address(s: &str) -> Option<[u8; 20]> {
    let (hrp, data) = bech32::decode(s).ok()?;
    if hrp.as_str() != ADDRESS_PREFIX {
        return None;
    }
    data.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §6.2: the throwaway app and gateway keys.
    #[test]
    fn shannon_keys_app_and_gateway() {
        let app = OperatorKey::from_hex("2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a").unwrap();
        assert_eq!(hex::encode(app.pubkey()), "0397896e9b106df70124a856861cc9be52fac9980e2c7a118a36c19d0198692cc5");
        assert_eq!(app.address(), "pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4");
        let gw = OperatorKey::from_hex("1a11ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ab11").unwrap();
        assert_eq!(hex::encode(gw.pubkey()), "02bbbf99abdcddac27350bca272d7146187c091aacfc1c6f90819c9b6daf4fe846");
        assert_eq!(parse_address(app.address()), Some(address_bytes(app.pubkey())));
        assert!(!format!("{app:?}").contains("2d00ef"));
    }

    /// §2.1: the ring placeholder key (computed in the reference, not observed from Go).
    #[test]
    fn shannon_keys_placeholder() {
        let p = OperatorKey::from_secret(PLACEHOLDER_SECRET);
        assert_eq!(hex::encode(p.pubkey()), "021066f293709356a33e9c13017867586baf52513e845bc4335233a15ed1e00baf");
        assert_eq!(p.address(), "pokt1v9utztg8z8e6jv9xzv7rnt3m38570xsyjr2crf");
    }

    /// §6.2: the localnet supplier keys of pocket-relay-miner's tilt config, with the addresses
    /// that file lists beside them.
    #[test]
    fn shannon_keys_localnet_suppliers() {
        let pairs = [
            ("cd41a98ac7ac3b190c345b88e2885422d7bb553c59bca03c6e2618d49f8b1c06", "pokt19a3t4yunp0dlpfjrp7qwnzwlrzd5fzs2gjaaaj"),
            ("7b2d353bf74a0aade09bf21928a9e195b54fd1309d19b11e63e16f92efdb610c", "pokt1re27pw4llwnatx4sq7rlggqzcm6j3f39epq2wa"),
            ("3f132ad18b97a7adcbbc45d1741997406c5a2625829f9bdac51736f748857710", "pokt1j6dun0x8eyq5mmsmq83zs3c2utt85q8478c89u"),
            ("00a146ce362b2d193a091d24eb31491d88ed94468b73f18c7529b38a6fcdd429", "pokt1qdhw2cpv3r7vrvsxpgvs8athmcfqe23k0s32ls"),
            ("9314b707725f5eb82eac29a2fdb819ca8e8fafef5ed8198ae5cac7b1697d159c", "pokt13gyxtzds0n5qt8fjw3awr726zjma2xywac2m0k"),
        ];
        for (key, address) in pairs {
            assert_eq!(OperatorKey::from_hex(key).unwrap().address(), address, "{key}");
        }
    }

    #[test]
    fn shannon_keys_reject_bad_input() {
        assert_eq!(OperatorKey::from_hex("abcd").err(), Some(KeyError::BadHex));
        assert_eq!(OperatorKey::from_hex(&"zz".repeat(32)).err(), Some(KeyError::BadHex));
        assert_eq!(OperatorKey::from_hex(&"00".repeat(32)).err(), Some(KeyError::OutOfRange));
        assert_eq!(OperatorKey::from_hex(&"ff".repeat(32)).err(), Some(KeyError::OutOfRange));
        assert!(OperatorKey::from_hex(" 0x2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a\n").is_ok());
        assert_eq!(parse_pubkey(&[2u8; 32]).err(), Some(KeyError::BadPublicKey));
        assert!(parse_address("cosmos1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4").is_none());
        assert!(parse_address("pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva5").is_none());
    }
}
