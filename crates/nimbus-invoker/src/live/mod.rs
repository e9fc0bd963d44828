//! The node's live state ([`Live`]): the [`Snapshot`] of deployed functions and routes every
//! invocation reads lock-free, the deploys and removals that swap it whole (under one deploy
//! lock), and (`events`) the event engine running over it with the resources it consumes.
//!
//! A deploy checks everything before it changes anything: the manifest, every artifact (each
//! new version prepared by its executor; unchanged versions keep their instances), the routes
//! against every other app, the event references; then one store transaction and one swap.
//! Its cost grows with what changed: an unchanged function is reused, and functions deployed
//! from one artifact share one prepared component.

mod events;
mod workflows;

pub use events::Put;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use nimbus_core::Store;
use nimbus_store::ArtifactStore;

use nimbus_core::api::{DeployRequest, DeployResponse, FunctionInfo};
use nimbus_core::clock::now_ms;
use nimbus_core::route::RouteConflict;
use nimbus_core::store::{ActiveFunction, AppDeployment};
use nimbus_core::{AppSpec, FunctionKind, FunctionVersion, RouteMatch, RouteTable};
use tokio::sync::Semaphore;

use crate::error::{DeployError, InvokeError};
use crate::executor::Prepared;
use crate::executor::{Executors, Instances, PrepareError};
use crate::secrets::Secrets;

/// The environment variable a process runtime reports as the function's version.
pub const VERSION_ENV: &str = "AWS_LAMBDA_FUNCTION_VERSION";

/// Which version of an alias serves an invocation: the second version for a `unit` (uniform in
/// `[0, 1)`) below its weight, else the first.
pub(crate) fn pick_version(alias: &nimbus_core::store::Alias, unit: f64) -> u32 {
    match alias.additional {
        Some((v, weight)) if unit < weight => v,
        _ => alias.version,
    }
}

/// A deployed function version in the live snapshot.
pub(crate) struct Deployed {
    /// Version and routes.
    pub active: ActiveFunction,
    /// Its instances on this node (the runtime's state).
    pub instances: Arc<dyn Instances>,
    /// One permit per running invocation, when the runtime bounds the function's concurrency
    /// (process functions: `max_concurrency`; wasm: `max_concurrency` and
    /// `concurrency_per_instance` — by default a quarter of the node's pool — whichever is
    /// lower).
    pub slots: Option<Arc<Semaphore>>,
}

impl Deployed {
    /// `limit`: its runtime's bound on its concurrent invocations ([`crate::Executor::concurrency`]).
    fn new(active: ActiveFunction, instances: Arc<dyn Instances>, limit: u32) -> Arc<Self> {
        Arc::new(Self {
            slots: (limit < u32::MAX).then(|| Arc::new(Semaphore::new(limit.max(1) as usize))),
            active,
            instances,
        })
    }

    /// A stored function, its instances restored cold by its runtime (with its secrets).
    fn restored(executors: &Executors, secrets: &Secrets, f: ActiveFunction) -> Arc<Self> {
        let executor = executors.of(f.version.config.runtime);
        let runtime = secrets.runtime_version(&f.version).unwrap_or_else(|e| {
            // Only a lost or changed secrets key gets here (a secret in use cannot be deleted).
            tracing::error!(function = %f.version.function, error = %e, "cannot read its secrets: it runs without them");
            Cow::Borrowed(&f.version)
        });
        let (instances, limit) = (
            executor.restore(&runtime),
            executor.concurrency(&f.version.config),
        );
        Self::new(f, instances, limit)
    }

    pub(crate) fn name(&self) -> &str {
        &self.active.version.function
    }

