//! The wire contract, checked with the AWS durable execution SDK for Python itself (from PyPI,
//! installed by `scripts/test.sh`): the SDK parses the invocation input Nimbus builds into the
//! operations the journal holds, and the updates the SDK builds parse into Nimbus's model.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use nimbus_durable::journal::Journal;
use nimbus_durable::model::{
    CallbackOptions, ChainedInvokeOptions, OperationAction, OperationType, OperationUpdate,
    StepOptions, WaitOptions,
};
use nimbus_durable::wire;
use serde_json::Value;

const T0: i64 = 1_767_225_600_000;

fn python() -> PathBuf {
    let path = std::env::var_os("NIMBUS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/nimbus-venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh once (it installs the durable execution SDK), or set NIMBUS_TEST_PYTHON",
        path.display()
    );
    path
}

fn update(id: &str, kind: OperationType, action: OperationAction) -> OperationUpdate {
    OperationUpdate {
        name: Some(format!("{id}-name")),
        ..OperationUpdate::new(id, kind, action)
    }
}

/// Runs `script` with the SDK's Python and `args`; its stdout as JSON.
fn run(script: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `script` with the SDK's Python, `arg` as its argument; its stdout as JSON.
fn sdk(script: &str, arg: &str) -> Value {
    run(script, &[arg])
}

const READ_INPUT: &str = r#"
import json, sys
from aws_durable_execution_sdk_python.execution import DurableExecutionInvocationInput
inp = DurableExecutionInvocationInput.from_json_dict(json.loads(sys.argv[1]))
ts = lambda t: int(t.timestamp() * 1000) if t else None
ops = {}
for op in inp.initial_execution_state.operations:
    d = {"type": op.operation_type.value, "status": op.status.value, "name": op.name,
         "parent": op.parent_id, "start": ts(op.start_timestamp), "end": ts(op.end_timestamp)}
    if op.step_details:
        d["attempt"] = op.step_details.attempt
        d["next_attempt"] = ts(op.step_details.next_attempt_timestamp)
        d["error"] = op.step_details.error.message if op.step_details.error else None
        d["result"] = op.step_details.result
    if op.wait_details:
        d["scheduled_end"] = ts(op.wait_details.scheduled_end_timestamp)
    if op.callback_details:
        d["callback_id"] = op.callback_details.callback_id
    if op.execution_details:
        d["input"] = op.execution_details.input_payload
    if op.context_details:
        d["replay_children"] = op.context_details.replay_children
    ops[op.operation_id] = d
print(json.dumps({"arn": inp.durable_execution_arn, "token": inp.checkpoint_token,
                  "updated": inp.updated_operation_ids, "ops": ops,
                  "next": inp.initial_execution_state.next_marker}))
"#;

#[test]
fn the_sdk_reads_the_invocation_input_as_the_journal_holds_it() {
    let mut j = Journal::start(Some("{\"order\": 7}".into()), T0);
    let mut ids = |_: &str| "cb-0001".to_string();
    let mut step = update("s1", OperationType::Step, OperationAction::Start);
    step.parent_id = Some("ctx".into());
    let mut ctx = update("ctx", OperationType::Context, OperationAction::Start);
    ctx.context_options = Some(nimbus_durable::model::ContextOptions {
        replay_children: Some(true),
    });
    let mut wait = update("w1", OperationType::Wait, OperationAction::Start);
    wait.wait_options = Some(WaitOptions {
        wait_seconds: Some(30),
    });
    let mut cb = update("c1", OperationType::Callback, OperationAction::Start);
    cb.callback_options = Some(CallbackOptions {
        timeout_seconds: Some(60),
        heartbeat_timeout_seconds: None,
    });
    let mut inv = update("i1", OperationType::ChainedInvoke, OperationAction::Start);
    inv.chained_invoke_options = Some(ChainedInvokeOptions {
        function_name: "worker".into(),
    });
    j.checkpoint(
        1,
        None,
        &[ctx, step.clone(), wait, cb, inv],
        T0 + 10,
        &mut ids,
    )
    .unwrap();
    step.action = OperationAction::Retry;
    step.step_options = Some(StepOptions {
        next_attempt_delay_seconds: Some(4),
    });
    step.error = Some(nimbus_durable::model::ErrorObject {
        error_message: Some("flaky".into()),
        ..Default::default()
    });
    j.checkpoint(2, None, &[step], T0 + 20, &mut ids).unwrap();
    assert!(j.timer_fired(
        "w1",
        nimbus_durable::journal::TimerKind::WaitEnd,
        T0 + 30_010
    ));
    let updated = j.take_updated();

    let input = wire::invocation_input("arn:exec:1", "token-3", &j, &updated, 1000);
    let seen = sdk(READ_INPUT, &input.to_string());
    assert_eq!(seen["arn"], "arn:exec:1");
    assert_eq!(seen["token"], "token-3");
    assert_eq!(seen["updated"], serde_json::json!(["w1"]));
    assert_eq!(seen["next"], "");
    let ops = &seen["ops"];
    assert_eq!(ops["execution"]["type"], "EXECUTION");
    assert_eq!(ops["execution"]["input"], "{\"order\": 7}");
    assert_eq!(ops["execution"]["start"], T0);
    assert_eq!(ops["ctx"]["replay_children"], true);
    assert_eq!(ops["s1"]["parent"], "ctx");
    assert_eq!(ops["s1"]["status"], "PENDING");
    assert_eq!(ops["s1"]["attempt"], 1);
    assert_eq!(ops["s1"]["next_attempt"], T0 + 20 + 4_000);
    assert_eq!(ops["s1"]["error"], "flaky");
    assert_eq!(ops["w1"]["status"], "SUCCEEDED");
    assert_eq!(ops["w1"]["scheduled_end"], T0 + 10 + 30_000);
    assert_eq!(ops["w1"]["end"], T0 + 30_010);
    assert_eq!(ops["c1"]["callback_id"], "cb-0001");
    assert_eq!(ops["i1"]["type"], "CHAINED_INVOKE");
    assert_eq!(ops["i1"]["name"], "i1-name");
}

const MAKE_UPDATES: &str = r#"
import json
from aws_durable_execution_sdk_python.identifier import OperationIdentifier
from aws_durable_execution_sdk_python.lambda_service import (
    OperationUpdate, OperationType, ErrorObject, WaitOptions, CallbackOptions,
    ChainedInvokeOptions)
def ident(i, t, sub):
    return OperationIdentifier(i, sub, parent_id="p", name="n-" + i, operation_type=t)
err = ErrorObject(message="boom", type="ValueError", data=None, stack_trace=["a.py:1"])
ups = [
    OperationUpdate.create_step_start(ident("s", OperationType.STEP, "Step")),
    OperationUpdate.create_step_retry(ident("s", OperationType.STEP, "Step"), err, 5),
    OperationUpdate.create_step_succeed(ident("s", OperationType.STEP, "Step"), "\"ok\""),
    OperationUpdate.create_wait_start(ident("w", OperationType.WAIT, "Wait"), WaitOptions(wait_seconds=9)),
    OperationUpdate.create_callback(ident("c", OperationType.CALLBACK, "Callback"),
        CallbackOptions(timeout_seconds=60, heartbeat_timeout_seconds=0)),
    OperationUpdate.create_invoke_start(ident("i", OperationType.CHAINED_INVOKE, "ChainedInvoke"),
        "{}", ChainedInvokeOptions(function_name="worker")),
    OperationUpdate.create_context_start(ident("x", OperationType.CONTEXT, "RunInChildContext")),
    OperationUpdate.create_execution_succeed("\"done\""),
]
print(json.dumps([u.to_dict() for u in ups]))
"#;

#[test]
fn the_updates_the_sdk_sends_parse_into_the_model() {
    let sent = sdk(MAKE_UPDATES, "");
    let updates: Vec<OperationUpdate> =
        serde_json::from_value(sent.clone()).unwrap_or_else(|e| panic!("{e}: {sent}"));
    let kinds: Vec<(OperationType, OperationAction)> =
        updates.iter().map(|u| (u.kind, u.action)).collect();
    use OperationAction as A;
    use OperationType as T;
    assert_eq!(
        kinds,
        [
            (T::Step, A::Start),
            (T::Step, A::Retry),
            (T::Step, A::Succeed),
            (T::Wait, A::Start),
            (T::Callback, A::Start),
            (T::ChainedInvoke, A::Start),
            (T::Context, A::Start),
            (T::Execution, A::Succeed),
        ]
    );
    assert_eq!(
        updates[1]
            .step_options
            .as_ref()
            .unwrap()
            .next_attempt_delay_seconds,
        Some(5)
    );
    assert_eq!(
        updates[1].error.as_ref().unwrap().error_type.as_deref(),
        Some("ValueError")
    );
    assert_eq!(updates[2].payload.as_deref(), Some("\"ok\""));
    assert_eq!(
        updates[3].wait_options.as_ref().unwrap().wait_seconds,
        Some(9)
    );
    assert_eq!(
        updates[4]
            .callback_options
            .as_ref()
            .unwrap()
            .heartbeat_timeout_seconds,
        Some(0)
    );
    assert_eq!(
        updates[5]
            .chained_invoke_options
            .as_ref()
            .unwrap()
            .function_name,
        "worker"
    );
    assert_eq!(updates[0].parent_id.as_deref(), Some("p"));

    // And the journal takes them, in the order an execution would send them: the retried
    // step's next attempt starts once its timer has fired.
    let mut j = Journal::start(None, T0);
    let mut ids = |_: &str| "cb".to_string();
    let mut token = j.token();
    let mut send = |j: &mut Journal, u: &OperationUpdate| {
        let mut u = u.clone();
        u.parent_id = None;
        token = j.checkpoint(token, None, &[u], T0, &mut ids).unwrap().token;
    };
    send(&mut j, &updates[0]);
    send(&mut j, &updates[1]);
    assert!(j.timer_fired(
        "s",
        nimbus_durable::journal::TimerKind::StepRetry,
        T0 + 5_000
    ));
    send(&mut j, &updates[0]);
    for u in &updates[2..] {
        send(&mut j, u);
    }
    assert_eq!(
        j.status(),
        nimbus_durable::model::OperationStatus::Succeeded
    );
}

/// Parses `body` as botocore parses the answer of `operation` (the AWS service model's shapes:
/// a member botocore does not know is dropped, a wrong type fails), and prints what it got.
const BOTOCORE_PARSE: &str = r#"
import json, sys, datetime
import botocore.session
from botocore.parsers import create_parser
op, body = sys.argv[1], sys.argv[2]
model = botocore.session.get_session().get_service_model("lambda").operation_model(op)
parsed = create_parser("rest-json").parse(
    {"status_code": 200, "headers": {}, "body": body.encode()}, model.output_shape)
parsed.pop("ResponseMetadata", None)
def plain(v):
    if isinstance(v, datetime.datetime):
        return int(v.timestamp() * 1000)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v
print(json.dumps(plain(parsed)))
"#;

fn botocore(operation: &str, body: &Value) -> Value {
    run(BOTOCORE_PARSE, &[operation, &body.to_string()])
}

#[test]
fn boto3_reads_execution_answers_in_the_service_models_shapes() {
    use nimbus_durable::model::{ErrorObject, InvocationOutput};
    use nimbus_durable::store::{ExecutionRecord, ExecutionSummary};
    let mut journal = Journal::start(Some("{\"order\": 7}".into()), T0);
    journal.settle(
        InvocationOutput::Failed(ErrorObject {
            error_message: Some("out of stock".into()),
            error_type: Some("StockError".into()),
            ..Default::default()
        }),
        T0 + 1_500,
    );
    let record = ExecutionRecord {
        arn: "arn:aws:lambda:us-east-1:000000000000:function:shop:$LATEST/durable-execution/o7/1"
            .into(),
        function: "shop".into(),
        version: "$LATEST".into(),
        name: "o7".into(),
        status: journal.status(),
        start_ms: T0,
        end_ms: Some(T0 + 1_500),
        revision: 3,
        journal,
        code: None,
        parent: None,
    };
    let fn_arn = "arn:aws:lambda:us-east-1:000000000000:function:shop";
    let got = botocore(
        "GetDurableExecution",
        &wire::execution(&record, fn_arn, true),
    );
    assert_eq!(got["DurableExecutionArn"], record.arn.as_str());
    assert_eq!(got["DurableExecutionName"], "o7");
    assert_eq!(got["FunctionArn"], fn_arn);
    assert_eq!(got["Status"], "FAILED");
    assert_eq!(got["StartTimestamp"], T0);
    assert_eq!(got["EndTimestamp"], T0 + 1_500);
    assert_eq!(got["InputPayload"], "{\"order\": 7}");
    assert_eq!(got["Error"]["ErrorType"], "StockError");
    assert_eq!(got["ExecutionDataIncluded"], true);
    let bare = botocore(
        "GetDurableExecution",
        &wire::execution(&record, fn_arn, false),
    );
    assert!(
        bare.get("InputPayload").is_none() && bare.get("Error").is_none(),
        "{bare}"
    );

    let summary = ExecutionSummary {
        arn: record.arn.clone(),
        name: "o7".into(),
        function: "shop".into(),
        status: nimbus_durable::model::OperationStatus::Started,
        start_ms: T0,
        end_ms: None,
    };
    let list = serde_json::json!({
        "DurableExecutions": [wire::execution_summary(&summary, fn_arn)],
        "NextMarker": "m",
    });
    let got = botocore("ListDurableExecutionsByFunction", &list);
    assert_eq!(got["DurableExecutions"][0]["Status"], "RUNNING");
    assert_eq!(got["DurableExecutions"][0]["StartTimestamp"], T0);
    assert_eq!(got["NextMarker"], "m");

    // The state API's operations, as boto3 reads them.
    let state = serde_json::json!({
        "Operations": record.journal.operations().iter()
            .map(|o| wire::operation(o, wire::Timestamps::Seconds)).collect::<Vec<_>>(),
    });
    let got = botocore("GetDurableExecutionState", &state);
    assert_eq!(got["Operations"][0]["Type"], "EXECUTION");
    assert_eq!(got["Operations"][0]["StartTimestamp"], T0);
    assert_eq!(
        got["Operations"][0]["ExecutionDetails"]["InputPayload"],
        "{\"order\": 7}"
    );
}
