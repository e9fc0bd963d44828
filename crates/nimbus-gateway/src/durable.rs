//! The Lambda durable execution API (`/2025-12-01/…`), what the AWS durable execution SDKs
//! call from inside a durable function (checkpoint, state) and what people call about
//! executions (get, history, list, stop, callbacks). SigV4 as the Invoke API; errors in the
//! Lambda shapes. A durable function's own credentials reach only its own executions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use nimbus_core::keys::{Permission, Principal, Role};
use nimbus_durable::model::{ErrorObject, OperationStatus, OperationUpdate};
use nimbus_durable::wire::{self, Timestamps};
use nimbus_invoker::durable::{Durable, DurableError};
use serde::Deserialize;
use serde_json::json;

use crate::Gateway;
use crate::lambda::aws_error;

/// Largest request body the API reads (a checkpoint batch of 256 KiB payloads and more).
const MAX_BODY: usize = 6 * 1024 * 1024;

/// An error answer (boxed: it is large, and rare).
type Refused = Box<Response>;

fn refused(status: StatusCode, ty: &str, message: &str) -> Refused {
    Box::new(aws_error(status, ty, message))
}

/// The HTTP answer to a durable error.
pub(crate) fn durable_error(e: DurableError) -> Response {
    let e = match e {
        DurableError::Invoke(i) => {
            let name = i.to_string();
            return crate::lambda::invoke_error(i, &name);
        }
        e => e,
    };
    let (status, ty) = match &e {
        DurableError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
        DurableError::Invalid(_) | DurableError::Journal(_) => {
            (StatusCode::BAD_REQUEST, "InvalidParameterValueException")
        }
        DurableError::CallbackTimedOut(_) => (StatusCode::BAD_REQUEST, "CallbackTimeoutException"),
        DurableError::AlreadyStarted(_) => (
            StatusCode::CONFLICT,
            "DurableExecutionAlreadyStartedException",
        ),
        DurableError::Invoke(_)
        | DurableError::Store(_)
        | DurableError::Log(_)
        | DurableError::Stopping => {
            tracing::error!(error = %e, "durable execution API");
            return aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "the durable execution store failed; try again",
            );
        }
    };
    aws_error(status, ty, &e.to_string())
}

/// The engine, or Lambda's answer when this node has none.
fn engine(g: &Gateway) -> Result<&Arc<Durable>, Refused> {
    g.invoker.durable().ok_or_else(|| {
        refused(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "this node runs no durable executions",
        )
    })
}

/// What a call on an execution of `function` needs.
#[derive(Clone, Copy)]
enum Need {
    /// The function's own credentials, or a key that may invoke it (checkpoint, state,
    /// callbacks, stop).
    Own,
    /// A key that may read functions (get, history, list).
    Read,
}

fn allowed(principal: &Principal, function: &str, need: Need) -> bool {
    if principal.role == Role::Execution {
        return matches!(need, Need::Own) && principal.key_id == format!("execution:{function}");
    }
    match need {
        Need::Own => principal
            .check(Permission::FunctionsInvoke, Some(function))
            .is_ok(),
        Need::Read => principal.check(Permission::FunctionsRead, None).is_ok(),
    }
}

/// Reads the body, checks the signature and that the caller may do `need` on `function`.
async fn admit(
    g: &Gateway,
    request: Request,
    function: &str,
    need: Need,
) -> Result<Bytes, Refused> {
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                &format!("the request must be smaller than {MAX_BODY} bytes"),
            ));
        }
    };
    let principal = crate::lambda::signer(g, &parts, &body)?;
    if allowed(&principal, function, need) {
        Ok(body)
    } else {
        Err(refused(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            &format!(
                "{} may not make this call on the durable executions of {function}",
                principal.key_id
            ),
        ))
    }
}

