//! Durable executions end to end: a Python function written with the unmodified AWS durable
//! execution SDK (from PyPI) runs on the real `nimbus` binary, driven with boto3's durable
//! execution calls.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

/// Copies `from` into `to`, leaving out botocore's service models but Lambda's (the SDK's
/// client needs only that one; the others are 30 MB the deploy would upload for nothing).
fn copy_sdk(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let target = to.join(entry.file_name());
        let rel = path.strip_prefix(from).unwrap();
        if entry.file_type().unwrap().is_dir() {
            let name = entry.file_name();
            let models = from.ends_with("botocore/data");
            if name == "__pycache__" || name == "bin" || (models && name != "lambda") {
                continue;
            }
            std::fs::create_dir_all(&target).unwrap();
            copy_sdk(&path, &target);
        } else if rel.extension().is_none_or(|e| e != "pyc") {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn executions_path(arn: &str) -> String {
    format!(
        "/v1/executions/{}",
        percent_encoding::utf8_percent_encode(arn, percent_encoding::NON_ALPHANUMERIC)
    )
}

fn durable_app(dir: &Path) -> std::path::PathBuf {
    let app = app_with(
        dir,
        r#"
app = "orders"
[functions.flow]
runtime = "python"
source = "."
handler = "flow.handler"
timeout = "30s"
durable = { execution_timeout = "10m", retention_days = 1 }
triggers = [{ http = "POST /orders" }]
env = { MARK = "v1" }
[functions.echo]
runtime = "python"
source = "."
handler = "echo.handler"
"#,
        &[
            "tests/fixtures/durable/flow.py",
            "tests/fixtures/durable/echo.py",
        ],
    );
    let sdk = installed(
        "NIMBUS_TEST_DURABLE_SDK",
        "/var/tmp/nimbus-durable-sdk/python",
        "aws_durable_execution_sdk_python",
    );
    copy_sdk(&sdk, &app);
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_runs_steps_waits_callbacks_retries_and_stops_through_boto3() {
    let tmp = tempfile::tempdir().unwrap();
    let app = durable_app(tmp.path());
    let data = tmp.path().join("data");
    let (otlp, spans) = common::otlp::receiver().await;
    let server = Server::start(&data, &["--otlp-endpoint", &otlp]);
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let v = aws_script(&server, "boto3_durable.py", &[]);

    let started = &v["started"];
    assert_eq!(started["status"], 202);
    let arn = started["arn"].as_str().unwrap();
    assert!(
        arn.starts_with(
            "arn:aws:lambda:us-east-1:000000000000:function:flow:$LATEST/durable-execution/order-1/"
        ),
        "{arn}"
    );
    assert_eq!(
        v["same_name"], started["arn"],
        "a start by the same name is that execution"
    );
    assert_eq!(
        v["other_input"],
        json!(["DurableExecutionAlreadyStartedException", 409])
    );

    let plain = &v["plain"];
    assert_eq!(plain["status"], "SUCCEEDED", "{plain}");
    assert_eq!(
        plain["result"],
        json!({"order": "o-1", "reserved": "reserve o-1", "shipped": "ship o-1", "approval": null})
    );
    let seconds = plain["seconds"].as_f64().unwrap();
    assert!(seconds >= 1.5, "the 2 s wait was honoured: {seconds}");
    let events: Vec<(String, String)> = plain["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_string(),
                e[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for expected in [
        ("ExecutionStarted", ""),
        ("StepSucceeded", "reserve"),
        ("WaitStarted", "cool-off"),
        ("WaitSucceeded", "cool-off"),
        ("StepSucceeded", "ship"),
        ("ExecutionSucceeded", ""),
    ] {
        assert!(
            events
                .iter()
                .any(|(t, n)| t == expected.0 && n == expected.1),
            "{expected:?} missing from {events:?}"
        );
    }

    // The wait held no sandbox: the execution ran as separate invocations (before and after
    // it), none of them as long as the wait.
    let records = poll(async || {
        let all = server
            .get_json("/v1/functions/flow/invocations?limit=1000")
            .await;
        let mine: Vec<Value> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["trigger"].to_string().contains(arn))
            .cloned()
            .collect();
        (mine.len() >= 2).then_some(mine)
    })
    .await;
    for r in &records {
        assert!(
            r["duration_us"].as_u64().unwrap() < 1_500_000,
            "an invocation held its sandbox through the wait: {r}"
        );
    }

    // ...and they are one trace: the execution's.
    let trace = {
        use sha2::Digest;
        let mut t = sha2::Sha256::digest(arn.as_bytes())[..16].to_vec();
        t[15] |= 1;
        t
    };
    poll(async || {
        let spans = spans.lock().unwrap();
        let mine = spans
            .iter()
            .filter(|s| s.trace_id == trace && s.name == "invoke flow")
            .count();
        (mine == records.len()).then_some(())
    })
    .await;

    let sync = &v["sync"];
    assert_eq!(sync["status"], 200);
    assert_eq!(sync["payload"]["shipped"], "ship sync");
    assert!(
        sync["arn"]
            .as_str()
            .unwrap()
            .contains("/durable-execution/")
    );

    assert_eq!(
        v["probe"],
        json!({
            "invoke": "AccessDeniedException",
            "list_functions": "AccessDeniedException",
            "other_function_execution": "AccessDeniedException",
        }),
        "a durable function's credentials are good only for its own executions"
    );

    let patterns = &v["patterns"];
    assert_eq!(patterns["status"], "SUCCEEDED", "{patterns}");
    assert_eq!(
        patterns["result"],
        json!({
            "branches": ["left", "right"],
            "squares": [1, 4, 16],
            "failed_items": 1,
            "child": ["child-1", "child-2"],
            "polled": 3,
            "chained": {"echoed": {"from": "flow"}},
            "child_execution": {
                "order": "c-1", "reserved": "reserve c-1", "shipped": "ship c-1", "approval": null
            },
        })
    );

    let callback = &v["callback"];
    assert_eq!(callback["status"], "SUCCEEDED", "{callback}");
    // Without a serdes the SDK hands the callback's result over as sent.
    assert_eq!(callback["result"]["approval"], "\"approved\"");
    assert_eq!(callback["twice"][0], "InvalidParameterValueException");

    assert_eq!(
        v["callback_timeout"]["status"], "FAILED",
        "{}",
        v["callback_timeout"]
    );
    let failure = &v["callback_failure"];
    assert_eq!(failure["status"], "FAILED", "{failure}");
    assert!(
        failure["error"].to_string().contains("no budget"),
        "{failure}"
    );

    let failing = &v["failing_step"];
    assert_eq!(failing["status"], "FAILED", "{failing}");
    assert!(
        failing["error"]
            .to_string()
            .contains("payment declined for o-6"),
        "{failing}"
    );
    let seconds = failing["seconds"].as_f64().unwrap();
    assert!(
        seconds >= 0.9,
        "the retry waited its 1 s backoff: {seconds}"
    );
    let huge = &v["huge"];
    assert_eq!(huge["status"], "FAILED", "{huge}");
    assert!(
        huge["error"].to_string().contains("262144"),
        "the limit is named: {huge}"
    );
    let step_failures = failing["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e[1] == "charge")
        .count();
    assert!(
        step_failures >= 2,
        "the step was started and failed: {failing}"
    );

    let stop = &v["stop"];
    assert_eq!(stop["has_timestamp"], true);
    assert_eq!(stop["status"], "STOPPED");
    assert_eq!(stop["again"][0], "InvalidParameterValueException");

    let listed: Vec<&str> = v["listed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in [
        "approve-1",
        "approve-2",
        "approve-3",
        "flaky-1",
        "order-1",
        "stop-1",
    ] {
        assert!(listed.contains(&name), "{name} not in {listed:?}");
    }
    let succeeded = v["listed_succeeded"].as_array().unwrap();
    assert!(succeeded.contains(&json!("order-1")) && succeeded.contains(&json!("approve-1")));
    assert!(!succeeded.contains(&json!("stop-1")));
    assert_eq!(v["paged"], json!([2, true]));

    // The async HTTP pattern on Nimbus's own API, and the CLI.
    let http = reqwest::Client::new();
    let started = http
        .post(format!(
            "{}/v1/functions/flow/executions?name=http-1",
            server.url
        ))
        .bearer_auth(&server.key)
        .json(&json!({"order": "h-1", "callback": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/v1/executions/arn%3Aaws%3Alambda"),
        "{location}"
    );
    let waiting = poll_for(
        "the callback",
        std::time::Duration::from_secs(30),
        async || {
            let s = server.get_json(&location).await;
            (!s["links"]["callbacks"].as_array().unwrap().is_empty()).then_some(s)
        },
    )
    .await;
    assert_eq!(waiting["status"], "RUNNING");
    assert_eq!(waiting["input"], json!({"order": "h-1", "callback": true}));
    assert_eq!(waiting["links"]["stop"], format!("{location}/stop"));
    let callback_id = waiting["links"]["callbacks"][0]["id"].as_str().unwrap();
    ok(&server.cli(&["callback", "succeed", callback_id, "\"ok\""]));
    let done = poll_for("the end", std::time::Duration::from_secs(30), async || {
        let s = server.get_json(&location).await;
        (s["status"] != "RUNNING").then_some(s)
    })
    .await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"]["approval"], "\"ok\"");
    assert_eq!(done["links"]["stop"], Value::Null);
    let arn = done["arn"].as_str().unwrap();
    let shown = ok(&server.cli(&["execution", "show", arn]));
    assert!(shown.contains("SUCCEEDED"), "{shown}");
    let history = ok(&server.cli(&["execution", "history", arn]));
    for expected in [
        "ExecutionStarted",
        "StepSucceeded",
        "reserve",
        "CallbackSucceeded",
        "ExecutionSucceeded",
    ] {
        assert!(
            history.contains(expected),
            "{expected} missing from\n{history}"
        );
    }
    let listed = ok(&server.cli(&[
        "executions",
        "ls",
        "flow",
        "--status",
        "succeeded",
        "--json",
    ]));
    assert!(listed.contains("http-1"), "{listed}");
    let again = ok(&server.cli(&[
        "execution",
        "start",
        "flow",
        r#"{"order": "h-2", "callback": true}"#,
    ]));
    let again = again.trim();
    poll_for(
        "the second callback",
        std::time::Duration::from_secs(30),
        async || {
            let s = server.get_json(&executions_path(again)).await;
            (!s["links"]["callbacks"].as_array().unwrap().is_empty()).then_some(())
        },
    )
    .await;
    assert_eq!(
        ok(&server.cli(&["execution", "stop", again])).trim(),
        "STOPPED"
    );
    let err = failed(&server.cli(&["callback", "succeed", "not-a-callback", "1"]));
    assert!(err.contains("callback"), "{err}");

    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&server.key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "nimbus_durable_executions_started_total{function=\"flow\"}",
        "nimbus_durable_executions_total{function=\"flow\",status=\"SUCCEEDED\"}",
        "nimbus_durable_executions_total{function=\"flow\",status=\"STOPPED\"}",
        "nimbus_durable_invocations_total{function=\"flow\"}",
        "nimbus_durable_operations_total{function=\"flow\",status=\"SUCCEEDED\",type=\"STEP\"}",
        "nimbus_durable_operations_total{function=\"flow\",status=\"SUCCEEDED\",type=\"CALLBACK\"}",
        "nimbus_durable_wait_seconds_total{function=\"flow\"}",
    ] {
        let durable: Vec<&str> = metrics.lines().filter(|l| l.contains("durable")).collect();
        assert!(
            metrics.contains(expected),
            "{expected} missing from /metrics: {durable:#?}"
        );
    }

    // The async HTTP pattern on a route: no key, the status URL is the capability.
    let started = http
        .post(format!("{}/orders", server.url))
        .json(&json!({"order": "r-1", "callback": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let status_url = format!(
        "{}{}",
        server.url,
        started.headers()["location"].to_str().unwrap()
    );
    assert!(
        status_url.contains("/2025-12-01/durable-status/"),
        "{status_url}"
    );
    let public =
        async |url: &str| -> Value { http.get(url).send().await.unwrap().json().await.unwrap() };
    let waiting = poll_for(
        "the route's callback",
        std::time::Duration::from_secs(30),
        async || {
            let s = public(&status_url).await;
            (!s["links"]["callbacks"].as_array().unwrap().is_empty()).then_some(s)
        },
    )
    .await;
    assert_eq!(waiting["status"], "RUNNING");
    assert_eq!(
        waiting["links"]["history"],
        Value::Null,
        "the history needs a key"
    );
    let succeed = waiting["links"]["callbacks"][0]["succeed"]
        .as_str()
        .unwrap();
    let answered = http
        .post(format!("{}{succeed}", server.url))
        .body("\"yes\"")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 204);
    let done = poll_for(
        "the route's execution",
        std::time::Duration::from_secs(30),
        async || {
            let s = public(&status_url).await;
            (s["status"] != "RUNNING").then_some(s)
        },
    )
    .await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["output"]["order"], "r-1");
    assert_eq!(done["output"]["approval"], "\"yes\"");
    // A forged token, and a callback of another execution through this one's token: nothing.
    let forged = http
        .get(format!(
            "{}/2025-12-01/durable-status/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    let second = http
        .post(format!("{}/orders", server.url))
        .json(&json!({"order": "r-2", "callback": true}))
        .send()
        .await
        .unwrap();
    let second_url = format!(
        "{}{}",
        server.url,
        second.headers()["location"].to_str().unwrap()
    );
    let second_waiting = poll_for(
        "the second route callback",
        std::time::Duration::from_secs(30),
        async || {
            let s = public(&second_url).await;
            (!s["links"]["callbacks"].as_array().unwrap().is_empty()).then_some(s)
        },
    )
    .await;
    let other_id = second_waiting["links"]["callbacks"][0]["id"]
        .as_str()
        .unwrap();
    let crossed = http
        .post(format!(
            "{status_url}/callbacks/{}/succeed",
            percent_encoding::utf8_percent_encode(other_id, percent_encoding::NON_ALPHANUMERIC)
        ))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), 404);
    let stop = second_waiting["links"]["stop"].as_str().unwrap();
    let stopped: Value = http
        .post(format!("{}{stop}", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stopped["status"], "STOPPED");

    // An execution runs on the deployment it started on: a redeploy while it waits changes
    // what new executions run, not what it replays.
    let pinned = ok(&server.cli(&[
        "execution",
        "start",
        "flow",
        r#"{"order": "p-1", "callback": true, "mark": true}"#,
    ]));
    let pinned = pinned.trim();
    let waiting = poll_for(
        "the pinned callback",
        std::time::Duration::from_secs(30),
        async || {
            let s = server.get_json(&executions_path(pinned)).await;
            (!s["links"]["callbacks"].as_array().unwrap().is_empty()).then_some(s)
        },
    )
    .await;
    let manifest = std::fs::read_to_string(app.join("nimbus.toml")).unwrap();
    std::fs::write(
        app.join("nimbus.toml"),
        manifest.replace(r#"MARK = "v1""#, r#"MARK = "v2""#),
    )
    .unwrap();
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let callback_id = waiting["links"]["callbacks"][0]["id"].as_str().unwrap();
    ok(&server.cli(&["callback", "succeed", callback_id, "1"]));
    let end_of = async |arn: &str| {
        poll_for("the end", std::time::Duration::from_secs(30), async || {
            let s = server.get_json(&executions_path(arn)).await;
            (s["status"] != "RUNNING").then_some(s)
        })
        .await
    };
    let done = end_of(pinned).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(
        done["output"]["mark"], "v1",
        "it ended on the code it started on"
    );
    let fresh = ok(&server.cli(&[
        "execution",
        "start",
        "flow",
        r#"{"order": "p-2", "mark": true}"#,
    ]));
    let done = end_of(fresh.trim()).await;
    assert_eq!(
        done["output"]["mark"], "v2",
        "a new execution runs the new code"
    );

    let bad = &v["bad"];
    assert_eq!(
        bad["unknown_arn"],
        json!(["ResourceNotFoundException", 404])
    );
    assert_eq!(bad["not_an_arn"][0], "InvalidParameterValueException");
    assert_eq!(bad["forged_token"][0], "InvalidParameterValueException");
    assert_eq!(bad["forged_callback"][0], "InvalidParameterValueException");
    assert_eq!(bad["unknown_function"][0], "ResourceNotFoundException");
    server.stop();
}

/// The same backend serves the JavaScript SDK (`@aws/durable-execution-sdk-js` from npm):
/// steps, a retried step that fails the execution, waits, a callback answered with boto3,
/// parallel branches, a child context, map, waitForCondition and a chained invoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_sdk_runs_against_the_same_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app_with(
        tmp.path(),
        r#"
app = "node-orders"
[functions.nflow]
runtime = "node"
source = "."
handler = "flow.handler"
timeout = "30s"
durable = true
[functions.echo]
runtime = "python"
source = "."
handler = "echo.handler"
"#,
        &[
            "tests/fixtures/durable/flow.js",
            "tests/fixtures/durable/echo.py",
        ],
    );
    let sdk = installed(
        "NIMBUS_TEST_DURABLE_SDK_NODE",
        "/var/tmp/nimbus-durable-sdk/node",
        "node_modules/@aws/durable-execution-sdk-js",
    );
    std::fs::create_dir_all(app.join("node_modules")).unwrap();
    copy_sdk(&sdk.join("node_modules"), &app.join("node_modules"));
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let v = aws_script(&server, "boto3_durable_node.py", &[]);
    assert_eq!(v["callback_seen"], true, "{v}");
    let callback = &v["callback"];
    assert_eq!(callback["status"], "SUCCEEDED", "{callback}");
    assert_eq!(
        callback["result"],
        json!({
            "order": "n-1",
            "reserved": "reserve n-1",
            // As the Python SDK: a callback's result as sent, without a serdes.
            "approval": "\"approved\"",
            "branches": ["left", "right"],
            "child": ["child-1", "child-2"],
            "squares": [1, 4, 16],
            "failed_items": 1,
            "polled": 3,
            "echoed": {"echoed": {"from": "nflow"}},
            "shipped": "ship n-1",
        })
    );
    for expected in [
        "StepSucceeded",
        "WaitSucceeded",
        "CallbackSucceeded",
        "ContextSucceeded",
    ] {
        assert!(
            callback["events"]
                .as_array()
                .unwrap()
                .contains(&json!(expected)),
            "{expected}: {callback}"
        );
    }
    let failing = &v["failing"];
    assert_eq!(failing["status"], "FAILED", "{failing}");
    assert!(
        failing["error"]
            .to_string()
            .contains("payment declined for n-2"),
        "{failing}"
    );
    server.stop();
}

/// kill -9 while 200 executions are mid-flight (in steps, waits and callbacks): after a
/// restart every one completes, each of its steps succeeded exactly once in its journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_mid_flight_survive_kill_9_and_complete_with_each_step_once() {
    const N: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let app = durable_app(tmp.path());
    let (server, finished) =
        start_kill_restart(&tmp.path().join("data"), &app, "boto3_durable_crash.py", N);
    let finished = finished.as_object().unwrap();
    assert_eq!(finished.len(), N, "every accepted execution is there");
    for (name, e) in finished {
        assert_eq!(e["status"], "SUCCEEDED", "{name}: {e}");
        let callback = name.trim_start_matches("crash-").parse::<usize>().unwrap() % 3 == 0;
        let mut expected = json!({"reserve": 1, "ship": 1});
        if callback {
            expected["publish"] = json!(1);
        }
        assert_eq!(e["steps"], expected, "{name}: each step succeeded once");
    }
    server.stop();
}
