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
        let file = inside(dir, &f.source, &format!("functions.{}.source", f.name))?;
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
    // State machines' definition files go up with the artifacts.
    for w in &app.workflows {
        let nimbus_core::workflow::DefinitionSource::File(path) = &w.definition else {
            continue;
        };
        if sources.iter().any(|(s, _)| s == path) {
            continue;
        }
        let key = format!("workflows.{}.definition_file", w.name);
        let file = inside(dir, path, &key)?;
        let bytes = std::fs::read(&file)
            .with_context(|| format!("{key}: cannot read {}", file.display()))?;
        sources.push((path.clone(), bytes));
    }
    Ok(AppDir { manifest, sources })
}

/// `DIR/path`, when it exists and leads to a file inside `dir`.
fn inside(dir: &Path, path: &str, key: &str) -> anyhow::Result<std::path::PathBuf> {
    let file = dir.join(path);
    let resolved = std::fs::canonicalize(&file)
        .with_context(|| format!("{key}: cannot read {}", file.display()))?;
    let root = std::fs::canonicalize(dir)?;
    if !resolved.starts_with(&root) {
        anyhow::bail!(
            "{key}: {} leads to {}, outside the app's directory {}; copy it in instead",
            file.display(),
            resolved.display(),
            root.display()
        );
    }
    Ok(file)
}
