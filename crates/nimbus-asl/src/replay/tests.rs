//! The replayer over the real journal, with a small engine: checkpoint what a pass asks for,
//! answer invokes with a closure, fire timers in time order, answer token callbacks.

use nimbus_durable::journal::{Effect, Journal};
use serde_json::json;

use super::*;

type Answer<'a> = dyn FnMut(&str, &Value) -> Result<Value, ErrorObject> + 'a;
/// Answers a task token (or leaves it waiting: `None`).
type Tokens<'a> = dyn FnMut(&str, &mut Engine) -> Option<Result<Value, ErrorObject>> + 'a;

struct Engine {
    journal: Journal,
    now: i64,
    /// The most invokes outstanding at once.
    most_in_flight: usize,
    invokes: Vec<(String, Value)>,
    waits: Vec<u64>,
    /// Task tokens handed out, answered after each round by `tokens`.
    tokens: Vec<String>,
}

const START: i64 = 1_700_000_000_000;
/// An answer that leaves the invoke running.
const HANG: &str = "test.Hang";

fn error(kind: &str, message: &str) -> ErrorObject {
    ErrorObject {
        error_type: Some(kind.into()),
        error_message: Some(message.into()),
        ..Default::default()
    }
}

fn execute(definition: Value, input: Value, answer: &mut Answer<'_>) -> (Outcome, Engine) {
    execute_with(definition, input, answer, &mut |_, _| None)
}

/// Runs to the end; `tokens` answers a handed-out token (or leaves it waiting).
fn execute_with(
    definition: Value,
    input: Value,
    answer: &mut Answer<'_>,
    tokens: &mut Tokens<'_>,
) -> (Outcome, Engine) {
    let definition = Definition::from_value(&definition).expect("valid");
    let run = Run {
        definition: &definition,
        execution_arn: "arn:aws:states:us-east-1:000000000000:execution:m:e1",
        execution_name: "e1",
        machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:m",
        machine_name: "m",
        role_arn: "arn:aws:iam::000000000000:role/r",
    };
    let journal =
        Journal::start_as("e1", Some(input.to_string()), START).with_max_operations(100_000);
    let mut engine = Engine {
        journal,
        now: START,
        most_in_flight: 0,
        invokes: Vec::new(),
        waits: Vec::new(),
        tokens: Vec::new(),
    };
    let mut effects = Vec::new();
    for _ in 0..100_000 {
        let pass = turn(&run, &engine.journal, engine.now);
        if !pass.updates.is_empty() {
            for u in &pass.updates {
                if let Some(w) = &u.wait_options {
                    engine.waits.push(w.wait_seconds.unwrap_or(0));
                }
            }
            let token = engine.journal.token();
            let done = engine
                .journal
                .checkpoint(token, None, &pass.updates, engine.now, &mut |id| {
                    format!("token-{id}")
                })
                .unwrap_or_else(|e| {
                    panic!(
                        "checkpoint refused: {e} with {} operations",
                        engine.journal.operations().len()
                    )
                });
            effects.extend(done.effects);
            continue;
        }
        if pass.outcome != Outcome::Pending {
            return (pass.outcome, engine);
        }
        // A token handed out in an invoke's payload may be answered now.
        let handed: Vec<String> = std::mem::take(&mut engine.tokens);
        let mut answered = false;
        for t in handed {
            match tokens(&t, &mut engine) {
                Some(outcome) => {
                    engine
                        .journal
                        .complete_callback(&t, outcome.map(|v| Some(v.to_string())), engine.now)
                        .unwrap();
                    answered = true;
                }
                None => engine.tokens.push(t),
            }
        }
        if answered {
            continue;
        }
        let invokes: Vec<Effect> = effects
            .iter()
            .filter(|e| matches!(e, Effect::Invoke { .. }))
            .cloned()
            .collect();
        engine.most_in_flight = engine.most_in_flight.max(invokes.len());
        effects.retain(|e| matches!(e, Effect::Timer { .. }));
        if !invokes.is_empty() {
            for effect in invokes {
                let Effect::Invoke {
                    id,
                    function,
                    payload,
                } = effect
                else {
                    unreachable!()
                };
                let payload: Value =
                    serde_json::from_str(payload.as_deref().unwrap_or("null")).unwrap();
                if let Some(token) = payload.get("token").and_then(Value::as_str) {
                    engine.tokens.push(token.to_owned());
                }
                engine.invokes.push((function.clone(), payload.clone()));
                let outcome = answer(&function, &payload).map(|v| Some(v.to_string()));
                // An invoke that never answers (until a timeout ends the task).
                if outcome
                    .as_ref()
                    .is_err_and(|e| e.error_type.as_deref() == Some(HANG))
                {
                    continue;
                }
                engine
                    .journal
                    .chained_invoke_finished(&id, outcome, engine.now)
                    .unwrap();
            }
            continue;
        }
        // The earliest timer fires.
        effects.sort_by_key(|e| match e {
            Effect::Timer { at_ms, .. } => *at_ms,
            _ => 0,
        });
        assert!(!effects.is_empty(), "pending with nothing to wait for");
        let Effect::Timer { id, kind, at_ms } = effects.remove(0) else {
            unreachable!()
        };
        engine.now = engine.now.max(at_ms);
        engine.journal.timer_fired(&id, kind, engine.now);
    }
    panic!("did not settle")
}

