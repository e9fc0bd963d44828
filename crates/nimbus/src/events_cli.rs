//! CLI verbs for event resources: `nimbus queue`, `nimbus topic`, `nimbus schedule`, `nimbus dlq`.

use anyhow::{Context, bail};
use clap::Subcommand;
use nimbus_client::{Client, Method};
use serde_json::{Map, Value, json};

/// `nimbus queue ...`
#[derive(Subcommand)]
pub enum QueueCommand {
    /// List queues with their depth.
    Ls,
    /// Create (or replace) a queue.
    Create {
        /// Queue name.
        name: String,
        /// How long a received message stays invisible (e.g. 30s).
        #[arg(long)]
        visibility_timeout: Option<String>,
        /// Default delivery delay (e.g. 10s).
        #[arg(long)]
        delay: Option<String>,
        /// Deliveries before a message moves to --dead-letter.
        #[arg(long, requires = "dead_letter")]
        max_receive_count: Option<u32>,
        /// Dead-letter queue.
        #[arg(long, requires = "max_receive_count")]
        dead_letter: Option<String>,
    },
    /// Delete a queue created with `queue create`, and its messages.
    Rm {
        /// Queue name.
        name: String,
    },
    /// Send a message.
    Send {
        /// Queue name.
        name: String,
        /// Message body.
        body: String,
        /// Attribute `key=value`, or `key:Type=value` for an SNS data type (`Number`,
        /// `String.Array`, `Binary`) (repeatable).
        #[arg(long = "attr")]
        attributes: Vec<String>,
        /// Delivery delay in seconds.
        #[arg(long)]
        delay_seconds: Option<u64>,
        /// Idempotency key: the same key within 5 minutes is accepted once.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Receive messages (and delete them with --ack).
    Receive {
        /// Queue name.
        name: String,
        /// Most messages.
        #[arg(long, default_value_t = 10)]
        max: usize,
        /// Seconds to wait for a first message.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Delete what was received.
        #[arg(long)]
        ack: bool,
    },
    /// Move a dead-letter queue's messages back to where they failed.
    Redrive {
        /// Dead-letter queue.
        name: String,
    },
}

/// `nimbus topic ...`
#[derive(Subcommand)]
pub enum TopicCommand {
    /// List topics and their subscriptions.
    Ls,
    /// Show a topic (with webhook signing secrets).
    Show {
        /// Topic name.
        name: String,
    },
    /// Create a topic with no subscriptions.
    Create {
        /// Topic name.
        name: String,
    },
    /// Delete a topic created with `topic create`.
    Rm {
        /// Topic name.
        name: String,
    },
    /// Add a subscription to a topic created with `topic create`.
    Subscribe {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
        /// Invoke this function asynchronously.
        #[arg(long, group = "endpoint")]
        function: Option<String>,
        /// Send to this queue.
        #[arg(long, group = "endpoint")]
        queue: Option<String>,
        /// POST to this URL, signed.
        #[arg(long, group = "endpoint")]
        webhook: Option<String>,
        /// SNS-style filter policy (JSON), e.g. '{"type": ["order"]}'.
        #[arg(long)]
        filter: Option<String>,
        /// Match the filter against the body instead of the attributes.
        #[arg(long)]
        filter_body: bool,
    },
    /// Publish a message.
    Publish {
        /// Topic name.
        name: String,
        /// Message body.
        body: String,
        /// Attribute `key=value`, or `key:Type=value` for an SNS data type (`Number`,
        /// `String.Array`, `Binary`) (repeatable).
        #[arg(long = "attr")]
        attributes: Vec<String>,
        /// Subject.
        #[arg(long)]
        subject: Option<String>,
    },
}

/// `nimbus schedule ...`
#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// List schedules.
    Ls,
    /// Enable a schedule.
    Enable {
        /// Schedule name.
        name: String,
    },
    /// Disable a schedule (an app's next deploy restores its manifest's setting).
    Disable {
        /// Schedule name.
        name: String,
    },
}

/// `nimbus dlq ...`
#[derive(Subcommand)]
pub enum DlqCommand {
    /// Move a dead-letter queue's messages back to their source queue or function.
    Redrive {
        /// Dead-letter queue.
        name: String,
    },
}

