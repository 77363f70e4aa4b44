//! Session arithmetic (pocket-core `keeper/session.go`): session start heights and tolerance windows.

/// Latest session start height for committed height `h` with `bps` blocks per session.
pub fn latest_session_height(h: i64, bps: i64) -> i64 {
    let _ = (h, bps);
    todo!()
}

/// `0 < sbh` and `latest - allowance*bps <= sbh <= latest`.
pub fn within_tolerance(latest: i64, bps: i64, sbh: i64, allowance: i64) -> bool {
    let _ = (latest, bps, sbh, allowance);
    todo!()
}

/// Session header key hex: SHA3 of `{"app_public_key","chain","session_height"}` (§2.7).
pub fn session_header_hash(app_public_key: &str, chain: &str, session_height: i64) -> [u8; 32] {
    let _ = (app_public_key, chain, session_height);
    todo!()
}
