//! The durable relay queue: every relay answered 200 is committed to LMDB first (group commit:
//! one fsync per batch of concurrent relays), deduplicated by proof hash, and kept until its
//! servicer accepts the notify or it is moved, with its reason, to the dead-letter store.

pub(crate) mod bytes_field;
pub mod cli;
pub mod guard;
pub mod record;
pub mod salvage;
pub mod states;
pub mod store;
pub mod writer;

pub use guard::QueueFault;
pub use record::{DeadLetter, QueuedRelay};
pub use states::{StateQuery, StateRecord};
pub use store::{Durability, ExtraWrite, OpenMode, PendingKey, QueueStats, Restored, Room, Store, WriteOp, WriteResult};
pub use writer::Writer;

/// A fresh, empty path for a unit test's LMDB environment (`prefix` keeps test modules apart).
#[cfg(test)]
pub(crate) fn test_dir(prefix: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshd-{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