    /// The error for an event sent to this (HTTP) function.
    pub(crate) fn not_an_event_function(&self) -> InvokeError {
        InvokeError::NotAnEventFunction {
            function: self.name().to_string(),
            routes: self
                .active
                .routes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Refuses an event its runtime cannot take: Lambda runtimes decode every event as JSON.
    pub(crate) fn check_event(&self, data: &[u8]) -> Result<(), InvokeError> {
        let runtime = self.active.version.config.runtime;
        if runtime.is_process()
            && !data.is_empty()
            && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err()
        {
            return Err(InvokeError::InvalidPayload(format!(
                "`{}` is a {} function: its event must be JSON",
                self.name(),
                runtime.as_str()
            )));
        }
        Ok(())
    }

    /// Whether it takes events (every process function, and wasm event components).
    pub(crate) fn takes_events(&self) -> bool {
        let v = &self.active.version;
        v.config.runtime.is_process() || v.kind == FunctionKind::Event
    }
}

/// The configuration every invocation reads: swapped atomically on deploy, never locked.
#[derive(Default)]
pub(crate) struct Snapshot {
    /// Functions by name.
    pub functions: HashMap<String, Arc<Deployed>>,
    /// Route table over them.
    pub routes: RouteTable<Arc<Deployed>>,
}

impl Snapshot {
    fn build(functions: Vec<Arc<Deployed>>) -> Result<Self, RouteConflict> {
        let routes = RouteTable::build(
            functions
                .iter()
                .flat_map(|d| d.active.routes.iter().map(move |r| (r.clone(), d.clone()))),
        )?;
        Ok(Self {
            functions: functions
                .into_iter()
                .map(|d| (d.name().to_string(), d))
                .collect(),
            routes,
        })
    }

    /// The snapshot of functions stored before this node started (their instances cold).
    pub(crate) fn restore(
        active: Vec<ActiveFunction>,
        executors: &Executors,
        secrets: &Secrets,
    ) -> Result<Self, RouteConflict> {
        Self::build(
            active
                .into_iter()
                .map(|f| Deployed::restored(executors, secrets, f))
                .collect(),
        )
    }
}

/// A route that matched a request: what the gateway needs to serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHit {
    /// The function.
    pub function: String,
    /// Its routes' rate limits (requests per second: all callers, one client address).
    pub rate_limit: Option<u32>,
    /// See `rate_limit`.
    pub client_rate_limit: Option<u32>,
    /// The route as written in the manifest (`GET /users/{id}`).
    pub route: String,
    /// Captured path parameters, in path order.
    pub params: Vec<(String, String)>,
    /// The published version or alias the route invokes (`None`: `$LATEST`).
    pub qualifier: Option<String>,
    /// The function is durable (a request starts an execution: the async HTTP pattern).
    pub durable: bool,
    /// Who may call it and from which origins (`None`: anyone, no CORS rules).
    pub access: Option<Box<nimbus_core::access::RouteAccess>>,
}

/// Where an HTTP request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteLookup {
    /// A route matched.
    Found(RouteHit),
    /// The path matches, but not with this method.
    MethodNotAllowed {
        /// Methods that would match (for `Allow`).
        allowed: Vec<String>,
    },
    /// No route matches the path.
    NotFound,
}

/// The node's functions, routes and event resources, and the engine running over them.
pub(crate) struct Live {
    pub store: Arc<dyn Store>,
    pub artifacts: ArtifactStore,
    pub executors: Executors,
    pub secrets: Secrets,
    snapshot: ArcSwap<Snapshot>,
    /// Serialises every change: deploys, removals, resources created alone.
    deploy_lock: tokio::sync::Mutex<()>,
    engine: OnceLock<Arc<nimbus_events::Engine>>,
    /// Published versions in use, by function and content id: their own instances (as on
    /// Lambda, a version's environments are its own), made on first use.
    published: std::sync::Mutex<HashMap<(String, String, u32), Arc<Deployed>>>,
}

impl Live {
    /// The live state of what `store` holds, its functions restored cold.
    pub(crate) fn restore(
        store: Arc<dyn Store>,
        artifacts: ArtifactStore,
        executors: Executors,
        secrets: Secrets,
    ) -> Result<Self, nimbus_core::StoreError> {
        let snapshot = Snapshot::restore(store.active_functions()?, &executors, &secrets)
            .map_err(nimbus_core::StoreError::backend)?;
        Ok(Self {
            store,
            artifacts,
            executors,
            secrets,
            snapshot: ArcSwap::from_pointee(snapshot),
            deploy_lock: tokio::sync::Mutex::new(()),
            engine: OnceLock::new(),
            published: std::sync::Mutex::default(),
        })
    }

