//! End-to-end tests of hardening: each performs an attack (or a careless mistake) against the
//! real `nimbus` binary and shows it refused. Network tests talk only to 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Server, app_with, failed, ok, repo};
use serde_json::{Value, json};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The Python that has boto3 (installed by scripts/test.sh).
fn client_python() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("NIMBUS_TEST_PYTHON").unwrap_or("/var/tmp/nimbus-venv/bin/python".into()),
    );
    assert!(
        p.exists(),
        "run scripts/test.sh once: {} is missing",
        p.display()
    );
    p
}

/// A Python app in `dir` (the test fixture handlers) with `functions` as its manifest body.
fn py_app(dir: &Path, functions: &str) -> PathBuf {
    let app = dir.join("pyapp");
    let code = app.join("py");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::copy(
        repo("tests/fixtures/process/py/app.py"),
        code.join("app.py"),
    )
    .unwrap();
    std::fs::write(
        app.join("nimbus.toml"),
        format!("app = \"py\"\n{functions}"),
    )
    .unwrap();
    app
}

/// Sends raw bytes over one connection and returns what came back until it closed.
fn raw(url: &str, request: &[u8]) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_data_dir_is_private_and_held_by_one_node() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(&data, &[]);
    assert_eq!(mode(&data), 0o700);
    for f in ["nimbus.db", "events.db", "admin.key", "aws-credentials"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    // A second node on the same directory would steal the first one's leases: refused.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another nimbus"), "{err}");
    server.stop();
}

#[tokio::test]
async fn code_outside_the_app_directory_is_never_uploaded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    std::fs::write(tmp.path().join("secret.txt"), "s3cret").unwrap();
    // A symlink inside a process function's code to a file outside it.
    let app = py_app(
        tmp.path(),
        "[functions.f]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.echo\"\n",
    );
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), app.join("py/leak.txt")).unwrap();
    let err = failed(&server.cli(&["deploy", app.to_str().unwrap()]));
    assert!(err.contains("leak.txt") && err.contains("outside"), "{err}");
    std::fs::remove_file(app.join("py/leak.txt")).unwrap();
    // A wasm source that is a symlink leading outside the app.
    let wasm_app = app_with(
        &tmp.path().join("w"),
        "app = \"w\"\n[functions.w]\nruntime = \"wasm\"\nsource = \"link.wasm\"\n",
        &[],
    );
    std::os::unix::fs::symlink(
        repo("examples/event-echo/echo.wasm"),
        wasm_app.join("link.wasm"),
    )
    .unwrap();
    let err = failed(&server.cli(&["deploy", wasm_app.to_str().unwrap()]));
    assert!(err.contains("outside the app's directory"), "{err}");
    // Absolute and `..` sources: the server refuses them too (bypassing the CLI).
    for source in ["/etc/shadow", "../secret.txt"] {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/apps", server.url))
            .bearer_auth(&server.key)
            .json(&json!({
                "manifest": format!("app = \"x\"\n[functions.x]\nruntime = \"wasm\"\nsource = \"{source}\"\n"),
                "artifacts": {},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{source}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("outside")
        );
    }
    // Nothing of the refused deploys stays: no artifact, no unpacked code.
    assert_eq!(
        std::fs::read_dir(server.data_dir.join("artifacts"))
            .unwrap()
            .count(),
        0
    );
    server.stop();
}

#[tokio::test]
async fn a_failed_deploy_leaves_no_artifact_and_no_unpacked_code() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    // Valid code, but a route conflict between the app's own two functions' apps... a route of
    // another app: the deploy fails after the code was unpacked.
    let first = app_with(
        &tmp.path().join("a"),
        "app = \"a\"\n[functions.a]\nruntime = \"wasm\"\nsource = \"hello.wasm\"\n\
         triggers = [{ http = \"GET /same\" }]\n",
        &["examples/hello-http/hello.wasm"],
    );
    ok(&server.cli(&["deploy", first.to_str().unwrap()]));
    let second = py_app(
        &tmp.path().join("b"),
        "[functions.b]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.http\"\n\
         triggers = [{ http = \"GET /same\" }]\n",
    );
    let err = failed(&server.cli(&["deploy", second.to_str().unwrap()]));
    assert!(err.contains("conflicts"), "{err}");
    let artifacts: Vec<_> = std::fs::read_dir(server.data_dir.join("artifacts"))
        .unwrap()
        .collect();
    assert_eq!(
        artifacts.len(),
        1,
        "only the deployed app's component stays"
    );
    let code = server.data_dir.join("code");
    let unpacked = std::fs::read_dir(&code).map_or(0, |d| d.count());
    assert_eq!(unpacked, 0, "the refused app's code was removed");
    server.stop();
}

