//! Step Functions end to end: state machines created, run, inspected and answered through
//! boto3's `stepfunctions` client against the real `nimbus` binary; their tasks are Python and
//! wasm functions of a deployed app.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

fn tasks_app(dir: &std::path::Path) -> std::path::PathBuf {
    app_with(
        dir,
        r#"
app = "workflows"
[functions.add]
runtime = "python"
source = "."
handler = "tasks.add"
[functions.refuse]
runtime = "python"
source = "."
handler = "tasks.refuse"
[functions.hand_out]
runtime = "python"
source = "."
handler = "tasks.hand_out"
[functions.noop]
runtime = "wasm"
source = "noop.wasm"
"#,
        &[
            "tests/fixtures/workflows/tasks.py",
            "tests/fixtures/noop.wasm",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_creates_runs_inspects_answers_and_stops_workflows() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tasks_app(tmp.path());
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let v = aws_script(&server, "boto3_stepfunctions.py", &["1000"]);

    // Definitions with mistakes: every problem named, with where it is; nothing created.
    assert_eq!(v["validate"]["result"], "FAIL");
    let diagnostics = v["validate"]["diagnostics"].to_string();
    for expected in [
        "MISSING_TRANSITION_TARGET",
        "/StartAt",
        "/States/A/Next",
        "INVALID_RESOURCE",
        "/States/B/Resource",
    ] {
        assert!(
            diagnostics.contains(expected),
            "{expected} in {diagnostics}"
        );
    }
    assert_eq!(v["create_bad"][0], "InvalidDefinition");
    assert!(
        v["create_bad"][1]
            .as_str()
            .unwrap()
            .contains("/States/A/Next"),
        "{}",
        v["create_bad"]
    );
    assert_eq!(v["create_bad_name"][0], "InvalidName");

    // Creation is idempotent for the same definition; another one under the name is refused.
    let machine = v["machine_arn"].as_str().unwrap();
    assert_eq!(
        machine,
        "arn:aws:states:us-east-1:000000000000:stateMachine:orders"
    );
    assert_eq!(v["create_again"], machine);
    assert_eq!(v["create_other"][0], "StateMachineAlreadyExists");
    assert_eq!(
        v["describe"],
        json!({"name": "orders", "status": "ACTIVE", "type": "STANDARD", "roleArn": "arn:aws:iam::000000000000:role/workflows", "same": true})
    );
    assert!(v["machines"].as_array().unwrap().contains(&json!("orders")));

    // A run through every state type: a task, a choice, a wait, a parallel whose failing
    // branch is caught, a Map of 1,000 items over a wasm function, 10 at a time.
    let run = &v["run"];
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(
        run["output"],
        json!({"n": 2, "error": "ValueError", "mapped": 1000, "run": "run-1"})
    );
    assert_eq!(
        v["same_run"], v["execution_arn"],
        "a start by the same name and input while it runs is that execution"
    );
    assert_eq!(v["rerun_ended"][0], "ExecutionAlreadyExists");
    let history = &v["history"];
    assert_eq!(history["ids"], json!([1, 2, 3, 4, 5]));
    assert_eq!(history["first"], "ExecutionStarted");
    assert_eq!(history["last"], "ExecutionSucceeded");
    assert_eq!(history["map_iterations"], 1000);
    assert_eq!(history["map_names"], json!(["Each"]));
    let types = history["types"].to_string();
    for expected in [
        "TaskStateEntered",
        "TaskScheduled",
        "TaskSucceeded",
        "TaskFailed",
        "ChoiceStateEntered",
        "WaitStateExited",
        "ParallelStateEntered",
        "MapStateEntered",
        "MapIterationStarted",
        "PassStateExited",
    ] {
        assert!(types.contains(expected), "{expected} in {types}");
    }
    assert_eq!(v["history_reverse_first"], "ExecutionSucceeded");
    assert_eq!(v["executions"], json!([["run-1", "SUCCEEDED"]]));
    assert_eq!(v["executions_running"], json!([]));

    // Task tokens: answered by the client; a silent one times out by its heartbeat.
    assert_eq!(
        v["approved"],
        json!({"status": "SUCCEEDED", "output": {"order": 7, "approval": {"approved": true}}})
    );
    let paged = &v["paged_history"];
    assert_eq!(paged[0], paged[1], "pages of 2 make the same history");
    assert!(paged[0].as_array().unwrap().len() >= 7, "{paged}");
    assert_eq!(v["answer_twice"][0], "TaskDoesNotExist");
    assert_eq!(v["bad_output"][0], "InvalidOutput");
    assert_eq!(v["bad_token"][0], "InvalidToken");
    assert_eq!(
        v["silent"],
        json!({"status": "SUCCEEDED", "error": "States.HeartbeatTimeout"})
    );
    assert_eq!(v["answer_late"][0], "TaskTimedOut");

    // Redrive: the failed approval runs again (the add before it is not: one task each).
    assert_eq!(
        v["redo_failed"],
        json!({"status": "FAILED", "error": "Rejected", "redrive": "REDRIVABLE"})
    );
    assert_eq!(v["redrive_date"], true);
    assert_eq!(
        v["redone"],
        json!({"status": "SUCCEEDED", "output": {"n": 2, "approval": {"ok": true}}, "count": 1, "dated": true, "redrive": "NOT_REDRIVABLE"})
    );
    assert_eq!(v["redo_scheduled"], 2);
    assert_eq!(v["redrive_succeeded"][0], "ExecutionNotRedrivable");
    assert_eq!(v["redrive_express"][0], "ExecutionNotRedrivable");

    // A failure nothing catches fails the execution with the function's own error.
    assert_eq!(
        v["failed"],
        json!({"status": "FAILED", "error": "ValueError", "cause": "refused 3"})
    );
    assert_eq!(
        v["stopped"],
        json!({"status": "ABORTED", "error": "Operator", "cause": "not needed"})
    );
    assert_eq!(v["stop_again"][0], "ExecutionDoesNotExist");

    assert_eq!(
        v["sync"],
        json!({"status": "SUCCEEDED", "output": {"n": 42}})
    );
    assert_eq!(v["sync_standard"][0], "StateMachineTypeNotSupported");

    assert_eq!(v["missing_machine"][0], "StateMachineDoesNotExist");
    assert_eq!(v["missing_execution"][0], "ExecutionDoesNotExist");
    assert_eq!(v["bad_arn"][0], "InvalidArn");
    assert_eq!(v["bad_input"][0], "InvalidExecutionInput");
    assert_eq!(v["after_delete"][0], "StateMachineDoesNotExist");
    // The AWS CLI, unmodified, against the same node.
    let aws = |args: &[&str]| -> serde_json::Value {
        let mut c = std::process::Command::new(client_python().with_file_name("aws"));
        c.arg("stepfunctions")
            .args(args)
            .args(["--endpoint-url", &server.url, "--output", "json"])
            .env_clear()
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                server.data_dir.join("aws-credentials"),
            )
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_DEFAULT_REGION", "us-east-1");
        serde_json::from_str(&ok(&c.output().unwrap())).unwrap()
    };
    let definition = json!({"StartAt": "Add", "States": {"Add": {"Type": "Task", "Resource": "add", "End": true}}});
    let created = aws(&[
        "create-state-machine",
        "--name",
        "cli",
        "--definition",
        &definition.to_string(),
        "--role-arn",
        "arn:aws:iam::000000000000:role/cli",
    ]);
    let machine = created["stateMachineArn"].as_str().unwrap().to_string();
    let listed = aws(&["list-state-machines"]).to_string();
    assert!(
        listed.contains("\"cli\"") && listed.contains("\"orders\""),
        "{listed}"
    );
    let run = aws(&[
        "start-execution",
        "--state-machine-arn",
        &machine,
        "--name",
        "cli-1",
        "--input",
        r#"{"n": 5}"#,
    ]);
    let execution = run["executionArn"].as_str().unwrap().to_string();
    let described = poll(async || {
        let d = aws(&["describe-execution", "--execution-arn", &execution]);
        (d["status"] != "RUNNING").then_some(d)
    })
    .await;
    assert_eq!(described["status"], "SUCCEEDED", "{described}");
    assert_eq!(described["output"], r#"{"n":6}"#);
    let history = aws(&["get-execution-history", "--execution-arn", &execution]);
    assert_eq!(history["events"].as_array().unwrap().len(), 7, "{history}");

    eprintln!(
        "the 1,000-item run took {:.1} s; {}",
        v["seconds"].as_f64().unwrap(),
        v["marks"]
    );
    server.stop();
}

/// kill -9 while workflows are mid-flight (in tasks, waits and a Map): after a restart every
/// execution ends with the right output (both adds counted in it), each task state exited once
/// per visit, and a function ran again only for invocations in flight at the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_mid_flight_survive_kill_9() {
    const N: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let app = tasks_app(tmp.path());
    let (server, finished) = start_kill_restart(
        &tmp.path().join("data"),
        &app,
        "boto3_stepfunctions_crash.py",
        N,
    );
    let finished = finished.as_object().unwrap();
    assert_eq!(finished.len(), N, "every started execution ended");
    for (name, e) in finished {
        let i: i64 = name.trim_start_matches("crash-").parse().unwrap();
        assert_eq!(e["status"], "SUCCEEDED", "{name}: {e}");
        assert_eq!(e["output"], json!({"n": i + 2}), "{name}: {e}");
        assert_eq!(
            e["exited"],
            json!({"First": 1, "Noop": 5, "Last": 1}),
            "{name}: each visit once"
        );
    }
    // Every task ran (the outputs count both adds); re-runs only for invocations in flight at
    // the kill. (The killed node may not have written its last invocation records.)
    let records = server
        .get_json("/v1/functions/add/invocations?limit=1000")
        .await;
    let ran = records.as_array().unwrap().len();
    assert!(ran <= 3 * N, "add ran {ran} times for {} tasks", 2 * N);
    eprintln!(
        "add's records show {ran} runs for {} task visits (the killed node may not have written its last)",
        2 * N
    );
    server.stop();
}

const DECLARED: &str = r#"
app = "declared"
[functions.add]
runtime = "python"
source = "."
handler = "tasks.add"
[functions.refuse]
runtime = "python"
source = "."
handler = "tasks.refuse"
[queues.orders]
[queues.audit]
[topics.alerts]
subscriptions = [{ name = "audit", queue = "audit" }]

[workflows.child]
definition = '{"StartAt": "Add", "States": {"Add": {"Type": "Task", "Resource": "add", "End": true}}}'
[workflows.failing]
type = "STANDARD"
[workflows.failing.definition]
StartAt = "Refuse"
States = { Refuse = { Type = "Task", Resource = "refuse", End = true } }
[workflows.parent]
definition_file = "parent.asl.json"
role_arn = "arn:aws:iam::000000000000:role/parent"
[workflows.sleeper]
definition = '{"StartAt": "Sleep", "States": {"Sleep": {"Type": "Wait", "Seconds": 600, "End": true}}}'
[workflows.waiter]
definition = '{"StartAt": "Nest", "States": {"Nest": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync", "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:sleeper"}, "End": true}}}'
"#;

/// Every integration the parent workflow uses: a queue, a topic, a nested execution waited
/// for (`.sync:2`), one that fails (`.sync`, its failure caught), one only started.
const PARENT: &str = r#"{
  "StartAt": "Send",
  "States": {
    "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
      "Parameters": {"QueueUrl": "http://127.0.0.1/000000000000/orders", "MessageBody.$": "$"},
      "ResultPath": "$.sent", "Next": "Publish"},
    "Publish": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish",
      "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:000000000000:alerts", "Message.$": "States.Format('n is {}', $.n)"},
      "ResultPath": "$.published", "Next": "Nested"},
    "Nested": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
      "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:child", "Input": {"n.$": "$.n"}},
      "ResultSelector": {"n.$": "$.Output.n", "status.$": "$.Status"},
      "ResultPath": "$.nested", "Next": "NestedFails"},
    "NestedFails": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync",
      "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:failing"},
      "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.caught", "Next": "Fire"}],
      "Next": "Fire"},
    "Fire": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
      "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:child", "Input": "{\"n\": 100}"},
      "ResultSelector": {"arn.$": "$.ExecutionArn"},
      "ResultPath": "$.fired", "End": true}
  }
}"#;

