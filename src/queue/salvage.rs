//! `meshd queue salvage`: copy every readable record of a damaged queue into a fresh queue
//! environment, and say what could not be read (docs/relay-path.md "Damaged queue file").
//!
//! The operator's process ([`run`]) never maps the damaged file. It copies `data.mdb` into a
//! scratch directory (the original is only read), extends the copy with zeros up to the pages
//! its meta page claims (so LMDB maps no page past the end of the file: a zero page is not a
//! valid page, which LMDB reports as an error instead of a SIGBUS), and runs the walk in a
//! child process (`meshd queue salvage-walk`, [`walk`]). The child opens the copy read-only
//! with heed, without meshd's meta check (that check is what refuses the file), walks every
//! database with a cursor and writes what decodes through the normal [`Store`] API in small
//! committed batches, printing a progress line after each commit. Should the walk crash on a
//! page LMDB does not recognise as garbage, only the child dies: every batch committed before
//! is in the new queue, and the parent reports how far the walk got.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};

use super::guard::{self, QueueFault};
use super::record::{DeadLetter, QueuedRelay};
use super::states::StateRecord;
use super::store::{Durability, Restored, Store, WriteOp, WriteResult};
use crate::exit_code;
use crate::spacemesh::publish_queue::{self, Enqueued, PublishQueue, QueuedPublish};

/// Records per committed batch: what a crash of the walk can lose at most, per database.
pub const BATCH: usize = 16;

/// The databases walked, in order, with what the report calls them. `sessions` (per-session
/// pending counters) is not copied: appending the pending relays rebuilds it, as it does the
/// duplicate-index entries of those relays and the `meta` sequence number.
pub const DATABASES: [(&str, &str); 6] = [
    ("pending", "pending relays"),
    ("dead", "dead letters"),
    ("proofs", "duplicate index"),
    ("states", "identity states"),
    ("state_last", "newest identity states"),
    (publish_queue::DB_NAME, "Spacemesh publishes"),
];

/// The report row of the page scan (see [`scan_pending`]).
pub const SCAN: (&str, &str) = ("pending-scan", "pending, page scan");

/// What the walk of one database achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbReport {
    /// Records written to the new queue (committed).
    pub copied: u64,
    /// Records read but not written: already there (a duplicate-index entry the pending relays
    /// re-created) or refused by the new queue (map full).
    pub skipped: u64,
    /// Records whose bytes do not decode as what this database holds.
    pub undecodable: u64,
    /// The database is not in the file (never created, or its name was lost with the main tree).
    pub missing: bool,
    /// Why the walk of this database stopped before its end (LMDB's error).
    pub error: Option<String>,
    /// The walk reached the end of this database (or its error).
    pub finished: bool,
}

