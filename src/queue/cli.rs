//! `meshd queue stats|dead|replay-dead`: inspect and repair the queue of a data dir. LMDB's
//! lock file makes this safe while the daemon runs: reads see a consistent snapshot, and a
//! replay is one transaction the daemon's notifier picks up within a second.
//!
//! `dead` prints a summary by servicer and reason (thousands of letters of one cause are one
//! line), with the replay command for each servicer; `--limit N` lists the oldest N letters
//! one per line, `--show ID` prints one letter in full. Times are RFC 3339 (UTC).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::record::{DeadLetter, QueuedRelay};
use super::store::{Store, WriteOp, WriteResult};

pub enum Command {
    Stats,
    /// `limit`: list that many letters; `show`: print this one in full; `datadir`: as given
    /// on the command line, for the replay commands printed.
    Dead {
        limit: Option<usize>,
        show: Option<u64>,
        datadir: String,
    },
    ReplayDead,
    /// `replay-dead --shannon`: the Shannon mined relays the hand-off gave up on.
    ReplayDeadShannon,
}

/// Dead letters of one servicer and one cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadGroup {
    /// 40-hex servicer address ("unknown" when the record names none).
    pub servicer: String,
    /// The cause without the per-relay details ([`reason_class`]).
    pub reason: String,
    pub count: u64,
    /// Oldest and newest `dead_at`, unix ms.
    pub first_ms: u64,
    pub last_ms: u64,
}

/// The cause of a dead letter without what differs from relay to relay: a servicer refusal
/// keeps its codespace and code (`servicer refused the relay: pocketcore 75`), a give-up its
/// kind; anything else is kept up to its first `: `.
pub fn reason_class(reason: &str) -> String {
    const REFUSED: &str = "servicer refused the relay: ";
    if let Some(rest) = reason.strip_prefix(REFUSED) {
        let code: Vec<&str> = rest.split(':').next().unwrap_or("").split_whitespace().take(2).collect();
        return format!("{REFUSED}{}", code.join(" "));
    }
    if reason.starts_with("gave up after") {
        return "gave up: the session can no longer be claimed".into();
    }
    let head = reason.split(": ").next().unwrap_or(reason);
    head.chars().take(100).collect()
}

/// The servicer a letter belongs to: its record's, else the first 20 bytes of its pending key.
fn letter_servicer(letter: &DeadLetter) -> String {
    match QueuedRelay::decode(&letter.record) {
        Ok(r) => hex::encode(r.servicer_address),
        Err(_) if letter.pending_key.len() >= 20 => hex::encode(&letter.pending_key[..20]),
        Err(_) => "unknown".into(),
    }
}

/// Dead letters grouped by servicer and cause, largest groups first.
pub fn dead_summary(store: &Store, servicer: Option<&[u8; 20]>) -> Result<Vec<DeadGroup>, String> {
    let mut groups: BTreeMap<(String, String), DeadGroup> = BTreeMap::new();
    for (_, letter) in store.dead_letters(servicer)? {
        let key = (letter_servicer(&letter), reason_class(&letter.reason));
        let g = groups.entry(key.clone()).or_insert(DeadGroup { servicer: key.0, reason: key.1, count: 0, first_ms: u64::MAX, last_ms: 0 });
        g.count += 1;
        g.first_ms = g.first_ms.min(letter.dead_at_ms);
        g.last_ms = g.last_ms.max(letter.dead_at_ms);
    }
    let mut out: Vec<DeadGroup> = groups.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.servicer.cmp(&b.servicer)));
    Ok(out)
}

/// Unix ms as RFC 3339 with milliseconds (`2024-11-18T12:39:18.167Z`); `-` for 0 (unknown).
pub fn time_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let full = crate::timefmt::rfc3339(ms.saturating_mul(1000));
    // `…:18.167000Z` → `…:18.167Z`
    format!("{}Z", &full[..full.len() - 4])
}

/// The command that replays one servicer's dead letters.
pub fn replay_command(datadir: &str, servicer: &str) -> String {
    format!("meshd queue replay-dead --datadir {} --servicer {servicer}", crate::logline::value_text(datadir))
}

