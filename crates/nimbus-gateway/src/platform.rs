//! The running platform: store, runtime, the active snapshot, and deploys that swap it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::StatusCode;
use nimbus_core::api::{DeployRequest, DeployResponse, FunctionInfo};
use nimbus_core::store::{ActiveFunction, AppDeployment};
use nimbus_core::{AppSpec, FunctionKind, FunctionVersion, RouteTable, Store};
use nimbus_process::{FunctionPool, PoolConfig, ProcessRuntime};
use nimbus_store::{ArtifactStore, RecordSink};
use nimbus_wasm::{Limits, LoadedFunction, WasmRuntime};
use tokio::sync::OnceCell;

use crate::instances::WasmInstance;

use crate::error::ApiError;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest request body a function receives; larger gets 413.
    pub max_body_bytes: usize,
    /// Largest artifact upload.
    pub max_artifact_bytes: usize,
    /// Prices for `/v1/usage`.
    pub prices: nimbus_core::usage::PriceSheet,
    /// Monthly quotas (429 past them).
    pub quota: crate::quota::Quota,
    /// How long an invocation waits for a concurrency slot (capped at its timeout) before 429.
    pub throttle_wait: Duration,
    /// Invocations running at once across all the tenant's functions (`None`: unlimited).
    pub tenant_concurrency: Option<usize>,
    /// Where invocation traces go (disabled by default).
    pub telemetry: nimbus_telemetry::Telemetry,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 6 * 1024 * 1024,
            max_artifact_bytes: 64 * 1024 * 1024,
            prices: nimbus_core::usage::PriceSheet::default(),
            quota: crate::quota::Quota::default(),
            throttle_wait: Duration::from_secs(10),
            tenant_concurrency: None,
            telemetry: nimbus_telemetry::Telemetry::disabled(),
        }
    }
}

/// A deployed function version in the live snapshot; loads its component (wasm) or creates
/// its sandbox pool (process runtimes) on first use.
pub struct Deployed {
    /// Version and routes.
    pub active: ActiveFunction,
    /// Limits derived from the config, built once.
    pub limits: Limits,
    /// Wasm functions: the instance (loaded component), loaded on demand, unloaded when idle.
    pub(crate) wasm: WasmInstance,
    pool: OnceCell<Arc<FunctionPool>>,
    /// Wasm functions with `max_concurrency` or `concurrency_per_instance`: one permit per
    /// running invocation.
    pub(crate) slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl Deployed {
    /// Whether the function runs as a sandboxed process.
    pub fn is_process(&self) -> bool {
        self.active.version.config.runtime.is_process()
    }

    /// The sandbox pool of a process function, if it has been created.
    pub fn pool(&self) -> Option<&Arc<FunctionPool>> {
        self.pool.get()
    }
}

/// The configuration every request reads: swapped atomically on deploy, never locked.
#[derive(Default)]
pub struct Snapshot {
    /// Functions by name.
    pub functions: HashMap<String, Arc<Deployed>>,
    /// Route table over them.
    pub routes: RouteTable<Arc<Deployed>>,
}

impl Snapshot {
    fn build(functions: Vec<Arc<Deployed>>) -> Result<Self, nimbus_core::route::RouteConflict> {
        let routes = RouteTable::build(
            functions
                .iter()
                .flat_map(|d| d.active.routes.iter().map(move |r| (r.clone(), d.clone()))),
        )?;
        Ok(Self {
            functions: functions
                .into_iter()
                .map(|d| (d.active.version.function.clone(), d))
                .collect(),
            routes,
        })
    }
}

/// Everything a request handler needs, shared behind an `Arc`.
pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: Arc<WasmRuntime>,
    pub(crate) process: Arc<ProcessRuntime>,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) records: RecordSink,
    pub(crate) config: GatewayConfig,
    snapshot: ArcSwap<Snapshot>,
    api_keys: ArcSwap<HashSet<String>>,
    aws_credentials: HashMap<String, String>,
    pub(crate) deploy_lock: tokio::sync::Mutex<()>,
    pub(crate) events: std::sync::OnceLock<Arc<nimbus_events::Engine>>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) quota: crate::quota::QuotaGate,
    pub(crate) tenant_slots: Option<Arc<tokio::sync::Semaphore>>,
    started: Instant,
}