/// A run of `definition` with placeholder names.
fn run_of(definition: &Definition) -> Run<'_> {
    Run {
        definition,
        execution_arn: "arn",
        execution_name: "e",
        machine_arn: "m",
        machine_name: "m",
        role_arn: "r",
    }
}

fn echo(_: &str, payload: &Value) -> Result<Value, ErrorObject> {
    Ok(payload.clone())
}

#[test]
fn a_chain_of_tasks_journals_each_visit_and_replays_to_the_same_end() {
    let definition = json!({"StartAt": "One", "States": {
        "One": {"Type": "Task", "Resource": "add", "Next": "Two"},
        "Two": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:add:live", "Next": "Three"},
        "Three": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                  "Parameters": {"FunctionName": "add", "Payload.$": "$"}, "OutputPath": "$.Payload", "End": true}
    }});
    let mut add = |function: &str, payload: &Value| {
        assert!(function == "add" || function == "add:live", "{function}");
        Ok(json!({"n": payload["n"].as_i64().unwrap() + 1}))
    };
    let (outcome, engine) = execute(definition.clone(), json!({"n": 0}), &mut add);
    assert_eq!(outcome, Outcome::Succeeded(json!({"n": 3})));
    assert_eq!(
        engine
            .invokes
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        ["add", "add:live", "add"]
    );
    // Three visits and three invokes besides the execution.
    let ops = engine.journal.operations();
    assert_eq!(ops.len(), 7);
    assert_eq!(ops[1].name.as_deref(), Some("One"));
    assert_eq!(ops[1].sub_type.as_deref(), Some("Task"));
    // A replay of the ended journal asks for nothing and tells the same end.
    let definition = Definition::from_value(&definition).unwrap();
    let run = Run {
        definition: &definition,
        execution_arn: "arn:aws:states:us-east-1:000000000000:execution:m:e1",
        execution_name: "e1",
        machine_arn: "m",
        machine_name: "m",
        role_arn: "r",
    };
    let again = turn(&run, &engine.journal, engine.now + 1_000_000);
    assert!(again.updates.is_empty());
    assert_eq!(again.outcome, Outcome::Succeeded(json!({"n": 3})));
}

#[test]
fn retries_wait_durably_between_attempts() {
    let definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "flaky", "End": true,
        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 3}]}}});
    let mut calls = 0;
    let mut flaky = |_: &str, _: &Value| {
        calls += 1;
        if calls <= 2 {
            Err(error("Flaky", "not yet"))
        } else {
            Ok(json!("ok"))
        }
    };
    let (outcome, engine) = execute(definition, json!({}), &mut flaky);
    assert_eq!(outcome, Outcome::Succeeded(json!("ok")));
    assert_eq!(engine.waits, [2, 6]);
    assert_eq!(engine.now - START, 8000, "the clock moved by the two waits");
}

#[test]
fn exhausted_retries_fail_the_execution_with_the_task_error() {
    let definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "broken", "End": true,
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}]}}});
    let (outcome, engine) = execute(definition, json!({}), &mut |_, _| {
        Err(error("ValueError", "bad input"))
    });
    assert_eq!(
        outcome,
        Outcome::Failed(Failure::new("ValueError", "bad input"))
    );
    assert_eq!(engine.invokes.len(), 2);
}