#[tokio::test]
async fn sigv4_covers_the_body_the_scope_and_every_amz_header() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    let app = py_app(
        tmp.path(),
        "[functions.echo]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.echo\"\n",
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let credentials = data.join("aws-credentials");
    let out = std::process::Command::new(client_python())
        .arg(repo("tests/clients/sigv4_attacks.py"))
        .arg(&server.url)
        .arg(&credentials)
        .env_clear()
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["valid"][0], 200, "{v}");
    for attack in [
        "body_swapped",
        "declared_hash_swapped",
        "unsigned_payload",
        "other_service",
        "other_region",
        "unsigned_header",
    ] {
        assert_eq!(v[attack][0], 403, "{attack}: {v}");
        assert_eq!(v[attack][1], "InvalidSignatureException", "{attack}: {v}");
    }
    // Only the valid call ran.
    let records: Value =
        serde_json::from_str(&ok(&server.cli(&["invocations", "echo", "--json"]))).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
    server.stop();
}

#[tokio::test]
async fn bad_input_gets_a_4xx_and_leaves_functions_working() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let web = app_with(
        &tmp.path().join("web"),
        "app = \"web\"\n[functions.hello]\nruntime = \"wasm\"\nsource = \"hello.wasm\"\n\
         triggers = [{ http = \"GET /hello/{name}\" }]\n[queues.q]\n",
        &["examples/hello-http/hello.wasm"],
    );
    ok(&server.cli(&["deploy", web.to_str().unwrap()]));
    // HTTP/1.0 without Host is legal: served. A Host that is not text: 400, not 500.
    let no_host = raw(&server.url, b"GET /hello/old HTTP/1.0\r\n\r\n");
    assert!(
        no_host.starts_with("HTTP/1.0 200") || no_host.starts_with("HTTP/1.1 200"),
        "{no_host}"
    );
    let bad_host = raw(
        &server.url,
        b"GET /hello/x HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n\r\n",
    );
    assert!(bad_host.starts_with("HTTP/1.1 400"), "{bad_host}");

    let py = py_app(
        tmp.path(),
        "[functions.big]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.big\"\ntimeout = \"10s\"\n",
    );
    ok(&server.cli(&["deploy", py.to_str().unwrap()]));
    let invoke = |body: &'static [u8]| {
        reqwest::Client::new()
            .post(format!("{}/v1/functions/big/invoke", server.url))
            .bearer_auth(&server.key)
            .body(body)
            .send()
    };
    // Not JSON, for a runtime that only takes JSON: 400 before anything runs.
    let r = invoke(b"not json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "InvalidRequestContent"
    );
    // A 16 MB result fails that invocation only; the same sandbox serves the next one.
    let r = invoke(br#"{"bytes": 16777216}"#).await.unwrap();
    assert_eq!(r.status(), 500);
    let r = invoke(br#"{"bytes": 3}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\"xxx\"");
    let records: Value =
        serde_json::from_str(&ok(&server.cli(&["invocations", "big", "--json"]))).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[1]["error_type"], "Function.Error", "{records:?}");
    assert_eq!(records[0]["cold_start"], false, "the sandbox survived");

    // Visibility timeouts: one limit everywhere, and no overflow into an instant lease.
    let post = |path: &str, body: Value| {
        reqwest::Client::new()
            .post(format!("{}{path}", server.url))
            .bearer_auth(&server.key)
            .json(&body)
            .send()
    };
    assert_eq!(
        post("/v1/queues/q/messages", json!({"body": "m"}))
            .await
            .unwrap()
            .status(),
        202
    );
    for seconds in [json!(43201), json!(u64::MAX / 100)] {
        let r = post(
            "/v1/queues/q/receive",
            json!({"visibility_seconds": seconds}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400, "{seconds}");
    }
    let got: Value = post("/v1/queues/q/receive", json!({"visibility_seconds": 43200}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let receipt = got["messages"][0]["receipt"].clone();
    assert!(receipt.is_string(), "{got}");
    let r = post(
        "/v1/queues/q/visibility",
        json!({"receipt": receipt, "visibility_seconds": 43201}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(
        "/v1/queues/q/visibility",
        json!({"receipt": receipt, "visibility_seconds": u64::MAX}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // The message stays leased for 12 h: nothing to receive.
    let again: Value = post("/v1/queues/q/receive", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["messages"], json!([]));
    server.stop();
}
