//! The sandbox side: code that runs in the `nimbus __sandbox` child process, never in the server.
//!
//! The host's keeper thread (see `sandbox.rs`) has already given the child a new network
//! namespace (where the host listens for the sandbox's Runtime API on `127.0.0.1:9001`) and a new
//! PID namespace, in which the child is PID 1. [`stage1`] then:
//!
//! 1. joins the function's cgroups (a standby does this ahead of time and then waits for its
//!    spec on stdin);
//! 2. unshares the mount, IPC and UTS namespaces and builds a private root — read-only `/usr` and
//!    `/etc`, code at `/var/task`, bootstraps at `/var/runtime`, a size-capped tmpfs `/tmp`, a
//!    minimal `/dev`, a fresh `/proc` — and pivots into it (read-only);
//! 3. drops to the sandbox uid with no capabilities in a new user namespace, so nothing it runs
//!    holds privileges anywhere, and sets `no_new_privs` and the seccomp filter ([`crate::seccomp`]);
//! 4. starts the runtime with a clean environment, reaps orphans as PID 1, and exits with the
//!    runtime's status.
//!
//! It dies with the keeper thread (`PR_SET_PDEATHSIG`), and as PID 1 its death kills everything
//! in the namespace.
//!
//! Failures are printed to stderr (the sandbox log) and end the child with status 127.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Gid, Pid, Uid, chdir, pivot_root, sethostname, setresgid, setresuid};

use crate::spec::{RUNTIME_ROOT, SandboxSpec, TASK_ROOT};

/// Exit status of a sandbox whose setup failed.
pub const SETUP_FAILED: i32 = 127;

type Result<T> = std::result::Result<T, String>;

fn ctx<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn fail(stage: &str, e: String) -> i32 {
    let _ = writeln!(std::io::stderr(), "nimbus sandbox {stage}: {e}");
    SETUP_FAILED
}

fn die_with_parent(parent: i32) -> Result<()> {
    use std::os::fd::AsFd;
    ctx(
        nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)),
        "PR_SET_PDEATHSIG",
    )?;
    // The parent may have died before the line above took effect. Outside a new PID namespace
    // the parent pid tells; inside one it reads 0, but the log pipe's read end (held by the
    // server) would be closed, which poll reports as POLLERR on our end.
    let ppid = nix::unistd::getppid().as_raw();
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
    let broken = poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR));
    if (ppid != 0 && ppid != parent) || broken {
        return Err("parent exited during start-up".into());
    }
    Ok(())
}

/// Runs the sandbox child and returns the process exit status.
pub fn stage1(spec: &SandboxSpec) -> i32 {
    match stage1_inner(spec) {
        Ok(code) => code,
        Err(e) => fail("setup", e),
    }
}

fn stage1_inner(spec: &SandboxSpec) -> Result<i32> {
    for procs in &spec.cgroup_procs {
        ctx(
            std::fs::write(procs, std::process::id().to_string()),
            &format!("joining cgroup {}", procs.display()),
        )?;
    }
    die_with_parent(spec.parent_pid)?;
    let assigned;
    let spec = if spec.standby {
        // A standby, parked in its cgroups (joining them is the slow part of a start) until the
        // host assigns it a function: the real spec arrives as one line on stdin.
        let mut line = String::new();
        ctx(std::io::stdin().read_line(&mut line), "reading the spec")?;
        if line.trim().is_empty() {
            return Ok(0);
        }
        assigned = ctx(
            serde_json::from_str::<SandboxSpec>(&line),
            "decoding the spec",
        )?;
        &assigned
    } else {
        spec
    };
    if spec.namespaces {
        ctx(
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS),
            "unshare",
        )?;
        ctx(sethostname("nimbus"), "sethostname")?;
        build_root(spec)?;
        enter_root(&spec.root)?;
        drop_privileges(spec.uid, spec.gid)?;
        // Changing uid clears the parent-death signal: set it again.
        die_with_parent(spec.parent_pid)?;
    }
    crate::seccomp::confine()?;
    run_runtime(spec)
}

