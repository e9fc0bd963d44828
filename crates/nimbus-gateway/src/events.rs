//! The event API (`/v1/queues`, `/v1/topics`, `/v1/schedules`, `/v1/events`, async invocation and
//! the invocation ledger) over the [`nimbus_events::Engine`], and the [`Invoker`] through which
//! the engine runs functions on this platform.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use nimbus_core::api::InvocationStatus;
use nimbus_core::events::{
    EventResources, MAX_MESSAGE_BYTES, ResourceKind, ScheduleSpec, check_references,
    resource_from_json,
};
use nimbus_core::model::Outcome as RecordOutcome;
use nimbus_core::{FunctionKind, InvocationRecord};
use nimbus_events::{
    Call, CallFailure, CallFuture, Engine, EngineConfig, EventError, FunctionTarget, Invoker,
    Outgoing, Topology,
};
use nimbus_log::MessageLog;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::invoke::{
    INVOCATION_ID_HEADER, TRACEPARENT_HEADER, body_too_large, invoke_payload, traceparent,
};
use crate::platform::{Platform, blocking};

/// Header (or `?mode=async`) that makes `POST /v1/functions/{name}/invoke` asynchronous.
pub const INVOCATION_TYPE_HEADER: &str = "x-nimbus-invocation-type";
/// Header carrying an idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Most concurrent async invocations of one wasm function.
const WASM_ASYNC_CONCURRENCY: usize = 128;

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::NotFound(m) => ApiError::not_found(m),
            EventError::Invalid(m) => ApiError::bad_request("InvalidRequest", m),
            EventError::TooLarge(m) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", m)
            }
            EventError::Backend(m) => ApiError::internal(m),
        }
    }
}

/// Runs the engine's calls on the platform. Holds the platform weakly: the platform owns the
/// engine, which owns this.
#[derive(Default)]
struct PlatformInvoker {
    platform: OnceLock<Weak<Platform>>,
}

fn failure(error_type: &str, message: impl Into<String>) -> CallFailure {
    CallFailure {
        error_type: error_type.into(),
        message: message.into(),
        doc: Bytes::new(),
    }
}

impl Invoker for PlatformInvoker {
    fn call(&self, call: Call) -> CallFuture {
        let platform = self.platform.get().and_then(Weak::upgrade);
        Box::pin(async move {
            let p =
                platform.ok_or_else(|| failure("ServiceUnavailable", "the node is stopping"))?;
            let d = p
                .snapshot()
                .functions
                .get(&call.function)
                .cloned()
                .ok_or_else(|| {
                    failure(
                        "ResourceNotFoundException",
                        format!("function `{}` is not deployed", call.function),
                    )
                })?;
            let mut headers = HeaderMap::new();
            let trace = call
                .traceparent
                .map(|t| (TRACEPARENT_HEADER.to_string(), t));
            for (k, v) in call.headers.iter().chain(&trace) {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
                {
                    headers.insert(k, v);
                }
            }
            // The trace of an event's first delivery starts when the event was accepted.
            let waited = call
                .queued_since_ms
                .map_or(0, |at| (crate::platform::now_ms() - at).max(0) as u64);
            let since = Instant::now()
                .checked_sub(Duration::from_millis(waited))
                .unwrap_or_else(Instant::now);
            match invoke_payload(
                &p,
                &d,
                call.record_id,
                call.trigger,
                call.payload,
                &headers,
                since,
            )
            .await
            {
                Ok(invoked) => invoked.result.map_err(|e| CallFailure {
                    error_type: e.kind.as_str().to_string(),
                    message: e.message,
                    doc: e.doc,
                }),
                Err(e) => Err(failure(&e.code, e.message)),
            }
        })
    }
}

impl Platform {
    /// Starts the event engine on `log`. Call once, after the platform is in its `Arc`.
    pub async fn start_events(
        self: &Arc<Self>,
        log: Arc<dyn MessageLog>,
        config: EngineConfig,
    ) -> Result<(), ApiError> {
        let invoker = Arc::new(PlatformInvoker::default());
        let _ = invoker.platform.set(Arc::downgrade(self));
        let engine = blocking(move || Engine::new(log, invoker, config)).await??;
        if self.events.set(engine).is_err() {
            return Err(ApiError::internal("the event engine was started twice"));
        }
        self.refresh_events().await
    }

