//! The host side of one sandbox: the child process tree, its cgroup, its Runtime API listener and
//! its log pipe. A sandbox runs one invocation at a time.
//!
//! Each sandbox has a keeper thread. It gives itself a new network namespace (loopback only; a
//! function with `allowed_hosts` reaches out through the egress proxy the host serves there) and a new PID namespace for its children, binds the Runtime API listener
//! in the network namespace (`127.0.0.1:9001`, served by the host's async runtime: only that
//! sandbox can reach it), spawns the sandbox child — which inherits both and is PID 1 — and then
//! reads the sandbox's output until the sandbox is gone. The child's parent-death signal follows
//! the thread that spawned it, so that thread must outlive it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::egress::EgressPolicy;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::cgroup::Cgroup;
use crate::logs::LogCapture;
use crate::rapi::{Invocation, RuntimeEvent, runtime_api};
use crate::spec::{RUNTIME_API_PORT, SandboxSpec};

/// How an invocation in a sandbox went wrong. All but `Handled` end the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The handler reported an error; the sandbox stays usable.
    Handled {
        /// `Lambda-Runtime-Function-Error-Type` or the body's `errorType`.
        error_type: String,
        /// The error document the runtime posted.
        body: Bytes,
    },
    /// Initialisation failed: the runtime reported an init error, or exited before asking for
    /// work.
    Init {
        /// Error type, e.g. `Runtime.ImportModuleError`.
        error_type: String,
        /// Error document or description.
        body: Bytes,
    },
    /// The deadline passed; the sandbox was killed.
    Timeout,
    /// The kernel's OOM killer ended the sandbox.
    OutOfMemory,
    /// The runtime exited; e.g. `exit status 1` or `signal: killed`.
    Exit(String),
    /// Nimbus could not run the sandbox.
    Sandbox(String),
    /// The node has no room for another sandbox (its memory budget is used by busy ones).
    Capacity(String),
}

/// Describes an exit like Go's `os.ProcessState` does, as Lambda's messages read.
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) if c > 128 && c < 160 => signal_name(c - 128),
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => signal_name(s),
        _ => "exited".into(),
    }
}

fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(nix::sys::signal::Signal::SIGKILL) => "signal: killed".into(),
        Ok(nix::sys::signal::Signal::SIGSEGV) => "signal: segmentation fault".into(),
        Ok(nix::sys::signal::Signal::SIGABRT) => "signal: aborted".into(),
        Ok(s) => format!("signal: {}", s.as_str()),
        Err(_) => format!("signal: {sig}"),
    }
}

