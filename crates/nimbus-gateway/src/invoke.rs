//! The data plane: HTTP routes to HTTP functions, and direct invocation of event functions.
//! Each invocation gets an id (returned as `x-nimbus-invocation-id`) and a record, sent to the
//! group-committing record sink when the guest finishes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use nimbus_core::model::{Outcome, billed_ms};
use nimbus_core::route::RouteMatch;
use nimbus_core::{FunctionKind, InvocationRecord, Trigger};
use nimbus_wasm::{Completion, Event, InvokeError};

use crate::error::ApiError;
use crate::platform::{Deployed, Platform, now_ms};

/// Response header carrying the invocation id.
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";
/// Response header naming the error type of a failed invocation.
pub const ERROR_TYPE_HEADER: &str = "x-nimbus-error-type";
/// Request headers carrying captured route parameters to HTTP functions.
pub const PARAM_HEADER_PREFIX: &str = "x-nimbus-param-";

/// Everything known when an invocation starts; completed into a record when it ends.
struct Pending {
    id: String,
    function: String,
    version: String,
    memory_mb: u32,
    trigger: Trigger,
    start_ms: i64,
    init: Option<Duration>,
}

impl Pending {
    fn new(d: &Deployed, trigger: Trigger, init: Option<Duration>) -> Self {
        let v = &d.active.version;
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            function: v.function.clone(),
            version: v.id.clone(),
            memory_mb: v.config.memory_mb,
            trigger,
            start_ms: now_ms(),
            init,
        }
    }

    fn finish(self, c: Completion) -> InvocationRecord {
        let init_us = self.init.map_or(0, |d| d.as_micros() as u64);
        let duration_us = (c.duration.as_micros() as u64).max(1);
        InvocationRecord {
            id: self.id,
            function: self.function,
            version: self.version,
            trigger: self.trigger,
            start_ms: self.start_ms,
            duration_us,
            billed_ms: billed_ms(duration_us),
            memory_mb: self.memory_mb,
            max_memory_bytes: c.max_memory_bytes,
            cold_start: self.init.is_some(),
            init_us,
            outcome: if c.error.is_some() {
                Outcome::Error
            } else {
                Outcome::Success
            },
            error_type: c.error.as_ref().map(|e| e.kind),
            error_message: c.error.map(|e| e.message),
            logs: c.logs,
        }
    }
}

fn with_id(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(INVOCATION_ID_HEADER, v);
    }
    response
}

fn function_error(e: InvokeError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = ApiError::new(status, e.kind.as_str(), e.message).into_response();
    response
        .headers_mut()
        .insert(ERROR_TYPE_HEADER, HeaderValue::from_static(e.kind.as_str()));
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
    let (loaded, init) = match p.ensure_loaded(&d).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let pending = Pending::new(&d, Trigger::Http { route }, init);
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
    // Bodies without a Content-Length are cut at the limit while streaming.
    let body = http_body_util::Limited::new(body, max).map_err(move |e| {
        if e.is::<http_body_util::LengthLimitError>() {
            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max as u64))
        } else {
            wasmtime_wasi_http::Error::ConnectionTerminated
        }
    });
    let request = http::Request::from_parts(parts, body);
    let sink = p.records.clone();
    let result = p
        .runtime
        .serve_http(&loaded, &d.limits, request, move |c| {
            sink.submit(pending.finish(c))
        })
        .await;
    let response = match result {
        Ok(r) => r.map(Body::new),
        Err(e) => function_error(e),
    };
    with_id(response, &id)
}

fn body_too_large(max: usize) -> Response {
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
pub(crate) async fn invoke(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
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
    let Some(d) = p.snapshot().functions.get(&name).cloned() else {
        return ApiError::not_found(format!("no function named `{name}`")).into_response();
    };
    if d.active.version.kind != FunctionKind::Event {
        return ApiError::bad_request(
            "NotAnEventFunction",
            format!(
                "`{name}` is an HTTP function; call it through its routes: {}",
                d.active
                    .routes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into_response();
    }
    let (loaded, init) = match p.ensure_loaded(&d).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let pending = Pending::new(&d, Trigger::Invoke, init);
    let id = pending.id.clone();
    let event = event_from_headers(&name, &id, &headers, data);
    let (result, completion) = p.runtime.invoke_event(&loaded, &d.limits, event).await;
    p.records.submit(pending.finish(completion));
    let response = match result {
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
    with_id(response, &id)
}
