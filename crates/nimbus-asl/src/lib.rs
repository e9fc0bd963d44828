//! The Amazon States Language (JSONPath mode), as Nimbus workflows run it: a definition
//! parsed and validated once (every path, template and intrinsic call compiled, every error
//! located by its JSON pointer), and a deterministic interpreter that says what a state does
//! next without doing it — the engine performs tasks, timers and branches and journals each
//! transition. Nothing here does I/O or reads a clock; randomness comes from the caller.

pub mod choice;
pub mod definition;
pub mod history;
pub mod integration;
pub mod intrinsic;
pub mod machine;
pub mod path;
pub mod replay;
pub mod store;
pub mod template;

use serde_json::{Value, json};

/// A problem with a definition: an error code as `ValidateStateMachineDefinition` reports it
/// (`SCHEMA_VALIDATION_FAILED`, `MISSING_TRANSITION_TARGET`, …), what is wrong, and where (a
/// JSON pointer such as `/States/Fetch/Retry/0/ErrorEquals`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The error code.
    pub code: &'static str,
    /// What is wrong, in words.
    pub message: String,
    /// Where, as a JSON pointer into the definition.
    pub location: String,
}

impl Diagnostic {
    /// A schema problem (`SCHEMA_VALIDATION_FAILED`) at `location`.
    pub fn schema(location: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code: "SCHEMA_VALIDATION_FAILED",
            message: message.into(),
            location: location.into(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} at {}", self.code, self.message, self.location)
    }
}

/// The predefined error names (`States.*`).
pub mod errors {
    /// Matches every error but `States.Runtime` and `States.DataLimitExceeded`.
    pub const ALL: &str = "States.ALL";
    /// A task failed; matches every error but `States.Timeout` (and the two `ALL` leaves out).
    pub const TASK_FAILED: &str = "States.TaskFailed";
    /// A task or execution ran past its `TimeoutSeconds`.
    pub const TIMEOUT: &str = "States.Timeout";
    /// A task sent no heartbeat within its `HeartbeatSeconds`.
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    /// An error no retrier or catcher may handle: the execution fails.
    pub const RUNTIME: &str = "States.Runtime";
    /// A payload larger than the limit.
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    /// A `.$` field's path found nothing in the input.
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    /// `ResultPath` could not be applied to the state's input.
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    /// An intrinsic function failed.
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    /// No Choice rule matched and there is no `Default`.
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    /// A Parallel branch failed.
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    /// More Map iterations failed than tolerated.
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
}

/// An error raised in a state: its name and an optional cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error name (`States.Timeout`, or what a task raised, like `ValueError`).
    pub error: String,
    /// More about it.
    pub cause: Option<String>,
}

impl Failure {
    /// A failure named `error` with `cause`.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }

    /// The `{"Error", "Cause"}` object a catcher passes on.
    pub fn to_json(&self) -> Value {
        match &self.cause {
            Some(cause) => json!({"Error": self.error, "Cause": cause}),
            None => json!({"Error": self.error}),
        }
    }

    /// Whether no retrier or catcher may handle it.
    pub fn is_terminal(&self) -> bool {
        self.error == errors::RUNTIME || self.error == errors::DATA_LIMIT_EXCEEDED
    }

    /// Whether an `ErrorEquals` entry matches it.
    pub fn matches(&self, name: &str) -> bool {
        if self.is_terminal() {
            return false;
        }
        match name {
            errors::ALL => true,
            errors::TASK_FAILED => {
                self.error != errors::TIMEOUT && self.error != errors::HEARTBEAT_TIMEOUT
            }
            errors::TIMEOUT => {
                self.error == errors::TIMEOUT || self.error == errors::HEARTBEAT_TIMEOUT
            }
            name => self.error == name,
        }
    }
}
