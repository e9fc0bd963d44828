//! The event API (`/v1/queues`, `/v1/topics`, `/v1/schedules`, `/v1/events`, the invocation
//! ledger) over the invoker's [`nimbus_events::Engine`].

use std::sync::Arc;

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use nimbus_core::api::InvocationStatus;
use nimbus_core::events::{ResourceKind, ScheduleSpec};
use nimbus_events::{Engine, EventError, Outgoing};
use nimbus_invoker::Put;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::error::ApiError;
use crate::routes::{idempotency_key, traceparent};

/// `GET /v1/invocations/{id}`: the ledger of async invocations, else the record.
pub(crate) async fn invocation(
    State(g): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<Json<InvocationStatus>, ApiError> {
    g.invoker
        .invocation_status(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no invocation `{id}`")))
}

fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|r| ApiError::bad_request("BadRequest", r.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("BadRequest", format!("body is not JSON: {e}")))
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
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    Ok(
        match g
            .invoker
            .put_resource(K::KIND, &name, parse_body(body)?)
            .await?
        {
            Put::Created => StatusCode::CREATED,
            Put::Replaced => StatusCode::OK,
        },
    )
}

/// `DELETE /v1/{queues,topics,schedules}/{name}`.
pub(crate) async fn delete_resource<K: Kind>(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    g.invoker.delete_resource(K::KIND, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_queues(State(g): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    let engine = g.invoker.engine()?;
    let mut names: Vec<String> = engine.topology().queues.keys().cloned().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(engine.queue_info(&n).await?);
    }
    Ok(Json(out).into_response())
}

pub(crate) async fn get_queue(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(g.invoker.engine()?.queue_info(&name).await?).into_response())
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

/// A message attribute as the API takes it: a string (`String`), a number (`Number`), a list
/// (`String.Array`), or SNS's typed form `{"Type"|"DataType": T, "Value"|"StringValue"|
/// "BinaryValue": V}`. Returns the value as text and its data type.
fn typed_attribute(key: &str, v: Value) -> Result<(String, String), String> {
    let (value, ty) = match v {
        Value::String(s) => return Ok((s, "String".into())),
        Value::Number(n) => return Ok((n.to_string(), "Number".into())),
        Value::Bool(b) => return Ok((b.to_string(), "String".into())),
        Value::Array(_) => return Ok((v.to_string(), "String.Array".into())),
        Value::Object(o) => {
            let field = |names: &[&str]| names.iter().find_map(|n| o.get(*n)).cloned();
            let ty = field(&["Type", "DataType"])
                .and_then(|t| t.as_str().map(str::to_string))
                .ok_or_else(|| {
                    format!(
                        "attribute `{key}`: a typed attribute is {{\"Type\": ..., \"Value\": ...}}"
                    )
                })?;
            let value = match field(&["Value", "StringValue", "BinaryValue"]) {
                Some(Value::String(s)) => s,
                Some(other @ (Value::Number(_) | Value::Array(_))) => other.to_string(),
                _ => return Err(format!("attribute `{key}`: `Value` must be a string")),
            };
            (value, ty)
        }
        Value::Null => return Err(format!("attribute `{key}` has no value")),
    };
    let problem = match nimbus_core::filter::base_data_type(&ty) {
        None => {
            Some("Type is String, Number, String.Array or Binary (optionally with a custom suffix)")
        }
        Some("Number") if value.trim().parse::<f64>().is_err() => {
            Some("a Number's Value must be a number")
        }
        Some("String.Array")
            if !serde_json::from_str::<Value>(&value).is_ok_and(|a| a.is_array()) =>
        {
            Some("a String.Array's Value must be a JSON array")
        }
        _ => None,
    };
    match problem {
        Some(p) => Err(format!("attribute `{key}`: {p}")),
        None => Ok((value, ty)),
    }
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
            let mut attributes = Vec::with_capacity(m.attributes.len());
            let mut data_types = Vec::new();
            for (k, v) in m.attributes {
                let (value, ty) = typed_attribute(&k, v).map_err(|e| {
                    ApiError::bad_request("InvalidRequest", format!("message [{i}]: {e}"))
                })?;
                if ty != "String" {
                    data_types.push((k.clone(), ty));
                }
                attributes.push((k, value));
            }
            Ok(Outgoing {
                body,
                attributes,
                data_types,
                subject: m.subject,
                delay_ms: m.delay_seconds.map(seconds_to_ms).transpose()?,
                idempotency_key: m.idempotency_key.or_else(|| {
                    if single {
                        idempotency_key(headers)
                    } else {
                        None
                    }
                }),
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
    g: &Gateway,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    accept: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<Engine>, Vec<Outgoing>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<String>, EventError>>,
{
    if matches!(&body, Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE) {
        return Err(ApiError::too_large(g.config.max_body_bytes as u64));
    }
    let (messages, single) = outgoing(parse_body(body)?, headers)?;
    let ids = accept(g.invoker.engine()?.clone(), messages).await?;
    Ok(ids_response(ids, single))
}

/// `POST /v1/queues/{name}/messages`.
pub(crate) async fn send(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    accept_messages(&g, &headers, body, async |e, m| e.send(&name, m).await).await
}

/// Seconds as milliseconds; a number too large for that is refused, never wrapped.
fn seconds_to_ms(s: u64) -> Result<u64, ApiError> {
    s.checked_mul(1000)
        .ok_or_else(|| ApiError::bad_request("InvalidRequest", format!("{s} seconds is too long")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiveIn {
    max: Option<usize>,
    visibility_seconds: Option<u64>,
    wait_seconds: Option<u64>,
}

pub(crate) async fn receive(
    State(g): State<Arc<Gateway>>,
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
    let messages = g
        .invoker
        .engine()?
        .receive(
            &name,
            max,
            r.visibility_seconds.map(seconds_to_ms).transpose()?,
            wait,
        )
        .await?;
    Ok(Json(json!({ "messages": messages })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckIn {
    receipts: Vec<String>,
}

pub(crate) async fn ack(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Result<Json<AckIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(a) = body.map_err(|r| ApiError::bad_request("InvalidRequest", r.body_text()))?;
    let deleted = g.invoker.engine()?.delete(&name, a.receipts).await?;
    Ok(Json(json!({ "deleted": deleted })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VisibilityIn {
    receipt: String,
    visibility_seconds: u64,
}

pub(crate) async fn visibility(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Result<Json<VisibilityIn>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(v) = body.map_err(|r| ApiError::bad_request("InvalidRequest", r.body_text()))?;
    g.invoker
        .engine()?
        .change_visibility(&name, v.receipt, seconds_to_ms(v.visibility_seconds)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn redrive(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let moved = g.invoker.engine()?.redrive(&name).await?;
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

pub(crate) async fn list_topics(State(g): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    let engine = g.invoker.engine()?;
    let mut names: Vec<String> = engine.topology().topics.keys().cloned().collect();
    names.sort();
    let list: Vec<Value> = names.iter().filter_map(|n| topic_json(n, engine)).collect();
    Ok(Json(list).into_response())
}

pub(crate) async fn get_topic(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    topic_json(&name, g.invoker.engine()?)
        .map(|v| Json(v).into_response())
        .ok_or_else(|| ApiError::not_found(format!("no topic named `{name}`")))
}

pub(crate) async fn publish(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    accept_messages(&g, &headers, body, async |e, m| e.publish(&name, m).await).await
}

// ---- schedules ----

pub(crate) async fn list_schedules(State(g): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    let topo = g.invoker.engine()?.topology();
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
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(q): Query<EnableQuery>,
) -> Result<StatusCode, ApiError> {
    g.invoker.set_schedule_enabled(&name, q.enabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- CloudEvents ----

/// `POST /v1/events`: CloudEvents in binary, structured or batch mode; 202 once all are durable.
pub(crate) async fn ingest(
    State(g): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::too_large(g.config.max_body_bytes as u64));
        }
        Err(r) => return Err(ApiError::bad_request("BadRequest", r.body_text())),
    };
    let events = nimbus_events::cloudevent::from_http(&headers, body.to_vec())
        .map_err(|e| ApiError::bad_request("InvalidCloudEvent", e.to_string()))?;
    let n = g.invoker.engine()?.ingest(events).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": n }))).into_response())
}
