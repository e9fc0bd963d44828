//! [`FunctionPool`]: the sandboxes of one function version.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::api::InstanceCounts;
use nimbus_core::keepalive::{self, Activity};
use nimbus_core::model::Runtime;
use nimbus_core::trace::{Phase, phase};

use crate::rapi::{self, Invocation};
use crate::sandbox::{Failure, Sandbox};
use crate::{INIT_TIMEOUT, ProcessRuntime};

/// Everything a pool needs to start sandboxes for one function version.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Function name.
    pub function: String,
    /// Version id.
    pub version: String,
    /// Which runtime.
    pub runtime: Runtime,
    /// `_HANDLER`.
    pub handler: Option<String>,
    /// Memory limit, MiB.
    pub memory_mb: u32,
    /// Invocation timeout.
    pub timeout: Duration,
    /// The function's own environment.
    pub env: BTreeMap<String, String>,
    /// Where the function may connect (`allowed_hosts`), through its sandboxes' egress proxy;
    /// `None`: nowhere.
    pub egress: Option<Arc<nimbus_core::egress::EgressPolicy>>,
    /// Unpacked code.
    pub code_dir: PathBuf,
    /// Most sandboxes at once (the caller's admission keeps invocations within it).
    pub max_concurrency: u32,
    /// Sandboxes kept warm: started by [`FunctionPool::prestart`], never reaped below this,
    /// replaced by the reaper when they die.
    pub min_instances: u32,
    /// The budget its sandboxes' memory is charged to (a tenant's share of the node's), if not
    /// the runtime's own.
    pub budget: Option<Arc<nimbus_core::budget::MemoryBudget>>,
}

/// One invocation's result and measurements.
#[derive(Debug)]
pub struct ProcessOutcome {
    /// The handler's result, or how it failed.
    pub result: Result<Bytes, Failure>,
    /// Output printed during init (on a cold start) and the invocation.
    pub logs: String,
    /// Execution time (excluding init).
    pub duration: Duration,
    /// Init time, on a cold start.
    pub init: Option<Duration>,
    /// Peak memory of the sandbox during the invocation (0 without cgroups).
    pub max_memory_bytes: u64,
    /// Where the time went: `placement`, and on a cold start `sandbox_start` and `init`, then
    /// `run`.
    pub phases: Vec<Phase>,
}

/// The sandboxes of one function version.
pub struct FunctionPool {
    pub(crate) config: PoolConfig,
    runtime: Arc<ProcessRuntime>,
    /// Invocations running now (each in its own sandbox).
    busy: AtomicUsize,
    pub(crate) idle: Mutex<Vec<Sandbox>>,
    started: AtomicU64,
    /// Invocations in flight and idle-time history, for the keep-alive policy.
    pub(crate) activity: Mutex<Activity>,
    /// Held while pre-starting, so a deploy and the reaper do not both top the pool up.
    prestarting: tokio::sync::Mutex<()>,
}

/// Ends an invocation in the pool's activity and busy count when dropped.
struct Departure<'a>(&'a FunctionPool);

impl Drop for Departure<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        let now = self.0.runtime.clock_ms(Instant::now());
        if let Ok(mut a) = self.0.activity.lock() {
            a.depart(now);
        }
    }
}

/// How many sandboxes a pool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Warm, waiting for work.
    pub idle: usize,
    /// Running an invocation.
    pub busy: usize,
    /// Started since the pool was created.
    pub started: u64,
}

impl From<PoolStats> for InstanceCounts {
    fn from(s: PoolStats) -> Self {
        Self {
            idle: s.idle,
            busy: s.busy,
            started: s.started,
            running: s.busy,
        }
    }
}

impl FunctionPool {
    pub(crate) fn new(
        config: PoolConfig,
        runtime: Arc<ProcessRuntime>,
        activity: Activity,
    ) -> Self {
        Self {
            config,
            runtime,
            busy: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
            activity: Mutex::new(activity),
            prestarting: tokio::sync::Mutex::new(()),
        }
    }

