//! End-to-end tests: each starts the real `nimbus` binary on 127.0.0.1:0 with its own data dir
//! and talks to it over HTTP and through the CLI, as a user would.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{Server, app_with, failed, ok, poll, repo};

/// An app directory holding the sink test component with the given limits.
fn sink_app(dir: &Path, memory_mb: u32, timeout: &str) -> PathBuf {
    let app = dir.join("sink-app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(repo("tests/fixtures/sink.wasm"), app.join("sink.wasm")).unwrap();
    std::fs::copy(repo("tests/fixtures/faulty.wasm"), app.join("faulty.wasm")).unwrap();
    std::fs::write(
        app.join("nimbus.toml"),
        format!(
            r#"app = "sink"
[functions.sink]
runtime = "wasm"
source = "sink.wasm"
memory_mb = {memory_mb}
timeout = "{timeout}"
env = {{ GREETING = "hi" }}
triggers = [{{ http = "ANY /sink/{{*rest}}" }}, {{ http = "GET /users/{{id}}/posts/{{post}}" }}]
[functions.faulty]
runtime = "wasm"
source = "faulty.wasm"
"#
        ),
    )
    .unwrap();
    app
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

#[tokio::test]
async fn deploy_serve_restart_without_recompiling() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let meta = std::fs::metadata(dir.path().join("admin.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let out = ok(&server.cli(&["deploy", repo("examples/hello-http").to_str().unwrap()]));
    assert!(out.contains("GET /hello"), "{out}");
    let r = get(&format!("{}/hello", server.url)).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("hello"));
    // Same content again: a no-op.
    let out = ok(&server.cli(&["deploy", repo("examples/hello-http").to_str().unwrap()]));
    assert!(out.contains("nothing changed"), "{out}");
    server.stop();

    let server = Server::start(dir.path(), &[]);
    let r = get(&format!("{}/hello/restart", server.url)).await;
    assert_eq!(r.text().await.unwrap(), "hello, restart\n");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&server.cli(&["ls", "--json"]))).unwrap();
    assert_eq!(status[0]["name"], "hello");
    let status = reqwest::Client::new()
        .get(format!("{}/v1/status", server.url))
        .bearer_auth(&server.key)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(status["compiled"], 0, "{status}");
    assert_eq!(status["loaded_from_cache"], 1, "{status}");
    // The first request after the restart was the cold start.
    let records: serde_json::Value = poll(async || {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&server.cli(&["invocations", "hello", "--json"]))).ok()?;
        (v.as_array()?.len() == 2).then_some(v)
    })
    .await;
    // Newest first: after the restart the function had to be loaded (cold); the request right
    // after the deploy found it compiled and ready (warm).
    assert_eq!(records[0]["cold_start"], true);
    assert!(records[0]["init_us"].as_u64().unwrap() > 0);
    assert_eq!(records[1]["cold_start"], false);
    server.stop();
}

#[tokio::test]
async fn limits_end_only_the_invocation_that_breaks_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    ok(&server.cli(&["deploy", sink_app(dir.path(), 16, "1s").to_str().unwrap()]));

    let started = Instant::now();
    let r = get(&format!("{}/sink/loop", server.url)).await;
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["x-nimbus-error-type"], "Function.Timeout");
    assert!(started.elapsed() < Duration::from_secs(5));

    let r = get(&format!("{}/sink/oom", server.url)).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-nimbus-error-type"], "Function.OutOfMemory");

    let r = get(&format!("{}/sink/trap", server.url)).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-nimbus-error-type"], "Function.Trap");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Function.Trap");

    let r = get(&format!("{}/sink/env", server.url)).await;
    assert_eq!(r.status(), 200, "the server still serves");
    assert_eq!(r.text().await.unwrap(), "GREETING=hi HOME=(unset)\n");
    let r = get(&format!("{}/sink/file", server.url)).await;
    assert_eq!(r.text().await.unwrap(), "no filesystem\n");

    // Event functions: errors are typed too, through the CLI.
    let err = failed(&server.cli(&["invoke", "faulty", "--type", "fail"]));
    assert!(err.contains("Function.Error: asked to fail"), "{err}");
    let out = ok(&server.cli(&["invoke", "faulty", "--data", "{\"n\":7}"]));
    assert_eq!(out.trim(), "{\"n\":7}");
    server.stop();
}