/// One running sandbox.
pub struct Sandbox {
    child: tokio::process::Child,
    /// A standby's stdin, where its spec goes when it is assigned.
    standby: Option<tokio::process::ChildStdin>,
    runtime_api: String,
    invocations: mpsc::Sender<Invocation>,
    events: mpsc::UnboundedReceiver<RuntimeEvent>,
    logs: LogCapture,
    cgroup: Option<Cgroup>,
    server: tokio::task::JoinHandle<()>,
    dir: PathBuf,
    /// When it last finished an invocation.
    pub last_used: Instant,
    cleanups: TaskTracker,
    ready: bool,
    exited: bool,
    /// Its `memory_mb` of the node's memory budget, held while it lives.
    pub(crate) charge: Option<nimbus_core::budget::Charge>,
    /// Its egress proxy and loopback forwarders, when its function has `allowed_hosts`.
    egress_servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Sandbox {
    /// Starts a sandbox: `exe __sandbox SPEC`, in a new network namespace (loopback only; with
    /// `egress`, the host serves its egress proxy there), with its output on a captured pipe.
    /// With `spec.standby` it parks after joining its cgroups until [`Sandbox::assign`]. `dir`
    /// is removed when the sandbox is dropped.
    pub async fn start(
        exe: &std::path::Path,
        mut spec: SandboxSpec,
        egress: Option<Arc<EgressPolicy>>,
        cgroup: Option<Cgroup>,
        dir: PathBuf,
        cleanups: TaskTracker,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&spec.root)?;
        let api = runtime_api();
        let exe = exe.to_path_buf();
        let own_netns = spec.namespaces;
        let with_proxy = own_netns && egress.is_some();
        let loopbacks = match (&egress, own_netns) {
            (Some(p), true) => p.loopback_destinations(),
            _ => Vec::new(),
        };
        let (spec_namespaces, spec_standby) = (spec.namespaces, spec.standby);
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sandbox".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let started = (|| {
                    if own_netns {
                        crate::child::enter_new_netns().map_err(std::io::Error::other)?;
                    }
                    if spec_namespaces {
                        crate::child::enter_new_pidns().map_err(std::io::Error::other)?;
                    }
                    let port = if own_netns { RUNTIME_API_PORT } else { 0 };
                    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
                    // Bound in the sandbox's namespace, served by the host: its only way out.
                    let proxy = if with_proxy {
                        let p = std::net::TcpListener::bind((
                            "127.0.0.1",
                            crate::egress::PROXY_PORT,
                        ))?;
                        p.set_nonblocking(true)?;
                        Some(p)
                    } else {
                        None
                    };
                    // Listed loopback addresses, at the same address in the namespace (all but
                    // the Runtime API's and the proxy's own).
                    let mut forwards = Vec::new();
                    for to in loopbacks {
                        let ours = [RUNTIME_API_PORT, crate::egress::PROXY_PORT];
                        if to.ip() == std::net::Ipv4Addr::LOCALHOST && ours.contains(&to.port()) {
                            continue;
                        }
                        match std::net::TcpListener::bind(to) {
                            Ok(l) => {
                                l.set_nonblocking(true)?;
                                forwards.push((l, to));
                            }
                            Err(e) => tracing::warn!(%to, error = %e, "no forwarder for a listed loopback address"),
                        }
                    }
                    spec.runtime_api = listener.local_addr()?.to_string();
                    let (reader, writer) = std::io::pipe()?;
                    let logs = LogCapture::new(reader.into())?;
                    let json = serde_json::to_string(&spec).map_err(std::io::Error::other)?;
                    let _runtime = handle.enter();
                    // The spec goes to stdin, never to argv: inside the sandbox this process is
                    // PID 1, and its command line (`init __sandbox`) is all anyone there sees.
                    let child = tokio::process::Command::new(&exe)
                        .arg0("init")
                        .arg("__sandbox")
                        .env_clear()
                        .stdin(std::process::Stdio::piped())
                        .stdout(writer.try_clone()?)
                        .stderr(writer)
                        .kill_on_drop(true)
                        .spawn()?;
                    listener.set_nonblocking(true)?;
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let proxy = proxy.map(tokio::net::TcpListener::from_std).transpose()?;
                    let forwards = forwards
                        .into_iter()
                        .map(|(l, to)| Ok((tokio::net::TcpListener::from_std(l)?, to)))
                        .collect::<std::io::Result<Vec<_>>>()?;
                    let address = spec.runtime_api;
                    Ok::<_, std::io::Error>((child, listener, proxy, forwards, logs, address, json))
                })();
                match started {
                    Ok((child, listener, proxy, forwards, logs, address, json)) => {
                        let _ = tx.send(Ok((
                            child,
                            listener,
                            proxy,
                            forwards,
                            logs.clone(),
                            address,
                            json,
                        )));
                        logs.run();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let (mut child, listener, proxy, forwards, logs, runtime_api, json) = rx
            .await
            .map_err(|_| std::io::Error::other("the sandbox thread died"))??;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the sandbox has no stdin"))?;
        stdin.write_all(format!("{json}\n").as_bytes()).await?;
        stdin.flush().await?;
        // A standby keeps its stdin for its assignment; the others get end-of-file.
        let standby = spec_standby.then_some(stdin);
        let router = api.router;
        // In its own network namespace only the sandbox can connect.
        let server = tokio::spawn(async move {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, router).await;
        });
        let mut egress_servers = Vec::new();
        let open = Arc::new(tokio::sync::Semaphore::new(crate::egress::MAX_CONNECTIONS));
        if let (Some(listener), Some(policy)) = (proxy, egress) {
            egress_servers.push(tokio::spawn(crate::egress::serve(
                listener,
                policy,
                open.clone(),
            )));
        }
        for (listener, to) in forwards {
            egress_servers.push(tokio::spawn(crate::egress::forward(
                listener,
                to,
                open.clone(),
            )));
        }
        Ok(Self {
            standby,
            runtime_api,
            child,
            invocations: api.invocations,
            events: api.events,
            logs,
            cgroup,
            server,
            dir,
            last_used: Instant::now(),
            cleanups,
            ready: false,
            charge: None,
            egress_servers,
            exited: false,
        })
    }

    /// Assigns a standby sandbox (started with `spec.standby`) to a function: sets its memory
    /// limits and hands it the real spec. It then starts like any sandbox.
    pub async fn assign(&mut self, mut spec: SandboxSpec, memory_mb: u32) -> std::io::Result<()> {
        if let Some(c) = &self.cgroup {
            c.set_limits(memory_mb).map_err(std::io::Error::other)?;
        }
        let mut stdin = self
            .standby
            .take()
            .ok_or_else(|| std::io::Error::other("not a standby sandbox"))?;
        spec.standby = false;
        spec.runtime_api = self.runtime_api.clone();
        let mut line = serde_json::to_vec(&spec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        stdin.write_all(&line).await?;
        stdin.flush().await
    }

    /// The directory the sandbox's root is mounted under.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Whether the sandbox finished init and can take an invocation.
    pub fn is_ready(&self) -> bool {
        self.ready && !self.exited
    }

    /// Whether the process tree is still running.
    pub fn is_alive(&mut self) -> bool {
        !self.exited && matches!(self.child.try_wait(), Ok(None))
    }

    /// Output printed since the last call.
    pub fn take_logs(&self) -> String {
        self.logs.take()
    }

    /// Peak memory of the current window (0 without cgroups).
    pub fn peak_memory_bytes(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, Cgroup::peak_memory_bytes)
    }

    /// Starts the next peak-memory window.
    pub fn reset_peak_memory(&self) {
        if let Some(c) = &self.cgroup {
            c.reset_peak();
        }
    }

    fn failure_from_exit(&mut self, status: std::io::Result<ExitStatus>) -> Failure {
        self.exited = true;
        if self.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0) {
            return Failure::OutOfMemory;
        }
        match status {
            Ok(s) => Failure::Exit(describe_exit(s)),
            Err(e) => Failure::Sandbox(format!("waiting for the sandbox: {e}")),
        }
    }

    /// The runtime's next report. The sandbox exiting, the deadline passing, an init error or
    /// the Runtime API closing end the wait as a failure.
    async fn next_event(&mut self, deadline: Instant) -> Result<RuntimeEvent, Failure> {
        tokio::select! {
            event = self.events.recv() => match event {
                Some(RuntimeEvent::InitError { error_type, body }) => Err(Failure::Init {
                    error_type: error_type.unwrap_or_else(|| error_type_of(&body)),
                    body,
                }),
                Some(event) => Ok(event),
                None => Err(Failure::Sandbox("runtime API closed".into())),
            },
            status = self.child.wait() => Err(self.failure_from_exit(status)),
            _ = tokio::time::sleep_until(deadline.into()) => Err(Failure::Timeout),
        }
    }

    /// Waits until the runtime asks for its first invocation (its init phase is done).
    pub async fn wait_ready(&mut self, deadline: Instant) -> Result<(), Failure> {
        while !self.ready {
            match self.next_event(deadline).await {
                Ok(RuntimeEvent::Next) => self.ready = true,
                Ok(_) => {}
                // Exiting before asking for work is an init failure.
                Err(Failure::Exit(how)) => {
                    let doc = nimbus_aws::lambda::function_error(
                        "Runtime.ExitError",
                        &format!("RequestId: init Error: Runtime exited with error: {how}"),
                    );
                    return Err(Failure::Init {
                        error_type: "Runtime.ExitError".into(),
                        body: Bytes::from(doc.to_string()),
                    });
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Runs one invocation: hands it to the runtime and waits for its answer, its exit or the
    /// deadline.
    pub async fn invoke(&mut self, inv: Invocation, deadline: Instant) -> Result<Bytes, Failure> {
        let id = inv.request_id.clone();
        if self.invocations.send(inv).await.is_err() {
            return Err(Failure::Sandbox("runtime API closed".into()));
        }
        loop {
            match self.next_event(deadline).await? {
                RuntimeEvent::Response { id: rid, body } if rid == id => {
                    self.last_used = Instant::now();
                    return Ok(body);
                }
                RuntimeEvent::Error {
                    id: rid,
                    error_type,
                    body,
                } if rid == id => {
                    self.last_used = Instant::now();
                    let error_type = error_type.unwrap_or_else(|| error_type_of(&body));
                    return Err(Failure::Handled { error_type, body });
                }
                _ => {}
            }
        }
    }

    /// Kills the sandbox and waits for it; its cgroup and directory go when it drops.
    pub async fn destroy(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        remove_leftovers(self.cgroup.take(), std::mem::take(&mut self.dir)).await;
    }
}

/// Removes a dead sandbox's cgroup (killing stragglers; the PID namespace dies asynchronously)
/// and its directory.
async fn remove_leftovers(cgroup: Option<Cgroup>, dir: PathBuf) {
    if let Some(c) = cgroup {
        for _ in 0..100 {
            c.kill_all();
            if c.remove().is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if !dir.as_os_str().is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // `kill_on_drop` kills the child; what is left is removed in the background.
        self.server.abort();
        for server in &self.egress_servers {
            server.abort();
        }
        let _ = self.child.start_kill();
        let (cgroup, dir) = (self.cgroup.take(), std::mem::take(&mut self.dir));
        if (cgroup.is_some() || !dir.as_os_str().is_empty())
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            // Tracked, so a shutdown can wait for it.
            self.cleanups
                .spawn_on(remove_leftovers(cgroup, dir), &handle);
        }
    }
}

/// The `errorType` of an error document, or `Unhandled`.
fn error_type_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errorType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "Unhandled".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exits_read_like_lambda() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(137 << 8)),
            "signal: killed"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal: killed");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(139 << 8)),
            "signal: segmentation fault"
        );
        assert_eq!(error_type_of(br#"{"errorType":"KeyError"}"#), "KeyError");
        assert_eq!(error_type_of(b"oops"), "Unhandled");
    }
}
