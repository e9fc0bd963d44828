//! A pause limit on request bodies: a body that sends nothing for the timeout fails. Bodies
//! that are already complete (most GETs) are left as they are, at no cost.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use http_body::Body as _;
use tower::util::MapRequestLayer;
use tower_http::timeout::TimeoutBody;

/// The layer: wraps every request body that is still to come.
pub(crate) fn layer(timeout: Duration) -> MapRequestLayer<impl Fn(Request) -> Request + Clone> {
    MapRequestLayer::new(move |request: Request| {
        if request.body().is_end_stream() {
            request
        } else {
            request.map(|body| Body::new(TimeoutBody::new(timeout, body)))
        }
    })
}
