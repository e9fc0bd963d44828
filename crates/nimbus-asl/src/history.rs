//! An execution's history in the shape of Step Functions' `GetExecutionHistory`, derived from
//! its journal: `ExecutionStarted`, each visit's `…StateEntered`/`…StateExited`, each task's
//! `TaskScheduled`/`TaskStarted`/(`TaskSubmitted`)/`TaskSucceeded`|`TaskFailed`|`TaskTimedOut`,
//! each Map iteration's `MapIterationStarted`/`…Succeeded`|`…Failed`, and the end. Events are
//! in time order, numbered from 1, each pointing at the one before.

use nimbus_durable::journal::Journal;
use nimbus_durable::model::{Operation, OperationStatus, OperationType};
use serde_json::{Map, Value, json};

use crate::machine::Transition;
use crate::replay::{failure_of, visit_transition};

fn parse(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// One event before numbering: when, a tie-breaker, its type and its details' field.
struct Event {
    at_ms: i64,
    order: (usize, u8),
    kind: String,
    details: Option<(&'static str, Value)>,
}

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn data(text: Option<&str>) -> Value {
    Value::String(text.unwrap_or("null").to_owned())
}

/// The events of `journal` (an execution of a state machine `machine_arn`, run with `role_arn`).
pub fn events(journal: &Journal, machine_arn: &str, role_arn: &str) -> Vec<Value> {
    let ops = journal.operations();
    let execution = &ops[0];
    let mut out = vec![Event {
        at_ms: execution.start_ms,
        order: (0, 0),
        kind: "ExecutionStarted".into(),
        details: Some((
            "executionStartedEventDetails",
            json!({"input": data(execution.input.as_deref()), "inputDetails": {"truncated": false},
                   "roleArn": role_arn, "stateMachineArn": machine_arn}),
        )),
    }];
    // The input of each visit: the output of the visit before it in the same scope.
    let mut next_input: std::collections::HashMap<String, String> =
        std::collections::HashMap::new();
    for (i, op) in ops.iter().enumerate().skip(1) {
        let mut at = |at_ms: i64, step: u8, kind: &str, details: Option<(&'static str, Value)>| {
            out.push(Event {
                at_ms,
                order: (i, step),
                kind: kind.to_owned(),
                details,
            });
        };
        match op.kind {
            OperationType::Step => {
                let (Some(name), Some(ty)) = (op.name.as_deref(), op.sub_type.as_deref()) else {
                    continue;
                };
                let scope = op.id.rsplit_once('.').map_or("", |(s, _)| s);
                // The execution's input for the first visit at the top; a branch's or an
                // iteration's first visit is not told its input by the journal.
                let input = next_input.get(scope).cloned().or_else(|| {
                    scope
                        .is_empty()
                        .then(|| execution.input.clone().unwrap_or_else(|| "null".into()))
                });
                let mut entered = Map::new();
                entered.insert("name".into(), json!(name));
                if let Some(input) = input {
                    entered.insert("input".into(), json!(input));
                    entered.insert("inputDetails".into(), json!({"truncated": false}));
                }
                at(
                    op.start_ms,
                    0,
                    &format!("{ty}StateEntered"),
                    Some(("stateEnteredEventDetails", Value::Object(entered))),
                );
                if op.status == OperationStatus::Succeeded {
                    let end = op.end_ms.unwrap_or(op.start_ms);
                    match visit_transition(op) {
                        Some(Transition::Next { input, .. }) | Some(Transition::End(input)) => {
                            let output = input.to_string();
                            next_input.insert(scope.to_owned(), output.clone());
                            at(
                                end,
                                9,
                                &format!("{ty}StateExited"),
                                Some((
                                    "stateExitedEventDetails",
                                    json!({"name": name, "output": output, "outputDetails": {"truncated": false}}),
                                )),
                            );
                        }
                        _ => {}
                    }
                }
            }
            OperationType::ChainedInvoke | OperationType::Callback => {
                // A token task's invoke (`….i`) is part of its callback's task: what it was
                // given (the token among it) is the task's parameters.
                let invoke = match op.kind {
                    OperationType::Callback => journal.operation(&format!("{}.i", op.id)),
                    _ if op.id.ends_with(".i") => continue,
                    _ => Some(op),
                };
                task_events(op, invoke, &mut at)
            }
            OperationType::Context => {
                // `VISIT.ATTEMPT.mINDEX`: an iteration of the Map state visited as VISIT.
                let Some((work, index)) = op.id.rsplit_once(".m") else {
                    continue;
                };
                let Ok(index) = index.parse::<u64>() else {
                    continue;
                };
                let visit = work.rsplit_once('.').map_or(work, |(v, _)| v);
                let name = journal
                    .operation(visit)
                    .and_then(|v| v.name.clone())
                    .unwrap_or_default();
                let details =
                    |field: &'static str| Some((field, json!({"name": name, "index": index})));
                at(
                    op.start_ms,
                    0,
                    "MapIterationStarted",
                    details("mapIterationStartedEventDetails"),
                );
                let end = op.end_ms.unwrap_or(op.start_ms);
                match op.status {
                    OperationStatus::Succeeded => at(
                        end,
                        9,
                        "MapIterationSucceeded",
                        details("mapIterationSucceededEventDetails"),
                    ),
                    OperationStatus::Failed => at(
                        end,
                        9,
                        "MapIterationFailed",
                        details("mapIterationFailedEventDetails"),
                    ),
                    _ => {}
                }
            }
            OperationType::Wait | OperationType::Execution => {}
        }
    }
    if let Some(end) = execution.end_ms {
        let failure = || failure_of(execution.error.as_ref());
        let (kind, details) = match execution.status {
            OperationStatus::Succeeded => (
                "ExecutionSucceeded",
                Some((
                    "executionSucceededEventDetails",
                    json!({"output": data(execution.result.as_deref()), "outputDetails": {"truncated": false}}),
                )),
            ),
            OperationStatus::Failed => {
                let f = failure();
                (
                    "ExecutionFailed",
                    Some((
                        "executionFailedEventDetails",
                        json!({"error": f.error, "cause": f.cause.unwrap_or_default()}),
                    )),
                )
            }
            OperationStatus::TimedOut => (
                "ExecutionTimedOut",
                Some(("executionTimedOutEventDetails", json!({}))),
            ),
            _ => {
                let error = execution.error.clone().unwrap_or_default();
                (
                    "ExecutionAborted",
                    Some((
                        "executionAbortedEventDetails",
                        json!({"error": error.error_type.unwrap_or_default(), "cause": error.error_message.unwrap_or_default()}),
                    )),
                )
            }
        };
        out.push(Event {
            at_ms: end,
            order: (usize::MAX, 0),
            kind: kind.into(),
            details,
        });
    }
    out.sort_by_key(|e| (e.at_ms, e.order));
    out.into_iter()
        .enumerate()
        .map(|(i, e)| {
            let mut event = json!({"id": i + 1, "previousEventId": i, "timestamp": seconds(e.at_ms), "type": e.kind});
            if let Some((field, details)) = e.details {
                event[field] = details;
            }
            event
        })
        .collect()
}

/// A task's `resourceType` and `resource`: a service integration's (`sqs`, `sendMessage`)
/// from the ARN its invoke is named by, or a function's (`lambda`, `invoke`).
fn resource_of(invoke: Option<&Operation>) -> (&str, &str) {
    invoke
        .and_then(|i| i.name.as_deref())
        .and_then(|n| n.strip_prefix("arn:aws:states:::"))
        .and_then(|rest| rest.split_once(':'))
        .filter(|(service, _)| *service != "lambda")
        .unwrap_or(("lambda", "invoke"))
}

fn task_events(
    op: &Operation,
    invoke: Option<&Operation>,
    at: &mut impl FnMut(i64, u8, &str, Option<(&'static str, Value)>),
) {
    let payload = invoke.and_then(|i| i.input.as_deref());
    let (resource_type, resource) = resource_of(invoke);
    let resource = json!({"resourceType": resource_type, "resource": resource});
    // A function's payload as Lambda's `Invoke` parameters; a service's parameters as given.
    let parameters = if resource_type == "lambda" {
        json!({"Payload": parse(payload)})
    } else {
        parse(payload)
    };
    let with = |extra: Value| {
        let mut d = resource.clone();
        if let (Value::Object(d), Value::Object(extra)) = (&mut d, extra) {
            d.extend(extra);
        }
        d
    };
    at(
        op.start_ms,
        1,
        "TaskScheduled",
        Some((
            "taskScheduledEventDetails",
            with(json!({"region": "local", "parameters": parameters.to_string()})),
        )),
    );
    at(
        op.start_ms,
        2,
        "TaskStarted",
        Some(("taskStartedEventDetails", resource.clone())),
    );
    if op.kind == OperationType::Callback {
        at(
            op.start_ms,
            3,
            "TaskSubmitted",
            Some(("taskSubmittedEventDetails", with(json!({"output": "{}"})))),
        );
    }
    let end = op.end_ms.unwrap_or(op.start_ms);
    match op.status {
        OperationStatus::Succeeded => at(
            end,
            8,
            "TaskSucceeded",
            Some((
                "taskSucceededEventDetails",
                with(json!({"output": data(op.result.as_deref())})),
            )),
        ),
        OperationStatus::Failed => {
            let f = failure_of(op.error.as_ref());
            at(
                end,
                8,
                "TaskFailed",
                Some((
                    "taskFailedEventDetails",
                    with(json!({"error": f.error, "cause": f.cause.unwrap_or_default()})),
                )),
            );
        }
        OperationStatus::TimedOut => at(
            end,
            8,
            "TaskTimedOut",
            Some((
                "taskTimedOutEventDetails",
                with(json!({"error": "States.Timeout"})),
            )),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use nimbus_durable::model::{ChainedInvokeOptions, OperationAction, OperationUpdate};

    use super::*;

    fn update(id: &str, kind: OperationType, action: OperationAction) -> OperationUpdate {
        OperationUpdate {
            parent_id: Some("e1".into()),
            ..OperationUpdate::new(id, kind, action)
        }
    }

    #[test]
    fn a_service_task_is_scheduled_with_its_service_and_parameters() {
        let mut journal = Journal::start_as("e1", Some("{}".into()), 1_000);
        let mut invoke = update("s0.0", OperationType::ChainedInvoke, OperationAction::Start);
        invoke.name = Some("arn:aws:states:::sqs:sendMessage".into());
        invoke.payload = Some(json!({"QueueUrl": "q", "MessageBody": "hi"}).to_string());
        invoke.chained_invoke_options = Some(ChainedInvokeOptions {
            function_name: "arn:aws:states:::sqs:sendMessage".into(),
        });
        journal
            .checkpoint(1, None, &[invoke], 2_000, &mut |id| id.to_owned())
            .unwrap();
        let events = events(&journal, "arn:m", "arn:r");
        let scheduled = events
            .iter()
            .find(|e| e["type"] == "TaskScheduled")
            .unwrap();
        let details = &scheduled["taskScheduledEventDetails"];
        assert_eq!(details["resourceType"], "sqs");
        assert_eq!(details["resource"], "sendMessage");
        let parameters: Value =
            serde_json::from_str(details["parameters"].as_str().unwrap()).unwrap();
        assert_eq!(parameters, json!({"QueueUrl": "q", "MessageBody": "hi"}));
    }

    #[test]
    fn a_task_visit_reads_as_the_documented_events() {
        let mut journal = Journal::start_as("e1", Some("{\"n\":1}".into()), 1_000);
        let mut visit = update("s0", OperationType::Step, OperationAction::Start);
        visit.name = Some("Work".into());
        visit.sub_type = Some("Task".into());
        let mut invoke = update("s0.0", OperationType::ChainedInvoke, OperationAction::Start);
        invoke.chained_invoke_options = Some(ChainedInvokeOptions {
            function_name: "f".into(),
        });
        journal
            .checkpoint(1, None, &[visit, invoke], 2_000, &mut |id| id.to_owned())
            .unwrap();
        journal
            .chained_invoke_finished("s0.0", Ok(Some("{\"n\":2}".into())), 3_000)
            .unwrap();
        let mut done = update("s0", OperationType::Step, OperationAction::Succeed);
        done.payload = Some(json!({"End": {"n": 2}}).to_string());
        journal
            .checkpoint(2, None, &[done], 3_500, &mut |id| id.to_owned())
            .unwrap();
        journal.settle(
            nimbus_durable::model::InvocationOutput::Succeeded(Some("{\"n\":2}".into())),
            4_000,
        );
        let events = events(&journal, "arn:m", "arn:r");
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "ExecutionStarted",
                "TaskStateEntered",
                "TaskScheduled",
                "TaskStarted",
                "TaskSucceeded",
                "TaskStateExited",
                "ExecutionSucceeded"
            ]
        );
        assert_eq!(
            events[0]["executionStartedEventDetails"]["input"],
            json!("{\"n\":1}")
        );
        assert_eq!(
            events[1]["stateEnteredEventDetails"],
            json!({"name": "Work", "input": "{\"n\":1}", "inputDetails": {"truncated": false}})
        );
        assert_eq!(
            events[4]["taskSucceededEventDetails"]["output"],
            json!("{\"n\":2}")
        );
        assert_eq!(
            events[5]["stateExitedEventDetails"]["output"],
            json!("{\"n\":2}")
        );
        assert_eq!(events[6]["id"], json!(7));
        assert_eq!(events[6]["previousEventId"], json!(6));
        assert_eq!(events[6]["timestamp"], json!(4.0));
    }
}
