//! The interpreter driven to the end by a small synchronous driver: tasks answered by a
//! closure, waits and retry delays recorded instead of slept, branches and iterations run one
//! after another.

use rand::{SeedableRng, rngs::StdRng};
use serde_json::json;

use super::*;
use crate::definition::Definition;

type Tasks<'t> = dyn FnMut(&TaskCall) -> Result<Value, Failure> + 't;

struct Driver<'t> {
    tasks: &'t mut Tasks<'t>,
    /// What happened that takes time: `wait 3000`, `retry 2000`.
    log: Vec<String>,
    now_ms: i64,
    rng: StdRng,
}

const NOW: i64 = 1_700_000_000_000;

fn run(
    definition: Value,
    input: Value,
    tasks: &mut Tasks<'_>,
) -> (Result<Value, Failure>, Vec<String>) {
    let definition = Definition::from_value(&definition).expect("a valid definition");
    let mut driver = Driver {
        tasks,
        log: Vec::new(),
        now_ms: NOW,
        rng: StdRng::seed_from_u64(3),
    };
    let out = driver.scope(&definition.root, input);
    (out, driver.log)
}

fn no_tasks(call: &TaskCall) -> Result<Value, Failure> {
    panic!("no task expected, got {call:?}")
}

impl Driver<'_> {
    fn scope(&mut self, scope: &Scope, input: Value) -> Result<Value, Failure> {
        let mut transition = scope.start(input);
        loop {
            transition = match transition {
                Transition::End(output) => return Ok(output),
                Transition::Fail(failure) => return Err(failure),
                Transition::Next { state, input } => {
                    self.state(scope.state(&state).expect("validated"), input)
                }
            };
        }
    }

    fn state(&mut self, state: &State, input: Value) -> Transition {
        let mut attempts = Vec::new();
        loop {
            let context = json!({
                "Execution": {"Id": "arn:aws:states:us-east-1:000000000000:execution:machine:run-1", "Name": "run-1"},
                "State": {"Name": state.name, "RetryCount": attempts.iter().sum::<u32>()}
            });
            let entered = state.enter(
                &input,
                &mut Env {
                    context: &context,
                    now_ms: self.now_ms,
                    rng: &mut self.rng,
                },
            );
            let result = match entered {
                Ok(Action::Go(transition)) => return transition,
                Ok(Action::Wait { until_ms, then }) => {
                    self.log.push(format!("wait {}", until_ms - self.now_ms));
                    self.now_ms = self.now_ms.max(until_ms);
                    return then;
                }
                Ok(Action::Task(call)) => (self.tasks)(&call),
                Ok(Action::Parallel {
                    input: branch_input,
                }) => {
                    let Kind::Parallel(branches) = &state.kind else {
                        unreachable!()
                    };
                    let outputs = branches
                        .iter()
                        .map(|b| self.scope(b, branch_input.clone()))
                        .collect();
                    parallel_result(outputs)
                }
                Ok(Action::Map(map_run)) => {
                    let Kind::Map(map) = &state.kind else {
                        unreachable!()
                    };
                    self.log.push(format!(
                        "map {} at most {}",
                        map_run.inputs.len(),
                        map_run.max_concurrency
                    ));
                    let outcomes = map_run
                        .inputs
                        .iter()
                        .map(|i| self.scope(&map.processor, i.clone()))
                        .collect();
                    map_run.result(outcomes)
                }
                Err(failure) => Err(failure),
            };
            let completed = result.and_then(|r| {
                state.complete(
                    &input,
                    r,
                    &mut Env {
                        context: &context,
                        now_ms: self.now_ms,
                        rng: &mut self.rng,
                    },
                )
            });
            let failure = match completed {
                Ok(transition) => return transition,
                Err(failure) => failure,
            };
            match state.recover(&input, failure, &mut attempts, &mut self.rng) {
                Recovery::Retry { delay_ms } => {
                    self.log.push(format!("retry {delay_ms}"));
                    self.now_ms += delay_ms as i64;
                }
                Recovery::Catch(transition) => return transition,
                Recovery::Fail(failure) => return Transition::Fail(failure),
            }
        }
    }
}