#[test]
fn parallel_with_a_failing_branch_caught() {
    let definition = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "Done", "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
              "Branches": [
                  {"StartAt": "Fine", "States": {"Fine": {"Type": "Task", "Resource": "fine", "End": true}}},
                  {"StartAt": "Broken", "States": {"Broken": {"Type": "Task", "Resource": "broken", "End": true}}}
              ]},
        "Done": {"Type": "Succeed"},
        "Caught": {"Type": "Pass", "End": true}
    }});
    let mut answer = |function: &str, _: &Value| match function {
        "fine" => Ok(json!(1)),
        _ => Err(error("Boom", "branch 1 broke")),
    };
    let (outcome, _) = execute(definition.clone(), json!({"x": 1}), &mut answer);
    assert_eq!(
        outcome,
        Outcome::Succeeded(json!({"x": 1, "error": {"Error": "Boom", "Cause": "branch 1 broke"}}))
    );
    let (outcome, _) = execute(definition, json!({"x": 1}), &mut |_, _| Ok(json!("ok")));
    assert_eq!(
        outcome,
        Outcome::Succeeded(json!(["ok", "ok"])),
        "the branches' outputs, in order"
    );
}

#[test]
fn map_keeps_to_its_concurrency_and_orders_results() {
    let definition = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 3, "End": true,
        "ItemProcessor": {"StartAt": "Sq", "States": {"Sq": {"Type": "Task", "Resource": "square", "End": true}}}}}});
    let items: Vec<i64> = (0..1500).collect();
    let (outcome, engine) = execute(definition, json!(items), &mut |_, v| {
        Ok(json!(v.as_i64().unwrap().pow(2)))
    });
    let expected: Vec<i64> = (0..1500).map(|i: i64| i * i).collect();
    assert_eq!(outcome, Outcome::Succeeded(json!(expected)));
    assert_eq!(engine.most_in_flight, 3);
    assert_eq!(engine.invokes.len(), 1500);
    assert!(
        engine.journal.operations().len() > nimbus_durable::journal::MAX_OPERATIONS,
        "more than a handler's journal holds"
    );
}

#[test]
fn map_without_a_limit_runs_every_item_at_once() {
    let definition = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemSelector": {"i.$": "$$.Map.Item.Index"},
        "ItemProcessor": {"StartAt": "Id", "States": {"Id": {"Type": "Task", "Resource": "id", "End": true}}}}}});
    let (outcome, engine) = execute(
        definition,
        json!({"items": ["a", "b", "c", "d"]}),
        &mut echo,
    );
    assert_eq!(
        outcome,
        Outcome::Succeeded(json!([{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]))
    );
    assert_eq!(engine.most_in_flight, 4);
}

fn token_machine(heartbeat: bool) -> Value {
    let mut task = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "approver", "Payload": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
        "TimeoutSeconds": 3600, "ResultPath": "$.approval", "End": true,
        "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "TimedOut"}]});
    if heartbeat {
        task["HeartbeatSeconds"] = json!(60);
    }
    json!({"StartAt": "Approve", "States": {"Approve": task, "TimedOut": {"Type": "Pass", "End": true}}})
}

#[test]
fn task_tokens_hand_out_the_callback_and_take_its_answer() {
    let mut seen = Vec::new();
    let (outcome, engine) = execute_with(
        token_machine(false),
        json!({"order": 7}),
        &mut echo,
        &mut |token, _| {
            seen.push(token.to_owned());
            Some(Ok(json!({"approved": true})))
        },
    );
    assert_eq!(
        outcome,
        Outcome::Succeeded(json!({"order": 7, "approval": {"approved": true}}))
    );
    assert_eq!(engine.invokes[0].1, json!({"token": seen[0], "order": 7}));
    assert!(
        seen[0].starts_with("token-"),
        "the callback id is the token: {seen:?}"
    );
}

#[test]
fn a_silent_token_task_times_out_by_its_heartbeat() {
    let (outcome, engine) = execute_with(
        token_machine(true),
        json!({"order": 7}),
        &mut echo,
        &mut |_, _| None,
    );
    let Outcome::Succeeded(output) = outcome else {
        panic!("caught: {outcome:?}")
    };
    assert_eq!(output["error"]["Error"], json!(errors::HEARTBEAT_TIMEOUT));
    assert_eq!(
        engine.now - START,
        60_000,
        "the heartbeat timer, not the task timeout"
    );
    let (outcome, engine) = execute_with(
        token_machine(false),
        json!({"order": 7}),
        &mut echo,
        &mut |_, _| None,
    );
    let Outcome::Succeeded(output) = outcome else {
        panic!("caught: {outcome:?}")
    };
    assert_eq!(output["error"]["Error"], json!(errors::TIMEOUT));
    assert_eq!(engine.now - START, 3_600_000);
}