/// Wall-clock now, unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn deployed(
    active: ActiveFunction,
    loaded: Option<Arc<LoadedFunction>>,
    pool: Option<Arc<FunctionPool>>,
) -> Arc<Deployed> {
    let c = &active.version.config;
    // One instance per node: it serves at most concurrency_per_instance at once.
    let limit = [c.max_concurrency, c.concurrency_per_instance]
        .into_iter()
        .flatten()
        .min();
    let slots = match (c.runtime.is_process(), limit) {
        (false, Some(n)) => Some(Arc::new(tokio::sync::Semaphore::new(n as usize))),
        _ => None,
    };
    Arc::new(Deployed {
        slots,
        limits: Limits::from(&active.version.config),
        active,
        wasm: WasmInstance::new(loaded),
        pool: OnceCell::new_with(pool),
    })
}

/// The runtimes a node runs functions on.
pub struct Runtimes {
    /// WebAssembly components.
    pub wasm: Arc<WasmRuntime>,
    /// Python, Node and provided functions in sandboxes.
    pub process: Arc<ProcessRuntime>,
}

/// Runs blocking work (store, compiler) on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

/// Unpacks a process function's code and creates its (empty) sandbox pool.
fn make_pool(
    process: &Arc<ProcessRuntime>,
    artifacts: &ArtifactStore,
    v: &FunctionVersion,
) -> Result<Arc<FunctionPool>, nimbus_process::PrepareError> {
    let c = &v.config;
    let code_dir = process.prepare_code(
        &v.artifact_sha256,
        || std::fs::read(artifacts.path(&v.artifact_sha256)),
        c.runtime,
    )?;
    Ok(process.pool(PoolConfig {
        function: v.function.clone(),
        version: v.id.clone(),
        runtime: c.runtime,
        handler: c.handler.clone(),
        memory_mb: c.memory_mb,
        timeout: Duration::from_millis(c.timeout_ms),
        env: c.env.clone(),
        network: !c.allowed_hosts.is_empty(),
        code_dir,
        max_concurrency: c.max_concurrency(),
        min_instances: c.min_instances,
    }))
}

impl Platform {
    /// Builds the platform from stored state. Components load lazily, on first invocation.
    /// `aws_credentials` maps the access key ids Nimbus issued to their secrets (SigV4).
    pub fn new(
        store: Arc<dyn Store>,
        runtimes: Runtimes,
        artifacts: ArtifactStore,
        records: RecordSink,
        config: GatewayConfig,
        aws_credentials: HashMap<String, String>,
    ) -> Result<Self, nimbus_core::StoreError> {
        let functions = store
            .active_functions()?
            .into_iter()
            .map(|f| deployed(f, None, None))
            .collect();
        let snapshot = Snapshot::build(functions).map_err(|e| {
            nimbus_core::StoreError::Backend(format!("stored routes conflict: {e}"))
        })?;
        let api_keys = store.api_key_hashes()?.into_iter().collect();
        let tenant_slots = config
            .tenant_concurrency
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
        Ok(Self {
            store,
            runtime: runtimes.wasm,
            process: runtimes.process,
            artifacts,
            records,
            config,
            snapshot: ArcSwap::from_pointee(snapshot),
            api_keys: ArcSwap::from_pointee(api_keys),
            aws_credentials,
            deploy_lock: tokio::sync::Mutex::new(()),
            events: std::sync::OnceLock::new(),
            quota: crate::quota::QuotaGate::default(),
            tenant_slots,
            metrics: Arc::new(crate::metrics::Metrics::new().map_err(|e| {
                nimbus_core::StoreError::Backend(format!("registering metrics: {e}"))
            })?),
            started: Instant::now(),
        })
    }