#[tokio::test]
async fn bad_deploys_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(
        repo("examples/hello-http/hello.wasm"),
        app.join("hello.wasm"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(repo("examples/hello-http/nimbus.toml")).unwrap();
    std::fs::write(app.join("nimbus.toml"), &manifest).unwrap();
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let version = ok(&server.cli(&["show", "hello", "--json"]));

    // An invalid manifest: rejected by the server with the key named (bypassing CLI checks).
    let bad = manifest.replace("memory_mb = 32", "memory_mb = 0");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/apps", server.url))
        .bearer_auth(&server.key)
        .json(&serde_json::json!({ "manifest": bad, "artifacts": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidManifest");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("functions.hello.memory_mb")
    );
    std::fs::write(app.join("nimbus.toml"), &bad).unwrap();
    let err = failed(&server.cli(&["deploy", app.to_str().unwrap()]));
    assert!(err.contains("functions.hello.memory_mb"), "{err}");

    // An invalid component, and a second function with a valid one: nothing of the app changes.
    std::fs::write(app.join("nimbus.toml"), manifest.replace("timeout = \"2s\"", "timeout = \"3s\"")
        + "[functions.other]\nruntime = \"wasm\"\nsource = \"ok.wasm\"\ntriggers = [{ http = \"GET /other\" }]\n").unwrap();
    std::fs::copy(repo("examples/hello-http/hello.wasm"), app.join("ok.wasm")).unwrap();
    std::fs::write(app.join("hello.wasm"), b"\0asm garbage").unwrap();
    let err = failed(&server.cli(&["deploy", app.to_str().unwrap()]));
    assert!(
        err.contains("functions.hello") && err.contains("not a valid WebAssembly component"),
        "{err}"
    );

    assert_eq!(get(&format!("{}/hello", server.url)).await.status(), 200);
    assert_eq!(get(&format!("{}/other", server.url)).await.status(), 404);
    assert_eq!(ok(&server.cli(&["show", "hello", "--json"])), version);

    // A route another app owns is a conflict.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(
        repo("examples/hello-http/hello.wasm"),
        other.join("hello.wasm"),
    )
    .unwrap();
    std::fs::write(
        other.join("nimbus.toml"),
        manifest
            .replace("app = \"hello\"", "app = \"thief\"")
            .replace("[functions.hello]", "[functions.thief]"),
    )
    .unwrap();
    let err = failed(&server.cli(&["deploy", other.to_str().unwrap()]));
    assert!(err.contains("conflicts"), "{err}");
    server.stop();
}

#[tokio::test]
async fn the_control_plane_requires_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let r = get(&format!("{}/v1/functions", server.url)).await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing API key")
    );
    let r = reqwest::Client::new()
        .get(format!("{}/v1/functions", server.url))
        .bearer_auth("nmb_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let err = failed(&server.cli_with_key("nmb_wrong", &["ls"]));
    assert!(err.contains("invalid API key"), "{err}");
    // The key file holds the only copy of the key: the database has its hash.
    let db = std::fs::read(server.data_dir.join("nimbus.db")).unwrap();
    assert!(
        !db.windows(server.key.len())
            .any(|w| w == server.key.as_bytes())
    );
    server.stop();
}

#[tokio::test]
async fn the_gateway_routes_and_passes_requests_through() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--max-body-bytes",
            "1024",
            "--deploy",
            repo("examples/hello-http").to_str().unwrap(),
        ],
    );
    ok(&server.cli(&["deploy", sink_app(dir.path(), 32, "3s").to_str().unwrap()]));
    let client = reqwest::Client::new();

    let r = get(&format!("{}/nope", server.url)).await;
    assert_eq!(r.status(), 404);
    let r = client
        .post(format!("{}/hello", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");

    let r = client
        .post(format!("{}/sink/echo/x?q=1&r=two", server.url))
        .header("x-test", "yes")
        .body("the body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-nimbus-invocation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let text = r.text().await.unwrap();
    assert!(text.contains("method=POST\n"), "{text}");
    assert!(text.contains("path=/sink/echo/x?q=1&r=two\n"), "{text}");
    assert!(text.contains("header x-test=yes\n"), "{text}");
    assert!(
        text.contains("header x-nimbus-param-rest=echo/x\n"),
        "{text}"
    );
    assert!(text.ends_with("body=the body"), "{text}");

    let r = get(&format!("{}/users/7/posts/9", server.url)).await;
    assert_eq!(
        r.status(),
        404,
        "sink answers 404 for paths it does not know"
    );
    // Oversized bodies: with a Content-Length, and streamed without one.
    let r = client
        .post(format!("{}/sink/echo", server.url))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let chunks = futures_stream(vec![vec![b'y'; 700], vec![b'y'; 700]]);
    let r = client
        .post(format!("{}/sink/echo", server.url))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert!(
        !r.text()
            .await
            .unwrap_or_default()
            .contains(&"y".repeat(1400)),
        "a streamed body past the limit never reaches the function whole"
    );

    // Streaming responses: the first chunk arrives while the function still runs.
    let started = Instant::now();
    let mut r = get(&format!("{}/sink/stream", server.url)).await;
    let first = r.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"chunk-0\n");
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"chunk-1\nchunk-2\n");
    assert!(
        started.elapsed() - first_at >= Duration::from_millis(400),
        "first chunk was not streamed early"
    );

    // The record of the echo request and the output of /sink/log are readable through the CLI.
    let shown: serde_json::Value =
        poll(async || serde_json::from_str(&ok(&server.cli(&["invocation", &id]))).ok()).await;
    assert_eq!(shown["status"], "succeeded");
    let record = &shown["record"];
    assert_eq!(record["function"], "sink");
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["memory_mb"], 32);
    assert!(record["billed_ms"].as_u64().unwrap() >= 1);
    assert_eq!(record["trigger"]["route"], "ANY /sink/{*rest}");
    get(&format!("{}/sink/log", server.url)).await;
    let logs = poll(async || {
        let out = ok(&server.cli(&["logs", "sink"]));
        out.contains("to stderr").then_some(out)
    })
    .await;
    assert!(logs.contains("to stdout"), "{logs}");
    let table = ok(&server.cli(&["invocations", "sink"]));
    assert!(table.contains(&id), "{table}");
    server.stop();
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct Chunks(std::vec::IntoIter<Vec<u8>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next().map(Ok))
        }
    }
    Chunks(chunks.into_iter())
}