/// How the child process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every database was walked (some may have ended at an error, see their reports).
    Clean,
    /// The walk process died ("signal 11", "exit code 101"): what was committed is kept.
    Died(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: PathBuf,
    pub queue_dir: PathBuf,
    pub to: PathBuf,
    /// Zero bytes appended to the copy (the file is shorter than its meta page claims).
    pub extended_bytes: u64,
    pub dbs: Vec<(&'static str, DbReport)>,
    pub ending: Ending,
    /// How the page scan ended, when it ran (the walk of `pending` did not finish cleanly).
    pub scan: Option<Ending>,
}

impl Report {
    fn new(source: PathBuf, queue_dir: PathBuf, to: PathBuf, extended_bytes: u64) -> Report {
        Report {
            source,
            queue_dir,
            to,
            extended_bytes,
            dbs: DATABASES.iter().chain([&SCAN]).map(|(n, _)| (*n, DbReport::default())).collect(),
            ending: Ending::Clean,
            scan: None,
        }
    }

    pub fn db(&self, name: &str) -> Option<&DbReport> {
        self.dbs.iter().find(|(n, _)| *n == name).map(|(_, r)| r)
    }

    fn db_mut(&mut self, name: &str) -> Option<&mut DbReport> {
        self.dbs.iter_mut().find(|(n, _)| *n == name).map(|(_, r)| r)
    }

    pub fn copied(&self) -> u64 {
        self.dbs.iter().map(|(_, r)| r.copied).sum()
    }

    /// Pending relays in the new queue: those the walk copied and those the page scan found.
    pub fn pending_copied(&self) -> u64 {
        [DATABASES[0].0, SCAN.0].iter().filter_map(|n| self.db(n)).map(|r| r.copied).sum()
    }

    /// Apply one progress line of the child (see [`walk`]); unknown lines are ignored.
    pub fn apply_line(&mut self, line: &str) {
        let mut parts = line.splitn(3, ' ');
        let (kind, name, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let Some(db) = self.db_mut(name) else { return };
        match kind {
            "progress" => {
                let n: Vec<u64> = rest.split(' ').filter_map(|v| v.parse().ok()).collect();
                if let [copied, skipped, undecodable] = n[..] {
                    (db.copied, db.skipped, db.undecodable) = (copied, skipped, undecodable);
                }
            }
            "error" => db.error = Some(rest.to_string()),
            "missing" => db.missing = true,
            "done" => db.finished = true,
            _ => {}
        }
    }

    /// The summary printed by `meshd queue salvage`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "salvage of {} into {}", self.source.display(), self.to.display());
        if self.extended_bytes > 0 {
            let _ = writeln!(
                out,
                "  the file is {} bytes shorter than its meta page claims (truncated): the copy read was extended with zeros",
                self.extended_bytes
            );
        }
        let mut unreadable = 0u64;
        for ((name, r), (_, label)) in self.dbs.iter().zip(DATABASES.iter().chain([&SCAN])) {
            let mut line = format!("  {label:<24}");
            if *name == SCAN.0 && self.scan.is_none() {
                line.push_str("not needed (the pending walk reached its end)");
            } else if r.missing {
                line.push_str("none in the file");
            } else if !r.finished && r.copied + r.skipped + r.undecodable == 0 && r.error.is_none() {
                line.push_str("not reached");
            } else {
                let _ = write!(line, "{} copied", r.copied);
                if r.skipped > 0 {
                    let _ = write!(line, ", {} already there or refused", r.skipped);
                }
                if r.undecodable > 0 {
                    let _ = write!(line, ", {} undecodable (not copied)", r.undecodable);
                }
            }
            if let Some(e) = &r.error {
                let _ = write!(line, "; walk stopped early: {e} (records past this point could not be read)");
            }
            unreadable += r.undecodable;
            let _ = writeln!(out, "{line}  [{name}]");
        }
        let _ = writeln!(out, "  {:<24}rebuilt from the copied pending relays  [sessions]", "session counters");
        match &self.scan {
            None => {}
            Some(ending) => {
                let _ = writeln!(
                    out,
                    "page scan: the pending walk did not finish, so every leaf page of the copy was read for relay records the tree no longer reaches{}; such pages may also hold relays already delivered or dead-lettered (a servicer answers a delivered one with code 37, and meshd then deletes it)",
                    match ending {
                        Ending::Clean => String::new(),
                        Ending::Died(how) => format!(" (the scan process died: {how})"),
                    }
                );
            }
        }
        let stopped = self.dbs.iter().filter(|(_, r)| r.error.is_some()).count();
        match &self.ending {
            Ending::Clean => {
                let _ = write!(out, "result: the walk process ended normally; {} record(s) copied", self.copied());
                if unreadable > 0 || stopped > 0 {
                    let _ = write!(out, "; {unreadable} record(s) could not be decoded and {stopped} database walk(s) stopped at damage (see above)");
                }
                let _ = writeln!(out);
            }
            Ending::Died(how) => {
                let _ = writeln!(
                    out,
                    "result: the walk process died ({how}) after {} committed record(s); they are kept in {} (the batch of up to {BATCH} being written when it died is not)",
                    self.copied() - self.db(SCAN.0).map_or(0, |r| r.copied),
                    self.to.display()
                );
            }
        }
        let _ = writeln!(out, "pending relays in the new queue: {}", self.pending_copied());
        let _ = writeln!(out, "the damaged file was not modified.");
        let q = self.queue_dir.display();
        let _ = writeln!(out, "next steps (swap the salvaged queue in):");
        let _ = writeln!(out, "  1. stop meshd (systemctl stop meshd)");
        let _ = writeln!(out, "  2. mv {q} {q}.damaged   (keep it for further recovery)");
        let _ = writeln!(out, "  3. mv {} {q}", self.to.display());
        let _ = writeln!(out, "  4. start meshd; `meshd queue stats --datadir DIR` shows the salvaged relays");
        out
    }
}

/// A failure of `meshd queue salvage` before a walk could report anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn env(message: String) -> Failure {
        Failure { code: exit_code::ENVIRONMENT, message }
    }
}