#[test]
fn a_token_task_whose_invoke_fails_fails() {
    let (outcome, _) = execute_with(
        token_machine(false),
        json!({"order": 7}),
        &mut |_, _| Err(error("Unreachable", "no")),
        &mut |_, _| None,
    );
    assert_eq!(outcome, Outcome::Failed(Failure::new("Unreachable", "no")));
}

#[test]
fn waits_and_passes_with_randomness_are_stable() {
    let definition = json!({"StartAt": "Id", "States": {
        "Id": {"Type": "Pass", "Parameters": {"id.$": "States.UUID()", "n.$": "States.MathRandom(0, 1000000)"}, "Next": "Nap"},
        "Nap": {"Type": "Wait", "Seconds": 30, "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}
    }});
    let (first, engine) = execute(definition.clone(), json!({}), &mut echo);
    let (second, _) = execute(definition, json!({}), &mut echo);
    assert_eq!(first, second, "the same execution replays the same values");
    assert_eq!(engine.waits, [30]);
    let Outcome::Succeeded(out) = first else {
        panic!()
    };
    assert_eq!(out["id"].as_str().unwrap().len(), 36);
}

#[test]
fn resources_nimbus_cannot_run_are_listed() {
    let definition = Definition::from_value(&json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem", "Next": "B"},
        "B": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "C", "States": {"C": {"Type": "Task", "Resource": "fine-name", "End": true}}}]}
    }}))
    .unwrap();
    let bad = unsupported_resources(&definition);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, "/States/A/Resource");
    assert_eq!(
        target("arn:aws:lambda:us-east-1:1:function:f").unwrap(),
        Target::Function {
            name: "f".into(),
            integration: false
        }
    );
    assert!(target("arn:aws:lambda:us-east-1:1:layer:f").is_err());
    assert!(target("some name").is_err());
}

#[test]
fn a_loop_of_states_without_work_goes_on_pass_by_pass() {
    let definition = Definition::from_value(&json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": true, "Next": "End"}], "Default": "A"},
        "End": {"Type": "Succeed"}
    }}))
    .unwrap();
    let run = run_of(&definition);
    let journal = Journal::start_as("e1", Some("{}".into()), START).with_max_operations(100_000);
    let pass = turn(&run, &journal, START);
    assert_eq!(pass.outcome, Outcome::Pending);
    assert!(
        pass.updates.len() >= PASS_LIMIT && pass.updates.len() <= PASS_LIMIT + 2,
        "{}",
        pass.updates.len()
    );
}

#[test]
fn service_integrations_go_to_the_engine_by_their_resource() {
    let definition = json!({"StartAt": "Send", "States": {
        "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": "http://127.0.0.1/000000000000/q", "MessageBody.$": "$.m"},
            "ResultPath": "$.sent", "Next": "Nested"},
        "Nested": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:c"},
            "ResultSelector": {"out.$": "$.Output"}, "ResultPath": "$.nested", "Next": "Handed"},
        "Handed": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish.waitForTaskToken",
            "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:0:t", "Message": "go", "token.$": "$$.Task.Token"},
            "ResultPath": "$.answer", "End": true}
    }});
    let mut answer = |resource: &str, params: &Value| -> Result<Value, ErrorObject> {
        Ok(match resource {
            SQS_SEND_MESSAGE => json!({"MessageId": "m1", "body": params["MessageBody"]}),
            // The engine answers `.sync` in the text shape; `.sync:2` parses it.
            "arn:aws:states:::states:startExecution.sync:2" => {
                json!({"Status": "SUCCEEDED", "Output": "{\"x\":1}"})
            }
            SNS_PUBLISH => json!({"MessageId": "p1"}),
            other => panic!("unexpected {other}"),
        })
    };
    let (outcome, engine) = execute_with(
        definition,
        json!({"m": "hello"}),
        &mut answer,
        &mut |_, _| Some(Ok(json!({"ok": true}))),
    );
    let Outcome::Succeeded(out) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(out["sent"], json!({"MessageId": "m1", "body": "hello"}));
    assert_eq!(out["nested"], json!({"out": {"x": 1}}));
    assert_eq!(out["answer"], json!({"ok": true}));
    let called: Vec<&str> = engine.invokes.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        called,
        [
            SQS_SEND_MESSAGE,
            "arn:aws:states:::states:startExecution.sync:2",
            SNS_PUBLISH
        ]
    );
    // A .sync task cannot also wait for a token; unknown service actions are not run.
    assert!(target("arn:aws:states:::states:startExecution.sync.waitForTaskToken").is_err());
    assert!(target("arn:aws:states:::sqs:receiveMessage").is_err());
    assert_eq!(
        target("arn:aws:states:::sqs:sendMessage.waitForTaskToken").unwrap(),
        Target::Service(Service::SqsSendMessage)
    );
}