#[tokio::test]
async fn outbound_http_reaches_only_the_allowed_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let authority = server.url.trim_start_matches("http://").to_string();
    let app = sink_app(tmp.path(), 64, "5s");
    let manifest = std::fs::read_to_string(app.join("nimbus.toml"))
        .unwrap()
        .replace(
            "env = { GREETING = \"hi\" }",
            &format!(
                "env = {{ GREETING = \"hi\" }}\nallowed_hosts = [\"{authority}\", \"{}\"]",
                authority.replace("127.0.0.1", "localhost")
            ),
        );
    std::fs::write(app.join("nimbus.toml"), manifest).unwrap();
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));

    // The listed host:port answers (the server itself: its own /sink/echo route).
    let r = get(&format!("{}/sink/fetch/{authority}/sink/echo", server.url)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "status=200\n");
    // Another port on the same host, and another host, are denied (HTTP-request-denied = 15)
    // before any connection is made.
    let other_port = format!(
        "127.0.0.1:{}",
        if authority.ends_with(":1") { 2 } else { 1 }
    );
    // A listed name that resolves to loopback opens nothing: names reach public addresses only.
    let by_name = authority.replace("127.0.0.1", "localhost");
    for target in [other_port.as_str(), "example.com", by_name.as_str()] {
        let r = get(&format!("{}/sink/fetch/{target}/", server.url)).await;
        assert_eq!(r.text().await.unwrap(), "error=15\n", "{target}");
    }
    server.stop();
}

