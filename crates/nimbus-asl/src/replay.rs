//! A workflow as a durable execution: the interpreter replayed over the execution's journal
//! (`nimbus-durable`), the way an SDK replays a handler.
//!
//! Every state visit is a `STEP` operation whose result is the visit's transition (so a replay
//! reads it rather than computes it again); a Task's work is a `CHAINED_INVOKE` (or, for
//! `.waitForTaskToken`, a `CALLBACK` whose id is the task token, plus the invoke that hands the
//! token out); a Wait state and a retry's delay are `WAIT`s; each Parallel branch and Map
//! iteration is a `CONTEXT` holding its own visits. Operation ids follow from the path through
//! the definition (`s3` is the fourth visit at the top; `s3.0.b1.0` the first visit of branch 1
//! of its first attempt), and randomness (`States.UUID`, jitter) is seeded by the execution and
//! the operation, so a replay of the same journal always asks for the same operations.
//!
//! [`turn`] is one pass: the updates to checkpoint now and the outcome as far as the journal
//! tells. The engine checkpoints the updates, performs their effects (invokes, timers) and
//! calls it again until a pass asks for nothing; then the execution waits for a wake-up, or
//! has ended.

use nimbus_durable::journal::{Journal, MAX_WAIT_SECONDS};
use nimbus_durable::model::{
    CallbackOptions, ChainedInvokeOptions, ErrorObject, Operation, OperationAction,
    OperationStatus, OperationType, OperationUpdate, WaitOptions,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use sha2::Digest;

use crate::definition::{Definition, Kind, Scope, State};
use crate::integration::{SNS_PUBLISH, SQS_SEND_MESSAGE, START_EXECUTION, Service, Sync, sync2};
use crate::machine::{Action, Env, MapRun, TaskCall, Transition, parallel_result};
use crate::{Failure, errors};

/// The most updates one pass asks for: a definition that loops through states that need no
/// work (a Pass and a Choice, say) goes on in the next pass, and ends when the execution holds
/// as many operations as it may.
pub const PASS_LIMIT: usize = 1000;

/// The Lambda `Invoke` integration (`Parameters`: `FunctionName`, `Payload`).
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

/// The execution being replayed.
pub struct Run<'a> {
    /// The definition it runs (the one it started with).
    pub definition: &'a Definition,
    /// Its ARN (`$$.Execution.Id`).
    pub execution_arn: &'a str,
    /// Its name.
    pub execution_name: &'a str,
    /// The state machine's ARN.
    pub machine_arn: &'a str,
    /// The state machine's name.
    pub machine_name: &'a str,
    /// The role given at creation (`$$.Execution.RoleArn`).
    pub role_arn: &'a str,
}

/// Where the execution is after a pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Waiting for operations to end.
    Pending,
    /// Succeeded with this output.
    Succeeded(Value),
    /// Failed.
    Failed(Failure),
}

/// One pass: what to checkpoint, and the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Updates to checkpoint, in order.
    pub updates: Vec<OperationUpdate>,
    /// The outcome as far as the journal (with the updates) tells.
    pub outcome: Outcome,
}

/// Where a task sends its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A function: by name (`name` or `name:qualifier`); `integration` when called through
    /// [`LAMBDA_INVOKE`] (its result is wrapped as Lambda's `Invoke` answer).
    Function {
        /// The function, as the invoker takes it.
        name: String,
        /// Whether the result is wrapped.
        integration: bool,
    },
    /// A service integration: a queue, a topic or a nested execution.
    Service(Service),
}