/// State machines declared in `nimbus.toml` deploy with their app (inline, as a table, from a
/// file), run their queue, topic and nested-execution integrations, and are listed, started,
/// described and shown as a timeline by `nimbus workflows`; a bad definition fails the deploy
/// naming it and changes nothing; the app's removal takes them along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_declared_in_the_manifest_deploy_with_the_app_and_call_services() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app_with(tmp.path(), DECLARED, &["tests/fixtures/workflows/tasks.py"]);
    std::fs::write(app.join("parent.asl.json"), PARENT).unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));

    let listed = ok(&server.cli(&["workflows", "ls"]));
    for name in ["child", "failing", "parent"] {
        assert!(listed.contains(name), "{name} in {listed}");
    }
    let machines: serde_json::Value =
        serde_json::from_str(&ok(&server.cli(&["workflows", "ls", "--json"]))).unwrap();
    assert_eq!(machines.as_array().unwrap().len(), 5, "{machines}");

    // Started and waited for by the CLI: every integration answered.
    let out = ok(&server.cli(&[
        "workflows",
        "start",
        "parent",
        r#"{"n": 1}"#,
        "--name",
        "p1",
        "--wait",
    ]));
    let arn = out.lines().next().unwrap().to_string();
    assert!(arn.ends_with(":execution:parent:p1"), "{out}");
    assert!(out.contains("SUCCEEDED"), "{out}");
    let described: serde_json::Value =
        serde_json::from_str(&ok(&server.cli(&["workflows", "describe", &arn, "--json"]))).unwrap();
    let output: serde_json::Value =
        serde_json::from_str(described["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["n"], 1);
    assert_eq!(
        output["sent"]["MD5OfMessageBody"],
        md5_hex(r#"{"n":1}"#),
        "{output}"
    );
    assert!(
        output["sent"]["MessageId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        output["published"]["MessageId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(output["nested"], json!({"n": 2, "status": "SUCCEEDED"}));
    assert_eq!(output["caught"]["Error"], "States.TaskFailed", "{output}");
    let cause: serde_json::Value =
        serde_json::from_str(output["caught"]["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(cause["Status"], "FAILED");
    assert_eq!(cause["Error"], "ValueError");
    assert!(
        output["fired"]["arn"]
            .as_str()
            .unwrap()
            .contains(":execution:child:"),
        "{output}"
    );

    // What was sent and published arrived.
    let received = |queue: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&server.cli(&[
            "queue", "receive", queue, "--wait", "5", "--max", "10", "--ack",
        ])))
        .unwrap()
    };
    assert_eq!(received("orders")[0]["body"], r#"{"n":1}"#);
    assert_eq!(received("audit")[0]["body"], "n is 1");

    // The nested executions are the child's, listed by the CLI; the one only started ends too.
    let children = poll(async || {
        let v: serde_json::Value = serde_json::from_str(&ok(&server.cli(&[
            "workflows",
            "executions",
            "child",
            "--status",
            "SUCCEEDED",
            "--json",
        ])))
        .unwrap();
        (v.as_array().unwrap().len() == 2).then_some(v)
    })
    .await;
    assert_eq!(children.as_array().unwrap().len(), 2);

    // A parent that stops stops the nested execution its `.sync` task waits for.
    let waiter = ok(&server.cli(&["workflows", "start", "waiter"]));
    let waiter = waiter.trim();
    let executions = |machine: &str, status: &str| -> usize {
        let v: serde_json::Value = serde_json::from_str(&ok(&server.cli(&[
            "workflows",
            "executions",
            machine,
            "--status",
            status,
            "--json",
        ])))
        .unwrap();
        v.as_array().unwrap().len()
    };
    poll(async || (executions("sleeper", "RUNNING") == 1).then_some(())).await;
    ok(&server.cli(&["workflows", "stop", waiter]));
    poll(async || (executions("sleeper", "ABORTED") == 1).then_some(())).await;

    // The timeline names each state's events.
    let timeline = ok(&server.cli(&["workflows", "history", &arn]));
    for expected in [
        "ExecutionStarted",
        "TaskSucceeded",
        "Nested",
        "TaskFailed",
        "ExecutionSucceeded",
    ] {
        assert!(timeline.contains(expected), "{expected} in {timeline}");
    }

    // A definition with a mistake fails the deploy, naming where; nothing changes.
    let broken = DECLARED.replace(
        r#""Resource": "add", "End": true"#,
        r#""Resource": "add", "Next": "Nowhere""#,
    );
    std::fs::write(app.join("nimbus.toml"), &broken).unwrap();
    let refused = server.cli(&["deploy", app.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("workflows.child.definition") && err.contains("/States/Add/Next"),
        "{err}"
    );
    // Another app cannot take a name this one declares.
    let other = app_with(
        &tmp.path().join("other"),
        &DECLARED
            .replace("app = \"declared\"", "app = \"other\"")
            .replace("[functions.add]", "[functions.add2]")
            .replace("[functions.refuse]", "[functions.refuse2]")
            .replace("[queues.orders]\n[queues.audit]\n[topics.alerts]\nsubscriptions = [{ name = \"audit\", queue = \"audit\" }]\n", ""),
        &["tests/fixtures/workflows/tasks.py"],
    );
    std::fs::write(other.join("parent.asl.json"), PARENT).unwrap();
    let clash = server.cli(&["deploy", other.to_str().unwrap()]);
    assert!(!clash.status.success());
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains("belongs to app `declared`"),
        "{}",
        String::from_utf8_lossy(&clash.stderr)
    );

    // Dropping a workflow from the manifest deletes it; removing the app takes the rest.
    let without_parent = DECLARED.replace(
        "[workflows.parent]\ndefinition_file = \"parent.asl.json\"\nrole_arn = \"arn:aws:iam::000000000000:role/parent\"\n",
        "",
    );
    std::fs::write(app.join("nimbus.toml"), &without_parent).unwrap();
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let listed = ok(&server.cli(&["workflows", "ls"]));
    assert!(
        listed.contains("child") && !listed.contains("parent"),
        "{listed}"
    );
    let missing = server.cli(&["workflows", "start", "parent"]);
    assert!(!missing.status.success());
    ok(&server.cli(&["rm", "--app", "declared"]));
    let listed = ok(&server.cli(&["workflows", "ls", "--json"]));
    assert_eq!(listed.trim(), "[]", "{listed}");
    server.stop();
}

fn md5_hex(text: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(text.as_bytes()))
}