/// Gives the calling thread a new network namespace with loopback up. Children it spawns
/// inherit the namespace; sockets it opens live in it.
pub fn enter_new_netns() -> Result<()> {
    ctx(unshare(CloneFlags::CLONE_NEWNET), "unshare(net)")?;
    ctx(loopback_up(), "bringing up loopback")
}

/// Makes the next child of the calling thread PID 1 of a new PID namespace. The thread must
/// spawn exactly one child afterwards.
pub fn enter_new_pidns() -> Result<()> {
    ctx(unshare(CloneFlags::CLONE_NEWPID), "unshare(pid)")
}

/// Sets `IFF_UP` on loopback (interface 1 in every network namespace) with one rtnetlink
/// `RTM_NEWLINK` request, and checks the kernel's acknowledgement.
fn loopback_up() -> nix::Result<()> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 1 | 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsghdr.nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    msg.extend_from_slice(&[0, 0]); // ifinfomsg.ifi_family = AF_UNSPEC, padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&1i32.to_ne_bytes()); // ifi_index: loopback
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    sendto(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut reply = [0u8; 1024];
    let n = recv(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &mut reply,
        MsgFlags::empty(),
    )?;
    let u16_at = |i: usize| u16::from_ne_bytes([reply[i], reply[i + 1]]);
    if n < 20 || u16_at(4) != NLMSG_ERROR {
        return Err(nix::errno::Errno::EPROTO);
    }
    match i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]) {
        0 => Ok(()),
        e => Err(nix::errno::Errno::from_raw(-e)),
    }
}

/// Drops every privilege: the sandbox uid/gid, no supplementary groups, and a new user
/// namespace in which the sandbox's own uid maps to itself.
fn drop_privileges(uid: u32, gid: u32) -> Result<()> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    if Uid::effective().is_root() && uid != 0 {
        ctx(nix::unistd::setgroups(&[]), "setgroups")?;
        ctx(setresgid(g, g, g), "setresgid")?;
        ctx(setresuid(u, u, u), "setresuid")?;
        // Changing uid clears "dumpable", which leaves /proc/self/*_map owned by root.
        ctx(nix::sys::prctl::set_dumpable(true), "PR_SET_DUMPABLE")?;
    }
    ctx(unshare(CloneFlags::CLONE_NEWUSER), "unshare(user)")?;
    ctx(
        std::fs::write("/proc/self/setgroups", "deny"),
        "setgroups deny",
    )?;
    ctx(
        std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1")),
        "uid_map",
    )?;
    ctx(
        std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1")),
        "gid_map",
    )
}

const NONE: Option<&str> = None;

fn bind(src: &Path, dst: &Path, read_only: bool) -> Result<()> {
    let what = format!("bind {} -> {}", src.display(), dst.display());
    ctx(
        mount(
            Some(src),
            dst,
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        ),
        &what,
    )?;
    if read_only {
        // A remount inside a user namespace must keep the flags the host mount has locked.
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        let host = ctx(statvfs(src), &what)?.flags();
        for (f, m) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if host.contains(f) {
                flags |= m;
            }
        }
        ctx(
            mount(NONE, dst, NONE, flags, NONE),
            &format!("{what} (read-only)"),
        )?;
    }
    Ok(())
}

fn mkdir(p: &Path) -> Result<()> {
    ctx(
        std::fs::create_dir_all(p),
        &format!("mkdir {}", p.display()),
    )
}

