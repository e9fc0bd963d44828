//! Nimbus's durable message log: the backbone every accepted event rests on (async invocations,
//! queue messages, published events, schedule ticks).
//!
//! - [`MessageLog`]: the trait. Messages are appended to named queues and are durable when
//!   `append` returns. Consumers lease them (`receive` with a visibility timeout), then delete
//!   them (`ack`) or let the lease lapse, after which they are delivered again: at-least-once.
//!   Each delivery counts (`receive_count`) so callers can dead-letter poison messages. A
//!   deduplication key makes appends idempotent within a window.
//! - [`SqliteLog`]: the embedded implementation: one SQLite file in WAL mode with
//!   `synchronous=FULL`, and group commit: concurrent appends share one transaction (one fsync).
//! - [`conformance`]: the behaviour any implementation must show (a NATS JetStream one later).
//!
//! Time is passed in (`now_ms`), so the semantics are testable without clocks.

pub mod conformance;
mod reserve;
mod sqlite;

pub use sqlite::{DEDUP_WINDOW_MS, SqliteLog};

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewMessage {
    /// Queue name.
    pub queue: String,
    /// Payload.
    pub body: Vec<u8>,
    /// Attributes (name, value), kept in order.
    pub attributes: Vec<(String, String)>,
    /// Not deliverable before this time, unix ms (0 = now).
    pub deliver_after_ms: i64,
    /// Appends with the same key in the same queue within the dedup window return the first
    /// message's id instead of adding a message.
    pub dedup_key: Option<String>,
}

/// A leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Message id (stable across deliveries).
    pub id: String,
    /// Proof of this lease; `ack` and `extend` need it. A new one per delivery.
    pub receipt: String,
    /// Payload.
    pub body: Vec<u8>,
    /// Attributes.
    pub attributes: Vec<(String, String)>,
    /// How many times it has been delivered, this time included.
    pub receive_count: u32,
    /// When it was appended, unix ms.
    pub appended_ms: i64,
}

/// Errors of a log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The receipt is not the current lease of a message in the queue (acked, expired and
    /// re-leased, or never issued).
    #[error("receipt is not a current lease in queue `{0}`")]
    StaleReceipt(String),
    /// The disk is (nearly) full: new messages are refused until space is freed; receiving
    /// and settling messages go on.
    #[error(
        "the disk holding the message log is full: new messages are refused until space is freed"
    )]
    Full,
    /// The backend failed.
    #[error("message log: {0}")]
    Backend(#[source] std::sync::Arc<dyn std::error::Error + Send + Sync>),
}

impl LogError {
    /// A backend failure, keeping `e` as the source (shared: one failed group commit fails
    /// every request in it).
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(std::sync::Arc::from(e.into()))
    }
}

/// One leased message to settle: deleted from its queue, optionally leaving an outcome that
/// [`MessageLog::lookup`] reports until it is expired (the invocation ledger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// The lease's receipt.
    pub receipt: String,
    /// What became of the message, kept for lookups.
    pub outcome: Option<Outcome>,
}

/// What became of a settled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A short status word (`succeeded`, `failed`, `dead-lettered`, ...).
    pub status: String,
    /// Caller-defined detail (e.g. a JSON document).
    pub detail: String,
}

/// Where a message is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageState {
    /// In its queue, deliverable from `visible_ms` (in the past: deliverable now).
    Waiting {
        /// Unix ms.
        visible_ms: i64,
    },
    /// Leased by a consumer until `until_ms`.
    Leased {
        /// Unix ms.
        until_ms: i64,
    },
    /// Settled with an outcome.
    Settled(Outcome),
}

/// What [`MessageLog::lookup`] knows about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Its queue.
    pub queue: String,
    /// Its state.
    pub state: MessageState,
    /// Deliveries so far.
    pub receive_count: u32,
    /// When it was appended, unix ms.
    pub appended_ms: i64,
    /// When it was settled, unix ms (0 while in its queue).
    pub settled_ms: i64,
}

/// Queue depth and age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages not yet acked (visible, delayed or leased).
    pub messages: u64,
    /// Of those, leased right now.
    pub in_flight: u64,
    /// Append time of the oldest message, unix ms (0 when empty).
    pub oldest_ms: i64,
}

/// A durable, leasing message log. Implementations must pass [`conformance::run_all`].
pub trait MessageLog: Send + Sync + 'static {
    /// Appends messages; all are durable when this returns. Returns their ids, in order.
    fn append(&self, messages: Vec<NewMessage>, now_ms: i64) -> Result<Vec<String>, LogError>;
    /// Leases up to `max` deliverable messages of `queue`, oldest first, for `lease_ms`.
    fn receive(
        &self,
        queue: &str,
        max: usize,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, LogError>;
    /// Settles leased messages (deletes them, recording outcomes where given), all in one
    /// commit. Returns, per item, whether its receipt was a current lease.
    fn settle(&self, queue: &str, items: Vec<Settle>, now_ms: i64) -> Result<Vec<bool>, LogError>;
    /// Deletes a leased message.
    fn ack(&self, queue: &str, receipt: &str) -> Result<(), LogError> {
        let settled = self.settle(
            queue,
            vec![Settle {
                receipt: receipt.to_string(),
                outcome: None,
            }],
            0,
        )?;
        if settled.first() == Some(&true) {
            Ok(())
        } else {
            Err(LogError::StaleReceipt(queue.to_string()))
        }
    }
    /// Where message `id` is: waiting, leased, or settled with an outcome (until expired).
    fn lookup(&self, id: &str, now_ms: i64) -> Result<Option<MessageInfo>, LogError>;
    /// Deletes every message of a queue; returns how many.
    fn purge(&self, queue: &str) -> Result<u64, LogError>;
    /// Makes every lease visible again. For a single node at start-up: no lease taken by an
    /// earlier run of the process can still be held. Returns how many were released.
    fn release_leases(&self, now_ms: i64) -> Result<u64, LogError>;
    /// Appends messages and sets the named cursor to `value` in the same commit: either both
    /// happen or neither (how a scheduler fires each tick at most once).
    fn append_with_cursor(
        &self,
        messages: Vec<NewMessage>,
        cursor: (&str, i64),
        now_ms: i64,
    ) -> Result<Vec<String>, LogError>;
    /// A cursor's value.
    fn cursor(&self, name: &str) -> Result<Option<i64>, LogError>;
    /// Forgets outcomes settled and dedup keys expired before `before_ms`.
    fn expire(&self, before_ms: i64) -> Result<(), LogError>;
    /// Sets a leased message's lease to end `lease_ms` from now (0 = release it now).
    fn extend(
        &self,
        queue: &str,
        receipt: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<(), LogError>;
    /// Depth and age of a queue at `now_ms`.
    fn stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats, LogError>;
    /// When the next message of `queue` can be received: `now_ms` if one can be now, the
    /// earliest end of a delay or a lease otherwise, `None` when the queue holds nothing. A
    /// consumer that found nothing sleeps until then (or until an append wakes it).
    fn next_visible(&self, queue: &str, now_ms: i64) -> Result<Option<i64>, LogError>;
}
