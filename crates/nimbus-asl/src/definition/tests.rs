use serde_json::json;

use super::*;

fn diagnostics(definition: Value) -> Vec<Diagnostic> {
    Definition::from_value(&definition).expect_err("the definition is refused")
}

fn has(diagnostics: &[Diagnostic], code: &str, location: &str) -> bool {
    diagnostics
        .iter()
        .any(|d| d.code == code && d.location == location)
}

#[test]
fn every_state_type_parses() {
    let definition = json!({
        "Comment": "every state type",
        "TimeoutSeconds": 300,
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "Result": {"n": 1}, "ResultPath": "$.prepared", "Next": "Work"},
            "Work": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "work", "Payload.$": "$"},
                "ResultSelector": {"body.$": "$.Payload"}, "ResultPath": "$.work",
                "TimeoutSeconds": 30, "HeartbeatSeconds": 10,
                "Retry": [{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 2, "MaxAttempts": 4, "BackoffRate": 1.5, "MaxDelaySeconds": 8, "JitterStrategy": "FULL"},
                          {"ErrorEquals": ["States.ALL"]}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
                "Next": "Route"
            },
            "Route": {"Type": "Choice", "Choices": [{"Variable": "$.prepared.n", "NumericEquals": 1, "Next": "Pause"}], "Default": "Done"},
            "Pause": {"Type": "Wait", "SecondsPath": "$.prepared.n", "Next": "Fan"},
            "Fan": {"Type": "Parallel", "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
                {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}
            ], "Next": "Each"},
            "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ItemSelector": {"v.$": "$$.Map.Item.Value"},
                     "ItemBatcher": {"MaxItemsPerBatch": 3, "BatchInput": {"k": 1}},
                     "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Item", "States": {"Item": {"Type": "Pass", "End": true}}},
                     "ToleratedFailurePercentage": 10, "Next": "Done"},
            "Done": {"Type": "Succeed", "OutputPath": "$.work"},
            "Failed": {"Type": "Fail", "Error": "WorkFailed", "CausePath": "States.Format('because {}', $.error.Cause)"}
        }
    });
    let d = Definition::from_value(&definition).unwrap();
    assert_eq!(d.timeout_seconds, Some(300));
    assert_eq!(d.root.start_at, "Prepare");
    assert_eq!(d.root.states.len(), 8);
    let work = d.root.state("Work").unwrap();
    let Kind::Task(task) = &work.kind else {
        panic!("a task")
    };
    assert!(matches!(task.timeout, Some(Seconds::Fixed(30))));
    assert_eq!(work.retry.len(), 2);
    assert_eq!(work.retry[0].max_attempts, 4);
    assert!(work.retry[0].full_jitter);
    assert_eq!(work.retry[1].interval_seconds, 1, "the default interval");
    assert_eq!(work.retry[1].max_attempts, 3, "the default attempts");
    assert_eq!(work.catch[0].next, "Failed");
    assert_eq!(work.next.as_deref(), Some("Route"));
    assert_eq!(d.root.state("Fan").unwrap().location, "/States/Fan");
    let Kind::Parallel(branches) = &d.root.state("Fan").unwrap().kind else {
        panic!("parallel")
    };
    assert_eq!(
        branches[1].state("B").unwrap().location,
        "/States/Fan/Branches/1/States/B"
    );
    let Kind::Map(map) = &d.root.state("Each").unwrap().kind else {
        panic!("map")
    };
    assert!(map.batcher.is_some());
    assert_eq!(map.processor.start_at, "Item");
    assert!(
        d.root.state("Done").unwrap().input_path.is_some(),
        "InputPath defaults to $"
    );
}

#[test]
fn json_and_emptiness_are_reported_first() {
    assert_eq!(
        Definition::parse("").unwrap_err()[0].code,
        "MISSING_DESCRIPTION"
    );
    assert_eq!(
        Definition::parse("{\"StartAt\": ").unwrap_err()[0].code,
        "INVALID_JSON_DESCRIPTION"
    );
    assert!(has(
        &Definition::parse("[]").unwrap_err(),
        "SCHEMA_VALIDATION_FAILED",
        "/"
    ));
}

#[test]
fn transitions_are_checked() {
    let d = diagnostics(json!({"StartAt": "Nope", "States": {
        "A": {"Type": "Pass", "Next": "Missing"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": true, "Next": "Gone"}], "Default": "A"},
        "C": {"Type": "Task", "Resource": "f", "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Lost"}], "End": true}
    }}));
    assert!(has(&d, "MISSING_TRANSITION_TARGET", "/StartAt"), "{d:?}");
    assert!(
        has(&d, "MISSING_TRANSITION_TARGET", "/States/A/Next"),
        "{d:?}"
    );
    assert!(
        has(&d, "MISSING_TRANSITION_TARGET", "/States/B/Choices/0/Next"),
        "{d:?}"
    );
    assert!(
        has(&d, "MISSING_TRANSITION_TARGET", "/States/C/Catch/0/Next"),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|x| x.message == "Missing 'Next' target: Missing"),
        "{d:?}"
    );

    let d = diagnostics(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}, "Island": {"Type": "Pass", "Next": "A"}
    }}));
    assert!(has(&d, "MISSING_END_STATE", "/States"), "{d:?}");
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/Island"),
        "unreachable: {d:?}"
    );
}

