//! The journal's transitions, driven as the SDKs drive them.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::model::{CallbackOptions, ChainedInvokeOptions, StepOptions, WaitOptions};

const T0: i64 = 1_000_000;

fn update(id: &str, kind: OperationType, action: OperationAction) -> OperationUpdate {
    OperationUpdate::new(id, kind, action)
}

fn ids() -> impl FnMut(&str) -> String {
    let mut n = 0;
    move |_: &str| {
        n += 1;
        format!("cb-{n}")
    }
}

/// Checkpoints `updates` with the current token.
fn check(j: &mut Journal, updates: &[OperationUpdate]) -> Result<Checkpointed, CheckpointError> {
    j.checkpoint(j.token(), None, updates, T0, &mut ids())
}

/// A new execution with step `id` started.
fn with_step(id: &str) -> Journal {
    let mut j = Journal::start(None, T0);
    check(
        &mut j,
        &[update(id, OperationType::Step, OperationAction::Start)],
    )
    .unwrap();
    j
}

fn status(j: &Journal, id: &str) -> OperationStatus {
    j.operation(id).unwrap().status
}

#[test]
fn a_step_starts_and_succeeds_and_each_checkpoint_takes_a_new_token() {
    let mut j = Journal::start(Some("{\"n\":1}".into()), T0);
    assert_eq!(
        j.operation(EXECUTION_ID).unwrap().input.as_deref(),
        Some("{\"n\":1}")
    );
    let first = j.token();
    let done = check(
        &mut j,
        &[update("s1", OperationType::Step, OperationAction::Start)],
    )
    .unwrap();
    assert_eq!(done.token, first + 1);
    assert_eq!(done.operations[0].status, OperationStatus::Started);
    assert_eq!(done.operations[0].attempt, Some(0), "no attempt failed yet");
    let mut succeed = update("s1", OperationType::Step, OperationAction::Succeed);
    succeed.payload = Some("42".into());
    check(&mut j, &[succeed.clone()]).unwrap();
    let op = j.operation("s1").unwrap();
    assert_eq!(
        (op.status, op.result.as_deref(), op.end_ms),
        (OperationStatus::Succeeded, Some("42"), Some(T0))
    );
    // The first token was consumed: presenting it again is refused, and changes nothing.
    let before = j.clone();
    let stale = j.checkpoint(first, None, &[succeed], T0, &mut ids());
    assert_eq!(stale, Err(CheckpointError::StaleToken));
    assert_eq!(j, before);
}

#[test]
fn a_refused_batch_changes_nothing() {
    let mut j = Journal::start(None, T0);
    let before = j.clone();
    let batch = [
        update("a", OperationType::Step, OperationAction::Start),
        update("nope", OperationType::Step, OperationAction::Succeed),
    ];
    assert_eq!(
        check(&mut j, &batch),
        Err(CheckpointError::UnknownOperation("nope".into()))
    );
    assert_eq!(j, before, "the valid first update was not applied either");
    assert!(j.operation("a").is_none());
}

#[test]
fn a_repeat_with_the_same_client_token_answers_the_same() {
    let mut j = Journal::start(None, T0);
    let t = j.token();
    let batch = [update("a", OperationType::Step, OperationAction::Start)];
    let first = j.checkpoint(t, Some("c1"), &batch, T0, &mut ids()).unwrap();
    let again = j
        .checkpoint(t, Some("c1"), &batch, T0 + 5, &mut ids())
        .unwrap();
    assert_eq!(again.token, first.token);
    assert_eq!(again.operations, first.operations);
    assert!(again.effects.is_empty());
    assert_eq!(j.operations().len(), 2, "applied once");
    // Another client token with the used token is a stale token.
    assert_eq!(
        j.checkpoint(t, Some("c2"), &batch, T0, &mut ids()),
        Err(CheckpointError::StaleToken)
    );
}

