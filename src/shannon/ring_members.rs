//! Who may sign an application's relays: the ring-member rule of reference §2.1
//! (poktroll `getRingPubKeysForAddress` and `GetRingAddressesAtSessionEndHeight`).
//!
//! - start from the gateways the app delegates to now (`delegatee_gateway_addresses`);
//! - add back the gateways of every pending undelegation recorded at a height ≥ the target
//!   session end height (those undelegations had not happened yet at that height); the same
//!   gateway is added back once, but it is *not* checked against the current delegations (as in
//!   Go, so a gateway in both lists appears twice);
//! - if that leaves no gateway, the placeholder key stands in ("Ring signatures require at least
//!   two pubKeys");
//! - the app address joins, and the list is sorted bytewise (`slices.Sort`).
//!
//! The chain data (the app's delegations, account public keys) comes from the caller.

use super::ring::POINT_LEN;

/// The placeholder's compressed public key: `GenPrivKeyFromSecret(PLACEHOLDER_SECRET)` (§2.1,
/// computed there and checked against [`super::keys::OperatorKey::from_secret`] in the tests).
pub const PLACEHOLDER_RING_PUBKEY: [u8; POINT_LEN] = [
    0x02, 0x10, 0x66, 0xf2, 0x93, 0x70, 0x93, 0x56, 0xa3, 0x3e, 0x9c, 0x13, 0x01, 0x78, 0x67, 0x58, 0x6b, 0xaf, 0x52, 0x51, 0x3e, 0x84, 0x5b, 0xc4, 0x33, 0x52,
    0x33, 0xa1, 0x5e, 0xd1, 0xe0, 0x0b, 0xaf,
];

/// The placeholder's address (§2.1).
pub const PLACEHOLDER_RING_ADDRESS: &str = "pokt1v9utztg8z8e6jv9xzv7rnt3m38570xsyjr2crf";

/// The sorted ring addresses of `app_address` for a session ending at `session_end` (module doc).
/// `pending_undelegations` is the app's `pending_undelegations` map as (undelegation height,
/// gateway addresses) pairs, in any order.
pub fn ring_addresses(app_address: &str, delegatee_gateways: &[String], pending_undelegations: &[(u64, Vec<String>)], session_end: u64) -> Vec<String> {
    let mut gateways: Vec<String> = delegatee_gateways.to_vec();
    let mut added_back: Vec<&str> = Vec::new();
    for (height, undelegated) in pending_undelegations {
        if *height < session_end {
            continue; // undelegated before the target height: no longer a member
        }
        for gw in undelegated {
            if !added_back.contains(&gw.as_str()) {
                added_back.push(gw);
                gateways.push(gw.clone());
            }
        }
    }
    if gateways.is_empty() {
        gateways.push(PLACEHOLDER_RING_ADDRESS.to_owned());
    }
    let mut ring = Vec::with_capacity(gateways.len() + 1);
    ring.push(app_address.to_owned());
    ring.extend(gateways);
    ring.sort();
    ring
}

/// The ring's public keys, in the order of `addresses`: the placeholder address maps to
/// [`PLACEHOLDER_RING_PUBKEY`], every other address to `pubkey_of(address)` (an account query for
/// the caller). `None` if some address has no known public key.
pub fn ring_pubkeys(addresses: &[String], mut pubkey_of: impl FnMut(&str) -> Option<[u8; POINT_LEN]>) -> Option<Vec<[u8; POINT_LEN]>> {
    addresses.iter().map(|a| if a == PLACEHOLDER_RING_ADDRESS { Some(PLACEHOLDER_RING_PUBKEY) } else { pubkey_of(a) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shannon::keys::{OperatorKey, PLACEHOLDER_SECRET};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    /// The constants are what `GenPrivKeyFromSecret` gives for the secret (hex from §2.1).
    #[test]
    fn shannon_ring_members_placeholder_constant() {
        let derived = OperatorKey::from_secret(PLACEHOLDER_SECRET);
        assert_eq!(hex::encode(PLACEHOLDER_RING_PUBKEY), "021066f293709356a33e9c13017867586baf52513e845bc4335233a15ed1e00baf");
        assert_eq!(derived.pubkey(), &PLACEHOLDER_RING_PUBKEY);
        assert_eq!(derived.address(), PLACEHOLDER_RING_ADDRESS);
    }

    #[test]
    fn shannon_ring_members_placeholder_when_no_gateways() {
        assert_eq!(ring_addresses("pokt1zzz", &[], &[], 120), s(&["pokt1v9utztg8z8e6jv9xzv7rnt3m38570xsyjr2crf", "pokt1zzz"]));
        assert_eq!(ring_addresses("pokt1aaa", &[], &[], 120), s(&["pokt1aaa", PLACEHOLDER_RING_ADDRESS]));
        // an undelegation recorded before the session end does not count: still the placeholder
        assert_eq!(ring_addresses("pokt1aaa", &[], &[(119, s(&["pokt1gw"]))], 120), s(&["pokt1aaa", PLACEHOLDER_RING_ADDRESS]));
    }

    #[test]
    fn shannon_ring_members_sorted_with_pending_undelegations() {
        let active = s(&["pokt1gwc", "pokt1gwa"]);
        let pending = [(121, s(&["pokt1gwd"])), (120, s(&["pokt1gwb", "pokt1gwd"])), (100, s(&["pokt1old"]))];
        let ring = ring_addresses("pokt1app", &active, &pending, 120);
        // ≥ session end added back (once), < session end dropped; the app joins; sorted
        assert_eq!(ring, s(&["pokt1app", "pokt1gwa", "pokt1gwb", "pokt1gwc", "pokt1gwd"]));
        // pending only, at exactly the end height: no placeholder needed
        assert_eq!(ring_addresses("pokt1app", &[], &[(120, s(&["pokt1gw"]))], 120), s(&["pokt1app", "pokt1gw"]));
        // as in Go, a gateway both delegated and pending is not de-duplicated against the active list
        assert_eq!(ring_addresses("pokt1app", &s(&["pokt1gw"]), &[(130, s(&["pokt1gw"]))], 120), s(&["pokt1app", "pokt1gw", "pokt1gw"]));
    }

    #[test]
    fn shannon_ring_members_pubkeys() {
        let app = OperatorKey::from_hex("2d00ef074d9b51e46886dc9a1df11e7b986611d0f336bdcf1f0adce3e037ec0a").unwrap();
        let addrs = ring_addresses(app.address(), &[], &[], 10);
        let keys = ring_pubkeys(&addrs, |a| (a == app.address()).then(|| *app.pubkey())).unwrap();
        let expected: Vec<[u8; POINT_LEN]> = addrs.iter().map(|a| if a == app.address() { *app.pubkey() } else { PLACEHOLDER_RING_PUBKEY }).collect();
        assert_eq!(keys, expected);
        assert!(ring_pubkeys(&s(&["pokt1unknown"]), |_| None).is_none());
    }
}
