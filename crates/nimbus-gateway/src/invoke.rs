//! The data plane: HTTP routes to HTTP functions, and direct invocation of event functions.
//! Each invocation gets an id (returned as `x-nimbus-invocation-id`) and a record, sent to the
//! group-committing record sink when the guest finishes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use nimbus_core::model::ErrorType;
use nimbus_core::model::{Outcome, billed_ms};
use nimbus_core::route::RouteMatch;
use nimbus_core::trace::{Phase, TraceParent, phase};
use nimbus_core::{FunctionKind, InvocationRecord, Trigger};
use nimbus_process::Failure;
use nimbus_wasm::{Completion, Event, InvokeError};

use crate::error::ApiError;
use crate::platform::{Deployed, Platform, now_ms};

/// Request header carrying the W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Response header carrying the invocation id.
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";
/// Response header naming the error type of a failed invocation.
pub const ERROR_TYPE_HEADER: &str = "x-nimbus-error-type";
/// Request headers carrying captured route parameters to HTTP functions.
pub const PARAM_HEADER_PREFIX: &str = "x-nimbus-param-";

/// How an invocation ended, whatever ran it.
pub(crate) struct Finished {
    pub duration: Duration,
    pub max_memory_bytes: u64,
    pub error: Option<FnError>,
    pub logs: String,
}

/// A failed invocation: the typed error, a message, and the error document callers get
/// (`{"errorMessage", "errorType", ...}`, as Lambda reports it).
#[derive(Debug, Clone)]
pub(crate) struct FnError {
    pub kind: ErrorType,
    pub message: String,
    pub doc: Bytes,
}

impl FnError {
    fn new(kind: ErrorType, error_type: &str, message: String) -> Self {
        let doc = nimbus_aws::lambda::function_error(error_type, &message).to_string();
        Self {
            kind,
            message,
            doc: doc.into(),
        }
    }

    /// A process function's failure, in Lambda's words.
    pub(crate) fn from_failure(f: Failure, timeout_ms: u64) -> Self {
        let message_of = |body: &Bytes, fallback: &str| {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("errorMessage")?.as_str().map(str::to_string))
                .unwrap_or_else(|| fallback.to_string())
        };
        match f {
            Failure::Handled { error_type, body } => Self {
                kind: ErrorType::Handled,
                message: message_of(&body, &error_type),
                doc: body,
            },
            Failure::Init { error_type, body } => Self {
                kind: ErrorType::Init,
                message: message_of(&body, &error_type),
                doc: body,
            },
            Failure::Timeout => Self::new(
                ErrorType::Timeout,
                "Sandbox.Timedout",
                nimbus_aws::lambda::timeout_message(timeout_ms),
            ),
            Failure::OutOfMemory => Self::new(
                ErrorType::RuntimeOutOfMemory,
                "Runtime.OutOfMemory",
                "Runtime exited with error: signal: killed (the memory limit was reached)".into(),
            ),
            Failure::Exit(how) => Self::new(
                ErrorType::RuntimeExit,
                "Runtime.ExitError",
                format!("Runtime exited with error: {how}"),
            ),
            Failure::Throttled(m) => Self::new(ErrorType::Throttled, "TooManyRequestsException", m),
            Failure::Sandbox(m) => Self::new(ErrorType::Init, "Sandbox.Error", m),
        }
    }
}

impl From<InvokeError> for FnError {
    fn from(e: InvokeError) -> Self {
        Self::new(e.kind, e.kind.as_str(), e.message)
    }
}

impl From<Completion> for Finished {
    fn from(c: Completion) -> Self {
        Self {
            duration: c.duration,
            max_memory_bytes: c.max_memory_bytes,
            error: c.error.map(FnError::from),
            logs: c.logs,
        }
    }
}

/// Waits for the invocation's concurrency slots: its wasm function's `max_concurrency` (process
/// functions have theirs in the sandbox pool), then the tenant-wide limit, up to the node's
/// throttle wait (capped at the function's timeout). `Function.Throttled` when one stays full.
/// The invocation holds the returned permits while it runs.
pub(crate) async fn take_slots(
    p: &Platform,
    d: &Deployed,
) -> Result<Vec<tokio::sync::OwnedSemaphorePermit>, FnError> {
    let wait = p.config.throttle_wait.min(d.limits.timeout);
    let deadline = tokio::time::Instant::now() + wait;
    let f = &d.active.version.function;
    let limits = [
        (d.slots.as_ref(), "it is at its max_concurrency"),
        (
            p.tenant_slots.as_ref(),
            "the tenant is at its concurrency limit",
        ),
    ];
    let mut held = Vec::new();
    for (slots, why) in limits {
        let Some(slots) = slots else { continue };
        match tokio::time::timeout_at(deadline, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => held.push(permit),
            _ => {
                p.metrics.throttled(f);
                return Err(FnError::new(
                    ErrorType::Throttled,
                    "TooManyRequestsException",
                    format!(
                        "`{f}` was not run: {why} and no slot freed up within {} ms; retry later",
                        wait.as_millis()
                    ),
                ));
            }
        }
    }
    Ok(held)
}