    /// The current snapshot.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The deployed function `name` under `qualifier`, and the version as Lambda reports it:
    /// `$LATEST` (or none) is the deployed code; a number is a published version; another name
    /// is an alias (its weighted second version chosen by `unit`, uniform in `[0, 1)`); a
    /// prefix of at least 8 hex digits must match the deployed version's id.
    pub(crate) fn resolve(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(Arc<Deployed>, Cow<'static, str>), InvokeError> {
        let d = self
            .snapshot
            .load()
            .functions
            .get(name)
            .cloned()
            .ok_or_else(|| InvokeError::NotFound(name.to_string()))?;
        let version = &d.active.version;
        let not_found = |q: &str| InvokeError::VersionNotFound {
            function: name.to_string(),
            qualifier: q.to_string(),
            active: version.short_id().to_string(),
        };
        match qualifier {
            None | Some("$LATEST") => Ok((d, Cow::Borrowed("$LATEST"))),
            Some(q) if q.len() >= 8 && version.id.starts_with(q) => {
                let short = version.short_id().to_string();
                Ok((d, Cow::Owned(short)))
            }
            // A deployed version no longer active, named by its whole id (what a durable
            // execution started on `$LATEST` runs on).
            Some(q) if q.len() == version.id.len() && q.parse::<u32>().is_err() => {
                let stored = self
                    .store
                    .version(name, q)
                    .map_err(|e| InvokeError::Prepare(PrepareError::Other(e.to_string())))?
                    .ok_or_else(|| not_found(q))?;
                let short = stored.short_id().to_string();
                Ok((self.stored_deployed(stored, None), Cow::Owned(short)))
            }
            Some(q) => {
                let number = match q.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => {
                        let alias = self
                            .store
                            .aliases(name)
                            .map_err(|e| InvokeError::Prepare(PrepareError::Other(e.to_string())))?
                            .into_iter()
                            .find(|a| a.name == q)
                            .ok_or_else(|| not_found(q))?;
                        pick_version(&alias, rand::random::<f64>())
                    }
                };
                let published = self
                    .store
                    .published_versions(name)
                    .map_err(|e| InvokeError::Prepare(PrepareError::Other(e.to_string())))?
                    .into_iter()
                    .find(|p| p.number == number)
                    .ok_or_else(|| not_found(q))?;
                Ok((
                    self.stored_deployed(published.version, Some(number)),
                    Cow::Owned(number.to_string()),
                ))
            }
        }
    }