#[test]
fn fields_are_checked_against_the_state_type() {
    let d = diagnostics(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Resource": "x", "Next": "B", "End": true},
        "B": {"Type": "Wait", "Seconds": 1, "Timestamp": "2020-01-01T00:00:00Z", "End": true},
        "C": {"Type": "Succeed", "Next": "A"},
        "D": {"Type": "Fail", "InputPath": "$"},
        "E": {"Type": "Sleep"},
        "F": {"Type": "Task", "End": true},
        "G": {"Type": "Task", "Resource": "f", "ResultPath": "$.a[*]", "TimeoutSeconds": 5, "HeartbeatSeconds": 5, "End": true},
        "H": {"Type": "Pass", "Assign": {"x": 1}, "End": true}
    }}));
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/A/Resource"),
        "{d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/A"),
        "Next and End: {d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/B"),
        "two waits: {d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/C/Next"),
        "{d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/D/InputPath"),
        "{d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/E/Type"),
        "{d:?}"
    );
    assert!(has(&d, "INVALID_RESOURCE", "/States/F/Resource"), "{d:?}");
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/G/ResultPath"),
        "{d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/G/HeartbeatSeconds"),
        "{d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/H/Assign"),
        "{d:?}"
    );
}

#[test]
fn retry_and_catch_rules() {
    let d = diagnostics(json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "f", "End": true,
              "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"], "BackoffRate": 0.5, "JitterStrategy": "SOME"}],
              "Catch": [{"ErrorEquals": ["States.ALL", "X"], "Next": "T"}, {"ErrorEquals": []}]}
    }}));
    assert!(
        has(
            &d,
            "SCHEMA_VALIDATION_FAILED",
            "/States/T/Retry/0/ErrorEquals"
        ),
        "ALL not last: {d:?}"
    );
    assert!(
        has(
            &d,
            "SCHEMA_VALIDATION_FAILED",
            "/States/T/Retry/1/BackoffRate"
        ),
        "{d:?}"
    );
    assert!(
        has(
            &d,
            "SCHEMA_VALIDATION_FAILED",
            "/States/T/Retry/1/JitterStrategy"
        ),
        "{d:?}"
    );
    assert!(
        has(
            &d,
            "SCHEMA_VALIDATION_FAILED",
            "/States/T/Catch/0/ErrorEquals"
        ),
        "ALL not alone: {d:?}"
    );
    assert!(
        has(
            &d,
            "SCHEMA_VALIDATION_FAILED",
            "/States/T/Catch/1/ErrorEquals"
        ),
        "{d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/T/Catch/1/Next"),
        "{d:?}"
    );
}

#[test]
fn names_are_unique_across_branches_and_bounded() {
    let long = "x".repeat(81);
    let d = diagnostics(json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "P", "States": {"P": {"Type": "Succeed"}}},
            {"StartAt": long.clone(), "States": {long.clone(): {"Type": "Succeed"}}}
        ]}
    }}));
    assert!(
        has(&d, "DUPLICATE_STATE_NAME", "/States/P/Branches/0/States/P"),
        "{d:?}"
    );
    assert!(d.iter().any(|x| x.code == "INVALID_STATE_NAME"), "{d:?}");
}

#[test]
fn what_nimbus_does_not_run_is_named() {
    let d = diagnostics(
        json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {
            "M": {"Type": "Map", "End": true, "ItemReader": {"Resource": "arn:aws:states:::s3:getObject"},
                  "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}
        }}),
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/QueryLanguage"),
        "{d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/M/ItemReader"),
        "{d:?}"
    );
    assert!(
        has(
            &d,
            "SCHEMA_VALIDATION_FAILED",
            "/States/M/ItemProcessor/ProcessorConfig/Mode"
        ),
        "{d:?}"
    );
}

#[test]
fn templates_and_rules_inside_states_are_located() {
    let d = diagnostics(json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Parameters": {"x.$": "States.Bogus()"}, "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": "one", "Next": "A"}, {"Variable": "$.x", "IsNull": true}], "Default": "E"},
        "E": {"Type": "Succeed"}
    }}));
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/A/Parameters/x.$"),
        "{d:?}"
    );
    assert!(
        has(
            &d,
            "SCHEMA_VALIDATION_FAILED",
            "/States/C/Choices/0/NumericEquals"
        ),
        "{d:?}"
    );
    assert!(
        has(&d, "SCHEMA_VALIDATION_FAILED", "/States/C/Choices/1/Next"),
        "{d:?}"
    );
}
