//! Nimbus telemetry: OpenTelemetry traces of invocations, exported over OTLP/HTTP.
//!
//! One trace per invocation. Its root span (`invoke <function>`) carries the FaaS semantic
//! conventions (`faas.name`, `faas.invocation_id`, `faas.coldstart`, `faas.trigger`, ...), and
//! its children are the invocation's [`Phase`]s as the runtimes measured them: `queue_wait`,
//! `placement`, `load`, `instantiate` or `sandbox_start` and `init`, and `run`. A cold start is
//! therefore broken down in the trace itself.
//!
//! The root span continues the caller's W3C trace context when there is one (an HTTP
//! `traceparent` header, a CloudEvent's `traceparent` extension, or the context an event
//! was accepted under), and [`InvocationTrace::traceparent`] is the context to hand on.
//!
//! [`Telemetry::disabled`] costs nothing per invocation: no span is built and no id is drawn.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use nimbus_core::trace::{Phase, TraceParent};
use nimbus_core::{InvocationRecord, Outcome, Trigger};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter};

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter refused its configuration (a bad endpoint, say).
    #[error("cannot export traces to {endpoint}: {message}")]
    Exporter {
        /// The endpoint given.
        endpoint: String,
        /// Why.
        message: String,
    },
}

/// The node's tracer, or nothing. Cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Telemetry {
    /// No tracing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Exports spans over OTLP/HTTP (protobuf) to `endpoint`, the collector's base URL
    /// (`http://host:4318`; `/v1/traces` is added unless it is already there). Spans are
    /// batched; the standard `OTEL_BSP_*` variables tune the batching.
    pub fn otlp(endpoint: &str) -> Result<Self, TelemetryError> {
        let base = endpoint.trim_end_matches('/');
        let url = if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self::with_exporter(exporter))
    }

    /// Exports spans through `exporter` (batched).
    pub fn with_exporter(exporter: impl SpanExporter + 'static) -> Self {
        let provider = SdkTracerProvider::builder()
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("nimbus")
                    .build(),
            )
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("nimbus");
        Self {
            inner: Some(Arc::new(Inner { provider, tracer })),
        }
    }

    /// Whether spans are exported.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Begins the trace of an invocation of `function` started by `trigger`, which has been
    /// waiting `since` (now, or when its event was accepted), under `parent` when the caller
    /// sent a trace context.
    pub fn begin(
        &self,
        function: &str,
        trigger: &Trigger,
        parent: Option<TraceParent>,
        since: Instant,
    ) -> InvocationTrace {
        let Some(inner) = &self.inner else {
            return InvocationTrace { live: None };
        };
        let parent_cx = match parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                SpanId::from_bytes(p.span_id),
                if p.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let anchor = (Instant::now(), SystemTime::now());
        let start = wall_clock(anchor, since);
        let root = inner
            .tracer
            .span_builder(format!("invoke {function}"))
            .with_kind(span_kind(trigger))
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("faas.name", function.to_string()),
                KeyValue::new("faas.trigger", faas_trigger(trigger)),
                KeyValue::new("nimbus.trigger", trigger.kind()),
            ])
            .start_with_context(&inner.tracer, &parent_cx);
        InvocationTrace {
            live: Some(Live {
                tracer: inner.tracer.clone(),
                cx: parent_cx.with_span(root),
                anchor,
            }),
        }
    }

    /// Exports what is still buffered and stops the exporter. Blocks; call at shutdown.
    pub fn shutdown(&self) {
        if let Some(inner) = &self.inner {
            let _ = inner.provider.shutdown();
        }
    }
}

/// The trace of one invocation in progress. Dropping it without [`InvocationTrace::finish`]
/// ends the root span where it is.
pub struct InvocationTrace {
    live: Option<Live>,
}

struct Live {
    tracer: SdkTracer,
    /// The parent context with the root span in it.
    cx: Context,
    /// One instant and the wall clock at that instant: phases are measured on the monotonic
    /// clock and placed on the wall clock from here.
    anchor: (Instant, SystemTime),
}

impl InvocationTrace {
    /// The context to propagate: the root span of this invocation.
    pub fn traceparent(&self) -> Option<TraceParent> {
        let live = self.live.as_ref()?;
        let span = live.cx.span();
        let sc = span.span_context();
        Some(TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled: sc.is_sampled(),
        })
    }

    /// Ends the trace: one child span per phase, then the root with the record's outcome.
    /// The root spans from its start (or the first phase, if earlier) to the last phase's end.
    pub fn finish(self, record: &InvocationRecord, phases: &[Phase]) {
        let Some(live) = self.live else { return };
        let at = |i: Instant| wall_clock(live.anchor, i);
        let mut end = SystemTime::now();
        for p in phases {
            let (start, stop) = (at(p.start), at(p.start + p.duration));
            end = end.max(stop);
            let mut span = live
                .tracer
                .span_builder(Cow::Borrowed(p.name))
                .with_kind(SpanKind::Internal)
                .with_start_time(start)
                .start_with_context(&live.tracer, &live.cx);
            span.end_with_timestamp(stop);
        }
        let span = live.cx.span();
        span.set_attributes([
            KeyValue::new("faas.invocation_id", record.id.clone()),
            KeyValue::new("faas.version", record.version.clone()),
            KeyValue::new("faas.coldstart", record.cold_start),
            KeyValue::new("faas.max_memory", i64::from(record.memory_mb) * 1024 * 1024),
            KeyValue::new("nimbus.billed_ms", record.billed_ms as i64),
            KeyValue::new("nimbus.max_memory_used", record.max_memory_bytes as i64),
        ]);
        if record.outcome == Outcome::Error {
            if let Some(kind) = record.error_type {
                span.set_attribute(KeyValue::new("error.type", kind.as_str()));
            }
            span.set_status(Status::error(
                record.error_message.clone().unwrap_or_default(),
            ));
        } else {
            span.set_status(Status::Ok);
        }
        span.end_with_timestamp(end);
    }
}

