//! Nimbus WebAssembly runtime, on wasmtime.
//!
//! # Core concepts
//! - One [`WasmRuntime`] per process owns the wasmtime `Engine` (pooling allocator, epoch
//!   interruption), the two `Linker`s (HTTP functions, event functions) and the on-disk cache of
//!   compiled components.
//! - [`WasmRuntime::prepare`] compiles an artifact at deploy time: it rejects anything that is not a
//!   component exporting `wasi:http/incoming-handler` (proxy world) or `nimbus:function/handler`
//!   (`wit/nimbus-function.wit`), or that imports what Nimbus does not provide, and caches the
//!   compiled code so restarts deserialize instead of recompiling ([`WasmRuntime::load`]).
//! - A [`LoadedFunction`] holds an `InstancePre`; every invocation gets a fresh `Store` and instance
//!   (isolation between requests), with [`Limits`]: a linear-memory cap, a wall-clock timeout,
//!   only the configured environment, no preopened directories, no sockets, and outbound HTTP
//!   only to `allowed_hosts`.
//! - Components are shared: every function deployed from the same artifact uses one
//!   [`LoadedFunction`] (one compiled copy in memory), so a node holding thousands of functions
//!   built from one component pays for it once.
//! - A [`WasmInstance`] is one function's instance on the node: its loaded component, loaded on
//!   first use (the cold start, once however many callers wait) and unloaded by the reaper
//!   after the keep-alive ([`WasmRuntime::run_reaper`]): scale to zero.
//! - Every invocation ends in a [`Completion`]: duration, peak memory, captured stdout/stderr and,
//!   on failure, a [`GuestError`] typed by [`nimbus_core::ErrorType`].
//!
//! # Edges
//! No routing, admission, storage or records here: the invoker (`nimbus-invoker`) decides what
//! to run and records the outcome.

mod cache;
mod host;
mod instances;
mod invoke;

pub use host::Limits;
pub use instances::{Running, WasmInstance};
pub use invoke::{BodyFailure, Completion, Event, GuestError};
pub use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use nimbus_core::FunctionKind;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use host::Host;

/// Export that makes a component an HTTP function.
pub const HTTP_EXPORT_PREFIX: &str = "wasi:http/incoming-handler@0.2";
/// Export that makes a component an event function.
pub const EVENT_EXPORT_PREFIX: &str = "nimbus:function/handler@0.1";

/// Generated bindings of `wit/nimbus-function.wit`.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "event-function",
        exports: { default: async },
    });
}

/// Errors from preparing or loading a component.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The bytes are not a valid component for this engine; the message says why.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// A valid component that is neither an HTTP nor an event function.
    #[error(
        "the component exports neither `wasi:http/incoming-handler` (an HTTP function) nor \
         `nimbus:function/handler` (an event function); it exports: {0}"
    )]
    NoHandler(String),
    /// The component needs an import Nimbus does not provide.
    #[error("the component cannot be linked: {0}")]
    Link(String),
    /// The artifact could not be read.
    #[error("reading artifact {artifact}: {source}")]
    ReadArtifact {
        /// Its sha256.
        artifact: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine, its compiled cache or its epoch thread could not be set up.
    #[error("wasm runtime: {context}: {source}")]
    Setup {
        /// What was being set up.
        context: &'static str,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Directory for compiled components.
    pub cache_dir: PathBuf,
    /// How often the epoch advances; a running guest yields to other tasks at each tick.
    pub epoch_tick: Duration,
    /// Captured stdout+stderr per invocation, bytes; output past it is dropped.
    pub log_capacity: usize,
    /// Component instances (concurrent invocations) the node's pool holds. Memories and
    /// stacks alike, tables twice, core instances eight times (a component instantiates
    /// several core modules). An invocation that finds the pool full is refused as
    /// `Function.Throttled`, never trapped.
    pub max_instances: u32,
    /// The node's memory budget, shared with the process runtime: linear memories are charged
    /// as they grow, and a growth past it fails the invocation with `Function.Throttled`.
    pub memory_budget: Arc<nimbus_core::budget::MemoryBudget>,
}

impl WasmConfig {
    /// Defaults with the given cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            epoch_tick: Duration::from_millis(5),
            log_capacity: 64 * 1024,
            max_instances: 1000,
            memory_budget: nimbus_core::budget::MemoryBudget::unlimited(),
        }
    }
}

/// Counters a caller can use to see what the runtime did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Components compiled from wasm bytes since start.
    pub compiled: u64,
    /// Components loaded from the compiled cache since start.
    pub loaded_from_cache: u64,
}

enum Pre {
    Http(ProxyPre<Host>),
    Event(bindings::EventFunctionPre<Host>),
}