/// `key=value` (a String), or `key:Type=value` with an SNS data type (`price:Number=9.5`,
/// `tags:String.Array=["a","b"]`).
fn attributes(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(match k.split_once(':') {
                Some((k, ty)) if !k.is_empty() && !ty.is_empty() => {
                    (k.to_string(), json!({"Type": ty, "Value": v}))
                }
                _ => (k.to_string(), json!(v)),
            }),
            _ => bail!("`{p}` is not an attribute: write key=value or key:Type=value"),
        })
        .collect()
}

fn pretty(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn redrive(client: &Client, name: &str) -> anyhow::Result<()> {
    let r = client
        .call(Method::POST, &format!("/v1/queues/{name}/redrive"), None)
        .await?;
    println!("Moved {} message(s) out of `{name}`.", r["moved"]);
    Ok(())
}

/// Runs a `nimbus queue` verb.
pub async fn queue(client: &Client, command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::Ls => {
            let list = client.call(Method::GET, "/v1/queues", None).await?;
            let rows: Vec<Vec<String>> = list
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|q| {
                    vec![
                        q["name"].as_str().unwrap_or_default().to_string(),
                        q["messages"].to_string(),
                        q["in_flight"].to_string(),
                        format!("{} ms", q["oldest_age_ms"]),
                        q["dead_letter"].as_str().unwrap_or("-").to_string(),
                    ]
                })
                .collect();
            crate::cli::print_table(
                &["NAME", "MESSAGES", "IN FLIGHT", "OLDEST", "DEAD LETTER"],
                &rows,
            );
        }
        QueueCommand::Create {
            name,
            visibility_timeout,
            delay,
            max_receive_count,
            dead_letter,
        } => {
            let mut body = Map::new();
            for (k, v) in [
                ("visibility_timeout", visibility_timeout.map(Value::from)),
                ("delay", delay.map(Value::from)),
                ("max_receive_count", max_receive_count.map(Value::from)),
                ("dead_letter", dead_letter.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            }
            client
                .call(
                    Method::PUT,
                    &format!("/v1/queues/{name}"),
                    Some(Value::Object(body)),
                )
                .await?;
            println!("Queue `{name}` is ready.");
        }
        QueueCommand::Rm { name } => {
            client
                .call(Method::DELETE, &format!("/v1/queues/{name}"), None)
                .await?;
            println!("Removed queue `{name}`.");
        }
        QueueCommand::Send {
            name,
            body,
            attributes: attrs,
            delay_seconds,
            idempotency_key,
        } => {
            let mut m = json!({ "body": body, "attributes": attributes(&attrs)? });
            if let Some(d) = delay_seconds {
                m["delay_seconds"] = json!(d);
            }
            if let Some(k) = idempotency_key {
                m["idempotency_key"] = json!(k);
            }
            let r = client
                .call(
                    Method::POST,
                    &format!("/v1/queues/{name}/messages"),
                    Some(m),
                )
                .await?;
            println!("{}", r["id"].as_str().unwrap_or_default());
        }
        QueueCommand::Receive {
            name,
            max,
            wait,
            ack,
        } => {
            let r = client
                .call(
                    Method::POST,
                    &format!("/v1/queues/{name}/receive"),
                    Some(json!({ "max": max, "wait_seconds": wait })),
                )
                .await?;
            if ack {
                let receipts: Vec<Value> = r["messages"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|m| m["receipt"].clone())
                    .collect();
                if !receipts.is_empty() {
                    client
                        .call(
                            Method::POST,
                            &format!("/v1/queues/{name}/ack"),
                            Some(json!({ "receipts": receipts })),
                        )
                        .await?;
                }
            }
            pretty(&r["messages"])?;
        }
        QueueCommand::Redrive { name } => redrive(client, &name).await?,
    }
    Ok(())
}

