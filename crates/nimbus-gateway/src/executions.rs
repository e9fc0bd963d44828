//! Durable executions in Nimbus's own API (`/v1`, behind API keys), what the CLI uses, and the
//! async HTTP pattern: `POST /v1/functions/{name}/executions` starts one and answers
//! `202 Accepted` with a `Location` status resource that says running / succeeded (with its
//! output) / failed / timed out / stopped, and links to answer its waiting callbacks and to
//! stop it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use nimbus_durable::model::{ErrorObject, OperationStatus, OperationType};
use nimbus_durable::store::ExecutionRecord;
use nimbus_durable::wire;
use nimbus_invoker::durable::Durable;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::{ApiError, Gateway};

fn engine(g: &Gateway) -> Result<&Arc<Durable>, ApiError> {
    g.invoker
        .durable()
        .ok_or_else(|| ApiError::not_found("this node runs no durable executions"))
}

/// The status resource's path of `arn`.
pub(crate) fn status_path(arn: &str) -> String {
    format!(
        "/v1/executions/{}",
        utf8_percent_encode(arn, NON_ALPHANUMERIC)
    )
}

fn callback_path(id: &str, action: &str) -> String {
    format!(
        "/v1/callbacks/{}/{action}",
        utf8_percent_encode(id, NON_ALPHANUMERIC)
    )
}

/// The status resource of an execution: `me` is its own path; `callback(id, action)` the
/// path that answers a waiting callback.
fn status_with(
    record: &ExecutionRecord,
    me: &str,
    callback: &dyn Fn(&str, &str) -> String,
) -> Value {
    let execution = &record.journal.operations()[0];
    let callbacks: Vec<Value> = record
        .journal
        .operations()
        .iter()
        .filter(|o| o.kind == OperationType::Callback && o.status == OperationStatus::Started)
        .filter_map(|o| {
            let id = o.callback_id.as_deref()?;
            Some(json!({
                "id": id,
                "name": o.name,
                "succeed": callback(id, "succeed"),
                "fail": callback(id, "fail"),
            }))
        })
        .collect();
    let running = !record.status.is_final();
    json!({
        "arn": record.arn,
        "name": record.name,
        "function": record.function,
        "version": record.version,
        "status": wire::execution_status(record.status),
        "start_ms": record.start_ms,
        "end_ms": record.end_ms,
        "input": execution.input.as_deref().map(parse_or_text),
        "output": execution.result.as_deref().map(parse_or_text),
        "error": execution.error,
        "links": {
            "self": me,
            "history": format!("{me}/history"),
            "stop": running.then(|| format!("{me}/stop")),
            "callbacks": callbacks,
        },
    })
}

/// The status resource in `/v1`.
fn status(record: &ExecutionRecord) -> Value {
    status_with(record, &status_path(&record.arn), &callback_path)
}

/// The public status resource's path of `arn` (a capability: its token is the credential),
/// under the tenant's route prefix.
fn public_path(g: &Gateway, d: &Durable, arn: &str) -> String {
    format!(
        "{}/2025-12-01/durable-status/{}",
        nimbus_core::tenant::route_prefix(g.invoker.store().tenant()),
        d.status_token(arn)
    )
}

fn public_status(g: &Gateway, d: &Durable, record: &ExecutionRecord) -> Value {
    let me = public_path(g, d, &record.arn);
    let callback = |id: &str, action: &str| {
        format!(
            "{me}/callbacks/{}/{action}",
            utf8_percent_encode(id, NON_ALPHANUMERIC)
        )
    };
    let mut v = status_with(record, &me, &callback);
    // The history is for keys (it holds every step's data).
    v["links"]["history"] = Value::Null;
    v
}

