//! CLI verbs for workflows (Step Functions state machines): `nimbus workflows ls|executions|
//! start|describe|history|stop`, through the node's Step Functions API with the CLI's key.

use std::time::Duration;

use clap::Subcommand;
use nimbus_client::Client;
use serde_json::{Value, json};

use crate::cli::{print_json, print_table};

/// `nimbus workflows ...`
#[derive(Subcommand)]
pub enum WorkflowsCommand {
    /// The state machines.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A state machine's executions, newest first.
    Executions {
        /// State machine name (or ARN).
        machine: String,
        /// Only these: RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start an execution; prints its ARN (with `--wait`, its end).
    Start {
        /// State machine name (or ARN).
        machine: String,
        /// Its input (JSON; default `{}`).
        input: Option<String>,
        /// The execution's name (default: a UUID).
        #[arg(long)]
        name: Option<String>,
        /// Wait for it to end and print its status and output or error.
        #[arg(long)]
        wait: bool,
    },
    /// An execution's status, input, output or error.
    Describe {
        /// Execution ARN.
        arn: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// An execution's history as a timeline: each event, its state and details.
    History {
        /// Execution ARN.
        arn: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a running execution.
    Stop {
        /// Execution ARN.
        arn: String,
    },
}

async fn call(client: &Client, op: &str, body: Value) -> anyhow::Result<Value> {
    Ok(client
        .aws_json(&format!("AWSStepFunctions.{op}"), body)
        .await?)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An epoch-seconds timestamp as RFC 3339.
fn time(seconds: &Value) -> String {
    seconds
        .as_f64()
        .map(|s| nimbus_aws::events::timestamp((s * 1000.0) as i64))
        .unwrap_or_default()
}

/// The ARN of state machine `machine` (a name, or an ARN already).
async fn machine_arn(client: &Client, machine: &str) -> anyhow::Result<String> {
    if machine.starts_with("arn:") {
        return Ok(machine.to_owned());
    }
    let mut token = Value::Null;
    loop {
        let page = call(
            client,
            "ListStateMachines",
            json!({"maxResults": 1000, "nextToken": token}),
        )
        .await?;
        for m in page["stateMachines"].as_array().into_iter().flatten() {
            if m["name"] == machine {
                return Ok(text(&m["stateMachineArn"]));
            }
        }
        token = page["nextToken"].clone();
        if token.is_null() {
            anyhow::bail!("no state machine named `{machine}` (`nimbus workflows ls` lists them)");
        }
    }
}

/// `nimbus workflows ...`
pub async fn workflows(client: &Client, cmd: WorkflowsCommand) -> anyhow::Result<()> {
    match cmd {
        WorkflowsCommand::Ls { json } => {
            let v = call(client, "ListStateMachines", json!({"maxResults": 1000})).await?;
            if json {
                return print_json(&v["stateMachines"]);
            }
            let rows: Vec<Vec<String>> = v["stateMachines"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    vec![
                        text(&m["name"]),
                        text(&m["type"]),
                        time(&m["creationDate"]),
                        text(&m["stateMachineArn"]),
                    ]
                })
                .collect();
            print_table(&["NAME", "TYPE", "CREATED", "ARN"], &rows);
        }
        WorkflowsCommand::Executions {
            machine,
            status,
            limit,
            json,
        } => {
            let arn = machine_arn(client, &machine).await?;
            let mut body = json!({"stateMachineArn": arn, "maxResults": limit.clamp(1, 1000)});
            if let Some(s) = status {
                body["statusFilter"] = json!(s.to_uppercase());
            }
            let v = call(client, "ListExecutions", body).await?;
            if json {
                return print_json(&v["executions"]);
            }
            let rows: Vec<Vec<String>> = v["executions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    vec![
                        text(&e["name"]),
                        text(&e["status"]),
                        time(&e["startDate"]),
                        time(&e["stopDate"]),
                        text(&e["executionArn"]),
                    ]
                })
                .collect();
            print_table(&["NAME", "STATUS", "STARTED", "STOPPED", "ARN"], &rows);
        }
        WorkflowsCommand::Start {
            machine,
            input,
            name,
            wait,
        } => {
            let input = input.unwrap_or_else(|| "{}".into());
            serde_json::from_str::<Value>(&input)
                .map_err(|e| anyhow::anyhow!("the input must be JSON: {e}"))?;
            let mut body =
                json!({"stateMachineArn": machine_arn(client, &machine).await?, "input": input});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            let started = call(client, "StartExecution", body).await?;
            let arn = text(&started["executionArn"]);
            println!("{arn}");
            if wait {
                let mut delay = Duration::from_millis(50);
                loop {
                    let d = call(client, "DescribeExecution", json!({"executionArn": arn})).await?;
                    if d["status"] != "RUNNING" {
                        describe(&d);
                        if d["status"] != "SUCCEEDED" {
                            std::process::exit(1);
                        }
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
        WorkflowsCommand::Describe { arn, json } => {
            let d = call(client, "DescribeExecution", json!({"executionArn": arn})).await?;
            if json {
                return print_json(&d);
            }
            describe(&d);
        }
        WorkflowsCommand::History { arn, json } => {
            let mut events = Vec::new();
            let mut token = Value::Null;
            loop {
                let page = call(
                    client,
                    "GetExecutionHistory",
                    json!({"executionArn": arn, "maxResults": 1000, "nextToken": token}),
                )
                .await?;
                events.extend(page["events"].as_array().cloned().unwrap_or_default());
                token = page["nextToken"].clone();
                if token.is_null() {
                    break;
                }
            }
            if json {
                return print_json(&events);
            }
            print_table(
                &["ID", "TIME", "EVENT", "STATE", "DETAIL"],
                &timeline(&events),
            );
        }
        WorkflowsCommand::Stop { arn } => {
            call(client, "StopExecution", json!({"executionArn": arn})).await?;
            println!("ABORTED");
        }
    }
    Ok(())
}

fn describe(d: &Value) {
    println!("execution  {}", text(&d["executionArn"]));
    println!("status     {}", text(&d["status"]));
    println!("started    {}", time(&d["startDate"]));
    if !d["stopDate"].is_null() {
        println!("stopped    {}", time(&d["stopDate"]));
    }
    println!("input      {}", text(&d["input"]));
    if !d["output"].is_null() {
        println!("output     {}", text(&d["output"]));
    }
    if !d["error"].is_null() {
        println!("error      {}: {}", text(&d["error"]), text(&d["cause"]));
    }
}

/// One row per history event: its id, when, its type, the state it concerns (state events
/// name it; the events between a state's entry and exit belong to it) and the detail that
/// matters (an output, an error and cause, a resource).
fn timeline(events: &[Value]) -> Vec<Vec<String>> {
    let mut state = String::new();
    events
        .iter()
        .map(|e| {
            let details = e
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.ends_with("EventDetails")))
                .map(|(_, d)| d.clone())
                .unwrap_or(Value::Null);
            if let Some(name) = details["name"].as_str() {
                state = name.to_owned();
            }
            let detail = if !details["error"].is_null() {
                format!("{}: {}", text(&details["error"]), text(&details["cause"]))
            } else if !details["output"].is_null() {
                text(&details["output"])
            } else if !details["resource"].is_null() {
                format!(
                    "{}:{}",
                    text(&details["resourceType"]),
                    text(&details["resource"])
                )
            } else {
                text(&details["input"])
            };
            vec![
                text(&e["id"]),
                time(&e["timestamp"]),
                text(&e["type"]),
                state.clone(),
                detail,
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_names_each_event_s_state_and_detail() {
        let events = vec![
            json!({"id": 1, "timestamp": 1.0, "type": "ExecutionStarted", "executionStartedEventDetails": {"input": "{}"}}),
            json!({"id": 2, "timestamp": 1.0, "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "Add", "input": "{}"}}),
            json!({"id": 3, "timestamp": 1.0, "type": "TaskScheduled", "taskScheduledEventDetails": {"resourceType": "lambda", "resource": "invoke"}}),
            json!({"id": 4, "timestamp": 2.0, "type": "TaskFailed", "taskFailedEventDetails": {"error": "ValueError", "cause": "bad"}}),
            json!({"id": 5, "timestamp": 2.0, "type": "ExecutionSucceeded", "executionSucceededEventDetails": {"output": "{\"n\":3}"}}),
        ];
        let rows = timeline(&events);
        assert_eq!(rows[0][3], "", "before any state");
        assert_eq!(rows[2][3], "Add");
        assert_eq!(rows[2][4], "lambda:invoke");
        assert_eq!(rows[3][4], "ValueError: bad");
        assert_eq!(rows[4][4], "{\"n\":3}");
        assert_eq!(rows[1][1], "1970-01-01T00:00:01.000Z");
    }
}
