//! The service integrations a Task can name besides functions: Nimbus queues through the SQS
//! `sendMessage` integration, topics through SNS `publish`, and other workflows through
//! `states:startExecution` (started and answered at once, or `.sync` / `.sync:2`: the task ends
//! with the nested execution). What their `Parameters` mean and what they answer, without
//! doing it: the engine sends, publishes or starts.

use md5::Digest;
use serde_json::{Map, Value, json};

use crate::Failure;

/// The SQS `SendMessage` integration.
pub const SQS_SEND_MESSAGE: &str = "arn:aws:states:::sqs:sendMessage";
/// The SNS `Publish` integration.
pub const SNS_PUBLISH: &str = "arn:aws:states:::sns:publish";
/// The Step Functions `StartExecution` integration.
pub const START_EXECUTION: &str = "arn:aws:states:::states:startExecution";

/// A service a Task calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Sends a message to a queue.
    SqsSendMessage,
    /// Publishes to a topic.
    SnsPublish,
    /// Starts an execution of a state machine.
    StartExecution(Sync),
}

/// How a nested execution's task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// When the execution has started (`{ExecutionArn, StartDate}`).
    No,
    /// When it ends, with its description; `Input` and `Output` as JSON text (`.sync`).
    Text,
    /// When it ends, with `Input` and `Output` as JSON (`.sync:2`).
    Json,
}

impl Service {
    /// The service a resource (without `.waitForTaskToken`) names.
    pub fn parse(resource: &str) -> Option<Service> {
        Some(match resource {
            SQS_SEND_MESSAGE => Service::SqsSendMessage,
            SNS_PUBLISH => Service::SnsPublish,
            START_EXECUTION => Service::StartExecution(Sync::No),
            _ => match resource.strip_prefix(START_EXECUTION)? {
                ".sync" => Service::StartExecution(Sync::Text),
                ".sync:2" => Service::StartExecution(Sync::Json),
                _ => return None,
            },
        })
    }

    /// Its resource ARN (what the engine is asked to call).
    pub fn resource(self) -> &'static str {
        match self {
            Service::SqsSendMessage => SQS_SEND_MESSAGE,
            Service::SnsPublish => SNS_PUBLISH,
            Service::StartExecution(Sync::No) => START_EXECUTION,
            Service::StartExecution(Sync::Text) => "arn:aws:states:::states:startExecution.sync",
            Service::StartExecution(Sync::Json) => "arn:aws:states:::states:startExecution.sync:2",
        }
    }

    /// Whether the task ends only when the work it started ends (and so cannot also wait for
    /// a task token).
    pub fn is_sync(self) -> bool {
        matches!(self, Service::StartExecution(Sync::Text | Sync::Json))
    }
}

/// A message for a queue or a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The queue's or the topic's name.
    pub destination: String,
    /// The body.
    pub body: String,
    /// Attributes, name and value.
    pub attributes: Vec<(String, String)>,
    /// Data types of attributes that are not `String`.
    pub data_types: Vec<(String, String)>,
    /// Delivery delay, seconds (queues).
    pub delay_seconds: Option<u64>,
    /// Subject (topics).
    pub subject: Option<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn required<'a>(params: &'a Value, field: &str, error: &str) -> Result<&'a Value, Failure> {
    params
        .get(field)
        .filter(|v| !v.is_null())
        .ok_or_else(|| Failure::new(error, format!("Parameters.{field} is required")))
}

/// Name and value pairs.
type Pairs = Vec<(String, String)>;

/// `MessageAttributes`: the values, and the data types that are not `String`.
fn attributes(params: &Value, error: &str) -> Result<(Pairs, Pairs), Failure> {
    let mut values = Vec::new();
    let mut types = Vec::new();
    let Some(given) = params.get("MessageAttributes") else {
        return Ok((values, types));
    };
    let bad = |name: &str| {
        Failure::new(
            error,
            format!("MessageAttributes.{name} needs DataType and StringValue"),
        )
    };
    for (name, attr) in given.as_object().unwrap_or(&Map::new()) {
        let ty = attr
            .get("DataType")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(name))?;
        let value = attr
            .get("StringValue")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(name))?;
        values.push((name.clone(), value.to_owned()));
        if ty != "String" {
            types.push((name.clone(), ty.to_owned()));
        }
    }
    Ok((values, types))
}

/// The error an SQS integration fails with when its parameters are wrong.
pub const SQS_ERROR: &str = "SQS.AmazonSQSException";
/// The error an SNS integration fails with when its parameters are wrong.
pub const SNS_ERROR: &str = "SNS.InvalidParameterException";

