//! Instances of wasm functions, and scale to zero.
//!
//! A wasm function's instance on a node is its loaded component (compiled code and the
//! pre-instantiated linker): it serves up to `concurrency_per_instance` invocations at once,
//! each in a fresh wasm store. Loading it is the cold start. When nothing has run for the
//! keep-alive and `min_instances` is 0, the reaper unloads it, and the function holds nothing
//! until its next invocation. Process functions' instances are their sandboxes
//! (`nimbus-process` reaps those).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use nimbus_core::api::InstanceCounts;
use nimbus_wasm::LoadedFunction;

use crate::platform::{Deployed, Platform};

/// Monotonic origin of the `last_used` timestamps.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn since_epoch_ms(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_millis() as u64
}

/// The loaded component of one wasm function version, if any, and its use.
#[derive(Default)]
pub(crate) struct WasmInstance {
    loaded: ArcSwapOption<LoadedFunction>,
    /// Held while loading, so concurrent cold calls load once.
    loading: tokio::sync::Mutex<()>,
    running: AtomicUsize,
    /// When the last invocation ended (ms since [`EPOCH`]).
    last_used_ms: AtomicU64,
    loads: AtomicU64,
}

impl WasmInstance {
    /// An instance holding `loaded` (deploy loads it), used just now.
    pub(crate) fn new(loaded: Option<Arc<LoadedFunction>>) -> Self {
        let i = Self::default();
        if let Some(l) = loaded {
            i.set_loaded(l);
        }
        i
    }

    /// The loaded component, if the instance is warm.
    pub(crate) fn get(&self) -> Option<Arc<LoadedFunction>> {
        self.loaded.load_full()
    }

    /// The loaded component, loading it with `load` if the instance is cold; concurrent
    /// callers wait for one load. Returns the load time when this call loaded it (a cold start).
    pub(crate) async fn get_or_load<E>(
        &self,
        load: impl AsyncFnOnce() -> Result<LoadedFunction, E>,
    ) -> Result<(Arc<LoadedFunction>, Option<Duration>), E> {
        if let Some(loaded) = self.get() {
            return Ok((loaded, None));
        }
        let _loading = self.loading.lock().await;
        if let Some(loaded) = self.get() {
            return Ok((loaded, None));
        }
        let loaded = Arc::new(load().await?);
        self.set_loaded(loaded.clone());
        Ok((loaded.clone(), Some(loaded.load_time)))
    }

    /// Makes the instance warm with `loaded` (a cold start's load, or deploy's).
    fn set_loaded(&self, loaded: Arc<LoadedFunction>) {
        self.loaded.store(Some(loaded));
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.last_used_ms
            .store(since_epoch_ms(Instant::now()), Ordering::Relaxed);
    }

    /// Unloads the component when it has been idle for `keep` and nothing runs; true if it did.
    fn reap(&self, keep: Duration, now: Instant) -> bool {
        if self.running.load(Ordering::Relaxed) > 0 || self.loaded.load().is_none() {
            return false;
        }
        let idle = since_epoch_ms(now).saturating_sub(self.last_used_ms.load(Ordering::Relaxed));
        if idle < keep.as_millis() as u64 {
            return false;
        }
        self.loaded.store(None);
        true
    }

    /// Counts for `nimbus show` and `/metrics`: one instance, warm or busy, or none.
    pub(crate) fn counts(&self) -> InstanceCounts {
        let loaded = usize::from(self.loaded.load().is_some());
        let running = self.running.load(Ordering::Relaxed);
        InstanceCounts {
            idle: if running == 0 { loaded } else { 0 },
            busy: usize::from(running > 0),
            started: self.loads.load(Ordering::Relaxed),
            running,
        }
    }
}

/// Counts an invocation of `d` as running on its instance until the returned guard drops.
pub(crate) fn enter(d: &Arc<Deployed>) -> RunningGuard {
    d.wasm.running.fetch_add(1, Ordering::Relaxed);
    RunningGuard(d.clone())
}

/// An invocation running on a wasm instance.
pub(crate) struct RunningGuard(Arc<Deployed>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let w = &self.0.wasm;
        w.last_used_ms
            .store(since_epoch_ms(Instant::now()), Ordering::Relaxed);
        w.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Unloads idle wasm components every tick, for as long as the platform lives.
pub(crate) async fn reap(platform: Weak<Platform>, keep: Duration) {
    let tick = (keep / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        let Some(p) = platform.upgrade() else { return };
        let now = Instant::now();
        for d in p.snapshot().functions.values() {
            if d.is_process() || d.active.version.config.min_instances > 0 {
                continue;
            }
            if d.wasm.reap(keep, now) {
                tracing::debug!(function = %d.active.version.function, "unloaded an idle component");
            }
        }
    }
}
