//! CLI verbs for durable executions: `nimbus executions ls`, `nimbus execution
//! start|show|history|stop`, `nimbus callback succeed|fail|heartbeat`.

use clap::Subcommand;
use nimbus_client::{Client, Method};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::cli::{print_json, print_table};

/// `nimbus execution ...`
#[derive(Subcommand)]
pub enum ExecutionCommand {
    /// Start an execution of a durable function (answers at once; follow it with `show`).
    Start {
        /// Function name.
        function: String,
        /// Its input (JSON; default `{}`).
        input: Option<String>,
        /// Its name: starting the same name with the same input again is that execution.
        #[arg(long)]
        name: Option<String>,
    },
    /// An execution's status, output or error, and the callbacks it waits for.
    Show {
        /// Execution ARN.
        arn: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// An execution's timeline: each operation with its attempt, duration and result or error.
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

/// `nimbus callback ...`
#[derive(Subcommand)]
pub enum CallbackCommand {
    /// Answer a callback with a result (the text given, JSON or not; default none).
    Succeed {
        /// Callback id (`nimbus execution show` lists the waiting ones).
        id: String,
        /// The result.
        data: Option<String>,
    },
    /// Answer a callback with an error.
    Fail {
        /// Callback id.
        id: String,
        /// The error's type.
        #[arg(long, default_value = "CallbackFailed")]
        error_type: String,
        /// The error's message.
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Tell a callback with a heartbeat timeout that its work goes on.
    Heartbeat {
        /// Callback id.
        id: String,
    },
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time(ms: &Value) -> String {
    ms.as_i64()
        .map(nimbus_aws::events::timestamp)
        .unwrap_or_default()
}

/// `nimbus executions ls FUNCTION`.
pub async fn list(
    client: &Client,
    function: &str,
    status: Option<String>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let mut path = format!("/v1/functions/{}/executions?limit={limit}", enc(function));
    if let Some(s) = status {
        path.push_str(&format!("&status={}", enc(&s)));
    }
    let v = client.call(Method::GET, &path, None).await?;
    if json {
        return print_json(&v);
    }
    let rows: Vec<Vec<String>> = v["executions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            vec![
                text(&e["name"]),
                text(&e["status"]),
                time(&e["start_ms"]),
                time(&e["end_ms"]),
                text(&e["arn"]),
            ]
        })
        .collect();
    print_table(&["NAME", "STATUS", "STARTED", "ENDED", "ARN"], &rows);
    Ok(())
}

/// `nimbus execution ...`
pub async fn execution(client: &Client, cmd: ExecutionCommand) -> anyhow::Result<()> {
    match cmd {
        ExecutionCommand::Start {
            function,
            input,
            name,
        } => {
            let input: Value = match input {
                None => json!({}),
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("the input must be JSON: {e}"))?,
            };
            let mut path = format!("/v1/functions/{}/executions", enc(&function));
            if let Some(n) = name {
                path.push_str(&format!("?name={}", enc(&n)));
            }
            let v = client.call(Method::POST, &path, Some(input)).await?;
            println!("{}", text(&v["arn"]));
        }
        ExecutionCommand::Show { arn, json } => {
            let v = client
                .call(Method::GET, &format!("/v1/executions/{}", enc(&arn)), None)
                .await?;
            if json {
                return print_json(&v);
            }
            println!("execution  {}", text(&v["arn"]));
            println!("status     {}", text(&v["status"]));
            println!("started    {}", time(&v["start_ms"]));
            if !v["end_ms"].is_null() {
                println!("ended      {}", time(&v["end_ms"]));
            }
            if !v["output"].is_null() {
                println!("output     {}", v["output"]);
            }
            if !v["error"].is_null() {
                println!(
                    "error      {}: {}",
                    text(&v["error"]["ErrorType"]),
                    text(&v["error"]["ErrorMessage"])
                );
            }
            for cb in v["links"]["callbacks"].as_array().into_iter().flatten() {
                println!(
                    "waiting    callback {} {}",
                    text(&cb["name"]),
                    text(&cb["id"])
                );
            }
        }
        ExecutionCommand::History { arn, json } => {
            let v = client
                .call(
                    Method::GET,
                    &format!("/v1/executions/{}/history", enc(&arn)),
                    None,
                )
                .await?;
            if json {
                return print_json(&v);
            }
            print_table(
                &[
                    "TIME",
                    "EVENT",
                    "NAME",
                    "ATTEMPT",
                    "DURATION",
                    "RESULT OR ERROR",
                ],
                &timeline(
                    v["events"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                ),
            );
        }
        ExecutionCommand::Stop { arn } => {
            let v = client
                .call(
                    Method::POST,
                    &format!("/v1/executions/{}/stop", enc(&arn)),
                    None,
                )
                .await?;
            println!("{}", text(&v["status"]));
        }
    }
    Ok(())
}

/// One row per history event: when, what, which operation, its attempt, how long since the
/// operation started (on its end), and its result or error.
fn timeline(events: &[Value]) -> Vec<Vec<String>> {
    let mut started = std::collections::HashMap::new();
    events
        .iter()
        .map(|e| {
            let ty = text(&e["EventType"]);
            let at = e["EventTimestamp"].as_f64().unwrap_or(0.0);
            let id = text(&e["Id"]);
            let details = e
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| k.ends_with("Details")))
                .map(|(_, d)| d.clone())
                .unwrap_or(Value::Null);
            let duration = if ty.ends_with("Started") {
                started.insert(id.clone(), at);
                String::new()
            } else {
                started
                    .get(&id)
                    .map(|s| format!("{:.0} ms", (at - s) * 1000.0))
                    .unwrap_or_default()
            };
            let outcome = if !details["Result"]["Payload"].is_null() {
                text(&details["Result"]["Payload"])
            } else if !details["Error"]["Payload"].is_null() {
                let err = &details["Error"]["Payload"];
                format!(
                    "{}: {}",
                    text(&err["ErrorType"]),
                    text(&err["ErrorMessage"])
                )
            } else {
                String::new()
            };
            vec![
                nimbus_aws::events::timestamp((at * 1000.0) as i64),
                ty,
                e["Name"].as_str().map_or(id, str::to_string),
                text(&details["RetryDetails"]["CurrentAttempt"]),
                duration,
                outcome,
            ]
        })
        .collect()
}

/// `nimbus callback ...`
pub async fn callback(client: &Client, cmd: CallbackCommand) -> anyhow::Result<()> {
    let (id, action, body) = match cmd {
        CallbackCommand::Succeed { id, data } => {
            let body = data.map(|d| serde_json::from_str(&d).unwrap_or(Value::String(d)));
            (id, "succeed", body)
        }
        CallbackCommand::Fail {
            id,
            error_type,
            message,
        } => (
            id,
            "fail",
            Some(json!({"ErrorType": error_type, "ErrorMessage": message})),
        ),
        CallbackCommand::Heartbeat { id } => (id, "heartbeat", None),
    };
    client
        .call(
            Method::POST,
            &format!("/v1/callbacks/{}/{action}", enc(&id)),
            body,
        )
        .await?;
    Ok(())
}