/// The W3C trace context a request carries, if it is a valid one.
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    TraceParent::parse(headers.get(TRACEPARENT_HEADER)?.to_str().ok()?)
}

/// A new invocation id (UUIDv7: unique and time-ordered).
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Everything known when an invocation starts; completed into a record when it ends.
pub(crate) struct Pending {
    pub id: String,
    function: String,
    version: String,
    memory_mb: u32,
    trigger: Trigger,
    start_ms: i64,
    init: Option<Duration>,
}

impl Pending {
    pub(crate) fn new(d: &Deployed, trigger: Trigger, init: Option<Duration>) -> Self {
        Self::with_id(new_id(), d, trigger, init)
    }

    pub(crate) fn with_id(
        id: String,
        d: &Deployed,
        trigger: Trigger,
        init: Option<Duration>,
    ) -> Self {
        let v = &d.active.version;
        Self {
            id,
            function: v.function.clone(),
            version: v.id.clone(),
            memory_mb: v.config.memory_mb,
            trigger,
            start_ms: now_ms(),
            init,
        }
    }

    /// The record of the finished invocation, its logs framed Lambda-style.
    pub(crate) fn finish(self, f: Finished) -> InvocationRecord {
        let init_us = self.init.map_or(0, |d| d.as_micros() as u64);
        let duration_us = (f.duration.as_micros() as u64).max(1);
        let mut record = InvocationRecord {
            id: self.id,
            function: self.function,
            version: self.version,
            trigger: self.trigger,
            start_ms: self.start_ms,
            duration_us,
            billed_ms: billed_ms(duration_us),
            memory_mb: self.memory_mb,
            max_memory_bytes: f.max_memory_bytes,
            cold_start: self.init.is_some(),
            init_us,
            outcome: if f.error.is_some() {
                Outcome::Error
            } else {
                Outcome::Success
            },
            error_type: f.error.as_ref().map(|e| e.kind),
            error_message: f.error.map(|e| e.message),
            logs: f.logs,
        };
        record.frame_lambda_logs();
        record
    }
}

/// A finished event-style invocation.
pub(crate) struct Invoked {
    pub id: String,
    pub result: Result<Bytes, FnError>,
    /// The invocation's framed log (START ... REPORT).
    pub logs: String,
}

