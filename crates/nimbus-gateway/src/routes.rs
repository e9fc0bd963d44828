//! The data plane: app routes, and `POST /v1/functions/{name}/invoke`.

use std::sync::Arc;

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use nimbus_core::trace::TraceParent;
use nimbus_core::{EventAttributes, Trigger};
use nimbus_invoker::executor::wasm::{AUTHORIZER_HEADER, default_event_context};
use nimbus_invoker::{
    AsyncRequest, BodyError, HttpRequest, InvocationRequest, Output, Payload, RouteHit,
    RouteLookup, TraceContext, new_id,
};
use serde_json::json;

use crate::error::{ApiError, function_error, public_function_error};
use crate::{Gateway, INVOCATION_ID_HEADER};

/// Request header carrying the W3C trace context.
const TRACEPARENT_HEADER: &str = "traceparent";
/// Header (or `?mode=async`) that makes `POST /v1/functions/{name}/invoke` asynchronous.
const INVOCATION_TYPE_HEADER: &str = "x-nimbus-invocation-type";
/// Header carrying an idempotency key.
pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// No route matches: an AWS client pointed at Nimbus hears, in its own protocol, which operation
/// Nimbus does not serve; anyone else gets a plain 404.
pub(crate) async fn not_found(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let form = header_str(&parts.headers, "content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    // Only a form body is read (for the Query protocol's `Action`), and only its start.
    let body = if form {
        http_body_util::Limited::new(body, 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    } else {
        Bytes::new()
    };
    let (method, path) = (parts.method.as_str(), parts.uri.path());
    let query = parts.uri.query().unwrap_or("");
    let Some(call) = nimbus_aws::unsupported::classify(method, path, query, &parts.headers, &body)
    else {
        return ApiError::not_found(format!("no route matches {method} {path}")).into_response();
    };
    let id = new_id();
    let answer = call.answer(&id);
    let mut r = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::NOT_IMPLEMENTED),
        [(header::CONTENT_TYPE, answer.content_type)],
        answer.body,
    )
        .into_response();
    if let Some(t) = answer.error_type {
        r.headers_mut().insert(
            nimbus_aws::lambda::ERROR_TYPE_HEADER,
            HeaderValue::from_static(t),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// The client context an invoke carries (`X-Amz-Client-Context`, base64 JSON), decoded to the
/// JSON text runtimes receive.
pub(crate) fn client_context(
    headers: &HeaderMap,
) -> Result<Option<String>, nimbus_aws::lambda::ClientContextError> {
    match headers.get("x-amz-client-context") {
        None => Ok(None),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| nimbus_aws::lambda::ClientContextError::Invalid)?;
            nimbus_aws::lambda::decode_client_context(v).map(Some)
        }
    }
}

/// The W3C trace context a request carries, if it is a valid one.
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    TraceParent::parse(header_str(headers, TRACEPARENT_HEADER)?)
}

/// The trace context of a request: `traceparent`, and the X-Ray header.
pub(crate) fn trace_context(headers: &HeaderMap) -> TraceContext {
    TraceContext {
        parent: traceparent(headers),
        xray: header_str(headers, "x-amzn-trace-id").map(str::to_string),
        queued_since_ms: None,
    }
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    header_str(headers, IDEMPOTENCY_HEADER).map(str::to_string)
}

pub(crate) fn with_id(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert(INVOCATION_ID_HEADER, v);
    }
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH.as_str())?
        .parse()
        .ok()
}

/// Who asked: the operator (the key-authenticated invoke API) sees a failure's detail; a public
/// route's caller sees only its type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Operator,
    Public,
}

/// The HTTP answer of a function's output.
fn output_response(
    output: Result<Output, nimbus_invoker::FunctionError>,
    caller: Caller,
) -> Response {
    match output {
        Ok(Output::Http(r)) => r.map(Body::new),
        Ok(Output::Bytes(bytes)) => {
            let ctype = if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
                "application/json"
            } else {
                "application/octet-stream"
            };
            ([(header::CONTENT_TYPE, ctype)], bytes).into_response()
        }
        Ok(Output::BadHttpResponse(m)) => {
            let m = match caller {
                Caller::Operator => m,
                Caller::Public => "the function returned an invalid HTTP response".into(),
            };
            ApiError::new(StatusCode::BAD_GATEWAY, "BadGateway", m).into_response()
        }
        Err(e) if caller == Caller::Public => public_function_error(e),
        Err(e) => function_error(e),
    }
}

