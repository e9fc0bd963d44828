//! Reading an app directory: `nimbus.toml` and the artifacts it names (files, or directories
//! bundled as zips).

use std::path::Path;

use anyhow::Context;
use nimbus_core::AppSpec;

/// A manifest and the bytes of each distinct `source` it names.
pub struct AppDir {
    pub manifest: String,
    pub sources: Vec<(String, Vec<u8>)>,
}

/// Reads `DIR/nimbus.toml`, validates it, and reads every artifact it names.
pub fn read(dir: &Path) -> anyhow::Result<AppDir> {
    let path = dir.join("nimbus.toml");
    let manifest = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let app = AppSpec::parse(&manifest)?;
    let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
    for f in &app.functions {
        if sources.iter().any(|(s, _)| s == &f.source) {
            continue;
        }
        let file = dir.join(&f.source);
        let resolved = std::fs::canonicalize(&file).with_context(|| {
            format!(
                "functions.{}.source: cannot read {}",
                f.name,
                file.display()
            )
        })?;
        let root = std::fs::canonicalize(dir)?;
        if !resolved.starts_with(&root) {
            anyhow::bail!(
                "functions.{}.source: {} leads to {}, outside the app's directory {}; copy it in instead",
                f.name,
                file.display(),
                resolved.display(),
                root.display()
            );
        }
        // A directory (process runtimes) is uploaded as a deterministic zip of its files.
        let bytes = if file.is_dir() {
            nimbus_process::code::bundle_dir(&file).with_context(|| {
                format!(
                    "functions.{}.source: cannot bundle {}",
                    f.name,
                    file.display()
                )
            })?
        } else {
            std::fs::read(&file).with_context(|| {
                format!(
                    "functions.{}.source: cannot read {}",
                    f.name,
                    file.display()
                )
            })?
        };
        sources.push((f.source.clone(), bytes));
    }
    Ok(AppDir { manifest, sources })
}