/// An HTTP request to a durable function's route: an execution starts with the request as its
/// input (the API Gateway event), answered `202 Accepted` with `Location`, its public status.
pub(crate) async fn start_from_route(
    g: &Gateway,
    d: &Arc<Durable>,
    req: nimbus_invoker::InvocationRequest,
) -> Response {
    let result = async {
        let started = d.start_http(req).await?;
        let record = d.execution(&started.arn).await?;
        Ok::<_, ApiError>(record)
    };
    match result.await {
        Ok(record) => {
            let location = public_path(g, d, &record.arn);
            let mut r = (StatusCode::ACCEPTED, Json(public_status(g, d, &record))).into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(e) => e.into_response(),
    }
}

/// The execution a public status token names.
fn public_target(g: &Gateway, token: &str) -> Result<(Arc<Durable>, String), ApiError> {
    let d = engine(g)?;
    Ok((d.clone(), d.status_target(token)?))
}

/// `GET /2025-12-01/durable-status/{token}`: the public status resource.
pub(crate) async fn public_show(
    State(g): State<Arc<Gateway>>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (d, arn) = public_target(&g, &token)?;
    Ok(Json(public_status(&g, &d, &d.execution(&arn).await?)))
}

/// `POST /2025-12-01/durable-status/{token}/stop`.
pub(crate) async fn public_stop(
    State(g): State<Arc<Gateway>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (d, arn) = public_target(&g, &token)?;
    d.stop(&arn, error_of(&body)?).await?;
    Ok(Json(public_status(&g, &d, &d.execution(&arn).await?)))
}

/// `POST /2025-12-01/durable-status/{token}/callbacks/{id}/{action}`: answers a callback of
/// that execution (only).
pub(crate) async fn public_callback(
    State(g): State<Arc<Gateway>>,
    Path((token, id, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (d, arn) = public_target(&g, &token)?;
    if d.callback_execution(&id).ok().as_deref() != Some(arn.as_str()) {
        return Err(ApiError::not_found("no such callback in this execution"));
    }
    answer_callback(&d, &id, &action, &body).await
}

/// A payload as JSON when it is JSON, as a string otherwise.
fn parse_or_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// `POST /v1/functions/{name}/executions[?name=N]`: starts an execution of the body (JSON);
/// `202 Accepted` with `Location` (the same name and input again: that execution, `200`).
pub(crate) async fn start(
    State(g): State<Arc<Gateway>>,
    Path(function): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let d = engine(&g)?;
    let input = if body.is_empty() {
        "{}".to_string()
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| {
            ApiError::bad_request("InvalidRequest", format!("the input is not JSON: {e}"))
        })?;
        String::from_utf8_lossy(&body).into_owned()
    };
    let started = d
        .start(
            &function,
            query.get("qualifier").map(String::as_str),
            query.get("name").map(String::as_str),
            Some(input),
        )
        .await?;
    let record = d.execution(&started.arn).await?;
    let code = if started.new {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut r = (code, Json(status(&record))).into_response();
    if let Ok(v) = HeaderValue::from_str(&status_path(&started.arn)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(r)
}

/// `GET /v1/functions/{name}/executions[?status=RUNNING&limit=N&after=ARN]`.
pub(crate) async fn list(
    State(g): State<Arc<Gateway>>,
    Path(function): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let d = engine(&g)?;
    if g.invoker.function(&function).is_none() {
        return Err(ApiError::not_found(format!("no function `{function}`")));
    }
    let status = match query.get("status").map(|s| s.to_ascii_uppercase()) {
        None => None,
        Some(s) => Some(crate::durable::parse_status(&s).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidRequest",
                format!("`{s}` is not one of running, succeeded, failed, timed_out, stopped"),
            )
        })?),
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let (items, more) = d
        .list(&function, status, query.get("after").cloned(), limit)
        .await?;
    let items: Vec<Value> = items
        .iter()
        .map(|s| {
            json!({
                "arn": s.arn,
                "name": s.name,
                "status": wire::execution_status(s.status),
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
            })
        })
        .collect();
    Ok(Json(json!({ "executions": items, "more": more })))
}

/// `GET /v1/executions/{arn}`: the status resource.
pub(crate) async fn show(
    State(g): State<Arc<Gateway>>,
    Path(arn): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(status(&engine(&g)?.execution(&arn).await?)))
}

/// `GET /v1/executions/{arn}/history`: every operation's start and end, in time order.
pub(crate) async fn history(
    State(g): State<Arc<Gateway>>,
    Path(arn): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let d = engine(&g)?;
    let record = d.execution(&arn).await?;
    let timeout_s = d.execution_timeout_ms(&record.function).unwrap_or(0) / 1000;
    Ok(Json(json!({
        "events": wire::history(&record.journal, true, timeout_s),
    })))
}

/// `POST /v1/executions/{arn}/stop` (optional body: an error `{"ErrorMessage": …}`).
pub(crate) async fn stop(
    State(g): State<Arc<Gateway>>,
    Path(arn): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let d = engine(&g)?;
    let error = error_of(&body)?;
    d.stop(&arn, error).await?;
    Ok(Json(status(&d.execution(&arn).await?)))
}

fn error_of(body: &[u8]) -> Result<Option<ErrorObject>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        ApiError::bad_request(
            "InvalidRequest",
            format!("the error must be {{\"ErrorType\": …, \"ErrorMessage\": …}}: {e}"),
        )
    })
}

/// `POST /v1/callbacks/{id}/succeed` (body: the result) or `…/fail` (body: an error).
pub(crate) async fn callback(
    State(g): State<Arc<Gateway>>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    answer_callback(engine(&g)?, &id, &action, &body).await
}

async fn answer_callback(
    d: &Durable,
    id: &str,
    action: &str,
    body: &[u8],
) -> Result<StatusCode, ApiError> {
    match action {
        "succeed" => {
            let result = (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned());
            d.complete_callback(id, Ok(result)).await?;
        }
        "fail" => {
            let error = error_of(body)?.unwrap_or_default();
            d.complete_callback(id, Err(error)).await?;
        }
        "heartbeat" => d.heartbeat(id).await?,
        other => {
            return Err(ApiError::not_found(format!(
                "callbacks take succeed, fail or heartbeat, not `{other}`"
            )));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
