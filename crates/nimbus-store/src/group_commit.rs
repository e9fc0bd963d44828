//! Group commit of invocation records, off the request path.
//!
//! Invocations hand their record to a [`RecordSink`] (a bounded channel: a full channel makes the
//! finishing invocation wait, it never drops a record). One writer thread drains whatever has
//! queued up and writes it with a single [`Store::insert_records`] call, so under load many
//! records share one commit. Dropping every sink handle and calling [`RecordWriter::finish`]
//! flushes what is left.

use std::sync::Arc;
use std::thread::JoinHandle;

use nimbus_core::{InvocationRecord, Store};
use tokio::sync::mpsc;

/// Most records written in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Records that may wait for the writer before senders wait too.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

/// Cheap, cloneable handle that accepts finished invocation records.
#[derive(Clone)]
pub struct RecordSink {
    tx: mpsc::Sender<InvocationRecord>,
}

/// The writer thread; [`RecordWriter::finish`] waits until everything sent has been written.
pub struct RecordWriter {
    thread: JoinHandle<()>,
}

impl RecordSink {
    /// Starts the writer thread for `store`.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<(RecordSink, RecordWriter)> {
        let (tx, mut rx) = mpsc::channel::<InvocationRecord>(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("nimbus-records".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = store.insert_records(&batch) {
                        tracing::error!(error = %e, records = batch.len(), "failed to write invocation records");
                    }
                    batch.clear();
                }
            })?;
        Ok((RecordSink { tx }, RecordWriter { thread }))
    }

    /// Queues a record without waiting; if the queue is full, a task waits for room instead, so
    /// the record is delayed, never dropped. Must be called within a Tokio runtime.
    pub fn submit(&self, record: InvocationRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(record)) => {
                let sink = self.clone();
                tokio::spawn(async move { sink.send(record).await });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("record writer has stopped; invocation record lost");
            }
        }
    }

    /// Queues a record; waits only if the writer is far behind.
    pub async fn send(&self, record: InvocationRecord) {
        if self.tx.send(record).await.is_err() {
            tracing::error!("record writer has stopped; invocation record lost");
        }
    }
}

impl RecordWriter {
    /// Blocks until every sink is dropped and all queued records are written.
    pub fn finish(self) {
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    #[tokio::test]
    async fn every_sent_record_is_written_before_finish_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db"), "default").unwrap());
        let (sink, writer) = RecordSink::start(store.clone()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..4 {
            let sink = sink.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..500 {
                    let mut r = crate::conformance::sample_record(&format!("{t}-{i}"));
                    r.function = "f".into();
                    sink.send(r).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        drop(sink);
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        assert_eq!(store.invocations("f", 10_000).unwrap().len(), 2000);
    }
}
