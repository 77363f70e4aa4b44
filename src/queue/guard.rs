//! What stands between the queue directory and LMDB (docs/relay-path.md "Durability guarantees"):
//!
//! - [`QueueLock`]: one daemon per queue. `meshd start` takes an exclusive `flock` on
//!   `<queue dir>/meshd.lock` (holding its PID) before the LMDB environment opens; a second
//!   daemon on the same directory gets [`QueueFault::LockHeld`] naming that PID. The `meshd
//!   queue` commands do not take it: LMDB's own lock file makes them safe next to the daemon.
//! - [`check_data_file`]: `data.mdb` is checked against its own meta pages with plain reads
//!   before LMDB maps it, so a truncated or overwritten file is an error naming the file and
//!   the damage instead of a SIGBUS at the first touch of a missing page.
//! - [`FileIdentity`]: the device and inode of the opened `data.mdb`, compared with what is at
//!   its path now, so a data dir removed or restored under a running daemon is noticed.
//!
//! The meta layout is LMDB's (`MDB_page` / `MDB_meta` in lmdb-master-sys' mdb.c): a page
//! header of one `size_t` page number and four `u16`, then magic, version, an address and the
//! map size, two `MDB_db` records (the first one's `md_pad` is the page size), the last used
//! page and the transaction id. Word-sized fields are `usize` wide, which is why a queue
//! directory is not portable between 32- and 64-bit builds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// LMDB's file stamp (`MDB_MAGIC`).
pub const MDB_MAGIC: u32 = 0xBEEF_C0DE;
/// LMDB's data format version (`MDB_DATA_VERSION` without `MDB_DEVEL`).
pub const MDB_DATA_VERSION: u32 = 1;
/// Name of the lock file inside the queue directory.
pub const LOCK_FILE: &str = "meshd.lock";
/// Pages LMDB may count as used but never write (pages freed in the transaction that
/// allocated them are not flushed, mdb.c `mdb_page_flush`), so a healthy file can end this
/// many pages short of its last used page.
pub const UNWRITTEN_TAIL_PAGES: u64 = 16;

/// Why the queue cannot be opened; `main` maps each kind to an exit code (docs/deploy.md, exit codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueFault {
    /// Another process holds the queue lock.
    LockHeld { lock_file: PathBuf, pid: Option<u32> },
    /// The file system refused (read-only or missing mount, permissions, disk full …).
    Io { path: PathBuf, message: String },
    /// `data.mdb` does not match its own meta pages (or LMDB found it corrupt).
    Damaged { file: PathBuf, damage: String },
    /// A read-only command on a directory that holds no queue.
    NoQueue { dir: PathBuf },
}

impl std::fmt::Display for QueueFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueFault::LockHeld { lock_file, pid: Some(pid) } => {
                write!(f, "{}: the queue is in use by another meshd (pid {pid}); one process per queue directory", lock_file.display())
            }
            QueueFault::LockHeld { lock_file, pid: None } => {
                write!(f, "{}: the queue is locked by another process; one process per queue directory", lock_file.display())
            }
            QueueFault::Io { path, message } => write!(f, "{}: {message}", path.display()),
            QueueFault::Damaged { file, damage } => {
                write!(f, "{}: damaged queue file: {damage} (move it aside to start with an empty queue; keep it for recovery)", file.display())
            }
            QueueFault::NoQueue { dir } => write!(f, "{}: no relay queue here (no data.mdb); check --datadir and relay_queue_dir", dir.display()),
        }
    }
}

impl std::error::Error for QueueFault {}

/// The held queue lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct QueueLock {
    _file: File,
    pub path: PathBuf,
}

/// Take the exclusive lock of `dir` (created if missing) and write our PID into it.
pub fn lock(dir: &Path) -> Result<QueueLock, QueueFault> {
    let io = |path: &Path, what: &str, e: std::io::Error| QueueFault::Io { path: path.to_path_buf(), message: format!("{what}: {e}") };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, "cannot create queue directory", e))?;
    let path = dir.join(LOCK_FILE);
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| io(&path, "cannot open lock file", e))?;
    // SAFETY: flock on a descriptor we own; no memory is shared with the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = (&file).take(64).read_to_string(&mut text);
            return Err(QueueFault::LockHeld { lock_file: path, pid: text.trim().parse().ok() });
        }
        return Err(io(&path, "cannot lock", e));
    }
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .map_err(|e| io(&path, "cannot write lock file", e))?;
    Ok(QueueLock { _file: file, path })
}

