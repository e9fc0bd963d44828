//! [`ProcessRuntime`]: the node's process runtime (isolation, code, bootstraps, standby).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use nimbus_core::keepalive::{Activity, KeepAlive};
use nimbus_core::model::Runtime;

use crate::pool::{FunctionPool, PoolConfig};
use crate::sandbox::{Failure, Sandbox};
use crate::spec::{RUNTIME_ROOT, SandboxSpec, TASK_ROOT};
use crate::{
    CgroupDriver, Isolation, NODE_BOOTSTRAP, PYTHON_BOOTSTRAP, PrepareError, ProcessOptions,
    cgroup, code,
};

/// One node's process runtime.
pub struct ProcessRuntime {
    pub(crate) options: ProcessOptions,
    isolation: Isolation,
    run_dir: PathBuf,
    runtime_dir: PathBuf,
    code_root: PathBuf,
    next_id: AtomicU64,
    pub(crate) pools: Mutex<Vec<Weak<FunctionPool>>>,
    pub(crate) cleanups: tokio_util::task::TaskTracker,
    standby: Mutex<Option<Sandbox>>,
    /// Set by [`ProcessRuntime::shutdown`]: no new standby is kept.
    stopping: AtomicBool,
    /// Origin of the keep-alive clock.
    epoch: Instant,
    /// The keep-alive policy of every pool, from the options.
    keep_alive: KeepAlive,
    /// `(code sha256, handler)` pairs whose handler module compiled.
    syntax_checked: Mutex<std::collections::HashSet<(String, String)>>,
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
    /// Sets up the runtime: bootstraps, run directory, isolation probe. Nothing runs in the
    /// background until [`ProcessRuntime::start`] and [`ProcessRuntime::run_reaper`].
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
            stopping: AtomicBool::new(false),
            epoch: Instant::now(),
            keep_alive,
            syntax_checked: Mutex::default(),
        });
        Ok(runtime)
    }

    /// Starts keeping a standby sandbox ready (see `refill_standby`). Call within a Tokio
    /// runtime; [`ProcessRuntime::shutdown`] stops it.
    pub fn start(self: &Arc<Self>) {
        self.refill_standby();
    }

    pub(crate) fn next_sandbox(&self) -> (PathBuf, Option<Result<cgroup::Cgroup, Failure>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cgroup = self.isolation.cgroups.as_ref().ok().map(|driver| {
            driver
                .create_unlimited(&format!("{}-sb{id}", std::process::id()))
                .map_err(|e| Failure::Sandbox(e.to_string()))
        });
        (self.run_dir.join(format!("sb{id}")), cgroup)
    }

    /// Starts a standby sandbox in the background, if sandboxes get their own namespaces and
    /// none is waiting: a process parked in fresh cgroups and a fresh network namespace, so a
    /// cold start skips the slow part (cgroup migration costs an RCU grace period per
    /// hierarchy on cgroup v1).
    fn refill_standby(self: &Arc<Self>) {
        if self.isolation.namespaces.is_err()
            || self.stopping.load(Ordering::Relaxed)
            || self.standby.lock().map(|s| s.is_some()).unwrap_or(true)
        {
            return;
        }
        let rt = self.clone();
        // Tracked with the cleanups, so a shutdown waits for a standby being started.
        self.cleanups.spawn(async move {
            let (dir, cgroup) = rt.next_sandbox();
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
                None,
                cgroup,
                dir,
                rt.cleanups.clone(),
            )
            .await;
            match started {
                Ok(s) if rt.stopping.load(Ordering::Relaxed) => s.destroy().await,
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
    pub(crate) fn take_standby(self: &Arc<Self>) -> Option<Sandbox> {
        let mut s = self.standby.lock().ok()?.take()?;
        self.refill_standby();
        s.is_alive().then_some(s)
    }

    /// Stops every idle sandbox, and waits (up to 5 s) until every dropped sandbox's cgroup and
    /// directory are gone; for a clean shutdown.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
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
            for s in pool.drain_idle() {
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

    /// Waits for a token of the node's burst rate (the invoker's bucket, lent to this runtime
    /// in [`ProcessOptions::start_rate`]) before starting a sandbox.
    pub(crate) async fn await_start_token(&self) {
        if let Some(rate) = &self.options.start_rate {
            let wait = rate.reserve(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Milliseconds on the runtime's monotonic clock.
    pub(crate) fn clock_ms(&self, at: Instant) -> i64 {
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

    /// Unpacks the code bundle `sha256` (a zip) once and checks it suits `runtime` and that
    /// `handler`'s module compiles. Returns the code directory. Idempotent.
    pub fn prepare_code(
        &self,
        sha256: &str,
        bundle: impl FnOnce() -> std::io::Result<Vec<u8>>,
        runtime: Runtime,
        handler: Option<&str>,
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
        if let Some(handler) = handler {
            self.check_syntax(sha256, &dir, runtime, handler)?;
        }
        Ok(dir)
    }

    /// Compiles the handler's module once per code bundle and handler.
    fn check_syntax(
        &self,
        sha256: &str,
        dir: &Path,
        runtime: Runtime,
        handler: &str,
    ) -> Result<(), PrepareError> {
        let key = (sha256.to_string(), handler.to_string());
        if self.syntax_checked.lock().is_ok_and(|c| c.contains(&key)) {
            return Ok(());
        }
        let interpreter = match runtime {
            Runtime::Python => &self.options.python,
            Runtime::Node => &self.options.node,
            Runtime::Provided | Runtime::Wasm => return Ok(()),
        };
        crate::syntax::check(interpreter, dir, runtime, handler).map_err(PrepareError::Syntax)?;
        if let Ok(mut c) = self.syntax_checked.lock() {
            c.insert(key);
        }
        Ok(())
    }

    /// Charges a new sandbox's `memory_mb` to `share` (a tenant's share of the node's budget)
    /// or the node's memory budget, stopping idle sandboxes (the longest unused first) until it
    /// fits: of the same share when the share itself is full, of any function otherwise.
    pub(crate) async fn charge_memory(
        &self,
        memory_mb: u32,
        share: Option<&Arc<nimbus_core::budget::MemoryBudget>>,
    ) -> Result<nimbus_core::budget::Charge, Failure> {
        let bytes = u64::from(memory_mb) << 20;
        let budget = share.unwrap_or(&self.options.memory_budget);
        loop {
            if let Some(charge) = budget.charge(bytes) {
                return Ok(charge);
            }
            // Whose idle sandboxes make room: the share's own if it is what is full.
            let own_only = share.filter(|s| !s.has_room_for(bytes));
            let pools: Vec<Arc<FunctionPool>> = self
                .pools
                .lock()
                .map(|p| p.iter().filter_map(Weak::upgrade).collect())
                .unwrap_or_default();
            let victim = pools
                .iter()
                .filter(|p| {
                    own_only
                        .is_none_or(|s| p.config.budget.as_ref().is_some_and(|b| Arc::ptr_eq(b, s)))
                })
                .filter_map(|p| Some((p.oldest_idle()?, p)))
                .min_by_key(|(at, _)| *at)
                .and_then(|(_, p)| p.take_oldest_idle());
            match victim {
                Some(sandbox) => sandbox.destroy().await,
                None => {
                    let whose = if own_only.is_some() {
                        "tenant's"
                    } else {
                        "node's"
                    };
                    return Err(Failure::Capacity(format!(
                        "the {whose} memory budget ({} MiB, {} MiB in use) has no room for \
                         another {memory_mb} MiB sandbox; retry later",
                        budget.limit() >> 20,
                        budget.used() >> 20
                    )));
                }
            }
        }
    }

    /// Deletes unpacked code directories not in `keep` (artifact sha256s) and the staging
    /// directories an interrupted unpack left. Returns how many went.
    pub fn retain_code(&self, keep: &std::collections::HashSet<String>) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.code_root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".extract-") || !keep.contains(&name) {
                remove_tree(&entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
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
        let pool = Arc::new(FunctionPool::new(config, self.clone(), Activity::default()));
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|p| p.strong_count() > 0);
            pools.push(Arc::downgrade(&pool));
        }
        pool
    }

    pub(crate) fn spec(&self, c: &PoolConfig, sandbox_dir: &Path) -> SandboxSpec {
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
        for (k, v) in [
            ("AWS_LAMBDA_FUNCTION_NAME", c.function.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", c.memory_mb.to_string()),
            // As the Invoke API's `X-Amz-Executed-Version` says: the deployed code is `$LATEST`,
            // a published version's environment carries its number (users cannot set this
            // reserved variable; the invoker does for published versions).
            (
                "AWS_LAMBDA_FUNCTION_VERSION",
                c.env
                    .get("AWS_LAMBDA_FUNCTION_VERSION")
                    .cloned()
                    .unwrap_or_else(|| "$LATEST".into()),
            ),
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
        if ns && c.egress.is_some() {
            // The only way out: the egress proxy the host serves in the sandbox's namespace.
            // Its own loopback (the Runtime API) is not proxied.
            let proxy = format!("http://127.0.0.1:{}", crate::egress::PROXY_PORT);
            for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                env.insert(k.into(), proxy.clone());
            }
            for k in ["NO_PROXY", "no_proxy"] {
                env.insert(k.into(), "127.0.0.1,localhost".into());
            }
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

/// Removes a read-only code tree: directories are made writable first.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if path.is_dir() && !path.is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                remove_tree(&e.path())?;
            }
        }
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}
