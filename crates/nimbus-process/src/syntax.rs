//! Deploy-time syntax check of a process function's handler module, so a typo fails the deploy
//! with `file:line` instead of every invocation with an import error.
//!
//! Only the module the handler names is checked (vendored dependencies may hold files that never
//! compile, e.g. Python 2 examples), with the interpreter the function will run on: Python's
//! `compile()`, Node's `node --check`. A module that is not a source file here (a compiled
//! extension, something resolved elsewhere) is left to the runtime.

use std::path::{Path, PathBuf};
use std::process::Command;

use nimbus_core::model::Runtime;

/// The source file a handler's module lives in, relative to the code directory, if it is one.
pub fn handler_source(code_dir: &Path, runtime: Runtime, handler: &str) -> Option<PathBuf> {
    let (module, _function) = handler.rsplit_once('.')?;
    let candidates: Vec<PathBuf> = match runtime {
        Runtime::Python => {
            let base = module.replace('.', "/");
            vec![
                PathBuf::from(format!("{base}.py")),
                PathBuf::from(format!("{base}/__init__.py")),
            ]
        }
        Runtime::Node => ["js", "mjs", "cjs"]
            .iter()
            .map(|ext| PathBuf::from(format!("{module}.{ext}")))
            .collect(),
        Runtime::Provided | Runtime::Wasm => return None,
    };
    candidates
        .into_iter()
        .find(|rel| !rel.is_absolute() && code_dir.join(rel).is_file())
}

/// Python: compiles the file, reporting `file:line: SyntaxError: message`.
const PYTHON_CHECK: &str = "import sys
try:
    compile(open(sys.argv[1], 'rb').read(), sys.argv[2], 'exec')
except SyntaxError as e:
    print(f'{e.filename}:{e.lineno}: {type(e).__name__}: {e.msg}')
    sys.exit(1)
";

/// Checks the handler's module with `interpreter`. `Ok(())` also when there is nothing to check;
/// `Err` carries `file:line: error` for the user.
pub fn check(
    interpreter: &Path,
    code_dir: &Path,
    runtime: Runtime,
    handler: &str,
) -> Result<(), String> {
    let Some(rel) = handler_source(code_dir, runtime, handler) else {
        return Ok(());
    };
    let file = code_dir.join(&rel);
    let mut command = Command::new(interpreter);
    match runtime {
        Runtime::Python => command
            .args(["-I", "-S", "-c", PYTHON_CHECK])
            .arg(&file)
            .arg(&rel),
        _ => command.arg("--check").arg(&file),
    };
    let out = match command.env_clear().output() {
        Ok(out) => out,
        // No interpreter to check with: the runtime will say so at the first call.
        Err(_) => return Ok(()),
    };
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(match runtime {
        Runtime::Python => text.lines().next().unwrap_or_default().to_string(),
        _ => node_error(&text, &file, &rel),
    })
}

/// `node --check` prints `/abs/file.js:LINE`, the source line, a caret, then `SyntaxError: ...`.
fn node_error(text: &str, file: &Path, rel: &Path) -> String {
    let abs = file.display().to_string();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&abs)?.strip_prefix(':'))
        .unwrap_or("?");
    let error = text
        .lines()
        .find(|l| l.contains("Error:"))
        .unwrap_or("SyntaxError");
    format!("{}:{line}: {}", rel.display(), error.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_name_their_module_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg/sub")).unwrap();
        for f in ["app.py", "pkg/sub/__init__.py", "index.mjs", "src/h.js"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let d = dir.path();
        assert_eq!(
            handler_source(d, Runtime::Python, "app.handler"),
            Some("app.py".into())
        );
        assert_eq!(
            handler_source(d, Runtime::Python, "pkg.sub.handler"),
            Some("pkg/sub/__init__.py".into())
        );
        assert_eq!(handler_source(d, Runtime::Python, "missing.handler"), None);
        assert_eq!(
            handler_source(d, Runtime::Node, "index.handler"),
            Some("index.mjs".into())
        );
        assert_eq!(
            handler_source(d, Runtime::Node, "src/h.handler"),
            Some("src/h.js".into())
        );
        assert_eq!(handler_source(d, Runtime::Provided, "bootstrap"), None);
    }

    #[test]
    fn node_errors_name_file_and_line() {
        let text =
            "/var/t/index.js:3\n  foo(\n     ^\n\nSyntaxError: Unexpected end of input\n    at x\n";
        assert_eq!(
            node_error(text, Path::new("/var/t/index.js"), Path::new("index.js")),
            "index.js:3: SyntaxError: Unexpected end of input"
        );
    }

    #[test]
    fn python_syntax_errors_name_file_and_line() {
        let python = Path::new("/usr/bin/python3");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("app.py"),
            "def handler(e, c):\n    return (\n",
        )
        .unwrap();
        let err = check(python, dir.path(), Runtime::Python, "app.handler").unwrap_err();
        assert!(err.starts_with("app.py:"), "{err}");
        assert!(err.contains("SyntaxError"), "{err}");
        std::fs::write(
            dir.path().join("app.py"),
            "def handler(e, c):\n    return 1\n",
        )
        .unwrap();
        assert_eq!(
            check(python, dir.path(), Runtime::Python, "app.handler"),
            Ok(())
        );
    }
}
