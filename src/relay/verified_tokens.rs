//! Application auth tokens (AATs) that already passed [`Aat::validate`]. A client sends the same
//! token with every relay of its app, and checking it costs an ed25519 verification, as much as
//! the client's own signature; the result depends on nothing but the token's bytes, so a token
//! seen valid before is valid again. Only successes are remembered (a bad token costs its
//! sender the verification every time), keyed by [`Aat::identity`] — the signed fields and the
//! signature — and bounded: when full, the set starts over. Anyone can sign valid tokens with
//! a key of their own, so a flood of new ones can keep emptying the set; the worst case is
//! then what no cache costs, one verification per relay.

use std::cell::RefCell;
use std::collections::HashSet;

use crate::protocol::errors::PocketError;
use crate::protocol::relay::Aat;

/// Tokens remembered at most (32 bytes each): far more apps than one node serves in a session.
pub const CAPACITY: usize = 4096;

#[derive(Debug)]
pub struct VerifiedTokens {
    seen: RefCell<HashSet<[u8; 32]>>,
    capacity: usize,
}

impl Default for VerifiedTokens {
    fn default() -> VerifiedTokens {
        VerifiedTokens::with_capacity(CAPACITY)
    }
}

impl VerifiedTokens {
    fn with_capacity(capacity: usize) -> VerifiedTokens {
        VerifiedTokens { seen: RefCell::default(), capacity }
    }

    /// [`Aat::validate`], skipped for a token that passed it before.
    pub fn validate(&self, aat: &Aat) -> Result<(), PocketError> {
        let identity = aat.identity();
        if self.seen.borrow().contains(&identity) {
            return Ok(());
        }
        aat.validate()?;
        let mut seen = self.seen.borrow_mut();
        if seen.len() >= self.capacity {
            seen.clear();
        }
        seen.insert(identity);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keys::KeyPair;

    fn token(app: &KeyPair, client_hex: &str) -> Aat {
        let mut aat = Aat { version: "0.0.1".into(), app_pub_key: app.public_hex.clone(), client_pub_key: client_hex.into(), signature: String::new() };
        aat.signature = hex::encode(app.sign(&aat.hash()));
        aat
    }

    #[test]
    fn a_valid_token_is_remembered_and_a_changed_one_is_checked_again() {
        let app = KeyPair::from_seed(&[7; 32]);
        let client = KeyPair::from_seed(&[8; 32]);
        let cache = VerifiedTokens::default();
        let good = token(&app, &client.public_hex.clone());
        cache.validate(&good).unwrap();
        cache.validate(&good).unwrap();
        assert_eq!(cache.len(), 1);

        // Any change to a signed field or to the signature is a different token: verified anew.
        let mut other_client = good.clone();
        other_client.client_pub_key = KeyPair::from_seed(&[9; 32]).public_hex.clone();
        assert_eq!(cache.validate(&other_client).unwrap_err().code, 4, "the app did not sign this client");
        let mut bad_signature = good.clone();
        bad_signature.signature = hex::encode(app.sign(&[3; 32]));
        assert_eq!(cache.validate(&bad_signature).unwrap_err().code, 4);
        let mut version = good.clone();
        version.version = "0.0.2".into();
        assert!(cache.validate(&version).is_err());
        assert_eq!(cache.len(), 1, "failures are not remembered");
        assert_eq!(cache.validate(&bad_signature).unwrap_err().code, 4, "and fail again");
    }

    #[test]
    fn the_set_is_bounded() {
        let app = KeyPair::from_seed(&[7; 32]);
        let cache = VerifiedTokens::with_capacity(8);
        for i in 0..=8u64 {
            let mut seed = [1; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            cache.validate(&token(&app, &KeyPair::from_seed(&seed).public_hex.clone())).unwrap();
        }
        assert_eq!(cache.len(), 1, "full at its capacity, started over with the next token");
    }
}
