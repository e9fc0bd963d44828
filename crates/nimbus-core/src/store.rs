//! The storage trait. Implementations live in `nimbus-store` (SQLite now, PostgreSQL later) and
//! share one conformance suite.
//!
//! Methods are synchronous and may block on I/O: async callers run them on a blocking pool.
//! Invocation records arrive in batches ([`Store::insert_records`]) so that implementations can
//! group-commit them.

use serde::{Deserialize, Serialize};

use crate::events::EventResources;
use crate::model::{FunctionVersion, InvocationRecord};
use crate::route::RouteSpec;
use crate::usage::{UsageQuery, UsageRow};

/// Errors a store reports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The change would take something another app owns.
    #[error("{0}")]
    Conflict(String),
    /// What the change refers to does not exist (a function, a version).
    #[error("{0}")]
    NotFound(String),
    /// The disk is full.
    #[error("the node's disk is full")]
    Full,
    /// The backend failed; the message is for logs, not for clients.
    #[error("storage backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A backend failure, keeping `e` as the source.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(e.into())
    }
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A function as currently deployed: its active version and routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFunction {
    /// The active version.
    pub version: FunctionVersion,
    /// Routes that invoke it.
    pub routes: Vec<RouteSpec>,
}

/// A published version: an immutable number bound to a content-addressed function version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedVersion {
    /// 1, 2, ... per function.
    pub number: u32,
    /// The code and configuration it runs.
    pub version: FunctionVersion,
    /// Free text.
    pub description: String,
    /// When it was published, unix ms.
    pub published_ms: i64,
}

/// An alias: a name for a published version, optionally sending a share of invocations to a
/// second one (traffic shifting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    /// The function.
    pub function: String,
    /// The alias name (not a number, not `$LATEST`).
    pub name: String,
    /// The version it points at.
    pub version: u32,
    /// A second version and the share of invocations (0 < w < 1) it gets.
    pub additional: Option<(u32, f64)>,
    /// Free text.
    pub description: String,
}

/// A whole app to activate in one atomic step.
#[derive(Debug, Clone)]
pub struct AppDeployment {
    /// App name.
    pub app: String,
    /// Digest of everything deployed (manifest content + artifacts); equal digest = no-op.
    pub digest: String,
    /// Every function of the app with its routes; functions of the app not listed are removed.
    pub functions: Vec<ActiveFunction>,
    /// The app's queues, topics, schedules, triggers and CloudEvents routes (replacing the old).
    pub events: EventResources,
    /// The app's state machines (replacing the old; their `app` is this app).
    pub workflows: Vec<crate::workflow::MachineRecord>,
}

/// One function's captured output, in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Monotonic cursor: pass the last seen `seq` to read only newer entries.
    pub seq: i64,
    /// The invocation that wrote it.
    pub invocation_id: String,
    /// Invocation start, unix ms.
    pub start_ms: i64,
    /// Captured stdout/stderr text.
    pub text: String,
}

/// A secret as listed: its name and when it was last set, never its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// When it was last set, unix ms.
    pub updated_ms: i64,
}

/// A key as stored: what is listed, the sha256 of the key, whether it was revoked, and its
/// AWS-style secret sealed (SigV4 needs the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// What is listed.
    pub info: crate::keys::KeyInfo,
    /// sha256 (hex) of the key.
    pub hash: String,
    /// When it was revoked, unix ms.
    pub revoked_ms: Option<i64>,
    /// Its AWS-style secret access key, sealed.
    pub sealed_aws_secret: Option<Vec<u8>>,
}

/// One entry of the audit log: a control-plane change or a refused call, and who made it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Position in the log (0 when appending).
    pub seq: i64,
    /// When, unix ms.
    pub at_ms: i64,
    /// The caller's key id.
    pub key_id: String,
    /// What was asked, e.g. `POST /v1/apps`.
    pub action: String,
    /// The answer's status.
    pub status: u16,
    /// Why it was refused, if it was.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Persistent state of one Nimbus installation, scoped by tenant.
