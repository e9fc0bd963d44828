//! Code bundles: a function's directory as a deterministic zip (so identical code is an identical
//! artifact and redeploying it is a no-op), and its safe extraction into the read-only code
//! directory a sandbox mounts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

/// Largest total size of an extracted bundle (Lambda's unzipped limit).
pub const MAX_UNZIPPED_BYTES: u64 = 250 * 1024 * 1024;
/// Most entries a bundle may hold.
pub const MAX_ENTRIES: usize = 100_000;

/// Why a bundle cannot be built or used.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// Not a zip archive, or a corrupt one.
    #[error("not a valid zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// An entry would land outside the code directory, or is a link or special file.
    #[error("entry `{0}` is not allowed (absolute path, `..`, or a symlink)")]
    UnsafeEntry(String),
    /// A symbolic link in the directory being bundled leads outside it.
    #[error(
        "`{path}` is a symbolic link to {target}, outside the directory being bundled; copy the file in instead"
    )]
    LinkOutside {
        /// The link, relative to the directory.
        path: String,
        /// Where it leads.
        target: String,
    },
    /// Bigger than [`MAX_UNZIPPED_BYTES`] or [`MAX_ENTRIES`].
    #[error(
        "the code is too large: more than {MAX_UNZIPPED_BYTES} bytes or {MAX_ENTRIES} files unzipped"
    )]
    TooLarge,
    /// Filesystem failure.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Collects the files under `dir` (relative to `root`, the canonical directory being
/// bundled). A symbolic link to a file is taken as that file only if it stays inside `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CodeError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let kind = e.file_type()?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() {
            out.push(rel);
        } else if kind.is_symlink() && path.is_file() {
            let target = std::fs::canonicalize(&path)?;
            if !target.starts_with(root) {
                return Err(CodeError::LinkOutside {
                    path: rel.display().to_string(),
                    target: target.display().to_string(),
                });
            }
            out.push(rel);
        }
    }
    Ok(())
}

/// Zips `dir` deterministically: sorted entries, fixed timestamps, modes 0644 or 0755.
/// Symlinks to files are stored as the files they point to.
pub fn bundle_dir(dir: &Path) -> Result<Vec<u8>, CodeError> {
    let dir = &std::fs::canonicalize(dir)?;
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for rel in files {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(&rel);
        let executable = std::fs::metadata(&path)?.permissions().mode() & 0o111 != 0;
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(if executable { 0o755 } else { 0o644 });
        let name = rel.to_string_lossy().replace('\\', "/");
        zip.start_file(name, options)?;
        zip.write_all(&std::fs::read(&path)?)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// Extracts `bundle` into `dest` (which must not exist) through a temporary sibling directory,
/// so `dest` appears complete or not at all. Files are world-readable and read-only.
pub fn extract(bundle: &[u8], dest: &Path) -> Result<(), CodeError> {
    extract_and(bundle, dest, |_| Ok(()))
}

/// [`extract`], running `prepare` on the staged directory before it becomes `dest` (e.g. to
/// precompile it).
pub fn extract_and(
    bundle: &[u8],
    dest: &Path,
    prepare: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), CodeError> {
    use std::os::unix::fs::PermissionsExt;
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(parent)?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bundle))?;
    if archive.len() > MAX_ENTRIES {
        return Err(CodeError::TooLarge);
    }
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        let Some(rel) = entry.enclosed_name() else {
            return Err(CodeError::UnsafeEntry(name));
        };
        if entry.is_symlink() {
            return Err(CodeError::UnsafeEntry(name));
        }
        let target = tmp.path().join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mut out = std::fs::File::create(&target)?;
        let copied = std::io::copy(
            &mut (&mut entry).take(MAX_UNZIPPED_BYTES - total + 1),
            &mut out,
        )?;
        total += copied;
        if total > MAX_UNZIPPED_BYTES {
            return Err(CodeError::TooLarge);
        }
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        std::fs::set_permissions(
            &target,
            std::fs::Permissions::from_mode(if executable { 0o555 } else { 0o444 }),
        )?;
    }
    prepare(tmp.path())?;
    set_dir_modes(tmp.path())?;
    let staged = tmp.keep();
    if let Err(e) = std::fs::rename(&staged, dest) {
        let _ = std::fs::remove_dir_all(&staged);
        if !dest.is_dir() {
            return Err(e.into());
        }
    }
    Ok(())
}

fn set_dir_modes(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            set_dir_modes(&e.path())?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// Whether `bytes` start like a zip archive.
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample(dir: &Path) {
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        std::fs::write(dir.join("app.py"), "def handler(e, c): return e\n").unwrap();
        std::fs::write(dir.join("pkg/util.py"), "X = 1\n").unwrap();
        std::fs::write(dir.join("bootstrap"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.join("bootstrap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }

    #[test]
    fn bundles_are_deterministic_and_round_trip() {
        let a = tempfile::tempdir().unwrap();
        sample(a.path());
        let first = bundle_dir(a.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(a.path().join("app.py"), "def handler(e, c): return e\n").unwrap();
        assert_eq!(
            first,
            bundle_dir(a.path()).unwrap(),
            "same content, same bytes"
        );
        assert!(is_zip(&first));

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("code");
        extract(&first, &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("pkg/util.py")).unwrap(),
            "X = 1\n"
        );
        let mode = |p: &str| {
            std::fs::metadata(dest.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("bootstrap"), 0o555);
        assert_eq!(mode("app.py"), 0o444);
        assert_eq!(mode("pkg"), 0o755);
    }

    #[test]
    fn links_inside_the_directory_are_followed_and_links_outside_refused() {
        let d = tempfile::tempdir().unwrap();
        let app = d.path().join("app");
        sample(&app);
        std::os::unix::fs::symlink(app.join("app.py"), app.join("alias.py")).unwrap();
        assert!(
            bundle_dir(&app).is_ok(),
            "a link to a file inside is its file"
        );
        std::fs::write(d.path().join("secret"), "s3cret").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), app.join("leak")).unwrap();
        let err = bundle_dir(&app).unwrap_err();
        assert!(
            matches!(&err, CodeError::LinkOutside { path, .. } if path == "leak"),
            "{err}"
        );
    }

    #[test]
    fn unsafe_and_corrupt_bundles_are_rejected_and_leave_nothing() {
        let out = tempfile::tempdir().unwrap();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("../escape.py", SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"x").unwrap();
        let evil = zip.finish().unwrap().into_inner();
        let dest = out.path().join("code");
        assert!(matches!(
            extract(&evil, &dest),
            Err(CodeError::UnsafeEntry(_))
        ));
        assert!(matches!(
            extract(b"not a zip", &dest),
            Err(CodeError::Zip(_))
        ));
        assert!(!dest.exists());
        assert!(!out.path().join("escape.py").exists());
        assert_eq!(
            std::fs::read_dir(out.path()).unwrap().count(),
            0,
            "no temp left"
        );
    }
}
