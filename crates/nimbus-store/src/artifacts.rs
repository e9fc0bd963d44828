//! Content-addressed artifact files.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors from the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The uploaded bytes do not hash to the name they were uploaded under.
    #[error("artifact content hashes to {actual}, not {expected}")]
    HashMismatch {
        /// The claimed sha256.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The name is not a sha256 hex digest.
    #[error("`{0}` is not a sha256 hex digest")]
    BadName(String),
    /// Filesystem failure.
    #[error("artifact store I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Artifacts (components and code bundles) stored as `DIR/<sha256>`, written atomically (temp file, fsync, rename).
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
}

/// Whether `s` looks like a lower-case sha256 hex digest.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ArtifactStore {
    /// Opens (creating) the directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Where the artifact `sha256` lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Whether the artifact is stored.
    pub fn contains(&self, sha256: &str) -> bool {
        is_sha256_hex(sha256) && self.path(sha256).is_file()
    }

    /// Stores `bytes` under `expected` after checking the hash. Idempotent.
    pub fn put(&self, expected: &str, bytes: &[u8]) -> Result<(), ArtifactError> {
        if !is_sha256_hex(expected) {
            return Err(ArtifactError::BadName(expected.to_string()));
        }
        let actual = nimbus_core::sha256_hex(bytes);
        if actual != expected {
            return Err(ArtifactError::HashMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        if self.contains(expected) {
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path(expected)).map_err(|e| e.error)?;
        sync_dir(&self.dir)?;
        Ok(())
    }

    /// Reads an artifact.
    pub fn read(&self, sha256: &str) -> Result<Vec<u8>, ArtifactError> {
        if !is_sha256_hex(sha256) {
            return Err(ArtifactError::BadName(sha256.to_string()));
        }
        Ok(std::fs::read(self.path(sha256))?)
    }

    /// Deletes artifacts not in `keep` last written before `before` (an upload waiting for its
    /// deploy is younger), and every temporary file an interrupted upload left. Returns how
    /// many files went.
    pub fn sweep(
        &self,
        keep: &std::collections::HashSet<String>,
        before: std::time::SystemTime,
    ) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let unused = is_sha256_hex(&name)
                && !keep.contains(&name)
                && entry.metadata()?.modified()? < before;
            // `tempfile` names its files `.tmp…`: what a killed upload leaves behind.
            if unused || name.starts_with(".tmp") {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes `sha256` unless it is in `keep`.
    pub fn discard(
        &self,
        sha256: &str,
        keep: &std::collections::HashSet<String>,
    ) -> std::io::Result<()> {
        if is_sha256_hex(sha256) && !keep.contains(sha256) {
            match std::fs::remove_file(self.path(sha256)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Bytes of every stored artifact.
    pub fn total_bytes(&self) -> std::io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if is_sha256_hex(&entry.file_name().to_string_lossy()) {
                total += entry.metadata()?.len();
            }
        }
        Ok(total)
    }

    /// The directory holding the artifacts.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_hash_and_rejects_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let sha = nimbus_core::sha256_hex(b"hello");
        assert!(!store.contains(&sha));
        store.put(&sha, b"hello").unwrap();
        store.put(&sha, b"hello").unwrap();
        assert!(store.contains(&sha));
        assert_eq!(store.read(&sha).unwrap(), b"hello");
        let other = nimbus_core::sha256_hex(b"other");
        assert!(matches!(
            store.put(&other, b"hello"),
            Err(ArtifactError::HashMismatch { .. })
        ));
        assert!(!store.contains(&other));
        assert!(matches!(
            store.put("../etc/passwd", b"x"),
            Err(ArtifactError::BadName(_))
        ));
    }
}