pub trait Store: Send + Sync + 'static {
    /// The tenant this store reads and writes.
    fn tenant(&self) -> &str;
    /// Every tenant of the node but the default one, by name (node-wide).
    fn tenants(&self) -> Result<Vec<crate::tenant::Tenant>>;
    /// Stores a new tenant, empty (rows an earlier tenant of that name left are deleted);
    /// `false` (and nothing changes) if one of that name exists.
    fn insert_tenant(&self, tenant: &crate::tenant::Tenant) -> Result<bool>;
    /// Deletes a tenant and everything it owns (node-wide); `false` if there was none.
    fn delete_tenant(&self, name: &str) -> Result<bool>;
    /// The artifacts that any tenant's active functions or published versions run
    /// (node-wide: what the runtimes' shared caches must keep).
    fn node_artifacts(&self) -> Result<Vec<String>>;
    /// Stores a new key.
    fn insert_key(&self, key: &StoredKey) -> Result<()>;
    /// Every key, revoked ones included, oldest first.
    fn keys(&self) -> Result<Vec<StoredKey>>;
    /// Revokes key `id`; false when there is no such key or it was revoked.
    fn revoke_key(&self, id: &str) -> Result<bool>;
    /// A function's resource policy (empty when it has none).
    fn function_policy(&self, function: &str) -> Result<Vec<crate::keys::PolicyStatement>>;
    /// Replaces a function's resource policy (empty: none).
    fn put_function_policy(
        &self,
        function: &str,
        statements: &[crate::keys::PolicyStatement],
    ) -> Result<()>;
    /// Appends to the audit log.
    fn append_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// The newest `limit` audit entries, oldest first.
    fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>>;
    /// Sets secret `name` to `sealed` (its value, encrypted by the caller); true when new.
    fn put_secret(&self, name: &str, sealed: &[u8]) -> Result<bool>;
    /// The sealed value of secret `name`.
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Every secret, by name.
    fn secrets(&self) -> Result<Vec<SecretInfo>>;
    /// Deletes secret `name`; false when there was none.
    fn delete_secret(&self, name: &str) -> Result<bool>;
    /// sha256 (hex) of every valid admin API key.
    fn api_key_hashes(&self) -> Result<Vec<String>>;
    /// Stores the hash of a new API key.
    fn insert_api_key(&self, hash_hex: &str) -> Result<()>;

    /// The digest of the app's current deployment, if the app exists.
    fn app_digest(&self, app: &str) -> Result<Option<String>>;
    /// Atomically makes `deployment` the app's current state: all of it or nothing.
    /// Fails with [`StoreError::Conflict`] if a function name belongs to another app.
    fn deploy_app(&self, deployment: &AppDeployment) -> Result<()>;
    /// Removes an app and its functions and routes. Returns whether it existed.
    fn remove_app(&self, app: &str) -> Result<bool>;
    /// Removes one function (and its routes). Returns whether it existed.
    fn remove_function(&self, function: &str) -> Result<bool>;
    /// Every deployed function with its routes.
    fn active_functions(&self) -> Result<Vec<ActiveFunction>>;
    /// Publishes the function's active version as the next number — or returns the latest
    /// published one if it already runs the same code and configuration (as Lambda does).
    /// [`StoreError::NotFound`] if there is no such function.
    fn publish_version(&self, function: &str, description: &str) -> Result<PublishedVersion>;
    /// The function's published versions, oldest first.
    fn published_versions(&self, function: &str) -> Result<Vec<PublishedVersion>>;
    /// Version `id` of `function` as deployed once (deployed versions are kept: durable
    /// executions started on one run on it to their end).
    fn version(&self, function: &str, id: &str) -> Result<Option<FunctionVersion>>;
    /// The artifacts (sha256) every published version of every function runs: kept on disk.
    fn published_artifacts(&self) -> Result<Vec<String>>;
    /// Creates or replaces an alias. [`StoreError::NotFound`] if the function or a version it
    /// names does not exist.
    fn put_alias(&self, alias: &Alias) -> Result<()>;
    /// The function's aliases, by name.
    fn aliases(&self, function: &str) -> Result<Vec<Alias>>;
    /// Deletes an alias; returns whether it existed.
    fn delete_alias(&self, function: &str, name: &str) -> Result<bool>;
    /// Event resources by owner: each app's, and `""` for those created alone.
    fn event_resources(&self) -> Result<Vec<(String, EventResources)>>;
    /// Replaces the event resources of `owner` (an app, or `""` for those created alone, e.g.
    /// to enable a schedule). Fails with [`StoreError::Conflict`] if a name belongs to another.
    fn put_events(&self, owner: &str, events: &EventResources) -> Result<()>;
    /// Names of deployed apps.
    fn apps(&self) -> Result<Vec<String>>;

    /// Appends invocation records in one commit.
    fn insert_records(&self, records: &[InvocationRecord]) -> Result<()>;
    /// The newest `limit` records of a function, newest first.
    fn invocations(&self, function: &str, limit: usize) -> Result<Vec<InvocationRecord>>;
    /// One record by invocation id.
    fn invocation(&self, id: &str) -> Result<Option<InvocationRecord>>;
    /// Usage aggregated from the records: one row per function and time bucket, by bucket then
    /// function. Sums are exact (integers).
    fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>>;
    /// Deletes the records (and so the logs) of invocations that started before `before_ms`,
    /// and the audit entries older than it; returns how many records. Usage history goes with
    /// them.
    fn purge_records(&self, before_ms: i64) -> Result<u64>;
    /// Captured output of a function's invocations with `seq > after`, oldest first.
    fn logs(&self, function: &str, after: i64, limit: usize) -> Result<Vec<LogEntry>>;
    /// The newest `limit` entries of a function's output from invocations that started at or
    /// after `since_ms`, oldest first (what `nimbus logs` shows before it follows).
    fn recent_logs(&self, function: &str, since_ms: i64, limit: usize) -> Result<Vec<LogEntry>>;
}
