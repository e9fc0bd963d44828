//! Fifty malformed definitions: each is refused with a diagnostic at the exact place of its
//! mistake (a JSON pointer), never accepted, never a panic.

#![allow(clippy::unwrap_used)]

use nimbus_asl::definition::Definition;
use serde_json::{Value, json};

/// A one-state machine around `state` (named `S`), with `Next` targets `T` available.
fn one(state: Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state, "T": {"Type": "Succeed"}}})
}

fn task(extra: Value) -> Value {
    let mut t = json!({"Type": "Task", "Resource": "f", "Next": "T"});
    t.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    one(t)
}

#[test]
fn every_malformed_definition_is_refused_where_it_is_wrong() {
    let map = |extra: Value| {
        let mut m = json!({"Type": "Map", "Next": "T", "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        one(m)
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"States": {"S": {"Type": "Succeed"}}}), "/StartAt"),
        (json!({"StartAt": "S"}), "/States"),
        (json!({"StartAt": "S", "States": {}}), "/States"),
        (json!({"StartAt": "S", "States": []}), "/States"),
        (
            json!({"StartAt": "X", "States": {"S": {"Type": "Succeed"}}}),
            "/StartAt",
        ),
        (
            json!({"StartAt": 1, "States": {"S": {"Type": "Succeed"}}}),
            "/StartAt",
        ),
        (
            json!({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}, "Extra": 1}),
            "/Extra",
        ),
        (
            json!({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}, "TimeoutSeconds": 0}),
            "/TimeoutSeconds",
        ),
        (
            json!({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}, "QueryLanguage": "JSONata"}),
            "/QueryLanguage",
        ),
        (one(json!({"Next": "T"})), "/States/S/Type"),
        (one(json!({"Type": "Teleport"})), "/States/S/Type"),
        (one(json!({"Type": "Pass"})), "/States/S"),
        (
            one(json!({"Type": "Pass", "Next": "T", "End": true})),
            "/States/S",
        ),
        (one(json!({"Type": "Pass", "End": false})), "/States/S/End"),
        (
            one(json!({"Type": "Pass", "Next": "Nowhere"})),
            "/States/S/Next",
        ),
        (
            one(json!({"Type": "Pass", "Next": "T", "Resource": "f"})),
            "/States/S/Resource",
        ),
        (
            one(json!({"Type": "Pass", "Next": "T", "InputPath": "no-dollar"})),
            "/States/S/InputPath",
        ),
        (
            one(json!({"Type": "Pass", "Next": "T", "OutputPath": 3})),
            "/States/S/OutputPath",
        ),
        (
            one(json!({"Type": "Pass", "Next": "T", "ResultPath": "$.a[*]"})),
            "/States/S/ResultPath",
        ),
        (
            one(json!({"Type": "Pass", "Next": "T", "Parameters": {"a.$": 1}})),
            "/States/S/Parameters/a.$",
        ),
        (
            one(
                json!({"Type": "Pass", "Next": "T", "Parameters": {"deep": {"a.$": "States.Nope()"}}}),
            ),
            "/States/S/Parameters/deep/a.$",
        ),
        (
            one(json!({"Type": "Pass", "Next": "T", "Parameters": {"a.$": "States.Format($.x)"}})),
            "/States/S/Parameters/a.$",
        ),
        (
            one(json!({"Type": "Pass", "Next": "T", "Parameters": {"a.$": "States.Array('open)"}})),
            "/States/S/Parameters/a.$",
        ),
        (
            one(json!({"Type": "Task", "Next": "T"})),
            "/States/S/Resource",
        ),
        (
            task(json!({"TimeoutSeconds": 0})),
            "/States/S/TimeoutSeconds",
        ),
        (
            task(json!({"TimeoutSeconds": 5, "HeartbeatSeconds": 10})),
            "/States/S/HeartbeatSeconds",
        ),
        (
            task(json!({"TimeoutSecondsPath": "$.a[*]"})),
            "/States/S/TimeoutSecondsPath",
        ),
        (task(json!({"Retry": {}})), "/States/S/Retry"),
        (
            task(json!({"Retry": [{"ErrorEquals": []}]})),
            "/States/S/Retry/0/ErrorEquals",
        ),
        (
            task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]})),
            "/States/S/Retry/0/ErrorEquals",
        ),
        (
            task(json!({"Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]})),
            "/States/S/Retry/0/BackoffRate",
        ),
        (
            task(json!({"Retry": [{"ErrorEquals": ["X"], "IntervalSeconds": 0}]})),
            "/States/S/Retry/0/IntervalSeconds",
        ),
        (
            task(json!({"Retry": [{"ErrorEquals": ["X"], "Backoff": 2}]})),
            "/States/S/Retry/0/Backoff",
        ),
        (
            task(json!({"Catch": [{"ErrorEquals": ["X"]}]})),
            "/States/S/Catch/0/Next",
        ),
        (
            task(json!({"Catch": [{"ErrorEquals": ["X"], "Next": "Gone"}]})),
            "/States/S/Catch/0/Next",
        ),
        (
            task(json!({"Catch": [{"ErrorEquals": ["States.ALL", "X"], "Next": "T"}]})),
            "/States/S/Catch/0/ErrorEquals",
        ),
        (
            one(json!({"Type": "Choice", "Choices": []})),
            "/States/S/Choices",
        ),
        (
            one(json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true}]})),
            "/States/S/Choices/0/Next",
        ),
        (
            one(
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "StringEquals": 1, "Next": "T"}]}),
            ),
            "/States/S/Choices/0/StringEquals",
        ),
        (
            one(json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "Next": "T"}]})),
            "/States/S/Choices/0",
        ),
        (
            one(
                json!({"Type": "Choice", "Choices": [{"Not": {"Variable": "$.a", "IsNull": true, "Next": "T"}, "Next": "T"}]}),
            ),
            "/States/S/Choices/0/Not/Next",
        ),
        (
            one(
                json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "T"}], "Default": "Gone"}),
            ),
            "/States/S/Default",
        ),
        (one(json!({"Type": "Wait", "Next": "T"})), "/States/S"),
        (
            one(json!({"Type": "Wait", "Timestamp": "tomorrow", "Next": "T"})),
            "/States/S/Timestamp",
        ),
        (
            one(json!({"Type": "Wait", "Seconds": -1, "Next": "T"})),
            "/States/S/Seconds",
        ),
        (
            one(json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"})),
            "/States/S",
        ),
        (
            one(json!({"Type": "Parallel", "Next": "T", "Branches": []})),
            "/States/S/Branches",
        ),
        (
            one(
                json!({"Type": "Parallel", "Next": "T", "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "Next": "T"}}}]}),
            ),
            "/States/S/Branches/0/States/B/Next",
        ),
        (map(json!({"ItemsPath": null})), "/States/S/ItemsPath"),
        (map(json!({"ItemBatcher": {}})), "/States/S/ItemBatcher"),
    ];
    assert_eq!(cases.len(), 50);
    for (definition, location) in cases {
        let text = definition.to_string();
        let diagnostics = match Definition::parse(&text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(d) => d,
        };
        assert!(
            diagnostics.iter().any(|d| d.location == location),
            "{text}: expected a diagnostic at {location}, got {diagnostics:?}"
        );
    }
}

#[test]
fn text_that_is_not_a_definition_is_refused_whole() {
    for text in [
        "",
        "   ",
        "{",
        "[1, 2]",
        "null",
        "\"StartAt\"",
        "{\"StartAt\": \"S\", \"States\": {\"S\": 5}}",
    ] {
        assert!(Definition::parse(text).is_err(), "{text:?}");
    }
}
