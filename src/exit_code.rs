//! Process exit codes of `meshd` (docs/deploy.md, exit codes). Each means one thing, because the
//! systemd unit acts on them: `RestartPreventExitStatus=2` never restarts a configuration
//! error (it would fail again), while every environment fault is restarted.

/// Success (also a graceful stop by SIGTERM/SIGINT or the stop route).
pub const OK: i32 = 0;
/// An environment fault that a restart may cure: a read-only or late mount, a port taken, a
/// full disk, the queue lock held by another meshd, the data dir removed or replaced while
/// running.
pub const ENVIRONMENT: i32 = 1;
/// A configuration or usage error: the operator must fix a file or the command line.
pub const CONFIG: i32 = 2;
/// The queue file is damaged (it does not match its own meta pages, or LMDB says corrupt).
pub const QUEUE_DAMAGED: i32 = 3;

/// The exit code for a queue that could not be opened.
pub fn for_queue_fault(fault: &crate::queue::QueueFault) -> i32 {
    match fault {
        crate::queue::QueueFault::Damaged { .. } => QUEUE_DAMAGED,
        crate::queue::QueueFault::NoQueue { .. } => CONFIG,
        crate::queue::QueueFault::LockHeld { .. } | crate::queue::QueueFault::Io { .. } => ENVIRONMENT,
    }
}
