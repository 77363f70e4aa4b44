//! Stateless relay checks and session-height arithmetic (reference §1.1, §3.1–3.3). Pure: the
//! current height and the shared parameters come from the caller.

use super::keys::ADDRESS_PREFIX;
use super::proto::{RelayRequest, SessionHeader};
use super::ring::{RingSignature, POINT_LEN};

/// `maxServiceIdLength` (§1.1).
pub const MAX_SERVICE_ID_LEN: usize = 42;
/// prm's plausibility bound on session length and distance from the current height (§3.2).
pub const PLAUSIBLE_SPAN: i64 = 10_000;

/// Why a relay request was refused before any chain query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckError {
    MissingSessionHeader,
    BadApplicationAddress,
    MissingSessionId,
    BadServiceId,
    BadStartHeight,
    EndNotAfterStart,
    MissingSignature,
    MissingSupplierAddress,
    /// Outside prm's plausibility bounds (§3.2).
    ImplausibleHeights,
    /// A public key inside the ring signature is not one of the app's ring members (§2.1 step 4).
    UnexpectedRingMember,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckError::MissingSessionHeader => "missing session header",
            CheckError::BadApplicationAddress => "invalid application address",
            CheckError::MissingSessionId => "missing session id",
            CheckError::BadServiceId => "invalid service id",
            CheckError::BadStartHeight => "session start height must be at least 1",
            CheckError::EndNotAfterStart => "session end height must be after the start",
            CheckError::MissingSignature => "missing application signature",
            CheckError::MissingSupplierAddress => "missing supplier operator address",
            CheckError::ImplausibleHeights => "implausible session heights",
            CheckError::UnexpectedRingMember => "ring signature holds a key outside the application's ring",
        })
    }
}

impl std::error::Error for CheckError {}

/// `sdk.AccAddressFromBech32` as configured for Shannon: bech32, prefix `pokt`, 1..=255 bytes.
fn is_account_address(s: &str) -> bool {
    match bech32::decode(s) {
        Ok((hrp, data)) => hrp.as_str() == ADDRESS_PREFIX && !data.is_empty() && data.len() <= 255,
        Err(_) => false,
    }
}

/// A service id as the chain accepts it: 1–42 of `[a-zA-Z0-9_-]` (§1.1).
pub fn is_service_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_SERVICE_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `SessionHeader.ValidateBasic` (§1.1).
pub fn validate_header(h: &SessionHeader) -> Result<(), CheckError> {
    if !is_account_address(&h.application_address) {
        return Err(CheckError::BadApplicationAddress);
    }
    if h.session_id.is_empty() {
        return Err(CheckError::MissingSessionId);
    }
    if !is_service_id(&h.service_id) {
        return Err(CheckError::BadServiceId);
    }
    if h.session_start_block_height < 1 {
        return Err(CheckError::BadStartHeight);
    }
    if h.session_end_block_height <= h.session_start_block_height {
        return Err(CheckError::EndNotAfterStart);
    }
    Ok(())
}

/// `RelayRequest.ValidateBasic` (§1.1): a valid header, a signature and a supplier address.
pub fn validate_request(req: &RelayRequest) -> Result<&SessionHeader, CheckError> {
    let h = req.meta.session_header.as_ref().ok_or(CheckError::MissingSessionHeader)?;
    validate_header(h)?;
    if req.meta.signature.is_empty() {
        return Err(CheckError::MissingSignature);
    }
    if req.meta.supplier_operator_address.is_empty() {
        return Err(CheckError::MissingSupplierAddress);
    }
    Ok(h)
}

/// prm `sessionHeightsPlausible` (§3.2), on top of [`validate_header`].
pub fn heights_plausible(h: &SessionHeader, current_height: i64) -> Result<(), CheckError> {
    let (start, end) = (h.session_start_block_height, h.session_end_block_height);
    let ok = start >= 1
        && end > start
        && end.saturating_sub(start) <= PLAUSIBLE_SPAN
        && start <= current_height.saturating_add(PLAUSIBLE_SPAN)
        && end >= current_height.saturating_sub(PLAUSIBLE_SPAN);
    if ok {
        Ok(())
    } else {
        Err(CheckError::ImplausibleHeights)
    }
}

/// poktroll `ringPointsContain` (§2.1 step 4): every key inside the signature must be an expected
/// ring member; order and size are not compared.
pub fn ring_members_expected(sig: &RingSignature, expected: &[[u8; POINT_LEN]]) -> Result<(), CheckError> {
    if sig.ring().all(|k| expected.contains(k)) {
        Ok(())
    } else {
        Err(CheckError::UnexpectedRingMember)
    }
}

/// The shared parameters the windows depend on, read at the session end height (§3.1, §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowParams {
    pub grace_period_end_offset_blocks: u64,
    pub claim_window_open_offset_blocks: u64,
}

impl WindowParams {
    /// `IsGracePeriodElapsed`: current > end + grace offset (§3.1).
    pub fn grace_elapsed(&self, session_end: i64, current_height: i64) -> bool {
        i128::from(current_height) > i128::from(session_end) + i128::from(self.grace_period_end_offset_blocks)
    }

