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
    /// `ms` (unix milliseconds) in this style.
    pub fn write(self, ms: i64) -> Value {
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

/// The execution's history as `GetDurableExecutionHistory` answers it: each operation's start
/// and, once it ended, its end (`StepStarted`, `StepSucceeded`, `WaitCancelled`, …), in time
/// order, numbered from 1; payloads only with `include_data`. `timeout_s` is the execution's.
pub fn history(journal: &Journal, include_data: bool, timeout_s: u64) -> Vec<Value> {
    use crate::model::OperationStatus as S;
    let mut events: Vec<(i64, usize, Value)> = Vec::new();
    let data = |v: Option<Value>| v.filter(|_| include_data);
    for (order, op) in journal.operations().iter().enumerate() {
        let kind = match op.kind {
            OperationType::Execution => "Execution",
            OperationType::Context => "Context",
            OperationType::Step => "Step",
            OperationType::Wait => "Wait",
            OperationType::Callback => "Callback",
            OperationType::ChainedInvoke => "ChainedInvoke",
        };
        let event = |ty: String, at: i64| {
            let mut m = Map::new();
            m.insert("EventType".into(), json!(ty));
            m.insert("Id".into(), json!(op.id));
            put(&mut m, "Name", op.name.as_ref().map(|n| json!(n)));
            put(&mut m, "SubType", op.sub_type.as_ref().map(|n| json!(n)));
            put(&mut m, "ParentId", op.parent_id.as_ref().map(|n| json!(n)));
            m.insert("EventTimestamp".into(), Timestamps::Seconds.write(at));
            m
        };
        let mut started = event(format!("{kind}Started"), op.start_ms);
        let details = match op.kind {
            OperationType::Execution => json!({
                "Input": {"Payload": data(op.input.as_ref().map(|i| json!(i)))},
                "ExecutionTimeout": timeout_s,
            }),
            OperationType::Wait => json!({
                "Duration": op.scheduled_end_ms.map(|e| (e - op.start_ms).max(0) / 1000),
                "ScheduledEndTimestamp": op.scheduled_end_ms.map(|e| Timestamps::Seconds.write(e)),
            }),
            OperationType::Callback => json!({
                "CallbackId": op.callback_id,
                "HeartbeatTimeout": op.heartbeat_seconds,
            }),
            _ => json!({}),
        };
        started.insert(format!("{kind}StartedDetails"), details);
        events.push((op.start_ms, order * 2, Value::Object(started)));
        let Some(end) = op.end_ms.filter(|_| op.status.is_final()) else {
            continue;
        };
        let outcome = match (op.kind, op.status) {
            (_, S::Succeeded) => "Succeeded",
            (OperationType::Wait, _) | (_, S::Cancelled) => "Cancelled",
            (_, S::TimedOut) => "TimedOut",
            (_, S::Stopped) => "Stopped",
            _ => "Failed",
        };
        let mut ended = event(format!("{kind}{outcome}"), end);
        let mut d = Map::new();
        if op.status == S::Succeeded {
            d.insert(
                "Result".into(),
                json!({"Payload": data(op.result.as_ref().map(|r| json!(r)))}),
            );
        } else if let Some(e) = data(error_json(&op.error)) {
            d.insert("Error".into(), json!({"Payload": e}));
        }
        if op.kind == OperationType::Step {
            d.insert(
                "RetryDetails".into(),
                json!({"CurrentAttempt": op.attempt.unwrap_or(0) + 1}),
            );
        }
        ended.insert(format!("{kind}{outcome}Details"), Value::Object(d));
        events.push((end, order * 2 + 1, Value::Object(ended)));
    }
    events.sort_by_key(|(at, order, _)| (*at, *order));
    events
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, mut e))| {
            e["EventId"] = json!(i + 1);
            e
        })
        .collect()
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
            parent_id: Some("execution".into()),
            name: Some("fetch".into()),
            sub_type: Some("Step".into()),
            ..OperationUpdate::new("s", OperationType::Step, OperationAction::Start)
        };
        j.checkpoint(1, None, &[start.clone()], 2_000, &mut |_: &str| "cb".into())
            .unwrap();
        start.action = OperationAction::Retry;
        start.step_options = Some(StepOptions {
            next_attempt_delay_seconds: Some(3),
        });
        j.checkpoint(2, None, &[start], 2_500, &mut |_: &str| "cb".into())
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
    fn history_lists_starts_and_ends_in_time_order() {
        let mut j = Journal::start(Some("{}".into()), 1_000);
        let step = OperationUpdate {
            name: Some("charge".into()),
            ..OperationUpdate::new("s", OperationType::Step, OperationAction::Start)
        };
        let mut done = step.clone();
        done.action = OperationAction::Succeed;
        done.payload = Some("\"ok\"".into());
        j.checkpoint(1, None, &[step], 2_000, &mut |_: &str| "cb".into())
            .unwrap();
        j.checkpoint(2, None, &[done], 3_000, &mut |_: &str| "cb".into())
            .unwrap();
        let events = history(&j, true, 60);
        let types: Vec<&str> = events
            .iter()
            .map(|e| e["EventType"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["ExecutionStarted", "StepStarted", "StepSucceeded"]);
        assert_eq!(events[0]["ExecutionStartedDetails"]["ExecutionTimeout"], 60);
        assert_eq!(events[2]["EventId"], 3);
        assert_eq!(
            events[2]["StepSucceededDetails"]["Result"]["Payload"],
            "\"ok\""
        );
        assert_eq!(
            events[2]["StepSucceededDetails"]["RetryDetails"]["CurrentAttempt"],
            1
        );
        let bare = history(&j, false, 60);
        assert!(bare[2]["StepSucceededDetails"]["Result"]["Payload"].is_null());
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