pub fn run(store: &Store, command: Command, servicer: Option<[u8; 20]>) -> Result<String, String> {
    let mut out = String::new();
    match command {
        Command::Stats => {
            let st = store.stats()?;
            let _ = writeln!(out, "pending      {}", st.pending);
            let _ = writeln!(out, "dead         {}", st.dead);
            let _ = writeln!(out, "proofs       {} (duplicate index)", st.proofs);
            let _ = writeln!(
                out,
                "space        {} KiB used of {} KiB map (new relays are refused above {} KiB)",
                st.used_bytes >> 10,
                st.map_bytes >> 10,
                st.admission_limit_bytes >> 10
            );
            if let Some(c) = crate::supplier::mined_queue::cli_counts(store)? {
                let _ = writeln!(out, "shannon      pending={} dead={} served_requests_remembered={}", c.pending, c.dead, c.seen);
            }
            let filter = servicer.map(hex::encode);
            for (address, count) in store.pending_by_servicer()? {
                if filter.as_ref().is_none_or(|f| *f == address) {
                    let _ = writeln!(out, "pending      servicer={address} relays={count}");
                }
            }
        }
        Command::Dead { show: Some(id), .. } => {
            let letters = store.dead_letters(servicer.as_ref())?;
            let (_, letter) = letters.iter().find(|(seq, _)| *seq == id).ok_or_else(|| format!("no dead letter #{id}"))?;
            let _ = writeln!(out, "dead letter  #{id}");
            let _ = writeln!(out, "dead at      {}", time_ms(letter.dead_at_ms));
            let _ = writeln!(out, "reason       {}", letter.reason);
            match QueuedRelay::decode(&letter.record) {
                Ok(r) => {
                    let _ = writeln!(out, "servicer     {}", hex::encode(r.servicer_address));
                    let _ = writeln!(out, "chain        {}", r.chain);
                    let _ = writeln!(out, "session      {}", r.session_height);
                    let _ = writeln!(out, "app          {}", r.app_public_key);
                    let _ = writeln!(out, "proof hash   {}", hex::encode(r.proof_hash));
                    let _ = writeln!(out, "served at    {}", time_ms(r.served_at_ms));
                    let _ = writeln!(out, "attempts     {}", r.attempts);
                    if !r.last_error.is_empty() {
                        let _ = writeln!(out, "last error   {}", r.last_error);
                    }
                    let _ = writeln!(out, "relay        {} bytes", r.relay_json.len());
                }
                Err(e) => {
                    let _ = writeln!(out, "record       undecodable ({e}), {} bytes kept", letter.record.len());
                }
            }
        }
        Command::Dead { limit: Some(limit), .. } => {
            let letters = store.dead_letters(servicer.as_ref())?;
            for (seq, letter) in letters.iter().take(limit) {
                let detail = match QueuedRelay::decode(&letter.record) {
                    Ok(r) => {
                        format!("servicer={} chain={} session_height={} attempts={}", hex::encode(r.servicer_address), r.chain, r.session_height, r.attempts)
                    }
                    Err(e) => format!("record={}", crate::logline::value_text(&format!("undecodable ({e})"))),
                };
                let _ = writeln!(out, "#{seq} dead_at={} {detail} reason={}", time_ms(letter.dead_at_ms), crate::logline::value_text(&letter.reason));
            }
            let _ = writeln!(out, "{} of {} dead letter(s) listed (oldest first; --show ID for one in full)", limit.min(letters.len()), letters.len());
        }
        Command::Dead { datadir, .. } => {
            let groups = dead_summary(store, servicer.as_ref())?;
            let total: u64 = groups.iter().map(|g| g.count).sum();
            let _ = writeln!(out, "{total} dead letter(s)");
            if !groups.is_empty() {
                let _ = writeln!(out, "{:<40}  {:>7}  {:<24}  {:<24}  reason", "servicer", "count", "first", "last");
            }
            for g in &groups {
                let _ = writeln!(out, "{:<40}  {:>7}  {:<24}  {:<24}  {}", g.servicer, g.count, time_ms(g.first_ms), time_ms(g.last_ms), g.reason);
            }
            let mut servicers: Vec<&str> = groups.iter().map(|g| g.servicer.as_str()).filter(|s| *s != "unknown").collect();
            servicers.sort_unstable();
            servicers.dedup();
            for s in servicers {
                let _ = writeln!(out, "replay: {}", replay_command(&datadir, s));
            }
            if total > 0 {
                let _ = writeln!(out, "(--limit N lists letters, --show ID prints one in full)");
            }
            let mined = crate::supplier::mined_queue::cli_dead(store)?;
            if !mined.is_empty() {
                let _ = writeln!(out, "{} dead Shannon mined relay(s):", mined.len());
                for (seq, d) in &mined {
                    let r = &d.relay;
                    let _ = writeln!(
                        out,
                        "#{seq} dead_at={} supplier={} session={} relay_hash={} attempts={} reason={}",
                        time_ms(d.dead_at_ms),
                        r.supplier,
                        r.session_id,
                        hex::encode(r.relay_hash),
                        r.attempts,
                        crate::logline::value_text(&d.reason)
                    );
                }
                let _ = writeln!(out, "replay: meshd queue replay-dead --datadir {} --shannon", crate::logline::value_text(&datadir));
            }
        }
        Command::ReplayDeadShannon => {
            let n = crate::supplier::mined_queue::cli_replay_dead(store)?;
            let _ = writeln!(out, "{n} dead Shannon mined relay(s) moved back to pending");
        }
        Command::ReplayDead => {
            let letters = store.dead_letters(servicer.as_ref())?;
            let ops: Vec<WriteOp> = letters.iter().map(|(seq, _)| WriteOp::ReplayDead(*seq)).collect();
            let results = if ops.is_empty() { Vec::new() } else { store.apply(&ops)? };
            let mut replayed = 0;
            for ((seq, _), result) in letters.iter().zip(&results) {
                match result {
                    WriteResult::Appended(_) => replayed += 1,
                    other => {
                        let _ = writeln!(out, "dead #{seq} not replayed: {other:?}");
                    }
                }
            }
            let _ = writeln!(out, "{replayed} dead letter(s) moved back to pending");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_by_cause() {
        assert_eq!(reason_class("servicer refused the relay: pocketcore 75: the session is out of sync"), "servicer refused the relay: pocketcore 75");
        assert_eq!(
            reason_class("gave up after 6 attempts: session 100 can no longer be claimed at height 141; last error: x"),
            "gave up: the session can no longer be claimed"
        );
        assert_eq!(reason_class("record undecodable: bad tag"), "record undecodable");
        assert_eq!(time_ms(1_731_933_558_167), "2024-11-18T12:39:18.167Z");
        assert_eq!(time_ms(0), "-");
    }
}
