//! The AWS Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`), so AWS SDKs
//! (boto3's `lambda.invoke`, the AWS CLI, ...) call Nimbus functions unmodified. Requests must be
//! SigV4-signed with credentials Nimbus issued; errors use the shapes AWS SDKs parse.

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use nimbus_aws::{lambda, sigv4};
use nimbus_core::Trigger;
use nimbus_core::api::FunctionInfo;
use nimbus_core::clock::now_ms;
use nimbus_core::keys::{Permission, Principal};
use nimbus_invoker::{
    AdmissionError, AsyncRequest, InvocationRequest, InvokeError, Output, Payload, VersionError,
};
use serde_json::json;

use crate::Gateway;
use crate::INVOCATION_ID_HEADER;
use crate::routes::{client_context, header_str, idempotency_key, trace_context, traceparent};

/// How many bytes of an invocation's log `X-Amz-Log-Type: Tail` returns (as Lambda).
pub const LOG_TAIL_BYTES: usize = 4096;

/// An AWS-shaped error response.
pub(crate) fn aws_error(status: StatusCode, aws_type: &str, message: &str) -> Response {
    let mut r = (status, axum::Json(lambda::error_body(aws_type, message))).into_response();
    if let Ok(v) = HeaderValue::from_str(aws_type) {
        r.headers_mut().insert(lambda::ERROR_TYPE_HEADER, v);
    }
    r
}