/// One meta page as LMDB wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u64,
    pub free_root: u64,
    pub main_root: u64,
    pub last_page: u64,
    pub txn_id: u64,
    /// Which meta page (0 or 1) this is.
    pub index: u64,
}

const W: usize = std::mem::size_of::<usize>();
/// `PAGEHDRSZ`: page number (usize) + pad, flags, lower, upper (u16 each).
pub const PAGE_HEADER: usize = W + 8;
const DB_SIZE: usize = 8 + 5 * W;
const META_SIZE: usize = 8 + 2 * W + 2 * DB_SIZE + 2 * W;
/// `P_META` page flag.
const P_META: u16 = 0x08;
/// No root page (`P_INVALID`).
const NO_PAGE: u64 = if W == 8 { u64::MAX } else { u32::MAX as u64 };

fn word(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if W == 8 {
        v.copy_from_slice(&b[at..at + 8]);
        u64::from_ne_bytes(v)
    } else {
        let mut v4 = [0u8; 4];
        v4.copy_from_slice(&b[at..at + 4]);
        u64::from(u32::from_ne_bytes(v4))
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

/// Parse meta page `index` from its raw bytes (at least `PAGE_HEADER + META_SIZE` long).
fn parse_meta(page: &[u8], index: u64) -> Result<Meta, String> {
    if page.len() < PAGE_HEADER + META_SIZE {
        return Err(format!("meta page {index} is cut short ({} bytes)", page.len()));
    }
    let flags = u16_at(page, W + 2);
    let m = &page[PAGE_HEADER..];
    let magic = u32_at(m, 0);
    if magic != MDB_MAGIC {
        return Err(format!("meta page {index}: magic {magic:#010x}, expected {MDB_MAGIC:#010x} (not an LMDB file, or its first pages were overwritten)"));
    }
    let version = u32_at(m, 4);
    if version != MDB_DATA_VERSION {
        return Err(format!("meta page {index}: format version {version}, this build reads {MDB_DATA_VERSION}"));
    }
    if flags & P_META == 0 {
        return Err(format!("meta page {index}: page flags {flags:#06x} lack the meta flag"));
    }
    let dbs = 8 + 2 * W;
    let page_size = u64::from(u32_at(m, dbs));
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("meta page {index}: page size {page_size} is not a power of two between 512 and 65536"));
    }
    let root = |db: usize| word(m, dbs + db * DB_SIZE + 8 + 4 * W);
    let tail = dbs + 2 * DB_SIZE;
    Ok(Meta { page_size, free_root: root(0), main_root: root(1), last_page: word(m, tail), txn_id: word(m, tail + W), index })
}

/// Check `data.mdb` of a queue directory against its meta pages. `Ok(None)`: no file yet, or
/// an empty one (LMDB initialises it). `Ok(Some(meta))`: the newest meta, and the file covers
/// every page it claims (within [`UNWRITTEN_TAIL_PAGES`]) and both root pages.
pub fn check_data_file(file: &Path) -> Result<Option<Meta>, QueueFault> {
    let damaged = |damage: String| QueueFault::Damaged { file: file.to_path_buf(), damage };
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(QueueFault::Io { path: file.to_path_buf(), message: format!("cannot stat: {e}") }),
    };
    if !meta.file_type().is_file() {
        return Err(damaged("not a regular file".into()));
    }
    let len = meta.len();
    if len == 0 {
        return Ok(None);
    }
    let newest = read_meta(file, len)?;
    let pages_in_file = len / newest.page_size;
    let claimed = newest.last_page.saturating_add(1);
    if claimed > pages_in_file.saturating_add(UNWRITTEN_TAIL_PAGES) {
        return Err(damaged(format!(
            "truncated: {len} bytes hold {pages_in_file} pages of {} bytes, but meta page {} (transaction {}) uses {claimed} pages",
            newest.page_size, newest.index, newest.txn_id
        )));
    }
    for (name, root) in [("free-page", newest.free_root), ("main", newest.main_root)] {
        if root != NO_PAGE && root >= pages_in_file {
            return Err(damaged(format!("truncated: the {name} tree's root page {root} lies beyond the end of the file ({pages_in_file} pages)")));
        }
    }
    Ok(Some(newest))
}