    /// `GetClaimWindowOpenHeight`: end + claim open offset + 1 (§3.3).
    pub fn claim_window_open(&self, session_end: i64) -> i128 {
        i128::from(session_end) + i128::from(self.claim_window_open_offset_blocks) + 1
    }

    /// `CheckRelayRewardEligibility`: current < claim window open (§3.1 item 5).
    pub fn reward_eligible(&self, session_end: i64, current_height: i64) -> bool {
        i128::from(current_height) < self.claim_window_open(session_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shannon::proto::RelayRequestMetadata;

    fn header() -> SessionHeader {
        SessionHeader {
            application_address: "pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva4".into(),
            service_id: "eth_main-1".into(),
            session_id: "ab".repeat(32),
            session_start_block_height: 100,
            session_end_block_height: 119,
        }
    }

    #[test]
    fn shannon_session_validate_basic() {
        assert_eq!(validate_header(&header()), Ok(()));
        let bad = |f: fn(&mut SessionHeader)| {
            let mut h = header();
            f(&mut h);
            validate_header(&h).err()
        };
        assert_eq!(bad(|h| h.application_address = "cosmos1tj9pauan62ccpkh30cs9cvdjzseg2xm9urceh2".into()), Some(CheckError::BadApplicationAddress));
        assert_eq!(bad(|h| h.application_address = "pokt1mrqt5f7qh8uxs27cjm9t7v9e74a9vvdnq5jva5".into()), Some(CheckError::BadApplicationAddress));
        assert_eq!(bad(|h| h.session_id.clear()), Some(CheckError::MissingSessionId));
        assert_eq!(bad(|h| h.service_id.clear()), Some(CheckError::BadServiceId));
        assert_eq!(bad(|h| h.service_id = "a".repeat(43)), Some(CheckError::BadServiceId));
        assert_eq!(bad(|h| h.service_id = "a".repeat(42)), None);
        assert_eq!(bad(|h| h.service_id = "eth.main".into()), Some(CheckError::BadServiceId));
        assert_eq!(bad(|h| h.session_start_block_height = 0), Some(CheckError::BadStartHeight));
        assert_eq!(bad(|h| h.session_end_block_height = 100), Some(CheckError::EndNotAfterStart));

        let mut req = RelayRequest::default();
        assert_eq!(validate_request(&req).err(), Some(CheckError::MissingSessionHeader));
        req.meta = RelayRequestMetadata { session_header: Some(header()), ..Default::default() };
        assert_eq!(validate_request(&req).err(), Some(CheckError::MissingSignature));
        req.meta.signature = vec![1];
        assert_eq!(validate_request(&req).err(), Some(CheckError::MissingSupplierAddress));
        req.meta.supplier_operator_address = "pokt1x".into();
        assert_eq!(validate_request(&req), Ok(&header()));
    }

    #[test]
    fn shannon_session_plausibility_and_windows() {
        let h = header();
        assert_eq!(heights_plausible(&h, 110), Ok(()));
        assert_eq!(heights_plausible(&h, 119 + PLAUSIBLE_SPAN), Ok(()));
        assert!(heights_plausible(&h, 120 + PLAUSIBLE_SPAN).is_err());
        assert!(heights_plausible(&h, 100 - PLAUSIBLE_SPAN - 1).is_err());
        let long = SessionHeader { session_end_block_height: 100 + PLAUSIBLE_SPAN + 1, ..h.clone() };
        assert!(heights_plausible(&long, 110).is_err());
        let extreme = SessionHeader { session_start_block_height: i64::MAX - 1, session_end_block_height: i64::MAX, ..h };
        assert!(heights_plausible(&extreme, i64::MIN).is_err());
        // mainnet script values (§3.3): grace 10, claim open offset 11
        let p = WindowParams { grace_period_end_offset_blocks: 10, claim_window_open_offset_blocks: 11 };
        let e = 119;
        assert!(!p.grace_elapsed(e, e + 10));
        assert!(p.grace_elapsed(e, e + 11));
        assert_eq!(p.claim_window_open(e), i128::from(e) + 12);
        assert!(p.reward_eligible(e, e + 11));
        assert!(!p.reward_eligible(e, e + 12));
    }

    #[test]
    fn shannon_session_ring_membership() {
        let line = include_str!("../../tests/vectors/shannon-ring-signatures.jsonl").lines().next().unwrap();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let sig = RingSignature::parse(&hex::decode(v["sig"].as_str().unwrap()).unwrap()).unwrap();
        let ring: Vec<[u8; POINT_LEN]> = v["ring"].as_array().unwrap().iter().map(|k| hex::decode(k.as_str().unwrap()).unwrap().try_into().unwrap()).collect();
        assert_eq!(ring_members_expected(&sig, &ring), Ok(()));
        let reversed: Vec<_> = ring.iter().rev().copied().collect();
        assert_eq!(ring_members_expected(&sig, &reversed), Ok(()), "order is not compared");
        let mut superset = ring.clone();
        superset.push([2u8; POINT_LEN]);
        assert_eq!(ring_members_expected(&sig, &superset), Ok(()), "size is not compared");
        assert_eq!(ring_members_expected(&sig, &ring[..1]), Err(CheckError::UnexpectedRingMember));
    }
}
