//! Session arithmetic (pocket-core `keeper/session.go`): session start heights and tolerance windows.

use sha3::Digest;

/// Latest session start height for committed height `h` with `bps` blocks per session.
/// Session starts are `1, bps+1, 2·bps+1, …`. A non-positive `bps` (Go would divide by zero)
/// is treated as 1 so a bad config cannot panic the daemon.
pub fn latest_session_height(h: i64, bps: i64) -> i64 {
    let bps = bps.max(1);
    if h % bps == 0 {
        h - bps + 1
    } else {
        (h / bps) * bps + 1
    }
}

/// `0 < sbh` and `latest - allowance*bps <= sbh <= latest`.
pub fn within_tolerance(latest: i64, bps: i64, sbh: i64, allowance: i64) -> bool {
    if sbh <= 0 {
        return false;
    }
    let min = latest.saturating_sub(allowance.saturating_mul(bps));
    min <= sbh && sbh <= latest
}

/// Session header JSON `{"app_public_key","chain","session_height"}` as Go marshals it.
pub fn session_header_preimage(app_public_key: &str, chain: &str, session_height: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + chain.len());
    out.extend_from_slice(b"{\"app_public_key\":");
    super::gojson::write_string(&mut out, app_public_key);
    out.extend_from_slice(b",\"chain\":");
    super::gojson::write_string(&mut out, chain);
    out.extend_from_slice(b",\"session_height\":");
    out.extend_from_slice(session_height.to_string().as_bytes());
    out.push(b'}');
    out
}

/// Session header key hex: SHA3 of `{"app_public_key","chain","session_height"}` (§2.7).
pub fn session_header_hash(app_public_key: &str, chain: &str, session_height: i64) -> [u8; 32] {
    sha3::Sha3_256::digest(session_header_preimage(app_public_key, chain, session_height)).into()
}

/// Lowercase hex of [`session_header_hash`] (the Geo-Mesh session-cache key prefix).
pub fn session_header_hash_hex(app_public_key: &str, chain: &str, session_height: i64) -> String {
    hex::encode(session_header_hash(app_public_key, chain, session_height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_session_height_follows_keeper_formula() {
        // bps 4 (mainnet): starts 1, 5, 9, …
        let cases = [(1, 1), (3, 1), (4, 1), (5, 5), (7, 5), (8, 5), (9, 9), (100, 97), (101, 101), (102, 101)];
        for (h, want) in cases {
            assert_eq!(latest_session_height(h, 4), want, "h={h}");
        }
        // bps 25 (genesis default).
        assert_eq!(latest_session_height(25, 25), 1);
        assert_eq!(latest_session_height(26, 25), 26);
        assert_eq!(latest_session_height(110, 25), 101);
        assert_eq!(latest_session_height(111, 1), 111);
        // Degenerate bps does not panic.
        assert_eq!(latest_session_height(10, 0), 10);
    }

    #[test]
    fn tolerance_window() {
        // allowance 0: only the latest session.
        assert!(within_tolerance(101, 4, 101, 0));
        assert!(!within_tolerance(101, 4, 97, 0));
        assert!(!within_tolerance(101, 4, 105, 0));
        // allowance 1: one session back.
        assert!(within_tolerance(101, 4, 97, 1));
        assert!(within_tolerance(101, 4, 99, 1));
        assert!(!within_tolerance(101, 4, 96, 1));
        assert!(!within_tolerance(101, 4, 102, 1));
        // sbh must be positive even if the window reaches below zero.
        assert!(!within_tolerance(1, 4, 0, 5));
        assert!(!within_tolerance(1, 4, -3, 5));
        assert!(within_tolerance(1, 4, 1, 5));
        // No overflow on absurd inputs.
        assert!(!within_tolerance(i64::MIN, i64::MAX, 1, i64::MAX));
    }

    #[test]
    fn session_header_preimage_layout() {
        let pre = session_header_preimage("8a88", "0021", 101);
        assert_eq!(std::str::from_utf8(&pre).unwrap(), r#"{"app_public_key":"8a88","chain":"0021","session_height":101}"#);
        let h = session_header_hash("8a88", "0021", 101);
        assert_eq!(h, <[u8; 32]>::from(sha3::Sha3_256::digest(&pre)));
        assert_eq!(session_header_hash_hex("8a88", "0021", 101), hex::encode(h));
        assert_ne!(session_header_hash("8a88", "0021", 105), h);
        // Independent check: SHA3-256 computed by Node's crypto over the §6.1 app key header.
        assert_eq!(
            session_header_hash_hex("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c", "0021", 101),
            "9751212d3a1d1f951a36b2fb222e6ecc4b8d6f1f724cefc7d3ebcdbbbef9c02a"
        );
    }
}