/// The newest of the two meta pages of `file` (`len` bytes long), read with plain reads: what
/// LMDB would use. No check of the rest of the file (`meshd queue salvage` reads damaged files
/// through this).
pub fn read_meta(file: &Path, len: u64) -> Result<Meta, QueueFault> {
    let damaged = |damage: String| QueueFault::Damaged { file: file.to_path_buf(), damage };
    let mut f = File::open(file).map_err(|e| QueueFault::Io { path: file.to_path_buf(), message: format!("cannot open: {e}") })?;
    let mut first = vec![0u8; PAGE_HEADER + META_SIZE];
    read_at(&mut f, 0, &mut first).map_err(|e| damaged(format!("cannot read meta page 0 ({len} bytes in the file): {e}")))?;
    let m0 = parse_meta(&first, 0).map_err(damaged)?;
    let mut second = vec![0u8; PAGE_HEADER + META_SIZE];
    read_at(&mut f, m0.page_size, &mut second)
        .map_err(|e| damaged(format!("file of {len} bytes ends inside meta page 1 (page size {}): {e}", m0.page_size)))?;
    let m1 = parse_meta(&second, 1).map_err(damaged)?;
    if m1.page_size != m0.page_size {
        return Err(damaged(format!("meta pages disagree on the page size ({} vs {})", m0.page_size, m1.page_size)));
    }
    let newest = if m1.txn_id > m0.txn_id { m1 } else { m0 };
    Ok(newest)
}

fn read_at(f: &mut File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

/// Device and inode of a file: what identifies it beyond its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
}

impl FileIdentity {
    pub fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let m = std::fs::metadata(path)?;
        Ok(FileIdentity { dev: m.dev(), ino: m.ino() })
    }

    /// `Err(why)` when `path` no longer leads to this file (removed, or replaced by another).
    pub fn still_at(&self, path: &Path) -> Result<(), String> {
        match FileIdentity::of(path) {
            Ok(now) if now == *self => Ok(()),
            Ok(now) => {
                Err(format!("{} was replaced (inode {} on device {}, opened inode {} on device {})", path.display(), now.ino, now.dev, self.ino, self.dev))
            }
            Err(e) => Err(format!("{} is gone: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Durability, Store};

    fn fresh_queue(name: &str) -> PathBuf {
        let dir = crate::queue::test_dir("guard", name);
        let store = Store::open(&dir, 16, Durability::Sync).unwrap();
        store.close();
        dir
    }

    #[test]
    fn a_healthy_file_passes_and_damage_is_named() {
        let dir = fresh_queue("meta");
        let file = dir.join("data.mdb");
        let meta = check_data_file(&file).unwrap().expect("a written queue has metas");
        assert!(meta.page_size >= 512);
        let bytes = std::fs::read(&file).unwrap();

        // Truncated to one page: meta page 1 is missing.
        std::fs::write(&file, &bytes[..meta.page_size as usize]).unwrap();
        let e = check_data_file(&file).unwrap_err().to_string();
        assert!(e.contains("data.mdb") && e.contains("meta page 1"), "{e}");

        // Both metas intact but the tree pages cut off.
        std::fs::write(&file, &bytes[..2 * meta.page_size as usize]).unwrap();
        let e = check_data_file(&file).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");

        // First page overwritten with zeros.
        let mut zeroed = bytes.clone();
        zeroed[..meta.page_size as usize].fill(0);
        std::fs::write(&file, &zeroed).unwrap();
        let e = check_data_file(&file).unwrap_err().to_string();
        assert!(e.contains("magic 0x00000000"), "{e}");

        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(check_data_file(&file).unwrap(), Some(meta));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_lock_is_exclusive_and_names_the_holder() {
        let dir = crate::queue::test_dir("guard", "lock");
        let held = lock(&dir).unwrap();
        match lock(&dir) {
            Err(QueueFault::LockHeld { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(held);
        lock(&dir).expect("released on drop");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