#[test]
fn a_task_past_its_timeout_seconds_fails_with_states_timeout() {
    let definition = json!({"StartAt": "Slow", "States": {
        "Slow": {"Type": "Task", "Resource": "slow", "TimeoutSeconds": 5,
            "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1, "IntervalSeconds": 1}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
        "Caught": {"Type": "Pass", "End": true}
    }});
    let mut answer = |_: &str, _: &Value| Err(error(HANG, "never"));
    let (outcome, engine) = execute(definition, json!({}), &mut answer);
    let Outcome::Succeeded(out) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(out["Error"], "States.Timeout", "{out}");
    assert_eq!(engine.invokes.len(), 2, "the attempt and its one retry");
    // Each attempt's timer, and the retry's delay.
    assert_eq!(engine.waits, [5, 1, 5]);
    // Ended in time: the answer, and the timer is left to fire unread.
    let fast = json!({"StartAt": "Fast", "States": {
        "Fast": {"Type": "Task", "Resource": "fast", "TimeoutSeconds": 5, "End": true}}});
    let (outcome, _) = execute(fast, json!({"n": 1}), &mut echo);
    assert_eq!(outcome, Outcome::Succeeded(json!({"n": 1})));
}

#[test]
fn a_redriven_execution_runs_again_from_what_failed() {
    let definition = Definition::from_value(&json!({"StartAt": "A", "States": {
        "A": {"Type": "Task", "Resource": "a", "Next": "M"},
        "M": {"Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.m", "End": true,
            "ItemProcessor": {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "b", "End": true}}}}
    }}))
    .unwrap();
    let run = run_of(&definition);
    let mut journal = Journal::start_as("e1", Some(r#"{"items": [1, 2, 3]}"#.into()), START);
    // Item 2 fails the first time round.
    let mut calls: Vec<(String, Value)> = Vec::new();
    let drive = |journal: &mut Journal, calls: &mut Vec<(String, Value)>, failing: bool| loop {
        let pass = turn(&run, journal, START);
        if pass.updates.is_empty() {
            return pass.outcome;
        }
        let token = journal.token();
        let done = journal
            .checkpoint(token, None, &pass.updates, START, &mut |id| id.to_owned())
            .unwrap();
        for effect in done.effects {
            if let Effect::Invoke {
                id,
                function,
                payload,
            } = effect
            {
                let payload: Value = serde_json::from_str(payload.as_deref().unwrap()).unwrap();
                calls.push((function.clone(), payload.clone()));
                let outcome = if failing && payload == json!(2) {
                    Err(error("Boom", "item 2"))
                } else {
                    Ok(Some(payload.to_string()))
                };
                journal
                    .chained_invoke_finished(&id, outcome, START)
                    .unwrap();
            }
        }
    };
    let first = drive(&mut journal, &mut calls, true);
    assert!(
        matches!(first, Outcome::Failed(ref f) if f.error == "Boom"),
        "{first:?}"
    );
    // The engine ends the execution with the failure.
    let Outcome::Failed(failure) = first else {
        unreachable!()
    };
    journal.settle(
        nimbus_durable::model::InvocationOutput::Failed(error_of(&failure)),
        START,
    );
    assert!(journal.status().is_final());
    assert_eq!(calls.len(), 4, "a, then the three items");
    assert!(journal.redrive(kept_on_redrive, START));
    assert!(!journal.status().is_final());
    assert_eq!(journal.redriven(), Some((1, START)));
    let second = drive(&mut journal, &mut calls, false);
    assert_eq!(
        second,
        Outcome::Succeeded(json!({"items": [1, 2, 3], "m": [1, 2, 3]}))
    );
    // Only item 2 ran again: a and the items that succeeded were read from the journal.
    assert_eq!(calls.len(), 5, "{calls:?}");
    assert_eq!(calls[4], ("b".to_owned(), json!(2)));
    // A running or succeeded execution is not redriven.
    assert!(!journal.redrive(kept_on_redrive, START));
}
