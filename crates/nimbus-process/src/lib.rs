//! Process runtimes for Nimbus: Python, Node.js and `provided` (any `bootstrap` executable)
//! functions, run unmodified in Linux sandboxes and driven through the AWS Lambda Runtime API.
//!
//! # Layout
//! - [`ProcessRuntime`]: one per node. Probes what isolation the machine allows (namespaces,
//!   cgroup v1/v2), unpacks code bundles, installs the bootstraps from `runtimes/`, and reaps
//!   idle sandboxes.
//! - [`FunctionPool`]: the sandboxes of one function version. One invocation at a time per
//!   sandbox; warm sandboxes are reused; new ones start on demand up to `max_concurrency`.
//! - `sandbox`: the host side of a sandbox (child process, keeper thread, cgroup, Runtime API listener, logs).
//! - `child`: the code that runs inside the sandbox child processes (`nimbus __sandbox`).
//! - `rapi`: the Runtime API server, one listener per sandbox.
//! - `cgroup`, `logs`, `code`, `spec`, `peer`: cgroups, per-invocation log capture, code bundles,
//!   the host→sandbox spec, and the peer check of host-network sandboxes.

pub mod cgroup;
pub mod child;
pub mod code;
mod logs;
pub mod peer;
pub mod rapi;
mod sandbox;
pub mod spec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::api::InstanceCounts;
use nimbus_core::burst::StartRate;
use nimbus_core::keepalive::{self, Activity, KeepAlive};
use nimbus_core::model::Runtime;
use nimbus_core::trace::{Phase, phase};
use tokio::sync::Semaphore;

pub use cgroup::CgroupDriver;
pub use rapi::Invocation;
use sandbox::Sandbox;
pub use sandbox::{Failure, describe_exit};
use spec::{RUNTIME_ROOT, SandboxSpec, TASK_ROOT};

/// Nimbus's Python bootstrap (`runtimes/python/bootstrap.py`).
pub const PYTHON_BOOTSTRAP: &str = include_str!("../../../runtimes/python/bootstrap.py");
/// Nimbus's Node.js bootstrap (`runtimes/node/bootstrap.mjs`).
pub const NODE_BOOTSTRAP: &str = include_str!("../../../runtimes/node/bootstrap.mjs");

/// Sandboxes that keep the host network run as uid `HOST_NETWORK_UID_BASE + n`, one per sandbox.
pub const HOST_NETWORK_UID_BASE: u32 = 200_000;

/// Longest a runtime may take to initialise before its first invocation (as on Lambda).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the process runtime.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Data directory: code bundles go to `DATA/code`, bootstraps to `DATA/runtimes`.
    pub data_dir: PathBuf,
    /// The `nimbus` executable, run as the sandbox child.
    pub exe: PathBuf,
    /// An idle sandbox is stopped after this long (the fixed keep-alive; with `adaptive`, the
    /// fallback and the longest window).
    pub idle_timeout: Duration,
    /// Learn each function's keep-alive from its idle times (the hybrid histogram policy).
    pub adaptive_keep_alive: bool,
    /// The node's burst rate for starting sandboxes (shared with wasm loads).
    pub start_rate: Option<Arc<StartRate>>,
    /// Size of each sandbox's `/tmp`, MiB.
    pub tmp_mb: u32,
    /// `AWS_REGION` and the region in ARNs.
    pub region: String,
    /// Host uid/gid sandboxes run as when the server is root.
    pub sandbox_uid: u32,
    /// See `sandbox_uid`.
    pub sandbox_gid: u32,
    /// The Python interpreter (must be under `/usr` to be visible in sandboxes).
    pub python: PathBuf,
    /// The Node.js executable (must be under `/usr` to be visible in sandboxes).
    pub node: PathBuf,
    /// Where cgroups are mounted.
    pub cgroup_root: PathBuf,
    /// Longest an invocation waits for a free sandbox when all `max_concurrency` are busy.
    pub queue_timeout: Duration,
}