/// A component ready to instantiate: compiled, linked, pre-instantiated.
pub struct LoadedFunction {
    pre: Pre,
    /// Pool slots one instance takes (its memories or tables, at least one).
    weight: u32,
    /// How long loading took (compile or cache load + linking).
    pub load_time: Duration,
}

impl LoadedFunction {
    /// HTTP or event function.
    pub fn kind(&self) -> FunctionKind {
        match self.pre {
            Pre::Http(_) => FunctionKind::Http,
            Pre::Event(_) => FunctionKind::Event,
        }
    }
}

/// The per-process WebAssembly runtime.
pub struct WasmRuntime {
    engine: Engine,
    http_linker: Linker<Host>,
    event_linker: Linker<Host>,
    cache: cache::CompiledCache,
    log_capacity: usize,
    compiled: AtomicU64,
    loaded_from_cache: AtomicU64,
    ticker_stop: Arc<AtomicBool>,
    /// One permit per pool memory: an invocation holds its component's memories' worth while
    /// its store lives.
    capacity: Arc<tokio::sync::Semaphore>,
    /// Component instances the pool holds.
    max_instances: u32,
    /// The node's memory budget.
    memory_budget: Arc<nimbus_core::budget::MemoryBudget>,
    /// Loaded components by artifact sha256, shared by every function deployed from it.
    shared: Mutex<HashMap<String, Weak<LoadedFunction>>>,
    /// Every live instance, for the reaper.
    instances: Mutex<Vec<Weak<WasmInstance>>>,
}

/// Bytes of each linear memory and table kept resident between instances (reset by memset).
const KEEP_RESIDENT_BYTES: usize = 1024 * 1024;

impl WasmRuntime {
    /// Builds the engine and linkers and starts the epoch ticker.
    pub fn new(config: WasmConfig) -> Result<Self, WasmError> {
        let internal = |e: wasmtime::Error| WasmError::Setup {
            context: "engine",
            source: e.into(),
        };
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances.saturating_mul(8))
            .total_memories(config.max_instances)
            .total_tables(config.max_instances.saturating_mul(2))
            .total_stacks(config.max_instances)
            .max_memory_size(
                nimbus_core::model::MEMORY_MB_RANGE.end().to_owned() as usize * 1024 * 1024,
            )
            // Reset small memories and tables with memset (only the pages a request touched, via
            // PAGEMAP_SCAN where the kernel has it) instead of madvise: a fresh instance per
            // request otherwise pays an madvise and a cross-CPU TLB shootdown every time.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm_config = Config::new();
        wasm_config
            .epoch_interruption(true)
            // Explicit bounds checks instead of guard regions: an instance that grew its memory
            // would otherwise cost two `mprotect`s (with cross-CPU TLB shootdowns) per
            // invocation, one to grow and one to shrink the slot back for the next instance.
            .signals_based_traps(false)
            .memory_guard_size(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&wasm_config).map_err(internal)?;