/// Default target: `<queue dir>.salvaged-<unix time>` next to the damaged queue.
pub fn default_target(queue_dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut name = queue_dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "queue".into());
    name.push(format!(".salvaged-{secs}"));
    queue_dir.with_file_name(name)
}

/// `meshd queue salvage`: salvage the queue of `queue_dir` into `to` (default
/// [`default_target`]) with a child walk (`exe queue salvage-walk`). `Ok((exit code, report))`
/// once a walk ran: 0 when it ended cleanly, 3 when the walk process died.
pub fn run(exe: &Path, queue_dir: &Path, to: Option<PathBuf>, map_mib: u64) -> Result<(i32, Report), Failure> {
    let data_file = queue_dir.join("data.mdb");
    if !data_file.is_file() {
        let fault = QueueFault::NoQueue { dir: queue_dir.to_path_buf() };
        return Err(Failure { code: exit_code::for_queue_fault(&fault), message: fault.to_string() });
    }
    let len = std::fs::metadata(&data_file).map_err(|e| Failure::env(format!("{}: cannot stat: {e}", data_file.display())))?.len();
    // Without readable meta pages LMDB cannot open the file at all: nothing to salvage.
    let meta = guard::read_meta(&data_file, len).map_err(|fault| Failure {
        code: exit_code::for_queue_fault(&fault),
        message: format!("{fault}\nnothing can be salvaged: LMDB needs both meta pages to open the file"),
    })?;
    let to = to.unwrap_or_else(|| default_target(queue_dir));
    if std::fs::read_dir(&to).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Failure { code: exit_code::CONFIG, message: format!("{}: already exists and is not empty; choose another --to", to.display()) });
    }
    let mut scratch_name = to.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "salvage".into());
    scratch_name.push(".source-copy");
    let scratch = to.with_file_name(scratch_name);
    let result = copy_and_walk(exe, queue_dir, &data_file, &scratch, &to, map_mib, meta);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn copy_and_walk(exe: &Path, queue_dir: &Path, data_file: &Path, scratch: &Path, to: &Path, map_mib: u64, meta: guard::Meta) -> Result<(i32, Report), Failure> {
    std::fs::create_dir_all(scratch).map_err(|e| Failure::env(format!("{}: cannot create: {e}", scratch.display())))?;
    let copy = scratch.join("data.mdb");
    // fs::copy opens the original read-only: it stays byte for byte as it was.
    let copied = std::fs::copy(data_file, &copy).map_err(|e| Failure::env(format!("cannot copy {} to {}: {e}", data_file.display(), copy.display())))?;
    let claimed = meta.last_page.saturating_add(1).saturating_mul(meta.page_size);
    let mut extended = 0;
    if copied < claimed {
        let f = std::fs::OpenOptions::new().write(true).open(&copy).map_err(|e| Failure::env(format!("{}: {e}", copy.display())))?;
        f.set_len(claimed).map_err(|e| Failure::env(format!("{}: cannot extend to {claimed} bytes: {e}", copy.display())))?;
        extended = claimed - copied;
    }
    let mut report = Report::new(data_file.to_path_buf(), queue_dir.to_path_buf(), to.to_path_buf(), extended);
    let code = match child_walk(exe, scratch, to, map_mib, false, &mut report)? {
        Ending::Clean => exit_code::OK,
        died => {
            report.ending = died;
            exit_code::QUEUE_DAMAGED
        }
    };
    // The pending tree could not be walked to its end: read the leaf pages themselves.
    if report.db("pending").is_none_or(|p| !p.finished || p.missing || p.error.is_some()) {
        // A scan that cannot run is reported with the walk's results, not instead of them.
        report.scan = Some(child_walk(exe, scratch, to, map_mib, true, &mut report).unwrap_or_else(|f| Ending::Died(f.message)));
    }
    Ok((code, report))
}