#[test]
fn pass_result_placed_by_result_path() {
    // The developer guide's Pass state example.
    let definition = json!({"StartAt": "Pass", "States": {"Pass": {
        "Type": "Pass", "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355}, "ResultPath": "$.coords", "End": true
    }}});
    let (out, _) = run(definition, json!({"georefOf": "Home"}), &mut no_tasks);
    assert_eq!(
        out.unwrap(),
        json!({"georefOf": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}})
    );
}

#[test]
fn input_and_output_processing_in_order() {
    // The guide's InputPath / ResultPath / OutputPath example, then Parameters and ResultSelector.
    let definition = json!({"StartAt": "Hello", "States": {
        "Hello": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:HelloFunction",
                  "InputPath": "$.lambda", "ResultPath": "$.data.lambdaresult", "OutputPath": "$.data", "Next": "Shape"},
        "Shape": {"Type": "Task", "Resource": "shape",
                  "Parameters": {"sum.$": "States.MathAdd($.val1, $.val2)", "run.$": "$$.Execution.Name", "fixed": [1, {"n.$": "$.val1"}]},
                  "ResultSelector": {"echo.$": "$.echo", "kept": true}, "ResultPath": "$.shaped", "End": true}
    }});
    let input = json!({"comment": "An input comment.", "data": {"val1": 23, "val2": 17}, "extra": "foo", "lambda": {"who": "AWS Step Functions"}});
    let mut calls = Vec::new();
    let (out, _) = run(definition, input, &mut |call| {
        calls.push(call.clone());
        match call.resource.as_str() {
            "shape" => Ok(json!({"echo": call.payload, "noise": 1})),
            _ => Ok(json!(format!(
                "Hello, {}!",
                call.payload["who"].as_str().unwrap()
            ))),
        }
    });
    assert_eq!(calls[0].payload, json!({"who": "AWS Step Functions"}));
    assert_eq!(
        calls[1].payload,
        json!({"sum": 40, "run": "run-1", "fixed": [1, {"n": 23}]})
    );
    assert_eq!(
        out.unwrap(),
        json!({"val1": 23, "val2": 17, "lambdaresult": "Hello, AWS Step Functions!",
               "shaped": {"echo": {"sum": 40, "run": "run-1", "fixed": [1, {"n": 23}]}, "kept": true}})
    );
}

#[test]
fn null_paths_discard() {
    let definition = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "InputPath": null, "Result": "dropped", "ResultPath": null, "Next": "B"},
        "B": {"Type": "Pass", "OutputPath": null, "End": true}
    }});
    let (out, _) = run(definition, json!({"x": 1}), &mut no_tasks);
    assert_eq!(out.unwrap(), json!({}));
    let definition = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": null, "ResultPath": null, "End": true}}});
    assert_eq!(
        run(definition, json!({"x": 1}), &mut no_tasks).0.unwrap(),
        json!({"x": 1})
    );
}

fn flaky(failures: usize, error: &'static str) -> impl FnMut(&TaskCall) -> Result<Value, Failure> {
    let mut left = failures;
    move |_call| {
        if left > 0 {
            left -= 1;
            return Err(Failure::new(error, "it broke"));
        }
        Ok(json!("done"))
    }
}

#[test]
fn retry_backs_off_then_succeeds() {
    let definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "f", "End": true,
        "Retry": [{"ErrorEquals": ["Other"], "MaxAttempts": 5},
                  {"ErrorEquals": ["Boom"], "IntervalSeconds": 3, "MaxAttempts": 3, "BackoffRate": 2.0, "MaxDelaySeconds": 10}]}}});
    let (out, log) = run(definition, json!({}), &mut flaky(3, "Boom"));
    assert_eq!(out.unwrap(), json!("done"));
    assert_eq!(
        log,
        ["retry 3000", "retry 6000", "retry 10000"],
        "backoff, capped by MaxDelaySeconds"
    );
}

#[test]
fn retries_run_out_then_a_catcher_takes_the_error() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "f", "End": true,
              "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2, "IntervalSeconds": 1}],
              "Catch": [{"ErrorEquals": ["Nope"], "Next": "Wrong"}, {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handle"}]},
        "Wrong": {"Type": "Fail"},
        "Handle": {"Type": "Pass", "End": true}
    }});
    let (out, log) = run(definition, json!({"order": 7}), &mut flaky(10, "Boom"));
    assert_eq!(
        out.unwrap(),
        json!({"order": 7, "error": {"Error": "Boom", "Cause": "it broke"}})
    );
    assert_eq!(log, ["retry 1000", "retry 2000"]);
}

