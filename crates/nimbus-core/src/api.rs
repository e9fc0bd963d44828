//! JSON bodies of the `/v1` REST API, shared by the gateway (server) and `nimbus-client`.
//! `docs/openapi.yaml` describes the same shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{FunctionKind, FunctionVersion, InvocationRecord};
use crate::store::ActiveFunction;

/// `POST /v1/apps`: deploy an app. Artifacts are uploaded first with `PUT /v1/artifacts/{sha256}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The `nimbus.toml` text.
    pub manifest: String,
    /// Each function `source` path in the manifest → sha256 of the uploaded artifact.
    pub artifacts: BTreeMap<String, String>,
}

/// The answer to a deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployResponse {
    /// App name.
    pub app: String,
    /// False when the same content was already deployed (nothing changed).
    pub changed: bool,
    /// The app's functions as now deployed.
    pub functions: Vec<FunctionInfo>,
}

/// A deployed function, as `nimbus ls` and `nimbus show` present it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// Function name.
    pub name: String,
    /// Owning app.
    pub app: String,
    /// Active version id.
    pub version: String,
    /// HTTP or event function.
    pub kind: FunctionKind,
    /// `wasm`, `python`, `node` or `provided`.
    pub runtime: String,
    /// Process runtimes: the handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Process runtimes: most sandboxes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Instances kept warm (0: scales to zero).
    pub min_instances: u32,
    /// Invocations one instance serves at once (process runtimes: 1).
    pub concurrency_per_instance: u32,
    /// How idle instances are reclaimed (the keep-alive policy and its current window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
    /// Process runtimes: the isolation its sandboxes get on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// Its instances on this node right now: sandboxes, or the wasm function's loaded
    /// component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<InstanceCounts>,
    /// Memory limit, MiB.
    pub memory_mb: u32,
    /// Timeout, ms.
    pub timeout_ms: u64,
    /// Routes, e.g. `GET /hello/{name}`.
    pub routes: Vec<String>,
    /// Names (not values) of configured environment variables.
    pub env: Vec<String>,
    /// Environment variables whose values are secrets: variable → secret name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub secrets: std::collections::BTreeMap<String, String>,
    /// Outbound HTTP allow-list.
    pub allowed_hosts: Vec<String>,
    /// When the version was first deployed, unix ms.
    pub created_at_ms: i64,
}

/// A function's instances on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceCounts {
    /// Warm and waiting.
    pub idle: usize,
    /// Running at least one invocation.
    pub busy: usize,
    /// Started (sandboxes started, components loaded) since the version was deployed or the
    /// server started.
    pub started: u64,
    /// Invocations running on them.
    #[serde(default)]
    pub running: usize,
}

impl From<&FunctionVersion> for FunctionInfo {
    fn from(v: &FunctionVersion) -> Self {
        Self {
            name: v.function.clone(),
            app: v.app.clone(),
            version: v.id.clone(),
            kind: v.kind,
            runtime: v.config.runtime.as_str().into(),
            handler: v.config.handler.clone(),
            max_concurrency: if v.config.runtime.is_process() {
                Some(v.config.max_concurrency())
            } else {
                v.config.max_concurrency
            },
            min_instances: v.config.min_instances,
            concurrency_per_instance: v.config.concurrency_per_instance(),
            keep_alive: None,
            isolation: None,
            instances: None,
            memory_mb: v.config.memory_mb,
            timeout_ms: v.config.timeout_ms,
            routes: Vec::new(),
            env: v.config.env.keys().cloned().collect(),
            secrets: v.config.secrets.clone(),
            allowed_hosts: v.config.allowed_hosts.clone(),
            created_at_ms: v.created_at_ms,
        }
    }
}

impl From<&ActiveFunction> for FunctionInfo {
    fn from(f: &ActiveFunction) -> Self {
        Self {
            routes: f.routes.iter().map(ToString::to_string).collect(),
            ..FunctionInfo::from(&f.version)
        }
    }
}

/// Every error body of the API: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `InvalidManifest`, `Function.Timeout`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Nimbus version.
    pub version: String,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
    /// Deployed functions.
    pub functions: usize,
    /// Components compiled since start.
    pub compiled: u64,
    /// Components loaded from the compiled cache since start.
    pub loaded_from_cache: u64,
    /// The isolation process sandboxes get on this node.
    #[serde(default)]
    pub isolation: String,
    /// The AWS region the node's ARNs and SigV4 scopes name.
    #[serde(default)]
    pub region: String,
    /// The caller's tenant.
    #[serde(default)]
    pub tenant: String,
    /// Where the tenant's routes are served on any host (`/tenants/NAME`; empty for the
    /// default tenant, whose routes are at the root).
    #[serde(default)]
    pub route_prefix: String,
}

/// An invocation as `GET /v1/invocations/{id}` shows it: an async invocation from the ledger
/// (queued, running, succeeded, failed or dead-lettered), or a synchronous one from its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationStatus {
    /// Invocation id.
    pub id: String,
    /// The function.
    pub function: String,
    /// `queued`, `running`, `succeeded`, `failed` or `dead-lettered`.
    pub status: String,
    /// Attempts started.
    pub attempts: u32,
    /// Accepted at, unix ms.
    pub accepted_ms: i64,
    /// Settled at, unix ms (absent while not settled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    /// Next attempt not before, unix ms (queued for a retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    /// The result of a success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error of the last attempt of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    /// The record of the (last) attempt, once written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<InvocationRecord>,
}
