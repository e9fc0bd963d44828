//! [`Invoker`]: the node's invocation layer, composed of its live state ([`Live`]),
//! admission, finishing and credentials. Every public operation of the crate is a method here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::api::{DeployRequest, DeployResponse, FunctionInfo, InvocationStatus, Status};
use nimbus_core::clock::now_ms;
use nimbus_core::events::{MAX_MESSAGE_BYTES, ResourceKind};
use nimbus_core::store::{Alias, PublishedVersion};
use nimbus_core::trace::{Phase, TraceParent, phase};
use nimbus_core::{FunctionKind, Store, StoreError};
use nimbus_events::{Engine, EngineConfig};
use nimbus_log::MessageLog;
use nimbus_store::artifacts::ArtifactError;
use nimbus_store::{ArtifactStore, RecordSink};
use serde_json::Value;

use crate::access::Access;
use crate::admission::{Admission, Quota};
use crate::engine::Invoke;
use crate::error::{DeployError, EventsUnavailable, InvokeError, ResourceError, VersionError};
use crate::executor::{BoxFuture, Executors, Finish, Job, PrepareError};
use crate::finish::{Finisher, Pending};
use crate::live::{Live, Put, Removal, RouteLookup};
use crate::metrics::Metrics;
use crate::request::{Body, Invocation, InvocationRequest, Payload};
use crate::secrets::{SecretListing, SecretsError};

/// Settings of the invoker.
#[derive(Debug, Clone)]
pub struct InvokerConfig {
    /// Monthly quotas (invocations past them are refused).
    pub quota: Quota,
    /// How long an invocation waits for a concurrency slot (capped at its timeout).
    pub throttle_wait: Duration,
    /// Invocations running at once across all the tenant's functions (`None`: unlimited).
    pub tenant_concurrency: Option<usize>,
    /// Bytes of uploaded code the tenant may keep (`None`: unlimited).
    pub storage_bytes: Option<u64>,
    /// Where invocation traces go (disabled by default).
    pub telemetry: nimbus_telemetry::Telemetry,
    /// The region in ARNs.
    pub region: String,
    /// Where durable functions' sandboxes reach the node's API, and what their credentials
    /// and checkpoint tokens derive from (`None`: no durable functions).
    pub durable: Option<DurableEndpoint>,
}

/// How durable functions reach the durable execution API.
#[derive(Clone)]
pub struct DurableEndpoint {
    /// The node's listener (an unspecified address is reached on loopback).
    pub api: std::net::SocketAddr,
    /// The tenant's durable secret (tokens, callback ids, credentials).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for DurableEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableEndpoint")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl DurableEndpoint {
    /// The loopback address a sandbox reaches the node at (what its forwarder serves).
    pub fn loopback(&self) -> std::net::SocketAddr {
        let ip = if self.api.ip().is_unspecified() || !self.api.ip().is_loopback() {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            self.api.ip()
        };
        std::net::SocketAddr::new(ip, self.api.port())
    }
}

impl Default for InvokerConfig {
    fn default() -> Self {
        Self {
            quota: Quota::default(),
            throttle_wait: Duration::from_secs(10),
            tenant_concurrency: None,
            storage_bytes: None,
            telemetry: nimbus_telemetry::Telemetry::disabled(),
            region: "us-east-1".into(),
            durable: None,
        }
    }
}

/// What an invoker is built from.
pub struct InvokerParts {
    /// Functions, routes, records, event resources.
    pub store: Arc<dyn Store>,
    /// Uploaded artifacts.
    pub artifacts: ArtifactStore,
    /// Where invocation records go (group-committed).
    pub records: RecordSink,
    /// The runtimes.
    pub executors: Executors,
    /// Who may call: API keys (from the store) and the AWS-style credentials Nimbus issued.
    pub aws_credentials: HashMap<String, String>,
    /// Seals and opens secrets (`None`: the node has no secrets key; functions cannot use
    /// secrets).
    pub sealer: Option<nimbus_secrets::Sealer>,
}

/// The node's invocation layer. See the crate documentation.
pub struct Invoker {
    pub(crate) live: Live,
    pub(crate) config: InvokerConfig,
    admission: Admission,
    finisher: Arc<Finisher>,
    access: Access,
    started: Instant,
    /// Serialises changes to functions' resource policies (read, change, write).
    policy_lock: tokio::sync::Mutex<()>,
    /// Serialises uploads under a storage limit (measure, then write).
    upload_lock: tokio::sync::Mutex<()>,
    /// The durable execution engine, once started.
    durable: std::sync::OnceLock<Arc<crate::durable::Durable>>,
}

