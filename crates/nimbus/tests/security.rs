//! End-to-end tests of hardening: each performs an attack (or a careless mistake) against the
//! real `nimbus` binary and shows it refused. Network tests talk only to 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Server, app_with, client_python, failed, ok, repo};
use serde_json::{Value, json};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
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
    // Valid code whose route another app already has: the deploy fails after the code was
    // unpacked.
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

#[tokio::test]
async fn idle_and_slow_clients_cannot_hold_the_node() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &[
            "--max-connections",
            "20",
            "--header-read-timeout",
            "1s",
            "--body-read-timeout",
            "1s",
        ],
    );
    let addr = server.url.trim_start_matches("http://").to_string();
    let connect = || {
        let s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    // 20 idle connections take every slot; the 21st is told so at once and closed.
    let idle: Vec<_> = (0..20).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = connect();
    let mut answer = String::new();
    let started = Instant::now();
    over.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The idle ones are closed after the header timeout, which frees the slots.
    for mut s in idle {
        let mut buf = [0u8; 1];
        let started = Instant::now();
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    let r = reqwest::get(format!("{}/v1/status", server.url))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "served again (and the key is still required)"
    );
    // Headers sent a byte at a time: cut at the timeout, not held.
    let mut slow = connect();
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n".iter() {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        closed || started.elapsed() < Duration::from_secs(8),
        "a slow-header client is cut off"
    );
    // A body that stops arriving fails the request instead of holding it.
    let mut stalled = connect();
    stalled
        .write_all(
            format!(
                "POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"bo",
                server.key
            )
            .as_bytes(),
        )
        .unwrap();
    let started = Instant::now();
    let mut reply = String::new();
    let _ = stalled.read_to_string(&mut reply);
    assert!(started.elapsed() < Duration::from_secs(4), "{reply}");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 4"),
        "a stalled body is refused: {reply}"
    );
    server.stop();
}

