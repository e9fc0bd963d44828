//! A disk reserve for the log: a ballast file of a fixed size that the log gives up when the
//! disk runs low, so that what empties queues (receives, acknowledgements, checkpoints) always
//! has room, while new messages are refused with [`crate::LogError::Full`] until space returns.

use std::io::Write;
use std::path::PathBuf;

/// The ballast and the free-space thresholds around it.
pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
    /// The ballast is gone: the disk ran low.
    low: bool,
    /// When the disk was last looked at.
    checked: Option<std::time::Instant>,
}

impl Reserve {
    /// A reserve of `bytes` at `path` (created now when there is room; 0 disables it).
    pub(crate) fn new(path: PathBuf, bytes: u64) -> Self {
        let mut r = Self {
            path,
            bytes,
            low: false,
            checked: None,
        };
        if bytes > 0 && !r.ballast_ok() && r.create().is_err() {
            r.low = true;
        }
        r
    }

    fn ballast_ok(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.bytes)
    }

    /// Writes the ballast with real blocks (not a sparse file).
    fn create(&self) -> std::io::Result<()> {
        let mut f = std::fs::File::create(&self.path)?;
        let chunk = vec![0u8; 1 << 20];
        let mut left = self.bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if let Err(e) = f.write_all(&chunk[..n]) {
                drop(f);
                let _ = std::fs::remove_file(&self.path);
                return Err(e);
            }
            left -= n as u64;
        }
        f.sync_all()
    }

    fn free_bytes(&self) -> Option<u64> {
        let dir = self.path.parent()?;
        let s = nix::sys::statvfs::statvfs(dir).ok()?;
        Some(s.blocks_available() as u64 * s.fragment_size() as u64)
    }

    /// Checks the disk before a batch (at most every 20 ms); whether appends may go ahead.
    /// Below the reserve's size of free space the ballast goes (room for receives and acks)
    /// and appends stop; at twice it, the ballast comes back and appends resume.
    pub(crate) fn appends_allowed(&mut self) -> bool {
        if self.bytes == 0 {
            return true;
        }
        let now = std::time::Instant::now();
        if self
            .checked
            .is_some_and(|at| now.duration_since(at) < std::time::Duration::from_millis(20))
        {
            return !self.low;
        }
        self.checked = Some(now);
        let free = self.free_bytes().unwrap_or(u64::MAX);
        if !self.low && free < self.bytes {
            let _ = std::fs::remove_file(&self.path);
            self.low = true;
            tracing::warn!(
                free_bytes = free,
                "the disk is nearly full: new messages are refused, receives and acks go on"
            );
        } else if self.low && free >= self.bytes.saturating_mul(2) && self.create().is_ok() {
            self.low = false;
            tracing::info!("disk space is back: new messages are accepted again");
        }
        !self.low
    }
}
