//! Instances of wasm functions, and scale to zero.
//!
//! A wasm function's instance on a node is its loaded component (compiled code and the
//! pre-instantiated linker): it serves up to `concurrency_per_instance` invocations at once,
//! each in a fresh wasm store. Loading it is the cold start; concurrent cold calls wait for one
//! load. When nothing has run for the keep-alive and the function does not keep its instance
//! loaded (`min_instances = 1`), the reaper ([`WasmRuntime::run_reaper`]) unloads it and the
//! function holds nothing until its next invocation. The compiled component itself is shared
//! by every function deployed from the same artifact (see [`WasmRuntime::load`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use nimbus_core::api::InstanceCounts;

use crate::{LoadedFunction, WasmRuntime};

/// Monotonic origin of the `last_used` timestamps.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn since_epoch_ms(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_millis() as u64
}

/// A value loaded on demand, once however many callers wait for it, and dropped on request.
pub(crate) struct LoadOnce<T> {
    value: ArcSwapOption<T>,
    /// Held while loading, so concurrent cold callers load once.
    loading: tokio::sync::Mutex<()>,
}

impl<T> Default for LoadOnce<T> {
    fn default() -> Self {
        Self {
            value: ArcSwapOption::empty(),
            loading: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T> LoadOnce<T> {
    pub(crate) fn get(&self) -> Option<Arc<T>> {
        self.value.load_full()
    }

    /// The value, loading it with `load` if absent; true when this call loaded it.
    pub(crate) async fn get_or_load<E>(
        &self,
        load: impl AsyncFnOnce() -> Result<Arc<T>, E>,
    ) -> Result<(Arc<T>, bool), E> {
        if let Some(v) = self.get() {
            return Ok((v, false));
        }
        let _loading = self.loading.lock().await;
        if let Some(v) = self.get() {
            return Ok((v, false));
        }
        let v = load().await?;
        self.value.store(Some(v.clone()));
        Ok((v, true))
    }

    fn set(&self, v: Arc<T>) {
        self.value.store(Some(v));
    }

    fn clear(&self) {
        self.value.store(None);
    }

    fn is_loaded(&self) -> bool {
        self.value.load().is_some()
    }
}

/// The instance of one wasm function version on this node: its loaded component, if any, and
/// its use.
pub struct WasmInstance {
    artifact: String,
    keep_loaded: bool,
    loaded: LoadOnce<LoadedFunction>,
    running: AtomicUsize,
    /// When the last invocation ended (ms since [`EPOCH`]).
    last_used_ms: AtomicU64,
    loads: AtomicU64,
}

impl WasmInstance {
    /// The sha256 of the artifact the instance loads.
    pub fn artifact(&self) -> &str {
        &self.artifact
    }

    /// Whether the reaper leaves it loaded (`min_instances = 1`).
    pub fn keeps_loaded(&self) -> bool {
        self.keep_loaded
    }

    /// The loaded component, if the instance is warm.
    pub fn get(&self) -> Option<Arc<LoadedFunction>> {
        self.loaded.get()
    }

    /// The loaded component, loading it with `load` if the instance is cold (a cold start);
    /// concurrent callers wait for one load. Returns how long the load took when this call
    /// loaded it.
    pub async fn get_or_load<E>(
        &self,
        load: impl AsyncFnOnce() -> Result<Arc<LoadedFunction>, E>,
    ) -> Result<(Arc<LoadedFunction>, Option<Duration>), E> {
        let started = Instant::now();
        let (loaded, fresh) = self.loaded.get_or_load(load).await?;
        if !fresh {
            return Ok((loaded, None));
        }
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Ok((loaded, Some(started.elapsed())))
    }

    fn touch(&self) {
        self.last_used_ms
            .store(since_epoch_ms(Instant::now()), Ordering::Relaxed);
    }

    /// Counts an invocation as running on the instance until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(self.clone())
    }

    /// Unloads the component when it has been idle for `keep` and nothing runs; true if it did.
    fn reap(&self, keep: Duration, now: Instant) -> bool {
        if self.keep_loaded || self.running.load(Ordering::Relaxed) > 0 || !self.loaded.is_loaded()
        {
            return false;
        }
        let idle = since_epoch_ms(now).saturating_sub(self.last_used_ms.load(Ordering::Relaxed));
        if idle < keep.as_millis() as u64 {
            return false;
        }
        self.loaded.clear();
        true
    }

    /// Counts for `nimbus show` and `/metrics`: one instance, warm or busy, or none.
    pub fn counts(&self) -> InstanceCounts {
        let loaded = usize::from(self.loaded.is_loaded());
        let running = self.running.load(Ordering::Relaxed);
        InstanceCounts {
            idle: if running == 0 { loaded } else { 0 },
            busy: usize::from(running > 0),
            started: self.loads.load(Ordering::Relaxed),
            running,
        }
    }
}

/// An invocation running on a wasm instance.
pub struct Running(Arc<WasmInstance>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.touch();
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WasmRuntime {
    /// A new instance of the function deployed from `artifact`, warm with `loaded` (a deploy's
    /// freshly prepared component) or cold. The reaper watches it while it lives.
    pub fn instance(
        &self,
        artifact: &str,
        loaded: Option<Arc<LoadedFunction>>,
        keep_loaded: bool,
    ) -> Arc<WasmInstance> {
        let instance = Arc::new(WasmInstance {
            artifact: artifact.to_string(),
            keep_loaded,
            loaded: LoadOnce::default(),
            running: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(0),
            loads: AtomicU64::new(0),
        });
        if let Some(l) = loaded {
            instance.loaded.set(l);
            instance.loads.fetch_add(1, Ordering::Relaxed);
            instance.touch();
        }
        if let Ok(mut all) = self.instances.lock() {
            all.push(Arc::downgrade(&instance));
        }
        instance
    }

    /// Unloads every instance idle for `keep` (see [`WasmInstance`]); returns how many.
    pub fn reap_idle(&self, keep: Duration) -> usize {
        let live: Vec<Arc<WasmInstance>> = match self.instances.lock() {
            Ok(mut all) => {
                all.retain(|w| w.strong_count() > 0);
                all.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => return 0,
        };
        let now = Instant::now();
        live.iter().filter(|i| i.reap(keep, now)).count()
    }

    /// Unloads idle instances every reaper tick (`nimbus_core::keepalive::reaper_tick_ms`)
    /// until the task is dropped or cancelled: scale to zero.
    pub async fn run_reaper(self: Arc<Self>, keep: Duration) {
        let tick = Duration::from_millis(nimbus_core::keepalive::reaper_tick_ms(
            keep.as_millis() as u64
        ));
        loop {
            tokio::time::sleep(tick).await;
            let unloaded = self.reap_idle(keep);
            if unloaded > 0 {
                tracing::debug!(unloaded, "unloaded idle components");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test]
    async fn concurrent_cold_callers_load_once() {
        let slot: Arc<LoadOnce<u32>> = Arc::default();
        let loads = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (slot, loads) = (slot.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                slot.get_or_load(async || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, ()>(Arc::new(7))
                })
                .await
                .map(|(v, fresh)| (*v, fresh))
            }));
        }
        let mut fresh = 0;
        for t in tasks {
            let (v, f) = t.await.unwrap().unwrap();
            assert_eq!(v, 7);
            fresh += usize::from(f);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load");
        assert_eq!(fresh, 1, "one caller is the cold start");
    }

    #[tokio::test]
    async fn a_failed_load_leaves_it_cold_for_the_next_caller() {
        let slot: LoadOnce<u32> = LoadOnce::default();
        assert!(
            slot.get_or_load(async || Err::<Arc<u32>, _>("no"))
                .await
                .is_err()
        );
        assert!(!slot.is_loaded());
        let (v, fresh) = slot
            .get_or_load(async || Ok::<_, ()>(Arc::new(1)))
            .await
            .unwrap();
        assert_eq!((*v, fresh), (1, true));
    }
}