/// Invokes an event function (wasm event component or process function) with `payload` and
/// records it. `headers` may carry CloudEvents attributes for wasm event functions and the
/// W3C `traceparent`; `since` is when the invocation began waiting (its trace starts there).
pub(crate) async fn invoke_payload(
    p: &Platform,
    d: &Arc<Deployed>,
    id: String,
    trigger: Trigger,
    payload: Bytes,
    headers: &HeaderMap,
    since: Instant,
) -> Result<Invoked, ApiError> {
    p.quota.admit(p).await?;
    let trace = p.config.telemetry.begin(
        &d.active.version.function,
        &trigger,
        traceparent(headers),
        since,
    );
    let slots = take_slots(p, d).await;
    let mut phases = vec![Phase::since(phase::QUEUE_WAIT, since)];
    let _slots = match slots {
        Ok(slots) => slots,
        Err(e) => {
            return Ok(Invoked {
                id,
                result: Err(e),
                logs: String::new(),
            });
        }
    };
    let _running = p.metrics.running(&d.active.version.function);
    if d.is_process() {
        let pool = p.ensure_pool(d).await?;
        let mut pending = Pending::with_id(id.clone(), d, trigger, None);
        // The caller's X-Ray header, or this invocation's span in X-Ray's spelling: what
        // Lambda runtimes expose as `_X_AMZN_TRACE_ID`.
        let trace_id = headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                let t = trace.traceparent()?;
                Some(nimbus_aws::lambda::xray_trace_header(
                    &t.trace_id,
                    &t.span_id,
                    t.sampled,
                ))
            });
        let context = headers
            .get("x-amz-client-context")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let outcome = pool.invoke(id.clone(), payload, trace_id, context).await;
        pending.init = outcome.init;
        merge_phases(&mut phases, outcome.phases);
        let timeout_ms = d.active.version.config.timeout_ms;
        let result = outcome
            .result
            .map_err(|f| FnError::from_failure(f, timeout_ms));
        let record = pending.finish(Finished {
            duration: outcome.duration,
            max_memory_bytes: outcome.max_memory_bytes,
            error: result.as_ref().err().cloned(),
            logs: outcome.logs,
        });
        let logs = record.logs.clone();
        trace.finish(&record, &phases);
        p.metrics.observe(&record);
        p.records.submit(record);
        return Ok(Invoked { id, result, logs });
    }
    if d.active.version.kind != FunctionKind::Event {
        return Err(ApiError::bad_request(
            "NotAnEventFunction",
            format!(
                "`{}` is an HTTP function; call it through its routes: {}",
                d.active.version.function,
                d.active
                    .routes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let _instance = crate::instances::enter(d);
    let loading = Instant::now();
    let (loaded, init) = p.ensure_loaded(d).await?;
    if init.is_some() {
        phases.push(Phase::since(phase::LOAD, loading));
    }
    let pending = Pending::with_id(id.clone(), d, trigger, init);
    let event = event_from_headers(&d.active.version.function, &id, headers, payload);
    let (result, mut completion) = p.runtime.invoke_event(&loaded, &d.limits, event).await;
    phases.append(&mut completion.phases);
    let record = pending.finish(completion.into());
    let logs = record.logs.clone();
    trace.finish(&record, &phases);
    p.metrics.observe(&record);
    p.records.submit(record);
    Ok(Invoked {
        id,
        result: result.map(Bytes::from).map_err(FnError::from),
        logs,
    })
}

/// Appends a runtime's phases to the gateway's: a runtime that waited for a slot of its own
/// extends the gateway's `queue_wait` rather than adding a second one.
fn merge_phases(phases: &mut Vec<Phase>, runtime: Vec<Phase>) {
    let mut runtime = runtime.into_iter().peekable();
    if let (Some(ours), Some(theirs)) = (
        phases.last_mut(),
        runtime.next_if(|p| p.name == phase::QUEUE_WAIT),
    ) && ours.name == phase::QUEUE_WAIT
    {
        ours.duration = (theirs.start + theirs.duration).saturating_duration_since(ours.start);
    }
    phases.extend(runtime);
}

pub(crate) fn with_id(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(INVOCATION_ID_HEADER, v);
    }
    response
}

pub(crate) fn function_error(e: FnError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = ApiError::new(status, e.kind.as_str(), e.message).into_response();
    response
        .headers_mut()
        .insert(ERROR_TYPE_HEADER, HeaderValue::from_static(e.kind.as_str()));
    if e.kind == ErrorType::Throttled {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The fallback handler: everything that is not `/v1/...` is matched against app routes.
pub(crate) async fn serve_route(State(p): State<Arc<Platform>>, request: Request) -> Response {
    let snapshot = p.snapshot();
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let (d, route, params) = match snapshot.routes.at(&method, &path) {
        RouteMatch::Found {
            target,
            route,
            params,
        } => (target.clone(), route.to_string(), params),
        RouteMatch::MethodNotAllowed { allowed } => {
            let mut r = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "{method} is not allowed on {path}; allowed: {}",
                    allowed.join(", ")
                ),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            return r;
        }
        RouteMatch::NotFound => {
            return ApiError::not_found(format!("no route matches {method} {path}"))
                .into_response();
        }
    };
    drop(snapshot);
    let max = p.config.max_body_bytes;
    if content_length(request.headers()).is_some_and(|n| n > max as u64) {
        return body_too_large(max);
    }
    if d.is_process() {
        return crate::apigw::serve(&p, &d, route, params, request).await;
    }
    if let Err(e) = p.quota.admit(&p).await {
        return e.into_response();
    }
    let since = Instant::now();
    let trigger = Trigger::Http { route };
    let trace = p.config.telemetry.begin(
        &d.active.version.function,
        &trigger,
        traceparent(request.headers()),
        since,
    );
    let slot = match take_slots(&p, &d).await {
        Ok(slot) => slot,
        Err(e) => return function_error(e),
    };
    let mut phases = vec![Phase::since(phase::QUEUE_WAIT, since)];
    let instance = crate::instances::enter(&d);
    let loading = Instant::now();
    let (loaded, init) = match p.ensure_loaded(&d).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    if init.is_some() {
        phases.push(Phase::since(phase::LOAD, loading));
    }
    let pending = Pending::new(&d, trigger, init);
    let id = pending.id.clone();

    let (mut parts, body) = request.into_parts();
    let stale: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|k| {
            k.as_str().starts_with(PARAM_HEADER_PREFIX) || k.as_str() == INVOCATION_ID_HEADER
        })
        .cloned()
        .collect();
    for k in stale {
        parts.headers.remove(k);
    }
    for (name, value) in params {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(format!(
                "{PARAM_HEADER_PREFIX}{}",
                name.to_ascii_lowercase()
            )),
            HeaderValue::from_str(&value),
        ) {
            parts.headers.insert(k, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        parts.headers.insert(INVOCATION_ID_HEADER, v);
    }
    // The guest sees its own invocation's span as the parent of whatever it calls.
    if let Some(v) = trace
        .traceparent()
        .and_then(|t| HeaderValue::from_str(&t.to_string()).ok())
    {
        parts.headers.insert(TRACEPARENT_HEADER, v);
    }
    // Bodies without a Content-Length are cut at the limit while streaming.
    let body = http_body_util::Limited::new(body, max).map_err(move |e| {
        if e.is::<http_body_util::LengthLimitError>() {
            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max as u64))
        } else {
            wasmtime_wasi_http::Error::ConnectionTerminated
        }
    });
    let request = http::Request::from_parts(parts, body);
    let (sink, metrics) = (p.records.clone(), p.metrics.clone());
    let running = metrics.running(&d.active.version.function);
    let result = p
        .runtime
        .serve_http(&loaded, &d.limits, request, move |mut c| {
            drop((running, slot, instance));
            phases.append(&mut c.phases);
            let record = pending.finish(c.into());
            trace.finish(&record, &phases);
            metrics.observe(&record);
            sink.submit(record)
        })
        .await;
    let response = match result {
        Ok(r) => r.map(Body::new),
        Err(e) => function_error(e.into()),
    };
    with_id(response, &id)
}

pub(crate) fn body_too_large(max: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLarge",
        format!("request body is larger than the {max}-byte limit"),
    )
    .into_response()
}

