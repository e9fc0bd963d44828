//! Process runtimes for Nimbus: Python, Node.js and `provided` (any `bootstrap` executable)
//! functions, run unmodified in Linux sandboxes and driven through the AWS Lambda Runtime API.
//!
//! # Layout
//! - [`ProcessRuntime`] (`runtime`): one per node. Probes what isolation the machine allows
//!   (namespaces, cgroup v1/v2), unpacks code bundles, installs the bootstraps from
//!   `runtimes/`, keeps a standby sandbox ready ([`ProcessRuntime::start`]).
//! - [`FunctionPool`] (`pool`): the sandboxes of one function version. One invocation at a time
//!   per sandbox; warm sandboxes are reused; new ones start on demand. The caller admits
//!   invocations (at most `max_concurrency` at once: the invoker's slots), so the pool never
//!   holds more sandboxes than that.
//! - `reaper`: [`ProcessRuntime::run_reaper`] stops idle sandboxes under the keep-alive policy,
//!   keeps `min_instances` and pre-warms; a supervisor runs it and stops it.
//! - `sandbox`: the host side of a sandbox (child process, keeper thread, cgroup, Runtime API listener, logs).
//! - `child`: the code that runs inside the sandbox child processes (`nimbus __sandbox`).
//! - `rapi`: the Runtime API server, one listener per sandbox.
//! - [`seccomp`]: the system calls refused in every sandbox.
//! - [`egress`]: the egress proxy a sandbox of a function with `allowed_hosts` reaches out
//!   through (its network namespace has nothing else).
//! - `cgroup`, `logs`, `code`, `spec`: cgroups, per-invocation log capture, code bundles, and
//!   the host→sandbox spec.

pub mod cgroup;
pub mod child;
pub mod code;
pub mod egress;
mod logs;
mod pool;
pub mod rapi;
mod reaper;
mod runtime;
mod sandbox;
pub mod seccomp;
pub mod spec;
pub mod syntax;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nimbus_core::burst::StartRate;

pub use cgroup::CgroupDriver;
pub use pool::{FunctionPool, PoolConfig, PoolStats, ProcessOutcome};
pub use rapi::Invocation;
pub use runtime::ProcessRuntime;
pub use sandbox::{Failure, describe_exit};

/// Nimbus's Python bootstrap (`runtimes/python/bootstrap.py`).
pub const PYTHON_BOOTSTRAP: &str = include_str!("../../../runtimes/python/bootstrap.py");
/// Nimbus's Node.js bootstrap (`runtimes/node/bootstrap.mjs`).
pub const NODE_BOOTSTRAP: &str = include_str!("../../../runtimes/node/bootstrap.mjs");

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
    /// The node's memory budget, shared with the wasm runtime: every sandbox holds its
    /// `memory_mb` of it while it lives; idle sandboxes are stopped to make room.
    pub memory_budget: Arc<nimbus_core::budget::MemoryBudget>,
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
            memory_budget: nimbus_core::budget::MemoryBudget::unlimited(),
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
    /// The handler's module does not compile: `file:line: error`.
    #[error("the handler's module does not compile: {0}")]
    Syntax(String),
}
