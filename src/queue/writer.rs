//! Group commit: every queue write from the executor goes through one writer task, which
//! takes all operations waiting at that moment and applies them in a single LMDB transaction
//! on the dedicated `lmdb-writer` thread — one fsync for a whole burst of concurrent relays.
//! With `async` durability (no fsync per commit) the task commits on the executor itself.
//! A thread of its own rather than the blocking pool: it lives as long as the queue (the pool
//! ends idle threads and starts new ones), and LMDB reads on the pool never wait behind a
//! commit's fsync.
//!
//! Before a batch's appends are acknowledged the writer checks that the queue file is still
//! the one at its path (one `stat`); [`watch_queue_file`] does the same every second and ends
//! the process when the data dir was removed or replaced (docs/relay-path.md "Durability guarantees").

use std::sync::Arc;
use std::time::Duration;

use super::store::{Durability, Store, WriteOp, WriteResult};

/// Most operations applied in one transaction.
pub const MAX_BATCH: usize = 1024;

/// The refusal of an append whose queue file is no longer at its path: the relay is answered
/// 503 with a fixed message (src/relay/service.rs), never 200.
pub const QUEUE_FILE_LOST: &str = "the queue file was removed or replaced under meshd";
/// The refusal of an append whose commit failed (disk full, I/O error): details are logged
/// once per [`COMMIT_FAILURE_LOG_INTERVAL`], the client gets a fixed message.
pub const COMMIT_FAILED: &str = "queue commit failed";
/// At most one `event=queue_commit_failed` line per interval, with the count since the last.
pub const COMMIT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How often [`watch_queue_file`] looks at the queue file's path.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// After the queue file is found gone: how long requests in progress get their 503 before
/// the process flushes and exits.
pub const LOST_GRACE: Duration = Duration::from_secs(1);

/// One log line per interval for a repeating failure: the first at once, then a summary with
/// the number of occurrences since the previous line.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl Throttle {
    /// Count one occurrence at `now`; `Some(n)` when a line is due (n = occurrences it covers).
    pub fn hit(&mut self, now: std::time::Instant, interval: Duration) -> Option<u64> {
        self.suppressed += 1;
        match self.last {
            Some(last) if now.saturating_duration_since(last) < interval => None,
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

struct Request {
    op: WriteOp,
    reply: async_channel::Sender<WriteResult>,
}

/// Work for the writer thread: a closure run there, its result sent back to the executor.
type Job = Box<dyn FnOnce() + Send>;

/// The `lmdb-writer` thread: runs jobs one after another, in submission order.
#[derive(Clone)]
struct WriterThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl WriterThread {
    fn start() -> std::io::Result<WriterThread> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new().name("lmdb-writer".into()).spawn(move || {
            while let Ok(job) = queue.recv() {
                job();
            }
        })?;
        Ok(WriterThread { jobs })
    }

    /// Run `f` on the writer thread and wait (asynchronously) for its result.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = async_channel::bounded(1);
        let job: Job = Box::new(move || {
            let _ = done.try_send(f());
        });
        if self.jobs.send(job).is_err() {
            // The thread is gone (it only ends with the process): nothing can be committed.
            std::future::pending::<()>().await;
        }
        result.recv().await.expect("the writer thread answers every job it takes")
    }
}

#[derive(Clone)]
pub struct Writer {
    tx: async_channel::Sender<Request>,
    store: Arc<Store>,
}