        let mut http_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut http_linker).map_err(internal)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(internal)?;
        let event_linker = http_linker.clone();

        let cache = cache::CompiledCache::open(&config.cache_dir, &engine).map_err(|e| {
            WasmError::Setup {
                context: "compiled cache",
                source: e.into(),
            }
        })?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticker_engine, tick) = (ticker_stop.clone(), engine.clone(), config.epoch_tick);
        std::thread::Builder::new()
            .name("nimbus-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| WasmError::Setup {
                context: "epoch thread",
                source: e.into(),
            })?;

        Ok(Self {
            engine,
            http_linker,
            event_linker,
            cache,
            log_capacity: config.log_capacity,
            compiled: AtomicU64::new(0),
            loaded_from_cache: AtomicU64::new(0),
            ticker_stop,
            shared: Mutex::new(HashMap::new()),
            instances: Mutex::new(Vec::new()),
            capacity: Arc::new(tokio::sync::Semaphore::new(config.max_instances as usize)),
            memory_budget: config.memory_budget,
            max_instances: config.max_instances,
        })
    }

    /// The component of `artifact_sha256` if a function on this node holds it loaded.
    pub fn shared(&self, artifact_sha256: &str) -> Option<Arc<LoadedFunction>> {
        self.shared.lock().ok()?.get(artifact_sha256)?.upgrade()
    }

    fn share(&self, artifact_sha256: &str, loaded: LoadedFunction) -> Arc<LoadedFunction> {
        let loaded = Arc::new(loaded);
        if let Ok(mut shared) = self.shared.lock() {
            shared.retain(|_, w| w.strong_count() > 0);
            shared.insert(artifact_sha256.to_string(), Arc::downgrade(&loaded));
        }
        loaded
    }

    /// Compiles `wasm` (deploy time), checks it is a linkable HTTP or event component, and stores
    /// the compiled code in the cache under `artifact_sha256`. An artifact already loaded on
    /// this node was checked when it was, and is shared instead. Blocking: run off the async
    /// threads.
    pub fn prepare(
        &self,
        artifact_sha256: &str,
        wasm: &[u8],
    ) -> Result<Arc<LoadedFunction>, WasmError> {
        if let Some(loaded) = self.shared(artifact_sha256) {
            return Ok(loaded);
        }
        let start = Instant::now();
        let component = self.compile(wasm)?;
        let pre = self.link(&component)?;
        if let Err(e) = self.cache.store(artifact_sha256, &component) {
            tracing::warn!(error = %e, "could not write the compiled-component cache");
        }
        Ok(self.share(
            artifact_sha256,
            LoadedFunction {
                pre,
                weight: self.weight(&component),
                load_time: start.elapsed(),
            },
        ))
    }

    /// Loads a deployed component: the one already loaded on this node if another function
    /// holds it, else from the compiled cache when it is there and was built by this engine
    /// configuration, otherwise by compiling `read_artifact()` again. Blocking.
    pub fn load(
        &self,
        artifact_sha256: &str,
        read_artifact: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> Result<Arc<LoadedFunction>, WasmError> {
        if let Some(loaded) = self.shared(artifact_sha256) {
            return Ok(loaded);
        }
        let start = Instant::now();
        if let Some(component) = self.cache.load(artifact_sha256) {
            self.loaded_from_cache.fetch_add(1, Ordering::Relaxed);
            let pre = self.link(&component)?;
            return Ok(self.share(
                artifact_sha256,
                LoadedFunction {
                    pre,
                    weight: self.weight(&component),
                    load_time: start.elapsed(),
                },
            ));
        }
        let wasm = read_artifact().map_err(|source| WasmError::ReadArtifact {
            artifact: artifact_sha256.to_string(),
            source,
        })?;
        self.prepare(artifact_sha256, &wasm)
    }

    /// Deletes compiled components of artifacts not in `keep` (sha256s). Blocking.
    pub fn retain_compiled(
        &self,
        keep: &std::collections::HashSet<String>,
    ) -> std::io::Result<usize> {
        self.cache.retain(keep)
    }

    /// Pool slots one instance of `component` takes: its memories, or half its tables (the
    /// pool holds twice as many tables), at least one; unknown sizes take one.
    fn weight(&self, component: &Component) -> u32 {
        component
            .resources_required()
            .map_or(1, |r| r.num_memories.max(r.num_tables.div_ceil(2)).max(1))
            .min(self.max_instances.max(1))
    }

    /// Component instances the node's pool holds.
    pub fn max_instances(&self) -> u32 {
        self.max_instances
    }

    /// Concurrent invocations one function may run by default: a quarter of the pool, so
    /// one busy function never takes every instance from the others.
    pub fn default_concurrency(&self) -> u32 {
        (self.max_instances / 4).max(1)
    }

    /// Takes `function`'s share of the pool for one instance, or says the pool is full.
    fn take_capacity(
        &self,
        function: &LoadedFunction,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, GuestError> {
        self.capacity
            .clone()
            .try_acquire_many_owned(function.weight)
            .map_err(|_| GuestError::pool_full(self.max_instances))
    }

    /// What the runtime has compiled and loaded since start.
    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded_from_cache: self.loaded_from_cache.load(Ordering::Relaxed),
        }
    }

    fn compile(&self, wasm: &[u8]) -> Result<Component, WasmError> {
        if wasm.get(..4) != Some(b"\0asm") {
            return Err(WasmError::Invalid(
                "the file does not start with the WebAssembly magic bytes `\\0asm`".into(),
            ));
        }
        let component = Component::new(&self.engine, wasm).map_err(|e| {
            let msg = format!("{e:#}");
            if msg.contains("attempted to parse a wasm module with a component parser") {
                WasmError::Invalid(
                    "this is a core wasm module, not a component; wrap it with \
                     `wasm-tools component new` (see scripts/build-wasm.sh)"
                        .into(),
                )
            } else {
                WasmError::Invalid(msg)
            }
        })?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        Ok(component)
    }

    fn link(&self, component: &Component) -> Result<Pre, WasmError> {
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
        let link_err = |e: wasmtime::Error| WasmError::Link(format!("{e:#}"));
        if exports.iter().any(|e| e.starts_with(HTTP_EXPORT_PREFIX)) {
            let pre = self
                .http_linker
                .instantiate_pre(component)
                .map_err(link_err)?;
            Ok(Pre::Http(ProxyPre::new(pre).map_err(link_err)?))
        } else if exports.iter().any(|e| e.starts_with(EVENT_EXPORT_PREFIX)) {
            let pre = self
                .event_linker
                .instantiate_pre(component)
                .map_err(link_err)?;
            Ok(Pre::Event(
                bindings::EventFunctionPre::new(pre).map_err(link_err)?,
            ))
        } else {
            Err(WasmError::NoHandler(if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            }))
        }
    }
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
