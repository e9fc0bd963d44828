//! Nimbus's invocation layer: the one way anything runs a function.
//!
//! # Core concepts
//! - [`Invoker`]: one per node. Owns the node's live state — a lock-free snapshot of deployed
//!   functions and routes, swapped whole by deploys ([`Invoker::deploy`], [`Invoker::remove`],
//!   serialised by one deploy lock) — and runs invocations: [`Invoker::invoke`] takes an
//!   [`InvocationRequest`] (function + qualifier, id, trigger, payload, trace and client
//!   context) and answers an [`Invocation`] or an [`InvokeError`]. HTTP routes, the invoke
//!   APIs, the event engine (through [`nimbus_events::Invoker`], implemented here) and, later,
//!   durable executions and other nodes all call it; none of them speaks HTTP to it.
//! - Admission (`admission`): the quota, then the function's and the tenant's concurrency
//!   slots, each once, before anything runs ([`AdmissionError`]).
//! - [`Executor`] (`executor`): the runtimes behind one trait — wasm components and process
//!   sandboxes. Each prepares versions at deploy and owns its instances' lifecycle (cold
//!   starts, keep-alive, `min_instances`); the invoker never branches on the runtime.
//! - Finishing (`finish`): every admitted invocation ends once — its record to the
//!   group-committing sink, its trace, its metrics ([`Metrics`]).
//! - The event-resource control plane (`resources`: queues, topics, schedules created alone,
//!   the invocation ledger) over the [`nimbus_events::Engine`].
//! - [`Node`] (`lifecycle`): the node's background duties (reapers, record purge, the event
//!   engine, the record writer), started by one supervisor and stopped in a stated order.
//!
//! # Edges
//! No HTTP statuses here: errors are typed ([`InvokeError`], [`AdmissionError`],
//! [`DeployError`], [`ResourceError`]) and the gateway maps them. Storage is reached through
//! `nimbus_core::Store` and `nimbus_log::MessageLog`; the runtimes through [`Executor`].

mod access;
mod admission;
mod engine;
mod error;
pub mod executor;
mod finish;
mod invoke;
mod lifecycle;
mod live;
mod metrics;
mod request;
mod resources;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use nimbus_core::Store;
use nimbus_core::model::Runtime;
use nimbus_store::{ArtifactStore, RecordSink};

pub use access::Access;
pub use admission::Quota;
pub use error::{
    AdmissionError, DeployError, EventsUnavailable, InvokeError, QuotaKind, ResourceError,
    ThrottleReason,
};
pub use executor::{Executor, Instances, PrepareError};
pub use invoke::AsyncRequest;
pub use lifecycle::{Node, PurgeConfig};
pub use live::{Removal, RouteLookup};
pub use metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics};
pub use nimbus_core::events::ResourceKind;
pub use request::{
    Body, BodyError, BoxError, FunctionError, HttpRequest, Invocation, InvocationRequest, Output,
    Payload, ResponseBody, TraceContext, new_id,
};
pub use resources::Put;

use admission::Admission;
use finish::Finisher;
use live::Snapshot;

/// The node's runtimes.
pub struct Executors {
    /// WebAssembly components.
    pub wasm: Arc<dyn Executor>,
    /// Python, Node and provided functions in sandboxes.
    pub process: Arc<dyn Executor>,
}

impl Executors {
    /// The executor of functions of `runtime`.
    pub fn of(&self, runtime: Runtime) -> &Arc<dyn Executor> {
        if runtime.is_process() {
            &self.process
        } else {
            &self.wasm
        }
    }

    fn all(&self) -> [&Arc<dyn Executor>; 2] {
        [&self.wasm, &self.process]
    }
}

/// Settings of the invoker.
#[derive(Debug, Clone)]
pub struct InvokerConfig {
    /// Monthly quotas (invocations past them are refused).
    pub quota: Quota,
    /// How long an invocation waits for a concurrency slot (capped at its timeout).
    pub throttle_wait: Duration,
    /// Invocations running at once across all the tenant's functions (`None`: unlimited).
    pub tenant_concurrency: Option<usize>,
    /// Where invocation traces go (disabled by default).
    pub telemetry: nimbus_telemetry::Telemetry,
    /// The region in ARNs.
    pub region: String,
}

impl Default for InvokerConfig {
    fn default() -> Self {
        Self {
            quota: Quota::default(),
            throttle_wait: Duration::from_secs(10),
            tenant_concurrency: None,
            telemetry: nimbus_telemetry::Telemetry::disabled(),
            region: "us-east-1".into(),
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
}

/// The node's invocation layer. See the crate documentation.
pub struct Invoker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) executors: Executors,
    pub(crate) config: InvokerConfig,
    pub(crate) live: ArcSwap<Snapshot>,
    pub(crate) deploy_lock: tokio::sync::Mutex<()>,
    pub(crate) admission: Admission,
    pub(crate) finisher: Arc<Finisher>,
    pub(crate) events: OnceLock<Arc<nimbus_events::Engine>>,
    access: Access,
    started: Instant,
}

impl Invoker {
    /// Builds the invoker from stored state. Deployed functions are restored cold: each
    /// prepares itself on first use.
    pub fn new(
        parts: InvokerParts,
        config: InvokerConfig,
    ) -> Result<Arc<Self>, nimbus_core::StoreError> {
        let metrics = Arc::new(Metrics::new().map_err(nimbus_core::StoreError::backend)?);
        let snapshot = Snapshot::restore(parts.store.active_functions()?, &parts.executors)
            .map_err(nimbus_core::StoreError::backend)?;
        let access = Access::load(parts.store.as_ref(), parts.aws_credentials)?;
        Ok(Arc::new(Self {
            admission: Admission::new(
                parts.store.clone(),
                config.quota.clone(),
                config.tenant_concurrency,
                config.throttle_wait,
                metrics.clone(),
            ),
            finisher: Arc::new(Finisher {
                records: parts.records,
                metrics,
            }),
            store: parts.store,
            artifacts: parts.artifacts,
            executors: parts.executors,
            config,
            live: ArcSwap::from_pointee(snapshot),
            deploy_lock: tokio::sync::Mutex::new(()),
            events: OnceLock::new(),
            access,
            started: Instant::now(),
        }))
    }

    /// Who may call.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The store, for reads (records, logs, usage, apps).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.finisher.metrics
    }

    /// The region in ARNs.
    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// Time since the invoker was built.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The node's status: deployed functions and what the runtimes have done since start.
    pub fn status(&self) -> nimbus_core::api::Status {
        let mut status = nimbus_core::api::Status {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_ms: self.uptime().as_millis() as u64,
            functions: self.function_count(),
            compiled: 0,
            loaded_from_cache: 0,
            isolation: String::new(),
        };
        for executor in self.executors.all() {
            executor.report(&mut status);
        }
        status
    }

    /// Stores an uploaded artifact after checking its hash.
    pub async fn put_artifact(
        &self,
        sha256: String,
        bytes: bytes::Bytes,
    ) -> Result<(), DeployError> {
        let artifacts = self.artifacts.clone();
        Ok(tokio::task::spawn_blocking(move || artifacts.put(&sha256, &bytes)).await??)
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
        let snapshot = self.live.load();
        let instances = snapshot
            .functions
            .iter()
            .filter_map(|(name, d)| Some((name.as_str(), d.instances.counts()?)));
        Ok(self.finisher.metrics.render(&queues, instances)?)
    }
}