fn inside(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

fn build_root(spec: &SandboxSpec) -> Result<()> {
    ctx(
        mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE),
        "making mounts private",
    )?;
    let root = &spec.root;
    ctx(
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("size=16m,mode=0755"),
        ),
        "mounting the root tmpfs",
    )?;
    // The host's system directories, read-only; merged-/usr symlinks are recreated as symlinks.
    for dir in [
        "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
    ] {
        let host = Path::new("/").join(dir);
        let target = root.join(dir);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = ctx(std::fs::read_link(&host), "readlink")?;
                ctx(
                    std::os::unix::fs::symlink(link, &target),
                    &format!("symlink {dir}"),
                )?;
            }
            Ok(m) if m.is_dir() => {
                mkdir(&target)?;
                bind(&host, &target, true)?;
            }
            _ => {}
        }
    }
    for (src, dst) in [
        (&spec.code_dir, TASK_ROOT),
        (&spec.runtime_dir, RUNTIME_ROOT),
    ] {
        let target = inside(root, dst);
        mkdir(&target)?;
        bind(src, &target, true)?;
    }
    let tmp = root.join("tmp");
    mkdir(&tmp)?;
    ctx(
        mount(
            Some("tmpfs"),
            &tmp,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={}m,mode=1777", spec.tmp_mb).as_str()),
        ),
        "mounting /tmp",
    )?;
    let dev = root.join("dev");
    mkdir(&dev.join("shm"))?;
    for node in ["null", "zero", "full", "random", "urandom"] {
        let target = dev.join(node);
        ctx(
            std::fs::write(&target, ""),
            &format!("creating /dev/{node}"),
        )?;
        bind(&Path::new("/dev").join(node), &target, false)?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ctx(
            std::os::unix::fs::symlink(to, dev.join(name)),
            &format!("/dev/{name}"),
        )?;
    }
    mkdir(&root.join("proc"))?;
    mkdir(&root.join(".oldroot"))?;
    Ok(())
}

/// Starts the runtime and, as PID 1, reaps every process until the runtime itself ends.
fn run_runtime(spec: &SandboxSpec) -> Result<i32> {
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", &spec.runtime_api)
        .current_dir(&spec.cwd)
        .stdin(std::process::Stdio::null());
    let runtime = ctx(command.spawn(), &format!("starting `{}`", spec.argv[0]))?;
    let runtime_pid = Pid::from_raw(runtime.id() as i32);
    // As PID 1, reap every orphan; end when the runtime itself ends.
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime_pid => return Ok(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == runtime_pid => {
                return Ok(128 + sig as i32);
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waitpid: {e}")),
        }
    }
}

fn enter_root(root: &Path) -> Result<()> {
    ctx(
        mount(
            Some("proc"),
            &root.join("proc"),
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            NONE,
        ),
        "mounting /proc",
    )?;
    ctx(pivot_root(root, &root.join(".oldroot")), "pivot_root")?;
    ctx(chdir("/"), "chdir /")?;
    ctx(
        umount2("/.oldroot", MntFlags::MNT_DETACH),
        "detaching the old root",
    )?;
    ctx(std::fs::remove_dir("/.oldroot"), "removing /.oldroot")?;
    ctx(
        mount(
            NONE,
            "/",
            NONE,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            NONE,
        ),
        "making / read-only",
    )
}

/// Checks that this machine can build sandboxes (run as `nimbus __sandbox-probe UID GID` in a
/// throwaway child): the server must be root and namespaces must be creatable.
/// Returns the exit status (0 = sandboxes work).
pub fn probe(uid: u32, gid: u32) -> i32 {
    let result = (|| -> Result<()> {
        if !Uid::effective().is_root() {
            return Err("the server does not run as root".into());
        }
        ctx(
            unshare(
                CloneFlags::CLONE_NEWNS
                    | CloneFlags::CLONE_NEWPID
                    | CloneFlags::CLONE_NEWIPC
                    | CloneFlags::CLONE_NEWUTS
                    | CloneFlags::CLONE_NEWNET,
            ),
            "unshare",
        )?;
        drop_privileges(uid, gid)
    })();
    match result {
        Ok(()) => 0,
        Err(e) => fail("probe", e),
    }
}