    /// The live snapshot.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Whether `key` is a valid API key.
    pub fn is_valid_key(&self, key: &str) -> bool {
        self.api_keys
            .load()
            .contains(&nimbus_core::sha256_hex(key.as_bytes()))
    }

    /// The secret of an access key id Nimbus issued.
    pub fn aws_secret(&self, access_key_id: &str) -> Option<String> {
        self.aws_credentials.get(access_key_id).cloned()
    }

    /// What the event engine reports deliveries to (the `/metrics` counters).
    pub fn delivery_observer(&self) -> Arc<dyn nimbus_events::DeliveryObserver> {
        self.metrics.clone()
    }

    /// The process runtime.
    pub fn process_runtime(&self) -> &Arc<ProcessRuntime> {
        &self.process
    }

    /// The sandbox pool of a process function, creating it (and unpacking its code, if a
    /// restart lost it) on first use.
    pub async fn ensure_pool(&self, d: &Arc<Deployed>) -> Result<Arc<FunctionPool>, ApiError> {
        if let Some(pool) = d.pool.get() {
            return Ok(pool.clone());
        }
        let pool = d
            .pool
            .get_or_try_init(|| async {
                let (process, artifacts) = (self.process.clone(), self.artifacts.clone());
                let version = d.active.version.clone();
                blocking(move || make_pool(&process, &artifacts, &version))
                    .await?
                    .map_err(ApiError::internal)
            })
            .await?;
        Ok(pool.clone())
    }

    /// A function as the API presents it, with its instances on this node.
    pub fn describe(&self, d: &Deployed) -> FunctionInfo {
        let mut info = FunctionInfo::from(&d.active);
        if d.is_process() {
            info.isolation = Some(self.process.isolation().describe());
            info.keep_alive = Some(match d.pool() {
                Some(pool) => pool.keep_alive(),
                None => self.process.keep_alive().to_string(),
            });
            info.instances = Some(d.pool().map(|p| p.stats()).unwrap_or_default().into());
        } else {
            // Wasm instances always use the fixed keep-alive (see `instances`).
            info.keep_alive = Some(if d.active.version.config.min_instances > 0 {
                "kept loaded (min_instances)".to_string()
            } else {
                nimbus_core::keepalive::KeepAlive::Fixed {
                    keep_ms: self.process.idle_timeout().as_millis() as i64,
                }
                .to_string()
            });
            info.instances = Some(d.wasm.counts());
        }
        info
    }

    /// Starts unloading idle wasm components (scale to zero) after the node's keep-alive.
    pub fn start_reaper(self: &Arc<Self>) {
        let keep = self.process.idle_timeout();
        tokio::spawn(crate::instances::reap(Arc::downgrade(self), keep));
    }