impl Writer {
    /// The writer handle and the task to spawn on the executor (it starts the `lmdb-writer`
    /// thread; an error here is a start-up failure: no thread can be created).
    pub fn new(store: Arc<Store>) -> std::io::Result<(Writer, impl std::future::Future<Output = ()>)> {
        let (tx, rx) = async_channel::unbounded();
        let thread = WriterThread::start()?;
        Ok((Writer { tx, store: store.clone() }, run(store, rx, thread)))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Queue an operation for the next batch without waiting for it (state records: the
    /// caller needs no answer, and the writer's FIFO keeps them in order).
    pub fn submit(&self, op: WriteOp) {
        let (reply, _) = async_channel::bounded(1);
        if self.tx.try_send(Request { op, reply }).is_err() {
            log::warn!("event=queue_submit_dropped reason=\"the queue writer has stopped\"");
        }
    }

    /// Apply one operation as part of the next batch; resolves once that batch is committed.
    pub async fn write(&self, op: WriteOp) -> WriteResult {
        let (reply, answer) = async_channel::bounded(1);
        if self.tx.send(Request { op, reply }).await.is_err() {
            return WriteResult::Refused("the queue writer has stopped".into());
        }
        answer.recv().await.unwrap_or_else(|_| WriteResult::Refused("the queue writer has stopped".into()))
    }
}

impl Writer {
    /// [`Writer::write`] from a thread outside the executor (the Shannon hand-off thread):
    /// blocks that thread until the batch holding `op` is committed.
    pub fn write_blocking(&self, op: WriteOp) -> WriteResult {
        let (reply, answer) = async_channel::bounded(1);
        if self.tx.send_blocking(Request { op, reply }).is_err() {
            return WriteResult::Refused("the queue writer has stopped".into());
        }
        answer.recv_blocking().unwrap_or_else(|_| WriteResult::Refused("the queue writer has stopped".into()))
    }
}

async fn run(store: Arc<Store>, rx: async_channel::Receiver<Request>, thread: WriterThread) {
    // With async durability a commit only copies a few pages into the page cache (no fsync), so
    // it runs here, on the executor: handing it to the writer thread and back cost two
    // cross-thread wake-ups per relay, more than the commit (bench/RESULTS.md, "added latency").
    // A flush (shutdown) still syncs on the writer thread.
    let inline = store.durability() == Durability::Async;
    let mut failures = Throttle::default();
    while let Ok(first) = rx.recv().await {
        if inline {
            // Let the relays already running reach their commit: they join this batch.
            futures_lite::future::yield_now().await;
        }
        let mut ops = vec![first.op];
        let mut replies = vec![first.reply];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => {
                    ops.push(request.op);
                    replies.push(request.reply);
                }
                Err(_) => break,
            }
        }
        let outcome = if inline && !ops.iter().any(|op| matches!(op, WriteOp::Flush)) {
            store.apply(&ops)
        } else {
            let batch_store = store.clone();
            thread.run(move || batch_store.apply(&ops)).await
        };
        match outcome {
            Ok(results) => {
                // Committed into a file that is no longer at its path: not durable, so no 200.
                let lost = store.check_identity().is_err();
                for (reply, result) in replies.into_iter().zip(results) {
                    let result = match result {
                        WriteResult::Appended(_) if lost => WriteResult::Refused(QUEUE_FILE_LOST.into()),
                        other => other,
                    };
                    let _ = reply.try_send(result);
                }
            }
            Err(e) => {
                if let Some(batches) = failures.hit(std::time::Instant::now(), COMMIT_FAILURE_LOG_INTERVAL) {
                    log::error!(
                        "event=queue_commit_failed failed_batches={batches} last_batch={} error={e:?} (relays get 503; one line per {} s)",
                        replies.len(),
                        COMMIT_FAILURE_LOG_INTERVAL.as_secs()
                    );
                }
                for reply in replies {
                    let _ = reply.try_send(WriteResult::Refused(COMMIT_FAILED.into()));
                }
            }
        }
    }
}

/// With `async` durability, flush the queue to disk every second.
pub async fn periodic_sync(store: Arc<Store>) {
    loop {
        async_io::Timer::after(Duration::from_secs(1)).await;
        let s = store.clone();
        if let Err(e) = smol::unblock(move || s.sync()).await {
            log::error!("event=queue_sync_failed error={e:?}");
        }
    }
}

