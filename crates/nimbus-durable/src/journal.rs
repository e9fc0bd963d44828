//! [`Journal`]: one durable execution's operations, the checkpoint token that guards them, and
//! every transition they go through.
//!
//! A checkpoint is a batch of [`OperationUpdate`]s presented with the current token. The whole
//! batch is checked and applied to a copy; only if every update is valid does the copy replace
//! the journal and the token move on — a refused checkpoint changes nothing. What the engine
//! must then do comes back as [`Effect`]s. Events from outside (a timer firing, a callback
//! answered, a chained invoke finished) go through their own methods, each returning the ids of
//! the operations that changed, which the next invocation of the handler is told about.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    ErrorObject, InvocationOutput, Operation, OperationAction, OperationStatus, OperationType,
    OperationUpdate,
};

/// Most operations one execution may hold.
pub const MAX_OPERATIONS: usize = 3_000;
/// Largest payload (result, error or chained-invoke input) one operation may carry.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Longest wait, step retry delay or callback timeout: one year.
pub const MAX_WAIT_SECONDS: u64 = 366 * 24 * 3600;
/// The `EXECUTION` operation's id.
pub const EXECUTION_ID: &str = "execution";

/// Why a checkpoint or an event was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The token is not the current one (an earlier checkpoint consumed it).
    #[error("invalid checkpoint token: it was already used or belongs to another invocation")]
    StaleToken,
    /// An update names an operation that does not exist.
    #[error("operation `{0}` does not exist")]
    UnknownOperation(String),
    /// An update's type is not its operation's.
    #[error("operation `{id}` is a {existing:?}, not a {given:?}")]
    TypeMismatch {
        /// The operation.
        id: String,
        /// Its type.
        existing: OperationType,
        /// The update's.
        given: OperationType,
    },
    /// The action cannot apply to the operation as it is.
    #[error("operation `{id}` ({kind:?}, {status:?}) cannot take {action:?}")]
    InvalidTransition {
        /// The operation.
        id: String,
        /// Its type.
        kind: OperationType,
        /// Its status.
        status: Option<OperationStatus>,
        /// The action.
        action: OperationAction,
    },
    /// A value is missing or out of range.
    #[error("operation `{id}`: {message}")]
    InvalidValue {
        /// The operation.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The execution would hold too many operations.
    #[error("an execution holds at most {0} operations")]
    TooManyOperations(usize),
    /// The execution has ended.
    #[error("the execution has ended ({0:?})")]
    Ended(OperationStatus),
    /// No callback has that id, or it was already answered.
    #[error("callback `{0}` does not exist or is no longer waiting")]
    UnknownCallback(String),
}

/// What the engine must do after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Call back at `at_ms` ([`Journal::timer_fired`]).
    Timer {
        /// The operation.
        id: String,
        /// Why.
        kind: TimerKind,
        /// When, unix ms.
        at_ms: i64,
    },
    /// Invoke `function` with `payload`, then report with [`Journal::chained_invoke_finished`].
    Invoke {
        /// The `CHAINED_INVOKE` operation.
        id: String,
        /// The function.
        function: String,
        /// Its input.
        payload: Option<String>,
    },
    /// The execution ended: settle it (its result is the `EXECUTION` operation's).
    Finished(OperationStatus),
}

/// Why a timer was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// A wait ends.
    WaitEnd,
    /// A step's next attempt is due.
    StepRetry,
    /// A callback's overall timeout.
    CallbackTimeout,
    /// A callback's heartbeat timeout (re-armed by each heartbeat).
    CallbackHeartbeat,
}

/// What a successful checkpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpointed {
    /// The new token's sequence number.
    pub token: u64,
    /// The operations the checkpoint changed, as they now are.
    pub operations: Vec<Operation>,
    /// What the engine must do.
    pub effects: Vec<Effect>,
}

/// What follows an invocation of the handler ([`Journal::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The execution ended with this status.
    Finished(OperationStatus),
    /// Nothing to do until a timer, a callback or a chained invoke reports.
    Wait,
    /// Invoke the handler again now (operations changed while it ran, a step is ready, or it
    /// asked to be retried).
    InvokeNow,
}