/// The AWS error answer to an invocation that was not run. `arn` names the function as asked.
pub(crate) fn invoke_error(e: InvokeError, arn: &str) -> Response {
    let status = match &e {
        InvokeError::NotFound(_) => {
            return aws_error(
                StatusCode::NOT_FOUND,
                e.aws_type(),
                &format!("Function not found: {arn}"),
            );
        }
        InvokeError::VersionNotFound {
            qualifier, active, ..
        } => {
            return aws_error(
                StatusCode::NOT_FOUND,
                e.aws_type(),
                &format!("Function not found: {arn}:{qualifier} (the active version is {active})"),
            );
        }
        InvokeError::Admission(AdmissionError::Usage(_))
        | InvokeError::Prepare(_)
        | InvokeError::Events(_)
        | InvokeError::EventsUnavailable(_)
        | InvokeError::Stopping => {
            // Logged with its detail; the client gets a safe message.
            let api = crate::ApiError::from(e);
            return aws_error(api.status, "ServiceException", &api.message);
        }
        InvokeError::Admission(a) => {
            use nimbus_aws::lambda::ThrottleReason as Reason;
            let reason = match a {
                AdmissionError::Throttled {
                    reason: nimbus_invoker::ThrottleReason::Tenant,
                    ..
                } => Reason::ConcurrentInvocationLimitExceeded,
                AdmissionError::Throttled { .. } => {
                    Reason::ReservedFunctionConcurrentInvocationLimitExceeded
                }
                _ => Reason::CallerRateLimitExceeded,
            };
            // A used-up quota frees at the month's end: no retry soon, no Retry-After.
            let retry_after = a.retry_after().map(|d| d.as_secs().max(1));
            let body = lambda::throttle_body(reason, &a.to_string(), retry_after.unwrap_or(0));
            let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            let h = r.headers_mut();
            h.insert(
                lambda::ERROR_TYPE_HEADER,
                HeaderValue::from_static("TooManyRequestsException"),
            );
            if let Some(s) = retry_after {
                h.insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            return r;
        }
        InvokeError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        InvokeError::NotAnEventFunction { .. }
        | InvokeError::NotAnHttpFunction(_)
        | InvokeError::InvalidPayload(_)
        | InvokeError::Body(_) => StatusCode::BAD_REQUEST,
    };
    aws_error(status, e.aws_type(), &e.to_string())
}

/// Checks a Lambda API request's SigV4 signature against the credentials Nimbus issued: the
/// key behind them.
pub(crate) fn signer(
    g: &Gateway,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Principal, Box<Response>> {
    signer_for(g, "lambda", parts, body)
}

/// [`signer`] for a request signed for `service` (`states`, say).
pub(crate) fn signer_for(
    g: &Gateway,
    service: &'static str,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Principal, Box<Response>> {
    let signed = nimbus_aws::RawRequest::from_parts(parts, body);
    let scope = sigv4::Scope {
        service,
        region: g.invoker.region(),
        unsigned_payload: false,
    };
    let access_key_id = sigv4::verify(
        &signed,
        scope,
        |key| g.invoker.access().aws_secret(key),
        now_ms() / 1000,
    )
    .map_err(|e| {
        Box::new(aws_error(
            StatusCode::FORBIDDEN,
            e.aws_type(),
            &e.to_string(),
        ))
    })?;
    g.invoker
        .access()
        .aws_principal(&access_key_id, now_ms())
        .map_err(|e| {
            Box::new(aws_error(
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                &e.to_string(),
            ))
        })
}

fn access_denied(denied: &nimbus_core::keys::Denied) -> Box<Response> {
    Box::new(aws_error(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        &denied.to_string(),
    ))
}

/// Checks a Lambda API request's signature, then that the key behind it may do `need` (a
/// permission, and the function it concerns).
pub(crate) fn verify(
    g: &Gateway,
    parts: &http::request::Parts,
    body: &[u8],
    need: (Permission, Option<&str>),
) -> Result<(), Box<Response>> {
    signer(g, parts, body)?
        .check(need.0, need.1)
        .map_err(|d| access_denied(&d))
}

/// Checks an `Invoke`'s signature, then that its key may invoke `function`: by its role and
/// scope, or by the function's resource policy.
async fn verify_invoke(
    g: &Gateway,
    parts: &http::request::Parts,
    body: &[u8],
    function: &str,
) -> Result<(), Box<Response>> {
    let principal = signer(g, parts, body)?;
    match principal.check(Permission::FunctionsInvoke, Some(function)) {
        Ok(()) => Ok(()),
        Err(_) if g.invoker.granted_by_policy(&principal, function).await => Ok(()),
        Err(d) => Err(access_denied(&d)),
    }
}

/// A read of the Lambda control plane: the request (signed, no body) and its `{name}`.
pub(crate) async fn control_read(
    g: &Gateway,
    request: Request,
) -> Result<http::request::Parts, Box<Response>> {
    let (parts, _body) = request.into_parts();
    verify(g, &parts, b"", (Permission::FunctionsRead, None))?;
    Ok(parts)
}

pub(crate) fn configuration(g: &Gateway, f: &FunctionInfo, version: &str) -> serde_json::Value {
    let facts = lambda::FunctionFacts {
        name: &f.name,
        runtime: &f.runtime,
        handler: f.handler.as_deref(),
        memory_mb: f.memory_mb,
        timeout_ms: f.timeout_ms,
        modified_ms: f.created_at_ms,
        revision: &f.version,
        app: &f.app,
    };
    lambda::function_configuration(g.invoker.region(), &facts, version)
}

/// The function `name` (a name or ARN) with its qualifier resolved — `$LATEST`, a published
/// version, an alias (its primary version), or a deployed version id prefix — or Lambda's 404.
async fn resolve(
    g: &Gateway,
    name: &str,
    query: &HashMap<String, String>,
) -> Result<(FunctionInfo, String), Box<Response>> {
    let (function, path_qualifier) = lambda::parse_function_name(name);
    let qualifier = query
        .get("Qualifier")
        .map(String::as_str)
        .or(path_qualifier);
    let arn = lambda::function_arn(g.invoker.region(), function);
    let not_found = |what: &str| {
        Box::new(aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {what}"),
        ))
    };
    let info = g
        .invoker
        .function(function)
        .ok_or_else(|| not_found(&arn))?;
    let Some(q) = qualifier.filter(|q| *q != "$LATEST") else {
        return Ok((info, "$LATEST".into()));
    };
    let number = match q.parse::<u32>() {
        Ok(n) => Some(n),
        Err(_) => g
            .invoker
            .aliases(function)
            .await
            .map_err(|e| Box::new(version_error(e)))?
            .into_iter()
            .find(|a| a.name == q)
            .map(|a| a.version),
    };
    match number {
        Some(n) => g
            .invoker
            .published_versions(function)
            .await
            .map_err(|e| Box::new(version_error(e)))?
            .into_iter()
            .find(|p| p.number == n)
            .map(|p| (FunctionInfo::from(&p.version), n.to_string()))
            .ok_or_else(|| not_found(&format!("{arn}:{q}"))),
        None => {
            let version = g
                .invoker
                .executed_version(function, Some(q))
                .map_err(|e| Box::new(invoke_error(e, &arn)))?;
            Ok((info, version))
        }
    }
}

/// The Lambda error answer to a failed version or alias operation.
pub(crate) fn version_error(e: VersionError) -> Response {
    match e {
        VersionError::NotFound(m) => {
            aws_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", &m)
        }
        VersionError::Invalid(m) => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &m,
        ),
        VersionError::Conflict(m) => {
            aws_error(StatusCode::CONFLICT, "ResourceConflictException", &m)
        }
        VersionError::Store(e) => {
            let api = crate::ApiError::from(e);
            aws_error(api.status, "ServiceException", &api.message)
        }
    }
}

/// `GET /2015-03-31/functions/`: `ListFunctions`, paged by `Marker` / `MaxItems` (1–10,000,
/// default 50) as the Lambda API pages it.
pub(crate) async fn list_functions(
    State(g): State<Arc<Gateway>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = control_read(&g, request).await {
        return *refused;
    }
    let max = match query.get("MaxItems").map(|m| m.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "MaxItems must be an integer from 1 to 10000",
            );
        }
    };
    let marker = query.get("Marker").map(String::as_str).unwrap_or("");
    let all = g.invoker.functions();
    let page: Vec<_> = all
        .iter()
        .filter(|f| f.name.as_str() > marker)
        .take(max)
        .collect();
    let mut body = json!({
        "Functions": page.iter().map(|f| configuration(&g, f, "$LATEST")).collect::<Vec<_>>(),
    });
    if let Some(last) = page.last()
        && page.len() == max
        && all.iter().any(|f| f.name > last.name)
    {
        body["NextMarker"] = json!(last.name);
    }
    axum::Json(body).into_response()
}

