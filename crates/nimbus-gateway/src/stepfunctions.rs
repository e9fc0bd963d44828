//! The Step Functions API (AWS JSON 1.0: `POST /` with `X-Amz-Target: AWSStepFunctions.<Op>`,
//! SigV4 for the `states` service), over the durable engine's workflows. Answers and errors in
//! the service model's shapes (`{"__type", "message"}`), timestamps as epoch seconds.
//!
//! A Nimbus API key (`Authorization: Bearer`) is accepted too: the CLI's `nimbus workflows`
//! verbs call this API with it.
//!
//! `StartSyncExecution` is sent by the SDKs to a `sync-` prefixed host; with a local endpoint,
//! turn the prefix off (boto3: `Config(inject_host_prefix=False)`), or give the node a name that
//! resolves with the prefix too.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use nimbus_asl::store::{MachineRecord, MachineType};
use nimbus_core::keys::{Permission, Principal};
use nimbus_durable::model::OperationStatus;
use nimbus_invoker::durable::Durable;
use nimbus_invoker::durable::workflows::{StartedExecution, WorkflowError};
use serde_json::{Value, json};

use crate::Gateway;

/// Largest request the API reads (a definition of 1 MiB, an input of 256 KiB).
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Longest `StartSyncExecution` waits (Express workflows run at most 5 minutes).
const SYNC_WAIT: Duration = Duration::from_secs(300);
/// Page size when none is asked for, and the most (the service model's `maxResults`).
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// An error answer (boxed: it is large, and rare).
type Refused = Box<Response>;

/// An error answer in the AWS JSON 1.0 shape.
fn error(status: StatusCode, ty: &str, message: &str) -> Refused {
    let mut r = (
        status,
        [(http::header::CONTENT_TYPE, "application/x-amz-json-1.0")],
        json!({"__type": ty, "message": message}).to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(ty) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    Box::new(r)
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

fn invalid(message: &str) -> Refused {
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// The answer to a workflow error.
fn workflow_error(e: WorkflowError) -> Refused {
    let ty = match &e {
        WorkflowError::InvalidDefinition(_) => "InvalidDefinition",
        WorkflowError::InvalidName(_) => "InvalidName",
        WorkflowError::InvalidArn(_) => "InvalidArn",
        WorkflowError::InvalidInput(_) => "InvalidExecutionInput",
        WorkflowError::InvalidOutput(_) => "InvalidOutput",
        WorkflowError::MachineNotFound(_) => "StateMachineDoesNotExist",
        WorkflowError::MachineExists(_) => "StateMachineAlreadyExists",
        WorkflowError::ExecutionNotFound(_) => "ExecutionDoesNotExist",
        WorkflowError::ExecutionExists(_) => "ExecutionAlreadyExists",
        WorkflowError::TaskNotFound => "TaskDoesNotExist",
        WorkflowError::InvalidToken(_) => "InvalidToken",
        WorkflowError::TaskTimedOut => "TaskTimedOut",
        WorkflowError::ExecutionEnded(_) => "ExecutionDoesNotExist",
        WorkflowError::NotRedrivable(_) => "ExecutionNotRedrivable",
        WorkflowError::Durable(inner) => {
            tracing::error!(error = %inner, "step functions API");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "the workflow store failed; try again",
            );
        }
    };
    error(StatusCode::BAD_REQUEST, ty, &e.to_string())
}

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn status_name(status: OperationStatus) -> &'static str {
    match status {
        OperationStatus::Succeeded => "SUCCEEDED",
        OperationStatus::Failed => "FAILED",
        OperationStatus::TimedOut => "TIMED_OUT",
        OperationStatus::Stopped | OperationStatus::Cancelled => "ABORTED",
        _ => "RUNNING",
    }
}

fn status_of(name: &str) -> Option<OperationStatus> {
    Some(match name {
        "RUNNING" => OperationStatus::Started,
        "SUCCEEDED" => OperationStatus::Succeeded,
        "FAILED" => OperationStatus::Failed,
        "TIMED_OUT" => OperationStatus::TimedOut,
        "ABORTED" => OperationStatus::Stopped,
        _ => return None,
    })
}

/// Whether a request is a Step Functions call (it goes here before any app route).
pub(crate) fn is_call(method: &str, path: &str, headers: &http::HeaderMap) -> bool {
    method == "POST"
        && path == "/"
        && headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("AWSStepFunctions."))
}

