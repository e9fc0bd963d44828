//! Typed API errors: a status, a stable code and a message that is safe to show.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use nimbus_core::api::{ErrorBody, ErrorDetail};

/// An error answered to a client. Internal details are logged, never sent.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: String,
    /// Message for people.
    pub message: String,
}

impl ApiError {
    /// Any status with a code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
    /// 400 with `code`.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
    /// 500 that hides `detail` from the client and logs it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "internal error; see the server log",
        )
    }
}

impl From<nimbus_core::StoreError> for ApiError {
    fn from(e: nimbus_core::StoreError) -> Self {
        match e {
            nimbus_core::StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "Conflict", m),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}
