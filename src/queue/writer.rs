//! Group commit: every queue write from the executor goes through one writer task, which
//! takes all operations waiting at that moment and applies them in a single LMDB transaction
//! on the blocking pool — one fsync for a whole burst of concurrent relays.

use std::sync::Arc;
use std::time::Duration;

use super::store::{Store, WriteOp, WriteResult};

/// Most operations applied in one transaction.
pub const MAX_BATCH: usize = 1024;

struct Request {
    op: WriteOp,
    reply: async_channel::Sender<WriteResult>,
}

#[derive(Clone)]
pub struct Writer {
    tx: async_channel::Sender<Request>,
    store: Arc<Store>,
}

impl Writer {
    /// The writer handle and the task to spawn on the executor.
    pub fn new(store: Arc<Store>) -> (Writer, impl std::future::Future<Output = ()>) {
        let (tx, rx) = async_channel::unbounded();
        (Writer { tx, store: store.clone() }, run(store, rx))
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

async fn run(store: Arc<Store>, rx: async_channel::Receiver<Request>) {
    while let Ok(first) = rx.recv().await {
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
        let batch_store = store.clone();
        let outcome = smol::unblock(move || batch_store.apply(&ops)).await;
        match outcome {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.try_send(result);
                }
            }
            Err(e) => {
                log::error!("event=queue_commit_failed batch={} error={e:?}", replies.len());
                for reply in replies {
                    let _ = reply.try_send(WriteResult::Refused(format!("queue commit failed: {e}")));
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