/// What an operation needs of the caller's key.
fn need(operation: &str) -> Permission {
    match operation {
        "CreateStateMachine" | "UpdateStateMachine" | "DeleteStateMachine" => {
            Permission::FunctionsDeploy
        }
        "StartExecution" | "StartSyncExecution" | "StopExecution" | "SendTaskSuccess"
        | "SendTaskFailure" | "SendTaskHeartbeat" | "RedriveExecution" => {
            Permission::FunctionsInvoke
        }
        _ => Permission::FunctionsRead,
    }
}

/// Handles one call.
pub(crate) async fn handle(g: Arc<Gateway>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AWSStepFunctions."))
        .unwrap_or_default()
        .to_owned();
    let body: Bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return *invalid(&format!(
                "the request must be smaller than {MAX_BODY} bytes"
            ));
        }
    };
    // SigV4 (the AWS SDKs and CLI), or a Nimbus API key (`nimbus workflows …`).
    let principal = match crate::control::bearer(&parts.headers) {
        Some(key) => match g
            .invoker
            .access()
            .authenticate(key.trim(), nimbus_core::clock::now_ms())
        {
            Ok(p) => p,
            Err(e) => {
                return *error(
                    StatusCode::FORBIDDEN,
                    "UnrecognizedClientException",
                    &e.to_string(),
                );
            }
        },
        None => match crate::lambda::signer_for(&g, "states", &parts, &body) {
            Ok(p) => p,
            Err(refused) => return *refused,
        },
    };
    let Some(engine) = g.invoker.durable().cloned() else {
        return *error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "this node runs no workflows",
        );
    };
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return *error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "the body must be a JSON object",
            );
        }
    };
    let call = Call {
        engine,
        principal,
        input,
    };
    let answer = match operation.as_str() {
        "CreateStateMachine" => call.create().await,
        "UpdateStateMachine" => call.update().await,
        "DescribeStateMachine" => call.describe().await,
        "ListStateMachines" => call.list_machines().await,
        "DeleteStateMachine" => call.delete().await,
        "ValidateStateMachineDefinition" => call.validate(),
        "StartExecution" => call.start().await,
        "StartSyncExecution" => call.start_sync().await,
        "DescribeExecution" => call.describe_execution().await,
        "ListExecutions" => call.list_executions().await,
        "GetExecutionHistory" => call.history().await,
        "StopExecution" => call.stop().await,
        "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => call.task(&operation).await,
        "RedriveExecution" => call.redrive().await,
        other => {
            let call = nimbus_aws::unsupported::UnsupportedCall {
                protocol: nimbus_aws::unsupported::Protocol::Json,
                service: "states".into(),
                operation: other.to_owned(),
            };
            Err(error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                &call.message(),
            ))
        }
    };
    match answer {
        Ok(body) => ok(body),
        Err(r) => *r,
    }
}

type Answer = Result<Value, Refused>;

struct Call {
    engine: Arc<Durable>,
    principal: Principal,
    input: Value,
}

impl Call {
    fn string(&self, field: &str) -> Result<&str, Refused> {
        self.optional(field)?
            .ok_or_else(|| invalid(&format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null")))
    }

    fn optional(&self, field: &str) -> Result<Option<&str>, Refused> {
        match self.input.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(&format!("'{field}' must be a string"))),
        }
    }

    fn page(&self) -> Result<(usize, Option<String>), Refused> {
        let size = match self.input.get("maxResults").and_then(Value::as_u64) {
            None | Some(0) => PAGE,
            Some(n) if n as usize <= MAX_PAGE => n as usize,
            Some(_) => return Err(invalid(&format!("maxResults must be at most {MAX_PAGE}"))),
        };
        Ok((size, self.optional("nextToken")?.map(str::to_owned)))
    }

    /// Checks the caller may do `need` (on `resource`, for scoped keys).
    fn allow(&self, need: Permission, resource: Option<&str>) -> Result<(), Refused> {
        self.principal.check(need, resource).map_err(|d| {
            error(
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                &d.to_string(),
            )
        })
    }