impl ProcessOptions {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>, exe: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            exe: exe.into(),
            idle_timeout: Duration::from_secs(600),
            adaptive_keep_alive: false,
            start_rate: None,
            tmp_mb: 512,
            region: "us-east-1".into(),
            sandbox_uid: 65534,
            sandbox_gid: 65534,
            python: "/usr/bin/python3".into(),
            node: "/usr/bin/node".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// What isolation sandboxes get on this machine.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// `Ok` when user/mount/PID/IPC/UTS/network namespaces work; else why not.
    pub namespaces: Result<(), String>,
    /// The cgroup driver, or why cgroups are unavailable.
    pub cgroups: Result<CgroupDriver, String>,
}

impl Isolation {
    /// Whether sandboxes are fully isolated and limited.
    pub fn is_full(&self) -> bool {
        self.namespaces.is_ok() && self.cgroups.is_ok()
    }

    /// One line for people: `full (namespaces, cgroup v1)` or `reduced: ...`.
    pub fn describe(&self) -> String {
        match (&self.namespaces, &self.cgroups) {
            (Ok(()), Ok(c)) => format!("full (namespaces, cgroup {})", c.version()),
            (ns, cg) => {
                let mut missing = Vec::new();
                if let Err(e) = ns {
                    missing.push(format!(
                        "no namespaces ({e}): code runs as a plain process with the server's view of files, processes and network"
                    ));
                }
                if let Err(e) = cg {
                    missing.push(format!(
                        "no cgroups ({e}): memory_mb is not enforced and memory use is not measured"
                    ));
                }
                format!("reduced: {}", missing.join("; "))
            }
        }
    }
}

/// Errors preparing code for a process function.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The bundle is unusable.
    #[error(transparent)]
    Code(#[from] code::CodeError),
    /// The code lacks what the runtime needs (e.g. an executable `bootstrap`).
    #[error("{0}")]
    Missing(String),
}

/// One node's process runtime.
pub struct ProcessRuntime {
    options: ProcessOptions,
    isolation: Isolation,
    run_dir: PathBuf,
    runtime_dir: PathBuf,
    code_root: PathBuf,
    next_id: AtomicU64,
    pools: Mutex<Vec<Weak<FunctionPool>>>,
    cleanups: tokio_util::task::TaskTracker,
    standby: Mutex<Option<Sandbox>>,
    /// Origin of the keep-alive clock.
    epoch: Instant,
    /// The keep-alive policy of every pool, from the options.
    keep_alive: KeepAlive,
}