#[test]
fn jitter_stays_within_the_backoff() {
    let definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "f", "End": true,
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 4, "MaxAttempts": 20, "BackoffRate": 1.0, "JitterStrategy": "FULL"}]}}});
    let (out, log) = run(definition, json!({}), &mut flaky(20, "Boom"));
    assert!(out.is_ok());
    let delays: Vec<u64> = log
        .iter()
        .map(|l| l.trim_start_matches("retry ").parse().unwrap())
        .collect();
    assert_eq!(delays.len(), 20);
    assert!(delays.iter().all(|d| *d <= 4000), "{delays:?}");
    assert!(
        delays.iter().any(|d| *d != delays[0]),
        "jittered: {delays:?}"
    );
}

#[test]
fn which_names_match_which_errors() {
    let catch = |names: Value, error: &'static str| {
        let definition = json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "f", "End": true, "Catch": [{"ErrorEquals": names, "Next": "Caught"}]},
            "Caught": {"Type": "Succeed"}
        }});
        run(definition, json!({}), &mut flaky(1, error)).0.is_ok()
    };
    assert!(catch(json!(["States.ALL"]), "Anything"));
    assert!(catch(json!(["States.TaskFailed"]), "ValueError"));
    assert!(!catch(json!(["States.TaskFailed"]), errors::TIMEOUT));
    assert!(catch(json!(["States.Timeout"]), errors::HEARTBEAT_TIMEOUT));
    assert!(
        !catch(json!(["States.ALL"]), errors::RUNTIME),
        "a runtime error is never caught"
    );
    assert!(!catch(json!(["States.ALL"]), errors::DATA_LIMIT_EXCEEDED));
    assert!(catch(json!(["A", "ValueError"]), "ValueError"));
    assert!(
        !catch(json!(["valueerror"]), "ValueError"),
        "names are case-sensitive"
    );
}

#[test]
fn path_failures_have_their_names() {
    let task = |state: Value| json!({"StartAt": "T", "States": {"T": state}});
    let (out, _) = run(
        task(json!({"Type": "Task", "Resource": "f", "InputPath": "$.missing", "End": true})),
        json!({}),
        &mut no_tasks,
    );
    assert_eq!(out.unwrap_err().error, errors::RUNTIME);
    let (out, _) = run(
        task(
            json!({"Type": "Task", "Resource": "f", "Parameters": {"a.$": "$.missing"}, "End": true}),
        ),
        json!({}),
        &mut no_tasks,
    );
    assert_eq!(out.unwrap_err().error, errors::PARAMETER_PATH_FAILURE);
    let (out, _) = run(
        task(json!({"Type": "Task", "Resource": "f", "ResultPath": "$.s.inner", "End": true})),
        json!({"s": "text"}),
        &mut flaky(0, ""),
    );
    let failure = out.unwrap_err();
    assert_eq!(failure.error, errors::RESULT_PATH_MATCH_FAILURE);
    let (out, _) = run(
        task(json!({"Type": "Task", "Resource": "f", "OutputPath": "$.nothing", "End": true})),
        json!({}),
        &mut flaky(0, ""),
    );
    assert_eq!(out.unwrap_err().error, errors::RUNTIME);
    // A parameter failure is caught like any task error.
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "f", "Parameters": {"a.$": "$.missing"}, "End": true,
              "Catch": [{"ErrorEquals": ["States.ParameterPathFailure"], "Next": "Caught"}]},
        "Caught": {"Type": "Pass", "End": true}
    }});
    let out = run(definition, json!({}), &mut no_tasks).0.unwrap();
    assert_eq!(out["Error"], json!(errors::PARAMETER_PATH_FAILURE));
}