#[test]
fn a_wait_sets_its_timer_and_ends_when_it_fires() {
    let mut j = Journal::start(None, T0);
    let mut wait = update("w", OperationType::Wait, OperationAction::Start);
    wait.wait_options = Some(WaitOptions {
        wait_seconds: Some(10),
    });
    let done = check(&mut j, &[wait.clone()]).unwrap();
    assert_eq!(
        done.effects,
        [Effect::Timer {
            id: "w".into(),
            kind: TimerKind::WaitEnd,
            at_ms: T0 + 10_000
        }]
    );
    assert_eq!(
        j.operation("w").unwrap().scheduled_end_ms,
        Some(T0 + 10_000)
    );
    assert!(j.take_updated().is_empty());
    assert!(j.timer_fired("w", TimerKind::WaitEnd, T0 + 10_000));
    assert_eq!(status(&j, "w"), OperationStatus::Succeeded);
    assert_eq!(j.take_updated(), ["w"]);
    // At least once: the same timer again changes nothing.
    assert!(!j.timer_fired("w", TimerKind::WaitEnd, T0 + 10_001));
    assert!(j.take_updated().is_empty());
    // 1 second to one year (absent: 1 second, as the API documents).
    for bad in [Some(0), Some(MAX_WAIT_SECONDS + 1)] {
        let mut w = update("w2", OperationType::Wait, OperationAction::Start);
        w.wait_options = Some(WaitOptions { wait_seconds: bad });
        assert!(
            matches!(
                check(&mut j, &[w]),
                Err(CheckpointError::InvalidValue { .. })
            ),
            "{bad:?}"
        );
    }
    let bare = update("w3", OperationType::Wait, OperationAction::Start);
    let done = check(&mut j, &[bare]).unwrap();
    assert_eq!(
        done.effects,
        [Effect::Timer {
            id: "w3".into(),
            kind: TimerKind::WaitEnd,
            at_ms: T0 + 1_000
        }]
    );
}

#[test]
fn a_callback_timeout_of_zero_is_no_timeout() {
    let mut j = Journal::start(None, T0);
    let mut cb = update("c", OperationType::Callback, OperationAction::Start);
    cb.callback_options = Some(CallbackOptions {
        timeout_seconds: Some(0),
        heartbeat_timeout_seconds: Some(0),
    });
    let done = check(&mut j, &[cb]).unwrap();
    assert!(done.effects.is_empty(), "{:?}", done.effects);
    assert!(done.operations[0].callback_id.is_some());
}

#[test]
fn a_retried_step_waits_then_is_ready_then_runs_its_next_attempt() {
    let mut j = with_step("s");
    let mut retry = update("s", OperationType::Step, OperationAction::Retry);
    retry.step_options = Some(StepOptions {
        next_attempt_delay_seconds: Some(5),
    });
    retry.error = Some(ErrorObject {
        error_message: Some("flaky".into()),
        ..ErrorObject::default()
    });
    let done = check(&mut j, &[retry]).unwrap();
    assert_eq!(
        done.effects,
        [Effect::Timer {
            id: "s".into(),
            kind: TimerKind::StepRetry,
            at_ms: T0 + 5_000
        }]
    );
    assert_eq!(status(&j, "s"), OperationStatus::Pending);
    assert_eq!(
        j.operation("s").unwrap().attempt,
        Some(1),
        "one attempt failed"
    );
    // Succeeding a step that is not running is refused.
    assert!(matches!(
        check(
            &mut j,
            &[update("s", OperationType::Step, OperationAction::Succeed)]
        ),
        Err(CheckpointError::InvalidTransition { .. })
    ));
    assert!(j.timer_fired("s", TimerKind::StepRetry, T0 + 5_000));
    assert_eq!(status(&j, "s"), OperationStatus::Ready);
    check(
        &mut j,
        &[update("s", OperationType::Step, OperationAction::Start)],
    )
    .unwrap();
    let op = j.operation("s").unwrap();
    assert_eq!(
        (op.status, op.attempt, op.next_attempt_ms),
        (OperationStatus::Started, Some(1), None),
        "the second attempt runs: one failed so far"
    );
}

