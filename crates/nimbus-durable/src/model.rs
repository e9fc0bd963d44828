//! The operations of a durable execution and the updates that change them, named as the Lambda
//! durable-execution API (`2025-12-01`) names them. Timestamps are unix milliseconds here; the
//! HTTP edge writes them as the API does.

use serde::{Deserialize, Serialize};

/// What an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    /// The execution itself: one per journal, made by the engine.
    Execution,
    /// A group of operations (a child context, a parallel branch, a map item).
    Context,
    /// A unit of work whose result is checkpointed.
    Step,
    /// A durable sleep.
    Wait,
    /// A wait for an external system to answer through the callback API.
    Callback,
    /// An invocation of another function, awaited durably.
    ChainedInvoke,
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationStatus {
    /// Running (a step's attempt, a wait's timer, a callback waiting).
    Started,
    /// A step waiting for its next attempt.
    Pending,
    /// A step whose next attempt is due.
    Ready,
    /// Done with a result.
    Succeeded,
    /// Done with an error.
    Failed,
    /// Cancelled by the handler.
    Cancelled,
    /// A callback that was not answered in time.
    TimedOut,
    /// The execution was stopped.
    Stopped,
}

impl OperationStatus {
    /// Whether nothing can change it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::TimedOut | Self::Stopped
        )
    }
}

/// What an update does to its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationAction {
    /// Creates the operation (or starts a step's next attempt).
    Start,
    /// Ends it with a result.
    Succeed,
    /// Ends it with an error.
    Fail,
    /// Schedules a step's next attempt.
    Retry,
    /// Ends a wait, callback, chained invoke or context early.
    Cancel,
}

/// An error as the SDKs report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorObject {
    /// The message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The type (an exception class name, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Serialized detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<String>,
    /// Stack trace lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_trace: Option<Vec<String>>,
}

impl ErrorObject {
    /// Bytes it takes (towards the payload limit).
    pub fn size(&self) -> usize {
        [&self.error_message, &self.error_type, &self.error_data]
            .iter()
            .filter_map(|s| s.as_ref().map(String::len))
            .sum::<usize>()
            + self
                .stack_trace
                .as_ref()
                .map_or(0, |t| t.iter().map(String::len).sum())
    }
}

/// One change a checkpoint asks for (`OperationUpdate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperationUpdate {
    /// The operation's id (the SDK derives it deterministically).
    pub id: String,
    /// The enclosing context's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Its name, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its type.
    #[serde(rename = "Type")]
    pub kind: OperationType,
    /// The SDK's finer kind (`Step`, `WaitForCondition`, `Map`, …), kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
    /// What to do.
    pub action: OperationAction,
    /// A result, or the input of a chained invoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// An error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
    /// A context's options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_options: Option<ContextOptions>,
    /// A step's options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_options: Option<StepOptions>,
    /// A wait's options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_options: Option<WaitOptions>,
    /// A callback's options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_options: Option<CallbackOptions>,
    /// A chained invoke's options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chained_invoke_options: Option<ChainedInvokeOptions>,
}

impl OperationUpdate {
    /// An update of `kind` doing `action` on operation `id`, with nothing else set.
    pub fn new(id: impl Into<String>, kind: OperationType, action: OperationAction) -> Self {
        Self {
            id: id.into(),
            parent_id: None,
            name: None,
            kind,
            sub_type: None,
            action,
            payload: None,
            error: None,
            context_options: None,
            step_options: None,
            wait_options: None,
            callback_options: None,
            chained_invoke_options: None,
        }
    }
}

/// `ContextOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContextOptions {
    /// Whether a replay reruns the children rather than taking the context's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_children: Option<bool>,
}

/// `StepOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepOptions {
    /// Seconds until the next attempt (with `RETRY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_delay_seconds: Option<u64>,
}

/// `WaitOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitOptions {
    /// How long to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// `CallbackOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallbackOptions {
    /// Seconds until an unanswered callback times out (none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Seconds without a heartbeat after which it times out (none: no heartbeats needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_timeout_seconds: Option<u64>,
}

/// `ChainedInvokeOptions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainedInvokeOptions {
    /// The function to invoke (a name, optionally qualified).
    pub function_name: String,
}

/// An operation as the journal holds it and the state API returns it (`Operation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Operation {
    /// Its id.
    pub id: String,
    /// The enclosing context's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its type.
    #[serde(rename = "Type")]
    pub kind: OperationType,
    /// The SDK's finer kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
    /// When it started, unix ms.
    pub start_ms: i64,
    /// When it ended, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// Where it is.
    pub status: OperationStatus,
    /// Its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
    /// A step's failed attempts so far (the SDK runs attempt `attempt + 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// A pending step's next attempt, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    /// A wait's end, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_end_ms: Option<i64>,
    /// A callback's id (what the callback API takes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_id: Option<String>,
    /// A context's `ReplayChildren`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_children: Option<bool>,
    /// The execution's input (the `EXECUTION` operation), or what a chained invoke was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// A callback with a heartbeat timeout: when it times out without another heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_deadline_ms: Option<i64>,
    /// A callback's heartbeat timeout, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_seconds: Option<u64>,
}

/// How one invocation of a durable handler ended (its answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationOutput {
    /// The handler returned: the execution's result (JSON text).
    Succeeded(Option<String>),
    /// The handler raised: the execution fails.
    Failed(ErrorObject),
    /// The handler is waiting for operations (a wait, a callback, a retry, a chained invoke).
    Pending,
    /// The invocation failed in a way worth retrying (the SDK could not reach the API, say).
    Retry(Option<ErrorObject>),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawOutput {
    status: String,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

impl InvocationOutput {
    /// Reads a handler's answer; `None` if it is not one (not a durable handler, say).
    pub fn parse(answer: &[u8]) -> Option<Self> {
        let raw: RawOutput = serde_json::from_slice(answer).ok()?;
        Some(match raw.status.as_str() {
            "SUCCEEDED" => Self::Succeeded(raw.result),
            "FAILED" => Self::Failed(raw.error.unwrap_or_default()),
            "PENDING" => Self::Pending,
            "RETRY" => Self::Retry(raw.error),
            _ => return None,
        })
    }
}