#[tokio::test]
async fn usage_totals_equal_the_records_and_are_priced() {
    let dir = tempfile::tempdir().unwrap();
    // A price sheet with no free tier, so that every invocation costs something.
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "currency = \"EUR\"\nper_gb_second = 2.0\nper_million_requests = 1000000.0\n\
         free_gb_seconds_per_month = 0.0\nfree_requests_per_month = 0\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--prices", prices.to_str().unwrap()]);
    let app = app_with(
        dir.path(),
        "app = \"metered\"\n[functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\nmemory_mb = 256\n\
         [functions.other]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n",
        &["examples/event-echo/echo.wasm"],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    for i in 0..5 {
        ok(&server.cli(&["invoke", "echo", "--data", &format!("{{\"i\": {i}}}")]));
    }
    for _ in 0..3 {
        ok(&server.cli(&["invoke", "echo", "--async"]));
    }
    ok(&server.cli(&["invoke", "other"]));
    let records: Vec<serde_json::Value> = poll(async || {
        let out = ok(&server.cli(&["invocations", "echo", "--json"]));
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        (v.len() == 8).then_some(v)
    })
    .await;
    let billed: u64 = records
        .iter()
        .map(|r| r["billed_ms"].as_u64().unwrap())
        .sum();
    let mb_ms: u64 = records
        .iter()
        .map(|r| r["memory_mb"].as_u64().unwrap() * r["billed_ms"].as_u64().unwrap())
        .sum();
    let cold: u64 = records.iter().filter(|r| r["cold_start"] == true).count() as u64;

    let report: serde_json::Value = serde_json::from_str(&ok(&server.cli(&[
        "usage",
        "--function",
        "echo",
        "--by",
        "total",
        "--json",
    ])))
    .unwrap();
    let total = &report["total"];
    assert_eq!(total["requests"], 8);
    assert_eq!(total["billed_ms"], billed);
    assert_eq!(total["mb_ms"], mb_ms);
    assert_eq!(total["cold_starts"], cold);
    let gb_s = mb_ms as f64 / 1024.0 / 1000.0;
    assert!((report["gb_seconds"].as_f64().unwrap() - gb_s).abs() < 1e-12);
    let cost = &report["cost"];
    assert_eq!(cost["currency"], "EUR");
    assert!(
        (cost["compute"].as_f64().unwrap() - 2.0 * gb_s).abs() < 1e-9,
        "{cost}"
    );
    assert!(
        (cost["requests"].as_f64().unwrap() - 8.0).abs() < 1e-9,
        "{cost}"
    );
    // All functions: the other one counts too; the CSV ends with the total row.
    let csv = ok(&server.cli(&["usage", "--csv"]));
    let last = csv.lines().last().unwrap();
    assert!(last.contains(",*,9,"), "{csv}");
    // Outside the range: nothing.
    let old: serde_json::Value = serde_json::from_str(&ok(&server.cli(&[
        "usage",
        "--from",
        "2020-01-01",
        "--to",
        "2020-02-01",
        "--json",
    ])))
    .unwrap();
    assert_eq!(old["total"]["requests"], 0);
    assert!(
        !server
            .cli(&["usage", "--from", "yesterday"])
            .status
            .success()
    );
    server.stop();
}