#[test]
fn a_callback_is_answered_once_and_its_timeouts_follow_it() {
    let mut j = Journal::start(None, T0);
    let mut cb = update("c", OperationType::Callback, OperationAction::Start);
    cb.callback_options = Some(CallbackOptions {
        timeout_seconds: Some(60),
        heartbeat_timeout_seconds: Some(10),
    });
    let done = check(&mut j, &[cb]).unwrap();
    let callback_id = done.operations[0].callback_id.clone().unwrap();
    assert_eq!(callback_id, "cb-1");
    assert_eq!(done.effects.len(), 2);
    let beat = j.callback_heartbeat(&callback_id, T0 + 3_000).unwrap();
    assert_eq!(
        beat,
        Some(Effect::Timer {
            id: "c".into(),
            kind: TimerKind::CallbackHeartbeat,
            at_ms: T0 + 13_000
        })
    );
    // The first heartbeat timer (due at T0 + 10 s) finds the deadline moved on.
    assert!(!j.timer_fired("c", TimerKind::CallbackHeartbeat, T0 + 10_000));
    assert_eq!(j.operation("c").unwrap().status, OperationStatus::Started);
    j.complete_callback(&callback_id, Ok(Some("\"approved\"".into())), T0 + 4_000)
        .unwrap();
    let op = j.operation("c").unwrap();
    assert_eq!(
        (op.status, op.result.as_deref()),
        (OperationStatus::Succeeded, Some("\"approved\""))
    );
    assert_eq!(j.take_updated(), ["c"]);
    // Answered: a second answer and a late timeout change nothing.
    assert_eq!(
        j.complete_callback(&callback_id, Ok(None), T0 + 5_000),
        Err(CheckpointError::UnknownCallback(callback_id.clone()))
    );
    assert!(!j.timer_fired("c", TimerKind::CallbackTimeout, T0 + 60_000));
    assert_eq!(
        j.callback_heartbeat("cb-9", T0),
        Err(CheckpointError::UnknownCallback("cb-9".into()))
    );
    // Another one is never answered: it times out.
    let mut cb2 = update("c2", OperationType::Callback, OperationAction::Start);
    cb2.callback_options = Some(CallbackOptions {
        timeout_seconds: Some(1),
        heartbeat_timeout_seconds: None,
    });
    check(&mut j, &[cb2]).unwrap();
    assert!(j.timer_fired("c2", TimerKind::CallbackTimeout, T0 + 1_000));
    assert_eq!(status(&j, "c2"), OperationStatus::TimedOut);
}

#[test]
fn a_chained_invoke_asks_for_the_invocation_and_takes_its_outcome() {
    let mut j = Journal::start(None, T0);
    let mut inv = update("i", OperationType::ChainedInvoke, OperationAction::Start);
    inv.payload = Some("{}".into());
    inv.chained_invoke_options = Some(ChainedInvokeOptions {
        function_name: "worker".into(),
    });
    let done = check(&mut j, &[inv]).unwrap();
    assert_eq!(
        done.effects,
        [Effect::Invoke {
            id: "i".into(),
            function: "worker".into(),
            payload: Some("{}".into())
        }]
    );
    let error = ErrorObject {
        error_type: Some("Boom".into()),
        ..ErrorObject::default()
    };
    j.chained_invoke_finished("i", Err(error.clone()), T0 + 1)
        .unwrap();
    assert_eq!(j.operation("i").unwrap().error, Some(error));
    assert!(
        j.chained_invoke_finished("i", Ok(None), T0 + 2).is_err(),
        "once"
    );
    assert_eq!(
        j.chained_invoke_finished("x", Ok(None), T0),
        Err(CheckpointError::UnknownOperation("x".into()))
    );
    let bare = update("i2", OperationType::ChainedInvoke, OperationAction::Start);
    assert!(matches!(
        check(&mut j, &[bare]),
        Err(CheckpointError::InvalidValue { .. })
    ));
}

