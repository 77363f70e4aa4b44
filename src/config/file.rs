//! Bounded reads of the files meshd loads (config, keys, chains, chain-name map, auth tokens),
//! at start, in `check-config` and on hot reload.
//!
//! A path may point anywhere: a keys file that is a symlink to `/dev/zero` once grew
//! `check-config` to 3.8 GB, and a FIFO blocked the reader forever. So every read here:
//! - follows symlinks and refuses anything that is not a regular file (device, FIFO, socket,
//!   directory) before opening it;
//! - opens with `O_NONBLOCK`, so a path swapped for a FIFO between the check and the open never
//!   blocks, then checks the opened file's own type again;
//! - refuses a file larger than the limit of its kind ([`KEYS_FILE_LIMIT`],
//!   [`CONFIG_FILE_LIMIT`]) and reads at most `limit + 1` bytes, so a file that grows while it is
//!   read is still bounded.
//!
//! Errors are typed ([`ReadError`]) so callers can tell "missing" (token files are optional)
//! from "refused"; their text names the file and the limit.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// Largest servicer keys file meshd reads (64 MiB: ~250,000 addresses in either format).
pub const KEYS_FILE_LIMIT: u64 = 64 * 1024 * 1024;
/// Largest `config.json`, `chains.json`, chain-name map or auth token file meshd reads (4 MiB).
pub const CONFIG_FILE_LIMIT: u64 = 4 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The path does not exist (after following symlinks).
    NotFound { path: PathBuf },
    /// Not a regular file: a device, FIFO, socket or directory. `kind` says which.
    NotRegular { path: PathBuf, kind: &'static str },
    /// Larger than `limit` bytes (already on disk, or grew past it while being read).
    TooLarge { path: PathBuf, limit: u64 },
    /// Any other I/O failure (permissions, …).
    Io { path: PathBuf, message: String },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotFound { path } => write!(f, "{}: cannot read: file not found", path.display()),
            ReadError::NotRegular { path, kind } => {
                write!(f, "{}: refused: not a regular file (it is {kind}); meshd only reads regular files", path.display())
            }
            ReadError::TooLarge { path, limit } => {
                write!(f, "{}: refused: larger than the {} limit for this file ({limit} bytes)", path.display(), human(*limit))
            }
            ReadError::Io { path, message } => write!(f, "{}: cannot read: {message}", path.display()),
        }
    }
}
impl std::error::Error for ReadError {}

impl From<ReadError> for ConfigError {
    fn from(e: ReadError) -> ConfigError {
        let (path, text) = match &e {
            ReadError::NotFound { path } | ReadError::NotRegular { path, .. } | ReadError::TooLarge { path, .. } | ReadError::Io { path, .. } => {
                (path.clone(), e.to_string())
            }
        };
        // The Display text starts with the path; ConfigError prints it itself.
        let prefix = format!("{}: ", path.display());
        ConfigError::file(&path, text.strip_prefix(&prefix).unwrap_or(&text).to_string())
    }
}

fn human(limit: u64) -> String {
    if limit % (1024 * 1024) == 0 {
        format!("{} MiB", limit / (1024 * 1024))
    } else {
        format!("{limit} byte")
    }
}

fn kind_of(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn check(path: &Path, meta: &std::fs::Metadata, limit: u64) -> Result<(), ReadError> {
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotRegular { path: path.to_path_buf(), kind: kind_of(&ft) });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), limit });
    }
    Ok(())
}

/// Read the regular file at `path` (symlinks followed), at most `limit` bytes; see the module
/// doc for what is refused. Never blocks on a FIFO and never holds more than `limit + 1` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io = |e: std::io::Error| ReadError::Io { path: path.to_path_buf(), message: e.to_string() };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotFound { path: path.to_path_buf() }),
        Err(e) => return Err(io(e)),
    };
    check(path, &meta, limit)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotFound { path: path.to_path_buf() }),
        Err(e) => return Err(io(e)),
    };
    // The path may have been replaced between the check and the open.
    check(path, &file.metadata().map_err(io)?, limit)?;
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), limit });
    }
    Ok(bytes)
}

/// [`read_bounded`] as config text: UTF-8 with a leading BOM dropped (editors on Windows add
/// one and serde_json rejects it). The error names the file.
pub fn read_text_bounded(path: &Path, limit: u64) -> Result<String, ConfigError> {
    text_of(read_bounded(path, limit)?, path)
}

/// Decode file bytes as config text (UTF-8, leading BOM dropped); the error names the file.
pub fn text_of(bytes: Vec<u8>, path: &Path) -> Result<String, ConfigError> {
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::file(path, format!("not UTF-8: {}", e.utf8_error())))?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::*;
    use std::time::Duration;

    /// Run `f` on a thread and fail (instead of hanging the suite) if it takes over 5 s.
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("the read blocked for 5 s")
    }

    #[test]
    fn a_regular_file_under_the_limit_is_read() {
        let dir = TempDir::new("file-ok");
        let p = dir.path().join("a.json");
        std::fs::write(&p, b"\xef\xbb\xbf{}").unwrap();
        assert_eq!(read_bounded(&p, 5).unwrap().len(), 5);
        assert_eq!(read_text_bounded(&p, 5).unwrap(), "{}");
        assert!(matches!(read_bounded(&dir.path().join("none"), 5), Err(ReadError::NotFound { .. })));
    }

    #[test]
    fn a_symlink_to_dev_zero_is_refused_without_reading() {
        let dir = TempDir::new("file-zero");
        let p = dir.path().join("keys.json");
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        let e = within_5s(move || read_bounded(&p, KEYS_FILE_LIMIT)).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular { kind: "a character device", .. }), "{e:?}");
        let text = ConfigError::from(e).to_string();
        assert!(text.contains("keys.json") && text.contains("not a regular file"), "{text}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = TempDir::new("file-fifo");
        let p = dir.path().join("chains.json");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = within_5s(move || read_bounded(&p, CONFIG_FILE_LIMIT)).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular { kind: "a FIFO", .. }), "{e:?}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_naming_the_limit() {
        let dir = TempDir::new("file-big");
        let p = dir.path().join("config.json");
        // Sparse: one byte over the limit costs no disk.
        std::fs::File::create(&p).unwrap().set_len(CONFIG_FILE_LIMIT + 1).unwrap();
        let e = read_bounded(&p, CONFIG_FILE_LIMIT).unwrap_err();
        assert_eq!(e, ReadError::TooLarge { path: p.clone(), limit: CONFIG_FILE_LIMIT });
        let text = ConfigError::from(e).to_string();
        assert!(text.contains("config.json") && text.contains("4 MiB"), "{text}");
        std::fs::File::options().write(true).open(&p).unwrap().set_len(CONFIG_FILE_LIMIT).unwrap();
        assert_eq!(read_bounded(&p, CONFIG_FILE_LIMIT).unwrap().len() as u64, CONFIG_FILE_LIMIT);
    }
}
