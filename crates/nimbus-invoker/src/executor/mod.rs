//! The runtimes behind one trait.
//!
//! An [`Executor`] is one runtime on this node (wasm, or the process runtimes). At deploy it
//! prepares a version's artifact ([`Executor::prepare`]); at start it restores deployed
//! versions lazily ([`Executor::restore`]). Either way the version gets its [`Instances`]: the
//! runtime's own state for that function (a loaded component, a pool of sandboxes), which runs
//! admitted invocations ([`Instances::run`]) and owns the instance lifecycle (cold starts,
//! keep-alive, `min_instances`). Executors know nothing of admission, records or HTTP
//! statuses: they run a [`Job`] and hand its [`Completed`] to the job's [`Finish`] once.

pub mod process;
pub mod wasm;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use nimbus_core::api::{InstanceCounts, Status};
use nimbus_core::trace::TraceParent;
use nimbus_core::{FunctionConfig, FunctionKind, FunctionVersion, Trigger};

pub use crate::finish::{Completed, Finish};
use crate::request::{FunctionError, Output, Payload};

/// The node's runtimes.
pub struct Executors {
    /// WebAssembly components.
    pub wasm: Arc<dyn Executor>,
    /// Python, Node and provided functions in sandboxes.
    pub process: Arc<dyn Executor>,
}

impl Executors {
    /// The executor of functions of `runtime`.
    pub fn of(&self, runtime: nimbus_core::model::Runtime) -> &Arc<dyn Executor> {
        if runtime.is_process() {
            &self.process
        } else {
            &self.wasm
        }
    }

    /// Both runtimes.
    pub fn all(&self) -> [&Arc<dyn Executor>; 2] {
        [&self.wasm, &self.process]
    }
}

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One runtime on this node.
pub trait Executor: Send + Sync + 'static {
    /// Prepares a new version at deploy: reads and checks its artifact (compiles a component,
    /// unpacks a code bundle). A version that cannot run is refused here, before anything
    /// changes.
    fn prepare<'a>(
        &'a self,
        version: &'a FunctionVersion,
    ) -> BoxFuture<'a, Result<Prepared, PrepareError>>;

    /// The instances of a version deployed before this node started; they prepare themselves
    /// on first use.
    fn restore(&self, version: &FunctionVersion) -> Arc<dyn Instances>;

    /// The most invocations of one function (with `config`) that run at once on this node;
    /// beyond it, callers wait for a slot and are then throttled.
    fn concurrency(&self, config: &FunctionConfig) -> u32;

    /// Whether this runtime takes HTTP requests whole (process runtimes turn them into API
    /// Gateway events): the invoker then reads the body before admission, so a slow client
    /// never holds a concurrency slot.
    fn buffers_http_bodies(&self) -> bool;

    /// The isolation this runtime's instances get on this node, for people, if it has any
    /// to report.
    fn isolation(&self) -> Option<String>;

    /// Deletes what this runtime keeps on disk for artifacts not in `keep` (unpacked code,
    /// compiled components) and what an interrupted preparation left. Blocking.
    fn sweep(&self, keep: &HashSet<String>) -> std::io::Result<usize>;

    /// Adds what this runtime has done since start to the node's status (components
    /// compiled, sandbox isolation).
    fn report(&self, status: &mut Status);

    /// Background duties (reapers, standby instances), each run by the node's supervisor
    /// until it stops them.
    fn background(&self) -> Vec<(&'static str, BoxFuture<'static, ()>)>;

    /// Stops every idle instance and waits for the runtime to be clean; at shutdown, after the
    /// invocations have drained.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// A prepared version: what its artifact turned out to be, and its instances.
pub struct Prepared {
    /// HTTP or event function (process runtimes: always event).
    pub kind: FunctionKind,
    /// Its instances on this node.
    pub instances: Arc<dyn Instances>,
}

/// One function version's instances on this node.
pub trait Instances: Send + Sync + 'static {
    /// Runs one admitted invocation: on a warm instance, or a new one (a cold start). Calls
    /// `job.finish` exactly once, now or (a streaming HTTP response) when the body ends.
    fn run(&self, job: Job) -> BoxFuture<'_, Ran>;

    /// Its instances now; `None` when the runtime has created nothing for it yet.
    fn counts(&self) -> Option<InstanceCounts>;

    /// The keep-alive policy as it applies to this function now, for people.
    fn keep_alive(&self) -> String;

    /// Starts the instances the version keeps warm (`min_instances`); nothing otherwise.
    fn prestart(&self) -> BoxFuture<'_, Result<(), PrepareError>>;
}

/// An admitted invocation, handed to a function's [`Instances`].
pub struct Job {
    /// The invocation id.
    pub id: String,
    /// What started it.
    pub trigger: Trigger,
    /// What the function gets.
    pub payload: Payload,
    /// This invocation's own span, when traced: what the function sees as its parent.
    pub span: Option<TraceParent>,
    /// The caller's X-Ray header.
    pub xray: Option<String>,
    /// The caller's client context.
    pub client_context: Option<String>,
    /// Where the invocation ends.
    pub finish: Finish,
}

/// What running a job returned.
pub struct Ran {
    /// The function's output, or how it failed.
    pub output: Result<Output, FunctionError>,
    /// The framed log, when the invocation had finished by the time `run` returned.
    pub logs: Option<String>,
}

/// Why a version cannot run on this node.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The component is not a valid, linkable HTTP or event component.
    #[error(transparent)]
    Wasm(#[from] nimbus_wasm::WasmError),
    /// The code bundle is unusable for its runtime.
    #[error(transparent)]
    Process(#[from] nimbus_process::PrepareError),
    /// The artifact could not be read.
    #[error(transparent)]
    Artifact(#[from] nimbus_store::artifacts::ArtifactError),
    /// The task preparing it failed.
    #[error("preparing failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Anything else (fakes in tests).
    #[error("{0}")]
    Other(String),
}

/// Runs blocking work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(f).await
}