/// What a Task's `Resource` names, or why Nimbus cannot run it.
pub fn target(resource: &str) -> Result<Target, String> {
    let base = resource
        .strip_suffix(".waitForTaskToken")
        .unwrap_or(resource);
    if let Some(service) = Service::parse(base) {
        if service.is_sync() && base != resource {
            return Err(format!(
                "'{resource}': a .sync task cannot also wait for a task token"
            ));
        }
        return Ok(Target::Service(service));
    }
    if base == LAMBDA_INVOKE {
        return Ok(Target::Function {
            name: String::new(),
            integration: true,
        });
    }
    if let Some(rest) = base.strip_prefix("arn:aws:lambda:") {
        // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        let parts: Vec<&str> = rest.split(':').collect();
        return match parts.as_slice() {
            [_, _, "function", name] => Ok(Target::Function {
                name: (*name).to_owned(),
                integration: false,
            }),
            [_, _, "function", name, qualifier] => Ok(Target::Function {
                name: format!("{name}:{qualifier}"),
                integration: false,
            }),
            _ => Err(format!("'{resource}' is not a Lambda function ARN")),
        };
    }
    if resource.ends_with(".waitForTaskToken") {
        return Err(format!(
            "'{resource}': .waitForTaskToken is supported with {LAMBDA_INVOKE}, {SQS_SEND_MESSAGE}, {SNS_PUBLISH} and {START_EXECUTION}"
        ));
    }
    if base.starts_with("arn:") {
        return Err(format!(
            "the resource '{resource}' is not supported: Nimbus runs functions (by name, Lambda function ARN or {LAMBDA_INVOKE}), {SQS_SEND_MESSAGE}, {SNS_PUBLISH} and {START_EXECUTION}[.sync[:2]]"
        ));
    }
    if base.is_empty()
        || !base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':')
    {
        return Err(format!("'{resource}' is not a function name"));
    }
    Ok(Target::Function {
        name: base.to_owned(),
        integration: false,
    })
}