/// Run one walk process (`scan`: the page scan) and apply its lines to `report`.
fn child_walk(exe: &Path, scratch: &Path, to: &Path, map_mib: u64, scan: bool, report: &mut Report) -> Result<Ending, Failure> {
    let mut command = Command::new(exe);
    command.args(["queue", "salvage-walk", "--source"]).arg(scratch).arg("--to").arg(to).arg("--map-mib").arg(map_mib.to_string());
    if scan {
        command.arg("--scan");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Failure::env(format!("cannot start the walk process {}: {e}", exe.display())))?;
    let (mut ended, mut fatal) = (false, None);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match line.split_once(' ') {
                _ if line == "end" => ended = true,
                Some(("fatal", text)) => fatal = Some(text.to_string()),
                _ => report.apply_line(&line),
            }
        }
    }
    let status = child.wait().map_err(|e| Failure::env(format!("waiting for the walk process: {e}")))?;
    match (status.code(), fatal) {
        (Some(0), _) if ended => Ok(Ending::Clean),
        (Some(code), Some(message)) if code == exit_code::QUEUE_DAMAGED || code == exit_code::ENVIRONMENT => Err(Failure { code, message }),
        (code, _) => Ok(Ending::Died(match (code, status.signal()) {
            (_, Some(signal)) => format!("signal {signal}"),
            (Some(code), None) => format!("exit code {code}"),
            (None, None) => "unknown status".into(),
        })),
    }
}

/// Open the scratch copy read-only, bypassing meshd's meta check.
fn open_source(dir: &Path, map_mib: u64) -> heed::Result<Env<WithoutTls>> {
    let len = std::fs::metadata(dir.join("data.mdb")).map(|m| m.len()).unwrap_or(0);
    let map_bytes = ((len >> 20) + 1).max(map_mib.max(1)) << 20;
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(map_bytes as usize).max_dbs(16).max_readers(8);
    // SAFETY: the scratch copy belongs to this process alone (no lock file needed) and is
    // only read.
    unsafe { options.flags(EnvFlags::READ_ONLY | EnvFlags::NO_LOCK) };
    // SAFETY: see above; nothing else maps this copy.
    unsafe { options.open(dir) }
}

fn one_line(text: impl std::fmt::Display) -> String {
    text.to_string().replace(['\n', '\r'], " ")
}

/// `meshd queue salvage-walk --source SCRATCH --to NEWDIR --map-mib N` (the child of [`run`]).
/// Prints `progress <db> <copied> <skipped> <undecodable>` after each commit, `error <db>
/// <text>` when a cursor error ends a database's walk, `missing <db>`, `done <db>`, and `end`;
/// `fatal <text>` before exiting 3 (the copy cannot be opened) or 1 (the new queue cannot be
/// written).
pub fn walk(source: &Path, to: &Path, map_mib: u64, scan: bool, out: &mut dyn Write) -> i32 {
    if scan {
        let store = match Store::open(to, map_mib, Durability::Sync) {
            Ok(store) => store,
            Err(e) => {
                let _ = writeln!(out, "fatal cannot open the new queue: {}", one_line(e));
                return exit_code::ENVIRONMENT;
            }
        };
        if let Err(e) = scan_pending(&source.join("data.mdb"), &store, out) {
            let _ = writeln!(out, "fatal {}", one_line(e));
            return exit_code::ENVIRONMENT;
        }
        let _ = writeln!(out, "end");
        let _ = out.flush();
        return exit_code::OK;
    }
    let env = match open_source(source, map_mib) {
        Ok(env) => env,
        Err(e) => {
            let _ = writeln!(out, "fatal {}: LMDB cannot open the file: {}", source.join("data.mdb").display(), one_line(e));
            return exit_code::QUEUE_DAMAGED;
        }
    };
    let store = match Store::open(to, map_mib, Durability::Sync) {
        Ok(store) => Arc::new(store),
        Err(e) => {
            let _ = writeln!(out, "fatal cannot create the new queue: {}", one_line(e));
            return exit_code::ENVIRONMENT;
        }
    };
    // A bound on every walk: an LMDB node takes at least 8 bytes of a page.
    let limit = std::fs::metadata(source.join("data.mdb")).map(|m| m.len() / 8 + 1).unwrap_or(1 << 20) as usize;
    for (name, _) in DATABASES {
        if let Err(e) = walk_db(&env, &store, name, limit, out) {
            let _ = writeln!(out, "fatal cannot write the new queue: {}", one_line(e));
            return exit_code::ENVIRONMENT;
        }
    }
    let _ = writeln!(out, "end");
    let _ = out.flush();
    exit_code::OK
}