/// An asynchronous invocation to accept: queued durably, run later by the event engine.
#[derive(Debug, Clone)]
pub struct AsyncRequest {
    /// The function.
    pub function: String,
    /// As in [`InvocationRequest::qualifier`].
    pub qualifier: Option<String>,
    /// The event.
    pub payload: Bytes,
    /// A repeat with the same key within the dedup window is not accepted again.
    pub idempotency_key: Option<String>,
    /// The caller's trace context, continued by the invocation's trace.
    pub trace: Option<TraceParent>,
}

/// When an invocation began waiting: now, or (an event from the log) when it was accepted.
fn waiting_since(queued_since_ms: Option<i64>) -> Instant {
    let waited = queued_since_ms.map_or(0, |at| (now_ms() - at).max(0) as u64);
    Instant::now()
        .checked_sub(Duration::from_millis(waited))
        .unwrap_or_else(Instant::now)
}

impl Invoker {
    /// Builds the invoker from stored state. Deployed functions are restored cold: each
    /// prepares itself on first use.
    pub fn new(parts: InvokerParts, config: InvokerConfig) -> Result<Arc<Self>, StoreError> {
        let metrics = Arc::new(Metrics::new().map_err(StoreError::backend)?);
        let access = Access::load(
            parts.store.clone(),
            parts.aws_credentials,
            parts.sealer.clone(),
            config.durable.as_ref().map(|d| d.secret.clone()),
        )?;
        let admission = Admission::new(
            parts.store.clone(),
            config.quota.clone(),
            config.tenant_concurrency,
            config.throttle_wait,
            metrics.clone(),
        );
        Ok(Arc::new(Self {
            live: Live::restore(
                parts.store.clone(),
                parts.artifacts,
                parts.executors,
                crate::secrets::Secrets::new(parts.store, parts.sealer, config.durable.clone()),
            )?,
            admission,
            finisher: Arc::new(Finisher {
                records: parts.records,
                metrics,
            }),
            config,
            access,
            started: Instant::now(),
            policy_lock: tokio::sync::Mutex::new(()),
            upload_lock: tokio::sync::Mutex::new(()),
            durable: std::sync::OnceLock::new(),
        }))
    }