#[tokio::test]
async fn one_busy_function_cannot_take_the_wasm_pool_and_a_full_pool_is_a_429() {
    let tmp = tempfile::tempdir().unwrap();
    // A pool of 8 instances: each function may run a quarter of it (2) at once by default.
    let server = Server::start(
        &tmp.path().join("data"),
        &["--wasm-instances", "8", "--throttle-wait", "200ms"],
    );
    let mut manifest = String::from("app = \"pool\"\n");
    for i in 1..=4 {
        manifest.push_str(&format!(
            "[functions.slow{i}]\nruntime = \"wasm\"\nsource = \"faulty.wasm\"\ntimeout = \"2s\"\n"
        ));
    }
    manifest.push_str(
        "[functions.hello]\nruntime = \"wasm\"\nsource = \"hello.wasm\"\n\
         triggers = [{ http = \"GET /hello/{name}\" }]\n",
    );
    let app = app_with(
        tmp.path(),
        &manifest,
        &[
            "tests/fixtures/faulty.wasm",
            "examples/hello-http/hello.wasm",
        ],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let hello = |name: &str| {
        reqwest::Client::new()
            .get(format!("{}/hello/{name}", server.url))
            .send()
    };
    // A call that spins until its timeout, holding an instance.
    let spin = |f: String| {
        reqwest::Client::new()
            .post(format!("{}/v1/functions/{f}/invoke", server.url))
            .bearer_auth(&server.key)
            .header("ce-type", "loop")
            .body("{}")
            .send()
    };
    assert_eq!(hello("warm").await.unwrap().status(), 200);

    // Three at once to one function: two run, the third waits, then 429.
    let held: Vec<_> = (0..2).map(|_| tokio::spawn(spin("slow1".into()))).collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let third = spin("slow1".into()).await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["retry-after"], "1");
    // Other functions are not starved by it.
    assert_eq!(hello("still").await.unwrap().status(), 200);

    // Every function at its cap fills the pool: then even hello is refused, as a 429 with
    // Retry-After, never a trap.
    let mut more = Vec::new();
    for i in 2..=4 {
        for _ in 0..2 {
            more.push(tokio::spawn(spin(format!("slow{i}"))));
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let refused = hello("full").await.unwrap();
    assert_eq!(refused.status(), 429, "{:?}", refused.headers());
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.headers()["x-nimbus-error-type"],
        "Function.Throttled"
    );
    for h in held.into_iter().chain(more) {
        let status = h.await.unwrap().unwrap().status().as_u16();
        assert!(status == 504 || status == 429, "{status}");
    }
    // Freed: served again.
    assert_eq!(hello("again").await.unwrap().status(), 200);
    server.stop();
}

#[tokio::test]
async fn the_node_memory_budget_bounds_wasm_memories_and_sandboxes() {
    let tmp = tempfile::tempdir().unwrap();
    // Wasm: a function allowed 1 GiB grows into a 64 MiB node budget and is stopped there, as
    // a 429 (the node's limit, not the function's), and the server stays small.
    let server = Server::start(&tmp.path().join("wasm"), &["--memory-budget", "64MiB"]);
    let app = app_with(
        &tmp.path().join("w"),
        "app = \"w\"\n[functions.hog]\nruntime = \"wasm\"\nsource = \"sink.wasm\"\nmemory_mb = 1024\n\
         timeout = \"10s\"\ntriggers = [{ http = \"GET /sink/{*rest}\" }]\n",
        &["tests/fixtures/sink.wasm"],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let r = reqwest::get(format!("{}/sink/oom", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory budget"),
        "{body}"
    );
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    assert!(rss_kib < 400 * 1024, "peak RSS {rss_kib} KiB");
    server.stop();

    // Sandboxes: each holds its memory_mb of a 300 MiB budget. An idle one is stopped to make
    // room for another function's; a busy one is not, and the newcomer gets a 429.
    let server = Server::start(&tmp.path().join("proc"), &["--memory-budget", "300MiB"]);
    let py = py_app(
        tmp.path(),
        "[functions.a]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.sleep\"\nmemory_mb = 200\ntimeout = \"10s\"\n\
         [functions.b]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.echo\"\nmemory_mb = 200\n",
    );
    ok(&server.cli(&["deploy", py.to_str().unwrap()]));
    let invoke = |f: &'static str, body: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/v1/functions/{f}/invoke", server.url))
            .bearer_auth(&server.key)
            .body(body)
            .send()
    };
    assert_eq!(
        invoke("a", r#"{"seconds": 0}"#).await.unwrap().status(),
        200
    );
    assert_eq!(
        invoke("b", "{}").await.unwrap().status(),
        200,
        "a's idle sandbox made room"
    );
    let shown = ok(&server.cli(&["show", "a"]));
    assert!(shown.contains("0 warm"), "a's sandbox was stopped: {shown}");
    let busy = tokio::spawn(invoke("a", r#"{"seconds": 2}"#));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    // b's sandbox is idle: it is stopped for a's... a runs now; b must start again and cannot.
    let r = invoke("b", "{}").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
    assert_eq!(invoke("b", "{}").await.unwrap().status(), 200, "room again");
    server.stop();
}

#[tokio::test]
async fn anonymous_callers_are_rate_limited_before_they_spend_the_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--quota-requests", "10"]);
    let app = app_with(
        tmp.path(),
        "app = \"pub\"\n[functions.hello]\nruntime = \"wasm\"\nsource = \"hello.wasm\"\n\
         client_rate_limit = 3\nrate_limit = 1000\ntriggers = [{ http = \"GET /hello/{name}\" }]\n\
         [functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n",
        &[
            "examples/hello-http/hello.wasm",
            "examples/event-echo/echo.wasm",
        ],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..30 {
        let r = reqwest::get(format!("{}/hello/n{i}", server.url))
            .await
            .unwrap();
        if r.status() == 429 {
            retry_after = r.headers().get("retry-after").cloned();
        }
        statuses.push(r.status().as_u16());
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!((3..=5).contains(&served), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(retry_after.unwrap(), "1");
    // The owner still has most of the quota: the refused calls never became invocations.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    ok(&server.cli(&["invoke", "echo", "--data", "{}"]));
    server.stop();
}

#[tokio::test]
async fn a_full_disk_refuses_new_messages_with_507_while_queues_still_drain() {
    if !nix_is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let server = Server::start(&disk.join("data"), &["--disk-reserve", "4MiB"]);
    let app = app_with(
        tmp.path(),
        "app = \"full\"\n[queues.q]\n[functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n",
        &["examples/event-echo/echo.wasm"],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let post = |path: &str, body: Value| {
        reqwest::Client::new()
            .post(format!("{}{path}", server.url))
            .bearer_auth(&server.key)
            .json(&body)
            .send()
    };
    for i in 0..3 {
        let r = post("/v1/queues/q/messages", json!({"body": format!("m{i}")}))
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Fill the disk.
    let junk = disk.join("junk");
    let mut f = std::fs::File::create(&junk).unwrap();
    let chunk = vec![1u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    // What was accepted can still be received (the disk is full before anything was sent).
    let got: Value = post("/v1/queues/q/receive", json!({"max": 10}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let receipts: Vec<Value> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["receipt"].clone())
        .collect();
    assert_eq!(receipts.len(), 3, "{got}");
    let r = post("/v1/queues/q/messages", json!({"body": "more"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InsufficientStorage");
    // ... and deleted; functions still run.
    let acked: Value = post("/v1/queues/q/ack", json!({"receipts": receipts}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(acked["deleted"], json!([true, true, true]));
    assert_eq!(
        post("/v1/functions/echo/invoke", json!({"x": 1}))
            .await
            .unwrap()
            .status(),
        200
    );
    // Space back: accepted again (the log looks at the disk every few milliseconds).
    std::fs::remove_file(&junk).unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = post("/v1/queues/q/messages", json!({"body": "again"}))
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 202 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 202);
    server.stop();
}

/// A tiny HTTP server on `addr` answering every request with `body`, for egress tests.
async fn upstream(addr: &str, body: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    local
}

#[tokio::test]
async fn process_egress_reaches_only_listed_hosts_and_ports() {
    if !nix_is_root() {
        eprintln!("skipped: sandbox network namespaces need root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let allowed = upstream("127.0.0.1:0", "allowed").await;
    let unlisted = upstream("127.0.0.1:0", "unlisted").await;
    let other = upstream("127.0.0.2:0", "other").await;
    let server = Server::start(&tmp.path().join("data"), &[]);
    let nimbus_port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    // `["*"]` used to mean "the whole network": refused now, with the reason.
    let star = py_app(
        &tmp.path().join("star"),
        "[functions.out]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.egress\"\n\
         allowed_hosts = [\"*\"]\n",
    );
    let refused = failed(&server.cli(&["deploy", star.to_str().unwrap()]));
    assert!(refused.contains("wildcards are not allowed"), "{refused}");

    let app = py_app(
        tmp.path(),
        &format!(
            "[functions.out]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.egress\"\n\
             timeout = \"20s\"\nallowed_hosts = [\"{allowed}\", \"localhost:{}\", \"{other}\"]\n",
            unlisted.port()
        ),
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let url = |a: std::net::SocketAddr| format!("http://{a}/");
    let attempts = json!({"attempts": [
        // A listed loopback address: reached at its own address, directly (any TCP client)...
        {"get": url(allowed)},
        {"connect": ["127.0.0.1", allowed.port()]},
        // ... and through the proxy.
        {"proxy_get": url(allowed)},
        {"proxy_get": url(other)},
        {"tunnel": ["127.0.0.1", allowed.port()]},
        // Unlisted ports on the host's loopback: not there, and refused by the proxy.
        {"connect": ["127.0.0.1", unlisted.port()]},
        {"connect": ["127.0.0.1", nimbus_port]},
        {"proxy_get": url(unlisted)},
        {"proxy_get": format!("http://127.0.0.1:{nimbus_port}/v1/functions")},
        {"tunnel": ["127.0.0.1", nimbus_port]},
        // A listed name that resolves to loopback opens nothing.
        {"proxy_get": format!("http://localhost:{}/", unlisted.port())},
        // The listed address on another port: refused.
        {"proxy_get": format!("http://127.0.0.2:{}/", unlisted.port())},
        // A sandbox holds at most 256 connections out at once: they are the host's sockets.
        {"flood": ["127.0.0.1", allowed.port(), 400]},
    ]});
    let r = reqwest::Client::new()
        .post(format!("{}/v1/functions/out/invoke", server.url))
        .bearer_auth(&server.key)
        .json(&attempts)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["proxy"], "http://127.0.0.1:3128", "{got}");
    assert_eq!(
        got["results"],
        json!([
            "allowed",
            "connected",
            "allowed",
            "other",
            "allowed",
            "ConnectionRefusedError",
            "ConnectionRefusedError",
            "HTTP 403",
            "HTTP 403",
            "CONNECT 403",
            "HTTP 403",
            "HTTP 403",
            256,
        ]),
        "{got}"
    );
    server.stop();
}

#[tokio::test]
async fn sandboxes_refuse_namespaces_mounts_and_kernel_interfaces() {
    if !nix_is_root() {
        eprintln!("skipped: sandboxes need root for namespaces");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let app = py_app(
        tmp.path(),
        "[functions.confined]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.confined\"\n",
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let r = reqwest::Client::new()
        .post(format!("{}/v1/functions/confined/invoke", server.url))
        .bearer_auth(&server.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    for call in [
        "unshare_user",
        "unshare_mount",
        "mount",
        "keyctl",
        "bpf",
        "ptrace",
    ] {
        assert_eq!(got[call], "Operation not permitted", "{call}: {got}");
    }
    assert_eq!(got["no_new_privs"], 1, "{got}");
    // PID 1 says what it is, and nothing about the host: no path, no server PID.
    assert_eq!(got["pid1_cmdline"], "init\u{0}__sandbox\u{0}", "{got}");
    // What functions do need still works.
    assert_eq!(got["thread"], "ok");
    assert_eq!(got["subprocess"], "hi");
    server.stop();
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The HTTP-level fuzzer (tests/clients/http_fuzz.py) against a node with an app that has
/// something behind every endpoint family: wasm and Python routes, queues with a dead-letter
/// queue, a filtered topic, a schedule and a CloudEvents route.
#[tokio::test]
async fn hostile_requests_to_every_endpoint_get_a_4xx_quickly_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let app = py_app(
        tmp.path(),
        "[functions.pyecho]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.echo\"\n\
         triggers = [{ http = \"POST /py\" }]\n\
         [functions.hello]\nruntime = \"wasm\"\nsource = \"hello.wasm\"\n\
         triggers = [{ http = \"GET /hello/{name}\" }]\n\
         [functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n\
         [queues.q]\nmax_receive_count = 2\ndead_letter = \"dlq\"\n[queues.dlq]\n\
         [topics.t]\nsubscriptions = [{ name = \"s\", queue = \"q\", filter = { type = [{ prefix = \"com.example\" }] } }]\n\
         [schedules.daily]\nexpression = \"rate(1 day)\"\ntarget = { function = \"pyecho\" }\n\
         [[cloudevents]]\ntype = \"com.example.*\"\ntarget = { topic = \"t\" }\n",
    );
    for wasm in ["hello-http/hello.wasm", "event-echo/echo.wasm"] {
        let from = repo(&format!("examples/{wasm}"));
        std::fs::copy(&from, app.join(from.file_name().unwrap())).unwrap();
    }
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    // A tenant with the same app, on its own domain, for the tenant family.
    ok(&server.cli(&[
        "tenant",
        "create",
        "fuzzt",
        "--domain",
        "fuzz.tenant.example",
    ]));
    let out = ok(&server.cli(&[
        "key", "create", "--tenant", "fuzzt", "--role", "admin", "--json",
    ]));
    let tenant_key: Value = serde_json::from_str(&out).unwrap();
    let tenant_key = tenant_key["key"].as_str().unwrap();
    ok(&server.cli_with_key(tenant_key, &["deploy", app.to_str().unwrap()]));
    // Messages for the queue calls to act on (and not lose).
    for body in ["one", "two"] {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/queues/q/messages", server.url))
            .bearer_auth(&server.key)
            .json(&json!({ "body": body }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let out = std::process::Command::new(client_python())
        .arg(repo("tests/clients/http_fuzz.py"))
        .args([&server.url, &server.key, "--count", "1500", "--seed", "17"])
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["failures"], json!([]), "{v:#}");
    assert!(out.status.success(), "{v:#}");
    assert!(v["sent"].as_u64().unwrap() >= 1000, "{v}");
    // Every family was exercised, and refused: the checks after a 4xx did run.
    for family in [
        "control",
        "lambda",
        "queues",
        "topics",
        "schedules",
        "events",
        "routes",
        "raw",
        "access",
        "tenants",
        "durable",
    ] {
        let f = &v["families"][family];
        assert!(f["sent"].as_u64().unwrap() >= 100, "{family}: {v}");
        assert!(f["4xx"].as_u64().unwrap() >= 30, "{family}: {v}");
    }
    // The node still serves, and both messages are still held (maybe moved to the DLQ by
    // receives the fuzzer made).
    let hello = reqwest::get(format!("{}/hello/after", server.url))
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);
    let tenant_hello = reqwest::get(format!("{}/tenants/fuzzt/hello/after", server.url))
        .await
        .unwrap();
    assert_eq!(tenant_hello.status(), 200);
    let mut held = 0;
    for queue in ["q", "dlq"] {
        let q = server.get_json(&format!("/v1/queues/{queue}")).await;
        held += q["messages"].as_u64().unwrap();
    }
    assert!(held >= 2, "{held}");
    server.stop();
}