fn event_from_headers(function: &str, id: &str, headers: &HeaderMap, data: Bytes) -> Event {
    let get = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let extensions = headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("ce-")?;
            if ["id", "type", "source", "subject", "time", "specversion"].contains(&name) {
                return None;
            }
            Some((name.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    Event {
        id: get("ce-id").unwrap_or_else(|| id.to_string()),
        source: get("ce-source").unwrap_or_else(|| format!("/v1/functions/{function}")),
        ty: get("ce-type").unwrap_or_else(|| "nimbus.invoke".to_string()),
        subject: get("ce-subject"),
        time: get("ce-time"),
        datacontenttype: get("content-type"),
        data,
        extensions,
    }
}

/// `POST /v1/functions/{name}/invoke`: synchronous invocation of an event function. The body is
/// the event data; CloudEvents binary-mode headers (`ce-type`, `ce-source`, ...) set attributes.
/// With `?mode=async` (or `x-nimbus-invocation-type: async`) the event is queued durably and
/// the answer is 202 with the invocation id.
pub(crate) async fn invoke(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    data: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let data = match data {
        Ok(d) => d,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return body_too_large(p.config.max_body_bytes);
        }
        Err(r) => return ApiError::bad_request("BadRequest", r.body_text()).into_response(),
    };
    if crate::events::wants_async(&headers, query.as_deref()) {
        return crate::events::invoke_async_route(&p, &name, &headers, data).await;
    }
    let Some(d) = p.snapshot().functions.get(&name).cloned() else {
        return ApiError::not_found(format!("no function named `{name}`")).into_response();
    };
    let invoked = match invoke_payload(
        &p,
        &d,
        new_id(),
        Trigger::Invoke,
        data,
        &headers,
        Instant::now(),
    )
    .await
    {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let response = match invoked.result {
        Ok(bytes) => {
            let ctype = if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
                "application/json"
            } else {
                "application/octet-stream"
            };
            ([(header::CONTENT_TYPE, ctype)], bytes).into_response()
        }
        Err(e) => function_error(e),
    };
    with_id(response, &invoked.id)
}