    fn machine_scope(&self, field: &str) -> Result<String, Refused> {
        let arn = self.string(field)?;
        let name = self.engine.machine_of(arn).map_err(workflow_error)?;
        Ok(format!("states:{name}"))
    }

    /// The request's execution, once the caller may do `operation` on its state machine.
    fn execution_allowed(&self, operation: &str) -> Result<&str, Refused> {
        let arn = self.string("executionArn")?;
        let (machine, _) = self.engine.execution_of(arn).map_err(workflow_error)?;
        self.allow(need(operation), Some(&format!("states:{machine}")))?;
        Ok(arn)
    }

    async fn create(&self) -> Answer {
        self.allow(need("CreateStateMachine"), None)?;
        let name = self.string("name")?;
        let definition = self.string("definition")?;
        let role = self
            .optional("roleArn")?
            .unwrap_or("arn:aws:iam::000000000000:role/nimbus");
        let kind = match self.optional("type")? {
            None | Some("STANDARD") => MachineType::Standard,
            Some("EXPRESS") => MachineType::Express,
            Some(other) => {
                return Err(invalid(&format!(
                    "type must be STANDARD or EXPRESS, not {other}"
                )));
            }
        };
        let description = self.optional("versionDescription")?.map(str::to_owned);
        let m = self
            .engine
            .create_machine(name, definition, role, kind, description)
            .await
            .map_err(workflow_error)?;
        Ok(
            json!({"stateMachineArn": self.engine.machine_arn(&m.name), "creationDate": seconds(m.created_ms)}),
        )
    }

