//! The node's metrics, in the Prometheus text format (version 0.0.4).
//!
//! Metric names are stable; `docs/ARCHITECTURE.md` lists them. Invocation metrics are counted
//! from each invocation's record as it is finished (every runtime and trigger goes through
//! that one place, finishing); throttles at admission; delivery metrics come from the
//! event engine's observer; queue depth and instances are read when rendered.

use nimbus_core::api::InstanceCounts;
use nimbus_core::{ErrorType, InvocationRecord};
use nimbus_events::{DeliveryEvent, DeliveryObserver, QueueInfo};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets for invocation and init durations, seconds (0.5 ms .. 15 min).
const DURATION_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 900.0,
];

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    cold_starts: IntCounterVec,
    init_duration: HistogramVec,
    throttles: IntCounterVec,
    billed_ms: IntCounterVec,
    concurrent: IntGaugeVec,
    deliveries: IntCounterVec,
    queue_messages: IntGaugeVec,
    queue_in_flight: IntGaugeVec,
    queue_oldest: IntGaugeVec,
    instances: IntGaugeVec,
    durable_started: IntCounterVec,
    durable_ended: IntCounterVec,
    durable_replays: IntCounterVec,
    durable_operations: IntCounterVec,
    durable_waited: IntCounterVec,
}

type Made<T> = Result<T, prometheus::Error>;

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Made<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Made<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(r: &Registry, name: &str, help: &str) -> Made<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()),
        &["function"],
    )?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        Ok(Self {
            invocations: counter(
                &r,
                "nimbus_invocations_total",
                "Invocations finished, by function, outcome (success|error) and trigger",
                &["function", "outcome", "trigger"],
            )?,
            errors: counter(
                &r,
                "nimbus_invocation_errors_total",
                "Failed invocations by error type",
                &["function", "error_type"],
            )?,
            duration: histogram(
                &r,
                "nimbus_invocation_duration_seconds",
                "Invocation duration (the record's duration)",
            )?,
            cold_starts: counter(
                &r,
                "nimbus_cold_starts_total",
                "Invocations that started an instance (component load or sandbox start)",
                &["function"],
            )?,
            init_duration: histogram(
                &r,
                "nimbus_init_duration_seconds",
                "Init time of cold starts",
            )?,
            throttles: counter(
                &r,
                "nimbus_throttles_total",
                "Invocations refused because a concurrency limit (the function's or the tenant's) stayed full",
                &["function"],
            )?,
            billed_ms: counter(
                &r,
                "nimbus_billed_milliseconds_total",
                "Billed milliseconds (rounded up per invocation)",
                &["function"],
            )?,
            concurrent: gauge(
                &r,
                "nimbus_concurrent_executions",
                "Invocations running now",
                &["function"],
            )?,
            deliveries: counter(
                &r,
                "nimbus_delivery_events_total",
                "Event deliveries: retried, gave_up, dead_lettered (async), queue_dead_lettered, webhook_failed",
                &["event", "target"],
            )?,
            queue_messages: gauge(
                &r,
                "nimbus_queue_messages",
                "Messages in a queue (visible, delayed or in flight); DLQ sizes included",
                &["queue"],
            )?,
            queue_in_flight: gauge(
                &r,
                "nimbus_queue_in_flight_messages",
                "Messages received and not yet deleted",
                &["queue"],
            )?,
            queue_oldest: gauge(
                &r,
                "nimbus_queue_oldest_message_age_seconds",
                "Age of the oldest message in a queue",
                &["queue"],
            )?,
            instances: gauge(
                &r,
                "nimbus_instances",
                "Function instances (process sandboxes, loaded wasm components) by state (idle|busy)",
                &["function", "state"],
            )?,
            durable_started: counter(
                &r,
                "nimbus_durable_executions_started_total",
                "Durable executions started, by function",
                &["function"],
            )?,
            durable_ended: counter(
                &r,
                "nimbus_durable_executions_total",
                "Durable executions ended, by function and status (SUCCEEDED|FAILED|TIMED_OUT|STOPPED)",
                &["function", "status"],
            )?,
            durable_replays: counter(
                &r,
                "nimbus_durable_invocations_total",
                "Invocations of durable handlers (each replays the journal so far), by function",
                &["function"],
            )?,
            durable_operations: counter(
                &r,
                "nimbus_durable_operations_total",
                "Durable operations ended (steps, waits, callbacks, contexts, chained invokes), by function, type and status",
                &["function", "type", "status"],
            )?,
            durable_waited: counter(
                &r,
                "nimbus_durable_wait_seconds_total",
                "Seconds durable executions spent in waits that ended, by function",
                &["function"],
            )?,
            registry: r,
        })
    }

    /// A durable execution of `function` started.
    pub(crate) fn durable_started(&self, function: &str) {
        self.durable_started.with_label_values(&[function]).inc();
    }

    /// A durable execution of `function` ended with `status`.
    pub(crate) fn durable_ended(&self, function: &str, status: &str) {
        self.durable_ended
            .with_label_values(&[function, status])
            .inc();
    }

    /// A durable handler of `function` was invoked.
    pub(crate) fn durable_invoked(&self, function: &str) {
        self.durable_replays.with_label_values(&[function]).inc();
    }

    /// An operation of `function`'s execution ended.
    pub(crate) fn durable_operation(&self, function: &str, kind: &str, status: &str) {
        self.durable_operations
            .with_label_values(&[function, kind, status])
            .inc();
    }

    /// A wait of `function`'s execution ended after `seconds`.
    pub(crate) fn durable_waited(&self, function: &str, seconds: u64) {
        self.durable_waited
            .with_label_values(&[function])
            .inc_by(seconds);
    }
}

