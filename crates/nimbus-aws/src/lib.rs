//! AWS wire compatibility for Nimbus, so that unmodified AWS clients and handlers work.
//!
//! Pure logic, no I/O:
//! - [`sigv4`]: verifies Signature Version 4 `Authorization` headers (what boto3 and every AWS
//!   SDK sends) against secrets Nimbus issued.
//! - [`apigw`]: the API Gateway HTTP API payload format 2.0 event for an HTTP request, and the
//!   mapping of a handler's result back to an HTTP response.
//! - [`lambda`]: ARNs, function-error bodies and AWS JSON error shapes.

pub mod apigw;
pub mod lambda;
pub mod sigv4;