/// Every Task resource of a definition that Nimbus cannot run, with its state's location.
pub fn unsupported_resources(definition: &Definition) -> Vec<(String, String)> {
    fn walk(scope: &Scope, out: &mut Vec<(String, String)>) {
        for state in scope.states.values() {
            match &state.kind {
                Kind::Task(task) => {
                    if let Err(e) = target(&task.resource) {
                        out.push((format!("{}/Resource", state.location), e));
                    }
                }
                Kind::Parallel(branches) => branches.iter().for_each(|b| walk(b, out)),
                Kind::Map(map) => walk(&map.processor, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&definition.root, &mut out);
    out
}

/// One pass over the journal at `now_ms` (the time the engine checkpoints the updates at).
pub fn turn(run: &Run<'_>, journal: &Journal, now_ms: i64) -> Turn {
    let execution = &journal.operations()[0];
    let input = execution
        .input
        .as_deref()
        .and_then(|i| serde_json::from_str(i).ok())
        .unwrap_or_else(|| json!({}));
    let mut replay = Replay {
        run,
        journal,
        now_ms,
        start_ms: execution.start_ms,
        input: input.clone(),
        updates: Vec::new(),
    };
    let root = execution.id.clone();
    let outcome = match replay.scope(&run.definition.root, "s", &root, input) {
        None => Outcome::Pending,
        Some(Transition::End(output)) => Outcome::Succeeded(output),
        Some(Transition::Fail(failure)) => Outcome::Failed(failure),
        Some(Transition::Next { .. }) => unreachable!("a scope ends or fails"),
    };
    Turn {
        updates: replay.updates,
        outcome,
    }
}

/// An operation as this pass sees it.
enum Seen<'j> {
    /// Not in the journal (nor asked for in this pass).
    Missing,
    /// Asked for in this pass: started, nothing known yet.
    New,
    /// In the journal.
    Found(&'j Operation),
}

struct Replay<'r, 'j> {
    run: &'r Run<'r>,
    journal: &'j Journal,
    now_ms: i64,
    start_ms: i64,
    input: Value,
    updates: Vec<OperationUpdate>,
}

/// An error as a workflow names it, from an operation's error.
pub fn failure_of(error: Option<&ErrorObject>) -> Failure {
    let error = error.cloned().unwrap_or_default();
    Failure {
        error: error
            .error_type
            .unwrap_or_else(|| errors::TASK_FAILED.to_owned()),
        // A function's error document when there is one (as Step Functions gives it).
        cause: error.error_data.or(error.error_message),
    }
}

/// An operation's error from a workflow's.
pub fn error_of(failure: &Failure) -> ErrorObject {
    ErrorObject {
        error_type: Some(failure.error.clone()),
        error_message: failure.cause.clone(),
        ..Default::default()
    }
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn seeded(arn: &str, id: &str) -> StdRng {
    let digest = sha2::Sha256::digest(format!("{arn}\0{id}").as_bytes());
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&digest);
    StdRng::from_seed(seed)
}

/// A result's text as JSON (a function may answer something else: then it is a string).
fn parse(result: Option<&str>) -> Value {
    match result {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
    }
}

fn update(id: &str, parent: &str, kind: OperationType, action: OperationAction) -> OperationUpdate {
    OperationUpdate {
        parent_id: Some(parent.to_owned()),
        ..OperationUpdate::new(id, kind, action)
    }
}

impl<'j> Replay<'_, 'j> {
    fn seen(&self, id: &str) -> Seen<'j> {
        if let Some(op) = self.journal.operation(id) {
            return Seen::Found(op);
        }
        if self.updates.iter().any(|u| u.id == id) {
            Seen::New
        } else {
            Seen::Missing
        }
    }

    fn push(&mut self, u: OperationUpdate) {
        self.updates.push(u);
    }

    fn end(
        &mut self,
        id: &str,
        parent: &str,
        kind: OperationType,
        outcome: Result<&Value, &Failure>,
    ) {
        let mut u = update(id, parent, kind, OperationAction::Succeed);
        match outcome {
            Ok(value) => u.payload = Some(value.to_string()),
            Err(failure) => {
                u.action = OperationAction::Fail;
                u.error = Some(error_of(failure));
            }
        }
        self.push(u);
    }

    fn context(&self, state: &State, entered_ms: i64, retry: usize, token: Option<&str>) -> Value {
        let mut context = json!({
            "Execution": {
                "Id": self.run.execution_arn,
                "Input": self.input,
                "Name": self.run.execution_name,
                "RoleArn": self.run.role_arn,
                "StartTime": iso(self.start_ms),
                "RedriveCount": 0
            },
            "State": {"EnteredTime": iso(entered_ms), "Name": state.name, "RetryCount": retry},
            "StateMachine": {"Id": self.run.machine_arn, "Name": self.run.machine_name}
        });
        if let Some(token) = token {
            context["Task"] = json!({"Token": token});
        }
        context
    }

    /// Runs a scope from its start as far as the journal goes: its end, or `None` (pending).
    fn scope(
        &mut self,
        scope: &Scope,
        prefix: &str,
        parent: &str,
        input: Value,
    ) -> Option<Transition> {
        let mut transition = scope.start(input);
        for n in 0usize.. {
            let Transition::Next { state, input } = transition else {
                return Some(transition);
            };
            if self.updates.len() >= PASS_LIMIT {
                return None;
            }
            let Some(state) = scope.state(&state) else {
                return Some(Transition::Fail(Failure::new(
                    errors::RUNTIME,
                    format!("no state named '{state}'"),
                )));
            };
            transition = self.visit(state, &format!("{prefix}{n}"), parent, &input)?;
        }
        unreachable!("the loop returns")
    }

    /// One visit of a state: its transition (journaled once known), or `None` (pending).
    fn visit(
        &mut self,
        state: &State,
        id: &str,
        parent: &str,
        input: &Value,
    ) -> Option<Transition> {
        let entered_ms = match self.seen(id) {
            Seen::Found(op) if op.status == OperationStatus::Succeeded => {
                return visit_transition(op);
            }
            Seen::Found(op) if op.status.is_final() => return None,
            Seen::Found(op) => op.start_ms,
            Seen::New => self.now_ms,
            Seen::Missing => {
                let mut u = update(id, parent, OperationType::Step, OperationAction::Start);
                u.name = Some(state.name.clone());
                u.sub_type = Some(type_name(&state.kind).to_owned());
                self.push(u);
                self.now_ms
            }
        };
        let transition = self.work(state, id, parent, input, entered_ms)?;
        let mut u = update(id, parent, OperationType::Step, OperationAction::Succeed);
        u.payload = Some(encode(&transition).to_string());
        self.push(u);
        Some(transition)
    }

    /// The state's work, attempt after attempt, with its retries and catchers.
    fn work(
        &mut self,
        state: &State,
        id: &str,
        parent: &str,
        input: &Value,
        entered_ms: i64,
    ) -> Option<Transition> {
        let arn = self.run.execution_arn;
        let mut attempts = Vec::new();
        for attempt in 0usize.. {
            let work = format!("{id}.{attempt}");
            let token = match &state.kind {
                Kind::Task(task) if task.wait_for_task_token => match self.seen(&work) {
                    Seen::Found(op) => op.callback_id.clone(),
                    _ => None,
                },
                _ => None,
            };
            // A token task's payload may name `$$.Task.Token`: empty until its callback exists.
            let task_token = match &state.kind {
                Kind::Task(task) if task.wait_for_task_token => {
                    Some(token.as_deref().unwrap_or(""))
                }
                _ => None,
            };
            let context = self.context(state, entered_ms, attempt, task_token);
            let mut rng = seeded(arn, &work);
            let mut env = Env {
                context: &context,
                now_ms: entered_ms,
                rng: &mut rng,
            };
            let entered = state.enter(input, &mut env);
            let result = match entered {
                Ok(Action::Go(transition)) => return Some(transition),
                Ok(Action::Wait { until_ms, then }) => {
                    return self
                        .wait(&format!("{id}.w"), parent, until_ms)
                        .then_some(then);
                }
                Ok(Action::Task(call)) => self.task(&work, parent, call, token.as_deref())?,
                Ok(Action::Parallel { input }) => {
                    let Kind::Parallel(branches) = &state.kind else {
                        unreachable!("a Parallel state")
                    };
                    self.parallel(&work, parent, branches, input)?
                }
                Ok(Action::Map(run)) => {
                    let Kind::Map(map) = &state.kind else {
                        unreachable!("a Map state")
                    };
                    self.map(&work, parent, &map.processor, run)?
                }
                Err(failure) => Err(failure),
            };
            let mut env = Env {
                context: &context,
                now_ms: entered_ms,
                rng: &mut rng,
            };
            let failure = match result.and_then(|r| state.complete(input, r, &mut env)) {
                Ok(transition) => return Some(transition),
                Err(failure) => failure,
            };
            match state.recover(input, failure, &mut attempts, &mut rng) {
                crate::machine::Recovery::Retry { delay_ms } => {
                    let until = self.now_ms + delay_ms as i64;
                    if !self.wait(&format!("{work}.r"), parent, until) {
                        return None;
                    }
                }
                crate::machine::Recovery::Catch(transition) => return Some(transition),
                crate::machine::Recovery::Fail(failure) => return Some(Transition::Fail(failure)),
            }
        }
        unreachable!("the loop returns")
    }

    /// A durable wait until `until_ms`: whether it is over (`false`: pending).
    fn wait(&mut self, id: &str, parent: &str, until_ms: i64) -> bool {
        match self.seen(id) {
            Seen::Found(op) => op.status == OperationStatus::Succeeded,
            Seen::New => false,
            Seen::Missing => {
                let seconds = (until_ms - self.now_ms + 999).div_euclid(1000);
                if seconds <= 0 {
                    return true;
                }
                let mut u = update(id, parent, OperationType::Wait, OperationAction::Start);
                // No execution outlives a year: a longer wait is one year.
                let seconds = (seconds as u64).min(MAX_WAIT_SECONDS);
                u.wait_options = Some(WaitOptions {
                    wait_seconds: Some(seconds),
                });
                self.push(u);
                false
            }
        }
    }

    /// A task's attempt: its result, or `None` (pending).
    fn task(
        &mut self,
        work: &str,
        parent: &str,
        call: TaskCall,
        token: Option<&str>,
    ) -> Option<Result<Value, Failure>> {
        let (function, payload, integration, json2) = match target(&call.resource) {
            Ok(Target::Function {
                integration: true, ..
            }) => {
                let name = call
                    .payload
                    .get("FunctionName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = match target(name) {
                    Ok(Target::Function { name, .. }) if !name.is_empty() => name,
                    _ => {
                        return Some(Err(Failure::new(
                            errors::RUNTIME,
                            format!(
                                "{LAMBDA_INVOKE} needs Parameters.FunctionName (a function name or ARN), not '{name}'"
                            ),
                        )));
                    }
                };
                (
                    name,
                    call.payload
                        .get("Payload")
                        .cloned()
                        .unwrap_or_else(|| json!({})),
                    true,
                    false,
                )
            }
            Ok(Target::Function { name, .. }) => (name, call.payload.clone(), false, false),
            // The engine performs the service call the chained invoke names.
            Ok(Target::Service(service)) => (
                service.resource().to_owned(),
                call.payload.clone(),
                false,
                service == Service::StartExecution(Sync::Json),
            ),
            Err(e) => return Some(Err(Failure::new(errors::RUNTIME, e))),
        };
        let invoke = |id: &str| {
            let mut u = update(
                id,
                parent,
                OperationType::ChainedInvoke,
                OperationAction::Start,
            );
            u.payload = Some(payload.to_string());
            // Named by what it calls (the history's resource).
            u.name = Some(function.clone());
            u.chained_invoke_options = Some(ChainedInvokeOptions {
                function_name: function.clone(),
            });
            u
        };
        let wrap = |value: Value| {
            if integration {
                json!({"ExecutedVersion": "$LATEST", "Payload": value, "StatusCode": 200})
            } else if json2 {
                sync2(value)
            } else {
                value
            }
        };
        if !call.wait_for_task_token {
            // `TimeoutSeconds`: a durable timer beside the invoke; whichever ends first ends
            // the attempt (a late answer is left unread).
            let timeout = format!("{work}.t");
            let timed_out = |me: &mut Self, started_ms: i64| {
                call.timeout_seconds.is_some_and(|t| {
                    let until = started_ms.saturating_add((t.min(MAX_WAIT_SECONDS) * 1000) as i64);
                    me.wait(&timeout, parent, until)
                })
            };
            return match self.seen(work) {
                Seen::Missing => {
                    self.push(invoke(work));
                    timed_out(self, self.now_ms);
                    None
                }
                Seen::New => None,
                Seen::Found(op) => match finished(op) {
                    Some(r) => Some(r.map(wrap)),
                    None => {
                        let started = op.start_ms;
                        timed_out(self, started).then(|| {
                            Err(Failure::new(
                                errors::TIMEOUT,
                                format!(
                                    "the task did not end within its TimeoutSeconds ({}s)",
                                    call.timeout_seconds.unwrap_or_default()
                                ),
                            ))
                        })
                    }
                },
            };
        }
        // `.waitForTaskToken`: the callback (its id is the token), then the invoke that
        // hands the token out; the callback's answer is the task's.
        match self.seen(work) {
            Seen::Missing => {
                let mut u = update(
                    work,
                    parent,
                    OperationType::Callback,
                    OperationAction::Start,
                );
                u.callback_options = Some(CallbackOptions {
                    timeout_seconds: call.timeout_seconds.map(|t| t.min(MAX_WAIT_SECONDS)),
                    heartbeat_timeout_seconds: call
                        .heartbeat_seconds
                        .map(|t| t.min(MAX_WAIT_SECONDS)),
                });
                self.push(u);
                None
            }
            Seen::New => None,
            Seen::Found(op) if op.status == OperationStatus::Started => {
                token?;
                let id = format!("{work}.i");
                match self.seen(&id) {
                    Seen::Missing => {
                        self.push(invoke(&id));
                        None
                    }
                    Seen::Found(i) if i.status == OperationStatus::Failed => {
                        Some(Err(failure_of(i.error.as_ref())))
                    }
                    _ => None,
                }
            }
            Seen::Found(op) => finished(op),
        }
    }

    fn branch(
        &mut self,
        id: &str,
        parent: &str,
        scope: &Scope,
        input: Value,
    ) -> Option<Result<Value, Failure>> {
        match self.seen(id) {
            Seen::Found(op) if op.status == OperationStatus::Started => {}
            Seen::Found(op) => return finished(op),
            Seen::New => {}
            Seen::Missing => self.push(update(
                id,
                parent,
                OperationType::Context,
                OperationAction::Start,
            )),
        }
        let outcome = match self.scope(scope, &format!("{id}."), id, input)? {
            Transition::End(output) => Ok(output),
            Transition::Fail(failure) => Err(failure),
            Transition::Next { .. } => unreachable!("a scope ends or fails"),
        };
        self.end(id, parent, OperationType::Context, outcome.as_ref());
        Some(outcome)
    }

    fn parallel(
        &mut self,
        work: &str,
        parent: &str,
        branches: &[Scope],
        input: Value,
    ) -> Option<Result<Value, Failure>> {
        let mut outcomes = Vec::with_capacity(branches.len());
        let mut pending = false;
        for (i, branch) in branches.iter().enumerate() {
            if self.updates.len() >= PASS_LIMIT {
                return None;
            }
            match self.branch(&format!("{work}.b{i}"), parent, branch, input.clone()) {
                Some(Err(failure)) => return Some(Err(failure)),
                Some(ok) => outcomes.push(ok),
                None => pending = true,
            }
        }
        (!pending).then(|| parallel_result(outcomes))
    }

    fn map(
        &mut self,
        work: &str,
        parent: &str,
        processor: &Scope,
        run: MapRun,
    ) -> Option<Result<Value, Failure>> {
        let tolerant = run.tolerated_count.is_some() || run.tolerated_percentage.is_some();
        let mut outcomes = Vec::with_capacity(run.inputs.len());
        let mut running = 0;
        let mut pending = false;
        for (j, input) in run.inputs.iter().enumerate() {
            if self.updates.len() >= PASS_LIMIT {
                return None;
            }
            let id = format!("{work}.m{j}");
            if matches!(self.seen(&id), Seen::Missing)
                && run.max_concurrency > 0
                && running >= run.max_concurrency
            {
                pending = true;
                break;
            }
            match self.branch(&id, parent, processor, input.clone()) {
                Some(Err(failure)) if !tolerant => return Some(Err(failure)),
                Some(outcome) => outcomes.push(outcome),
                None => {
                    running += 1;
                    pending = true;
                }
            }
        }
        (!pending).then(|| run.result(outcomes))
    }
}

/// An ended operation's outcome; `None` while it runs (or if it was stopped).
fn finished(op: &Operation) -> Option<Result<Value, Failure>> {
    match op.status {
        OperationStatus::Succeeded => Some(Ok(parse(op.result.as_deref()))),
        OperationStatus::Failed => Some(Err(failure_of(op.error.as_ref()))),
        OperationStatus::TimedOut => {
            let heartbeat = matches!((op.heartbeat_deadline_ms, op.end_ms), (Some(deadline), Some(end)) if end >= deadline);
            let error = if heartbeat {
                errors::HEARTBEAT_TIMEOUT
            } else {
                errors::TIMEOUT
            };
            Some(Err(Failure::new(error, "The task did not answer in time")))
        }
        _ => None,
    }
}

fn type_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Pass { .. } => "Pass",
        Kind::Task(_) => "Task",
        Kind::Choice { .. } => "Choice",
        Kind::Wait(_) => "Wait",
        Kind::Succeed => "Succeed",
        Kind::Fail { .. } => "Fail",
        Kind::Parallel(_) => "Parallel",
        Kind::Map(_) => "Map",
    }
}

