//! What crosses the wire: operations in the Lambda durable-execution API's JSON shape and the
//! input a durable handler is invoked with (its answer is [`crate::model::InvocationOutput`]).
//!
//! Timestamps are unix milliseconds in the invocation input (as the SDKs read it) and epoch
//! seconds in the REST API's answers (the AWS JSON protocol's default); [`Timestamps`] says which.

use serde_json::{Map, Value, json};

use crate::journal::Journal;
use crate::model::{ErrorObject, Operation, OperationType};

/// How timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// Unix milliseconds (the invocation input).
    Millis,
    /// Unix seconds, fractional (the REST API).
    Seconds,
}

impl Timestamps {
    fn write(self, ms: i64) -> Value {
        match self {
            Self::Millis => json!(ms),
            Self::Seconds => json!(ms as f64 / 1000.0),
        }
    }
}

/// Inserts `value` under `key` unless it is `None`.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

fn error_json(e: &Option<ErrorObject>) -> Option<Value> {
    e.as_ref().and_then(|e| serde_json::to_value(e).ok())
}

/// One operation in the API's shape (`Operation`: its details under `StepDetails`,
/// `WaitDetails`, …).
pub fn operation(op: &Operation, ts: Timestamps) -> Value {
    let mut m = Map::new();
    m.insert("Id".into(), json!(op.id));
    put(&mut m, "ParentId", op.parent_id.as_ref().map(|p| json!(p)));
    put(&mut m, "Name", op.name.as_ref().map(|n| json!(n)));
    put(&mut m, "Type", serde_json::to_value(op.kind).ok());
    put(&mut m, "SubType", op.sub_type.as_ref().map(|s| json!(s)));
    m.insert("StartTimestamp".into(), ts.write(op.start_ms));
    put(&mut m, "EndTimestamp", op.end_ms.map(|t| ts.write(t)));
    put(&mut m, "Status", serde_json::to_value(op.status).ok());
    let result = op.result.as_ref().map(|r| json!(r));
    let mut d = Map::new();
    let key = match op.kind {
        OperationType::Execution => {
            put(&mut d, "InputPayload", op.input.as_ref().map(|i| json!(i)));
            "ExecutionDetails"
        }
        OperationType::Context => {
            put(
                &mut d,
                "ReplayChildren",
                op.replay_children.map(|r| json!(r)),
            );
            put(&mut d, "Result", result);
            put(&mut d, "Error", error_json(&op.error));
            "ContextDetails"
        }
        OperationType::Step => {
            put(&mut d, "Attempt", op.attempt.map(|a| json!(a)));
            put(
                &mut d,
                "NextAttemptTimestamp",
                op.next_attempt_ms.map(|t| ts.write(t)),
            );
            put(&mut d, "Result", result);
            put(&mut d, "Error", error_json(&op.error));
            "StepDetails"
        }
        OperationType::Wait => {
            put(
                &mut d,
                "ScheduledEndTimestamp",
                op.scheduled_end_ms.map(|t| ts.write(t)),
            );
            "WaitDetails"
        }
        OperationType::Callback => {
            put(
                &mut d,
                "CallbackId",
                op.callback_id.as_ref().map(|c| json!(c)),
            );
            put(&mut d, "Result", result);
            put(&mut d, "Error", error_json(&op.error));
            "CallbackDetails"
        }
        OperationType::ChainedInvoke => {
            put(&mut d, "Result", result);
            put(&mut d, "Error", error_json(&op.error));
            "ChainedInvokeDetails"
        }
    };
    m.insert(key.into(), Value::Object(d));
    Value::Object(m)
}

/// The event a durable handler is invoked with: the execution's ARN, the current checkpoint
/// token, its first `page` operations (the SDK fetches the rest with the state API from
/// `NextMarker`), and the operations that changed since it last ran.
pub fn invocation_input(
    arn: &str,
    token: &str,
    journal: &Journal,
    updated: &[String],
    page: usize,
) -> Value {
    let (ops, next) = journal.page(0, page);
    json!({
        "DurableExecutionArn": arn,
        "CheckpointToken": token,
        "InitialExecutionState": {
            "Operations": ops.iter().map(|o| operation(o, Timestamps::Millis)).collect::<Vec<_>>(),
            "NextMarker": next.map(|n| n.to_string()).unwrap_or_default(),
        },
        "UpdatedOperationIds": updated,
    })
}

/// The API's `ExecutionStatus` of an execution whose `EXECUTION` operation is at `status`.
pub fn execution_status(status: crate::model::OperationStatus) -> &'static str {
    use crate::model::OperationStatus as S;
    match status {
        S::Succeeded => "SUCCEEDED",
        S::Failed | S::Cancelled => "FAILED",
        S::TimedOut => "TIMED_OUT",
        S::Stopped => "STOPPED",
        S::Started | S::Pending | S::Ready => "RUNNING",
    }
}