/// Where `i` falls on the wall clock, given one instant known on both clocks.
fn wall_clock((instant, wall): (Instant, SystemTime), i: Instant) -> SystemTime {
    if i >= instant {
        wall + (i - instant)
    } else {
        wall.checked_sub(instant - i).unwrap_or(wall)
    }
}

/// The root span's kind: the server side of a request, or the consumer of an event.
fn span_kind(trigger: &Trigger) -> SpanKind {
    match trigger {
        Trigger::Http { .. } | Trigger::Invoke => SpanKind::Server,
        _ => SpanKind::Consumer,
    }
}

/// `faas.trigger` of the OpenTelemetry FaaS conventions.
fn faas_trigger(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Http { .. } | Trigger::Invoke | Trigger::Authorizer { .. } => "http",
        Trigger::Schedule { .. } => "timer",
        Trigger::Async { .. }
        | Trigger::Queue { .. }
        | Trigger::Topic { .. }
        | Trigger::Event { .. } => "pubsub",
        Trigger::Durable { .. } => "other",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nimbus_core::trace::phase;
    use opentelemetry_sdk::trace::InMemorySpanExporter;

    use super::*;

    fn record(cold: bool, outcome: Outcome) -> InvocationRecord {
        InvocationRecord {
            id: "inv-1".into(),
            function: "hello".into(),
            version: "v1".into(),
            trigger: Trigger::Invoke,
            start_ms: 0,
            duration_us: 1500,
            billed_ms: 2,
            memory_mb: 128,
            max_memory_bytes: 1 << 20,
            cold_start: cold,
            init_us: 0,
            outcome,
            error_type: None,
            error_message: None,
            logs: String::new(),
        }
    }

    fn flushed(
        t: &Telemetry,
        exporter: &InMemorySpanExporter,
    ) -> Vec<opentelemetry_sdk::trace::SpanData> {
        if let Some(inner) = &t.inner {
            inner.provider.force_flush().expect("flush");
        }
        exporter.get_finished_spans().expect("spans")
    }

    #[test]
    fn a_cold_start_is_one_trace_under_the_callers_context() {
        let exporter = InMemorySpanExporter::default();
        let t = Telemetry::with_exporter(exporter.clone());
        let caller = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        let t0 = Instant::now();
        let trace = t.begin("hello", &Trigger::Invoke, Some(caller), t0);
        let own = trace.traceparent().expect("enabled");
        assert_eq!(own.trace_id, caller.trace_id);
        assert_ne!(own.span_id, caller.span_id);

        let ms = Duration::from_millis;
        let phases = [
            Phase {
                name: phase::QUEUE_WAIT,
                start: t0,
                duration: ms(1),
            },
            Phase {
                name: phase::LOAD,
                start: t0 + ms(1),
                duration: ms(20),
            },
            Phase {
                name: phase::INSTANTIATE,
                start: t0 + ms(21),
                duration: ms(2),
            },
            Phase {
                name: phase::RUN,
                start: t0 + ms(23),
                duration: ms(5),
            },
        ];
        trace.finish(&record(true, Outcome::Success), &phases);

        let spans = flushed(&t, &exporter);
        assert_eq!(spans.len(), 5);
        let root = spans
            .iter()
            .find(|s| s.name == "invoke hello")
            .expect("root");
        assert_eq!(root.parent_span_id.to_bytes(), caller.span_id);
        assert_eq!(root.span_context.span_id().to_bytes(), own.span_id);
        assert_eq!(root.span_kind, SpanKind::Server);
        let attr = |k: &str| {
            root.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(attr("faas.coldstart"), Some(true.into()));
        assert_eq!(attr("faas.invocation_id"), Some("inv-1".into()));
        let names: Vec<&str> = spans
            .iter()
            .filter(|s| s.name != "invoke hello")
            .map(|s| s.name.as_ref())
            .collect();
        assert_eq!(names, ["queue_wait", "load", "instantiate", "run"]);
        for child in spans.iter().filter(|s| s.name != "invoke hello") {
            assert_eq!(child.parent_span_id, root.span_context.span_id());
            assert_eq!(child.span_context.trace_id(), root.span_context.trace_id());
            assert!(child.start_time >= root.start_time && child.end_time <= root.end_time);
        }
        let load = spans.iter().find(|s| s.name == "load").expect("load");
        let took = load
            .end_time
            .duration_since(load.start_time)
            .expect("ordered");
        assert_eq!(took, ms(20));
    }

    #[test]
    fn without_a_caller_a_new_trace_starts_and_errors_mark_the_root() {
        let exporter = InMemorySpanExporter::default();
        let t = Telemetry::with_exporter(exporter.clone());
        let trace = t.begin(
            "hello",
            &Trigger::Queue { queue: "q".into() },
            None,
            Instant::now(),
        );
        let mut r = record(false, Outcome::Error);
        r.error_type = Some(nimbus_core::ErrorType::Handled);
        r.error_message = Some("boom".into());
        trace.finish(&r, &[]);
        let spans = flushed(&t, &exporter);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
        assert_eq!(spans[0].span_kind, SpanKind::Consumer);
        assert_eq!(spans[0].status, Status::error("boom"));
    }

    #[test]
    fn disabled_telemetry_draws_nothing() {
        let t = Telemetry::disabled();
        let trace = t.begin("hello", &Trigger::Invoke, None, Instant::now());
        assert!(trace.traceparent().is_none());
        trace.finish(&record(false, Outcome::Success), &[]);
    }
}