/// Runs a `nimbus topic` verb.
pub async fn topic(client: &Client, command: TopicCommand) -> anyhow::Result<()> {
    match command {
        TopicCommand::Ls => pretty(&client.call(Method::GET, "/v1/topics", None).await?)?,
        TopicCommand::Show { name } => pretty(
            &client
                .call(Method::GET, &format!("/v1/topics/{name}"), None)
                .await?,
        )?,
        TopicCommand::Create { name } => {
            client
                .call(Method::PUT, &format!("/v1/topics/{name}"), Some(json!({})))
                .await?;
            println!("Topic `{name}` is ready.");
        }
        TopicCommand::Rm { name } => {
            client
                .call(Method::DELETE, &format!("/v1/topics/{name}"), None)
                .await?;
            println!("Removed topic `{name}`.");
        }
        TopicCommand::Subscribe {
            topic,
            name,
            function,
            queue,
            webhook,
            filter,
            filter_body,
        } => {
            let current = client
                .call(Method::GET, &format!("/v1/topics/{topic}"), None)
                .await?;
            let mut subs: Vec<Value> = current["subscriptions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|s| s["name"] != name.as_str())
                .map(|s| manifest_subscription(&s))
                .collect();
            let mut sub = json!({ "name": name });
            match (function, queue, webhook) {
                (Some(f), None, None) => sub["function"] = json!(f),
                (None, Some(q), None) => sub["queue"] = json!(q),
                (None, None, Some(w)) => sub["webhook"] = json!(w),
                _ => bail!("name one endpoint: --function, --queue or --webhook"),
            }
            if let Some(f) = filter {
                sub["filter"] = serde_json::from_str(&f).context("--filter is not JSON")?;
            }
            if filter_body {
                sub["filter_scope"] = json!("body");
            }
            subs.push(sub);
            client
                .call(
                    Method::PUT,
                    &format!("/v1/topics/{topic}"),
                    Some(json!({ "subscriptions": subs })),
                )
                .await?;
            println!("Subscribed `{name}` to topic `{topic}`.");
        }
        TopicCommand::Publish {
            name,
            body,
            attributes: attrs,
            subject,
        } => {
            let mut m = json!({ "body": body, "attributes": attributes(&attrs)? });
            if let Some(s) = subject {
                m["subject"] = json!(s);
            }
            let r = client
                .call(
                    Method::POST,
                    &format!("/v1/topics/{name}/messages"),
                    Some(m),
                )
                .await?;
            println!("{}", r["id"].as_str().unwrap_or_default());
        }
    }
    Ok(())
}

/// A subscription as the API shows it, turned back into the form the API accepts.
fn manifest_subscription(s: &Value) -> Value {
    let mut out = json!({ "name": s["name"] });
    if let Some(endpoint) = s["endpoint"].as_object() {
        for (k, v) in endpoint {
            out[k] = v.clone();
        }
    }
    if let Some(f) = s["filter"].as_str()
        && let Ok(v) = serde_json::from_str::<Value>(f)
    {
        out["filter"] = v;
    }
    if let Some(scope) = s["filter_scope"].as_str() {
        out["filter_scope"] = json!(scope);
    }
    out
}

/// Runs a `nimbus schedule` verb.
pub async fn schedule(client: &Client, command: ScheduleCommand) -> anyhow::Result<()> {
    let (name, enabled) = match command {
        ScheduleCommand::Ls => {
            let list = client.call(Method::GET, "/v1/schedules", None).await?;
            let rows: Vec<Vec<String>> = list
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    vec![
                        s["name"].as_str().unwrap_or_default().to_string(),
                        s["expression"].as_str().unwrap_or_default().to_string(),
                        s["timezone"].as_str().unwrap_or_default().to_string(),
                        s["target"].to_string(),
                        if s["enabled"] == true {
                            "enabled"
                        } else {
                            "disabled"
                        }
                        .to_string(),
                    ]
                })
                .collect();
            crate::cli::print_table(
                &["NAME", "EXPRESSION", "TIMEZONE", "TARGET", "STATE"],
                &rows,
            );
            return Ok(());
        }
        ScheduleCommand::Enable { name } => (name, true),
        ScheduleCommand::Disable { name } => (name, false),
    };
    client
        .call(
            Method::POST,
            &format!("/v1/schedules/{name}/state?enabled={enabled}"),
            None,
        )
        .await?;
    println!(
        "Schedule `{name}` is {}.",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

/// Runs a `nimbus dlq` verb.
pub async fn dlq(client: &Client, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::Redrive { name } => redrive(client, &name).await,
    }
}