    async fn update(&self) -> Answer {
        self.allow(need("UpdateStateMachine"), None)?;
        let arn = self.string("stateMachineArn")?;
        let (definition, role) = (self.optional("definition")?, self.optional("roleArn")?);
        if definition.is_none() && role.is_none() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "MissingRequiredParameter",
                "give a definition or a roleArn",
            ));
        }
        let description = self.optional("versionDescription")?.map(str::to_owned);
        let m = self
            .engine
            .update_machine(arn, definition, role, description)
            .await
            .map_err(workflow_error)?;
        Ok(json!({"updateDate": seconds(m.updated_ms), "revisionId": m.revision_id}))
    }

    fn machine_json(&self, m: &MachineRecord) -> Value {
        let mut out = json!({
            "stateMachineArn": self.engine.machine_arn(&m.name),
            "name": m.name,
            "status": "ACTIVE",
            "definition": m.definition,
            "roleArn": m.role_arn,
            "type": if m.kind == MachineType::Express { "EXPRESS" } else { "STANDARD" },
            "creationDate": seconds(m.created_ms),
            "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
            "tracingConfiguration": {"enabled": false},
            "revisionId": m.revision_id,
        });
        if let Some(d) = &m.description {
            out["description"] = json!(d);
        }
        out
    }

    async fn describe(&self) -> Answer {
        self.allow(need("DescribeStateMachine"), None)?;
        let m = self
            .engine
            .machine(self.string("stateMachineArn")?)
            .await
            .map_err(workflow_error)?;
        Ok(self.machine_json(&m))
    }

    async fn list_machines(&self) -> Answer {
        self.allow(need("ListStateMachines"), None)?;
        let (size, token) = self.page()?;
        let all = self.engine.list_machines().await.map_err(workflow_error)?;
        let after: Vec<&MachineRecord> = all
            .iter()
            .filter(|m| token.as_deref().is_none_or(|t| m.name.as_str() > t))
            .collect();
        let page = &after[..after.len().min(size)];
        let mut out = json!({"stateMachines": page.iter().map(|m| json!({
            "stateMachineArn": self.engine.machine_arn(&m.name),
            "name": m.name,
            "type": if m.kind == MachineType::Express { "EXPRESS" } else { "STANDARD" },
            "creationDate": seconds(m.created_ms),
        })).collect::<Vec<_>>()});
        if after.len() > size {
            out["nextToken"] = json!(page.last().map(|m| m.name.clone()));
        }
        Ok(out)
    }

    async fn delete(&self) -> Answer {
        self.allow(need("DeleteStateMachine"), None)?;
        self.engine
            .delete_machine(self.string("stateMachineArn")?)
            .await
            .map_err(workflow_error)?;
        Ok(json!({}))
    }

    fn validate(&self) -> Answer {
        self.allow(need("ValidateStateMachineDefinition"), None)?;
        let definition = self.string("definition")?;
        Ok(match Durable::validate_definition(definition) {
            Ok(_) => json!({"result": "OK", "diagnostics": [], "truncated": false}),
            Err(diagnostics) => json!({
                "result": "FAIL",
                "diagnostics": diagnostics.iter().map(|d| json!({
                    "severity": "ERROR", "code": d.code, "message": d.message, "location": d.location
                })).collect::<Vec<_>>(),
                "truncated": false,
            }),
        })
    }

    /// Starts the request's state machine, once the caller may (and, for a synchronous start,
    /// once it is an EXPRESS one).
    async fn launch(&self, operation: &str) -> Result<StartedExecution, Refused> {
        let scope = self.machine_scope("stateMachineArn")?;
        self.allow(need(operation), Some(&scope))?;
        let arn = self.string("stateMachineArn")?;
        if operation == "StartSyncExecution" {
            let machine = self.engine.machine(arn).await.map_err(workflow_error)?;
            if machine.kind != MachineType::Express {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "StateMachineTypeNotSupported",
                    "StartSyncExecution runs EXPRESS state machines; start a STANDARD one with StartExecution",
                ));
            }
        }
        self.engine
            .start_workflow(arn, self.optional("name")?, self.optional("input")?, None)
            .await
            .map_err(workflow_error)
    }

    async fn start(&self) -> Answer {
        let started = self.launch("StartExecution").await?;
        Ok(json!({"executionArn": started.arn, "startDate": seconds(started.start_ms)}))
    }

    async fn start_sync(&self) -> Answer {
        let started = self.launch("StartSyncExecution").await?;
        self.engine
            .wait_for_end(&started.arn, SYNC_WAIT)
            .await
            .map_err(|e| workflow_error(e.into()))?;
        let mut out = self.execution_json(&started.arn).await?;
        let duration = out["stopDate"]
            .as_f64()
            .zip(out["startDate"].as_f64())
            .map_or(0.0, |(b, a)| (b - a) * 1000.0);
        out["billingDetails"] = json!({"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": (duration.ceil() as u64).max(100)});
        if let Some(o) = out.as_object_mut() {
            o.remove("redriveCount");
            o.remove("redriveStatus");
        }
        Ok(out)
    }

    async fn execution_json(&self, arn: &str) -> Answer {
        let (record, _) = self
            .engine
            .workflow_execution(arn)
            .await
            .map_err(workflow_error)?;
        let (machine, _) = self.engine.execution_of(arn).map_err(workflow_error)?;
        let execution = &record.journal.operations()[0];
        let mut out = json!({
            "executionArn": record.arn,
            "stateMachineArn": self.engine.machine_arn(&machine),
            "name": record.name,
            "status": status_name(record.status),
            "startDate": seconds(record.start_ms),
            "input": execution.input.clone().unwrap_or_else(|| "{}".into()),
            "inputDetails": {"included": true},
        });
        let (redrives, redrive_ms) = record.journal.redriven().unzip();
        out["redriveCount"] = json!(redrives.unwrap_or(0));
        if let Some(at) = redrive_ms {
            out["redriveDate"] = seconds(at);
        }
        out["redriveStatus"] = json!(match record.status {
            OperationStatus::Failed | OperationStatus::TimedOut | OperationStatus::Stopped => {
                "REDRIVABLE"
            }
            _ => "NOT_REDRIVABLE",
        });
        if let Some(end) = record.end_ms {
            out["stopDate"] = seconds(end);
        }
        match record.status {
            OperationStatus::Succeeded => {
                out["output"] = json!(execution.result.clone().unwrap_or_else(|| "null".into()));
                out["outputDetails"] = json!({"included": true});
            }
            OperationStatus::Failed | OperationStatus::Stopped => {
                let f = nimbus_asl::replay::failure_of(execution.error.as_ref());
                if record.status == OperationStatus::Failed
                    || execution
                        .error
                        .as_ref()
                        .is_some_and(|e| e.error_type.is_some())
                {
                    out["error"] = json!(f.error);
                }
                if let Some(cause) = f.cause {
                    out["cause"] = json!(cause);
                }
            }
            OperationStatus::TimedOut => {
                out["error"] = json!(nimbus_asl::errors::TIMEOUT);
                out["cause"] = json!("The execution ran longer than its TimeoutSeconds");
            }
            _ => {}
        }
        Ok(out)
    }

    async fn redrive(&self) -> Answer {
        let arn = self.execution_allowed("RedriveExecution")?;
        let at = self
            .engine
            .redrive_workflow(arn)
            .await
            .map_err(workflow_error)?;
        Ok(json!({"redriveDate": seconds(at)}))
    }

    async fn describe_execution(&self) -> Answer {
        let arn = self.execution_allowed("DescribeExecution")?;
        self.execution_json(arn).await
    }

    async fn list_executions(&self) -> Answer {
        self.allow(need("ListExecutions"), None)?;
        let machine_arn = self.string("stateMachineArn")?;
        self.engine
            .machine(machine_arn)
            .await
            .map_err(workflow_error)?;
        let status = match self.optional("statusFilter")? {
            None => None,
            Some(s) => {
                Some(status_of(s).ok_or_else(|| invalid(&format!("unknown statusFilter {s}")))?)
            }
        };
        let (size, token) = self.page()?;
        let (page, more) = self
            .engine
            .list_workflow_executions(machine_arn, status, token, size)
            .await
            .map_err(workflow_error)?;
        let mut out = json!({"executions": page.iter().map(|e| {
            let mut x = json!({
                "executionArn": e.arn, "stateMachineArn": machine_arn, "name": e.name,
                "status": status_name(e.status), "startDate": seconds(e.start_ms),
            });
            if let Some(end) = e.end_ms {
                x["stopDate"] = seconds(end);
            }
            x
        }).collect::<Vec<_>>()});
        if more {
            out["nextToken"] = json!(page.last().map(|e| e.arn.clone()));
        }
        Ok(out)
    }

    async fn history(&self) -> Answer {
        self.allow(need("GetExecutionHistory"), None)?;
        let arn = self.string("executionArn")?;
        let (record, _) = self
            .engine
            .workflow_execution(arn)
            .await
            .map_err(workflow_error)?;
        let (machine, _) = self.engine.execution_of(arn).map_err(workflow_error)?;
        let role = self
            .engine
            .machine(&self.engine.machine_arn(&machine))
            .await
            .map(|m| m.role_arn)
            .unwrap_or_default();
        let mut events =
            nimbus_asl::history::events(&record.journal, &self.engine.machine_arn(&machine), &role);
        if self.input.get("reverseOrder").and_then(Value::as_bool) == Some(true) {
            events.reverse();
        }
        let (size, token) = self.page()?;
        let from = match token {
            None => 0,
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| error(StatusCode::BAD_REQUEST, "InvalidToken", "Invalid nextToken"))?,
        };
        let page: Vec<Value> = events.iter().skip(from).take(size).cloned().collect();
        let mut out = json!({"events": page});
        if from + size < events.len() {
            out["nextToken"] = json!((from + size).to_string());
        }
        Ok(out)
    }

    async fn stop(&self) -> Answer {
        let arn = self.execution_allowed("StopExecution")?;
        let at = self
            .engine
            .stop_workflow(
                arn,
                self.optional("error")?.map(str::to_owned),
                self.optional("cause")?.map(str::to_owned),
            )
            .await
            .map_err(workflow_error)?;
        Ok(json!({"stopDate": seconds(at)}))
    }

    async fn task(&self, operation: &str) -> Answer {
        self.allow(need(operation), None)?;
        let token = self.string("taskToken")?;
        let done = match operation {
            "SendTaskSuccess" => {
                self.engine
                    .answer_task(token, Ok(self.string("output")?.to_owned()))
                    .await
            }
            "SendTaskFailure" => {
                let failure = (
                    self.optional("error")?.map(str::to_owned),
                    self.optional("cause")?.map(str::to_owned),
                );
                self.engine.answer_task(token, Err(failure)).await
            }
            _ => self.engine.task_heartbeat(token).await,
        };
        done.map_err(workflow_error)?;
        Ok(json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for name in ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"] {
            assert_eq!(status_name(status_of(name).unwrap()), name);
        }
        assert!(status_of("PENDING_REDRIVE").is_none());
    }
}
