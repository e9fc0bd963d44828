//! Route access at the HTTP edge: CORS preflights answered for routes with CORS rules, CORS
//! headers on their answers, and each route's authorizer (a JWT, or a function's decision)
//! checked before the request becomes an invocation. The decisions are `nimbus_core::access`'s
//! and `nimbus_access`'s; the statuses are chosen here.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use nimbus_access::JwtOutcome;
use nimbus_access::function::{self, Decision};
use nimbus_core::Trigger;
use nimbus_core::access::{Cors, FunctionAuthorizer, IdentitySource, RouteAccess, RouteAuth};
use nimbus_core::keys::Permission;
use nimbus_invoker::executor::wasm::AUTHORIZER_HEADER;
use nimbus_invoker::{InvocationRequest, Output, Payload, RouteHit, RouteLookup};
use serde_json::Value;

use crate::Gateway;
use crate::error::ApiError;
use crate::rate::PlanLimited;
use crate::routes::header_str;

/// A request's `Origin`, when it is a cross-origin one.
fn origin(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, header::ORIGIN.as_str())
}

/// Adds `cors`'s headers for the request's origin (if it sent one) to `response`.
pub(crate) fn with_cors(mut response: Response, cors: &Cors, origin: Option<&str>) -> Response {
    if let Some(origin) = origin {
        for (name, value) in cors.response_headers(origin) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                if name == "vary" {
                    response.headers_mut().append(name, v);
                } else {
                    response.headers_mut().insert(name, v);
                }
            }
        }
    }
    response
}

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) to a route with CORS rules; `None` for any other request,
/// which goes on to the routes.
pub(crate) fn preflight(
    g: &Gateway,
    parts_headers: &HeaderMap,
    method: &str,
    path: &str,
) -> Option<Response> {
    if method != "OPTIONS" {
        return None;
    }
    let origin = origin(parts_headers)?;
    let requested = header_str(parts_headers, "access-control-request-method")?;
    let RouteLookup::Found(RouteHit {
        access: Some(access),
        ..
    }) = g.invoker.route(requested.trim(), path)
    else {
        return None;
    };
    let cors = access.cors.as_ref()?;
    let answer = cors.preflight(
        origin,
        requested,
        header_str(parts_headers, "access-control-request-headers"),
    );
    Some(match answer {
        Ok(headers) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    r.headers_mut().append(name, v);
                }
            }
            r
        }
        Err(refusal) => {
            ApiError::new(StatusCode::FORBIDDEN, "CorsRefused", refusal.to_string()).into_response()
        }
    })
}

/// A refusal: 401 (who are you?) or 403 (not you), with the API Gateway `WWW-Authenticate`
/// for bearer tokens.
fn denied(status: StatusCode, code: &'static str, message: String, bearer: bool) -> Response {
    let mut r = ApiError::new(status, code, message.clone()).into_response();
    if bearer {
        let error = if status == StatusCode::FORBIDDEN {
            "insufficient_scope"
        } else {
            "invalid_token"
        };
        let value = format!(
            "Bearer error=\"{error}\", error_description=\"{}\"",
            message.replace('"', "'")
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    r
}

/// Checks the caller of a route: what the authorizer said of it (for the function), or the
/// refusal to send. A client's own `x-nimbus-authorizer` header is dropped first.
pub(crate) async fn authorize(
    g: &Gateway,
    access: &RouteAccess,
    function: &str,
    route: &str,
    parts: &mut Parts,
    client: Option<std::net::SocketAddr>,
) -> Result<Option<Value>, Response> {
    parts.headers.remove(AUTHORIZER_HEADER);
    match &access.auth {
        RouteAuth::None => Ok(None),
        RouteAuth::ApiKey => api_key(g, function, parts).await.map(Some).map_err(|r| *r),
        RouteAuth::Jwt { authorizer, scopes } => {
            let token = match &authorizer.identity_source {
                IdentitySource::Header(name) => {
                    header_str(&parts.headers, name).map(str::to_string)
                }
                IdentitySource::Query(name) => query_param(parts.uri.query().unwrap_or(""), name),
            };
            match g
                .authorizers
                .check_jwt(authorizer, scopes, token.as_deref())
                .await
            {
                Ok(JwtOutcome::Allowed(verified)) => Ok(Some(verified.context())),
                Ok(JwtOutcome::Denied(e)) if e.is_forbidden() => Err(denied(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    e.to_string(),
                    true,
                )),
                Ok(JwtOutcome::Denied(e)) => Err(denied(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    e.to_string(),
                    true,
                )),
                Err(e) => {
                    tracing::warn!(route, error = %e, "JWT authorizer unavailable");
                    Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "AuthorizerUnavailable",
                        format!(
                            "the authorizer `{}` cannot check tokens right now",
                            authorizer.name
                        ),
                    )
                    .into_response())
                }
            }
        }
        RouteAuth::Function { authorizer } => {
            let decision = decide(g, authorizer, route, parts, client).await?;
            if decision.allowed {
                Ok(Some(decision.authorizer_context()))
            } else {
                Err(denied(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!("the authorizer `{}` denied this request", authorizer.name),
                    false,
                ))
            }
        }
    }
}

