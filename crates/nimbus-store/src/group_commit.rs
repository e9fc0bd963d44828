//! Group commit of invocation records, off the request path.
//!
//! Invocations hand their record to a [`RecordSink`] (a bounded channel: a full channel makes the
//! finishing invocation wait, it never drops a record). One writer thread drains whatever has
//! queued up and writes it with a single [`Store::insert_records`] call, so under load many
//! records share one commit. [`RecordWriter::finish`] flushes what was sent before it and stops
//! the writer, whatever sink handles are still alive; records submitted after it are refused
//! (and logged), so a node stops its invocations before it finishes the writer.

use std::sync::Arc;
use std::thread::JoinHandle;

use nimbus_core::{InvocationRecord, Store};
use tokio::sync::mpsc;

/// Most records written in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Records that may wait for the writer before senders wait too.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

enum Msg {
    Record(Box<InvocationRecord>),
    /// Write everything before this, then stop.
    Finish,
}

/// Cheap, cloneable handle that accepts finished invocation records.
#[derive(Clone)]
pub struct RecordSink {
    tx: mpsc::Sender<Msg>,
}

/// The writer thread; [`RecordWriter::finish`] waits until everything sent has been written.
pub struct RecordWriter {
    tx: mpsc::Sender<Msg>,
    thread: JoinHandle<()>,
}

fn write(store: &dyn Store, batch: &mut Vec<InvocationRecord>) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = store.insert_records(batch) {
        tracing::error!(error = %e, records = batch.len(), "failed to write invocation records");
    }
    batch.clear();
}

impl RecordSink {
    /// Starts the writer thread for `store`.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<(RecordSink, RecordWriter)> {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("nimbus-records".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while let Some(first) = rx.blocking_recv() {
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Record(r) => batch.push(*r),
                            Msg::Finish => {
                                // Refuse new records, write what is queued, stop.
                                rx.close();
                                while let Ok(msg) = rx.try_recv() {
                                    if let Msg::Record(r) = msg {
                                        batch.push(*r);
                                    }
                                }
                                write(store.as_ref(), &mut batch);
                                return;
                            }
                        }
                        if batch.len() < MAX_BATCH {
                            next = rx.try_recv().ok();
                        }
                    }
                    write(store.as_ref(), &mut batch);
                }
            })?;
        Ok((RecordSink { tx: tx.clone() }, RecordWriter { tx, thread }))
    }

    /// Queues a record without waiting; if the queue is full, a task waits for room instead, so
    /// the record is delayed, never dropped. Must be called within a Tokio runtime.
    pub fn submit(&self, record: InvocationRecord) {
        match self.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    if tx.send(msg).await.is_err() {
                        tracing::error!("record writer has stopped; invocation record lost");
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("record writer has stopped; invocation record lost");
            }
        }
    }

    /// Queues a record; waits only if the writer is far behind.
    pub async fn send(&self, record: InvocationRecord) {
        if self.tx.send(Msg::Record(Box::new(record))).await.is_err() {
            tracing::error!("record writer has stopped; invocation record lost");
        }
    }
}

impl RecordWriter {
    /// Writes every record sent before this call, then stops the writer thread. Blocking: run
    /// it off the async threads.
    pub fn finish(self) {
        let _ = self.tx.blocking_send(Msg::Finish);
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
        // The sink is still alive: finishing does not wait for every handle to drop.
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .unwrap();
        assert_eq!(store.invocations("f", 10_000).unwrap().len(), 2000);
        // After finish, records are refused, not half-written.
        sink.send(crate::conformance::sample_record("late")).await;
        assert!(store.invocation("late").unwrap().is_none());
    }
}