/// Every [`WATCH_INTERVAL`], check that the queue file at its path is still the one this
/// process has open. When the data dir was removed or replaced (rm -rf, a restore), relays
/// committed from now on would be lost with the unlinked file: log `event=fatal`, let requests
/// in progress get their 503 ([`LOST_GRACE`]), flush, and exit with
/// [`crate::exit_code::ENVIRONMENT`] so systemd restarts meshd on the real directory.
pub async fn watch_queue_file(store: Arc<Store>) {
    loop {
        async_io::Timer::after(WATCH_INTERVAL).await;
        let s = store.clone();
        if let Err(why) = smol::unblock(move || s.check_identity()).await {
            log::error!("event=fatal error={why:?} (new relays get 503; exiting so that a restart opens the queue at its path)");
            async_io::Timer::after(LOST_GRACE).await;
            let s = store.clone();
            let _ = smol::unblock(move || s.env().force_sync()).await;
            log::error!("event=exit code={}", crate::exit_code::ENVIRONMENT);
            std::process::exit(crate::exit_code::ENVIRONMENT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A write that records which thread its transaction ran on.
    struct WhereCommitted(std::sync::Mutex<Option<String>>);

    impl crate::queue::ExtraWrite for Arc<WhereCommitted> {
        fn apply(&self, _wtxn: &mut heed::RwTxn, _room: &mut crate::queue::Room) -> heed::Result<WriteResult> {
            *self.0.lock().unwrap() = std::thread::current().name().map(str::to_owned);
            Ok(WriteResult::Done)
        }
    }

    /// The thread that committed a probe write; with `flush_with_it` the probe is submitted
    /// and a flush written right behind it, so both are in one batch.
    fn committed_on(durability: Durability, flush_with_it: bool) -> Option<String> {
        let dir = crate::queue::test_dir("writer", &format!("{durability:?}-{flush_with_it}"));
        let store = Arc::new(Store::open(&dir, 8, durability).unwrap());
        let (writer, task) = Writer::new(store).unwrap();
        let probe = Arc::new(WhereCommitted(std::sync::Mutex::new(None)));
        let op = WriteOp::Extra(Box::new(probe.clone()));
        std::thread::Builder::new()
            .name("test-executor".into())
            .spawn(move || {
                let ex = smol::LocalExecutor::new();
                ex.spawn(task).detach();
                smol::block_on(ex.run(async {
                    if flush_with_it {
                        writer.submit(op);
                        assert_eq!(writer.write(WriteOp::Flush).await, WriteResult::Done);
                    } else {
                        assert_eq!(writer.write(op).await, WriteResult::Done);
                    }
                }))
            })
            .unwrap()
            .join()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let name = probe.0.lock().unwrap().clone();
        name
    }

    /// Sync commits wait for an fsync, so they run on the writer thread; async commits only
    /// copy pages, so they run on the executor (no cross-thread hop per relay) — except a batch
    /// with a flush, which syncs.
    #[test]
    fn async_commits_run_on_the_executor_and_sync_commits_on_the_writer_thread() {
        assert_eq!(committed_on(Durability::Sync, false).as_deref(), Some("lmdb-writer"));
        assert_eq!(committed_on(Durability::Async, false).as_deref(), Some("test-executor"));
        assert_eq!(committed_on(Durability::Async, true).as_deref(), Some("lmdb-writer"));
    }

    #[test]
    fn a_repeating_failure_logs_once_per_interval_with_the_count() {
        let mut t = Throttle::default();
        let start = Instant::now();
        assert_eq!(t.hit(start, Duration::from_secs(10)), Some(1));
        for i in 1..=500 {
            assert_eq!(t.hit(start + Duration::from_millis(i), Duration::from_secs(10)), None);
        }
        assert_eq!(t.hit(start + Duration::from_secs(10), Duration::from_secs(10)), Some(501));
        assert_eq!(t.hit(start + Duration::from_secs(11), Duration::from_secs(10)), None);
    }
}