    /// Starts the `min_instances` sandboxes of every deployed process function (at start-up;
    /// deploys do it for what they deploy).
    pub async fn prestart_all(&self) -> Result<(), ApiError> {
        let functions: Vec<Arc<Deployed>> = self.snapshot().functions.values().cloned().collect();
        for d in functions {
            if d.active.version.config.min_instances == 0 {
                continue;
            }
            if d.is_process() {
                self.ensure_pool(&d).await?.prestart().await;
            } else {
                self.ensure_loaded(&d).await?;
            }
        }
        Ok(())
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The function's loaded component, loading it first if its instance is cold (scaled to
    /// zero, or not yet loaded since start). Returns the load time when it loaded it (a cold
    /// start). Loads take a token of the node's burst rate.
    pub async fn ensure_loaded(
        &self,
        d: &Arc<Deployed>,
    ) -> Result<(Arc<LoadedFunction>, Option<Duration>), ApiError> {
        d.wasm
            .get_or_load(async || {
                self.process.await_start_token().await;
                let (runtime, artifacts) = (self.runtime.clone(), self.artifacts.clone());
                let sha = d.active.version.artifact_sha256.clone();
                blocking(move || runtime.load(&sha, || std::fs::read(artifacts.path(&sha))))
                    .await?
                    .map_err(ApiError::internal)
            })
            .await
    }

    /// Stores an uploaded artifact after checking its hash.
    pub async fn put_artifact(&self, sha256: String, bytes: bytes::Bytes) -> Result<(), ApiError> {
        let artifacts = self.artifacts.clone();
        blocking(move || artifacts.put(&sha256, &bytes))
            .await?
            .map_err(|e| match e {
                nimbus_store::artifacts::ArtifactError::Io(io) => ApiError::internal(io),
                other => ApiError::bad_request("BadArtifact", other.to_string()),
            })
    }

    /// Deploys an app atomically: every function compiled and every route checked before anything
    /// changes; then one store transaction and one snapshot swap.
    pub async fn deploy(&self, req: DeployRequest) -> Result<DeployResponse, ApiError> {
        let app = AppSpec::parse(&req.manifest)
            .map_err(|e| ApiError::bad_request("InvalidManifest", e.to_string()))?;
        let mut shas = BTreeMap::new();
        for f in &app.functions {
            let sha = req.artifacts.get(&f.source).ok_or_else(|| {
                ApiError::bad_request(
                    "MissingArtifact",
                    format!(
                        "functions.{}.source: no artifact was uploaded for `{}`",
                        f.name, f.source
                    ),
                )
            })?;
            if !self.artifacts.contains(sha) {
                return Err(ApiError::bad_request(
                    "MissingArtifact",
                    format!(
                        "functions.{}.source: artifact {sha} (`{}`) is not on the server; upload it first",
                        f.name, f.source
                    ),
                ));
            }
            shas.insert(f.name.clone(), sha.clone());
        }
        let digest = nimbus_core::sha256_hex(
            format!(
                "{}\n{}",
                req.manifest,
                serde_json::to_string(&shas).unwrap_or_default()
            )
            .as_bytes(),
        );

        let _guard = self.deploy_lock.lock().await;
        let current = self.snapshot.load_full();
        let store = self.store.clone();
        let app_name = app.name.clone();
        if blocking(move || store.app_digest(&app_name)).await?? == Some(digest.clone()) {
            return Ok(self.describe_app(&current, &app.name, false));
        }

        let mut new_functions = Vec::new();
        for f in &app.functions {
            let sha = &shas[&f.name];
            let id = FunctionVersion::content_id(sha, &f.config);
            // The kind is known once the artifact is prepared; everything else is known now.
            let mut version = FunctionVersion {
                id,
                function: f.name.clone(),
                app: app.name.clone(),
                artifact_sha256: sha.clone(),
                kind: FunctionKind::Event,
                config: f.config.clone(),
                created_at_ms: now_ms(),
            };
            let (kind, loaded, pool) = match current.functions.get(&f.name) {
                Some(d)
                    if d.active.version.id == version.id && d.active.version.app == app.name =>
                {
                    (d.active.version.kind, d.wasm.get(), d.pool.get().cloned())
                }
                _ if f.config.runtime.is_process() => {
                    let (process, artifacts, v) = (
                        self.process.clone(),
                        self.artifacts.clone(),
                        version.clone(),
                    );
                    let pool = blocking(move || make_pool(&process, &artifacts, &v))
                        .await?
                        .map_err(|e| {
                            ApiError::bad_request(
                                "InvalidArtifact",
                                format!("functions.{}.source: {e}", f.name),
                            )
                        })?;
                    (FunctionKind::Event, None, Some(pool))
                }
                _ => {
                    let (runtime, artifacts, sha) =
                        (self.runtime.clone(), self.artifacts.clone(), sha.clone());
                    let prepared = blocking(move || {
                        let wasm = artifacts.read(&sha).map_err(|e| e.to_string())?;
                        runtime.prepare(&sha, &wasm).map_err(|e| e.to_string())
                    })
                    .await?
                    .map_err(|e| {
                        ApiError::bad_request(
                            "InvalidArtifact",
                            format!("functions.{}: {e}", f.name),
                        )
                    })?;
                    (prepared.kind(), Some(Arc::new(prepared)), None)
                }
            };
            if kind == FunctionKind::Event && !f.routes.is_empty() && !f.config.runtime.is_process()
            {
                return Err(ApiError::bad_request(
                    "InvalidManifest",
                    format!(
                        "functions.{}.triggers: HTTP routes need an HTTP function (a component exporting \
                         wasi:http/incoming-handler), but `{}` is an event function",
                        f.name, f.source
                    ),
                ));
            }
            version.kind = kind;
            let active = ActiveFunction {
                version,
                routes: f.routes.clone(),
            };
            new_functions.push(deployed(active, loaded, pool));
        }

        // Check routes against every other app before touching the store.
        let mut all: Vec<Arc<Deployed>> = current
            .functions
            .values()
            .filter(|d| {
                d.active.version.app != app.name
                    && !app
                        .functions
                        .iter()
                        .any(|f| f.name == d.active.version.function)
            })
            .cloned()
            .collect();
        all.extend(new_functions.iter().cloned());
        let snapshot = Snapshot::build(all)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "RouteConflict", e.to_string()))?;