/// Header carrying a Nimbus API key on routes with `auth = "api_key"` (as on API Gateway).
const API_KEY_HEADER: &str = "x-api-key";

/// A route that takes API keys: the key (taken out of the request the function sees) must be
/// valid, allowed to invoke `function`, and within its usage plan.
async fn api_key(g: &Gateway, function: &str, parts: &mut Parts) -> Result<Value, Box<Response>> {
    let key = parts
        .headers
        .remove(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok().map(|s| s.trim().to_string()))
        .ok_or_else(|| {
            Box::new(denied(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "this route takes an API key in the x-api-key header".into(),
                false,
            ))
        })?;
    let now_ms = nimbus_core::clock::now_ms();
    let principal = g.invoker.access().authenticate(&key, now_ms).map_err(|e| {
        denied(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            e.to_string(),
            false,
        )
    })?;
    if let Err(d) = principal.check(Permission::FunctionsInvoke, Some(function))
        && !g.invoker.granted_by_policy(&principal, function).await
    {
        return Err(Box::new(denied(
            StatusCode::FORBIDDEN,
            "Forbidden",
            d.to_string(),
            false,
        )));
    }
    if let Some(plan) = &principal.plan
        && let Err((limited, wait)) =
            g.key_limiter
                .check(&principal.key_id, plan, std::time::Instant::now(), now_ms)
    {
        let message = match limited {
            PlanLimited::Rate(n) => {
                format!("key {} takes {n} requests per second", principal.key_id)
            }
            PlanLimited::Quota(n) => format!(
                "key {} has used its quota of {n} requests this {}",
                principal.key_id,
                match plan.period {
                    nimbus_core::keys::QuotaPeriod::Day => "day",
                    nimbus_core::keys::QuotaPeriod::Week => "week",
                    nimbus_core::keys::QuotaPeriod::Month => "month",
                }
            ),
        };
        return Err(Box::new(
            ApiError {
                retry_after_s: Some(wait.as_secs().max(1)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
            }
            .into_response(),
        ));
    }
    Ok(serde_json::json!({ "apiKey": { "id": principal.key_id, "role": principal.role } }))
}

/// The decision of a function authorizer: cached by identity, or asked of the function.
async fn decide(
    g: &Gateway,
    authorizer: &FunctionAuthorizer,
    route: &str,
    parts: &Parts,
    client: Option<std::net::SocketAddr>,
) -> Result<Arc<Decision>, Response> {
    let query = parts.uri.query().unwrap_or("");
    let identity = function::identity(
        authorizer,
        |name| header_str(&parts.headers, name).map(str::to_string),
        |name| query_param(query, name),
    )
    .ok_or_else(|| {
        denied(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!(
                "the request lacks the identity the authorizer `{}` needs",
                authorizer.name
            ),
            false,
        )
    })?;
    if let Some(d) = g.authorizers.cached_decision(authorizer, &identity) {
        return Ok(d);
    }
    let id = nimbus_invoker::new_id();
    let request_event = nimbus_aws::apigw::event(&nimbus_aws::apigw::HttpRequest {
        request: nimbus_aws::RawRequest::from_parts(parts, &[]),
        route_key: route,
        path_parameters: &[],
        request_id: &id,
        source_ip: &client.map_or_else(|| "127.0.0.1".to_string(), |c| c.ip().to_string()),
        time_ms: nimbus_core::clock::now_ms() as i64,
        authorizer: None,
    });
    let route_arn = format!(
        "arn:aws:execute-api:{}:{}:nimbus/$default/{}",
        g.invoker.region(),
        nimbus_aws::lambda::ACCOUNT_ID,
        route.replacen(' ', "", 1)
    );
    let event = function::event(request_event, &route_arn, &identity);
    let failed = |detail: String| {
        tracing::warn!(authorizer = %authorizer.name, function = %authorizer.function, %detail, "authorizer failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "AuthorizerFailed",
            format!(
                "the authorizer `{}` failed to decide; see the logs of `{}`",
                authorizer.name, authorizer.function
            ),
        )
        .into_response()
    };
    let request = InvocationRequest::new(
        authorizer.function.clone(),
        Trigger::Authorizer {
            route: route.to_string(),
        },
        Payload::data(event.to_string()),
    );
    let answer = match g.invoker.invoke(request).await {
        Ok(inv) => match inv.output {
            Ok(Output::Bytes(b)) => b,
            Ok(_) => return Err(failed("answered with an HTTP response".into())),
            Err(e) => return Err(failed(e.to_string())),
        },
        Err(e) => return Err(failed(e.to_string())),
    };
    let decision = Arc::new(function::decision(&answer).map_err(|e| failed(e.to_string()))?);
    g.authorizers
        .remember_decision(authorizer, identity, decision.clone());
    Ok(decision)
}

/// The first value of query parameter `name` (form-decoded).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k) == name).then(|| decode(v))
    })
}
