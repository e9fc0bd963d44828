//! HTTP routes to process functions: the request becomes an API Gateway HTTP API (payload
//! format 2.0) event and the handler's result is mapped back to the response, as on AWS.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http_body_util::BodyExt;
use nimbus_aws::apigw;
use nimbus_core::Trigger;

use crate::error::ApiError;
use crate::invoke::{body_too_large, function_error, invoke_payload, new_id, with_id};
use crate::platform::{Deployed, Platform, now_ms};

/// Serves `request`, already routed to the process function `d` by `route`.
pub(crate) async fn serve(
    p: &Platform,
    d: &Arc<Deployed>,
    route: String,
    params: Vec<(String, String)>,
    request: Request,
) -> Response {
    let max = p.config.max_body_bytes;
    let source_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "127.0.0.1".to_string(), |c| c.0.ip().to_string());
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return body_too_large(max),
        Err(e) => {
            return ApiError::bad_request("BadRequest", format!("reading the body: {e}"))
                .into_response();
        }
    };
    let id = new_id();
    let event = apigw::event(&apigw::HttpRequest {
        request: nimbus_aws::RawRequest::from_parts(&parts, &body),
        route_key: &route,
        path_parameters: &params,
        request_id: &id,
        source_ip: &source_ip,
        time_ms: now_ms(),
    });
    let invoked = match invoke_payload(
        p,
        d,
        id.clone(),
        Trigger::Http { route },
        event.to_string().into(),
        &parts.headers,
        std::time::Instant::now(),
    )
    .await
    {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let response = match invoked.result {
        Ok(result) => match apigw::response(&result) {
            Ok(r) => {
                let mut response = Response::new(Body::from(r.body));
                *response.status_mut() = r.status;
                *response.headers_mut() = r.headers;
                response
            }
            Err(e) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "BadGateway", e.to_string()).into_response()
            }
        },
        Err(e) => function_error(e),
    };
    with_id(response, &id)
}