/// One execution's journal. See the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// Operations in the order they started; the `EXECUTION` operation first.
    operations: Vec<Operation>,
    /// Position of each operation in `operations`.
    #[serde(skip)]
    index: HashMap<String, usize>,
    /// The current checkpoint token's sequence number.
    token: u64,
    /// The last checkpoint's client token and what it answered, for an idempotent repeat.
    last: Option<(String, u64, Vec<String>)>,
    /// Operations changed by events since the handler was last invoked.
    updated: Vec<String>,
    /// How many operations it may hold.
    #[serde(default = "default_max_operations")]
    max_operations: usize,
    /// How many times it was redriven, and when last ([`Journal::redrive`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redriven: Option<(u32, i64)>,
}

fn default_max_operations() -> usize {
    MAX_OPERATIONS
}

impl Journal {
    /// A new execution of `input`, started at `now_ms`, its `EXECUTION` operation named
    /// [`EXECUTION_ID`].
    pub fn start(input: Option<String>, now_ms: i64) -> Self {
        Self::start_as(EXECUTION_ID, input, now_ms)
    }

    /// A new execution whose `EXECUTION` operation is `id` (the SDKs look it up by the last
    /// segment of the execution's ARN).
    pub fn start_as(id: &str, input: Option<String>, now_ms: i64) -> Self {
        let execution = Operation {
            id: id.into(),
            parent_id: None,
            name: None,
            kind: OperationType::Execution,
            sub_type: None,
            start_ms: now_ms,
            end_ms: None,
            status: OperationStatus::Started,
            result: None,
            error: None,
            attempt: None,
            next_attempt_ms: None,
            scheduled_end_ms: None,
            callback_id: None,
            replay_children: None,
            input,
            heartbeat_deadline_ms: None,
            heartbeat_seconds: None,
        };
        let mut journal = Self {
            operations: vec![execution],
            index: HashMap::new(),
            token: 1,
            last: None,
            updated: Vec::new(),
            max_operations: MAX_OPERATIONS,
            redriven: None,
        };
        journal.reindex();
        journal
    }

    /// The same journal, allowed `max` operations rather than [`MAX_OPERATIONS`] (a workflow's
    /// inline Map makes a few per item).
    pub fn with_max_operations(mut self, max: usize) -> Self {
        self.max_operations = max;
        self
    }

    /// Rebuilds the id index (after deserializing).
    pub fn reindex(&mut self) {
        self.index = self
            .operations
            .iter()
            .enumerate()
            .map(|(i, op)| (op.id.clone(), i))
            .collect();
    }