    /// The event engine.
    pub fn engine(&self) -> Result<&Arc<Engine>, ApiError> {
        self.events.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "EventsUnavailable",
                "the event engine is not running on this node",
            )
        })
    }

    /// Stops the engine's consumers, letting running work settle for up to `grace`.
    pub async fn stop_events(&self, grace: std::time::Duration) {
        if let Some(e) = self.events.get() {
            e.shutdown(grace).await;
        }
    }

    /// Functions that can take events (every process function and wasm event function).
    fn event_functions(&self) -> HashMap<String, FunctionTarget> {
        self.snapshot()
            .functions
            .iter()
            .filter(|(_, d)| d.is_process() || d.active.version.kind == FunctionKind::Event)
            .map(|(name, d)| {
                let c = &d.active.version.config;
                let concurrency = if d.is_process() {
                    c.max_concurrency() as usize
                } else {
                    WASM_ASYNC_CONCURRENCY
                };
                (
                    name.clone(),
                    FunctionTarget {
                        process: d.is_process(),
                        timeout_ms: c.timeout_ms,
                        concurrency,
                        policy: c.events.clone(),
                    },
                )
            })
            .collect()
    }

    /// Rebuilds the engine's topology from the snapshot and the stored resources.
    pub(crate) async fn refresh_events(&self) -> Result<(), ApiError> {
        let Some(engine) = self.events.get() else {
            return Ok(());
        };
        let store = self.store.clone();
        let resources = blocking(move || store.event_resources()).await??;
        engine.apply(Topology::new(self.event_functions(), &resources));
        Ok(())
    }

    /// Problems with references from `events` (owned by `owner`, with `policies` of the
    /// functions being deployed) to functions, queues and topics that would not exist.
    pub(crate) async fn check_event_references(
        &self,
        owner: &str,
        events: &EventResources,
        policies: &[(String, nimbus_core::events::AsyncPolicy)],
        new_functions: &[String],
    ) -> Result<Vec<nimbus_core::manifest::Problem>, ApiError> {
        let store = self.store.clone();
        let others: Vec<EventResources> = blocking(move || store.event_resources())
            .await??
            .into_iter()
            .filter(|(o, _)| o != owner)
            .map(|(_, r)| r)
            .collect();
        let existing = self.event_functions();
        let snapshot = self.snapshot();
        let function_ok = |f: &str| {
            new_functions.iter().any(|n| n == f)
                || (existing.contains_key(f)
                    && snapshot
                        .functions
                        .get(f)
                        .is_some_and(|d| d.active.version.app != owner))
        };
        let queue_ok = |q: &str| others.iter().any(|r| r.queues.iter().any(|s| s.name == q));
        let topic_ok = |t: &str| others.iter().any(|r| r.topics.iter().any(|s| s.name == t));
        Ok(check_references(
            events,
            policies,
            &function_ok,
            &queue_ok,
            &topic_ok,
        ))
    }
}

