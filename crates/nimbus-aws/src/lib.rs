//! AWS wire compatibility for Nimbus, so that unmodified AWS clients and handlers work.
//!
//! Pure logic, no I/O:
//! - [`sigv4`]: verifies Signature Version 4 `Authorization` headers (what boto3 and every AWS
//!   SDK sends) against secrets Nimbus issued.
//! - [`apigw`]: the API Gateway HTTP API payload format 2.0 event for an HTTP request, and the
//!   mapping of a handler's result back to an HTTP response.
//! - [`lambda`]: ARNs, function-error bodies and AWS JSON error shapes.
//! - [`events`]: SQS, SNS and EventBridge event shapes, partial batch responses, and
//!   async-invocation destination records.
//! - [`unsupported`]: the answer, in the caller's own protocol, to an AWS call Nimbus does not
//!   serve ([`lambda_ops`] names every Lambda operation).

pub mod apigw;
pub mod events;
pub mod lambda;
pub mod lambda_ops;
pub mod sigv4;
pub mod unsupported;

/// An HTTP request exactly as received: what signatures cover and what events carry.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path as received (still percent-encoded).
    pub raw_path: &'a str,
    /// Query string as received, without `?`.
    pub raw_query: &'a str,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

impl<'a> RawRequest<'a> {
    /// The request whose head is `parts` and whose (collected) body is `body`.
    pub fn from_parts(parts: &'a http::request::Parts, body: &'a [u8]) -> Self {
        Self {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body,
        }
    }
}