/// The fallback handler: everything that is not `/v1/...` is matched against app routes.
pub(crate) async fn serve_route(State(g): State<Arc<Gateway>>, request: Request) -> Response {
    let method = request.method().as_str();
    let path = request.uri().path();
    if crate::stepfunctions::is_call(method, path, request.headers()) {
        return crate::stepfunctions::handle(g, request).await;
    }
    if let Some(answer) = crate::access::preflight(&g, request.headers(), method, path) {
        return answer;
    }
    let hit = match g.invoker.route(method, path) {
        RouteLookup::Found(hit) => hit,
        RouteLookup::MethodNotAllowed { allowed } => {
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
        RouteLookup::NotFound => return not_found(request).await,
    };
    // Routes with CORS rules add their headers to every answer, errors included.
    let Some(cors) = hit.access.as_ref().and_then(|a| a.cors.clone()) else {
        return serve_hit(&g, request, hit).await;
    };
    let origin = header_str(request.headers(), header::ORIGIN.as_str()).map(str::to_string);
    let answer = serve_hit(&g, request, hit).await;
    crate::access::with_cors(answer, &cors, origin.as_deref())
}

/// 429 for a rate limit of `what` (a function, or a route), with `Retry-After`.
fn too_many(what: &str, limited: crate::rate::Limited, wait: std::time::Duration) -> Response {
    let message = match limited {
        crate::rate::Limited::Route(n) => format!("{what} takes {n} requests per second"),
        crate::rate::Limited::Client(n) => {
            format!("{what} takes {n} requests per second from one client")
        }
    };
    ApiError {
        retry_after_s: Some(wait.as_secs().max(1)),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
    }
    .into_response()
}

/// Serves a request to a matched route: size, rate limits, authorizer, then the invocation.
async fn serve_hit(g: &Gateway, request: Request, hit: RouteHit) -> Response {
    let RouteHit {
        function,
        rate_limit,
        client_rate_limit,
        route,
        params,
        qualifier,
        durable,
        access,
    } = hit;
    let max = g.config.max_body_bytes;
    if content_length(request.headers()).is_some_and(|n| n > max as u64) {
        return ApiError::too_large(max as u64).into_response();
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if (rate_limit, client_rate_limit) != (None, None)
        && let Err((limited, wait)) = g.limiter.check(
            &function,
            rate_limit,
            client_rate_limit,
            client.map(|c| c.ip()),
            std::time::Instant::now(),
        )
    {
        return too_many(&format!("`{function}`"), limited, wait);
    }
    if let Some(a) = access.as_deref()
        && (a.rate_limit.is_some() || a.client_rate_limit.is_some())
        && let Err((limited, wait)) = g.limiter.check(
            &format!("{function}\n{route}"),
            a.rate_limit,
            a.client_rate_limit,
            client.map(|c| c.ip()),
            std::time::Instant::now(),
        )
    {
        return too_many(&format!("route `{route}`"), limited, wait);
    }
    let (mut parts, body) = request.into_parts();
    let authorizer = match access {
        Some(access) => {
            match crate::access::authorize(g, &access, &function, &route, &mut parts, client).await
            {
                Ok(context) => context,
                Err(refused) => return refused,
            }
        }
        None => {
            parts.headers.remove(AUTHORIZER_HEADER);
            None
        }
    };
    // HTTP/1.0 may leave out `Host`; a function still sees one. One that is not text is refused.
    match parts.headers.get(header::HOST).map(HeaderValue::to_str) {
        None => {
            parts
                .headers
                .insert(header::HOST, HeaderValue::from_static("localhost"));
        }
        Some(Err(_)) => {
            return ApiError::bad_request(
                "BadRequest",
                "the Host header must be visible ASCII text",
            )
            .into_response();
        }
        Some(Ok(_)) => {}
    }
    // Bodies without a Content-Length are cut at the limit while streaming.
    let body = http_body_util::Limited::new(body, max).map_err(move |e| {
        if e.is::<http_body_util::LengthLimitError>() {
            BodyError::TooLarge { limit: max as u64 }
        } else {
            BodyError::Read(e.to_string())
        }
    });
    let req = InvocationRequest {
        qualifier,
        trace: trace_context(&parts.headers),
        ..InvocationRequest::new(
            function,
            Trigger::Http { route },
            Payload::Http(HttpRequest {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                params,
                client,
                body: nimbus_invoker::Body::stream(body),
                authorizer,
            }),
        )
    };
    // A durable function's route starts an execution: the async HTTP pattern.
    if durable && let Some(d) = g.invoker.durable() {
        return crate::executions::start_from_route(g, d, req).await;
    }
    match g.invoker.invoke(req).await {
        Ok(invocation) => with_id(
            output_response(invocation.output, Caller::Public),
            &invocation.id,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The CloudEvents context binary-mode headers give an event (`ce-id`, `ce-type`, ...,
/// `content-type`); what they leave out is made up as for any invocation.
fn event_attributes(function: &str, id: &str, headers: &HeaderMap) -> EventAttributes {
    let get = |k: &str| header_str(headers, k).map(str::to_string);
    let defaults = default_event_context(function, id);
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
    EventAttributes {
        id: get("ce-id").unwrap_or(defaults.id),
        source: get("ce-source").unwrap_or(defaults.source),
        ty: get("ce-type").unwrap_or(defaults.ty),
        subject: get("ce-subject"),
        time: get("ce-time"),
        datacontenttype: get("content-type"),
        extensions,
    }
}

/// Whether `POST /v1/functions/{name}/invoke` asks for async mode.
fn wants_async(headers: &HeaderMap, query: Option<&str>) -> bool {
    let header = header_str(headers, INVOCATION_TYPE_HEADER)
        .is_some_and(|v| v.eq_ignore_ascii_case("event") || v.eq_ignore_ascii_case("async"));
    header
        || query.is_some_and(|q| {
            q.split('&')
                .any(|kv| kv == "mode=async" || kv == "async=true")
        })
}

/// A 202 naming the accepted invocation.
pub(crate) fn accepted(id: &str) -> Response {
    with_id(
        (StatusCode::ACCEPTED, axum::Json(json!({ "id": id }))).into_response(),
        id,
    )
}

/// `POST /v1/functions/{name}/invoke`: synchronous invocation of an event function. The body is
/// the event data; CloudEvents binary-mode headers (`ce-type`, `ce-source`, ...) set attributes.
/// With `?mode=async` (or `x-nimbus-invocation-type: async`) the event is queued durably and
/// the answer is 202 with the invocation id.
pub(crate) async fn invoke(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    data: Result<Bytes, BytesRejection>,
) -> Response {
    let data = match data {
        Ok(d) => d,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::too_large(g.config.max_body_bytes as u64).into_response();
        }
        Err(r) => return ApiError::bad_request("BadRequest", r.body_text()).into_response(),
    };
    let client_context = match client_context(&headers) {
        Ok(c) => c,
        Err(e) => {
            return ApiError::bad_request("InvalidClientContext", e.to_string()).into_response();
        }
    };
    // `?qualifier=`: a published version, an alias, or `$LATEST` (the default).
    let qualifier = query
        .as_deref()
        .and_then(|q| nimbus_aws::unsupported::form_value(q, "qualifier"));
    if wants_async(&headers, query.as_deref()) {
        let accepted_id = g
            .invoker
            .accept_async(AsyncRequest {
                function: name,
                qualifier,
                payload: data,
                idempotency_key: idempotency_key(&headers),
                trace: traceparent(&headers),
            })
            .await;
        return match accepted_id {
            Ok(id) => accepted(&id),
            Err(e) => ApiError::from(e).into_response(),
        };
    }
    let id = new_id();
    let attributes = event_attributes(&name, &id, &headers);
    let req = InvocationRequest {
        id,
        qualifier,
        trace: trace_context(&headers),
        client_context,
        ..InvocationRequest::new(
            name,
            Trigger::Invoke,
            Payload::Event {
                data,
                attributes: Some(attributes),
            },
        )
    };
    match g.invoker.invoke(req).await {
        Ok(invocation) => with_id(
            output_response(invocation.output, Caller::Operator),
            &invocation.id,
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_mode_headers_become_typed_attributes() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-type", "order.created"),
            ("ce-subject", "o-1"),
            ("ce-traceparent", "00-x"),
            ("ce-specversion", "1.0"),
            ("content-type", "application/json"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let a = event_attributes("f", "id-1", &h);
        assert_eq!(
            (a.id.as_str(), a.source.as_str()),
            ("id-1", "/v1/functions/f")
        );
        assert_eq!(a.ty, "order.created");
        assert_eq!(a.subject.as_deref(), Some("o-1"));
        assert_eq!(a.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(a.extensions, [("traceparent".into(), "00-x".into())]);
        assert_eq!(
            event_attributes("f", "id-1", &HeaderMap::new()),
            default_event_context("f", "id-1")
        );
    }

    #[test]
    fn async_mode_is_asked_by_header_or_query() {
        let mut h = HeaderMap::new();
        assert!(!wants_async(&h, None));
        assert!(wants_async(&h, Some("a=1&mode=async")));
        h.insert(INVOCATION_TYPE_HEADER, HeaderValue::from_static("Event"));
        assert!(wants_async(&h, None));
    }
}
