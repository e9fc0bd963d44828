//! Workflows: Step Functions state machines, run as durable executions of this engine.
//!
//! A state machine is a stored definition ([`MachineStore`]); starting it makes a durable
//! execution whose function key is `states:NAME`, whose ARN is a Step Functions execution ARN
//! and whose record pins the definition it started with (`code`). Where a handler-backed
//! execution invokes its handler, a workflow's turn replays the interpreter over the journal
//! (`nimbus_asl::replay`): it checkpoints what the pass asks for (visits, chained invokes,
//! callbacks, waits, contexts) with the same wake-ups as a handler's checkpoint, until a pass asks
//! for nothing — then the execution waits for a wake-up or has ended. Task tokens are callback ids,
//! so `SendTask*` is the callback API under another name.

use std::sync::Arc;

use nimbus_asl::Diagnostic;
use nimbus_asl::definition::Definition;
use nimbus_asl::replay::{self, Outcome, Run};
use nimbus_asl::store::{Create, MachineRecord, MachineStore, MachineType};
use nimbus_core::StoreError;
use nimbus_core::workflow::revision;
pub use nimbus_core::workflow::valid_name;
use nimbus_durable::journal::{CheckpointError, Journal};
use nimbus_durable::model::{ErrorObject, InvocationOutput, OperationStatus};
use nimbus_durable::store::{Created, ExecutionRecord, ExecutionSummary};
use nimbus_durable::token;

use super::{Durable, DurableError, blocking, wakes};
use nimbus_core::clock::now_ms;

/// The most operations a workflow execution holds (an inline Map makes about three per item).
pub const MAX_OPERATIONS: usize = 100_000;
/// The largest execution input or task output, bytes (as Step Functions).
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Parsed definitions kept (by their text's hash).
const DEFINITIONS_KEPT: usize = 256;

/// Why a workflow call failed; the HTTP edge names the documented exception.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The definition is not valid (each problem located).
    #[error("Invalid State Machine Definition: {}", .0.iter().map(|d| format!("'{d}'")).collect::<Vec<_>>().join(", "))]
    InvalidDefinition(Vec<Diagnostic>),
    /// A name that is not one.
    #[error("{0}")]
    InvalidName(String),
    /// An ARN that is not one of this node's.
    #[error("{0}")]
    InvalidArn(String),
    /// Input that is not JSON, or too large.
    #[error("{0}")]
    InvalidInput(String),
    /// Output (a task's) that is not JSON, or too large.
    #[error("{0}")]
    InvalidOutput(String),
    /// No such state machine.
    #[error("State Machine Does Not Exist: '{0}'")]
    MachineNotFound(String),
    /// A state machine of that name exists with another definition or role.
    #[error("State Machine Already Exists: '{0}'")]
    MachineExists(String),
    /// No such execution.
    #[error("Execution Does Not Exist: '{0}'")]
    ExecutionNotFound(String),
    /// An execution of that name exists (ended, or with another input).
    #[error("Execution Already Exists: '{0}'")]
    ExecutionExists(String),
    /// A task token that names no waiting task.
    #[error("Task Does Not Exist")]
    TaskNotFound,
    /// A token that is not one.
    #[error("Invalid Token: {0}")]
    InvalidToken(String),
    /// The task timed out before this answer.
    #[error("Task Timed Out")]
    TaskTimedOut,
    /// The execution had ended.
    #[error("{0}")]
    ExecutionEnded(String),
    /// The execution cannot be redriven (running, succeeded, or an Express one).
    #[error("{0}")]
    NotRedrivable(String),
    /// The engine or its store failed.
    #[error(transparent)]
    Durable(#[from] DurableError),
}

impl From<StoreError> for WorkflowError {
    fn from(e: StoreError) -> Self {
        WorkflowError::Durable(DurableError::Store(e))
    }
}

type Result<T, E = WorkflowError> = std::result::Result<T, E>;

/// The function key a state machine's executions are stored under.
fn key(machine: &str) -> String {
    format!("states:{machine}")
}

/// What an execution pins: the definition and role it started with.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pinned {
    definition: String,
    role_arn: String,
}

/// A started workflow execution.
#[derive(Debug, Clone)]
pub struct StartedExecution {
    /// Its ARN.
    pub arn: String,
    /// When it started, unix ms.
    pub start_ms: i64,
    /// Whether this call started it (not a repeat).
    pub new: bool,
}

