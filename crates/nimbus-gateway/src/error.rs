//! Typed API errors (a status, a stable code and a message that is safe to show), and the one
//! place where the invoker's typed errors become HTTP statuses.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use nimbus_core::StoreError;
use nimbus_core::api::{ErrorBody, ErrorDetail};
use nimbus_events::EventError;
use nimbus_invoker::{
    AdmissionError, DeployError, EventsUnavailable, FunctionError, InvokeError, KeyError,
    ResourceError, SecretsError,
};

/// Response header naming the error type of a failed invocation.
pub const ERROR_TYPE_HEADER: &str = "x-nimbus-error-type";

/// An error answered to a client. Internal details are logged, never sent.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: String,
    /// Message for people.
    pub message: String,
    /// Seconds after which a retry can succeed (`Retry-After`).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// Any status with a code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            retry_after_s: None,
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
    /// 500 that hides `detail` from the client and logs it (with its sources).
    pub fn internal(detail: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = detail.to_string();
        let mut source = detail.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "internal error; see the server log",
        )
    }
    /// 507: the node's disk is full (writes are refused; reads go on).
    pub fn disk_full() -> Self {
        ApiError {
            retry_after_s: Some(30),
            ..Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "InsufficientStorage",
                "the node's disk is full: writes are refused until space is freed; reads, \
                 receives and deletes still work",
            )
        }
    }

    /// 413 for a body over `limit` bytes.
    pub fn too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request body is larger than the {limit}-byte limit"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "Conflict", m),
            StoreError::NotFound(m) => Self::not_found(m),
            StoreError::Full => ApiError::disk_full(),
            other => Self::internal(&other),
        }
    }
}

impl From<nimbus_invoker::VersionError> for ApiError {
    fn from(e: nimbus_invoker::VersionError) -> Self {
        use nimbus_invoker::VersionError;
        match e {
            VersionError::NotFound(m) => ApiError::not_found(m),
            VersionError::Invalid(m) => ApiError::bad_request("InvalidRequest", m),
            VersionError::Conflict(m) => Self::new(StatusCode::CONFLICT, "Conflict", m),
            VersionError::Store(e) => e.into(),
        }
    }
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::NotFound(m) => ApiError::not_found(m),
            EventError::Invalid(m) => ApiError::bad_request("InvalidRequest", m),
            EventError::TooLarge(m) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", m)
            }
            EventError::Full => ApiError::disk_full(),
            other @ EventError::Backend(_) => ApiError::internal(&other),
        }
    }
}

impl From<EventsUnavailable> for ApiError {
    fn from(e: EventsUnavailable) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "EventsUnavailable",
            e.to_string(),
        )
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> Self {
        match &e {
            AdmissionError::Quota(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "QuotaExceeded",
                e.to_string(),
            ),
            AdmissionError::Throttled { .. } => ApiError {
                retry_after_s: e.retry_after().map(|d| d.as_secs().max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    nimbus_core::ErrorType::Throttled.as_str(),
                    e.to_string(),
                )
            },
            AdmissionError::Usage(_) => ApiError::internal(&e),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        match e {
            InvokeError::NotFound(_) | InvokeError::VersionNotFound { .. } => {
                ApiError::not_found(e.to_string())
            }
            InvokeError::NotAnEventFunction { .. } => {
                ApiError::bad_request("NotAnEventFunction", e.to_string())
            }
            InvokeError::NotAnHttpFunction(_) => {
                ApiError::bad_request("NotAnHttpFunction", e.to_string())
            }
            InvokeError::InvalidPayload(_) => {
                ApiError::bad_request("InvalidRequestContent", e.to_string())
            }
            InvokeError::Admission(a) => a.into(),
            InvokeError::PayloadTooLarge { limit } => ApiError::too_large(limit),
            InvokeError::Body(b) => ApiError::bad_request("BadRequest", b.to_string()),
            InvokeError::Events(ev) => ev.into(),
            InvokeError::EventsUnavailable(u) => u.into(),
            InvokeError::Stopping => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
            InvokeError::Prepare(_) => ApiError::internal(&e),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Manifest(_) | DeployError::References(_) => {
                ApiError::bad_request("InvalidManifest", e.to_string())
            }
            DeployError::RoutesOnEventFunction { .. } => {
                ApiError::bad_request("InvalidManifest", e.to_string())
            }
            DeployError::MissingArtifact { .. } | DeployError::ArtifactNotUploaded { .. } => {
                ApiError::bad_request("MissingArtifact", e.to_string())
            }
            DeployError::InvalidArtifact { .. } => {
                ApiError::bad_request("InvalidArtifact", e.to_string())
            }
            DeployError::RouteConflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "RouteConflict", e.to_string())
            }
            DeployError::Secret {
                source: SecretsError::NotFound(_),
                ..
            } => ApiError::bad_request("MissingSecret", e.to_string()),
            DeployError::Secret {
                source: SecretsError::Store(s),
                ..
            } => s.into(),
            DeployError::Secret { .. } => ApiError::internal(&e),
            DeployError::BadArtifact(a) => ApiError::bad_request("BadArtifact", a.to_string()),
            // As Lambda's CodeStorageExceededException (400).
            DeployError::StorageLimit { .. } => {
                ApiError::bad_request("CodeStorageExceeded", e.to_string())
            }
            DeployError::Store(s) => s.into(),
            DeployError::ArtifactStorage(nimbus_store_error)
                if is_storage_full(&nimbus_store_error) =>
            {
                ApiError::disk_full()
            }
            DeployError::ArtifactStorage(_) | DeployError::Task(_) => ApiError::internal(&e),
        }
    }
}