        let policies: Vec<_> = app
            .functions
            .iter()
            .map(|f| (f.name.clone(), f.config.events.clone()))
            .collect();
        let event_functions: Vec<String> = new_functions
            .iter()
            .filter(|d| d.is_process() || d.active.version.kind == FunctionKind::Event)
            .map(|d| d.active.version.function.clone())
            .collect();
        let problems = self
            .check_event_references(&app.name, &app.events, &policies, &event_functions)
            .await?;
        if !problems.is_empty() {
            return Err(ApiError::bad_request(
                "InvalidManifest",
                nimbus_core::ManifestError::Invalid(problems).to_string(),
            ));
        }

        let deployment = AppDeployment {
            app: app.name.clone(),
            digest,
            functions: new_functions.iter().map(|d| d.active.clone()).collect(),
            events: app.events.clone(),
        };
        let store = self.store.clone();
        blocking(move || store.deploy_app(&deployment)).await??;
        self.snapshot.store(Arc::new(snapshot));
        self.refresh_events().await?;
        for d in &new_functions {
            if let Some(pool) = d.pool() {
                pool.prestart().await;
            }
        }
        tracing::info!(app = %app.name, functions = new_functions.len(), "deployed");
        Ok(self.describe_app(&self.snapshot.load(), &app.name, true))
    }

    fn describe_app(&self, snapshot: &Snapshot, app: &str, changed: bool) -> DeployResponse {
        let mut functions: Vec<FunctionInfo> = snapshot
            .functions
            .values()
            .filter(|d| d.active.version.app == app)
            .map(|d| self.describe(d))
            .collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        DeployResponse {
            app: app.to_string(),
            changed,
            functions,
        }
    }

    /// Removes one function or a whole app and swaps the snapshot.
    pub async fn remove(
        &self,
        function: Option<String>,
        app: Option<String>,
    ) -> Result<bool, ApiError> {
        let _guard = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let existed = blocking(move || match (function, app) {
            (Some(f), _) => store.remove_function(&f),
            (None, Some(a)) => store.remove_app(&a),
            (None, None) => Ok(false),
        })
        .await??;
        let store = self.store.clone();
        let active = blocking(move || store.active_functions()).await??;
        let current = self.snapshot.load_full();
        let functions = active
            .into_iter()
            .map(|f| match current.functions.get(&f.version.function) {
                Some(d) if d.active == f => d.clone(),
                _ => deployed(f, None, None),
            })
            .collect();
        let snapshot = Snapshot::build(functions).map_err(ApiError::internal)?;
        self.snapshot.store(Arc::new(snapshot));
        self.refresh_events().await?;
        Ok(existed)
    }
}
