//! A fake runtime for tests of the invoker and of the layers above it: each invocation does
//! what the test says, without wasm or sandboxes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::api::{InstanceCounts, Status};
use nimbus_core::{FunctionKind, FunctionVersion};

use nimbus_core::Store;
use nimbus_core::api::{DeployRequest, DeployResponse};
use nimbus_store::group_commit::RecordWriter;
use nimbus_store::{ArtifactStore, RecordSink, SqliteStore};

use crate::error::DeployError;
use crate::executor::Executors;
use crate::executor::{
    BoxFuture, Completed, Executor, Instances, Job, PrepareError, Prepared, Ran,
};
use crate::invoker::{Invoker, InvokerConfig, InvokerParts};
use crate::request::{FunctionError, Output, Payload, ResponseBody};

/// What a fake invocation does.
#[derive(Clone)]
pub enum FakeRun {
    /// Answers with these bytes (an HTTP payload gets them as a 200 response body).
    Answer(Bytes),
    /// Fails with this error.
    Fail(FunctionError),
    /// Waits until `release` is notified, then answers.
    WaitFor(Arc<tokio::sync::Notify>, Bytes),
    /// Drops the invocation without finishing it (as a runtime that panicked would).
    Vanish,
}

type Behaviour = dyn Fn(&Job) -> FakeRun + Send + Sync;

/// A fake runtime.
pub struct FakeExecutor {
    kind: FunctionKind,
    behaviour: Arc<Behaviour>,
    /// Artifacts (sha256) whose preparation fails.
    pub refuse: Mutex<HashSet<String>>,
    /// Invocations run so far.
    pub runs: Arc<AtomicUsize>,
    /// Versions prepared so far.
    pub prepared: AtomicUsize,
}

impl FakeExecutor {
    /// A runtime whose functions are of `kind` and whose invocations do what `behaviour` says.
    pub fn new(
        kind: FunctionKind,
        behaviour: impl Fn(&Job) -> FakeRun + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            kind,
            behaviour: Arc::new(behaviour),
            refuse: Mutex::default(),
            runs: Arc::default(),
            prepared: AtomicUsize::new(0),
        })
    }

    /// A runtime whose invocations answer their payload's data back (`{}` for HTTP).
    pub fn echo(kind: FunctionKind) -> Arc<Self> {
        Self::new(kind, |job| match &job.payload {
            Payload::Event { data, .. } => FakeRun::Answer(data.clone()),
            Payload::Http(_) => FakeRun::Answer(Bytes::from_static(b"{}")),
        })
    }

    fn instances(&self) -> Arc<FakeInstances> {
        Arc::new(FakeInstances {
            behaviour: self.behaviour.clone(),
            runs: self.runs.clone(),
            warm: AtomicBool::new(false),
        })
    }
}

impl Executor for FakeExecutor {
    fn prepare<'a>(
        &'a self,
        version: &'a FunctionVersion,
    ) -> BoxFuture<'a, Result<Prepared, PrepareError>> {
        Box::pin(async move {
            if self
                .refuse
                .lock()
                .map(|r| r.contains(&version.artifact_sha256))
                .unwrap_or(false)
            {
                return Err(PrepareError::Other("the fake refuses this artifact".into()));
            }
            self.prepared.fetch_add(1, Ordering::SeqCst);
            Ok(Prepared {
                kind: self.kind,
                instances: self.instances(),
            })
        })
    }

    fn restore(&self, _version: &FunctionVersion) -> Arc<dyn Instances> {
        self.instances()
    }

    fn concurrency(&self, config: &nimbus_core::FunctionConfig) -> u32 {
        config
            .max_concurrency
            .unwrap_or(u32::MAX)
            .min(config.concurrency_per_instance.unwrap_or(u32::MAX))
    }

    fn buffers_http_bodies(&self) -> bool {
        false
    }

    fn isolation(&self) -> Option<String> {
        None
    }

    fn sweep(&self, _keep: &std::collections::HashSet<String>) -> std::io::Result<usize> {
        Ok(0)
    }

    fn report(&self, _status: &mut Status) {}

    fn background(&self) -> Vec<(&'static str, BoxFuture<'static, ()>)> {
        Vec::new()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

struct FakeInstances {
    behaviour: Arc<Behaviour>,
    runs: Arc<AtomicUsize>,
    warm: AtomicBool,
}

impl Instances for FakeInstances {
    fn run(&self, job: Job) -> BoxFuture<'_, Ran> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let cold = !self.warm.swap(true, Ordering::SeqCst);
            let http = matches!(job.payload, Payload::Http(_));
            let (output, error) = match (self.behaviour)(&job) {
                FakeRun::Answer(b) => (Ok(b), None),
                FakeRun::Fail(e) => (Err(e.clone()), Some(e)),
                FakeRun::WaitFor(release, b) => {
                    release.notified().await;
                    (Ok(b), None)
                }
                FakeRun::Vanish => {
                    drop(job);
                    return Ran {
                        output: Err(FunctionError::new(
                            nimbus_core::ErrorType::Trap,
                            "Fake.Vanished",
                            "vanished",
                        )),
                        logs: None,
                    };
                }
            };
            let logs = job.finish.complete(Completed {
                duration: Duration::from_millis(1),
                max_memory_bytes: 1024,
                error,
                logs: format!("ran {}\n", job.id),
                init: cold.then_some(Duration::from_millis(5)),
                phases: Vec::new(),
            });
            let output = output.map(|b| {
                if http {
                    Output::Http(http::Response::new(ResponseBody::full(b)))
                } else {
                    Output::Bytes(b)
                }
            });
            Ran {
                output,
                logs: Some(logs),
            }
        })
    }

    fn counts(&self) -> Option<InstanceCounts> {
        Some(InstanceCounts {
            idle: usize::from(self.warm.load(Ordering::SeqCst)),
            ..InstanceCounts::default()
        })
    }

    fn keep_alive(&self) -> String {
        "fake".into()
    }

    fn prestart(&self) -> BoxFuture<'_, Result<(), PrepareError>> {
        Box::pin(async { Ok(()) })
    }
}