fn open_db<'e>(env: &'e Env<WithoutTls>, name: &str) -> heed::Result<Option<Database<'e, Bytes, Bytes>>> {
    let rtxn = env.read_txn()?;
    let opened = env.open_databases_and_commit(rtxn, |dbo, r| -> heed::Result<_> {
        Ok(CommitOrAbort::<_, ()>::Commit(dbo.open_database::<Bytes, Bytes>(r, Some(name))?))
    })?;
    Ok(opened.unwrap_commit())
}

#[derive(Default)]
struct Counts {
    copied: u64,
    skipped: u64,
    undecodable: u64,
}

/// Walk one database; `Err` only when the new queue cannot be written.
fn walk_db(env: &Env<WithoutTls>, store: &Arc<Store>, name: &str, limit: usize, out: &mut dyn Write) -> Result<(), String> {
    let db = match open_db(env, name) {
        Ok(Some(db)) => db,
        Ok(None) => {
            let _ = writeln!(out, "missing {name}");
            let _ = writeln!(out, "done {name}");
            return Ok(());
        }
        Err(e) => {
            let _ = writeln!(out, "error {name} cannot open the database: {}", one_line(e));
            let _ = writeln!(out, "done {name}");
            return Ok(());
        }
    };
    let publishes = if name == publish_queue::DB_NAME { Some(PublishQueue::open(Arc::clone(store))?) } else { None };
    let mut counts = Counts::default();
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(BATCH);
    let mut error = None;
    match env.read_txn().and_then(|rtxn| {
        let mut walked = 0usize;
        for item in db.iter(&rtxn)? {
            let (key, value) = item?;
            batch.push((key.to_vec(), value.to_vec()));
            walked += 1;
            if batch.len() >= BATCH {
                if let Err(e) = write_batch(store, publishes.as_ref(), name, &mut batch, &mut counts) {
                    return Ok(Err(e));
                }
                let _ = writeln!(out, "progress {name} {} {} {}", counts.copied, counts.skipped, counts.undecodable);
                let _ = out.flush();
            }
            if walked >= limit {
                error = Some(format!("stopped after {limit} records (more than the file can hold: a loop in damaged pages)"));
                break;
            }
        }
        Ok(Ok(()))
    }) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => error = Some(one_line(e)),
    }
    write_batch(store, publishes.as_ref(), name, &mut batch, &mut counts)?;
    let _ = writeln!(out, "progress {name} {} {} {}", counts.copied, counts.skipped, counts.undecodable);
    if let Some(e) = error {
        let _ = writeln!(out, "error {name} {e}");
    }
    let _ = writeln!(out, "done {name}");
    let _ = out.flush();
    Ok(())
}