/// What every answer about an execution says of it.
fn execution_fields(
    arn: &str,
    name: &str,
    function_arn: &str,
    status: crate::model::OperationStatus,
    start_ms: i64,
    end_ms: Option<i64>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("DurableExecutionArn".into(), json!(arn));
    m.insert("DurableExecutionName".into(), json!(name));
    m.insert("FunctionArn".into(), json!(function_arn));
    m.insert("Status".into(), json!(execution_status(status)));
    m.insert("StartTimestamp".into(), Timestamps::Seconds.write(start_ms));
    put(
        &mut m,
        "EndTimestamp",
        end_ms.map(|t| Timestamps::Seconds.write(t)),
    );
    m
}

/// `GetDurableExecution`'s answer for `record` of the function `function_arn`; the input,
/// result and error only with `include_data`.
pub fn execution(
    record: &crate::store::ExecutionRecord,
    function_arn: &str,
    include_data: bool,
) -> Value {
    let r = record;
    let mut m = execution_fields(
        &r.arn,
        &r.name,
        function_arn,
        r.status,
        r.start_ms,
        r.end_ms,
    );
    m.insert("Version".into(), json!(r.version));
    m.insert("ExecutionDataIncluded".into(), json!(include_data));
    if include_data && let Some(op) = r.journal.operations().first() {
        put(&mut m, "InputPayload", op.input.as_ref().map(|i| json!(i)));
        put(&mut m, "Result", op.result.as_ref().map(|r| json!(r)));
        put(&mut m, "Error", error_json(&op.error));
    }
    Value::Object(m)
}

/// One execution as `ListDurableExecutionsByFunction` lists it.
pub fn execution_summary(s: &crate::store::ExecutionSummary, function_arn: &str) -> Value {
    Value::Object(execution_fields(
        &s.arn,
        &s.name,
        function_arn,
        s.status,
        s.start_ms,
        s.end_ms,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{InvocationOutput, OperationAction, OperationUpdate, StepOptions};

    #[test]
    fn operations_carry_their_details_and_timestamps_in_either_style() {
        let mut j = Journal::start(Some("{\"a\":1}".into()), 1_500);
        let mut start = OperationUpdate {
            id: "s".into(),
            parent_id: Some("execution".into()),
            name: Some("fetch".into()),
            kind: OperationType::Step,
            sub_type: Some("Step".into()),
            action: OperationAction::Start,
            payload: None,
            error: None,
            context_options: None,
            step_options: None,
            wait_options: None,
            callback_options: None,
            chained_invoke_options: None,
        };
        j.checkpoint(1, None, &[start.clone()], 2_000, &mut || "cb".into())
            .unwrap();
        start.action = OperationAction::Retry;
        start.step_options = Some(StepOptions {
            next_attempt_delay_seconds: Some(3),
        });
        j.checkpoint(2, None, &[start], 2_500, &mut || "cb".into())
            .unwrap();
        let step = operation(j.operation("s").unwrap(), Timestamps::Millis);
        assert_eq!(step["Type"], "STEP");
        assert_eq!(step["Status"], "PENDING");
        assert_eq!(step["StartTimestamp"], 2_000);
        assert_eq!(step["StepDetails"]["Attempt"], 1);
        assert_eq!(step["StepDetails"]["NextAttemptTimestamp"], 5_500);
        let exec = operation(j.operation("execution").unwrap(), Timestamps::Seconds);
        assert_eq!(exec["StartTimestamp"], 1.5);
        assert_eq!(exec["ExecutionDetails"]["InputPayload"], "{\"a\":1}");
        let input = invocation_input("arn:x", "tok", &j, &["s".into()], 1);
        assert_eq!(
            input["InitialExecutionState"]["Operations"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(input["InitialExecutionState"]["NextMarker"], "1");
        assert_eq!(input["UpdatedOperationIds"], json!(["s"]));
    }

    #[test]
    fn handler_answers_are_read_and_anything_else_is_not_one() {
        assert_eq!(
            InvocationOutput::parse(br#"{"Status": "SUCCEEDED", "Result": "42"}"#),
            Some(InvocationOutput::Succeeded(Some("42".into())))
        );
        assert_eq!(
            InvocationOutput::parse(br#"{"Status": "PENDING"}"#),
            Some(InvocationOutput::Pending)
        );
        let failed =
            InvocationOutput::parse(br#"{"Status": "FAILED", "Error": {"ErrorType": "E"}}"#);
        assert!(
            matches!(failed, Some(InvocationOutput::Failed(e)) if e.error_type.as_deref() == Some("E"))
        );
        for bad in [&b"{}"[..], b"42", b"{\"Status\": \"DONE\"}", b"\xff"] {
            assert_eq!(InvocationOutput::parse(bad), None);
        }
    }
}