    /// Current sandbox counts.
    pub fn stats(&self) -> PoolStats {
        let idle = self.idle.lock().map(|i| i.len()).unwrap_or_default();
        PoolStats {
            idle,
            busy: self.busy.load(Ordering::Relaxed),
            started: self.started.load(Ordering::Relaxed),
        }
    }

    /// Takes the idle sandbox used longest ago, unless the pool needs it for `min_instances`.
    pub(crate) fn take_oldest_idle(&self) -> Option<Sandbox> {
        let busy = self.busy.load(Ordering::Relaxed);
        let mut idle = self.idle.lock().ok()?;
        if idle.len() + busy <= self.config.min_instances as usize {
            return None;
        }
        let oldest = (0..idle.len()).min_by_key(|&i| idle[i].last_used)?;
        Some(idle.swap_remove(oldest))
    }

    /// When its oldest idle sandbox was last used.
    pub(crate) fn oldest_idle(&self) -> Option<Instant> {
        self.idle.lock().ok()?.iter().map(|s| s.last_used).min()
    }

    /// Takes every idle sandbox out of the pool (to stop them).
    pub(crate) fn drain_idle(&self) -> Vec<Sandbox> {
        self.idle
            .lock()
            .map(|mut i| i.drain(..).collect())
            .unwrap_or_default()
    }

    /// Starts sandboxes until `min_instances` are warm (idle or busy); returns how many started.
    /// Init output is kept for the first invocation's log.
    pub async fn prestart(&self) -> usize {
        let _one_at_a_time = self.prestarting.lock().await;
        let mut started = 0;
        loop {
            let s = self.stats();
            if s.idle + s.busy >= self.config.min_instances as usize {
                return started;
            }
            if !self.start_warm().await {
                return started;
            }
            started += 1;
        }
    }