/// Decode and commit one batch of raw records of database `name`.
fn write_batch(store: &Store, publishes: Option<&PublishQueue>, name: &str, batch: &mut Vec<(Vec<u8>, Vec<u8>)>, counts: &mut Counts) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let records = std::mem::take(batch);
    if name == "pending" {
        let mut ops = Vec::new();
        for (_, bytes) in &records {
            match QueuedRelay::decode(bytes) {
                Ok(r) => ops.push(WriteOp::Append(Box::new(r))),
                Err(_) => counts.undecodable += 1,
            }
        }
        if !ops.is_empty() {
            for result in store.apply(&ops)? {
                match result {
                    WriteResult::Appended(_) => counts.copied += 1,
                    _ => counts.skipped += 1,
                }
            }
        }
        return Ok(());
    }
    if let Some(publishes) = publishes {
        for (key, bytes) in &records {
            match (<[u8; 32]>::try_from(&key[..]), QueuedPublish::decode(bytes)) {
                (Ok(hash), Ok(record)) => match publishes.enqueue(&hash, &record)? {
                    Enqueued::New => counts.copied += 1,
                    Enqueued::Duplicate(_) | Enqueued::Full => counts.skipped += 1,
                },
                _ => counts.undecodable += 1,
            }
        }
        return Ok(());
    }
    let mut restored = Vec::new();
    for (key, bytes) in records {
        let decoded = match name {
            "dead" => DeadLetter::decode(&bytes).ok().map(|d| Restored::Dead(Box::new(d))),
            "proofs" => (key.len() == 40 && bytes.is_empty()).then_some(Restored::Proof(key)),
            "states" => StateRecord::decode(&bytes).ok().map(|s| Restored::State(Box::new(s))),
            "state_last" => StateRecord::decode(&bytes).ok().map(|s| Restored::StateLast(key, Box::new(s))),
            _ => None,
        };
        match decoded {
            Some(r) => restored.push(r),
            None => counts.undecodable += 1,
        }
    }
    if !restored.is_empty() {
        for written in store.restore(&restored)? {
            if written {
                counts.copied += 1;
            } else {
                counts.skipped += 1;
            }
        }
    }
    Ok(())
}

/// Read every leaf page of the copy with plain reads (no LMDB, no mapping) and append each node
/// that holds a pending relay (a 28-byte key: servicer address ‖ seq, a value that decodes as
/// [`QueuedRelay`] of that servicer). For a file whose tree is cut off (truncated: the newest
/// root pages are written last, at the end) or whose walk crashed. Appending dedupes by proof
/// hash, so relays the walk already copied are counted as skipped.
pub fn scan_pending(file: &Path, store: &Store, out: &mut dyn Write) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    const W: usize = std::mem::size_of::<usize>();
    const P_LEAF: u16 = 0x02;
    const P_LEAF2: u16 = 0x20;
    const P_SUBP: u16 = 0x40;
    const F_BIGDATA: u16 = 0x01;
    const F_SUBDATA_DUPDATA: u16 = 0x06;
    let name = SCAN.0;
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let len = f.metadata().map_err(|e| format!("{}: {e}", file.display()))?.len();
    let meta = guard::read_meta(file, len).map_err(|e| e.to_string())?;
    let ps = meta.page_size as usize;
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    let mut counts = Counts::default();
    let mut ops = Vec::new();
    let mut page = vec![0u8; ps];
    let mut big = Vec::new();
    for pgno in 2..len / meta.page_size {
        if f.read_exact_at(&mut page, pgno * meta.page_size).is_err() {
            break;
        }
        let flags = u16_at(&page, W + 2);
        if flags & P_LEAF == 0 || flags & (P_LEAF2 | P_SUBP) != 0 {
            continue;
        }
        let lower = u16_at(&page, W + 4) as usize;
        if lower < guard::PAGE_HEADER || lower > ps {
            continue;
        }
        for slot in 0..(lower - guard::PAGE_HEADER) / 2 {
            let at = u16_at(&page, guard::PAGE_HEADER + 2 * slot) as usize;
            if at + 8 > ps {
                continue;
            }
            let (lo, hi) = if cfg!(target_endian = "little") { (u16_at(&page, at), u16_at(&page, at + 2)) } else { (u16_at(&page, at + 2), u16_at(&page, at)) };
            let (node_flags, ksize) = (u16_at(&page, at + 4), u16_at(&page, at + 6) as usize);
            if ksize != 28 || node_flags & F_SUBDATA_DUPDATA != 0 || at + 8 + ksize > ps {
                continue;
            }
            let key = &page[at + 8..at + 8 + ksize];
            let dsize = u32::from(lo) as usize | (usize::from(hi) << 16);
            let data_at = at + 8 + ksize;
            let value: &[u8] = if node_flags & F_BIGDATA != 0 {
                // The value lives on overflow pages: the node holds their first page number.
                if data_at + W > ps {
                    continue;
                }
                let mut n = [0u8; 8];
                n[..W].copy_from_slice(&page[data_at..data_at + W]);
                let overflow = u64::from_ne_bytes(n);
                big.resize(dsize, 0);
                let offset = overflow.saturating_mul(meta.page_size).saturating_add(guard::PAGE_HEADER as u64);
                if overflow < 2 || offset.saturating_add(dsize as u64) > len || f.read_exact_at(&mut big, offset).is_err() {
                    counts.undecodable += 1;
                    continue;
                }
                &big
            } else {
                if data_at + dsize > ps {
                    continue;
                }
                &page[data_at..data_at + dsize]
            };
            match QueuedRelay::decode(value) {
                Ok(r) if r.servicer_address[..] == key[..20] => ops.push(WriteOp::Append(Box::new(r))),
                _ => counts.undecodable += 1,
            }
            if ops.len() >= BATCH {
                append_scanned(store, &mut ops, &mut counts)?;
                let _ = writeln!(out, "progress {name} {} {} {}", counts.copied, counts.skipped, counts.undecodable);
                let _ = out.flush();
            }
        }
    }
    append_scanned(store, &mut ops, &mut counts)?;
    let _ = writeln!(out, "progress {name} {} {} {}", counts.copied, counts.skipped, counts.undecodable);
    let _ = writeln!(out, "done {name}");
    Ok(())
}