/// The function an execution ARN names, or the documented error.
fn function_of(arn: &str) -> Result<&str, Refused> {
    Durable::function_of(arn).ok_or_else(|| {
        refused(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("`{arn}` is not a durable execution ARN"),
        )
    })
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    serde_json::from_slice(body).map_err(|e| {
        refused(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("the request body is not valid: {e}"),
        )
    })
}

fn bad_page(m: &str) -> Refused {
    refused(StatusCode::BAD_REQUEST, "InvalidParameterValueException", m)
}

/// `MaxItems` (1–1000, `default` when absent).
fn max_items(query: &HashMap<String, String>, default: usize) -> Result<usize, Refused> {
    match query.get("MaxItems").map(|m| m.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(n)) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(bad_page("MaxItems must be an integer from 1 to 1000")),
    }
}

/// A positional `Marker` (what a previous page's `NextMarker` said), and `MaxItems`.
fn page_params(query: &HashMap<String, String>, default: usize) -> Result<(usize, usize), Refused> {
    let marker = match query.get("Marker").filter(|m| !m.is_empty()) {
        None => 0,
        Some(m) => m
            .parse()
            .map_err(|_| bad_page("Marker is not one this API gave"))?,
    };
    Ok((marker, max_items(query, default)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckpointBody {
    checkpoint_token: String,
    #[serde(default)]
    updates: Vec<OperationUpdate>,
    #[serde(default)]
    client_token: Option<String>,
}

/// `POST /2025-12-01/durable-executions/{arn}/checkpoint`.
pub(crate) async fn checkpoint(
    State(g): State<Arc<Gateway>>,
    Path(arn): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let d = engine(&g)?;
        let body = admit(&g, request, function_of(&arn)?, Need::Own).await?;
        let body: CheckpointBody = json_body(&body)?;
        let done = d
            .checkpoint(
                &arn,
                &body.checkpoint_token,
                body.client_token.as_deref(),
                &body.updates,
            )
            .await
            .map_err(|e| Box::new(durable_error(e)))?;
        Ok::<_, Refused>(json!({
            "CheckpointToken": done.token,
            "NewExecutionState": {
                "Operations": done.operations.iter()
                    .map(|o| wire::operation(o, Timestamps::Seconds)).collect::<Vec<_>>(),
            },
        }))
    };
    answer(result.await)
}

fn answer(result: Result<serde_json::Value, Refused>) -> Response {
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => *r,
    }
}

/// `GET /2025-12-01/durable-executions/{arn}/state`.
pub(crate) async fn state(
    State(g): State<Arc<Gateway>>,
    Path(arn): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let result = async {
        let d = engine(&g)?;
        admit(&g, request, function_of(&arn)?, Need::Own).await?;
        let token = query
            .get("CheckpointToken")
            .map(String::as_str)
            .unwrap_or("");
        let (marker, max) = page_params(&query, 1000)?;
        let (ops, next) = d
            .state(&arn, token, marker, max)
            .await
            .map_err(|e| Box::new(durable_error(e)))?;
        let mut v = json!({
            "Operations": ops.iter().map(|o| wire::operation(o, Timestamps::Seconds)).collect::<Vec<_>>(),
        });
        if let Some(n) = next {
            v["NextMarker"] = json!(n.to_string());
        }
        Ok(v)
    };
    answer(result.await)
}

fn include_data(query: &HashMap<String, String>) -> bool {
    query
        .get("IncludeExecutionData")
        .is_none_or(|v| v.eq_ignore_ascii_case("true"))
}

/// `GET /2025-12-01/durable-executions/{arn}`.
pub(crate) async fn get(
    State(g): State<Arc<Gateway>>,
    Path(arn): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let result = async {
        let d = engine(&g)?;
        let function = function_of(&arn)?;
        admit(&g, request, function, Need::Read).await?;
        let record = d
            .execution(&arn)
            .await
            .map_err(|e| Box::new(durable_error(e)))?;
        Ok(wire::execution(
            &record,
            &d.function_arn(function),
            include_data(&query),
        ))
    };
    answer(result.await)
}

/// `GET /2025-12-01/durable-executions/{arn}/history`.
pub(crate) async fn history(
    State(g): State<Arc<Gateway>>,
    Path(arn): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let result = async {
        let d = engine(&g)?;
        let function = function_of(&arn)?;
        admit(&g, request, function, Need::Read).await?;
        let (marker, max) = page_params(&query, 100)?;
        let record = d
            .execution(&arn)
            .await
            .map_err(|e| Box::new(durable_error(e)))?;
        let timeout_s = d.execution_timeout_ms(function).unwrap_or(0) / 1000;
        let mut events = wire::history(&record.journal, include_data(&query), timeout_s);
        if query
            .get("ReverseOrder")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            events.reverse();
        }
        let total = events.len();
        let page: Vec<_> = events.into_iter().skip(marker).take(max).collect();
        let mut v = json!({ "Events": page });
        if marker + max < total {
            v["NextMarker"] = json!((marker + max).to_string());
        }
        Ok(v)
    };
    answer(result.await)
}