/// Whether an error comes from a full disk.
fn is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl From<nimbus_invoker::TenancyError> for ApiError {
    fn from(e: nimbus_invoker::TenancyError) -> Self {
        use nimbus_invoker::TenancyError as E;
        match e {
            E::Invalid(e) => ApiError::bad_request("InvalidRequest", e.to_string()),
            E::Exists(_) => ApiError::new(StatusCode::CONFLICT, "TenantExists", e.to_string()),
            E::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "TenantNotFound", e.to_string()),
            E::DomainTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, "DomainTaken", e.to_string())
            }
            E::Store(e) => e.into(),
            E::Open { .. } | E::Files { .. } => ApiError::internal(&e),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::InvalidRequest(_) => ApiError::bad_request("InvalidRequest", e.to_string()),
            KeyError::NotFound(_) => ApiError::not_found(e.to_string()),
            KeyError::Store(s) => s.into(),
            KeyError::NoSealer => ApiError::internal(&e),
        }
    }
}

impl From<SecretsError> for ApiError {
    fn from(e: SecretsError) -> Self {
        match e {
            SecretsError::InvalidName(_) | SecretsError::BadValue => {
                ApiError::bad_request("InvalidSecret", e.to_string())
            }
            SecretsError::NotFound(_) => ApiError::not_found(e.to_string()),
            SecretsError::InUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, "SecretInUse", e.to_string())
            }
            SecretsError::NotConfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SecretsUnavailable",
                e.to_string(),
            ),
            SecretsError::Store(s) => s.into(),
            SecretsError::Sealed { .. } => ApiError::internal(&e),
        }
    }
}

impl From<ResourceError> for ApiError {
    fn from(e: ResourceError) -> Self {
        match e {
            ResourceError::Invalid(_) => ApiError::bad_request("InvalidResource", e.to_string()),
            ResourceError::NotFound { .. } => ApiError::not_found(e.to_string()),
            ResourceError::DeclaredByApp { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            ResourceError::Store(s) => s.into(),
            ResourceError::Events(ev) => ev.into(),
            ResourceError::EventsUnavailable(u) => u.into(),
            ResourceError::Task(_) | ResourceError::Metrics(_) => ApiError::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.clone(),
                message: self.message,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if self.code == nimbus_core::ErrorType::Throttled.as_str() {
            r.headers_mut().insert(
                ERROR_TYPE_HEADER,
                HeaderValue::from_static(nimbus_core::ErrorType::Throttled.as_str()),
            );
        }
        if let Some(s) = self.retry_after_s {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The response a public route's caller gets when the function failed: the error type and a
/// pointer to the record, never the function's own error text (stack traces, paths, messages
/// written for the operator). The record and logs keep the detail.
pub fn public_function_error(mut e: FunctionError) -> Response {
    use nimbus_core::ErrorType;
    // Only the function's own words are hidden; the platform's (timeouts, limits, throttles)
    // are safe and useful to any caller.
    if matches!(
        e.kind,
        ErrorType::Handled | ErrorType::Init | ErrorType::Trap | ErrorType::RuntimeExit
    ) {
        e.message = format!(
            "the function failed ({}); its invocation record and logs have the detail",
            e.kind.as_str()
        );
    }
    function_error(e)
}

/// The response to a function that ran and failed: its error type's status, the type in
/// `x-nimbus-error-type` and the body's code.
pub fn function_error(e: FunctionError) -> Response {
    let status =
        StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = ApiError {
        // A runtime out of room (the wasm instance pool) is worth a retry soon.
        retry_after_s: (e.kind == nimbus_core::ErrorType::Throttled).then_some(1),
        ..ApiError::new(status, e.kind.as_str(), e.message)
    }
    .into_response();
    response
        .headers_mut()
        .insert(ERROR_TYPE_HEADER, HeaderValue::from_static(e.kind.as_str()));
    response
}

impl From<nimbus_invoker::durable::DurableError> for ApiError {
    fn from(e: nimbus_invoker::durable::DurableError) -> Self {
        use nimbus_invoker::durable::DurableError as D;
        match e {
            D::NotFound(m) => ApiError::not_found(m),
            D::Invalid(m) => ApiError::bad_request("InvalidRequest", m),
            D::Journal(j) => ApiError::new(StatusCode::CONFLICT, "Conflict", j.to_string()),
            D::CallbackTimedOut(id) => ApiError::new(
                StatusCode::CONFLICT,
                "CallbackTimedOut",
                format!("callback {id} timed out"),
            ),
            D::AlreadyStarted(m) => ApiError::new(StatusCode::CONFLICT, "AlreadyStarted", m),
            D::Invoke(i) => i.into(),
            other => ApiError::internal(&other),
        }
    }
}
