//! Per-sandbox cgroups on cgroup v1 (separate memory, pids and cpu hierarchies) or v2 (one
//! unified hierarchy): memory limit without swap, CPU share proportional to memory (as Lambda:
//! 1769 MB = one full share), a pids limit, peak memory and OOM-kill counts.

use std::path::{Path, PathBuf};

/// Memory that earns one full CPU share, in MiB (Lambda's 1769 MB = 1 vCPU).
pub const MIB_PER_CPU: u64 = 1769;
/// Most processes and threads a sandbox may run.
pub const PIDS_MAX: u32 = 1024;

/// Which cgroup layout the machine has, and the parent directories Nimbus owns in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupDriver {
    /// cgroup v1: `memory`, `pids`, `cpu` hierarchies, each with a `nimbus` parent.
    V1 {
        /// `/sys/fs/cgroup/memory/nimbus`
        memory: PathBuf,
        /// `/sys/fs/cgroup/pids/nimbus`
        pids: PathBuf,
        /// `/sys/fs/cgroup/cpu/nimbus`
        cpu: PathBuf,
    },
    /// cgroup v2: one `nimbus` parent with the controllers enabled for its children.
    V2 {
        /// `/sys/fs/cgroup/nimbus`
        parent: PathBuf,
    },
}

/// Errors creating or using cgroups.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {path}: {source}")]
pub struct CgroupError {
    path: PathBuf,
    source: std::io::Error,
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError {
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|source| CgroupError {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads `key N` from a flat-keyed cgroup file (`memory.events`, `memory.oom_control`).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl CgroupDriver {
    /// Finds the cgroup layout under `root` (normally `/sys/fs/cgroup`) and creates Nimbus's
    /// parent groups. Fails when cgroups are missing or not writable (e.g. not root).
    pub fn detect(root: &Path) -> Result<Self, CgroupError> {
        let driver = if root.join("cgroup.controllers").is_file() {
            let parent = root.join("nimbus");
            mkdir(&parent)?;
            // Children of `nimbus` get these controllers; enabling them at the root first.
            for dir in [root, parent.as_path()] {
                write(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
            }
            CgroupDriver::V2 { parent }
        } else {
            let driver = CgroupDriver::V1 {
                memory: root.join("memory/nimbus"),
                pids: root.join("pids/nimbus"),
                cpu: root.join("cpu/nimbus"),
            };
            if let CgroupDriver::V1 { memory, pids, cpu } = &driver {
                for d in [memory, pids, cpu] {
                    mkdir(d)?;
                }
            }
            driver
        };
        // Groups left by a server that was killed: empty ones can go (rmdir fails on the others).
        let parents: Vec<&PathBuf> = match &driver {
            CgroupDriver::V1 { memory, pids, cpu } => vec![memory, pids, cpu],
            CgroupDriver::V2 { parent } => vec![parent],
        };
        for parent in parents {
            for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
        // The parents may exist from an earlier (root) run: check this process may create groups.
        let probe = match &driver {
            CgroupDriver::V1 { memory, .. } => memory.join(format!("probe-{}", std::process::id())),
            CgroupDriver::V2 { parent } => parent.join(format!("probe-{}", std::process::id())),
        };
        mkdir(&probe)?;
        let _ = std::fs::remove_dir(&probe);
        Ok(driver)
    }

    /// `v1` or `v2`.
    pub fn version(&self) -> &'static str {
        match self {
            CgroupDriver::V1 { .. } => "v1",
            CgroupDriver::V2 { .. } => "v2",
        }
    }

    /// Creates the cgroup `name` with the limits for `memory_mb`.
    pub fn create(&self, name: &str, memory_mb: u32) -> Result<Cgroup, CgroupError> {
        let group = self.create_unlimited(name)?;
        group.set_limits(memory_mb)?;
        Ok(group)
    }

    /// Creates the cgroup `name`; limits come later with [`Cgroup::set_limits`] (a standby
    /// sandbox joins its group before anyone knows which function it will run).
    pub fn create_unlimited(&self, name: &str) -> Result<Cgroup, CgroupError> {
        let group = match self {
            CgroupDriver::V1 { memory, pids, cpu } => Cgroup {
                dirs: vec![memory.join(name), pids.join(name), cpu.join(name)],
                v2: false,
            },
            CgroupDriver::V2 { parent } => Cgroup {
                dirs: vec![parent.join(name)],
                v2: true,
            },
        };
        for d in &group.dirs {
            mkdir(d)?;
        }
        Ok(group)
    }
}

/// One sandbox's cgroup (one directory per hierarchy on v1).
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
}

impl Cgroup {
    /// Sets the memory limit (no swap), the CPU share proportional to it, and the pids limit.
    pub fn set_limits(&self, memory_mb: u32) -> Result<(), CgroupError> {
        let bytes = (u64::from(memory_mb) * 1024 * 1024).to_string();
        let dir = &self.dirs[0];
        if self.v2 {
            write(&dir.join("memory.max"), &bytes)?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
            write(&dir.join("pids.max"), &PIDS_MAX.to_string())?;
            let weight = (u64::from(memory_mb) * 100 / MIB_PER_CPU).clamp(1, 10_000);
            write(&dir.join("cpu.weight"), &weight.to_string())
        } else {
            // memory+swap must stay >= memory: lower it last when shrinking, first when growing.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            let limit = dir.join("memory.limit_in_bytes");
            if memsw.exists() {
                if write(&limit, &bytes).is_ok() {
                    write(&memsw, &bytes)?;
                } else {
                    write(&memsw, &bytes)?;
                    write(&limit, &bytes)?;
                }
            } else {
                write(&limit, &bytes)?;
            }
            write(&self.dirs[1].join("pids.max"), &PIDS_MAX.to_string())?;
            let shares = (u64::from(memory_mb) * 1024 / MIB_PER_CPU).max(2);
            write(&self.dirs[2].join("cpu.shares"), &shares.to_string())
        }
    }

    /// The `cgroup.procs` files a process writes its pid to, to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dirs[0].join(file)).ok()
    }

    /// Peak memory use since the last [`Cgroup::reset_peak`] (v1) or since creation (v2).
    pub fn peak_memory_bytes(&self) -> u64 {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        self.read(file)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_default()
    }

    /// Starts a new peak-memory window (v1 only; v2's peak covers the sandbox's life).
    pub fn reset_peak(&self) {
        if !self.v2 {
            let _ = std::fs::write(self.dirs[0].join("memory.max_usage_in_bytes"), "0");
        }
    }

    /// How many processes the kernel's OOM killer has killed in this group.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.read(file)
            .and_then(|s| keyed_value(&s, "oom_kill"))
            .unwrap_or_default()
    }

    /// Kills every process left in the group.
    pub fn kill_all(&self) {
        for procs in self.procs_files() {
            for pid in std::fs::read_to_string(procs)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Removes the group's directories (they must be empty of processes).
    pub fn remove(&self) -> std::io::Result<()> {
        for d in &self.dirs {
            if d.exists() {
                std::fs::remove_dir(d)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(v1, "oom_kill"), Some(3));
        assert_eq!(keyed_value(v1, "oom_kill_disable"), Some(0));
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed_value(v2, "oom_kill"), Some(1));
        assert_eq!(keyed_value(v2, "absent"), None);
    }

    #[test]
    fn v1_groups_get_limits_from_memory() {
        // A fake v1 tree in a temp dir: the driver writes the same files it writes under /sys.
        let root = tempfile::tempdir().unwrap();
        let driver = CgroupDriver::detect(root.path()).unwrap();
        assert_eq!(driver.version(), "v1");
        let g = driver.create("sb1", 256).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("memory/nimbus/sb1/memory.limit_in_bytes"), "268435456");
        assert_eq!(read("pids/nimbus/sb1/pids.max"), "1024");
        assert_eq!(read("cpu/nimbus/sb1/cpu.shares"), "148");
        assert_eq!(g.procs_files().len(), 3);
    }

    #[test]
    fn v2_groups_get_limits_from_memory() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "memory pids cpu").unwrap();
        let driver = CgroupDriver::detect(root.path()).unwrap();
        assert_eq!(driver.version(), "v2");
        let g = driver.create("sb1", 1769).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("nimbus/sb1/memory.max"), "1854930944");
        assert_eq!(read("nimbus/sb1/cpu.weight"), "100");
        assert_eq!(read("nimbus/cgroup.subtree_control"), "+memory +pids +cpu");
        assert_eq!(
            g.procs_files(),
            [root.path().join("nimbus/sb1/cgroup.procs")]
        );
    }
}