/// `POST /2025-12-01/durable-executions/{arn}/stop`.
pub(crate) async fn stop(
    State(g): State<Arc<Gateway>>,
    Path(arn): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let d = engine(&g)?;
        let body = admit(&g, request, function_of(&arn)?, Need::Own).await?;
        let error: Option<ErrorObject> = if body.is_empty() {
            None
        } else {
            Some(json_body(&body)?)
        };
        let at = d
            .stop(&arn, error)
            .await
            .map_err(|e| Box::new(durable_error(e)))?;
        Ok(json!({ "StopTimestamp": Timestamps::Seconds.write(at) }))
    };
    answer(result.await)
}

/// `GET /2025-12-01/functions/{name}/durable-executions`.
pub(crate) async fn list(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let result = async {
        let d = engine(&g)?;
        let (function, _) = nimbus_aws::lambda::parse_function_name(&name);
        admit(&g, request, function, Need::Read).await?;
        if g.invoker.function(function).is_none() {
            return Err(refused(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                &format!("Function not found: {}", d.function_arn(function)),
            ));
        }
        let status = match query.get("Statuses").map(String::as_str) {
            None | Some("") => None,
            Some(s) => Some(parse_status(s).ok_or_else(|| {
                refused(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValueException",
                    &format!("`{s}` is not one of RUNNING, SUCCEEDED, FAILED, TIMED_OUT, STOPPED"),
                )
            })?),
        };
        let max = max_items(&query, 50)?;
        let after = query.get("Marker").filter(|m| !m.is_empty()).cloned();
        let (items, more) = d
            .list(function, status, after, max)
            .await
            .map_err(|e| Box::new(durable_error(e)))?;
        let arn = d.function_arn(function);
        let mut v = json!({
            "DurableExecutions": items.iter().map(|s| wire::execution_summary(s, &arn)).collect::<Vec<_>>(),
        });
        if more && let Some(last) = items.last() {
            v["NextMarker"] = json!(last.arn);
        }
        Ok(v)
    };
    answer(result.await)
}

pub(crate) fn parse_status(s: &str) -> Option<OperationStatus> {
    Some(match s {
        "RUNNING" => OperationStatus::Started,
        "SUCCEEDED" => OperationStatus::Succeeded,
        "FAILED" => OperationStatus::Failed,
        "TIMED_OUT" => OperationStatus::TimedOut,
        "STOPPED" => OperationStatus::Stopped,
        _ => return None,
    })
}

/// The function a callback id's execution belongs to (the id is checked by the engine).
fn callback_function(d: &Durable, id: &str) -> Result<String, Refused> {
    d.callback_execution(id)
        .ok()
        .as_deref()
        .and_then(Durable::function_of)
        .map(str::to_string)
        .ok_or_else(|| {
            refused(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "the callback id is not one this node gave",
            )
        })
}