    /// Starts one sandbox ahead of demand and puts it with the idle ones; false if it could
    /// not start. Its init output is kept for the first invocation's log.
    pub async fn start_warm(&self) -> bool {
        self.runtime.await_start_token().await;
        let t0 = Instant::now();
        let mut sandbox = match self.start_sandbox().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(function = %self.config.function, error = ?e, "cannot pre-start a sandbox");
                return false;
            }
        };
        if let Err(e) = sandbox.wait_ready(t0 + INIT_TIMEOUT).await {
            tracing::warn!(function = %self.config.function, error = ?e, "a pre-started sandbox failed its init");
            sandbox.destroy().await;
            return false;
        }
        match self.idle.lock() {
            Ok(mut idle) => {
                idle.push(sandbox);
                true
            }
            Err(_) => false,
        }
    }

    /// The keep-alive policy as it applies to this function now.
    pub fn keep_alive(&self) -> String {
        let policy = self.runtime.keep_alive();
        match self.activity.lock() {
            Ok(a) => keepalive::describe(policy, &a),
            Err(_) => policy.to_string(),
        }
    }

    /// Records an arrival; the returned guard records the departure.
    fn arrive(&self) -> Departure<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let rt = &self.runtime;
        let bins = rt.keep_alive().bins();
        if let Ok(mut a) = self.activity.lock() {
            a.arrive(rt.clock_ms(Instant::now()), bins);
        }
        Departure(self)
    }

    fn take_idle(&self) -> Option<Sandbox> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut s) = idle.pop() {
            if s.is_ready() && s.is_alive() {
                return Some(s);
            }
        }
        None
    }

    async fn start_sandbox(&self) -> Result<Sandbox, Failure> {
        let charge = self
            .runtime
            .charge_memory(self.config.memory_mb, self.config.budget.as_ref())
            .await?;
        let mut sandbox = self.start_uncharged().await?;
        sandbox.charge = Some(charge);
        Ok(sandbox)
    }

    async fn start_uncharged(&self) -> Result<Sandbox, Failure> {
        let rt = &self.runtime;
        if self.config.egress.is_none()
            && let Some(mut standby) = rt.take_standby()
        {
            let spec = rt.spec(&self.config, standby.dir());
            if standby.assign(spec, self.config.memory_mb).await.is_ok() {
                self.started.fetch_add(1, Ordering::Relaxed);
                return Ok(standby);
            }
        }
        let (dir, cgroup) = rt.next_sandbox();
        let cgroup = cgroup.transpose()?;
        if let Some(c) = &cgroup {
            c.set_limits(self.config.memory_mb)
                .map_err(|e| Failure::Sandbox(e.to_string()))?;
        }
        let mut spec = rt.spec(&self.config, &dir);
        if let Some(c) = &cgroup {
            spec.cgroup_procs = c.procs_files();
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        Sandbox::start(
            &rt.options.exe,
            spec,
            self.config.egress.clone(),
            cgroup,
            dir,
            rt.cleanups.clone(),
        )
        .await
        .map_err(|e| Failure::Sandbox(format!("cannot start a sandbox: {e}")))
    }

    /// Runs one invocation in a warm sandbox, or a new one (a cold start). The caller has
    /// admitted it: at most `max_concurrency` invocations run at once.
    pub async fn invoke(
        &self,
        request_id: String,
        payload: Bytes,
        trace_id: Option<String>,
        client_context: Option<String>,
    ) -> ProcessOutcome {
        let _departure = self.arrive();
        let mut phases = Vec::with_capacity(4);
        let failed = |f: Failure, logs: String, init: Option<Duration>, phases| ProcessOutcome {
            result: Err(f),
            logs,
            duration: Duration::ZERO,
            init,
            max_memory_bytes: 0,
            phases,
        };
        let placing = Instant::now();
        let mut init = None;
        let mut logs = String::new();
        let idle = self.take_idle();
        if idle.is_none() {
            // A new instance: wait for the burst rate to allow it.
            self.runtime.await_start_token().await;
        }
        phases.push(Phase::since(phase::PLACEMENT, placing));
        let mut sandbox = match idle {
            Some(s) => s,
            None => {
                let t0 = Instant::now();
                let started = self.start_sandbox().await;
                phases.push(Phase::since(phase::SANDBOX_START, t0));
                let mut s = match started {
                    Ok(s) => s,
                    Err(f) => return failed(f, String::new(), None, phases),
                };
                let initializing = Instant::now();
                let ready = s.wait_ready(t0 + INIT_TIMEOUT).await;
                phases.push(Phase::since(phase::INIT, initializing));
                init = Some(t0.elapsed());
                logs = s.take_logs();
                if let Err(f) = ready {
                    s.destroy().await;
                    return failed(f, logs, init, phases);
                }
                s
            }
        };
        let started = Instant::now();
        let invocation = Invocation {
            request_id,
            payload,
            deadline_ms: rapi::deadline_ms(self.config.timeout.as_millis() as u64),
            function_arn: nimbus_aws::lambda::function_arn(
                &self.runtime.options.region,
                &self.config.function,
            ),
            trace_id,
            client_context,
        };
        let result = sandbox
            .invoke(invocation, started + self.config.timeout)
            .await;
        let duration = started.elapsed();
        phases.push(Phase::since(phase::RUN, started));
        let max_memory_bytes = sandbox.peak_memory_bytes();
        sandbox.reset_peak_memory();
        match &result {
            Ok(_) | Err(Failure::Handled { .. }) => {
                logs.push_str(&sandbox.take_logs());
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(sandbox);
                }
            }
            Err(_) => {
                logs.push_str(&sandbox.take_logs());
                sandbox.destroy().await;
            }
        }
        ProcessOutcome {
            result,
            logs,
            duration,
            init,
            max_memory_bytes,
            phases,
        }
    }
}
