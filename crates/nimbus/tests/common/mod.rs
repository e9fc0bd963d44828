//! What every end-to-end test needs: the real `nimbus` binary started on 127.0.0.1:0 with its own
//! data dir, its CLI, and output checks.
#![allow(dead_code, clippy::unwrap_used)]

pub mod otlp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub key: String,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with(&[], data_dir, extra)
    }

    /// Starts the server through a wrapper command, e.g. `setpriv --reuid ...`.
    pub fn start_with(wrapper: &[&str], data_dir: &Path, extra: &[&str]) -> Server {
        let nimbus = env!("CARGO_BIN_EXE_nimbus");
        let (program, args) = match wrapper.split_first() {
            Some((first, rest)) => (*first, [rest, &[nimbus]].concat()),
            None => (nimbus, Vec::new()),
        };
        let mut child = Command::new(program)
            .args(args)
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("NIMBUS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("server did not start");
            if let Some(rest) = line.strip_prefix("Nimbus listening on ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        let key = std::fs::read_to_string(data_dir.join("admin.key"))
            .unwrap()
            .trim()
            .to_string();
        Server {
            child,
            url,
            key,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_key(&self.key, args)
    }

    pub fn cli_with_key(&self, key: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(args)
            .env("NIMBUS_URL", &self.url)
            .env("NIMBUS_API_KEY", key)
            .output()
            .unwrap()
    }

    /// `POST /v1/functions/{function}/invoke` with the admin key and a JSON event.
    pub async fn invoke(&self, function: &str, event: &serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/functions/{function}/invoke", self.url))
            .bearer_auth(&self.key)
            .json(event)
            .send()
            .await
            .unwrap()
    }

    /// `GET path` on the API with the admin key, as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// SIGTERM, then the exit status must be success.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "nimbus exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "command should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// An app directory `DIR/app` holding `manifest` and the named repository files.
pub fn app_with(dir: &Path, manifest: &str, files: &[&str]) -> PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    for f in files {
        let from = repo(f);
        std::fs::copy(&from, app.join(from.file_name().unwrap())).unwrap();
    }
    std::fs::write(app.join("nimbus.toml"), manifest).unwrap();
    app
}

/// Polls `f` every 100 ms until it yields a value; fails the test after 10 s.
pub async fn poll<T>(f: impl AsyncFnMut() -> Option<T>) -> T {
    poll_for("condition", Duration::from_secs(10), f).await
}

/// Polls `f` every 100 ms until it yields a value; fails the test, naming `what`, after `limit`.
pub async fn poll_for<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A test input `scripts/test.sh` installs: the path in `var`, or its default. `marker` (relative
/// to it, empty for itself) must exist.
pub fn installed(var: &str, default: &str, marker: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    let expected = if marker.is_empty() {
        path.clone()
    } else {
        path.join(marker)
    };
    assert!(
        expected.exists(),
        "{} is missing: run scripts/test.sh once (it installs boto3, the AWS CLI, awslambdaric, \
         aws-lambda-ric and the CloudEvents SDK), or set {var}",
        expected.display()
    );
    path
}

/// The Python that has the client libraries (boto3, the AWS CLI, awslambdaric, cloudevents).
pub fn client_python() -> PathBuf {
    installed("NIMBUS_TEST_PYTHON", "/var/tmp/nimbus-venv/bin/python", "")
}

/// Runs the client script `script` (under `tests/clients/`) with the client Python against
/// `server`, as `script URL ARGS…`, with only the AWS credentials the node issued: its JSON
/// output (the test fails if the script does).
pub fn aws_script(server: &Server, script: &str, args: &[&str]) -> serde_json::Value {
    let credentials = server.data_dir.join("aws-credentials");
    let out = Command::new(client_python())
        .arg(repo(&format!("tests/clients/{script}")))
        .arg(&server.url)
        .args(args)
        .env_clear()
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    serde_json::from_str(&ok(&out)).unwrap()
}

/// The kill -9 tests: deploys `app` on a node over `data`, has the client `script` start `n`
/// executions (`script URL start N`, printing their ARNs), kills the node with SIGKILL 1.5 s
/// later (some mid-flight, some not begun), restarts it over the same data and returns it with
/// what `script URL finish` printed once they ended.
pub fn start_kill_restart(
    data: &Path,
    app: &Path,
    script: &str,
    n: usize,
) -> (Server, serde_json::Value) {
    let mut server = Server::start(data, &[]);
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let started = aws_script(&server, script, &["start", &n.to_string()]);
    assert_eq!(started.as_array().map(Vec::len), Some(n), "{started}");
    std::thread::sleep(Duration::from_millis(1500));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = Server::start(data, &[]);
    let finished = aws_script(&server, script, &["finish"]);
    (server, finished)
}

/// `method path` with `key` as the bearer and an optional JSON body: the status and the body
/// (JSON, or the text as a JSON string).
pub async fn call(
    server: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}