#[test]
fn the_execution_ends_once_and_then_takes_no_checkpoint() {
    let mut j = Journal::start(None, T0);
    // The SDKs name this update `execution-result-<ms>`: it ends the execution operation.
    let mut end = update(
        "execution-result-1767225600000",
        OperationType::Execution,
        OperationAction::Succeed,
    );
    end.payload = Some("\"done\"".into());
    let done = check(&mut j, &[end]).unwrap();
    assert_eq!(done.effects, [Effect::Finished(OperationStatus::Succeeded)]);
    assert_eq!(done.operations[0].id, EXECUTION_ID);
    assert_eq!(done.operations[0].result.as_deref(), Some("\"done\""));
    // Starting the execution operation is the engine's alone.
    let mut j2 = Journal::start(None, T0);
    assert!(matches!(
        check(
            &mut j2,
            &[update(
                EXECUTION_ID,
                OperationType::Execution,
                OperationAction::Start
            )]
        ),
        Err(CheckpointError::InvalidTransition { .. })
    ));
    assert_eq!(j.status(), OperationStatus::Succeeded);
    assert_eq!(
        check(
            &mut j,
            &[update("s", OperationType::Step, OperationAction::Start)]
        ),
        Err(CheckpointError::Ended(OperationStatus::Succeeded))
    );
}

#[test]
fn stopping_ends_everything_still_running() {
    let mut j = Journal::start(None, T0);
    let mut w = update("w", OperationType::Wait, OperationAction::Start);
    w.wait_options = Some(WaitOptions {
        wait_seconds: Some(60),
    });
    check(
        &mut j,
        &[w, update("s", OperationType::Step, OperationAction::Start)],
    )
    .unwrap();
    j.stop(None, T0 + 1).unwrap();
    assert!(
        j.operations()
            .iter()
            .all(|o| o.status == OperationStatus::Stopped)
    );
    assert!(!j.timer_fired("w", TimerKind::WaitEnd, T0 + 60_000));
    assert_eq!(
        j.stop(None, T0 + 2),
        Err(CheckpointError::Ended(OperationStatus::Stopped))
    );
}

#[test]
fn malformed_updates_are_refused_with_what_is_wrong() {
    let mut j = with_step("s");
    // Another type under the same id.
    assert!(matches!(
        check(
            &mut j,
            &[update("s", OperationType::Wait, OperationAction::Cancel)]
        ),
        Err(CheckpointError::TypeMismatch { .. })
    ));
    // The execution operation is the engine's.
    assert!(
        check(
            &mut j,
            &[update(
                "e2",
                OperationType::Execution,
                OperationAction::Start
            )]
        )
        .is_err()
    );
    // A parent must be a context.
    let mut child = update("k", OperationType::Step, OperationAction::Start);
    child.parent_id = Some("s".into());
    assert!(matches!(
        check(&mut j, &[child]),
        Err(CheckpointError::InvalidValue { .. })
    ));
    // A step cannot be cancelled; a wait can.
    assert!(matches!(
        check(
            &mut j,
            &[update("s", OperationType::Step, OperationAction::Cancel)]
        ),
        Err(CheckpointError::InvalidTransition { .. })
    ));
    // Payloads are bounded.
    let mut big = update("s", OperationType::Step, OperationAction::Succeed);
    big.payload = Some("x".repeat(MAX_PAYLOAD_BYTES + 1));
    assert!(matches!(
        check(&mut j, &[big]),
        Err(CheckpointError::InvalidValue { .. })
    ));
    // So is the number of operations.
    let many: Vec<_> = (0..MAX_OPERATIONS)
        .map(|i| {
            update(
                &format!("m{i}"),
                OperationType::Step,
                OperationAction::Start,
            )
        })
        .collect();
    assert_eq!(
        check(&mut j, &many),
        Err(CheckpointError::TooManyOperations(MAX_OPERATIONS))
    );
    assert_eq!(j.operations().len(), 2);
}

#[test]
fn a_context_groups_children_and_can_be_cancelled() {
    let mut j = Journal::start(None, T0);
    let mut ctx = update("ctx", OperationType::Context, OperationAction::Start);
    ctx.context_options = Some(crate::model::ContextOptions {
        replay_children: Some(true),
    });
    let mut child = update("ctx-1", OperationType::Step, OperationAction::Start);
    child.parent_id = Some("ctx".into());
    check(&mut j, &[ctx, child]).unwrap();
    assert_eq!(j.operation("ctx").unwrap().replay_children, Some(true));
    check(
        &mut j,
        &[update(
            "ctx",
            OperationType::Context,
            OperationAction::Cancel,
        )],
    )
    .unwrap();
    assert_eq!(status(&j, "ctx"), OperationStatus::Cancelled);
}

