//! The invoker's errors. Each says what went wrong in the caller's terms; none carries an HTTP
//! status (the gateway chooses those).

use std::time::Duration;

use nimbus_core::manifest::Problem;
use nimbus_core::route::RouteConflict;
use nimbus_core::{ManifestError, StoreError};
use nimbus_events::EventError;
use nimbus_store::artifacts::ArtifactError;

use crate::executor::PrepareError;
use crate::request::BodyError;

/// Why an invocation was not run (a function that ran and failed is a
/// [`crate::FunctionError`] in the [`crate::Invocation`] instead).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// No such function.
    #[error("no function named `{0}`")]
    NotFound(String),
    /// The qualifier names no version of the function.
    #[error("function `{function}` has no version `{qualifier}` (the active version is {active})")]
    VersionNotFound {
        /// The function.
        function: String,
        /// The qualifier asked for.
        qualifier: String,
        /// The active version's short id.
        active: String,
    },
    /// An event for an HTTP function (a wasm component exporting the proxy world).
    #[error("`{function}` is an HTTP function; call it through its routes: {routes}")]
    NotAnEventFunction {
        /// The function.
        function: String,
        /// Its routes, comma-separated.
        routes: String,
    },
    /// An HTTP request for a wasm event function.
    #[error("`{0}` is an event function; it does not serve HTTP requests")]
    NotAnHttpFunction(String),
    /// Refused by admission (quota, concurrency).
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// The event is not what the function's runtime takes (process runtimes take JSON).
    #[error("{0}")]
    InvalidPayload(String),
    /// The payload is over a size limit.
    #[error("the payload is larger than the {limit}-byte limit")]
    PayloadTooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// The request body could not be read.
    #[error(transparent)]
    Body(BodyError),
    /// The function's code could not be made ready on this node.
    #[error("the function cannot be started on this node: {0}")]
    Prepare(#[source] PrepareError),
    /// Accepting an asynchronous invocation failed.
    #[error(transparent)]
    Events(#[from] EventError),
    /// The event engine is not running on this node.
    #[error(transparent)]
    EventsUnavailable(#[from] EventsUnavailable),
    /// The node is shutting down.
    #[error("the node is stopping")]
    Stopping,
}

impl From<BodyError> for InvokeError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => InvokeError::PayloadTooLarge { limit },
            other => InvokeError::Body(other),
        }
    }
}

impl InvokeError {
    /// The error's name in AWS Lambda's vocabulary, for callers that speak it (the event
    /// engine's failure records, the Lambda API).
    pub fn aws_type(&self) -> &'static str {
        match self {
            InvokeError::NotFound(_) | InvokeError::VersionNotFound { .. } => {
                "ResourceNotFoundException"
            }
            InvokeError::Admission(AdmissionError::Throttled { .. }) => "TooManyRequestsException",
            InvokeError::Admission(AdmissionError::Quota(_)) => "TooManyRequestsException",
            InvokeError::PayloadTooLarge { .. } => "RequestTooLargeException",
            InvokeError::NotAnEventFunction { .. }
            | InvokeError::NotAnHttpFunction(_)
            | InvokeError::Body(_) => "InvalidParameterValueException",
            InvokeError::InvalidPayload(_) => "InvalidRequestContentException",
            InvokeError::Admission(AdmissionError::Usage(_))
            | InvokeError::Prepare(_)
            | InvokeError::Events(_)
            | InvokeError::EventsUnavailable(_)
            | InvokeError::Stopping => "ServiceException",
        }
    }
}

/// The event engine is not running on this node.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the event engine is not running on this node")]
pub struct EventsUnavailable;

/// Which concurrency limit was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// The function's `max_concurrency` (or a wasm instance's `concurrency_per_instance`).
    Function,
    /// The tenant's concurrency limit, shared by all its functions.
    Tenant,
}

impl std::fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ThrottleReason::Function => "it is at its max_concurrency",
            ThrottleReason::Tenant => "the tenant is at its concurrency limit",
        })
    }
}

/// A monthly quota that is used up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuotaKind {
    /// Invocations per month.
    Requests(u64),
    /// GB-seconds per month.
    GbSeconds(f64),
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaKind::Requests(n) => write!(f, "the monthly quota of {n} requests is used up"),
            QuotaKind::GbSeconds(n) => {
                write!(f, "the monthly quota of {n} GB-seconds is used up")
            }
        }
    }
}