/// `/metrics` parsed with the Prometheus client library's parser: name, labels -> value.
fn scrape(server: &Server) -> Vec<serde_json::Value> {
    let text = std::process::Command::new("curl")
        .args([
            "-sf",
            "-H",
            &format!("Authorization: Bearer {}", server.key),
        ])
        .arg(format!("{}/metrics", server.url))
        .output()
        .unwrap();
    assert!(text.status.success(), "scrape failed");
    let mut child = std::process::Command::new(common::client_python())
        .arg(repo("tests/clients/parse_metrics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&text.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(samples: &[serde_json::Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .find(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map_or(0.0, |s| s["value"].as_f64().unwrap())
}

#[tokio::test]
async fn metrics_parse_and_move_with_invocations_and_queues() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let app = app_with(
        dir.path(),
        "app = \"observed\"\n[functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n\
         [functions.faulty]\nruntime = \"wasm\"\nsource = \"faulty.wasm\"\n[queues.work]\n",
        &[
            "examples/event-echo/echo.wasm",
            "tests/fixtures/faulty.wasm",
        ],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let before = scrape(&server);
    let invoked = |trigger| {
        [
            ("function", "echo"),
            ("outcome", "success"),
            ("trigger", trigger),
        ]
    };
    assert_eq!(
        sample(&before, "nimbus_invocations_total", &invoked("invoke")),
        0.0
    );

    for _ in 0..3 {
        ok(&server.cli(&["invoke", "echo"]));
    }
    let ids: Vec<String> = (0..2)
        .map(|_| {
            ok(&server.cli(&["invoke", "echo", "--async"]))
                .trim()
                .to_string()
        })
        .collect();
    failed(&server.cli(&["invoke", "faulty", "--type", "trap"]));
    ok(&server.cli(&["queue", "send", "work", "one"]));
    ok(&server.cli(&["queue", "send", "work", "two"]));
    for id in &ids {
        poll(async || {
            let v: serde_json::Value =
                serde_json::from_str(&ok(&server.cli(&["invocation", id]))).unwrap();
            (v["status"] == "succeeded").then_some(())
        })
        .await;
    }

    let after = scrape(&server);
    assert_eq!(
        sample(&after, "nimbus_invocations_total", &invoked("invoke")),
        3.0
    );
    assert_eq!(
        sample(&after, "nimbus_invocations_total", &invoked("async")),
        2.0
    );
    let faulty = [("function", "faulty"), ("outcome", "error")];
    assert_eq!(sample(&after, "nimbus_invocations_total", &faulty), 1.0);
    assert_eq!(
        sample(
            &after,
            "nimbus_invocation_duration_seconds_count",
            &[("function", "echo")]
        ),
        5.0
    );
    assert!(
        sample(
            &after,
            "nimbus_billed_milliseconds_total",
            &[("function", "echo")]
        ) >= 5.0
    );
    assert_eq!(
        sample(&after, "nimbus_queue_messages", &[("queue", "work")]),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "nimbus_concurrent_executions",
            &[("function", "echo")]
        ),
        0.0
    );
    // Without the key, no metrics.
    let r = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    server.stop();
}

#[tokio::test]
async fn a_monthly_request_quota_cuts_off_with_429() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--quota-requests", "3"]);
    let app = app_with(
        dir.path(),
        "app = \"quota\"\n[functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n",
        &["examples/event-echo/echo.wasm"],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    for _ in 0..3 {
        ok(&server.cli(&["invoke", "echo"]));
    }
    // Usage is re-read from the records at most once a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let invoke = |path: &str| {
        reqwest::Client::new()
            .post(format!("{}{path}", server.url))
            .bearer_auth(&server.key)
            .body("{}")
            .send()
    };
    for path in [
        "/v1/functions/echo/invoke",
        "/v1/functions/echo/invoke?mode=async",
    ] {
        let r = invoke(path).await.unwrap();
        assert_eq!(r.status(), 429, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "QuotaExceeded");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("3 requests"),
            "{body}"
        );
    }
    let usage: serde_json::Value =
        serde_json::from_str(&ok(&server.cli(&["usage", "--by", "total", "--json"]))).unwrap();
    assert_eq!(
        usage["total"]["requests"], 3,
        "refused calls are not invocations"
    );
    server.stop();
}