#[test]
fn state_is_paged_in_start_order() {
    let mut j = Journal::start(None, T0);
    let steps: Vec<_> = (0..5)
        .map(|i| {
            update(
                &format!("s{i}"),
                OperationType::Step,
                OperationAction::Start,
            )
        })
        .collect();
    check(&mut j, &steps).unwrap();
    let (first, next) = j.page(0, 4);
    assert_eq!(first.len(), 4);
    assert_eq!(first[0].id, EXECUTION_ID);
    let (rest, end) = j.page(next.unwrap(), 4);
    assert_eq!(
        rest.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["s3", "s4"]
    );
    assert_eq!(end, None);
    assert!(j.page(99, 4).0.is_empty());
}

#[test]
fn updates_parse_as_the_sdk_sends_them_and_the_journal_survives_a_round_trip() {
    let sent = r#"{"Id": "c4ca4238", "ParentId": "execution", "Name": "fetch", "Type": "STEP",
        "SubType": "Step", "Action": "RETRY", "Error": {"ErrorMessage": "timeout",
        "ErrorType": "TimeoutError", "StackTrace": ["a.py:1"]},
        "StepOptions": {"NextAttemptDelaySeconds": 3}}"#;
    let u: OperationUpdate = serde_json::from_str(sent).unwrap();
    assert_eq!(
        (u.kind, u.action),
        (OperationType::Step, OperationAction::Retry)
    );
    assert_eq!(u.step_options.unwrap().next_attempt_delay_seconds, Some(3));
    let mut j = Journal::start(Some("{}".into()), T0);
    check(
        &mut j,
        &[update("s", OperationType::Step, OperationAction::Start)],
    )
    .unwrap();
    let text = serde_json::to_string(&j).unwrap();
    let mut back: Journal = serde_json::from_str(&text).unwrap();
    back.reindex();
    assert_eq!(back, j);
    assert_eq!(
        back.operation("s").unwrap().status,
        OperationStatus::Started
    );
}

#[test]
fn an_answer_ends_the_execution_or_says_whether_to_wait_or_invoke_again() {
    use crate::model::InvocationOutput as Out;
    // Returned, not checkpointed: the answer is the result.
    let mut j = Journal::start(None, T0);
    assert_eq!(
        j.settle(Out::Succeeded(Some("7".into())), T0 + 1),
        Next::Finished(OperationStatus::Succeeded)
    );
    let e = j.operation(EXECUTION_ID).unwrap();
    assert_eq!((e.result.as_deref(), e.end_ms), (Some("7"), Some(T0 + 1)));
    // Ended already: a late answer changes nothing.
    assert_eq!(
        j.settle(Out::Failed(ErrorObject::default()), T0 + 2),
        Next::Finished(OperationStatus::Succeeded)
    );

    // PENDING with a wait running: wait; once it fired: invoke again.
    let mut j = Journal::start(None, T0);
    let mut w = update("w", OperationType::Wait, OperationAction::Start);
    w.wait_options = Some(WaitOptions {
        wait_seconds: Some(5),
    });
    check(&mut j, &[w]).unwrap();
    assert_eq!(j.settle(Out::Pending, T0), Next::Wait);
    assert!(j.timer_fired("w", TimerKind::WaitEnd, T0 + 5_000));
    assert_eq!(j.settle(Out::Pending, T0), Next::InvokeNow);
    // PENDING with nothing that could change by itself: replay rather than wait for ever.
    let mut j = Journal::start(None, T0);
    assert_eq!(j.settle(Out::Pending, T0), Next::InvokeNow);
    assert_eq!(j.settle(Out::Retry(None), T0), Next::InvokeNow);
    let failed = j.settle(
        Out::Failed(ErrorObject {
            error_type: Some("E".into()),
            ..ErrorObject::default()
        }),
        T0,
    );
    assert_eq!(failed, Next::Finished(OperationStatus::Failed));
}

#[test]
fn a_timed_out_execution_stops_what_runs() {
    let mut j = with_step("s");
    j.time_out(T0 + 9).unwrap();
    assert_eq!(j.status(), OperationStatus::TimedOut);
    assert_eq!(status(&j, "s"), OperationStatus::Stopped);
    assert!(j.time_out(T0 + 10).is_err());
}