    /// The current token's sequence number.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Every operation, in start order.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// One operation.
    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.index.get(id).map(|&i| &self.operations[i])
    }

    /// The execution's status.
    pub fn status(&self) -> OperationStatus {
        self.operations[0].status
    }

    /// Operations changed by events since the last call (what a re-invocation is told), and
    /// forgets them.
    pub fn take_updated(&mut self) -> Vec<String> {
        std::mem::take(&mut self.updated)
    }

    /// A page of operations: at most `max` from position `marker` on, and the next marker.
    pub fn page(&self, marker: usize, max: usize) -> (&[Operation], Option<usize>) {
        let start = marker.min(self.operations.len());
        let end = start.saturating_add(max.max(1)).min(self.operations.len());
        let next = (end < self.operations.len()).then_some(end);
        (&self.operations[start..end], next)
    }

    /// Applies a checkpoint presented with token `token` (and the caller's `client_token`, which
    /// makes a repeat answer the same), at `now_ms`; `new_id` names new callbacks.
    pub fn checkpoint(
        &mut self,
        token: u64,
        client_token: Option<&str>,
        updates: &[OperationUpdate],
        now_ms: i64,
        new_id: &mut dyn FnMut(&str) -> String,
    ) -> Result<Checkpointed, CheckpointError> {
        if let (Some(given), Some((last, answered, ids))) = (client_token, &self.last)
            && given == last
            && token + 1 == *answered
        {
            let operations = ids.iter().filter_map(|id| self.operation(id)).cloned();
            return Ok(Checkpointed {
                token: *answered,
                operations: operations.collect(),
                effects: Vec::new(),
            });
        }
        if token != self.token {
            return Err(CheckpointError::StaleToken);
        }
        if self.status().is_final() {
            return Err(CheckpointError::Ended(self.status()));
        }
        let mut next = self.clone();
        let mut effects = Vec::new();
        let mut changed = Vec::new();
        let execution_id = self.operations[0].id.clone();
        for update in updates {
            next.apply(update, now_ms, new_id, &mut effects)?;
            let id = match update.kind {
                OperationType::Execution => execution_id.as_str(),
                _ => update.id.as_str(),
            };
            if !changed.iter().any(|c| c == id) {
                changed.push(id.to_string());
            }
        }
        next.token += 1;
        next.last = client_token.map(|c| (c.to_string(), next.token, changed.clone()));
        *self = next;
        Ok(Checkpointed {
            token: self.token,
            operations: changed
                .iter()
                .filter_map(|id| self.operation(id))
                .cloned()
                .collect(),
            effects,
        })
    }

    fn apply(
        &mut self,
        u: &OperationUpdate,
        now: i64,
        new_id: &mut dyn FnMut(&str) -> String,
        effects: &mut Vec<Effect>,
    ) -> Result<(), CheckpointError> {
        let invalid = |message: &str| CheckpointError::InvalidValue {
            id: u.id.clone(),
            message: message.to_string(),
        };
        let size = u.payload.as_ref().map_or(0, String::len)
            + u.error.as_ref().map_or(0, ErrorObject::size);
        if size > MAX_PAYLOAD_BYTES {
            return Err(invalid(&format!(
                "payload of {size} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit"
            )));
        }
        // The SDKs end the execution with an update of type EXECUTION under an id of their
        // own (`execution-result-<ms>`): it is about the execution operation, whatever its id.
        let existing = if u.kind == OperationType::Execution {
            Some(0)
        } else {
            self.index.get(&u.id).copied()
        };
        if let Some(i) = existing
            && self.operations[i].kind != u.kind
        {
            return Err(CheckpointError::TypeMismatch {
                id: u.id.clone(),
                existing: self.operations[i].kind,
                given: u.kind,
            });
        }
        let transition = |op: Option<&Operation>| CheckpointError::InvalidTransition {
            id: u.id.clone(),
            kind: u.kind,
            status: op.map(|o| o.status),
            action: u.action,
        };
        let Some(i) = existing else {
            if u.action != OperationAction::Start {
                return Err(CheckpointError::UnknownOperation(u.id.clone()));
            }
            return self.create(u, now, new_id, effects);
        };
        let op = &mut self.operations[i];
        use OperationAction as A;
        use OperationStatus as S;
        use OperationType as T;
        match (u.action, op.kind, op.status) {
            // A step's next attempt (its number is the failed attempts so far + 1).
            (A::Start, T::Step, S::Ready | S::Pending) => {
                op.status = S::Started;
                op.next_attempt_ms = None;
            }
            (A::Start, T::Execution, _) => return Err(transition(Some(op))),
            (A::Start, _, S::Started) => {}
            (A::Succeed | A::Fail, T::Step | T::Context | T::Execution, S::Started) => {
                let ok = u.action == A::Succeed;
                op.status = if ok { S::Succeeded } else { S::Failed };
                op.end_ms = Some(now);
                if ok {
                    op.result = u.payload.clone();
                } else {
                    op.error = Some(u.error.clone().unwrap_or_default());
                }
                if op.kind == T::Execution {
                    effects.push(Effect::Finished(op.status));
                }
            }
            (A::Retry, T::Step, S::Started) => {
                let delay = u
                    .step_options
                    .as_ref()
                    .and_then(|o| o.next_attempt_delay_seconds)
                    .unwrap_or(0);
                if delay > MAX_WAIT_SECONDS {
                    return Err(invalid("NextAttemptDelaySeconds is over one year"));
                }
                let at = now + (delay as i64) * 1000;
                op.status = S::Pending;
                op.attempt = Some(op.attempt.unwrap_or(0) + 1);
                op.next_attempt_ms = Some(at);
                op.error = u.error.clone();
                // wait_for_condition keeps its state between attempts in the payload.
                if u.payload.is_some() {
                    op.result = u.payload.clone();
                }
                effects.push(Effect::Timer {
                    id: op.id.clone(),
                    kind: TimerKind::StepRetry,
                    at_ms: at,
                });
            }
            (A::Cancel, T::Wait | T::Callback | T::ChainedInvoke | T::Context, S::Started) => {
                op.status = S::Cancelled;
                op.end_ms = Some(now);
            }
            _ => return Err(transition(Some(op))),
        }
        Ok(())
    }

    fn create(
        &mut self,
        u: &OperationUpdate,
        now: i64,
        new_id: &mut dyn FnMut(&str) -> String,
        effects: &mut Vec<Effect>,
    ) -> Result<(), CheckpointError> {
        let invalid = |message: &str| CheckpointError::InvalidValue {
            id: u.id.clone(),
            message: message.to_string(),
        };
        if self.operations.len() >= self.max_operations {
            return Err(CheckpointError::TooManyOperations(self.max_operations));
        }
        if let Some(parent) = &u.parent_id {
            match self.operation(parent) {
                Some(p) if matches!(p.kind, OperationType::Context | OperationType::Execution) => {}
                _ => return Err(invalid(&format!("parent `{parent}` is not a context"))),
            }
        }
        // 0 or absent: no such timeout (as the API documents for callbacks).
        let seconds = |s: Option<u64>, what: &str| match s {
            None | Some(0) => Ok(None),
            Some(s) if s <= MAX_WAIT_SECONDS => Ok(Some(now + s as i64 * 1000)),
            Some(_) => Err(invalid(&format!("{what} must be at most one year"))),
        };
        let mut op = Operation {
            id: u.id.clone(),
            parent_id: u.parent_id.clone(),
            name: u.name.clone(),
            kind: u.kind,
            sub_type: u.sub_type.clone(),
            start_ms: now,
            end_ms: None,
            status: OperationStatus::Started,
            result: None,
            error: None,
            attempt: None,
            next_attempt_ms: None,
            scheduled_end_ms: None,
            callback_id: None,
            replay_children: None,
            input: None,
            heartbeat_deadline_ms: None,
            heartbeat_seconds: None,
        };
        let timer = |kind, at_ms| Effect::Timer {
            id: u.id.clone(),
            kind,
            at_ms,
        };
        match u.kind {
            // Attempts that failed and were retried; the SDK runs attempt `attempt + 1`.
            OperationType::Step => op.attempt = Some(0),
            OperationType::Context => {
                op.replay_children = u.context_options.as_ref().and_then(|o| o.replay_children);
            }
            OperationType::Wait => {
                // 1 second to one year; absent means 1 (as the API documents).
                let wait = u
                    .wait_options
                    .as_ref()
                    .and_then(|o| o.wait_seconds)
                    .unwrap_or(1);
                if wait == 0 {
                    return Err(invalid("WaitSeconds must be 1 second to one year"));
                }
                let at = seconds(Some(wait), "WaitSeconds")?.unwrap_or(now + 1000);
                op.scheduled_end_ms = Some(at);
                effects.push(timer(TimerKind::WaitEnd, at));
            }
            OperationType::Callback => {
                let o = u.callback_options.clone().unwrap_or_default();
                if let Some(at) = seconds(o.timeout_seconds, "TimeoutSeconds")? {
                    effects.push(timer(TimerKind::CallbackTimeout, at));
                }
                if let Some(at) = seconds(o.heartbeat_timeout_seconds, "HeartbeatTimeoutSeconds")? {
                    op.heartbeat_deadline_ms = Some(at);
                    op.heartbeat_seconds = o.heartbeat_timeout_seconds;
                    effects.push(timer(TimerKind::CallbackHeartbeat, at));
                }
                op.callback_id = Some(new_id(&op.id));
            }
            OperationType::ChainedInvoke => {
                let function = u
                    .chained_invoke_options
                    .as_ref()
                    .map(|o| o.function_name.clone())
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| {
                        invalid("a CHAINED_INVOKE needs ChainedInvokeOptions.FunctionName")
                    })?;
                // Kept: what the function was given (a workflow's history shows it).
                op.input = u.payload.clone();
                effects.push(Effect::Invoke {
                    id: u.id.clone(),
                    function,
                    payload: u.payload.clone(),
                });
            }
            OperationType::Execution => {
                return Err(invalid("the EXECUTION operation is the engine's to start"));
            }
        }
        self.index.insert(op.id.clone(), self.operations.len());
        self.operations.push(op);
        Ok(())
    }

    /// A timer set by an [`Effect::Timer`] fired at `now_ms`. Returns whether an operation
    /// changed (and the handler must be invoked again); a timer whose operation moved on
    /// (a cancelled wait, a callback already answered) changes nothing.
    pub fn timer_fired(&mut self, id: &str, kind: TimerKind, now_ms: i64) -> bool {
        let Some(&i) = self.index.get(id) else {
            return false;
        };
        if self.status().is_final() {
            return false;
        }
        let op = &mut self.operations[i];
        let changed = match (kind, op.status) {
            (TimerKind::WaitEnd, OperationStatus::Started) => {
                op.status = OperationStatus::Succeeded;
                op.end_ms = Some(now_ms);
                true
            }
            (TimerKind::StepRetry, OperationStatus::Pending) => {
                op.status = OperationStatus::Ready;
                true
            }
            // A heartbeat since this timer was set moved the deadline on.
            (TimerKind::CallbackHeartbeat, OperationStatus::Started)
                if op.heartbeat_deadline_ms.is_some_and(|at| now_ms < at) =>
            {
                false
            }
            (
                TimerKind::CallbackTimeout | TimerKind::CallbackHeartbeat,
                OperationStatus::Started,
            ) => {
                op.status = OperationStatus::TimedOut;
                op.end_ms = Some(now_ms);
                true
            }
            _ => false,
        };
        if changed {
            self.updated.push(id.to_string());
        }
        changed
    }

    /// A heartbeat for callback `callback_id`: its heartbeat deadline moves on by its
    /// `HeartbeatTimeoutSeconds`; the timer to set for the new deadline, if it has one.
    pub fn callback_heartbeat(
        &mut self,
        callback_id: &str,
        now_ms: i64,
    ) -> Result<Option<Effect>, CheckpointError> {
        let id = self.waiting_callback(callback_id)?.id.clone();
        let Some(&i) = self.index.get(&id) else {
            return Err(CheckpointError::UnknownCallback(callback_id.to_string()));
        };
        let op = &mut self.operations[i];
        let Some(seconds) = op.heartbeat_seconds else {
            return Ok(None);
        };
        let at_ms = now_ms + seconds.min(MAX_WAIT_SECONDS) as i64 * 1000;
        op.heartbeat_deadline_ms = Some(at_ms);
        Ok(Some(Effect::Timer {
            id,
            kind: TimerKind::CallbackHeartbeat,
            at_ms,
        }))
    }

    /// Whether the handler must be invoked (again): operations changed since it last ran, a
    /// step is ready for its next attempt, or nothing it waits for changes by itself (a new
    /// execution, or one whose last invocation did not get as far as waiting).
    pub fn needs_invocation(&self) -> bool {
        if self.status().is_final() {
            return false;
        }
        let ready = self
            .operations
            .iter()
            .any(|o| o.status == OperationStatus::Ready);
        let waiting = self.operations.iter().skip(1).any(|o| {
            matches!(
                (o.kind, o.status),
                (
                    OperationType::Wait | OperationType::Callback | OperationType::ChainedInvoke,
                    OperationStatus::Started
                ) | (OperationType::Step, OperationStatus::Pending)
            )
        });
        ready || !self.updated.is_empty() || !waiting
    }

    /// Forgets that operations `ids` changed: a handler invocation was told.
    pub fn told(&mut self, ids: &[String]) {
        self.updated.retain(|id| !ids.contains(id));
    }

    /// The operations changed since the handler last ran (what its next invocation is told).
    pub fn updated(&self) -> &[String] {
        &self.updated
    }

    /// Callback `callback_id` was answered with a result or an error.
    pub fn complete_callback(
        &mut self,
        callback_id: &str,
        outcome: Result<Option<String>, ErrorObject>,
        now_ms: i64,
    ) -> Result<(), CheckpointError> {
        let id = self.waiting_callback(callback_id)?.id.clone();
        self.finish(&id, outcome, now_ms);
        Ok(())
    }

    /// Chained invoke `id` finished with a result or an error.
    pub fn chained_invoke_finished(
        &mut self,
        id: &str,
        outcome: Result<Option<String>, ErrorObject>,
        now_ms: i64,
    ) -> Result<(), CheckpointError> {
        match self.operation(id) {
            Some(op)
                if op.kind == OperationType::ChainedInvoke
                    && op.status == OperationStatus::Started => {}
            Some(op) => {
                return Err(CheckpointError::InvalidTransition {
                    id: id.to_string(),
                    kind: op.kind,
                    status: Some(op.status),
                    action: OperationAction::Succeed,
                });
            }
            None => return Err(CheckpointError::UnknownOperation(id.to_string())),
        }
        self.finish(id, outcome, now_ms);
        Ok(())
    }

    /// What an invocation's answer means for the execution: its end (a result or an error
    /// the handler returned rather than checkpointed is recorded here), a wait, or another
    /// invocation.
    pub fn settle(&mut self, output: InvocationOutput, now_ms: i64) -> Next {
        if self.status().is_final() {
            return Next::Finished(self.status());
        }
        let execution = &mut self.operations[0];
        match output {
            InvocationOutput::Succeeded(result) => {
                execution.status = OperationStatus::Succeeded;
                execution.result = result;
            }
            InvocationOutput::Failed(error) => {
                execution.status = OperationStatus::Failed;
                execution.error = Some(error);
            }
            InvocationOutput::Retry(_) => return Next::InvokeNow,
            InvocationOutput::Pending => {
                // Waiting needs something that changes by itself: a wait, a callback, a
                // chained invoke, a step waiting for its retry. Without one: replay.
                return if self.needs_invocation() {
                    Next::InvokeNow
                } else {
                    Next::Wait
                };
            }
        }
        execution.end_ms = Some(now_ms);
        Next::Finished(execution.status)
    }

    /// Runs an execution that ended unsuccessfully again from where it failed (Step Functions'
    /// `RedriveExecution`): the `EXECUTION` operation runs again, and only the operations
    /// `keep` accepts stay (what succeeded, so a replay reads it rather than does it again).
    /// `false`, changing nothing, when the execution is running or succeeded.
    pub fn redrive(&mut self, keep: impl Fn(&Operation) -> bool, now_ms: i64) -> bool {
        let status = self.status();
        if !status.is_final() || status == OperationStatus::Succeeded {
            return false;
        }
        let count = self.redriven.map_or(0, |(n, _)| n);
        self.redriven = Some((count + 1, now_ms));
        let execution = &mut self.operations[0];
        execution.status = OperationStatus::Started;
        execution.end_ms = None;
        execution.error = None;
        execution.result = None;
        let mut first = true;
        self.operations
            .retain(|op| std::mem::take(&mut first) || keep(op));
        self.updated.clear();
        self.reindex();
        true
    }

    /// How many times it was redriven, and when last.
    pub fn redriven(&self) -> Option<(u32, i64)> {
        self.redriven
    }

    /// Stops the execution (`StopDurableExecution`): it and everything still running end.
    pub fn stop(&mut self, error: Option<ErrorObject>, now_ms: i64) -> Result<(), CheckpointError> {
        self.end_all(OperationStatus::Stopped, error, now_ms)
    }

    /// The execution ran past its timeout: it ends `TIMED_OUT`, and everything still running
    /// stops.
    pub fn time_out(&mut self, now_ms: i64) -> Result<(), CheckpointError> {
        self.end_all(OperationStatus::TimedOut, None, now_ms)
    }

    fn end_all(
        &mut self,
        status: OperationStatus,
        error: Option<ErrorObject>,
        now_ms: i64,
    ) -> Result<(), CheckpointError> {
        if self.status().is_final() {
            return Err(CheckpointError::Ended(self.status()));
        }
        for op in self.operations.iter_mut().filter(|o| !o.status.is_final()) {
            op.status = OperationStatus::Stopped;
            op.end_ms = Some(now_ms);
        }
        self.operations[0].status = status;
        self.operations[0].error = error;
        Ok(())
    }

    fn waiting_callback(&self, callback_id: &str) -> Result<&Operation, CheckpointError> {
        self.operations
            .iter()
            .find(|o| {
                o.callback_id.as_deref() == Some(callback_id)
                    && o.status == OperationStatus::Started
            })
            .filter(|_| !self.status().is_final())
            .ok_or_else(|| CheckpointError::UnknownCallback(callback_id.to_string()))
    }

    fn finish(&mut self, id: &str, outcome: Result<Option<String>, ErrorObject>, now_ms: i64) {
        if let Some(&i) = self.index.get(id) {
            let op = &mut self.operations[i];
            match outcome {
                Ok(result) => {
                    op.status = OperationStatus::Succeeded;
                    op.result = result;
                }
                Err(error) => {
                    op.status = OperationStatus::Failed;
                    op.error = Some(error);
                }
            }
            op.end_ms = Some(now_ms);
            self.updated.push(id.to_string());
        }
    }
}

#[cfg(test)]
mod tests;
