//! Calendar arithmetic and RFC 3339 text for the few timestamps meshd writes or reads (token
//! files, identity states, the status page), without a date-time crate.

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix µs → `2024-11-18T12:39:18.167000Z`.
pub fn rfc3339(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem % 3600 / 60, rem % 60, us % 1_000_000)
}

/// RFC 3339 (`Z` or `±hh:mm`, optional fraction) or plain unix seconds → unix µs.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid time {text:?}: expected RFC 3339 such as 2024-11-18T12:39:18Z, or unix seconds");
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1_000_000).ok_or_else(bad);
    }
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| text.get(r).and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad);
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let mut scaled = frac[..digits.min(6)].to_string();
        while scaled.len() < 6 {
            scaled.push('0');
        }
        micros = scaled.parse().map_err(|_| bad())?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        // A space is a '+' that an unencoded query string turned into one.
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-" | " ") && &rest[3..4] == ":" => {
            let h: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let m: i64 = rest[4..6].parse().map_err(|_| bad())?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(bad()),
    };
    let secs = days_from_civil(year, month as u32, day as u32) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    if secs < 0 {
        return Err(bad());
    }
    Ok(secs as u64 * 1_000_000 + micros as u64)
}

/// `t` as unix seconds, saturating: a wall clock before 1970 (an unset RTC on a board without
/// battery, a bad NTP step) gives 0 instead of a panic, one past `u64` gives `u64::MAX`.
pub fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `t` as unix milliseconds, saturating like [`unix_secs`].
pub fn unix_millis(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// `t` as unix microseconds, saturating like [`unix_secs`].
pub fn unix_micros(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Unix seconds → `2024-01-02T03:04:05Z` (what Go's `time.Time` decodes).
pub fn rfc3339_secs(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod clock_tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn a_clock_before_1970_or_far_ahead_saturates_instead_of_panicking() {
        let before = UNIX_EPOCH - Duration::from_secs(86_400 * 365);
        assert_eq!((unix_secs(before), unix_millis(before), unix_micros(before)), (0, 0, 0));
        assert_eq!(rfc3339_secs(unix_secs(before)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(unix_micros(before)), "1970-01-01T00:00:00.000000Z");
        // ~600,000 years ahead: microseconds no longer fit u64, and must not wrap to a small value.
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 1000)) {
            assert_eq!(unix_micros(far), u64::MAX);
            assert!(rfc3339(unix_micros(far)).ends_with('Z'));
        }
        let now = SystemTime::now();
        assert_eq!(unix_millis(now) / 1000, unix_secs(now));
    }
}