fn append_scanned(store: &Store, ops: &mut Vec<WriteOp>, counts: &mut Counts) -> Result<(), String> {
    if ops.is_empty() {
        return Ok(());
    }
    for result in store.apply(&std::mem::take(ops))? {
        match result {
            WriteResult::Appended(_) => counts.copied += 1,
            _ => counts.skipped += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_build_the_report_and_it_says_what_was_lost() {
        let mut report = Report::new("/q/data.mdb".into(), "/q".into(), "/q.salvaged-1".into(), 8192);
        for line in [
            "progress pending 16 0 0",
            "progress pending 30 0 2",
            "error pending MDB_CORRUPTED: Located page was wrong type",
            "done pending",
            "progress dead 0 0 0",
            "done dead",
            "missing spacemesh_publish",
            "progress nosuchdb 5 5 5",
        ] {
            report.apply_line(line);
        }
        let p = report.db("pending").unwrap();
        assert_eq!((p.copied, p.undecodable, p.finished), (30, 2, true));
        assert_eq!(report.copied(), 30);
        let text = report.render();
        assert!(text.contains("pending relays          30 copied, 2 undecodable (not copied); walk stopped early: MDB_CORRUPTED"), "{text}");
        assert!(text.contains("8192 bytes shorter"), "{text}");
        assert!(text.contains("Spacemesh publishes     none in the file"), "{text}");
        assert!(text.contains("identity states         not reached"), "{text}");
        assert!(text.contains("result: the walk process ended normally; 30 record(s) copied; 2 record(s) could not be decoded"), "{text}");
        assert!(text.contains("mv /q /q.damaged") && text.contains("mv /q.salvaged-1 /q"), "{text}");
        report.ending = Ending::Died("signal 11".into());
        assert!(report.render().contains("died (signal 11) after 30 committed record(s)"));
    }

    #[test]
    fn default_target_is_next_to_the_queue() {
        let t = default_target(Path::new("/data/queue"));
        assert!(t.to_string_lossy().starts_with("/data/queue.salvaged-"), "{t:?}");
    }
}
