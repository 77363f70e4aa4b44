//! `meshd queue stats|dead|replay-dead`: inspect and repair the queue of a data dir. LMDB's
//! lock file makes this safe while the daemon runs: reads see a consistent snapshot, and a
//! replay is one transaction the daemon's notifier picks up within a second.

use std::fmt::Write as _;

use super::record::QueuedRelay;
use super::store::{Store, WriteOp, WriteResult};

pub enum Command {
    Stats,
    Dead,
    ReplayDead,
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
            let filter = servicer.map(hex::encode);
            for (address, count) in store.pending_by_servicer()? {
                if filter.as_ref().is_none_or(|f| *f == address) {
                    let _ = writeln!(out, "pending      servicer={address} relays={count}");
                }
            }
        }
        Command::Dead => {
            let letters = store.dead_letters(servicer.as_ref())?;
            for (seq, letter) in &letters {
                let detail = match QueuedRelay::decode(&letter.record) {
                    Ok(r) => {
                        format!("servicer={} chain={} session_height={} attempts={}", hex::encode(r.servicer_address), r.chain, r.session_height, r.attempts)
                    }
                    Err(e) => format!("record undecodable ({e})"),
                };
                let _ = writeln!(out, "dead #{seq} at_ms={} {detail} reason={:?}", letter.dead_at_ms, letter.reason);
            }
            let _ = writeln!(out, "{} dead letter(s)", letters.len());
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
