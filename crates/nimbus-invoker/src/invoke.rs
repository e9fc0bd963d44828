//! Running an invocation: resolve → shape checks → admission → dispatch → finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::FunctionKind;
use nimbus_core::clock::now_ms;
use nimbus_core::events::MAX_MESSAGE_BYTES;
use nimbus_core::trace::{Phase, TraceParent, phase};

use crate::Invoker;
use crate::error::InvokeError;
use crate::executor::{Finish, Job};
use crate::finish::Pending;
use crate::live::Deployed;
use crate::request::{Body, Invocation, InvocationRequest, Payload};

/// An asynchronous invocation to accept: queued durably, run later by the event engine.
#[derive(Debug, Clone)]
pub struct AsyncRequest {
    /// The function.
    pub function: String,
    /// As in [`InvocationRequest::qualifier`].
    pub qualifier: Option<String>,
    /// The event.
    pub payload: Bytes,
    /// A repeat with the same key within the dedup window is not accepted again.
    pub idempotency_key: Option<String>,
    /// The caller's trace context, continued by the invocation's trace.
    pub trace: Option<TraceParent>,
}

/// When an invocation began waiting: now, or (an event from the log) when it was accepted.
fn waiting_since(queued_since_ms: Option<i64>) -> Instant {
    let waited = queued_since_ms.map_or(0, |at| (now_ms() - at).max(0) as u64);
    Instant::now()
        .checked_sub(Duration::from_millis(waited))
        .unwrap_or_else(Instant::now)
}

impl Invoker {
    /// The deployed function `name` under `qualifier`, and the version as Lambda reports it.
    fn resolve(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(Arc<Deployed>, String), InvokeError> {
        let d = self
            .live
            .load()
            .functions
            .get(name)
            .cloned()
            .ok_or_else(|| InvokeError::NotFound(name.to_string()))?;
        let version = &d.active.version;
        let executed = match qualifier {
            None | Some("$LATEST") => "$LATEST".to_string(),
            Some(q) if q.len() >= 8 && version.id.starts_with(q) => version.short_id().to_string(),
            Some(q) => {
                return Err(InvokeError::VersionNotFound {
                    function: name.to_string(),
                    qualifier: q.to_string(),
                    active: version.short_id().to_string(),
                });
            }
        };
        Ok((d, executed))
    }

    /// The version an invocation of `function` under `qualifier` would run, as Lambda reports
    /// it (a dry run).
    pub fn executed_version(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<String, InvokeError> {
        self.resolve(function, qualifier).map(|(_, v)| v)
    }

    /// Runs one invocation: admitted (quota, then concurrency slots), dispatched to the
    /// function's runtime, finished once (record, trace, metrics). A function that ran and
    /// failed is an `Ok` invocation whose output is the [`crate::FunctionError`].
    pub async fn invoke(&self, req: InvocationRequest) -> Result<Invocation, InvokeError> {
        let since = waiting_since(req.trace.queued_since_ms);
        let (d, executed_version) = self.resolve(&req.function, req.qualifier.as_deref())?;
        let InvocationRequest {
            id,
            trigger,
            mut payload,
            trace,
            client_context,
            ..
        } = req;
        let v = &d.active.version;
        let executor = self.executors.of(v.config.runtime);
        match &mut payload {
            Payload::Event { .. } if !d.takes_events() => {
                return Err(d.not_an_event_function());
            }
            Payload::Http(_) if v.kind == FunctionKind::Event && !v.config.runtime.is_process() => {
                return Err(InvokeError::NotAnHttpFunction(v.function.clone()));
            }
            Payload::Http(h) if executor.buffers_http_bodies() => {
                // Read before admission: a slow client never holds a slot.
                let body = std::mem::replace(&mut h.body, Body::Full(Bytes::new()));
                h.body = Body::Full(body.collect().await?);
            }
            _ => {}
        }
        let slots = self
            .admission
            .admit(
                &v.function,
                d.slots.as_ref(),
                Duration::from_millis(v.config.timeout_ms),
            )
            .await?;
        let span_trace = self
            .config
            .telemetry
            .begin(&v.function, &trigger, trace.parent, since);
        let span = span_trace.traceparent();
        let pending = Pending {
            id: id.clone(),
            function: v.function.clone(),
            version: v.id.clone(),
            memory_mb: v.config.memory_mb,
            trigger: trigger.clone(),
            start_ms: now_ms(),
        };
        let finish = Finish::new(
            self.finisher.clone(),
            pending,
            span_trace,
            vec![Phase::since(phase::QUEUE_WAIT, since)],
            slots,
        );
        let ran = d
            .instances
            .run(Job {
                id: id.clone(),
                trigger,
                payload,
                span,
                xray: trace.xray,
                client_context,
                finish,
            })
            .await;
        Ok(Invocation {
            id,
            executed_version,
            output: ran.output,
            logs: ran.logs,
        })
    }

    /// Accepts an asynchronous invocation: durable in the log before this returns its id.
    /// Refuses at acceptance what could only fail later (no such function, an HTTP function,
    /// too large, the quota used up).
    pub async fn accept_async(&self, req: AsyncRequest) -> Result<String, InvokeError> {
        let (d, _) = self.resolve(&req.function, req.qualifier.as_deref())?;
        if !d.takes_events() {
            return Err(d.not_an_event_function());
        }
        if req.payload.len() > MAX_MESSAGE_BYTES {
            return Err(InvokeError::PayloadTooLarge {
                limit: MAX_MESSAGE_BYTES as u64,
            });
        }
        self.admission.check_quota().await?;
        Ok(self
            .engine()?
            .invoke_async(
                d.name(),
                req.payload,
                req.idempotency_key,
                req.trace.map(|t| t.to_string()),
            )
            .await?)
    }
}
