//! The service integrations a workflow's Task calls ([`nimbus_asl::integration`]): a chained
//! invoke whose "function" is an integration's resource ARN is performed here — a message sent
//! to one of the tenant's queues or published to one of its topics, or a nested workflow
//! execution started. Each is idempotent per operation (the message's idempotency key, the
//! nested execution's name derive from the execution and the operation), so a wake-up that comes
//! again after a crash does not send or start twice.

use nimbus_asl::Failure;
use nimbus_asl::integration::{self, Described, Message, Service, Sync};
use nimbus_durable::model::{ErrorObject, OperationStatus, OperationType};
use nimbus_durable::store::ExecutionRecord;
use nimbus_events::{EventError, Outgoing};
use nimbus_log::LogError;
use serde_json::Value;

use super::workflows::WorkflowError;
use super::{Durable, DurableError, Result, error_object};

type Outcome = std::result::Result<Option<String>, ErrorObject>;

fn failed(f: Failure) -> Outcome {
    Err(error_object(
        &f.error,
        f.cause.as_deref().unwrap_or_default(),
    ))
}

impl Durable {
    /// Performs chained invoke `op` of workflow `arn`, naming integration `resource`.
    pub(super) async fn integrate(
        &self,
        arn: &str,
        op: &str,
        resource: &str,
        payload: Option<String>,
    ) -> Result<()> {
        let params: Value = payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null);
        // One key per operation: a repeat of this wake-up is the same call.
        let key = nimbus_core::sha256_hex(format!("{arn}\0{op}").as_bytes());
        let outcome = match Service::parse(resource) {
            Some(Service::SqsSendMessage) => match integration::sqs_message(&params) {
                Ok(m) => self.deliver(m, key, true).await?,
                Err(f) => failed(f),
            },
            Some(Service::SnsPublish) => match integration::sns_message(&params) {
                Ok(m) => self.deliver(m, key, false).await?,
                Err(f) => failed(f),
            },
            Some(Service::StartExecution(sync)) => {
                let parent = (sync != Sync::No).then(|| (arn.to_owned(), op.to_owned()));
                match self.start_nested(&params, &key, parent).await? {
                    Some(outcome) => outcome,
                    // Running: it reports its end (`child_ended`).
                    None => return Ok(()),
                }
            }
            None => failed(Failure::new(
                nimbus_asl::errors::RUNTIME,
                format!("'{resource}' is not an integration"),
            )),
        };
        self.finish_chained(arn, op, outcome).await
    }

    /// Sends `m` to a queue (`queue`) or publishes it to a topic; the integration's answer.
    async fn deliver(&self, m: Message, key: String, queue: bool) -> Result<Outcome> {
        let service = if queue { "SQS" } else { "SNS" };
        let engine = match self.invoker()?.engine() {
            Ok(engine) => engine.clone(),
            Err(e) => {
                return Ok(Err(error_object(
                    &format!("{service}.ServiceUnavailable"),
                    &e.to_string(),
                )));
            }
        };
        let outgoing = Outgoing {
            body: m.body.clone().into_bytes(),
            attributes: m.attributes,
            data_types: m.data_types,
            subject: m.subject,
            delay_ms: m.delay_seconds.map(|s| s * 1000),
            idempotency_key: Some(key),
            traceparent: None,
        };
        let sent = if queue {
            engine.send(&m.destination, vec![outgoing]).await
        } else {
            engine.publish(&m.destination, vec![outgoing]).await
        };
        let id = match sent {
            Ok(mut ids) => ids.pop().unwrap_or_default(),
            Err(EventError::NotFound(message)) => {
                let name = if queue {
                    "SQS.QueueDoesNotExistException"
                } else {
                    "SNS.NotFoundException"
                };
                return Ok(Err(error_object(name, &message)));
            }
            Err(e @ (EventError::Invalid(_) | EventError::TooLarge(_))) => {
                let name = if queue {
                    integration::SQS_ERROR
                } else {
                    integration::SNS_ERROR
                };
                return Ok(Err(error_object(name, &e.to_string())));
            }
            // The log could not take it now: the wake-up comes again.
            Err(EventError::Full) => return Err(DurableError::Log(LogError::Full)),
            Err(EventError::Backend(e)) => return Err(DurableError::Log(LogError::Backend(e))),
        };
        let answer = if queue {
            integration::sqs_answer(&id, &m.body)
        } else {
            integration::sns_answer(&id)
        };
        Ok(Ok(Some(answer.to_string())))
    }

    /// Starts a nested execution. `parent` (for `.sync`) links it to the task, which then ends
    /// when it ends: `None` while it runs. Without, the task's answer at once.
    async fn start_nested(
        &self,
        params: &Value,
        key: &str,
        parent: Option<(String, String)>,
    ) -> Result<Option<Outcome>> {
        let (machine, name, input) = match integration::start_request(params) {
            Ok(r) => r,
            Err(f) => return Ok(Some(failed(f))),
        };
        let sync = parent.is_some();
        let name = name.unwrap_or_else(|| key[..32].to_owned());
        let started = self
            .start_workflow(&machine, Some(&name), Some(&input), parent.clone())
            .await;
        let outcome = match started {
            Ok(s) if sync && s.new => return Ok(None),
            // This task's own child, started before a crash: it reports its end (again, if it
            // ended). Another's of that name cannot be waited for.
            Ok(s) if sync => match self.load(&s.arn).await? {
                Some(r) if r.parent == parent => {
                    self.child_ended(&s.arn).await?;
                    return Ok(None);
                }
                _ => Err(already_exists(&s.arn)),
            },
            Ok(s) => Ok(Some(
                integration::started_answer(&s.arn, s.start_ms).to_string(),
            )),
            // This operation's own execution, ended already (a repeat of this wake-up).
            Err(WorkflowError::ExecutionExists(existing)) => {
                let record = self.load(&existing).await?;
                match record {
                    Some(r) if sync && r.parent == parent => {
                        self.child_ended(&existing).await?;
                        return Ok(None);
                    }
                    Some(r) if !sync && r.parent.is_none() && name == key[..32] => Ok(Some(
                        integration::started_answer(&r.arn, r.start_ms).to_string(),
                    )),
                    _ => Err(already_exists(&existing)),
                }
            }
            Err(WorkflowError::Durable(e)) => return Err(e),
            Err(e) => Err(error_object(
                &format!("StepFunctions.{}", exception(&e)),
                &e.to_string(),
            )),
        };
        Ok(Some(outcome))
    }

    /// The nested executions `record`'s `.sync` tasks still wait for (stopped with it when it
    /// ends: a task that is given up stops the work it started, as Step Functions does).
    pub(super) fn waited_children(&self, record: &ExecutionRecord) -> Vec<String> {
        record
            .journal
            .operations()
            .iter()
            .filter(|op| {
                op.kind == OperationType::ChainedInvoke
                    && matches!(
                        op.status,
                        OperationStatus::Started | OperationStatus::Stopped
                    )
                    && op
                        .name
                        .as_deref()
                        .and_then(Service::parse)
                        .is_some_and(Service::is_sync)
            })
            .filter_map(|op| {
                let params: Value = serde_json::from_str(op.input.as_deref()?).ok()?;
                let (machine_arn, name, _) = integration::start_request(&params).ok()?;
                let machine = self.machine_of(&machine_arn).ok()?;
                let name = name.unwrap_or_else(|| {
                    nimbus_core::sha256_hex(format!("{}\0{}", record.arn, op.id).as_bytes())[..32]
                        .to_owned()
                });
                Some(self.workflow_execution_arn(&machine, &name))
            })
            .collect()
    }

    /// What a `.sync` task gets when its nested execution (`record`, ended) ended: the
    /// description, or `States.TaskFailed` with it as the cause.
    pub(super) fn nested_outcome(&self, record: &ExecutionRecord) -> Outcome {
        let execution = &record.journal.operations()[0];
        let machine = record.function.strip_prefix("states:").unwrap_or_default();
        let machine_arn = self.machine_arn(machine);
        let status = match record.status {
            OperationStatus::Succeeded => "SUCCEEDED",
            OperationStatus::TimedOut => "TIMED_OUT",
            OperationStatus::Stopped => "ABORTED",
            _ => "FAILED",
        };
        let error = execution.error.as_ref().map(|e| {
            (
                e.error_type.as_deref().unwrap_or_default(),
                e.error_message.as_deref().unwrap_or_default(),
            )
        });
        let described = Described {
            execution_arn: &record.arn,
            machine_arn: &machine_arn,
            name: &record.name,
            status,
            input: execution.input.as_deref().unwrap_or("{}"),
            output: execution.result.as_deref(),
            error,
            start_ms: record.start_ms,
            stop_ms: record.end_ms.unwrap_or(record.start_ms),
        }
        .to_json();
        if record.status == OperationStatus::Succeeded {
            Ok(Some(described.to_string()))
        } else {
            let mut error = error_object(
                nimbus_asl::errors::TASK_FAILED,
                &format!("the nested execution {} ended {status}", record.arn),
            );
            error.error_data = Some(described.to_string());
            Err(error)
        }
    }
}

/// A nested start whose name another execution has.
fn already_exists(arn: &str) -> ErrorObject {
    error_object(
        "StepFunctions.ExecutionAlreadyExistsException",
        &format!("Execution Already Exists: '{arn}'"),
    )
}

/// The Step Functions exception a refused nested start is named by.
fn exception(e: &WorkflowError) -> &'static str {
    match e {
        WorkflowError::InvalidName(_) => "InvalidNameException",
        WorkflowError::InvalidInput(_) => "InvalidExecutionInputException",
        WorkflowError::MachineNotFound(_) => "StateMachineDoesNotExistException",
        WorkflowError::InvalidArn(_) => "InvalidArnException",
        _ => "StepFunctionsException",
    }
}
