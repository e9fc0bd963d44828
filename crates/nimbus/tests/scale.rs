//! Scaling end to end: from zero to N instances and back to zero after the keep-alive, for
//! process and wasm functions, and the burst rate that paces instance starts.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{Server, app_with, ok, poll};

/// An app with a Python function `slow` (sleeps `seconds`) and the wasm `faulty` component.
fn app(dir: &Path, python_extra: &str, wasm_extra: &str) -> PathBuf {
    let app = app_with(
        dir,
        &format!(
            "app = \"scaling\"\n\
             [functions.slow]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.handler\"\n\
             timeout = \"10s\"\n{python_extra}\n\
             [functions.spin]\nruntime = \"wasm\"\nsource = \"faulty.wasm\"\ntimeout = \"1s\"\n{wasm_extra}\n"
        ),
        &["tests/fixtures/faulty.wasm"],
    );
    std::fs::create_dir_all(app.join("py")).unwrap();
    std::fs::write(
        app.join("py/app.py"),
        "import time\n\ndef handler(event, context):\n    time.sleep(event.get(\"seconds\", 0))\n    return {\"ok\": True}\n",
    )
    .unwrap();
    app
}

/// Invokes `function` with event type `ty`; the future owns what it needs (it can be spawned).
fn call(
    server: &Server,
    function: &str,
    ty: &str,
    body: &str,
) -> impl Future<Output = reqwest::Response> + Send + 'static {
    let request = reqwest::Client::new()
        .post(format!("{}/v1/functions/{function}/invoke", server.url))
        .bearer_auth(&server.key)
        .header("ce-type", ty)
        .body(body.to_string());
    async move { request.send().await.unwrap() }
}

/// `nimbus show`'s instances line.
fn instances(server: &Server, function: &str) -> String {
    let shown = ok(&server.cli(&["show", function]));
    shown
        .lines()
        .find(|l| l.starts_with("instances"))
        .unwrap_or_else(|| panic!("no instances line in {shown}"))
        .to_string()
}

async fn until_shown(server: &Server, function: &str, wanted: &str) {
    poll(async || instances(server, function).contains(wanted).then_some(())).await;
}

#[tokio::test]
async fn functions_scale_from_zero_to_n_instances_and_back_to_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--keep-alive", "1s"]);
    let dir = app(
        tmp.path(),
        "max_concurrency = 6",
        "concurrency_per_instance = 50",
    );
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    // Process function: nothing runs before the first call.
    assert!(
        instances(&server, "slow").contains("0 warm, 0 busy, 0 started"),
        "{}",
        instances(&server, "slow")
    );
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| call(&server, "slow", "x", r#"{"seconds": 2}"#))
        .collect();
    let calls = tokio::spawn(futures_util::future::join_all(calls));
    // Six concurrent calls: six sandboxes, all busy at once.
    until_shown(&server, "slow", "0 warm, 6 busy, 6 started").await;
    for r in calls.await.unwrap() {
        assert_eq!(r.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "they ran side by side"
    );
    // Warm for the keep-alive, then back to zero.
    assert!(instances(&server, "slow").contains("6 started"));
    until_shown(&server, "slow", "0 warm, 0 busy, 6 started").await;

    // Wasm function: deploy loaded its component; it is unloaded after the keep-alive.
    until_shown(&server, "spin", "0 warm, 0 busy, 1 started").await;
    // Concurrent calls load it once: one instance serving all of them.
    let calls: Vec<_> = (0..8).map(|_| call(&server, "spin", "loop", "")).collect();
    let calls = tokio::spawn(futures_util::future::join_all(calls));
    until_shown(
        &server,
        "spin",
        "0 warm, 1 busy, 2 started; 8 invocations running",
    )
    .await;
    let responses = calls.await.unwrap();
    let ids: Vec<String> = responses
        .iter()
        .map(|r| {
            r.headers()["x-nimbus-invocation-id"]
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        responses.iter().all(|r| r.status() == 504),
        "they ran to the timeout"
    );
    // Exactly one of them paid the cold start (the load).
    let cold = ids
        .iter()
        .filter(|id| {
            let v: serde_json::Value =
                serde_json::from_str(&ok(&server.cli(&["invocation", id]))).unwrap();
            v["record"]["cold_start"] == true
        })
        .count();
    assert_eq!(cold, 1);
    until_shown(&server, "spin", "0 warm, 0 busy, 2 started").await;
    server.stop();
}

#[tokio::test]
async fn min_instances_keep_a_wasm_function_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &["--keep-alive", "300ms"]);
    let dir = app(tmp.path(), "", "min_instances = 1");
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(instances(&server, "spin").contains("1 warm, 0 busy, 1 started"));
    let r = call(&server, "spin", "echo", "hi").await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-nimbus-invocation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&server.cli(&["invocation", &id]))).unwrap();
    assert_eq!(v["record"]["cold_start"], false);
    // A wasm function has one instance per node: more is refused, and so is
    // concurrency_per_instance > 1 for a process function.
    let bad = app(
        tmp.path(),
        "concurrency_per_instance = 4",
        "min_instances = 2",
    );
    let err = common::failed(&server.cli(&["deploy", bad.to_str().unwrap()]));
    assert!(err.contains("functions.spin.min_instances"), "{err}");
    assert!(
        err.contains("functions.slow.concurrency_per_instance"),
        "{err}"
    );
    server.stop();
}

#[tokio::test]
async fn the_burst_rate_paces_instance_starts_and_the_adaptive_keep_alive_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &[
            "--start-rate",
            "2",
            "--start-burst",
            "1",
            "--keep-alive-policy",
            "adaptive",
        ],
    );
    let dir = app(tmp.path(), "max_concurrency = 4", "");
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    // Four cold starts at once: one token now, then one every 500 ms.
    let started = Instant::now();
    let calls = (0..4).map(|_| call(&server, "slow", "x", r#"{"seconds": 0}"#));
    let responses = futures_util::future::join_all(calls).await;
    let took = started.elapsed();
    assert!(
        responses.iter().all(|r| r.status() == 200),
        "paced, not refused"
    );
    assert!(instances(&server, "slow").contains("4 started"));
    assert!(
        took >= Duration::from_millis(1400),
        "starts were paced: {took:?}"
    );
    // The adaptive keep-alive learns from idle gaps: overlapping calls make none, the next
    // call after they finished makes one.
    let policy = |s: &Server| ok(&s.cli(&["show", "slow"]));
    assert!(policy(&server).contains("adaptive: learning (0 of 10 idle times seen)"));
    assert_eq!(call(&server, "slow", "x", "{}").await.status(), 200);
    let shown = policy(&server);
    assert!(
        shown.contains("adaptive: learning (1 of 10 idle times seen)"),
        "{shown}"
    );
    server.stop();
}