/// Why admission refused an invocation.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// A monthly quota is used up.
    #[error("{0}; it resets at the start of next month (UTC)")]
    Quota(QuotaKind),
    /// A concurrency limit stayed full for the whole wait.
    #[error(
        "`{function}` was not run: {reason} and no slot freed up within {} ms; retry later",
        waited.as_millis()
    )]
    Throttled {
        /// The function.
        function: String,
        /// The limit that was full.
        reason: ThrottleReason,
        /// How long the invocation waited.
        waited: Duration,
    },
    /// Usage could not be read to check the quota.
    #[error("reading usage for the quota: {0}")]
    Usage(#[source] StoreError),
}

impl AdmissionError {
    /// When a caller may try again, if a retry can succeed soon.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AdmissionError::Throttled { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// Why publishing a version or changing an alias changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// No such function, version or alias.
    #[error("{0}")]
    NotFound(String),
    /// A bad alias name, version or weight.
    #[error("{0}")]
    Invalid(String),
    /// The alias exists (create) or does not (update).
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for VersionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::NotFound(m),
            other => Self::Store(other),
        }
    }
}

/// Why a deploy (or an artifact upload) changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The manifest is not valid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A function's source was not uploaded with the deploy.
    #[error("functions.{function}.source: no artifact was uploaded for `{source_path}`")]
    MissingArtifact {
        /// The function.
        function: String,
        /// Its `source`.
        source_path: String,
    },
    /// The named artifact is not on the server.
    #[error(
        "functions.{function}.source: artifact {sha256} (`{source_path}`) is not on the server; upload it first"
    )]
    ArtifactNotUploaded {
        /// The function.
        function: String,
        /// Its `source`.
        source_path: String,
        /// The artifact's sha256.
        sha256: String,
    },
    /// The artifact is not runnable as that function.
    #[error("functions.{function}.source: {source}")]
    InvalidArtifact {
        /// The function.
        function: String,
        /// Why.
        #[source]
        source: PrepareError,
    },
    /// HTTP routes on a wasm event function.
    #[error(
        "functions.{function}.triggers: HTTP routes need an HTTP function (a component exporting \
         wasi:http/incoming-handler), but `{source_path}` is an event function"
    )]
    RoutesOnEventFunction {
        /// The function.
        function: String,
        /// Its `source`.
        source_path: String,
    },
    /// A route is taken by another app's function.
    #[error(transparent)]
    RouteConflict(#[from] RouteConflict),
    /// The app's event resources name functions, queues or topics that would not exist.
    #[error("{}", ManifestError::Invalid(.0.clone()))]
    References(Vec<Problem>),
    /// A secret the function's env names cannot be given to it.
    #[error("functions.{function}.env: {source}")]
    Secret {
        /// The function.
        function: String,
        /// Why.
        #[source]
        source: crate::secrets::SecretsError,
    },
    /// An uploaded artifact is refused (its bytes do not hash to its name, say).
    #[error(transparent)]
    BadArtifact(ArtifactError),
    /// The artifact store failed.
    #[error(transparent)]
    ArtifactStorage(ArtifactError),
    /// The upload would take the tenant's stored code past its storage limit.
    #[error(
        "code storage limit: {used} bytes stored + {size} uploaded > {limit} (remove unused \
         apps or versions; unused uploads are deleted within the hour)"
    )]
    StorageLimit {
        /// The limit, bytes.
        limit: u64,
        /// Stored now, bytes.
        used: u64,
        /// The upload's size.
        size: u64,
    },
    /// The store refused or failed (a name owned by another app is a conflict).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A deploy step's task failed.
    #[error("a deploy task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<ArtifactError> for DeployError {
    fn from(e: ArtifactError) -> Self {
        match e {
            ArtifactError::Io(_) => DeployError::ArtifactStorage(e),
            other => DeployError::BadArtifact(other),
        }
    }
}

/// Why a change to queues, topics or schedules changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The resource is not valid, or names what does not exist.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// No such resource.
    #[error("no {kind} named `{name}`")]
    NotFound {
        /// `queue`, `topic` or `schedule`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The resource belongs to an app's manifest.
    #[error("{kind} `{name}` is declared by an app; change it in that app's nimbus.toml")]
    DeclaredByApp {
        /// `queue`, `topic` or `schedule`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event engine failed.
    #[error(transparent)]
    Events(#[from] EventError),
    /// The event engine is not running on this node.
    #[error(transparent)]
    EventsUnavailable(#[from] EventsUnavailable),
    /// A task failed.
    #[error("a task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The metrics could not be rendered.
    #[error("rendering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
