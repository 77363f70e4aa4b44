//! Log lines as `key=value` pairs, and the summariser for events that repeat.
//!
//! [`fields`] renders pairs the way every meshd line is written: values with spaces, quotes
//! or `=` are quoted (Rust string escaping), empty values are left out rather than printed as
//! `key=` or `key=""`.
//!
//! [`Summary`] keeps a flood of one event down to a line per interval: the first occurrence
//! of an (event, key fields) pair is logged at once with its detail; further ones are counted,
//! and [`flush`] (called every [`INTERVAL`] by the daemon's timer task, and at shutdown) logs
//! one line per pair that repeated, `event=notify_rejected code=75 servicer=… count=N
//! first=… last=… message=…` (count = occurrences since the previous line for that pair). A
//! pair that stays quiet for a whole interval is forgotten, so its next occurrence is logged
//! at once again. The summariser is process-wide (a mutex, touched once per event), so code
//! without access to the daemon's state (the queue writer) uses the same mechanism.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How often repeated events are summarised.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Most distinct (event, key) pairs tracked; beyond it, occurrences of new pairs are counted
/// under one overflow pair so memory stays bounded whatever the keys.
pub const MAX_KEYS: usize = 1024;

/// `key=value` pairs joined by spaces; empty values are skipped, values that need it quoted.
pub fn fields(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{key}={}", value_text(value));
    }
    out
}

/// One value as it appears after `key=`: bare when it is a single plain token, else quoted.
pub fn value_text(value: &str) -> String {
    if !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\') {
        value.to_string()
    } else {
        format!("{value:?}")
    }
}

#[derive(Debug, Clone)]
struct Entry {
    level: log::Level,
    /// Occurrences since the last line for this pair (the line logged at once is not counted).
    count: u64,
    first: SystemTime,
    last: SystemTime,
    /// Detail fields of the latest occurrence (already rendered).
    detail: String,
}

/// Counts of repeated events; see the module documentation.
#[derive(Debug, Default)]
pub struct Summary {
    entries: BTreeMap<(&'static str, String), Entry>,
}

impl Summary {
    /// Note one occurrence. Returns the line to log now, if any (the first of its pair).
    pub fn note(&mut self, level: log::Level, event: &'static str, key: &[(&str, &str)], detail: &[(&str, &str)], now: SystemTime) -> Option<String> {
        let mut key_text = fields(key);
        if !self.entries.contains_key(&(event, key_text.clone())) && self.entries.len() >= MAX_KEYS {
            key_text = "overflow=true".into();
        }
        let detail = fields(detail);
        match self.entries.get_mut(&(event, key_text.clone())) {
            Some(e) => {
                if e.count == 0 {
                    e.first = now;
                }
                e.count += 1;
                e.last = now;
                e.detail = detail;
                None
            }
            None => {
                let line = join(&[&format!("event={event}"), &key_text, &detail]);
                self.entries.insert((event, key_text), Entry { level, count: 0, first: now, last: now, detail });
                Some(line)
            }
        }
    }

    /// The summary lines due now (one per pair that repeated since the last flush), with
    /// their level; pairs quiet for a whole interval are dropped.
    pub fn drain(&mut self) -> Vec<(log::Level, String)> {
        let mut lines = Vec::new();
        self.entries.retain(|(event, key), e| {
            if e.count == 0 {
                return false;
            }
            let times = fields(&[
                ("count", &e.count.to_string()),
                ("first", &crate::timefmt::rfc3339(crate::timefmt::unix_micros(e.first))),
                ("last", &crate::timefmt::rfc3339(crate::timefmt::unix_micros(e.last))),
            ]);
            lines.push((e.level, join(&[&format!("event={event}"), key, &times, &e.detail])));
            e.count = 0;
            true
        });
        lines
    }
}

fn join(parts: &[&str]) -> String {
    parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(" ")
}

static SUMMARY: Mutex<Option<Summary>> = Mutex::new(None);

/// Note one occurrence of `event` for `key` in the process-wide summariser; the first of its
/// pair is logged at once at `level`, repeats by the next [`flush`].
pub fn note(level: log::Level, event: &'static str, key: &[(&str, &str)], detail: &[(&str, &str)]) {
    let line = {
        let mut guard = SUMMARY.lock().unwrap_or_else(|p| p.into_inner());
        guard.get_or_insert_with(Summary::default).note(level, event, key, detail, SystemTime::now())
    };
    if let Some(line) = line {
        log::log!(level, "{line}");
    }
}

/// Log the summary lines due now.
pub fn flush() {
    let lines = {
        let mut guard = SUMMARY.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().map(Summary::drain).unwrap_or_default()
    };
    for (level, line) in lines {
        log::log!(level, "{line}");
    }
}

/// The daemon's timer task: [`flush`] every [`INTERVAL`].
pub async fn flush_loop() {
    loop {
        async_io::Timer::after(INTERVAL).await;
        flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn fields_skip_empty_values_and_quote_when_needed() {
        assert_eq!(fields(&[("a", "1"), ("b", ""), ("c", "two words"), ("d", "x=y"), ("e", "ok")]), r#"a=1 c="two words" d="x=y" e=ok"#);
        assert_eq!(fields(&[("a", "")]), "");
    }

    #[test]
    fn a_flood_becomes_one_line_then_one_summary_per_interval() {
        let mut s = Summary::default();
        let key = [("code", "75"), ("servicer", "ab")];
        let first = s.note(log::Level::Warn, "notify_rejected", &key, &[("message", "no session")], at(0));
        assert_eq!(first.as_deref(), Some(r#"event=notify_rejected code=75 servicer=ab message="no session""#));
        for i in 1..=4873 {
            assert_eq!(s.note(log::Level::Warn, "notify_rejected", &key, &[("message", "no session")], at(i * 9 / 4873)), None);
        }
        // Another key is its own pair, logged at once.
        assert!(s.note(log::Level::Warn, "notify_rejected", &[("code", "76"), ("servicer", "ab")], &[], at(5)).is_some());
        let lines = s.drain();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(
            lines[0].1,
            r#"event=notify_rejected code=75 servicer=ab count=4873 first=2023-11-14T22:13:20.000000Z last=2023-11-14T22:13:29.000000Z message="no session""#
        );
        // Still flooding: no line at once, the next summary counts from zero.
        assert_eq!(s.note(log::Level::Warn, "notify_rejected", &key, &[], at(11)), None);
        let lines = s.drain();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].1.contains(" count=1 "), "{lines:?}");
        // A quiet interval forgets the pair: the next occurrence is logged at once.
        assert!(s.drain().is_empty());
        assert!(s.drain().is_empty());
        assert!(s.note(log::Level::Warn, "notify_rejected", &key, &[], at(40)).is_some());
    }

    #[test]
    fn distinct_keys_are_bounded() {
        let mut s = Summary::default();
        for i in 0..MAX_KEYS + 50 {
            s.note(log::Level::Info, "x", &[("k", &i.to_string())], &[], at(0));
        }
        assert!(s.entries.len() <= MAX_KEYS + 1);
    }
}