#[test]
fn choice_routes_and_falls_to_default_or_fails() {
    let definition = |default: bool| {
        let mut choice = json!({"Type": "Choice", "Choices": [
            {"Variable": "$.type", "StringEquals": "Private", "Next": "Private"},
            {"And": [{"Variable": "$.value", "IsPresent": true}, {"Variable": "$.value", "NumericGreaterThanPath": "$.limit"}], "Next": "Big"}
        ]});
        if default {
            choice["Default"] = json!("Other");
        }
        let mut definition = json!({"StartAt": "C", "States": {
            "C": choice,
            "Private": {"Type": "Pass", "Result": "private", "End": true},
            "Big": {"Type": "Pass", "Result": "big", "End": true}
        }});
        if default {
            definition["States"]["Other"] = json!({"Type": "Pass", "Result": "other", "End": true});
        }
        definition
    };
    assert_eq!(
        run(definition(true), json!({"type": "Private"}), &mut no_tasks)
            .0
            .unwrap(),
        json!("private")
    );
    assert_eq!(
        run(
            definition(true),
            json!({"type": "Public", "value": 5, "limit": 2}),
            &mut no_tasks
        )
        .0
        .unwrap(),
        json!("big")
    );
    assert_eq!(
        run(
            definition(true),
            json!({"type": "Public", "value": 1, "limit": 2}),
            &mut no_tasks
        )
        .0
        .unwrap(),
        json!("other")
    );
    assert_eq!(
        run(definition(false), json!({"type": "Public"}), &mut no_tasks)
            .0
            .unwrap_err()
            .error,
        errors::NO_CHOICE_MATCHED
    );
    // A Variable that names nothing is not a non-match but an error.
    assert_eq!(
        run(definition(true), json!({}), &mut no_tasks)
            .0
            .unwrap_err()
            .error,
        errors::RUNTIME
    );
}

#[test]
fn waits_for_seconds_timestamps_and_paths() {
    let definition = json!({"StartAt": "A", "States": {
        "A": {"Type": "Wait", "Seconds": 10, "Next": "B"},
        "B": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "C"},
        "C": {"Type": "Wait", "TimestampPath": "$.at", "Next": "D"},
        "D": {"Type": "Wait", "Timestamp": "2023-11-14T22:13:20Z", "End": true}
    }});
    // NOW is 2023-11-14T22:13:20Z; after 10 s and 5 s the clock is at +15 s.
    let (out, log) = run(
        definition,
        json!({"delay": 5, "at": "2023-11-14T22:14:20Z"}),
        &mut no_tasks,
    );
    assert_eq!(
        out.unwrap(),
        json!({"delay": 5, "at": "2023-11-14T22:14:20Z"})
    );
    assert_eq!(
        log,
        ["wait 10000", "wait 5000", "wait 45000", "wait -60000"],
        "a past timestamp does not wait"
    );
    let bad = json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "SecondsPath": "$.delay", "End": true}}});
    assert_eq!(
        run(bad, json!({"delay": -1}), &mut no_tasks)
            .0
            .unwrap_err()
            .error,
        errors::RUNTIME
    );
}

#[test]
fn fail_states_name_their_error() {
    let definition = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.code", "CausePath": "States.Format('order {} failed', $.order)"}}});
    let failure = run(
        definition,
        json!({"code": "OrderFailed", "order": 7}),
        &mut no_tasks,
    )
    .0
    .unwrap_err();
    assert_eq!(failure, Failure::new("OrderFailed", "order 7 failed"));
    let definition = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}});
    assert_eq!(
        run(definition, json!({}), &mut no_tasks).0.unwrap_err(),
        Failure {
            error: "E".into(),
            cause: None
        }
    );
}

#[test]
fn parallel_branches_in_order_and_a_failed_branch_caught() {
    let definition = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Parameters": {"n.$": "$.n"}, "ResultSelector": {"first.$": "$[0]", "second.$": "$[1]"}, "ResultPath": "$.both", "Next": "Done",
              "Branches": [
                  {"StartAt": "Double", "States": {"Double": {"Type": "Task", "Resource": "double", "End": true}}},
                  {"StartAt": "Tag", "States": {"Tag": {"Type": "Pass", "Parameters": {"tag.$": "States.Format('n={}', $.n)"}, "End": true}}}
              ],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recovered"}]},
        "Done": {"Type": "Succeed"},
        "Recovered": {"Type": "Pass", "End": true}
    }});
    let mut double = |call: &TaskCall| match call.payload["n"].as_i64() {
        Some(n) if n >= 0 => Ok(json!(n * 2)),
        _ => Err(Failure::new("Negative", "n < 0")),
    };
    let (out, _) = run(definition.clone(), json!({"n": 4}), &mut double);
    assert_eq!(
        out.unwrap(),
        json!({"n": 4, "both": {"first": 8, "second": {"tag": "n=4"}}})
    );
    let (out, _) = run(definition, json!({"n": -1}), &mut double);
    assert_eq!(out.unwrap(), json!({"Error": "Negative", "Cause": "n < 0"}));
}