/// An invoker on a real SQLite store in `dir`, running wasm functions on `wasm` and process
/// functions on an echoing fake.
pub struct TestNode {
    /// The invoker.
    pub invoker: Arc<Invoker>,
    /// Its store.
    pub store: Arc<dyn Store>,
    /// The record writer ([`TestNode::records`] finishes it).
    pub writer: RecordWriter,
}

impl TestNode {
    /// Builds the node; `api_key`, if given, is a valid admin key.
    pub fn new(
        dir: &std::path::Path,
        config: InvokerConfig,
        wasm: Arc<dyn Executor>,
        api_key: Option<&str>,
    ) -> Self {
        Self::for_tenant(dir, nimbus_core::DEFAULT_TENANT, config, wasm, api_key)
    }

    /// Builds the invoker of `tenant` on the database in `dir` (its artifacts in
    /// `dir/tenants/{tenant}` unless it is the default tenant).
    pub fn for_tenant(
        dir: &std::path::Path,
        tenant: &str,
        config: InvokerConfig,
        wasm: Arc<dyn Executor>,
        api_key: Option<&str>,
    ) -> Self {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.join("nimbus.db"), tenant).expect("a store in a temp dir"),
        );
        let own = if tenant == nimbus_core::DEFAULT_TENANT {
            dir.to_path_buf()
        } else {
            dir.join("tenants").join(tenant)
        };
        if let Some(key) = api_key {
            store
                .insert_api_key(&nimbus_core::sha256_hex(key.as_bytes()))
                .expect("stores a key");
        }
        let artifacts = ArtifactStore::open(own.join("artifacts")).expect("an artifact dir");
        let (records, writer) = RecordSink::start(store.clone()).expect("a record writer");
        let invoker = Invoker::new(
            InvokerParts {
                store: store.clone(),
                artifacts,
                records,
                executors: Executors {
                    wasm,
                    process: FakeExecutor::echo(FunctionKind::Event),
                },
                aws_credentials: Default::default(),
                sealer: None,
            },
            config,
        )
        .expect("an invoker");
        Self {
            invoker,
            store,
            writer,
        }
    }

    /// Opens tenants as [`TestNode`]s in `dir` with echoing fake runtimes (no event engine).
    pub fn opener(dir: &std::path::Path) -> Box<dyn crate::tenancy::TenantOpener> {
        Box::new(TestOpener(dir.to_path_buf()))
    }

    /// Uploads `artifact` and deploys `manifest`, every function's source naming it.
    pub async fn deploy(
        &self,
        manifest: &str,
        artifact: &[u8],
    ) -> Result<DeployResponse, DeployError> {
        let sha = nimbus_core::sha256_hex(artifact);
        self.invoker
            .put_artifact(sha.clone(), Bytes::copy_from_slice(artifact))
            .await?;
        let app = nimbus_core::AppSpec::parse(manifest)?;
        let artifacts = app
            .functions
            .iter()
            .map(|s| (s.source.clone(), sha.clone()))
            .collect();
        self.invoker
            .deploy(DeployRequest {
                manifest: manifest.into(),
                artifacts,
            })
            .await
    }

    /// Every record of `function` written so far, oldest first (stops the writer).
    pub async fn records(self, function: &str) -> Vec<nimbus_core::InvocationRecord> {
        let Self { writer, store, .. } = self;
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .expect("the writer stops");
        let mut r = store.invocations(function, 1000).expect("records read");
        r.reverse();
        r
    }
}

struct TestOpener(std::path::PathBuf);

impl crate::tenancy::TenantOpener for TestOpener {
    fn open<'a>(
        &'a self,
        tenant: &'a nimbus_core::tenant::Tenant,
    ) -> BoxFuture<'a, Result<crate::tenancy::OpenedTenant, crate::tenancy::OpenError>> {
        Box::pin(async move {
            let config = InvokerConfig {
                tenant_concurrency: tenant.limits.concurrency,
                ..InvokerConfig::default()
            };
            let node = TestNode::for_tenant(
                &self.0,
                &tenant.name,
                config,
                FakeExecutor::echo(FunctionKind::Event),
                None,
            );
            Ok(crate::tenancy::OpenedTenant {
                invoker: node.invoker,
                records: node.writer,
            })
        })
    }

    fn delete_files(&self, name: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.0.join("tenants").join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