/// Decrements the concurrency gauge when dropped.
pub(crate) struct Running {
    gauge: prometheus::IntGauge,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Metrics {
    /// Counts a finished invocation.
    pub(crate) fn observe(&self, r: &InvocationRecord) {
        let f = r.function.as_str();
        let outcome = match r.outcome {
            nimbus_core::Outcome::Success => "success",
            nimbus_core::Outcome::Error => "error",
        };
        self.invocations
            .with_label_values(&[f, outcome, r.trigger.kind()])
            .inc();
        if let Some(t) = r.error_type {
            self.errors.with_label_values(&[f, t.as_str()]).inc();
            if t == ErrorType::Throttled {
                self.throttles.with_label_values(&[f]).inc();
            }
        }
        self.duration
            .with_label_values(&[f])
            .observe(r.duration_us as f64 / 1e6);
        self.billed_ms.with_label_values(&[f]).inc_by(r.billed_ms);
        if r.cold_start {
            self.cold_starts.with_label_values(&[f]).inc();
            self.init_duration
                .with_label_values(&[f])
                .observe(r.init_us as f64 / 1e6);
        }
    }

    /// Counts an invocation refused at a concurrency limit (it leaves no record).
    pub(crate) fn throttled(&self, function: &str) {
        self.throttles.with_label_values(&[function]).inc();
    }

    /// Marks an invocation of `function` as running until the guard drops.
    pub(crate) fn running(&self, function: &str) -> Running {
        let gauge = self.concurrent.with_label_values(&[function]);
        gauge.inc();
        Running { gauge }
    }
}

impl DeliveryObserver for Metrics {
    fn observe(&self, event: DeliveryEvent, target: &str) {
        let name = match event {
            DeliveryEvent::Retried => "retried",
            DeliveryEvent::GaveUp => "gave_up",
            DeliveryEvent::DeadLettered => "dead_lettered",
            DeliveryEvent::QueueDeadLettered => "queue_dead_lettered",
            DeliveryEvent::WebhookFailed => "webhook_failed",
        };
        self.deliveries.with_label_values(&[name, target]).inc();
    }
}

impl Metrics {
    /// The text exposition of every metric, with queue depths and instance counts as given.
    pub(crate) fn render<'a>(
        &self,
        queues: &[QueueInfo],
        instances: impl Iterator<Item = (&'a str, InstanceCounts)>,
    ) -> Result<Vec<u8>, prometheus::Error> {
        self.queue_messages.reset();
        self.queue_in_flight.reset();
        self.queue_oldest.reset();
        for q in queues {
            let name = q.spec.name.as_str();
            self.queue_messages
                .with_label_values(&[name])
                .set(q.messages as i64);
            self.queue_in_flight
                .with_label_values(&[name])
                .set(q.in_flight as i64);
            self.queue_oldest
                .with_label_values(&[name])
                .set(q.oldest_age_ms / 1000);
        }
        self.instances.reset();
        for (name, s) in instances {
            self.instances
                .with_label_values(&[name, "idle"])
                .set(s.idle as i64);
            self.instances
                .with_label_values(&[name, "busy"])
                .set(s.busy as i64);
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}