/// `POST /2025-12-01/durable-execution-callbacks/{id}/{succeed|fail|heartbeat}`.
pub(crate) async fn callback(
    State(g): State<Arc<Gateway>>,
    Path((id, action)): Path<(String, String)>,
    request: Request,
) -> Response {
    let result = async {
        let d = engine(&g)?;
        let function = callback_function(d, &id)?;
        let body = admit(&g, request, &function, Need::Own).await?;
        let done = match action.as_str() {
            "succeed" => {
                let result =
                    (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
                d.complete_callback(&id, Ok(result)).await
            }
            "fail" => {
                let error: ErrorObject = if body.is_empty() {
                    ErrorObject::default()
                } else {
                    json_body(&body)?
                };
                d.complete_callback(&id, Err(error)).await
            }
            "heartbeat" => d.heartbeat(&id).await,
            _ => {
                return Err(refused(
                    StatusCode::NOT_FOUND,
                    "UnknownOperationException",
                    "callbacks take succeed, fail or heartbeat",
                ));
            }
        };
        done.map_err(|e| Box::new(durable_error(e)))?;
        Ok(json!({}))
    };
    answer(result.await)
}

/// How long a synchronous `Invoke` of a durable function waits for its execution (Lambda's
/// limit for synchronous invocations).
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// `Invoke` of a durable function: starts an execution (idempotently by
/// `X-Amz-Durable-Execution-Name`). `Event`: 202 at once; `RequestResponse`: the execution's
/// result when it ends (its error, with `X-Amz-Function-Error`, when it fails). Either way
/// `X-Amz-Durable-Execution-Arn` names it.
pub(crate) async fn invoke(
    d: &Arc<Durable>,
    headers: &http::HeaderMap,
    function: &str,
    qualifier: Option<String>,
    payload: Bytes,
    asynchronous: bool,
) -> Response {
    let name = crate::routes::header_str(headers, "x-amz-durable-execution-name");
    let input = String::from_utf8_lossy(&payload).into_owned();
    let started = match d
        .start(function, qualifier.as_deref(), name, Some(input))
        .await
    {
        Ok(s) => s,
        Err(e) => return durable_error(e),
    };
    let with_arn = |mut r: Response| {
        if let Ok(v) = http::HeaderValue::from_str(&started.arn) {
            r.headers_mut().insert("x-amz-durable-execution-arn", v);
        }
        r
    };
    if asynchronous {
        return with_arn(StatusCode::ACCEPTED.into_response());
    }
    let record = match d.wait_for_end(&started.arn, SYNC_WAIT).await {
        Ok(r) => r,
        Err(e) => return durable_error(e),
    };
    let execution = &record.journal.operations()[0];
    let mut r = match record.status {
        OperationStatus::Succeeded => {
            let body = execution.result.clone().unwrap_or_else(|| "null".into());
            (StatusCode::OK, body).into_response()
        }
        s if s.is_final() => {
            let error = execution.error.clone().unwrap_or_default();
            let mut r = (
                StatusCode::OK,
                axum::Json(json!({
                    "errorType": error.error_type.unwrap_or_else(|| wire::execution_status(s).into()),
                    "errorMessage": error.error_message.unwrap_or_default(),
                })),
            )
                .into_response();
            r.headers_mut().insert(
                "x-amz-function-error",
                http::HeaderValue::from_static("Unhandled"),
            );
            r
        }
        _ => aws_error(
            StatusCode::REQUEST_TIMEOUT,
            "ServiceException",
            "the durable execution is still running after 15 minutes: invoke with InvocationType Event and follow it with GetDurableExecution",
        ),
    };
    r.headers_mut().insert(
        "x-amz-executed-version",
        http::HeaderValue::from_str(&record.version)
            .unwrap_or(http::HeaderValue::from_static("$LATEST")),
    );
    with_arn(r)
}