#[tokio::test]
async fn max_concurrency_makes_the_next_call_wait_then_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--throttle-wait", "300ms"]);
    let app = app_with(
        dir.path(),
        "app = \"limited\"\n[functions.one]\nruntime = \"wasm\"\nsource = \"faulty.wasm\"\n\
         timeout = \"2s\"\nmax_concurrency = 1\n",
        &["tests/fixtures/faulty.wasm"],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let shown = ok(&server.cli(&["show", "one"]));
    assert!(shown.contains("at most 1"), "{shown}");
    let call = |ty: &str| {
        reqwest::Client::new()
            .post(format!("{}/v1/functions/one/invoke", server.url))
            .bearer_auth(&server.key)
            .header("ce-type", ty)
            .body("{}")
            .send()
    };
    // The first call holds the only slot for its 2 s timeout (it loops).
    let busy = tokio::spawn(call("loop"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = call("echo").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited first"
    );
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["x-nimbus-error-type"], "Function.Throttled");
    assert_eq!(busy.await.unwrap().unwrap().status(), 504);
    // Free again: served.
    assert_eq!(call("echo").await.unwrap().status(), 200);
    server.stop();
}

#[tokio::test]
async fn the_tenant_concurrency_limit_is_shared_by_all_functions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--tenant-concurrency", "1", "--throttle-wait", "300ms"],
    );
    let app = app_with(
        dir.path(),
        "app = \"shared\"\n[functions.hog]\nruntime = \"wasm\"\nsource = \"faulty.wasm\"\ntimeout = \"2s\"\n\
         [functions.other]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n",
        &[
            "tests/fixtures/faulty.wasm",
            "examples/event-echo/echo.wasm",
        ],
    );
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let call = |f: &str, ty: &str| {
        reqwest::Client::new()
            .post(format!("{}/v1/functions/{f}/invoke", server.url))
            .bearer_auth(&server.key)
            .header("ce-type", ty)
            .body("{}")
            .send()
    };
    // One function holds the tenant's only slot; another function is refused, not starved.
    let hog = tokio::spawn(call("hog", "loop"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = call("other", "x").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant is at its concurrency limit"),
        "{body}"
    );
    assert_eq!(hog.await.unwrap().unwrap().status(), 504);
    assert_eq!(call("other", "x").await.unwrap().status(), 200);
    server.stop();
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_matches_the_router() {
    let doc = repo("docs/openapi.yaml");
    let out = std::process::Command::new(common::client_python())
        .args(["-m", "openapi_spec_validator"])
        .arg(&doc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = std::fs::read_to_string(&doc).unwrap();
    let documented: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  /")?.strip_suffix(':'))
        .map(|p| format!("/{p}"))
        .collect();
    // Every API route the gateway registers is documented, and nothing else is.
    let router = std::fs::read_to_string(repo("crates/nimbus-gateway/src/lib.rs")).unwrap();
    let mut served: Vec<String> = router
        .split('"')
        .filter(|s| s.starts_with("/v1/") || *s == "/healthz" || *s == "/readyz")
        .map(str::to_string)
        .collect();
    served.sort();
    served.dedup();
    let mut listed = documented.clone();
    listed.sort();
    assert_eq!(listed, served);
    // And the server answers as documented: every /v1 operation without a key is a 401, the
    // probes need none.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let client = reqwest::Client::new();
    let mut path = String::new();
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            path = format!("/{p}").replace(['{', '}'], "");
            continue;
        }
        let Some(method) = ["get", "put", "post", "delete"]
            .into_iter()
            .find(|m| line == format!("    {m}:"))
        else {
            continue;
        };
        let r = client
            .request(
                method.to_uppercase().parse().unwrap(),
                format!("{}{path}", server.url),
            )
            .send()
            .await
            .unwrap();
        let want = if path.starts_with("/v1/") { 401 } else { 200 };
        assert_eq!(r.status().as_u16(), want, "{method} {path}");
    }
    server.stop();
}