#[test]
fn map_selects_items_and_runs_each() {
    let definition = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.detail.shipped", "MaxConcurrency": 2,
        "ItemSelector": {"index.$": "$$.Map.Item.Index", "item.$": "$$.Map.Item.Value", "order.$": "$.detail.order"},
        "ItemProcessor": {"StartAt": "Ship", "States": {"Ship": {"Type": "Task", "Resource": "ship", "End": true}}},
        "ResultPath": "$.detail.results", "End": true
    }}});
    let input = json!({"detail": {"order": "o-1", "shipped": [{"prod": "R31", "count": 1}, {"prod": "S39", "count": 2}]}});
    let mut seen = Vec::new();
    let (out, log) = run(definition, input, &mut |call| {
        seen.push(call.payload.clone());
        Ok(json!(call.payload["item"]["count"].as_i64().unwrap() * 10))
    });
    assert_eq!(
        seen[1],
        json!({"index": 1, "item": {"prod": "S39", "count": 2}, "order": "o-1"})
    );
    assert_eq!(out.unwrap()["detail"]["results"], json!([10, 20]));
    assert_eq!(log, ["map 2 at most 2"]);
}

#[test]
fn map_batches_and_tolerates_failures() {
    let definition = |tolerance: Value| {
        let mut map = json!({
            "Type": "Map", "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"job.$": "$.job"}}, "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": "work", "End": true}}},
            "End": true
        });
        map.as_object_mut()
            .unwrap()
            .extend(tolerance.as_object().unwrap().clone());
        json!({"StartAt": "M", "States": {"M": map}})
    };
    let input = json!({"job": "j", "items": [1, 2, 3, 4, 5]});
    let batches = std::cell::RefCell::new(Vec::new());
    let mut work = |call: &TaskCall| {
        batches.borrow_mut().push(call.payload.clone());
        if call.payload["Items"][0] == json!(3) {
            Err(Failure::new("Bad", "3"))
        } else {
            Ok(json!(call.payload["Items"].as_array().unwrap().len()))
        }
    };
    let (out, _) = run(
        definition(json!({"ToleratedFailureCount": 1})),
        input.clone(),
        &mut work,
    );
    assert_eq!(
        batches.borrow()[0],
        json!({"BatchInput": {"job": "j"}, "Items": [1, 2]})
    );
    assert_eq!(batches.borrow().len(), 3);
    assert_eq!(out.unwrap(), json!([2, {"Error": "Bad", "Cause": "3"}, 1]));
    let (out, _) = run(
        definition(json!({"ToleratedFailurePercentage": 34})),
        input.clone(),
        &mut work,
    );
    assert!(out.is_ok(), "1 of 3 batches is 33%: {out:?}");
    let (out, _) = run(
        definition(json!({"ToleratedFailurePercentage": 30})),
        input.clone(),
        &mut work,
    );
    assert_eq!(
        out.unwrap_err().error,
        errors::EXCEED_TOLERATED_FAILURE_THRESHOLD
    );
    let (out, _) = run(definition(json!({})), input, &mut work);
    assert_eq!(
        out.unwrap_err().error,
        "Bad",
        "no tolerance: the iteration's own error"
    );
}

#[test]
fn map_needs_an_array() {
    let definition = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}}}});
    let failure = run(definition, json!({"items": {"a": 1}}), &mut no_tasks)
        .0
        .unwrap_err();
    assert_eq!(failure.error, errors::RUNTIME);
    assert!(
        failure
            .cause
            .unwrap()
            .contains("must name an array, found a object")
    );
}

#[test]
fn task_timeouts_resolve_from_paths() {
    let definition = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "TimeoutSecondsPath": "$.limit", "HeartbeatSeconds": 5, "End": true}}});
    let mut seen = None;
    let (out, _) = run(definition.clone(), json!({"limit": 60}), &mut |call| {
        seen = Some(call.clone());
        Ok(json!(1))
    });
    assert!(out.is_ok());
    let call = seen.unwrap();
    assert_eq!(
        (
            call.timeout_seconds,
            call.heartbeat_seconds,
            call.wait_for_task_token
        ),
        (Some(60), Some(5), true)
    );
    assert_eq!(
        run(definition, json!({"limit": "soon"}), &mut no_tasks)
            .0
            .unwrap_err()
            .error,
        errors::RUNTIME
    );
}