    /// The instances of a version that is not the active one — published as `number`, or
    /// (`None`) a replaced deployment a durable execution still runs on — made on first use.
    fn stored_deployed(
        &self,
        mut version: nimbus_core::FunctionVersion,
        number: Option<u32>,
    ) -> Arc<Deployed> {
        // Number 0: no published version has it.
        let key = (
            version.function.clone(),
            version.id.clone(),
            number.unwrap_or(0),
        );
        let mut cache = self.published.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| {
                if let Some(n) = number {
                    // What the runtime reports as the version (`AWS_LAMBDA_FUNCTION_VERSION`).
                    version
                        .config
                        .env
                        .insert(VERSION_ENV.to_string(), n.to_string());
                }
                Deployed::restored(
                    &self.executors,
                    &self.secrets,
                    ActiveFunction {
                        version,
                        routes: Vec::new(),
                    },
                )
            })
            .clone()
    }

    /// Forgets the published versions' instances of `function` (it was removed).
    pub(crate) fn forget_published(&self, function: &str) {
        if let Ok(mut cache) = self.published.lock() {
            cache.retain(|(f, _, _), _| f != function);
        }
    }

    /// Which function serves `method path`.
    pub(crate) fn route(&self, method: &str, path: &str) -> RouteLookup {
        match self.snapshot.load().routes.at(method, path) {
            RouteMatch::Found {
                target,
                route,
                params,
            } => RouteLookup::Found(RouteHit {
                function: target.name().to_string(),
                rate_limit: target.active.version.config.rate_limit,
                client_rate_limit: target.active.version.config.client_rate_limit,
                route: route.to_string(),
                params,
                qualifier: route.qualifier.clone(),
                durable: target.active.version.config.durable.is_some(),
                access: (!route.access.is_default()).then(|| Box::new(route.access.clone())),
            }),
            RouteMatch::MethodNotAllowed { allowed } => RouteLookup::MethodNotAllowed { allowed },
            RouteMatch::NotFound => RouteLookup::NotFound,
        }
    }

    /// Every deployed function as the API presents it (sorted by name).
    pub(crate) fn functions(&self) -> Vec<FunctionInfo> {
        let mut list: Vec<FunctionInfo> = self
            .snapshot
            .load()
            .functions
            .values()
            .map(|d| self.describe(d))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// One deployed function as the API presents it.
    pub(crate) fn function(&self, name: &str) -> Option<FunctionInfo> {
        self.snapshot
            .load()
            .functions
            .get(name)
            .map(|d| self.describe(d))
    }

    /// A function as the API presents it, with its instances on this node.
    fn describe(&self, d: &Deployed) -> FunctionInfo {
        let mut info = FunctionInfo::from(&d.active);
        let runtime = d.active.version.config.runtime;
        info.isolation = self.executors.of(runtime).isolation();
        info.keep_alive = Some(d.instances.keep_alive());
        info.instances = Some(d.instances.counts().unwrap_or_default());
        info
    }

    /// Starts the warm instances (`min_instances`) of every deployed function; at start-up
    /// (deploys do it for what they deploy).
    pub(crate) async fn prestart_all(&self) -> Result<(), PrepareError> {
        let functions: Vec<Arc<Deployed>> =
            self.snapshot.load().functions.values().cloned().collect();
        for d in functions {
            d.instances.prestart().await?;
        }
        Ok(())
    }

    /// Deploys an app atomically: every function prepared and every route checked before
    /// anything changes; then one store transaction and one snapshot swap.
    pub(crate) async fn deploy(&self, req: DeployRequest) -> Result<DeployResponse, DeployError> {
        let app = AppSpec::parse(&req.manifest)?;
        let shas = self.uploaded_artifacts(&app, &req)?;
        let workflows = self.workflow_records(&app, &req)?;
        let revisions: Vec<&str> = workflows.iter().map(|w| w.revision_id.as_str()).collect();
        let digest = nimbus_core::sha256_hex(
            format!(
                "{}\n{}\n{}",
                req.manifest,
                serde_json::to_string(&shas).unwrap_or_default(),
                revisions.join(",")
            )
            .as_bytes(),
        );

        let _guard = self.deploy_lock.lock().await;
        let deployed = self.deploy_locked(app, shas, workflows, digest).await;
        if deployed.is_err() {
            // Nothing changed: what this deploy uploaded and unpacked goes, unless in use.
            let failed: Vec<String> = req.artifacts.values().cloned().collect();
            if let Err(e) = self.sweep(&failed, None).await {
                tracing::warn!(error = %e, "cleaning up after a failed deploy");
            }
        }
        deployed
    }

    /// Deletes what no deployed version uses: the artifacts in `discard`, artifacts older than
    /// `grace` (when given: younger ones may be uploads waiting for their deploy), unpacked
    /// code and compiled components, and whatever interrupted uploads and unpacks left. Call
    /// under the deploy lock (or before serving).
    pub(crate) async fn sweep(
        &self,
        discard: &[String],
        grace: Option<std::time::Duration>,
    ) -> Result<usize, nimbus_core::StoreError> {
        let store = self.store.clone();
        // What active functions and published versions run stays: this tenant's for its
        // artifacts, every tenant's for the runtimes' caches (which all tenants share).
        let (keep, node_keep) = tokio::task::spawn_blocking(move || {
            let mut keep: HashSet<String> = store
                .active_functions()?
                .into_iter()
                .map(|f| f.version.artifact_sha256)
                .collect();
            keep.extend(store.published_artifacts()?);
            let node_keep: HashSet<String> = store.node_artifacts()?.into_iter().collect();
            Ok::<_, nimbus_core::StoreError>((keep, node_keep))
        })
        .await
        .map_err(nimbus_core::StoreError::backend)??;
        let artifacts = self.artifacts.clone();
        let discard = discard.to_vec();
        let executors = [self.executors.wasm.clone(), self.executors.process.clone()];
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for sha in &discard {
                artifacts.discard(sha, &keep)?;
            }
            if let Some(grace) = grace {
                let before = std::time::SystemTime::now() - grace;
                removed += artifacts.sweep(&keep, before)?;
            }
            for executor in executors {
                removed += executor.sweep(&node_keep)?;
            }
            Ok::<_, std::io::Error>(removed)
        })
        .await
        .map_err(nimbus_core::StoreError::backend)?
        .map_err(nimbus_core::StoreError::backend)
    }

    /// [`Live::deploy`] under the deploy lock.
    async fn deploy_locked(
        &self,
        app: AppSpec,
        shas: BTreeMap<String, String>,
        workflows: Vec<nimbus_core::workflow::MachineRecord>,
        digest: String,
    ) -> Result<DeployResponse, DeployError> {
        let current = self.snapshot.load_full();
        let store = self.store.clone();
        let app_name = app.name.clone();
        if tokio::task::spawn_blocking(move || store.app_digest(&app_name)).await??
            == Some(digest.clone())
        {
            return Ok(self.describe_app(&current, &app.name, false));
        }

        let mut new_functions = Vec::with_capacity(app.functions.len());
        for f in &app.functions {
            let sha = &shas[&f.name];
            let mut version = FunctionVersion {
                id: FunctionVersion::content_id(sha, &f.config),
                function: f.name.clone(),
                app: app.name.clone(),
                artifact_sha256: sha.clone(),
                // Known once the artifact is prepared.
                kind: FunctionKind::Event,
                config: f.config.clone(),
                created_at_ms: now_ms(),
            };
            let (kind, instances) = match current.functions.get(&f.name) {
                Some(d)
                    if d.active.version.id == version.id && d.active.version.app == app.name =>
                {
                    (d.active.version.kind, d.instances.clone())
                }
                _ => {
                    let prepared = self.prepare(&version).await?;
                    (prepared.kind, prepared.instances)
                }
            };
            if kind == FunctionKind::Event && !f.routes.is_empty() && !f.config.runtime.is_process()
            {
                return Err(DeployError::RoutesOnEventFunction {
                    function: f.name.clone(),
                    source_path: f.source.clone(),
                });
            }
            version.kind = kind;
            let active = ActiveFunction {
                version,
                routes: f.routes.clone(),
            };
            let limit = self.executors.of(f.config.runtime).concurrency(&f.config);
            new_functions.push(Deployed::new(active, instances, limit));
        }

        // Check routes against every other app before touching the store.
        let names: HashSet<&str> = app.functions.iter().map(|f| f.name.as_str()).collect();
        let mut all: Vec<Arc<Deployed>> = current
            .functions
            .values()
            .filter(|d| d.active.version.app != app.name && !names.contains(d.name()))
            .cloned()
            .collect();
        all.extend(new_functions.iter().cloned());
        let snapshot = Snapshot::build(all)?;

        let policies: Vec<_> = app
            .functions
            .iter()
            .map(|f| (f.name.clone(), f.config.events.clone()))
            .collect();
        let event_functions: Vec<String> = new_functions
            .iter()
            .filter(|d| d.takes_events())
            .map(|d| d.name().to_string())
            .collect();
        let problems = self
            .check_event_references(&app.name, &app.events, &policies, &event_functions)
            .await?;
        if !problems.is_empty() {
            return Err(DeployError::References(problems));
        }

        let deployment = AppDeployment {
            app: app.name.clone(),
            digest,
            functions: new_functions.iter().map(|d| d.active.clone()).collect(),
            events: app.events.clone(),
            workflows,
        };
        // Functions the app no longer has lose their resource policies with them.
        let dropped: Vec<String> = current
            .functions
            .values()
            .filter(|d| d.active.version.app == app.name && !names.contains(d.name()))
            .map(|d| d.name().to_string())
            .collect();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.deploy_app(&deployment)?;
            dropped
                .iter()
                .try_for_each(|f| store.put_function_policy(f, &[]))
        })
        .await??;
        self.snapshot.store(Arc::new(snapshot));
        self.refresh_events().await?;
        for d in &new_functions {
            if let Err(e) = d.instances.prestart().await {
                tracing::warn!(function = %d.name(), error = %e, "cannot start a warm instance");
            }
        }
        tracing::info!(app = %app.name, functions = new_functions.len(), "deployed");
        Ok(self.describe_app(&self.snapshot.load(), &app.name, true))
    }

    /// Each function's artifact sha256, checking each was uploaded.
    fn uploaded_artifacts(
        &self,
        app: &AppSpec,
        req: &DeployRequest,
    ) -> Result<BTreeMap<String, String>, DeployError> {
        let mut shas = BTreeMap::new();
        for f in &app.functions {
            let sha = req
                .artifacts
                .get(&f.source)
                .ok_or_else(|| DeployError::MissingArtifact {
                    function: f.name.clone(),
                    source_path: f.source.clone(),
                })?;
            if !self.artifacts.contains(sha) {
                return Err(DeployError::ArtifactNotUploaded {
                    function: f.name.clone(),
                    source_path: f.source.clone(),
                    sha256: sha.clone(),
                });
            }
            shas.insert(f.name.clone(), sha.clone());
        }
        Ok(shas)
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

    /// Prepares `version` for its runtime, its secrets' values in the runtime's copy.
    async fn prepare(&self, version: &FunctionVersion) -> Result<Prepared, DeployError> {
        let runtime = if !self.secrets.changes(version) {
            version.clone()
        } else {
            let (secrets, v) = (self.secrets.clone(), version.clone());
            tokio::task::spawn_blocking(move || secrets.runtime_version(&v).map(Cow::into_owned))
                .await?
                .map_err(|source| DeployError::Secret {
                    function: version.function.clone(),
                    source,
                })?
        };
        self.executors
            .of(version.config.runtime)
            .prepare(&runtime)
            .await
            .map_err(|source| DeployError::InvalidArtifact {
                function: version.function.clone(),
                source,
            })
    }

    /// Secret `name` changed: the deployed functions that use it get new instances (with its
    /// new value); the ones running finish as they are. Returns those functions.
    pub(crate) async fn refresh_secret(&self, name: &str) -> Result<Vec<String>, DeployError> {
        let _guard = self.deploy_lock.lock().await;
        let current = self.snapshot.load_full();
        let mut functions = Vec::with_capacity(current.functions.len());
        let mut refreshed = Vec::new();
        for d in current.functions.values() {
            if !d.active.version.config.secrets.values().any(|s| s == name) {
                functions.push(d.clone());
                continue;
            }
            let v = &d.active.version;
            let prepared = self.prepare(v).await?;
            let limit = self.executors.of(v.config.runtime).concurrency(&v.config);
            functions.push(Deployed::new(d.active.clone(), prepared.instances, limit));
            refreshed.push(d.name().to_string());
        }
        if refreshed.is_empty() {
            return Ok(refreshed);
        }
        let snapshot = Snapshot::build(functions)?;
        for f in &refreshed {
            self.forget_published(f);
        }
        self.snapshot.store(Arc::new(snapshot));
        refreshed.sort();
        Ok(refreshed)
    }

    /// The deployed functions whose env names secret `name`.
    pub(crate) fn secret_users(&self, name: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .snapshot
            .load()
            .functions
            .values()
            .filter(|d| d.active.version.config.secrets.values().any(|s| s == name))
            .map(|d| d.name().to_string())
            .collect();
        users.sort();
        users
    }

    /// Removes one function, or a whole app, and swaps the snapshot. Returns whether it existed.
    pub(crate) async fn remove(&self, target: Removal) -> Result<bool, DeployError> {
        let _guard = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let existed = tokio::task::spawn_blocking(move || match target {
            Removal::Function(f) => store.remove_function(&f),
            Removal::App(a) => store.remove_app(&a),
        })
        .await??;
        let store = self.store.clone();
        let active = tokio::task::spawn_blocking(move || store.active_functions()).await??;
        let current = self.snapshot.load_full();
        let functions = active
            .into_iter()
            .map(|f| match current.functions.get(&f.version.function) {
                Some(d) if d.active == f => d.clone(),
                _ => Deployed::restored(&self.executors, &self.secrets, f),
            })
            .collect();
        let snapshot = Snapshot::build(functions)?;
        let gone: Vec<String> = current
            .functions
            .keys()
            .filter(|f| !snapshot.functions.contains_key(*f))
            .cloned()
            .collect();
        for f in &gone {
            self.forget_published(f);
        }
        // A removed function's resource policy goes with it (as on Lambda).
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            gone.iter()
                .try_for_each(|f| store.put_function_policy(f, &[]))
        })
        .await??;
        self.snapshot.store(Arc::new(snapshot));
        self.refresh_events().await?;
        Ok(existed)
    }
}

/// What [`Invoker::remove`] removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// One function (and its routes).
    Function(String),
    /// An app, its functions and routes and its event resources.
    App(String),
}