impl Durable {
    /// The ARN of state machine `name`.
    pub fn machine_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{name}",
            self.region,
            nimbus_aws::lambda::ACCOUNT_ID
        )
    }

    /// The ARN of execution `name` of state machine `machine`.
    pub fn workflow_execution_arn(&self, machine: &str, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:execution:{machine}:{name}",
            self.region,
            nimbus_aws::lambda::ACCOUNT_ID
        )
    }

    /// The state machine a state machine ARN names.
    pub fn machine_of(&self, arn: &str) -> Result<String> {
        let prefix = format!(
            "arn:aws:states:{}:{}:stateMachine:",
            self.region,
            nimbus_aws::lambda::ACCOUNT_ID
        );
        arn.strip_prefix(&prefix)
            .filter(|n| valid_name(n))
            .map(str::to_owned)
            .ok_or_else(|| {
                WorkflowError::InvalidArn(format!(
                    "Invalid Arn: 'Resource type not valid in this context: {arn}'"
                ))
            })
    }

    /// The state machine and name an execution ARN names.
    pub fn execution_of(&self, arn: &str) -> Result<(String, String)> {
        let prefix = format!(
            "arn:aws:states:{}:{}:execution:",
            self.region,
            nimbus_aws::lambda::ACCOUNT_ID
        );
        arn.strip_prefix(&prefix)
            .and_then(|rest| rest.split_once(':'))
            .filter(|(m, n)| valid_name(m) && valid_name(n))
            .map(|(m, n)| (m.to_owned(), n.to_owned()))
            .ok_or_else(|| {
                WorkflowError::InvalidArn(format!(
                    "Invalid Arn: 'Resource type not valid in this context: {arn}'"
                ))
            })
    }

    fn machines(&self) -> Result<Arc<dyn MachineStore>> {
        self.machines.get().cloned().ok_or_else(|| {
            WorkflowError::Durable(DurableError::Invalid("this node runs no workflows".into()))
        })
    }

    /// Parses and checks a definition: every problem, located.
    pub fn validate_definition(
        definition: &str,
    ) -> std::result::Result<Definition, Vec<Diagnostic>> {
        let parsed = Definition::parse(definition)?;
        let unsupported: Vec<Diagnostic> = replay::unsupported_resources(&parsed)
            .into_iter()
            .map(|(location, message)| Diagnostic {
                code: "INVALID_RESOURCE",
                message,
                location,
            })
            .collect();
        if unsupported.is_empty() {
            Ok(parsed)
        } else {
            Err(unsupported)
        }
    }

    /// `CreateStateMachine`: the state machine (the existing one when the same definition and
    /// role were created before under that name).
    pub async fn create_machine(
        &self,
        name: &str,
        definition: &str,
        role_arn: &str,
        kind: MachineType,
        description: Option<String>,
    ) -> Result<MachineRecord> {
        if !valid_name(name) {
            return Err(WorkflowError::InvalidName(format!(
                "Invalid Name: '{name}'"
            )));
        }
        Self::validate_definition(definition).map_err(WorkflowError::InvalidDefinition)?;
        let now = now_ms();
        let record = MachineRecord::new(name, definition, role_arn, kind, description, now);
        let machines = self.machines()?;
        let stored = record.clone();
        let created = blocking(move || Ok(machines.create_machine(&stored)?)).await?;
        match created {
            Create::New => Ok(record),
            Create::Existing(existing)
                if existing.definition == record.definition
                    && existing.role_arn == record.role_arn
                    && existing.kind == kind =>
            {
                Ok(*existing)
            }
            Create::Existing(_) => Err(WorkflowError::MachineExists(self.machine_arn(name))),
        }
    }

    /// `UpdateStateMachine`: the state machine as it now is.
    pub async fn update_machine(
        &self,
        arn: &str,
        definition: Option<&str>,
        role_arn: Option<&str>,
        description: Option<String>,
    ) -> Result<MachineRecord> {
        let mut machine = self.machine(arn).await?;
        if let Some(d) = definition {
            Self::validate_definition(d).map_err(WorkflowError::InvalidDefinition)?;
            machine.definition = d.to_owned();
        }
        if let Some(r) = role_arn {
            machine.role_arn = r.to_owned();
        }
        if description.is_some() {
            machine.description = description;
        }
        machine.updated_ms = now_ms();
        machine.revision_id = revision(&machine.definition, &machine.role_arn);
        let (machines, stored) = (self.machines()?, machine.clone());
        if !blocking(move || Ok(machines.update_machine(&stored)?)).await? {
            return Err(WorkflowError::MachineNotFound(arn.to_owned()));
        }
        Ok(machine)
    }

    /// `DescribeStateMachine`.
    pub async fn machine(&self, arn: &str) -> Result<MachineRecord> {
        let name = self.machine_of(arn)?;
        let machines = self.machines()?;
        blocking(move || Ok(machines.machine(&name)?))
            .await?
            .ok_or_else(|| WorkflowError::MachineNotFound(arn.to_owned()))
    }

    /// `ListStateMachines`.
    pub async fn list_machines(&self) -> Result<Vec<MachineRecord>> {
        let machines = self.machines()?;
        Ok(blocking(move || Ok(machines.machines()?)).await?)
    }

    /// `DeleteStateMachine` (its executions run on to their ends).
    pub async fn delete_machine(&self, arn: &str) -> Result<()> {
        let name = self.machine_of(arn)?;
        let machines = self.machines()?;
        blocking(move || Ok(machines.delete_machine(&name)?)).await?;
        Ok(())
    }

    /// `StartExecution`: a new execution, or the running one of that name and input. A nested
    /// `.sync` execution names its `parent` (the execution and its task's operation), which it
    /// reports its end to.
    pub async fn start_workflow(
        &self,
        machine_arn: &str,
        name: Option<&str>,
        input: Option<&str>,
        parent: Option<(String, String)>,
    ) -> Result<StartedExecution> {
        let machine = self.machine(machine_arn).await?;
        let name = match name {
            Some(n) if valid_name(n) => n.to_owned(),
            Some(n) => return Err(WorkflowError::InvalidName(format!("Invalid Name: '{n}'"))),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let input = input.unwrap_or("{}");
        if input.len() > MAX_PAYLOAD {
            return Err(WorkflowError::InvalidInput(format!(
                "The input is larger than {MAX_PAYLOAD} bytes"
            )));
        }
        if serde_json::from_str::<serde_json::Value>(input).is_err() {
            return Err(WorkflowError::InvalidInput(format!(
                "Invalid State Machine Execution Input: '{input}' is not JSON"
            )));
        }
        let definition =
            Definition::parse(&machine.definition).map_err(WorkflowError::InvalidDefinition)?;
        let now = now_ms();
        let arn = self.workflow_execution_arn(&machine.name, &name);
        let pinned = Pinned {
            definition: machine.definition.clone(),
            role_arn: machine.role_arn.clone(),
        };
        let record = ExecutionRecord {
            arn: arn.clone(),
            function: key(&machine.name),
            version: machine.revision_id.clone(),
            name: name.clone(),
            status: OperationStatus::Started,
            start_ms: now,
            end_ms: None,
            revision: 0,
            journal: Journal::start_as(&name, Some(input.to_owned()), now)
                .with_max_operations(MAX_OPERATIONS),
            code: Some(serde_json::to_string(&pinned).unwrap_or_default()),
            parent,
        };
        let timeout = definition
            .timeout_seconds
            .map(|s| now + (s as i64).saturating_mul(1000));
        match self.create(record, timeout).await? {
            Created::New => {
                self.with_metrics(|m| m.durable_started(&key(&machine.name)));
                Ok(StartedExecution {
                    arn,
                    start_ms: now,
                    new: true,
                })
            }
            // The same name and input while it runs: that execution (as Step Functions).
            Created::Existing(r)
                if !r.status.is_final()
                    && r.journal.operations()[0].input.as_deref() == Some(input) =>
            {
                Ok(StartedExecution {
                    arn: r.arn,
                    start_ms: r.start_ms,
                    new: false,
                })
            }
            Created::Existing(r) => Err(WorkflowError::ExecutionExists(r.arn)),
        }
    }

    /// `DescribeExecution`: the record and the definition it runs.
    pub async fn workflow_execution(&self, arn: &str) -> Result<(ExecutionRecord, String)> {
        self.execution_of(arn)?;
        let (record, pinned) = self.pinned_record(arn).await?;
        Ok((record, pinned.definition))
    }

    /// Workflow execution `arn`'s record and what it pinned.
    async fn pinned_record(&self, arn: &str) -> Result<(ExecutionRecord, Pinned)> {
        let record = self
            .load(arn)
            .await?
            .ok_or_else(|| WorkflowError::ExecutionNotFound(arn.to_owned()))?;
        let pinned: Pinned = record
            .code
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .ok_or_else(|| WorkflowError::ExecutionNotFound(arn.to_owned()))?;
        Ok((record, pinned))
    }

    /// `ListExecutions`: newest first.
    pub async fn list_workflow_executions(
        &self,
        machine_arn: &str,
        status: Option<OperationStatus>,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<ExecutionSummary>, bool)> {
        let name = self.machine_of(machine_arn)?;
        Ok(self.list(&key(&name), status, after, limit).await?)
    }

    /// `StopExecution`: when it stopped.
    pub async fn stop_workflow(
        &self,
        arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<i64> {
        self.execution_of(arn)?;
        let error = ErrorObject {
            error_type: error,
            error_message: cause,
            ..Default::default()
        };
        self.stop(arn, Some(error)).await.map_err(|e| match e {
            DurableError::NotFound(_) => WorkflowError::ExecutionNotFound(arn.to_owned()),
            DurableError::Journal(CheckpointError::Ended(s)) => {
                WorkflowError::ExecutionEnded(format!(
                    "Execution {arn} has ended ({})",
                    nimbus_durable::wire::execution_status(s)
                ))
            }
            e => WorkflowError::Durable(e),
        })
    }

    /// `RedriveExecution`: a Standard execution that failed, timed out or was stopped runs again
    /// from what did not succeed (what succeeded is read from its journal, not done again);
    /// when it was redriven.
    pub async fn redrive_workflow(&self, arn: &str) -> Result<i64> {
        let (machine, _) = self.execution_of(arn)?;
        let machines = self.machines()?;
        let kind = blocking(move || Ok(machines.machine(&machine)?))
            .await?
            .map(|m| m.kind);
        let _lock = self.lock(arn).await;
        let (mut record, pinned) = self.pinned_record(arn).await?;
        if kind == Some(MachineType::Express) {
            return Err(WorkflowError::NotRedrivable(format!(
                "Execution {arn} is of an EXPRESS state machine: only STANDARD executions are redriven"
            )));
        }
        let now = now_ms();
        if !record.journal.redrive(replay::kept_on_redrive, now) {
            return Err(WorkflowError::NotRedrivable(format!(
                "Execution {arn} is {}: only a failed, timed out or aborted execution is redriven",
                nimbus_durable::wire::execution_status(record.status)
            )));
        }
        let generation = record.journal.redriven().map_or(0, |(n, _)| n);
        record.end_ms = None;
        // Its timeout runs again from now; the earlier one's wake-up finds another generation.
        let timeout = Definition::parse(&pinned.definition)
            .ok()
            .and_then(|d| d.timeout_seconds)
            .map(|s| super::timeout_wake(arn, generation, now + (s as i64).saturating_mul(1000)));
        self.commit_woken(record, timeout.into_iter().collect())
            .await?;
        Ok(now)
    }

    /// `SendTaskSuccess` / `SendTaskFailure`.
    pub async fn answer_task(
        &self,
        task_token: &str,
        outcome: std::result::Result<String, (Option<String>, Option<String>)>,
    ) -> Result<()> {
        let outcome = match outcome {
            Ok(output) => {
                if output.len() > MAX_PAYLOAD {
                    return Err(WorkflowError::InvalidOutput(format!(
                        "The output is larger than {MAX_PAYLOAD} bytes"
                    )));
                }
                if serde_json::from_str::<serde_json::Value>(&output).is_err() {
                    return Err(WorkflowError::InvalidOutput(format!(
                        "Invalid Output: '{output}' is not JSON"
                    )));
                }
                Ok(Some(output))
            }
            Err((error, cause)) => Err(ErrorObject {
                error_type: error,
                error_message: cause,
                ..Default::default()
            }),
        };
        self.complete_callback(task_token, outcome)
            .await
            .map_err(task_error)
    }

    /// `SendTaskHeartbeat`.
    pub async fn task_heartbeat(&self, task_token: &str) -> Result<()> {
        self.heartbeat(task_token).await.map_err(task_error)
    }

    /// Parses a pinned definition, once per distinct text.
    fn pinned_definition(&self, record: &ExecutionRecord) -> Option<(Arc<Definition>, String)> {
        let pinned: Pinned = serde_json::from_str(record.code.as_deref()?).ok()?;
        let hash = nimbus_core::sha256_hex(pinned.definition.as_bytes());
        let mut cache = self.definitions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = cache.get(&hash) {
            return Some((d.clone(), pinned.role_arn));
        }
        let parsed = Arc::new(Definition::parse(&pinned.definition).ok()?);
        if cache.len() >= DEFINITIONS_KEPT {
            cache.clear();
        }
        cache.insert(hash, parsed.clone());
        Some((parsed, pinned.role_arn))
    }

    /// Drives a workflow execution: replays and checkpoints until a pass asks for nothing.
    pub(super) async fn drive_workflow(&self, arn: &str) -> super::Result<()> {
        let _lock = self.lock(arn).await;
        // The chained invokes that ended since the last turn, recorded by this one.
        let finished = self.take_finished(arn);
        let Some(mut record) = self.load(arn).await? else {
            return Ok(());
        };
        let now = now_ms();
        let mut saved = Vec::with_capacity(finished.len());
        for f in finished {
            // One that is no longer waited for (a timeout ended its task) is left unread.
            let _ = record
                .journal
                .chained_invoke_finished(&f.op, f.outcome, now);
            saved.push(f.saved);
        }
        if let Some(wakes) = self.advance_workflow(&mut record, now) {
            self.commit(record, wakes).await?;
        }
        for s in saved {
            let _ = s.send(());
        }
        Ok(())
    }

    /// Replays the workflow over its journal and applies what each pass asks for, in memory,
    /// until a pass asks for nothing (then it waits, or has ended): the wake-ups to append
    /// before the record is saved, or `None` if nothing changed. Call holding its lock.
    pub(super) fn advance_workflow(
        &self,
        record: &mut ExecutionRecord,
        now: i64,
    ) -> Option<Vec<super::NewMessage>> {
        if record.status.is_final() {
            return None;
        }
        let arn = record.arn.clone();
        let (machine, name) = self.execution_of(&arn).ok()?;
        let told = record.journal.updated().to_vec();
        record.journal.told(&told);
        let mut changed = !told.is_empty();
        let Some((definition, role_arn)) = self.pinned_definition(record) else {
            let error = ErrorObject {
                error_type: Some(nimbus_asl::errors::RUNTIME.into()),
                error_message: Some("the execution's definition cannot be read".into()),
                ..Default::default()
            };
            record.journal.settle(InvocationOutput::Failed(error), now);
            return Some(Vec::new());
        };
        let machine_arn = self.machine_arn(&machine);
        let run = Run {
            definition: &definition,
            execution_arn: &arn,
            execution_name: &name,
            machine_arn: &machine_arn,
            machine_name: &machine,
            role_arn: &role_arn,
        };
        let mut out = Vec::new();
        loop {
            let pass = replay::turn(&run, &record.journal, now);
            if pass.updates.is_empty() {
                match pass.outcome {
                    Outcome::Pending => {}
                    Outcome::Succeeded(output) => {
                        record
                            .journal
                            .settle(InvocationOutput::Succeeded(Some(output.to_string())), now);
                        changed = true;
                    }
                    Outcome::Failed(failure) => {
                        record
                            .journal
                            .settle(InvocationOutput::Failed(replay::error_of(&failure)), now);
                        changed = true;
                    }
                }
                return changed.then_some(out);
            }
            let token = record.journal.token();
            let secret = &self.secret;
            let done = record
                .journal
                .checkpoint(token, None, &pass.updates, now, &mut |op| {
                    token::callback_id(secret, &arn, op)
                });
            match done {
                Ok(done) => {
                    out.extend(wakes(&arn, done.effects));
                    changed = true;
                }
                Err(e) => {
                    // A payload over the limit, or more operations than an execution holds.
                    let failure = match e {
                        CheckpointError::InvalidValue { .. } => {
                            nimbus_asl::errors::DATA_LIMIT_EXCEEDED
                        }
                        _ => nimbus_asl::errors::RUNTIME,
                    };
                    let error = ErrorObject {
                        error_type: Some(failure.into()),
                        error_message: Some(e.to_string()),
                        ..Default::default()
                    };
                    record.journal.settle(InvocationOutput::Failed(error), now);
                    return Some(out);
                }
            }
        }
    }
}

fn task_error(e: DurableError) -> WorkflowError {
    match e {
        DurableError::CallbackTimedOut(_) => WorkflowError::TaskTimedOut,
        DurableError::Invalid(m) => WorkflowError::InvalidToken(m),
        DurableError::NotFound(_) | DurableError::Journal(_) => WorkflowError::TaskNotFound,
        e => WorkflowError::Durable(e),
    }
}