/// `sqs:sendMessage`'s message: `QueueUrl` (its last path segment is the queue),
/// `MessageBody` (JSON other than a string is sent as its text), `DelaySeconds`,
/// `MessageAttributes`.
pub fn sqs_message(params: &Value) -> Result<Message, Failure> {
    let url = required(params, "QueueUrl", SQS_ERROR)?
        .as_str()
        .ok_or_else(|| Failure::new(SQS_ERROR, "Parameters.QueueUrl must be a string"))?;
    let queue = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if queue.is_empty() {
        return Err(Failure::new(SQS_ERROR, format!("'{url}' names no queue")));
    }
    let body = text(required(params, "MessageBody", SQS_ERROR)?);
    let delay_seconds =
        match params.get("DelaySeconds") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|d| *d <= 900).ok_or_else(|| {
                Failure::new(SQS_ERROR, "Parameters.DelaySeconds must be 0 to 900")
            })?),
        };
    let (attributes, data_types) = attributes(params, SQS_ERROR)?;
    Ok(Message {
        destination: queue.to_owned(),
        body,
        attributes,
        data_types,
        delay_seconds,
        subject: None,
    })
}

/// `sns:publish`'s message: `TopicArn` (its last segment is the topic), `Message` (JSON
/// other than a string is published as its text), `Subject`, `MessageAttributes`.
pub fn sns_message(params: &Value) -> Result<Message, Failure> {
    let arn = required(params, "TopicArn", SNS_ERROR)?
        .as_str()
        .ok_or_else(|| Failure::new(SNS_ERROR, "Parameters.TopicArn must be a string"))?;
    let topic = arn.rsplit(':').next().unwrap_or_default();
    if topic.is_empty() {
        return Err(Failure::new(SNS_ERROR, format!("'{arn}' names no topic")));
    }
    let (attributes, data_types) = attributes(params, SNS_ERROR)?;
    Ok(Message {
        destination: topic.to_owned(),
        body: text(required(params, "Message", SNS_ERROR)?),
        attributes,
        data_types,
        delay_seconds: None,
        subject: params
            .get("Subject")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// What `sqs:sendMessage` answers.
pub fn sqs_answer(message_id: &str, body: &str) -> Value {
    json!({
        "MessageId": message_id,
        "MD5OfMessageBody": hex::encode(md5::Md5::digest(body.as_bytes())),
    })
}

/// What `sns:publish` answers.
pub fn sns_answer(message_id: &str) -> Value {
    json!({ "MessageId": message_id })
}

/// The error a nested execution's parameters fail with.
pub const START_ERROR: &str = "StepFunctions.InvalidArnException";

/// `states:startExecution`'s request: the state machine's ARN, the execution's name (if
/// given) and its input as JSON text (`Input` as an object, or as text).
pub fn start_request(params: &Value) -> Result<(String, Option<String>, String), Failure> {
    let machine = required(params, "StateMachineArn", START_ERROR)?
        .as_str()
        .ok_or_else(|| Failure::new(START_ERROR, "Parameters.StateMachineArn must be a string"))?;
    let name = match params.get("Name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => {
            return Err(Failure::new(
                "StepFunctions.InvalidNameException",
                "Parameters.Name must be a string",
            ));
        }
    };
    let input = match params.get("Input") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(v) => text(v),
    };
    Ok((machine.to_owned(), name, input))
}

/// A nested execution as the `.sync` task answers it (and as the cause of its failure):
/// `DescribeExecution`'s fields, dates in epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Described<'a> {
    /// The execution's ARN.
    pub execution_arn: &'a str,
    /// Its state machine's ARN.
    pub machine_arn: &'a str,
    /// Its name.
    pub name: &'a str,
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: &'a str,
    /// Its input (JSON text).
    pub input: &'a str,
    /// Its output (JSON text), when it succeeded.
    pub output: Option<&'a str>,
    /// Its error and cause, when it did not.
    pub error: Option<(&'a str, &'a str)>,
    /// When it started and stopped, unix ms.
    pub start_ms: i64,
    /// When it stopped.
    pub stop_ms: i64,
}

impl Described<'_> {
    /// The `.sync` shape (`Input` and `Output` as text).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "ExecutionArn": self.execution_arn,
            "StateMachineArn": self.machine_arn,
            "Name": self.name,
            "Status": self.status,
            "Input": self.input,
            "InputDetails": {"Included": true},
            "StartDate": self.start_ms,
            "StopDate": self.stop_ms,
        });
        if let Some(output) = self.output {
            v["Output"] = json!(output);
            v["OutputDetails"] = json!({"Included": true});
        }
        if let Some((error, cause)) = self.error {
            v["Error"] = json!(error);
            v["Cause"] = json!(cause);
        }
        v
    }
}

/// A `.sync` answer in the `.sync:2` shape: `Input` and `Output` as JSON.
pub fn sync2(mut described: Value) -> Value {
    for field in ["Input", "Output"] {
        if let Some(parsed) = described
            .get(field)
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        {
            described[field] = parsed;
        }
    }
    described
}