    /// Who may call.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The store, for reads (records, logs, usage, apps).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.live.store
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.finisher.metrics
    }

    /// The region in ARNs.
    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// The node's runtimes.
    pub fn executors(&self) -> &Executors {
        &self.live.executors
    }

    /// The node's status: deployed functions and what the runtimes have done since start.
    pub fn status(&self) -> Status {
        let mut status = Status {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            functions: self.live.snapshot().functions.len(),
            compiled: 0,
            loaded_from_cache: 0,
            isolation: String::new(),
            region: self.region().to_string(),
            tenant: self.store().tenant().to_string(),
            route_prefix: nimbus_core::tenant::route_prefix(self.store().tenant()),
        };
        for executor in self.live.executors.all() {
            executor.report(&mut status);
        }
        status
    }

    /// Which function serves `method path`.
    pub fn route(&self, method: &str, path: &str) -> RouteLookup {
        self.live.route(method, path)
    }

    /// Every deployed function as the API presents it (sorted by name).
    pub fn functions(&self) -> Vec<FunctionInfo> {
        self.live.functions()
    }

    /// One deployed function as the API presents it.
    pub fn function(&self, name: &str) -> Option<FunctionInfo> {
        self.live.function(name)
    }

    /// Publishes `function`'s deployed code and configuration as its next version (or returns
    /// the latest one if nothing changed since).
    pub async fn publish_version(
        &self,
        function: &str,
        description: &str,
    ) -> Result<PublishedVersion, VersionError> {
        let (store, f, d) = (
            self.live.store.clone(),
            function.to_string(),
            description.to_string(),
        );
        Ok(
            tokio::task::spawn_blocking(move || store.publish_version(&f, &d))
                .await
                .map_err(|e| VersionError::Store(StoreError::backend(e)))??,
        )
    }

    /// `function`'s published versions, oldest first ([`VersionError::NotFound`] if there is no
    /// such function).
    pub async fn published_versions(
        &self,
        function: &str,
    ) -> Result<Vec<PublishedVersion>, VersionError> {
        self.require_function(function)?;
        let (store, f) = (self.live.store.clone(), function.to_string());
        Ok(
            tokio::task::spawn_blocking(move || store.published_versions(&f))
                .await
                .map_err(|e| VersionError::Store(StoreError::backend(e)))??,
        )
    }

    /// `function`'s aliases, by name.
    pub async fn aliases(&self, function: &str) -> Result<Vec<Alias>, VersionError> {
        self.require_function(function)?;
        let (store, f) = (self.live.store.clone(), function.to_string());
        Ok(tokio::task::spawn_blocking(move || store.aliases(&f))
            .await
            .map_err(|e| VersionError::Store(StoreError::backend(e)))??)
    }

    /// Writes an alias after checking its name, versions and weight; `mode` says whether it
    /// must not exist yet (Lambda's CreateAlias), must exist (UpdateAlias), or either.
    pub async fn put_alias(&self, alias: Alias, mode: AliasWrite) -> Result<Alias, VersionError> {
        check_alias(&alias)?;
        if mode != AliasWrite::Upsert {
            let exists = self
                .aliases(&alias.function)
                .await?
                .iter()
                .any(|a| a.name == alias.name);
            let (function, name) = (&alias.function, &alias.name);
            match (mode, exists) {
                (AliasWrite::Create, true) => {
                    return Err(VersionError::Conflict(format!(
                        "Alias already exists: {function}:{name}"
                    )));
                }
                (AliasWrite::Update, false) => {
                    return Err(VersionError::NotFound(format!(
                        "Alias not found: {function}:{name}"
                    )));
                }
                _ => {}
            }
        } else {
            self.require_function(&alias.function)?;
        }
        let (store, a) = (self.live.store.clone(), alias.clone());
        tokio::task::spawn_blocking(move || store.put_alias(&a))
            .await
            .map_err(|e| VersionError::Store(StoreError::backend(e)))??;
        Ok(alias)
    }

    /// Deletes an alias; returns whether it existed.
    pub async fn delete_alias(&self, function: &str, name: &str) -> Result<bool, VersionError> {
        self.require_function(function)?;
        let (store, f, n) = (
            self.live.store.clone(),
            function.to_string(),
            name.to_string(),
        );
        Ok(
            tokio::task::spawn_blocking(move || store.delete_alias(&f, &n))
                .await
                .map_err(|e| VersionError::Store(StoreError::backend(e)))??,
        )
    }

    fn require_function(&self, function: &str) -> Result<(), VersionError> {
        match self.live.snapshot().functions.contains_key(function) {
            true => Ok(()),
            false => Err(VersionError::NotFound(format!(
                "no function named `{function}`"
            ))),
        }
    }

    /// Stores an uploaded artifact after checking its hash.
    pub async fn put_artifact(&self, sha256: String, bytes: Bytes) -> Result<(), DeployError> {
        let artifacts: ArtifactStore = self.live.artifacts.clone();
        let Some(limit) = self.config.storage_bytes else {
            return Ok(tokio::task::spawn_blocking(move || artifacts.put(&sha256, &bytes)).await??);
        };
        let _upload = self.upload_lock.lock().await;
        tokio::task::spawn_blocking(move || {
            if artifacts.contains(&sha256) {
                return Ok(());
            }
            let used = artifacts.total_bytes().map_err(ArtifactError::Io)?;
            let size = bytes.len() as u64;
            if used.saturating_add(size) > limit {
                return Err(DeployError::StorageLimit { limit, used, size });
            }
            Ok(artifacts.put(&sha256, &bytes)?)
        })
        .await?
    }

    /// Deploys an app atomically (see [`crate::live`]).
    pub async fn deploy(&self, req: DeployRequest) -> Result<DeployResponse, DeployError> {
        self.live.deploy(req).await
    }

    /// Sets secret `name` to `value`; true when it is new. Deployed functions that use it get
    /// new instances with the new value (running invocations finish with the old one).
    pub async fn put_secret(&self, name: &str, value: String) -> Result<bool, SecretsError> {
        let (secrets, n) = (self.live.secrets.clone(), name.to_string());
        let created = tokio::task::spawn_blocking(move || secrets.put(&n, &value))
            .await
            .map_err(StoreError::backend)??;
        match self.live.refresh_secret(name).await {
            Ok(functions) if !functions.is_empty() => {
                tracing::info!(secret = %name, ?functions, "functions restarted with the new value");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(secret = %name, error = %e, "functions keep the old value"),
        }
        Ok(created)
    }

    /// Every secret (never a value), with the deployed functions using it.
    pub async fn secrets(&self) -> Result<Vec<SecretListing>, SecretsError> {
        let secrets = self.live.secrets.clone();
        let list = tokio::task::spawn_blocking(move || secrets.list())
            .await
            .map_err(StoreError::backend)??;
        Ok(list
            .into_iter()
            .map(|info| SecretListing {
                used_by: self.live.secret_users(&info.name),
                info,
            })
            .collect())
    }

    /// Deletes secret `name`, unless a deployed function uses it.
    pub async fn delete_secret(&self, name: &str) -> Result<(), SecretsError> {
        let users = self.live.secret_users(name);
        if !users.is_empty() {
            return Err(SecretsError::InUse {
                name: name.to_string(),
                functions: users,
            });
        }
        let (secrets, n) = (self.live.secrets.clone(), name.to_string());
        tokio::task::spawn_blocking(move || secrets.delete(&n))
            .await
            .map_err(StoreError::backend)?
    }

    /// A function's resource policy (Lambda's `GetPolicy`); not found when the function is not
    /// deployed.
    pub async fn function_policy(
        &self,
        function: &str,
    ) -> Result<Vec<nimbus_core::keys::PolicyStatement>, VersionError> {
        if self.function(function).is_none() {
            return Err(VersionError::NotFound(format!("no function `{function}`")));
        }
        let (store, f) = (self.live.store.clone(), function.to_string());
        Ok(
            tokio::task::spawn_blocking(move || store.function_policy(&f))
                .await
                .map_err(StoreError::backend)??,
        )
    }

    /// Lets `principal` (a key id or a key's AWS access key id) invoke `function` whatever its
    /// role (Lambda's `AddPermission`); the statement is stored with the key id.
    pub async fn add_permission(
        &self,
        function: &str,
        sid: &str,
        principal: &str,
    ) -> Result<nimbus_core::keys::PolicyStatement, VersionError> {
        let valid_sid = (1..=100).contains(&sid.len())
            && sid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_sid {
            return Err(VersionError::Invalid(format!(
                "`{sid}` is not a statement id: 1-100 letters, digits, `-` or `_`"
            )));
        }
        let key_id = self.access.key_id_of(principal).ok_or_else(|| {
            VersionError::Invalid(format!(
                "`{principal}` is not a key id or an AWS access key id of this node's keys"
            ))
        })?;
        let _guard = self.policy_lock.lock().await;
        let mut statements = self.function_policy(function).await?;
        if statements.iter().any(|s| s.sid == sid) {
            return Err(VersionError::Conflict(format!(
                "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
            )));
        }
        let statement = nimbus_core::keys::PolicyStatement {
            sid: sid.to_string(),
            principal: key_id,
        };
        statements.push(statement.clone());
        let (store, f) = (self.live.store.clone(), function.to_string());
        tokio::task::spawn_blocking(move || store.put_function_policy(&f, &statements))
            .await
            .map_err(StoreError::backend)??;
        Ok(statement)
    }

    /// Removes statement `sid` from `function`'s policy (Lambda's `RemovePermission`).
    pub async fn remove_permission(&self, function: &str, sid: &str) -> Result<(), VersionError> {
        let _guard = self.policy_lock.lock().await;
        let mut statements = self.function_policy(function).await?;
        let before = statements.len();
        statements.retain(|s| s.sid != sid);
        if statements.len() == before {
            return Err(VersionError::NotFound(format!(
                "Statement {sid} is not found in resource policy."
            )));
        }
        let (store, f) = (self.live.store.clone(), function.to_string());
        tokio::task::spawn_blocking(move || store.put_function_policy(&f, &statements))
            .await
            .map_err(StoreError::backend)??;
        Ok(())
    }

    /// Whether `function`'s resource policy lets `principal` invoke it (asked when its role
    /// does not).
    pub async fn granted_by_policy(
        &self,
        principal: &nimbus_core::keys::Principal,
        function: &str,
    ) -> bool {
        let (store, f) = (self.live.store.clone(), function.to_string());
        match tokio::task::spawn_blocking(move || store.function_policy(&f)).await {
            Ok(Ok(statements)) => statements.iter().any(|s| s.grants(principal)),
            _ => false,
        }
    }

    /// Makes an API key (shown once).
    pub async fn create_key(
        self: &Arc<Self>,
        req: crate::access::KeyRequest,
    ) -> Result<crate::access::CreatedKey, crate::access::KeyError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.access.create(req, nimbus_core::clock::now_ms()))
            .await
            .map_err(StoreError::backend)?
    }

    /// Every key made with [`Invoker::create_key`], with when it was revoked.
    pub async fn keys(
        self: &Arc<Self>,
    ) -> Result<Vec<(nimbus_core::keys::KeyInfo, Option<i64>)>, crate::access::KeyError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.access.list())
            .await
            .map_err(StoreError::backend)?
    }

    /// Revokes a key, with immediate effect.
    pub async fn revoke_key(self: &Arc<Self>, id: &str) -> Result<(), crate::access::KeyError> {
        let (this, id) = (self.clone(), id.to_string());
        tokio::task::spawn_blocking(move || this.access.revoke(&id))
            .await
            .map_err(StoreError::backend)?
    }

    /// Appends to the audit log (a failure is logged, never the caller's problem).
    pub async fn audit(&self, entry: nimbus_core::store::AuditEntry) {
        let store = self.live.store.clone();
        let written = tokio::task::spawn_blocking(move || store.append_audit(&entry))
            .await
            .map_err(StoreError::backend)
            .and_then(|r| r);
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }

    /// Seals with the current key every secret sealed with the previous one (after a key
    /// rotation); at start-up. Returns how many.
    pub async fn reseal_secrets(&self) -> Result<usize, SecretsError> {
        let secrets = self.live.secrets.clone();
        tokio::task::spawn_blocking(move || secrets.reseal())
            .await
            .map_err(StoreError::backend)?
    }

    /// Removes one function, or a whole app; whether it existed.
    pub async fn remove(&self, target: Removal) -> Result<bool, DeployError> {
        self.live.remove(target).await
    }

    /// Deletes what no deployed function uses — artifacts uploaded more than `grace` ago,
    /// unpacked code, compiled components — and what a node killed mid-upload or mid-deploy
    /// left behind; at start-up, before serving. Returns how many files and directories went.
    pub async fn sweep_storage(&self, grace: Duration) -> Result<usize, StoreError> {
        self.live.sweep(&[], Some(grace)).await
    }

    /// Starts the warm instances (`min_instances`) of every deployed function; at start-up.
    pub async fn prestart_all(&self) -> Result<(), PrepareError> {
        self.live.prestart_all().await
    }

    /// Starts the event engine on `log`, running functions through this invoker. Call once.
    pub async fn start_events(
        self: &Arc<Self>,
        log: Arc<dyn MessageLog>,
        config: EngineConfig,
    ) -> Result<(), ResourceError> {
        let me: Arc<dyn Invoke> = self.clone();
        self.live
            .start_events(Arc::downgrade(&me), log, config)
            .await
    }

    /// Starts the durable execution engine on `store` (executions), `machines` (the workflows'
    /// state machines) and `log` (the event engine's), its
    /// tokens keyed by the configured durable secret, and resumes the executions still
    /// running. Call once; without [`InvokerConfig::durable`] there is no engine.
    pub async fn start_durable(
        self: &Arc<Self>,
        store: Arc<dyn nimbus_durable::store::ExecutionStore>,
        machines: Arc<dyn nimbus_asl::store::MachineStore>,
        log: Arc<dyn MessageLog>,
    ) -> Result<(), crate::durable::DurableError> {
        let Some(secret) = self.config.durable.as_ref().map(|d| d.secret.clone()) else {
            return Ok(());
        };
        let durable = crate::durable::Durable::new(
            store,
            log,
            Arc::downgrade(self),
            secret,
            self.config.region.clone(),
        );
        durable.set_machines(machines);
        if self.durable.set(durable.clone()).is_err() {
            return Ok(());
        }
        durable.start_consuming().await
    }

    /// The durable execution engine (`None` until started).
    pub fn durable(&self) -> Option<&Arc<crate::durable::Durable>> {
        self.durable.get()
    }

    /// Stops the durable engine's consumer, giving running work `grace`.
    pub async fn shutdown_durable(&self, grace: Duration) {
        if let Some(d) = self.durable.get() {
            d.shutdown(grace).await;
        }
    }

    /// The event engine.
    pub fn engine(&self) -> Result<&Arc<Engine>, EventsUnavailable> {
        self.live.engine()
    }

    /// Creates (or replaces) the resource `name` of `kind` from its JSON definition.
    pub async fn put_resource(
        &self,
        kind: ResourceKind,
        name: &str,
        definition: Value,
    ) -> Result<Put, ResourceError> {
        self.live.put_resource(kind, name, definition).await
    }

    /// Deletes a resource created alone (a queue's messages go with it).
    pub async fn delete_resource(
        &self,
        kind: ResourceKind,
        name: &str,
    ) -> Result<(), ResourceError> {
        self.live.delete_resource(kind, name).await
    }

    /// Enables or disables a schedule of any owner.
    pub async fn set_schedule_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<(), ResourceError> {
        self.live.set_schedule_enabled(name, enabled).await
    }

    /// An invocation's status: the ledger, else the record.
    pub async fn invocation_status(
        &self,
        id: &str,
    ) -> Result<Option<InvocationStatus>, ResourceError> {
        self.live.invocation_status(id).await
    }

    /// The Prometheus text exposition of the node's metrics (queue depths and instance counts
    /// read now).
    pub async fn render_metrics(&self) -> Result<Vec<u8>, ResourceError> {
        let mut queues = Vec::new();
        if let Ok(engine) = self.engine() {
            let mut names: Vec<String> = engine.topology().queues.keys().cloned().collect();
            names.sort();
            for q in names {
                queues.push(engine.queue_info(&q).await?);
            }
        }
        let snapshot = self.live.snapshot();
        let instances = snapshot
            .functions
            .iter()
            .filter_map(|(name, d)| Some((name.as_str(), d.instances.counts()?)));
        Ok(self.finisher.metrics.render(&queues, instances)?)
    }

    /// The version an invocation of `function` under `qualifier` would run, as Lambda reports
    /// it (a dry run).
    pub fn executed_version(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<String, InvokeError> {
        self.live
            .resolve(function, qualifier)
            .map(|(_, v)| v.into_owned())
    }

    /// Runs one invocation: admitted (quota, then concurrency slots), dispatched to the
    /// function's runtime, finished once (record, trace, metrics). A function that ran and
    /// failed is an `Ok` invocation whose output is the [`crate::FunctionError`].
    pub async fn invoke(&self, req: InvocationRequest) -> Result<Invocation, InvokeError> {
        let since = waiting_since(req.trace.queued_since_ms);
        let (d, executed_version) = self.live.resolve(&req.function, req.qualifier.as_deref())?;
        let InvocationRequest {
            id,
            trigger,
            mut payload,
            trace,
            client_context,
            ..
        } = req;
        let v = &d.active.version;
        let executor = self.live.executors.of(v.config.runtime);
        match &mut payload {
            Payload::Event { .. } if !d.takes_events() => {
                return Err(d.not_an_event_function());
            }
            Payload::Event { data, .. } => d.check_event(data)?,
            Payload::Http(_) if v.kind == FunctionKind::Event && !v.config.runtime.is_process() => {
                return Err(InvokeError::NotAnHttpFunction(v.function.clone()));
            }
            Payload::Http(h) if executor.buffers_http_bodies() => {
                // Read before admission: a slow client never holds a slot.
                let body = std::mem::replace(&mut h.body, Body::Full(Bytes::new()));
                h.body = Body::Full(body.collect().await?);
            }
            _ => {}
        }
        let slots = self
            .admission
            .admit(
                &v.function,
                d.slots.as_ref(),
                Duration::from_millis(v.config.timeout_ms),
            )
            .await?;
        let span_trace = self
            .config
            .telemetry
            .begin(&v.function, &trigger, trace.parent, since);
        let span = span_trace.traceparent();
        let pending = Pending {
            id: id.clone(),
            function: v.function.clone(),
            version: v.id.clone(),
            memory_mb: v.config.memory_mb,
            trigger: trigger.clone(),
            start_ms: now_ms(),
        };
        let finish = Finish::new(
            self.finisher.clone(),
            pending,
            span_trace,
            {
                // Room for the runtime's phases too: one allocation per invocation.
                let mut phases = Vec::with_capacity(5);
                phases.push(Phase::since(phase::QUEUE_WAIT, since));
                phases
            },
            slots,
        );
        let ran = d
            .instances
            .run(Job {
                id: id.clone(),
                trigger,
                payload,
                span,
                xray: trace.xray,
                client_context,
                finish,
            })
            .await;
        Ok(Invocation {
            id,
            executed_version,
            output: ran.output,
            logs: ran.logs,
        })
    }

    /// Accepts an asynchronous invocation: durable in the log before this returns its id.
    /// Refuses at acceptance what could only fail later (no such function, an HTTP function,
    /// too large, the quota used up).
    pub async fn accept_async(&self, req: AsyncRequest) -> Result<String, InvokeError> {
        let (d, _) = self.live.resolve(&req.function, req.qualifier.as_deref())?;
        if !d.takes_events() {
            return Err(d.not_an_event_function());
        }
        d.check_event(&req.payload)?;
        if req.payload.len() > MAX_MESSAGE_BYTES {
            return Err(InvokeError::PayloadTooLarge {
                limit: MAX_MESSAGE_BYTES as u64,
            });
        }
        self.admission.check_quota().await?;
        Ok(self
            .engine()?
            .invoke_async(
                d.name(),
                req.qualifier.as_deref().filter(|q| *q != "$LATEST"),
                req.payload,
                req.idempotency_key,
                req.trace.map(|t| t.to_string()),
            )
            .await?)
    }
}

