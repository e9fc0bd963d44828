//! On-disk cache of compiled components, keyed by artifact sha256 and engine configuration.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct CompiledCache {
    dir: PathBuf,
    engine: Engine,
}

impl CompiledCache {
    /// Opens `root/<engine fingerprint>/`: a different wasmtime build or configuration gets its
    /// own directory, so a stale entry is never even tried.
    pub(crate) fn open(root: &Path, engine: &Engine) -> std::io::Result<Self> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            engine: engine.clone(),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    pub(crate) fn store(&self, sha256: &str, component: &Component) -> std::io::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&bytes)?;
        tmp.persist(self.path(sha256)).map_err(|e| e.error)?;
        Ok(())
    }

    /// Deletes compiled components whose artifact is not in `keep`, and temporary files a
    /// killed write left. Returns how many went.
    pub(crate) fn retain(
        &self,
        keep: &std::collections::HashSet<String>,
    ) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = name
                .strip_suffix(".cwasm")
                .is_some_and(|sha| keep.contains(sha));
            if !kept {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub(crate) fn load(&self, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was produced by `Component::serialize` of this engine configuration
        // (the directory is keyed by the engine's compatibility hash) and written atomically into
        // Nimbus's own data directory; wasmtime still checks its header and rejects mismatches.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled component");
                None
            }
        }
    }
}
