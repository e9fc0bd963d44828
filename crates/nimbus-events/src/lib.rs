//! Nimbus's event backbone. Everything accepted — an async invocation, a queue message, a
//! published event, a schedule tick, an ingested CloudEvent — is appended to the durable
//! [`nimbus_log::MessageLog`] before it is acknowledged; consumers lease it, act, and settle it.
//! Delivery is at-least-once everywhere; `docs/ARCHITECTURE.md` lists where duplicates occur.
//!
//! # Log queues
//! - `q:<queue>`: a user queue (API send/receive, queue triggers, subscriptions, destinations).
//! - `fn:<function>`: asynchronous invocations of a function: API/Lambda `Event` calls, topic
//!   subscriptions, schedule ticks, CloudEvents routes and destinations. The message id is the
//!   invocation id; settled async invocations leave an outcome (the invocation ledger).
//! - `wh:<topic>/<subscription>`: webhook deliveries.
//!
//! # Parts
//! - [`Engine`]: accepts events (fan-out and filtering happen at acceptance, in the same commit)
//!   and runs the consumers: one per function (async invocations, with retries, backoff, event
//!   age, destinations and dead-letter queue), one per queue trigger (batches, batching window,
//!   partial batch failure), one per webhook subscription (signed, retried), and the scheduler.
//! - [`Topology`]: the resolved resources (functions, queues, topics with parsed filters,
//!   schedules, triggers, CloudEvents routes), swapped whole on every change.
//! - [`policy`]: pure decisions (backoff, retry verdicts, schedule ticks).
//! - [`cloudevent`]: CloudEvents 1.0 HTTP ingest (binary, structured, batch) and conversions.
//! - [`webhook`]: subscription secrets and signatures.
//! - [`Invoker`]: how the engine runs functions; the gateway implements it.

pub mod cloudevent;
mod engine;
pub mod policy;
mod topology;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use nimbus_core::{EventAttributes, Trigger};

pub use engine::{Engine, EngineConfig, EventError, Outgoing, QueueInfo, Received};
pub use topology::{FunctionTarget, Topology};

/// One function call the engine asks for.
#[derive(Debug, Clone)]
pub struct Call {
    /// The function.
    pub function: String,
    /// The version or alias an async invocation asked for (`None`: `$LATEST`).
    pub qualifier: Option<String>,
    /// Record id of this attempt.
    pub record_id: String,
    /// What started it.
    pub trigger: Trigger,
    /// The event.
    pub payload: Bytes,
    /// The event's CloudEvents context, for functions that take CloudEvents (wasm event
    /// functions); `None` for functions that take the payload as their whole event.
    pub attributes: Option<EventAttributes>,
    /// The W3C `traceparent` the event was accepted under: the invocation's trace continues it.
    pub traceparent: Option<String>,
    /// When the event was accepted (unix ms), on its first delivery: the invocation's trace
    /// shows the time it waited in the log.
    pub queued_since_ms: Option<i64>,
}

/// A failed call.
#[derive(Debug, Clone)]
pub struct CallFailure {
    /// Error type (`Function.Error`, `Sandbox.Timedout`, ...).
    pub error_type: String,
    /// Message.
    pub message: String,
    /// The error document (`{"errorMessage", "errorType"}`).
    pub doc: Bytes,
}

/// A boxed future of a call's result.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Bytes, CallFailure>> + Send + 'static>>;

/// What happened to a delivery, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryEvent {
    /// A failed async invocation will be tried again.
    Retried,
    /// An async invocation failed for good (destination/DLQ/ledger as configured).
    GaveUp,
    /// A failed async invocation went to its dead-letter queue.
    DeadLettered,
    /// A queue message went to its dead-letter queue after `max_receive_count` deliveries.
    QueueDeadLettered,
    /// A webhook delivery was refused or failed (it is retried unless given up).
    WebhookFailed,
}

/// Receives delivery events (the gateway counts them for `/metrics`).
pub trait DeliveryObserver: Send + Sync + 'static {
    /// `target` is the function, queue or `topic/subscription` concerned.
    fn observe(&self, event: DeliveryEvent, target: &str);
}

/// Runs functions for the engine.
pub trait Invoker: Send + Sync + 'static {
    /// Invokes `call.function` with `call.payload` and records the invocation.
    fn call(&self, call: Call) -> CallFuture;
}