fn probe_namespaces(options: &ProcessOptions) -> Result<(), String> {
    let out = std::process::Command::new(&options.exe)
        .args([
            "__sandbox-probe",
            &options.sandbox_uid.to_string(),
            &options.sandbox_gid.to_string(),
        ])
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", options.exe.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl ProcessRuntime {
    /// Sets up the runtime: bootstraps, run directory, isolation probe, idle reaper.
    pub fn new(options: ProcessOptions) -> std::io::Result<Arc<Self>> {
        let runtime_dir = options.data_dir.join("runtimes");
        for (rel, text) in [
            ("python/bootstrap.py", PYTHON_BOOTSTRAP),
            ("node/bootstrap.mjs", NODE_BOOTSTRAP),
        ] {
            let path = runtime_dir.join(rel);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
                std::fs::write(&path, text)?;
            }
        }
        // Sandbox mount points live in a short, world-traversable path outside the data dir.
        let tag = nimbus_core::sha256_hex(options.data_dir.to_string_lossy().as_bytes());
        let run_dir = std::env::temp_dir().join(format!("nimbus-{}", &tag[..12]));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o755))?;
        let isolation = Isolation {
            namespaces: probe_namespaces(&options),
            cgroups: CgroupDriver::detect(&options.cgroup_root).map_err(|e| e.to_string()),
        };
        let keep_ms = options.idle_timeout.as_millis() as i64;
        let keep_alive = if options.adaptive_keep_alive {
            KeepAlive::hybrid_around(keep_ms)
        } else {
            KeepAlive::Fixed { keep_ms }
        };
        let runtime = Arc::new(Self {
            code_root: options.data_dir.join("code"),
            options,
            isolation,
            run_dir,
            runtime_dir,
            next_id: AtomicU64::new(1),
            pools: Mutex::new(Vec::new()),
            cleanups: tokio_util::task::TaskTracker::new(),
            standby: Mutex::new(None),
            epoch: Instant::now(),
            keep_alive,
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(reap(Arc::downgrade(&runtime)));
            runtime.refill_standby();
        }
        Ok(runtime)
    }

    fn next_sandbox(&self) -> (u64, PathBuf, Option<Result<cgroup::Cgroup, Failure>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cgroup = self.isolation.cgroups.as_ref().ok().map(|driver| {
            driver
                .create_unlimited(&format!("{}-sb{id}", std::process::id()))
                .map_err(|e| Failure::Sandbox(e.to_string()))
        });
        (id, self.run_dir.join(format!("sb{id}")), cgroup)
    }

    /// Starts a standby sandbox in the background, if sandboxes get their own namespaces and
    /// none is waiting: a process parked in fresh cgroups and a fresh network namespace, so a
    /// cold start skips the slow part (cgroup migration costs an RCU grace period per
    /// hierarchy on cgroup v1).
    fn refill_standby(self: &Arc<Self>) {
        if self.isolation.namespaces.is_err()
            || self.standby.lock().map(|s| s.is_some()).unwrap_or(true)
        {
            return;
        }
        let rt = self.clone();
        tokio::spawn(async move {
            let (_, dir, cgroup) = rt.next_sandbox();
            let cgroup = match cgroup.transpose() {
                Ok(c) => c,
                Err(_) => return,
            };
            let spec = SandboxSpec {
                namespaces: true,
                root: dir.join("root"),
                code_dir: PathBuf::new(),
                runtime_dir: PathBuf::new(),
                runtime_api: String::new(),
                argv: Vec::new(),
                env: Vec::new(),
                cwd: PathBuf::new(),
                uid: rt.options.sandbox_uid,
                gid: rt.options.sandbox_gid,
                tmp_mb: rt.options.tmp_mb,
                cgroup_procs: cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default(),
                parent_pid: std::process::id() as i32,
                standby: true,
            };
            let started = Sandbox::start(
                &rt.options.exe,
                spec,
                false,
                cgroup,
                dir,
                rt.cleanups.clone(),
            )
            .await;
            match started {
                Ok(s) => {
                    if let Ok(mut slot) = rt.standby.lock() {
                        *slot = Some(s);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot start a standby sandbox"),
            }
        });
    }

    /// The standby sandbox, if one is ready (and starts the next one).
    fn take_standby(self: &Arc<Self>) -> Option<Sandbox> {
        let mut s = self.standby.lock().ok()?.take()?;
        self.refill_standby();
        s.is_alive().then_some(s)
    }

    /// Stops every idle sandbox, and waits (up to 5 s) until every dropped sandbox's cgroup and
    /// directory are gone; for a clean shutdown.
    pub async fn shutdown(&self) {
        let pools: Vec<Arc<FunctionPool>> = self
            .pools
            .lock()
            .map(|p| p.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        let standby = self.standby.lock().ok().and_then(|mut s| s.take());
        if let Some(s) = standby {
            s.destroy().await;
        }
        for pool in pools {
            let idle: Vec<Sandbox> = pool
                .idle
                .lock()
                .map(|mut i| i.drain(..).collect())
                .unwrap_or_default();
            for s in idle {
                s.destroy().await;
            }
        }
        self.cleanups.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.cleanups.wait()).await;
    }

    /// How long an idle sandbox is kept before it stops (the fixed keep-alive).
    pub fn idle_timeout(&self) -> Duration {
        self.options.idle_timeout
    }

    /// The keep-alive policy of every pool.
    pub fn keep_alive(&self) -> &KeepAlive {
        &self.keep_alive
    }

    /// Waits for a token of the node's burst rate before starting an instance (a sandbox, or
    /// a wasm component load: the bucket is the node's, shared by both runtimes).
    pub async fn await_start_token(&self) {
        if let Some(rate) = &self.options.start_rate {
            let wait = rate.reserve(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Milliseconds on the runtime's monotonic clock.
    fn clock_ms(&self, at: Instant) -> i64 {
        at.saturating_duration_since(self.epoch).as_millis() as i64
    }

    /// The isolation sandboxes get.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// The region in ARNs and `AWS_REGION`.
    pub fn region(&self) -> &str {
        &self.options.region
    }

    /// Unpacks the code bundle `sha256` (a zip) once and checks it suits `runtime`. Returns the
    /// code directory. Idempotent.
    pub fn prepare_code(
        &self,
        sha256: &str,
        bundle: impl FnOnce() -> std::io::Result<Vec<u8>>,
        runtime: Runtime,
    ) -> Result<PathBuf, PrepareError> {
        let dir = self.code_root.join(sha256);
        if !dir.is_dir() {
            let bytes = bundle().map_err(code::CodeError::Io)?;
            if !code::is_zip(&bytes) {
                return Err(PrepareError::Missing(format!(
                    "the source of a {} function must be a directory or a .zip",
                    runtime.as_str()
                )));
            }
            let task_root = if self.isolation.namespaces.is_ok() {
                PathBuf::from(TASK_ROOT)
            } else {
                dir.clone()
            };
            code::extract_and(&bytes, &dir, |staged| {
                if runtime == Runtime::Python {
                    self.precompile_python(staged, &task_root);
                }
                Ok(())
            })?;
        }
        check_code(&dir, runtime)?;
        Ok(dir)
    }

    /// Compiles the Python files of a code bundle to bytecode at deploy, as the function will
    /// see them (`/var/task/...` in tracebacks): the code directory is read-only in sandboxes,
    /// so without this every cold start would compile every module it imports. Files that do
    /// not compile are left alone; the function reports them when it imports them.
    fn precompile_python(&self, staged: &Path, task_root: &Path) {
        let compiled = std::process::Command::new(&self.options.python)
            .args(["-m", "compileall", "-q", "-d"])
            .arg(task_root)
            .arg(staged)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Err(e) = compiled {
            tracing::warn!(error = %e, "cannot precompile Python code");
        }
    }

    /// A pool for one function version.
    pub fn pool(self: &Arc<Self>, config: PoolConfig) -> Arc<FunctionPool> {
        let pool = Arc::new(FunctionPool {
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1) as usize)),
            config,
            runtime: self.clone(),
            idle: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
            activity: Mutex::new(Activity::default()),
            prestarting: tokio::sync::Mutex::new(()),
        });
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|p| p.strong_count() > 0);
            pools.push(Arc::downgrade(&pool));
        }
        pool
    }

    fn spec(&self, c: &PoolConfig, sandbox_dir: &Path) -> SandboxSpec {
        let ns = self.isolation.namespaces.is_ok();
        let (task, rt) = if ns {
            (PathBuf::from(TASK_ROOT), PathBuf::from(RUNTIME_ROOT))
        } else {
            (c.code_dir.clone(), self.runtime_dir.clone())
        };
        let argv = match c.runtime {
            Runtime::Python => vec![
                self.options.python.display().to_string(),
                // Unbuffered output (each line reaches the log), no user site-packages (no
                // home-directory lookup at start-up; the code directory is the user's code).
                "-u".into(),
                "-s".into(),
                rt.join("python/bootstrap.py").display().to_string(),
            ],
            Runtime::Node => vec![
                self.options.node.display().to_string(),
                rt.join("node/bootstrap.mjs").display().to_string(),
            ],
            Runtime::Provided | Runtime::Wasm => {
                vec![task.join("bootstrap").display().to_string()]
            }
        };
        let mut env: BTreeMap<String, String> = c.env.clone();
        let version = c.version[..c.version.len().min(12)].to_string();
        for (k, v) in [
            ("AWS_LAMBDA_FUNCTION_NAME", c.function.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", c.memory_mb.to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", version),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", c.function),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("nimbus/{}", sandbox_dir.display()),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            (
                "AWS_EXECUTION_ENV",
                format!("Nimbus_{}", c.runtime.as_str()),
            ),
            ("AWS_REGION", self.options.region.clone()),
            ("AWS_DEFAULT_REGION", self.options.region.clone()),
            ("_HANDLER", c.handler.clone().unwrap_or_default()),
            ("LAMBDA_TASK_ROOT", task.display().to_string()),
            ("LAMBDA_RUNTIME_DIR", rt.display().to_string()),
            ("TZ", ":UTC".into()),
            ("LANG", "C.UTF-8".into()),
            (
                "PATH",
                "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
            ),
        ] {
            env.insert(k.into(), v);
        }
        SandboxSpec {
            namespaces: ns,
            root: sandbox_dir.join("root"),
            code_dir: c.code_dir.clone(),
            runtime_dir: self.runtime_dir.clone(),
            runtime_api: String::new(),
            argv,
            env: env.into_iter().collect(),
            cwd: task,
            uid: self.options.sandbox_uid,
            gid: self.options.sandbox_gid,
            tmp_mb: self.options.tmp_mb,
            cgroup_procs: Vec::new(),
            parent_pid: std::process::id() as i32,
            standby: false,
        }
    }
}