fn problems_error(problems: &[nimbus_core::manifest::Problem]) -> ApiError {
    ApiError::bad_request(
        "InvalidResource",
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn idempotency(headers: &HeaderMap) -> Option<String> {
    headers
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn accepted(id: &str) -> Response {
    let mut r = (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response();
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert(INVOCATION_ID_HEADER, v);
    }
    r
}

/// Accepts an asynchronous invocation: 202 with its id once it is durable.
pub(crate) async fn invoke_async(
    p: &Platform,
    name: &str,
    headers: &HeaderMap,
    payload: Bytes,
) -> Result<String, ApiError> {
    let d = p
        .snapshot()
        .functions
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no function named `{name}`")))?;
    if !d.is_process() && d.active.version.kind != FunctionKind::Event {
        return Err(ApiError::bad_request(
            "NotAnEventFunction",
            format!("`{name}` is an HTTP function; it cannot be invoked asynchronously"),
        ));
    }
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("an asynchronous event is at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    // Refuse at acceptance what could only fail later.
    p.quota.admit(p).await?;
    Ok(p.engine()?
        .invoke_async(
            name,
            payload,
            idempotency(headers),
            traceparent(headers).map(|t| t.to_string()),
        )
        .await?)
}

/// Whether `POST /v1/functions/{name}/invoke` asks for async mode.
pub(crate) fn wants_async(headers: &HeaderMap, query: Option<&str>) -> bool {
    let header = headers
        .get(INVOCATION_TYPE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("event") || v.eq_ignore_ascii_case("async"));
    header
        || query.is_some_and(|q| {
            q.split('&')
                .any(|kv| kv == "mode=async" || kv == "async=true")
        })
}

pub(crate) async fn invoke_async_route(
    p: &Platform,
    name: &str,
    headers: &HeaderMap,
    payload: Bytes,
) -> Response {
    match invoke_async(p, name, headers, payload).await {
        Ok(id) => accepted(&id),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/invocations/{id}`: the ledger of async invocations, else the record.
pub(crate) async fn invocation(
    State(p): State<Arc<Platform>>,
    Path(id): Path<String>,
) -> Result<Json<InvocationStatus>, ApiError> {
    let ledger = match p.engine() {
        Ok(e) => e.invocation(&id).await?,
        Err(_) => None,
    };
    let record_id = match &ledger {
        Some(s) if s.attempts > 1 => format!("{id}-{}", s.attempts),
        _ => id.clone(),
    };
    let store = p.store.clone();
    let record: Option<InvocationRecord> = blocking(move || store.invocation(&record_id)).await??;
    match (ledger, record) {
        (Some(mut s), record) => {
            s.record = record;
            Ok(Json(s))
        }
        (None, Some(r)) => Ok(Json(InvocationStatus {
            id: r.id.clone(),
            function: r.function.clone(),
            status: match r.outcome {
                RecordOutcome::Success => "succeeded",
                _ => "failed",
            }
            .into(),
            attempts: 1,
            accepted_ms: r.start_ms,
            finished_ms: Some(r.start_ms + (r.duration_us / 1000) as i64),
            next_attempt_ms: None,
            result: None,
            error: r
                .error_type
                .map(|t| json!({"errorType": t.as_str(), "errorMessage": r.error_message})),
            record: Some(r),
        })),
        (None, None) => Err(ApiError::not_found(format!("no invocation `{id}`"))),
    }
}

// ---- resources created alone ----

async fn change_standalone(
    p: &Platform,
    change: impl FnOnce(&mut EventResources) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let _guard = p.deploy_lock.lock().await;
    let store = p.store.clone();
    let mut standalone = blocking(move || store.event_resources())
        .await??
        .into_iter()
        .find(|(owner, _)| owner.is_empty())
        .map(|(_, r)| r)
        .unwrap_or_default();
    change(&mut standalone)?;
    let problems = p.check_event_references("", &standalone, &[], &[]).await?;
    if !problems.is_empty() {
        return Err(problems_error(&problems));
    }
    let store = p.store.clone();
    blocking(move || store.put_events("", &standalone)).await??;
    p.refresh_events().await
}

fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|r| ApiError::bad_request("BadRequest", r.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("BadRequest", format!("body is not JSON: {e}")))
}

async fn create(
    p: &Platform,
    kind: ResourceKind,
    name: &str,
    body: Value,
) -> Result<StatusCode, ApiError> {
    let parsed = resource_from_json(kind, name, body).map_err(|ps| problems_error(&ps))?;
    let mut replaced = false;
    change_standalone(p, |set| {
        replaced = remove_named(set, kind, name);
        set.queues.extend(parsed.queues);
        set.topics.extend(parsed.topics);
        set.schedules.extend(parsed.schedules);
        Ok(())
    })
    .await?;
    Ok(if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    })
}

/// Removes the resource `name` of `kind` from `set`; whether it was there.
fn remove_named(set: &mut EventResources, kind: ResourceKind, name: &str) -> bool {
    let before = (set.queues.len(), set.topics.len(), set.schedules.len());
    match kind {
        ResourceKind::Queue => set.queues.retain(|q| q.name != name),
        ResourceKind::Topic => set.topics.retain(|t| t.name != name),
        ResourceKind::Schedule => set.schedules.retain(|s| s.name != name),
    }
    before != (set.queues.len(), set.topics.len(), set.schedules.len())
}

async fn delete(p: &Platform, kind: ResourceKind, name: &str) -> Result<StatusCode, ApiError> {
    let topo = p.engine()?.topology();
    let exists = match kind {
        ResourceKind::Queue => topo.queues.contains_key(name),
        ResourceKind::Topic => topo.topics.contains_key(name),
        ResourceKind::Schedule => topo.schedules.iter().any(|s| s.name == name),
    };
    let label = match kind {
        ResourceKind::Queue => "queue",
        ResourceKind::Topic => "topic",
        ResourceKind::Schedule => "schedule",
    };
    if !exists {
        return Err(ApiError::not_found(format!("no {label} named `{name}`")));
    }
    change_standalone(p, |set| {
        if remove_named(set, kind, name) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "{label} `{name}` is declared by an app; change it in that app's nimbus.toml"
                ),
            ))
        }
    })
    .await?;
    if kind == ResourceKind::Queue {
        p.engine()?.purge(name).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A kind of resource created alone, for the generic handlers below.
pub(crate) trait Kind {
    const KIND: ResourceKind;
}

/// Queues.
pub(crate) struct Queues;
/// Topics.
pub(crate) struct Topics;
/// Schedules.
pub(crate) struct Schedules;

impl Kind for Queues {
    const KIND: ResourceKind = ResourceKind::Queue;
}
impl Kind for Topics {
    const KIND: ResourceKind = ResourceKind::Topic;
}
impl Kind for Schedules {
    const KIND: ResourceKind = ResourceKind::Schedule;
}

/// `PUT /v1/{queues,topics,schedules}/{name}`: create or replace one created alone.
pub(crate) async fn put_resource<K: Kind>(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    create(&p, K::KIND, &name, parse_body(body)?).await
}

/// `DELETE /v1/{queues,topics,schedules}/{name}`.
pub(crate) async fn delete_resource<K: Kind>(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(&p, K::KIND, &name).await
}

pub(crate) async fn list_queues(State(p): State<Arc<Platform>>) -> Result<Response, ApiError> {
    let engine = p.engine()?;
    let mut names: Vec<String> = engine.topology().queues.keys().cloned().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(engine.queue_info(&n).await?);
    }
    Ok(Json(out).into_response())
}

pub(crate) async fn get_queue(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(p.engine()?.queue_info(&name).await?).into_response())
}

/// One message as sent to a queue or topic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    /// Text, or any JSON value (sent as its JSON text).
    #[serde(alias = "message")]
    body: Value,
    #[serde(default)]
    attributes: HashMap<String, Value>,
    subject: Option<String>,
    delay_seconds: Option<u64>,
    idempotency_key: Option<String>,
}

fn outgoing(value: Value, headers: &HeaderMap) -> Result<(Vec<Outgoing>, bool), ApiError> {
    let (items, single) = match value {
        Value::Array(items) => (items, false),
        other => (vec![other], true),
    };
    if items.is_empty() || items.len() > 1000 {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            "send 1 to 1000 messages: one object, or an array of them",
        ));
    }
    let trace = traceparent(headers).map(|t| t.to_string());
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let m: MessageIn = serde_json::from_value(item).map_err(|e| {
                ApiError::bad_request(
                    "InvalidRequest",
                    format!("message [{i}]: {e} (write {{\"body\": ..., \"attributes\": {{..}}}})"),
                )
            })?;
            let body = match m.body {
                Value::String(s) => s.into_bytes(),
                other => other.to_string().into_bytes(),
            };
            let attributes = m
                .attributes
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect();
            Ok(Outgoing {
                body,
                attributes,
                subject: m.subject,
                delay_ms: m.delay_seconds.map(|s| s.saturating_mul(1000)),
                idempotency_key: m
                    .idempotency_key
                    .or_else(|| if single { idempotency(headers) } else { None }),
                traceparent: trace.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| (v, single))
}

fn ids_response(ids: Vec<String>, single: bool) -> Response {
    let body = if single {
        json!({ "id": ids.first() })
    } else {
        json!({ "ids": ids })
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Parses one message or a batch and hands it to `accept` (a send or a publish): 202 with the ids.
async fn accept_messages<F, Fut>(
    p: &Platform,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    accept: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<Engine>, Vec<Outgoing>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, EventError>>,
{
    if matches!(&body, Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE) {
        return Ok(body_too_large(p.config.max_body_bytes));
    }
    let (messages, single) = outgoing(parse_body(body)?, headers)?;
    let ids = accept(p.engine()?.clone(), messages).await?;
    Ok(ids_response(ids, single))
}

/// `POST /v1/queues/{name}/messages`.
pub(crate) async fn send(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    accept_messages(&p, &headers, body, async |e, m| e.send(&name, m).await).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveIn {
    max: Option<usize>,
    visibility_seconds: Option<u64>,
    wait_seconds: Option<u64>,
}

pub(crate) async fn receive(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = parse_body(body)?;
    let r: ReceiveIn = if value.is_null() {
        ReceiveIn::default()
    } else {
        serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request("InvalidRequest", e.to_string()))?
    };
    let max = r.max.unwrap_or(1);
    if !(1..=100).contains(&max) {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            "max must be 1..=100",
        ));
    }
    let wait = r.wait_seconds.unwrap_or(0).min(20) * 1000;
    let messages = p
        .engine()?
        .receive(&name, max, r.visibility_seconds.map(|s| s * 1000), wait)
        .await?;
    Ok(Json(json!({ "messages": messages })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckIn {
    receipts: Vec<String>,
}

pub(crate) async fn ack(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Result<Json<AckIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(a) = body.map_err(|r| ApiError::bad_request("InvalidRequest", r.body_text()))?;
    let deleted = p.engine()?.delete(&name, a.receipts).await?;
    Ok(Json(json!({ "deleted": deleted })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VisibilityIn {
    receipt: String,
    visibility_seconds: u64,
}

pub(crate) async fn visibility(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    body: Result<Json<VisibilityIn>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(v) = body.map_err(|r| ApiError::bad_request("InvalidRequest", r.body_text()))?;
    if v.visibility_seconds > 12 * 3600 {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            "visibility_seconds is at most 43200 (12 h)",
        ));
    }
    p.engine()?
        .change_visibility(&name, v.receipt, v.visibility_seconds * 1000)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn redrive(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let moved = p.engine()?.redrive(&name).await?;
    Ok(Json(json!({ "moved": moved })).into_response())
}

// ---- topics ----

fn topic_json(name: &str, engine: &Engine) -> Option<Value> {
    let topo = engine.topology();
    let t = topo.topics.get(name)?;
    let subs: Vec<Value> = t
        .subscriptions
        .iter()
        .map(|(s, _)| {
            let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
            if let nimbus_core::events::Endpoint::Webhook(_) = s.endpoint {
                v["secret"] = json!(engine.webhook_secret(name, &s.name));
            }
            v
        })
        .collect();
    Some(json!({ "name": name, "subscriptions": subs }))
}

pub(crate) async fn list_topics(State(p): State<Arc<Platform>>) -> Result<Response, ApiError> {
    let engine = p.engine()?;
    let mut names: Vec<String> = engine.topology().topics.keys().cloned().collect();
    names.sort();
    let list: Vec<Value> = names.iter().filter_map(|n| topic_json(n, engine)).collect();
    Ok(Json(list).into_response())
}

pub(crate) async fn get_topic(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    topic_json(&name, p.engine()?)
        .map(|v| Json(v).into_response())
        .ok_or_else(|| ApiError::not_found(format!("no topic named `{name}`")))
}

pub(crate) async fn publish(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    accept_messages(&p, &headers, body, async |e, m| e.publish(&name, m).await).await
}

// ---- schedules ----

pub(crate) async fn list_schedules(State(p): State<Arc<Platform>>) -> Result<Response, ApiError> {
    let topo = p.engine()?.topology();
    let mut list: Vec<ScheduleSpec> = topo.schedules.clone();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(list).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct EnableQuery {
    enabled: bool,
}

/// `POST /v1/schedules/{name}/state?enabled=true|false`, for schedules of any owner (an app's
/// next deploy sets it back to its manifest).
pub(crate) async fn set_schedule_enabled(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(q): Query<EnableQuery>,
) -> Result<StatusCode, ApiError> {
    let _guard = p.deploy_lock.lock().await;
    let store = p.store.clone();
    let all = blocking(move || store.event_resources()).await??;
    let (owner, mut set) = all
        .into_iter()
        .find(|(_, r)| r.schedules.iter().any(|s| s.name == name))
        .ok_or_else(|| ApiError::not_found(format!("no schedule named `{name}`")))?;
    for s in &mut set.schedules {
        if s.name == name {
            s.enabled = q.enabled;
        }
    }
    let store = p.store.clone();
    blocking(move || store.put_events(&owner, &set)).await??;
    p.refresh_events().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- CloudEvents ----

/// `POST /v1/events`: CloudEvents in binary, structured or batch mode; 202 once all are durable.
pub(crate) async fn ingest(
    State(p): State<Arc<Platform>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Ok(body_too_large(p.config.max_body_bytes));
        }
        Err(r) => return Err(ApiError::bad_request("BadRequest", r.body_text())),
    };
    let events = nimbus_events::cloudevent::from_http(&headers, body.to_vec())
        .map_err(|e| ApiError::bad_request("InvalidCloudEvent", e.to_string()))?;
    let n = p.engine()?.ingest(events).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": n }))).into_response())
}