/// `GET /2015-03-31/functions/{name}`: `GetFunction`.
pub(crate) async fn get_function(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = control_read(&g, request).await {
        return *refused;
    }
    match resolve(&g, &name, &query).await {
        Ok((f, version)) => axum::Json(json!({
            "Configuration": configuration(&g, &f, &version),
            "Tags": { "nimbus:app": f.app },
        }))
        .into_response(),
        Err(r) => *r,
    }
}

/// `GET /2015-03-31/functions/{name}/configuration`: `GetFunctionConfiguration`.
pub(crate) async fn get_function_configuration(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if let Err(refused) = control_read(&g, request).await {
        return *refused;
    }
    match resolve(&g, &name, &query).await {
        Ok((f, version)) => axum::Json(configuration(&g, &f, &version)).into_response(),
        Err(r) => *r,
    }
}

/// The last `max` bytes of `log`, starting on a character boundary.
pub fn log_tail(log: &str, max: usize) -> &str {
    let mut start = log.len().saturating_sub(max);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

/// `POST /2015-03-31/functions/{name}/invocations`.
pub(crate) async fn invoke(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let max = g.config.max_body_bytes;
    let body: Bytes = match http_body_util::Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return aws_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                &format!(
                    "Request must be smaller than {max} bytes for the InvokeFunction operation"
                ),
            );
        }
    };
    let (function, path_qualifier) = lambda::parse_function_name(&name);
    if let Err(refused) = verify_invoke(&g, &parts, &body, function).await {
        return *refused;
    }

    let qualifier = query
        .get("Qualifier")
        .map(String::as_str)
        .or(path_qualifier)
        .map(str::to_string);
    let arn = lambda::function_arn(g.invoker.region(), function);
    let asynchronous = match header_str(&parts.headers, "x-amz-invocation-type")
        .unwrap_or("RequestResponse")
    {
        "RequestResponse" => false,
        "DryRun" => {
            return match g.invoker.executed_version(function, qualifier.as_deref()) {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => invoke_error(e, &arn),
            };
        }
        "Event" => true,
        other => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("InvocationType `{other}` is not one of RequestResponse, Event, DryRun"),
            );
        }
    };
    if !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json: the payload must be JSON",
        );
    }
    let client_context = match client_context(&parts.headers) {
        Ok(c) => c,
        Err(e) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContentException",
                &e.to_string(),
            );
        }
    };
    let payload = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    if let Some(d) = g.invoker.durable()
        && d.is_durable(function, qualifier.as_deref())
    {
        return crate::durable::invoke(
            d,
            &parts.headers,
            function,
            qualifier,
            payload,
            asynchronous,
        )
        .await;
    }
    if asynchronous {
        let accepted = g
            .invoker
            .accept_async(AsyncRequest {
                function: function.to_string(),
                qualifier,
                payload,
                idempotency_key: idempotency_key(&parts.headers),
                trace: traceparent(&parts.headers),
            })
            .await;
        return match accepted {
            Ok(id) => {
                let mut r = StatusCode::ACCEPTED.into_response();
                for name in ["x-amzn-requestid", INVOCATION_ID_HEADER] {
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        r.headers_mut().insert(name, v);
                    }
                }
                r
            }
            Err(e) => invoke_error(e, &arn),
        };
    }
    let tail = header_str(&parts.headers, "x-amz-log-type") == Some("Tail");
    let req = InvocationRequest {
        qualifier,
        trace: trace_context(&parts.headers),
        client_context,
        ..InvocationRequest::new(function, Trigger::Invoke, Payload::data(payload))
    };
    let invocation = match g.invoker.invoke(req).await {
        Ok(i) => i,
        Err(e) => return invoke_error(e, &arn),
    };
    let mut response = match invocation.output {
        Ok(Output::Bytes(result)) => (StatusCode::OK, result).into_response(),
        Ok(other) => {
            tracing::error!(output = ?other, "an event invocation answered with HTTP");
            aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "the function answered with an HTTP response",
            )
        }
        Err(e) => {
            let mut r = (StatusCode::OK, e.doc).into_response();
            r.headers_mut().insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            r
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in [
        (
            "x-amz-executed-version",
            invocation.executed_version.as_ref(),
        ),
        ("x-amzn-requestid", invocation.id.as_str()),
        (INVOCATION_ID_HEADER, invocation.id.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    if tail {
        let logs = invocation.logs.unwrap_or_default();
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(log_tail(&logs, LOG_TAIL_BYTES));
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            headers.insert("x-amz-log-result", v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(log_tail("abcdef", 3), "def");
        assert_eq!(log_tail("ab", 10), "ab");
        assert_eq!(log_tail("aé", 1), "");
        assert_eq!(log_tail("aéb", 2), "b");
    }
}
