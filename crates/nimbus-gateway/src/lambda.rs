//! The AWS Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`), so AWS SDKs
//! (boto3's `lambda.invoke`, the AWS CLI, ...) call Nimbus functions unmodified. Requests must be
//! SigV4-signed with credentials Nimbus issued; errors use the shapes AWS SDKs parse.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use nimbus_aws::{lambda, sigv4};
use nimbus_core::Trigger;
use nimbus_core::model::ErrorType;

use crate::invoke::{invoke_payload, new_id};
use crate::platform::{Platform, now_ms};

/// How many bytes of an invocation's log `X-Amz-Log-Type: Tail` returns (as Lambda).
pub const LOG_TAIL_BYTES: usize = 4096;

/// An AWS-shaped error response.
fn aws_error(status: StatusCode, aws_type: &str, message: &str) -> Response {
    let mut r = (status, axum::Json(lambda::error_body(aws_type, message))).into_response();
    if let Ok(v) = HeaderValue::from_str(aws_type) {
        r.headers_mut().insert(lambda::ERROR_TYPE_HEADER, v);
    }
    r
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let max = p.config.max_body_bytes;
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
    let signed = nimbus_aws::RawRequest::from_parts(&parts, &body);
    if let Err(e) = sigv4::verify(&signed, |key| p.aws_secret(key), now_ms() / 1000) {
        return aws_error(StatusCode::FORBIDDEN, e.aws_type(), &e.to_string());
    }

    let (function, path_qualifier) = lambda::parse_function_name(&name);
    let qualifier = query
        .get("Qualifier")
        .map(String::as_str)
        .or(path_qualifier);
    let arn = lambda::function_arn(p.process_runtime().region(), function);
    let not_found = || {
        aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {arn}"),
        )
    };
    let Some(d) = p.snapshot().functions.get(function).cloned() else {
        return not_found();
    };
    let version = &d.active.version;
    let executed = match qualifier {
        None | Some("$LATEST") => "$LATEST".to_string(),
        Some(q) if q.len() >= 8 && version.id.starts_with(q) => version.short_id().to_string(),
        Some(q) => {
            return aws_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                &format!(
                    "Function not found: {arn}:{q} (the active version is {})",
                    version.short_id()
                ),
            );
        }
    };
    let asynchronous = match header_str(&parts.headers, "x-amz-invocation-type")
        .unwrap_or("RequestResponse")
    {
        "RequestResponse" => false,
        "DryRun" => return StatusCode::NO_CONTENT.into_response(),
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
    let payload = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        body
    };
    if asynchronous {
        return match crate::events::invoke_async(
            &p,
            &d.active.version.function,
            &parts.headers,
            payload,
        )
        .await
        {
            Ok(id) => {
                let mut r = StatusCode::ACCEPTED.into_response();
                for name in ["x-amzn-requestid", crate::invoke::INVOCATION_ID_HEADER] {
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        r.headers_mut().insert(name, v);
                    }
                }
                r
            }
            Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => {
                aws_error(e.status, "RequestEntityTooLargeException", &e.message)
            }
            Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
                aws_error(e.status, "TooManyRequestsException", &e.message)
            }
            Err(e) if e.status.is_client_error() => {
                aws_error(e.status, "InvalidParameterValueException", &e.message)
            }
            Err(e) => aws_error(e.status, "ServiceException", &e.message),
        };
    }
    let tail = header_str(&parts.headers, "x-amz-log-type") == Some("Tail");
    let since = std::time::Instant::now();
    let invoked = match invoke_payload(
        &p,
        &d,
        new_id(),
        Trigger::Invoke,
        payload,
        &parts.headers,
        since,
    )
    .await
    {
        Ok(i) => i,
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
            return aws_error(e.status, "TooManyRequestsException", &e.message);
        }
        Err(e) if e.status.is_client_error() => {
            return aws_error(e.status, "InvalidParameterValueException", &e.message);
        }
        Err(e) => return aws_error(e.status, "ServiceException", &e.message),
    };
    let mut response = match invoked.result {
        Ok(result) => (StatusCode::OK, result).into_response(),
        Err(e) if e.kind == ErrorType::Throttled => aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            &e.message,
        ),
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
        ("x-amz-executed-version", executed),
        ("x-amzn-requestid", invoked.id.clone()),
        (crate::invoke::INVOCATION_ID_HEADER, invoked.id),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    if tail {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(log_tail(&invoked.logs, LOG_TAIL_BYTES));
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