/// A visit's transition as journaled: `{"Next", "Output"}`, `{"End"}` or `{"Fail"}`.
fn encode(transition: &Transition) -> Value {
    match transition {
        Transition::Next { state, input } => json!({"Next": state, "Output": input}),
        Transition::End(output) => json!({"End": output}),
        Transition::Fail(failure) => json!({"Fail": failure.to_json()}),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Journaled {
    next: Option<String>,
    output: Option<Value>,
    end: Option<Value>,
    fail: Option<Value>,
}

fn decode(j: Journaled) -> Transition {
    if let Some(fail) = j.fail {
        let text = |k: &str| fail.get(k).and_then(Value::as_str).map(str::to_owned);
        return Transition::Fail(Failure {
            error: text("Error").unwrap_or_default(),
            cause: text("Cause"),
        });
    }
    match j.next {
        Some(state) => Transition::Next {
            state,
            input: j.output.unwrap_or(Value::Null),
        },
        None => Transition::End(j.end.unwrap_or(Value::Null)),
    }
}

/// What a redriven execution keeps of its journal (`Journal::redrive`): what succeeded, but
/// not the visits that failed (they run again, their retries counted afresh).
pub fn kept_on_redrive(op: &Operation) -> bool {
    op.status == OperationStatus::Succeeded
        && !(op.kind == OperationType::Step
            && matches!(visit_transition(op), Some(Transition::Fail(_))))
}

/// The journaled transition of a visit operation (for histories): its next state and output,
/// or its end.
pub fn visit_transition(op: &Operation) -> Option<Transition> {
    serde_json::from_value::<Journaled>(parse(op.result.as_deref()))
        .ok()
        .map(decode)
}

#[cfg(test)]
mod tests;