impl Invoke for Invoker {
    fn invoke(&self, req: InvocationRequest) -> BoxFuture<'_, Result<Invocation, InvokeError>> {
        Box::pin(Invoker::invoke(self, req))
    }
}

/// How [`Invoker::put_alias`] treats an existing alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasWrite {
    /// It must not exist (Lambda `CreateAlias`).
    Create,
    /// It must exist (Lambda `UpdateAlias`).
    Update,
    /// Either (`PUT /v1/functions/{name}/aliases/{alias}`).
    Upsert,
}

/// An alias as Lambda accepts it: a name of letters, digits, `-` and `_` (not only digits, not
/// `$LATEST`, at most 128), a second version different from the first with a weight in (0, 1).
pub fn check_alias(alias: &Alias) -> Result<(), VersionError> {
    let name = &alias.name;
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return Err(VersionError::Invalid(format!(
            "alias `{name}`: 1 to 128 letters, digits, `-` or `_`, not only digits"
        )));
    }
    if alias.version == 0 {
        return Err(VersionError::Invalid(
            "an alias points at a published version (1, 2, ...), not $LATEST".into(),
        ));
    }
    if let Some((v, w)) = alias.additional {
        if v == alias.version || v == 0 {
            return Err(VersionError::Invalid(format!(
                "the additional version ({v}) must be another published version"
            )));
        }
        if !(w > 0.0 && w < 1.0) {
            return Err(VersionError::Invalid(format!(
                "the additional version's weight must be between 0 and 1 (exclusive), not {w}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    fn alias(name: &str, version: u32, additional: Option<(u32, f64)>) -> Alias {
        Alias {
            function: "f".into(),
            name: name.into(),
            version,
            additional,
            description: String::new(),
        }
    }

    #[test]
    fn aliases_are_checked_as_lambda_checks_them() {
        assert!(check_alias(&alias("live", 1, None)).is_ok());
        assert!(check_alias(&alias("blue_green-2", 1, Some((2, 0.25)))).is_ok());
        for bad in [
            alias("123", 1, None),
            alias("", 1, None),
            alias("$LATEST", 1, None),
            alias("has space", 1, None),
            alias(&"a".repeat(129), 1, None),
            alias("live", 0, None),
            alias("live", 1, Some((1, 0.5))),
            alias("live", 1, Some((2, 1.0))),
            alias("live", 1, Some((2, 0.0))),
            alias("live", 1, Some((2, f64::NAN))),
        ] {
            assert!(
                matches!(check_alias(&bad), Err(VersionError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn weighted_aliases_pick_by_share() {
        let a = alias("live", 1, Some((2, 0.1)));
        assert_eq!(crate::live::pick_version(&a, 0.05), 2);
        assert_eq!(crate::live::pick_version(&a, 0.1), 1);
        assert_eq!(crate::live::pick_version(&a, 0.99), 1);
        assert_eq!(crate::live::pick_version(&alias("x", 3, None), 0.0), 3);
    }
}