fn check_code(dir: &Path, runtime: Runtime) -> Result<(), PrepareError> {
    use std::os::unix::fs::PermissionsExt;
    if runtime == Runtime::Provided {
        let bootstrap = dir.join("bootstrap");
        let executable = std::fs::metadata(&bootstrap)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        if !executable {
            return Err(PrepareError::Missing(
                "a provided function needs an executable file named `bootstrap` at the top of its code"
                    .into(),
            ));
        }
    }
    Ok(())
}

async fn reap(runtime: Weak<ProcessRuntime>) {
    loop {
        let Some(rt) = runtime.upgrade() else { return };
        let tick =
            (rt.options.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let pools: Vec<Arc<FunctionPool>> = rt
            .pools
            .lock()
            .map(|p| p.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        let policy = rt.keep_alive().clone();
        let now = Instant::now();
        let now_ms = rt.clock_ms(now);
        drop(rt);
        for pool in pools {
            let min = pool.config.min_instances as usize;
            // (Read before taking the idle lock: `stats` takes it too.)
            let busy = pool.stats().busy;
            let (expired, prewarm) = match pool.idle.lock() {
                Ok(mut idle) => {
                    let ages: Vec<i64> = idle
                        .iter()
                        .map(|s| now.saturating_duration_since(s.last_used).as_millis() as i64)
                        .collect();
                    let plan = pool
                        .activity
                        .lock()
                        .map(|a| a.plan(&policy, now_ms, &ages))
                        .unwrap_or_default();
                    let (mut old, mut keep) = (Vec::new(), Vec::new());
                    let verdicts = plan.expire.into_iter().chain(std::iter::repeat(false));
                    for (s, expire) in idle.drain(..).zip(verdicts) {
                        if expire { old.push(s) } else { keep.push(s) }
                    }
                    // Never below min_instances: keep the most recently used of the expired.
                    while keep.len() + busy < min
                        && let Some(s) = old.pop()
                    {
                        keep.push(s);
                    }
                    *idle = keep;
                    (old, plan.prewarm && busy == 0)
                }
                Err(_) => (Vec::new(), false),
            };
            for s in expired {
                s.destroy().await;
            }
            if min > 0 {
                // Replace warm sandboxes that died (timeouts, crashes, OOM).
                pool.prestart().await;
            } else if prewarm {
                // The adaptive policy expects an invocation soon.
                pool.start_warm().await;
            }
        }
        tokio::time::sleep(tick).await;
    }
}

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
    /// Keep the host network.
    pub network: bool,
    /// Unpacked code.
    pub code_dir: PathBuf,
    /// Most sandboxes at once.
    pub max_concurrency: u32,
    /// Sandboxes kept warm: started by [`FunctionPool::prestart`], never reaped below this,
    /// replaced by the reaper when they die.
    pub min_instances: u32,
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
    /// Where the time went: `queue_wait`, `placement`, and on a cold start `sandbox_start`
    /// and `init`, then `run`.
    pub phases: Vec<Phase>,
}

/// The sandboxes of one function version.
pub struct FunctionPool {
    config: PoolConfig,
    runtime: Arc<ProcessRuntime>,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Sandbox>>,
    started: AtomicU64,
    /// Invocations in flight and idle-time history, for the keep-alive policy.
    activity: Mutex<Activity>,
    /// Held while pre-starting, so a deploy and the reaper do not both top the pool up.
    prestarting: tokio::sync::Mutex<()>,
}

/// Ends an invocation in the pool's activity when dropped.
struct Departure<'a>(&'a FunctionPool);

