//! Finishing an invocation, once: its record (to the group-committing sink), its trace, its
//! metrics. Whatever ran it, every admitted invocation ends here exactly once — also when the
//! executor dropped it unfinished (then it is recorded as `Function.Cancelled`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_core::model::{Outcome, billed_ms};
use nimbus_core::trace::Phase;
use nimbus_core::{ErrorType, InvocationRecord, Trigger};
use nimbus_store::RecordSink;
use nimbus_telemetry::InvocationTrace;
use tokio::sync::OwnedSemaphorePermit;

use crate::metrics::{Metrics, Running};
use crate::request::FunctionError;

/// Where finished invocations go: the record sink and the metrics.
pub(crate) struct Finisher {
    pub records: RecordSink,
    pub metrics: Arc<Metrics>,
}

/// How an invocation ended, as its executor measured it.
#[derive(Debug, Clone)]
pub struct Completed {
    /// Execution time (excluding a cold start's init).
    pub duration: Duration,
    /// Peak memory, bytes.
    pub max_memory_bytes: u64,
    /// `None` on success.
    pub error: Option<FunctionError>,
    /// Captured output (unframed).
    pub logs: String,
    /// The cold start's init time, when this invocation started its instance.
    pub init: Option<Duration>,
    /// Where the time went after admission (`load`, `instantiate`, `placement`,
    /// `sandbox_start`, `init`, `run`).
    pub phases: Vec<Phase>,
}

impl Completed {
    /// An invocation that failed before its function ran (`phases` so far).
    pub fn failed(error: FunctionError, phases: Vec<Phase>) -> Self {
        Self {
            duration: Duration::ZERO,
            max_memory_bytes: 0,
            error: Some(error),
            logs: String::new(),
            init: None,
            phases,
        }
    }
}

/// What is known when an invocation is dispatched.
pub(crate) struct Pending {
    pub id: String,
    pub function: String,
    pub version: String,
    pub memory_mb: u32,
    pub trigger: Trigger,
    pub start_ms: i64,
}

impl Pending {
    fn record(self, c: &Completed) -> InvocationRecord {
        let init_us = c.init.map_or(0, |d| d.as_micros() as u64);
        let duration_us = (c.duration.as_micros() as u64).max(1);
        let mut record = InvocationRecord {
            id: self.id,
            function: self.function,
            version: self.version,
            trigger: self.trigger,
            start_ms: self.start_ms,
            duration_us,
            billed_ms: billed_ms(duration_us),
            memory_mb: self.memory_mb,
            max_memory_bytes: c.max_memory_bytes,
            cold_start: c.init.is_some(),
            init_us,
            outcome: if c.error.is_some() {
                Outcome::Error
            } else {
                Outcome::Success
            },
            error_type: c.error.as_ref().map(|e| e.kind),
            error_message: c.error.as_ref().map(|e| e.message.clone()),
            logs: c.logs.clone(),
        };
        record.frame_lambda_logs();
        record
    }
}

/// The end of one admitted invocation: hand it to [`Finish::complete`] exactly once. It holds
/// the invocation's concurrency slots and running gauge until then.
pub struct Finish {
    inner: Option<Inner>,
}

struct Inner {
    finisher: Arc<Finisher>,
    pending: Pending,
    trace: InvocationTrace,
    /// The invoker's phases (`queue_wait`); the executor's follow.
    phases: Vec<Phase>,
    dispatched: Instant,
    _slots: Vec<OwnedSemaphorePermit>,
    _running: Running,
}

impl Finish {
    pub(crate) fn new(
        finisher: Arc<Finisher>,
        pending: Pending,
        trace: InvocationTrace,
        phases: Vec<Phase>,
        slots: Vec<OwnedSemaphorePermit>,
    ) -> Self {
        let running = finisher.metrics.running(&pending.function);
        Self {
            inner: Some(Inner {
                finisher,
                pending,
                trace,
                phases,
                dispatched: Instant::now(),
                _slots: slots,
                _running: running,
            }),
        }
    }

    /// Records the invocation (record, trace, metrics) and frees its slots; returns its log,
    /// framed Lambda-style.
    pub fn complete(mut self, completed: Completed) -> String {
        match self.inner.take() {
            Some(inner) => inner.complete(completed),
            None => String::new(),
        }
    }
}

impl Inner {
    fn complete(mut self, completed: Completed) -> String {
        let record = self.pending.record(&completed);
        self.phases.extend(completed.phases);
        self.trace.finish(&record, &self.phases);
        self.finisher.metrics.observe(&record);
        let logs = record.logs.clone();
        self.finisher.records.submit(record);
        logs
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let elapsed = inner.dispatched.elapsed();
            inner.complete(Completed {
                duration: elapsed,
                ..Completed::failed(
                    FunctionError::new(
                        ErrorType::Cancelled,
                        ErrorType::Cancelled.as_str(),
                        "the invocation was stopped before it finished (its caller went away)",
                    ),
                    Vec::new(),
                )
            });
        }
    }
}
