//! What the host tells a sandbox to become: passed as JSON to the `nimbus __sandbox` child.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the code directory appears inside a sandbox (Lambda's `LAMBDA_TASK_ROOT`).
pub const TASK_ROOT: &str = "/var/task";
/// Where Nimbus's bootstraps appear inside a sandbox.
pub const RUNTIME_ROOT: &str = "/var/runtime";
/// Port of the Runtime API inside a sandbox that has its own network namespace (as on Lambda).
pub const RUNTIME_API_PORT: u16 = 9001;

/// Everything a sandbox child needs to set itself up and start the runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Build a private root with Linux namespaces; false = reduced isolation (plain process).
    pub namespaces: bool,
    /// An empty host directory on which the sandbox mounts its root.
    pub root: PathBuf,
    /// The function's code (host path), mounted read-only at [`TASK_ROOT`].
    pub code_dir: PathBuf,
    /// Nimbus's bootstraps (host path), mounted read-only at [`RUNTIME_ROOT`].
    pub runtime_dir: PathBuf,
    /// `AWS_LAMBDA_RUNTIME_API`: where the host serves this sandbox's Runtime API, as the
    /// sandbox reaches it (`127.0.0.1:9001` in its own network namespace).
    pub runtime_api: String,
    /// The runtime's command line, with paths as the runtime sees them.
    pub argv: Vec<String>,
    /// The runtime's complete environment except `AWS_LAMBDA_RUNTIME_API`, which the sandbox adds.
    pub env: Vec<(String, String)>,
    /// Working directory of the runtime, as it sees it.
    pub cwd: PathBuf,
    /// Host uid and gid the sandbox runs as (root inside its user namespace).
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// Size cap of the private `/tmp`, MiB.
    pub tmp_mb: u32,
    /// `cgroup.procs` files to join before anything else (empty without cgroups).
    pub cgroup_procs: Vec<PathBuf>,
    /// The host process; the sandbox dies with it.
    pub parent_pid: i32,
    /// A standby: join the cgroups, then wait for the real spec as one JSON line on stdin.
    #[serde(default)]
    pub standby: bool,
}