impl Drop for Departure<'_> {
    fn drop(&mut self) {
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
    /// Current sandbox counts.
    pub fn stats(&self) -> PoolStats {
        let idle = self.idle.lock().map(|i| i.len()).unwrap_or_default();
        PoolStats {
            idle,
            busy: self.config.max_concurrency as usize - self.permits.available_permits(),
            started: self.started.load(Ordering::Relaxed),
        }
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
        let rt = &self.runtime;
        if !self.config.network
            && let Some(mut standby) = rt.take_standby()
        {
            let spec = rt.spec(&self.config, standby.dir());
            if standby.assign(spec, self.config.memory_mb).await.is_ok() {
                self.started.fetch_add(1, Ordering::Relaxed);
                return Ok(standby);
            }
        }
        let (id, dir, cgroup) = rt.next_sandbox();
        let cgroup = cgroup.transpose()?;
        if let Some(c) = &cgroup {
            c.set_limits(self.config.memory_mb)
                .map_err(|e| Failure::Sandbox(e.to_string()))?;
        }
        let mut spec = rt.spec(&self.config, &dir);
        if self.config.network {
            // Shares the host network: a uid of its own lets its Runtime API tell it apart.
            spec.uid = HOST_NETWORK_UID_BASE + (id % 60_000) as u32;
        }
        if let Some(c) = &cgroup {
            spec.cgroup_procs = c.procs_files();
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        Sandbox::start(
            &rt.options.exe,
            spec,
            self.config.network,
            cgroup,
            dir,
            rt.cleanups.clone(),
        )
        .await
        .map_err(|e| Failure::Sandbox(format!("cannot start a sandbox: {e}")))
    }

    /// Runs one invocation in a warm sandbox, or a new one (a cold start).
    pub async fn invoke(
        &self,
        request_id: String,
        payload: Bytes,
        trace_id: Option<String>,
        client_context: Option<String>,
    ) -> ProcessOutcome {
        let _departure = self.arrive();
        let mut phases = Vec::with_capacity(5);
        let failed = |f: Failure, logs: String, init: Option<Duration>, phases| ProcessOutcome {
            result: Err(f),
            logs,
            duration: Duration::ZERO,
            init,
            max_memory_bytes: 0,
            phases,
        };
        let queued = Instant::now();
        let Ok(Ok(_permit)) = tokio::time::timeout(
            self.runtime.options.queue_timeout.min(self.config.timeout),
            self.permits.clone().acquire_owned(),
        )
        .await
        else {
            return failed(
                Failure::Throttled(format!(
                    "Rate Exceeded: all {} sandboxes of `{}` are busy",
                    self.config.max_concurrency, self.config.function
                )),
                String::new(),
                None,
                vec![Phase::since(phase::QUEUE_WAIT, queued)],
            );
        };
        phases.push(Phase::since(phase::QUEUE_WAIT, queued));
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