/// What `states:startExecution` (not `.sync`) answers.
pub fn started_answer(execution_arn: &str, start_ms: i64) -> Value {
    json!({ "ExecutionArn": execution_arn, "StartDate": start_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_name_services_and_back() {
        for s in [
            Service::SqsSendMessage,
            Service::SnsPublish,
            Service::StartExecution(Sync::No),
            Service::StartExecution(Sync::Text),
            Service::StartExecution(Sync::Json),
        ] {
            assert_eq!(Service::parse(s.resource()), Some(s));
        }
        assert_eq!(
            Service::parse("arn:aws:states:::states:startExecution.sync:3"),
            None
        );
        assert_eq!(Service::parse("arn:aws:states:::sqs:receiveMessage"), None);
        assert!(Service::StartExecution(Sync::Json).is_sync());
        assert!(!Service::SqsSendMessage.is_sync());
    }

    #[test]
    fn sqs_messages_follow_the_send_message_parameters() {
        let m = sqs_message(&json!({
            "QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
            "MessageBody": {"order": 7},
            "DelaySeconds": 5,
            "MessageAttributes": {
                "kind": {"DataType": "String", "StringValue": "new"},
                "count": {"DataType": "Number", "StringValue": "3"}
            }
        }))
        .unwrap();
        assert_eq!(m.destination, "orders");
        assert_eq!(m.body, r#"{"order":7}"#);
        assert_eq!(m.delay_seconds, Some(5));
        assert_eq!(m.attributes.len(), 2);
        assert_eq!(
            m.data_types,
            vec![("count".to_owned(), "Number".to_owned())]
        );
        let plain = sqs_message(
            &json!({"QueueUrl": "http://127.0.0.1:8080/000000000000/q", "MessageBody": "hi"}),
        )
        .unwrap();
        assert_eq!(
            (plain.destination.as_str(), plain.body.as_str()),
            ("q", "hi")
        );

        for bad in [
            json!({"MessageBody": "x"}),
            json!({"QueueUrl": "q"}),
            json!({"QueueUrl": 3, "MessageBody": "x"}),
            json!({"QueueUrl": "q", "MessageBody": "x", "DelaySeconds": 901}),
            json!({"QueueUrl": "q", "MessageBody": "x", "MessageAttributes": {"a": {"DataType": "String"}}}),
        ] {
            assert_eq!(sqs_message(&bad).unwrap_err().error, SQS_ERROR, "{bad}");
        }
        // The documented MD5 of the body.
        assert_eq!(
            sqs_answer("m1", "hi")["MD5OfMessageBody"],
            "49f68a5c8493ec2c0bf489821c21fc3b"
        );
    }

    #[test]
    fn sns_messages_follow_the_publish_parameters() {
        let m = sns_message(&json!({
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:alerts",
            "Message": {"Input": "Hello from Step Functions!"},
            "Subject": "hello"
        }))
        .unwrap();
        assert_eq!(m.destination, "alerts");
        assert_eq!(m.body, r#"{"Input":"Hello from Step Functions!"}"#);
        assert_eq!(m.subject.as_deref(), Some("hello"));
        assert_eq!(
            sns_message(&json!({"TopicArn": "arn:aws:sns:us-east-1:1:t"}))
                .unwrap_err()
                .error,
            SNS_ERROR
        );
    }

    #[test]
    fn nested_executions_take_input_as_object_or_text() {
        let (machine, name, input) = start_request(&json!({
            "StateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:HelloWorld",
            "Input": {"Comment": "Hello world!"},
            "Name": "ExecutionName"
        }))
        .unwrap();
        assert!(machine.ends_with(":stateMachine:HelloWorld"));
        assert_eq!(name.as_deref(), Some("ExecutionName"));
        assert_eq!(input, r#"{"Comment":"Hello world!"}"#);
        let (_, name, input) =
            start_request(&json!({"StateMachineArn": "a", "Input": "{\"a\":1}"})).unwrap();
        assert_eq!((name, input.as_str()), (None, "{\"a\":1}"));
        assert!(start_request(&json!({"Input": {}})).is_err());
        assert!(start_request(&json!({"StateMachineArn": "a", "Name": 3})).is_err());
    }

    #[test]
    fn sync2_parses_what_sync_gives_as_text() {
        let d = Described {
            execution_arn: "e",
            machine_arn: "m",
            name: "n",
            status: "SUCCEEDED",
            input: r#"{"a":1}"#,
            output: Some(r#"{"b":2}"#),
            error: None,
            start_ms: 1,
            stop_ms: 2,
        }
        .to_json();
        assert_eq!(d["Output"], r#"{"b":2}"#);
        assert_eq!(d["StopDate"], 2);
        let two = sync2(d);
        assert_eq!(two["Input"], json!({"a": 1}));
        assert_eq!(two["Output"], json!({"b": 2}));
    }
}
