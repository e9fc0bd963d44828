//! The event shapes AWS services hand to Lambda handlers, so handlers written for them run
//! unchanged: SQS batches (with partial batch responses), SNS notifications, EventBridge
//! scheduled events, and the records Lambda sends to async-invocation destinations.

use serde_json::{Map, Value, json};

use crate::lambda::ACCOUNT_ID;

/// RFC 3339 with milliseconds, UTC (`2026-11-23T05:46:16.123Z`), as AWS writes timestamps.
pub fn timestamp(unix_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// ARN of a queue.
pub fn queue_arn(region: &str, queue: &str) -> String {
    format!("arn:aws:sqs:{region}:{ACCOUNT_ID}:{queue}")
}

/// ARN of a topic.
pub fn topic_arn(region: &str, topic: &str) -> String {
    format!("arn:aws:sns:{region}:{ACCOUNT_ID}:{topic}")
}

/// One message of an SQS batch.
#[derive(Debug, Clone)]
pub struct SqsMessage<'a> {
    /// Message id (what `batchItemFailures` names).
    pub id: &'a str,
    /// Receipt of this delivery.
    pub receipt: &'a str,
    /// Body (must be text for SQS; other bytes are passed lossily).
    pub body: &'a [u8],
    /// Message attributes.
    pub attributes: &'a [(String, String)],
    /// Their data types when not `String` (`Number`, `String.Array`, `Binary`, ...).
    pub data_types: &'a [(String, String)],
    /// Deliveries so far, this one included.
    pub receive_count: u32,
    /// When it was sent, unix ms.
    pub sent_ms: i64,
}

/// The data type of attribute `key` (`String` unless recorded otherwise).
fn data_type<'a>(types: &'a [(String, String)], key: &str) -> &'a str {
    types
        .iter()
        .find(|(k, _)| k == key)
        .map_or("String", |(_, t)| t.as_str())
}

/// The event of an SQS-triggered invocation: `{"Records": [...]}`.
pub fn sqs_event(region: &str, queue: &str, messages: &[SqsMessage<'_>], now_ms: i64) -> Value {
    let arn = queue_arn(region, queue);
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .attributes
                .iter()
                .map(|(k, v)| {
                    let ty = data_type(m.data_types, k);
                    // Binary values travel base64-encoded, as `binaryValue`.
                    let value = if ty.starts_with("Binary") {
                        json!({"binaryValue": v, "stringListValues": [], "binaryListValues": [],
                               "dataType": ty})
                    } else {
                        json!({"stringValue": v, "stringListValues": [], "binaryListValues": [],
                               "dataType": ty})
                    };
                    (k.clone(), value)
                })
                .collect();
            json!({
                "messageId": m.id,
                "receiptHandle": m.receipt,
                "body": String::from_utf8_lossy(m.body),
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_ms.to_string(),
                    "SenderId": ACCOUNT_ID,
                    "ApproximateFirstReceiveTimestamp": now_ms.to_string(),
                },
                "messageAttributes": attributes,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The message ids a handler reported as failed in a partial batch response
/// (`{"batchItemFailures": [{"itemIdentifier": id}]}`), or `None` when the result is not one
/// (then the whole batch succeeded).
pub fn batch_item_failures(result: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(result).ok()?;
    let failures = v.get("batchItemFailures")?.as_array()?;
    Some(
        failures
            .iter()
            .filter_map(|f| f.get("itemIdentifier")?.as_str().map(str::to_string))
            .collect(),
    )
}

/// One SNS notification.
#[derive(Debug, Clone)]
pub struct SnsMessage<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Subscription name.
    pub subscription: &'a str,
    /// Message id.
    pub id: &'a str,
    /// Subject, if any.
    pub subject: Option<&'a str>,
    /// Body.
    pub message: &'a [u8],
    /// Message attributes.
    pub attributes: &'a [(String, String)],
    /// Their data types when not `String`.
    pub data_types: &'a [(String, String)],
    /// Publish time, unix ms.
    pub published_ms: i64,
}

/// The event of an SNS-triggered invocation: `{"Records": [{"Sns": {...}}]}`.
pub fn sns_event(region: &str, m: &SnsMessage<'_>) -> Value {
    let topic_arn = topic_arn(region, m.topic);
    let attributes: Map<String, Value> = m
        .attributes
        .iter()
        .map(|(k, v)| {
            let ty = data_type(m.data_types, k);
            (k.clone(), json!({"Type": ty, "Value": v}))
        })
        .collect();
    json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": format!("{topic_arn}:{}", m.subscription),
        "Sns": {
            "Type": "Notification",
            "MessageId": m.id,
            "TopicArn": topic_arn,
            "Subject": m.subject,
            "Message": String::from_utf8_lossy(m.message),
            "Timestamp": timestamp(m.published_ms),
            "SignatureVersion": "1",
            "Signature": "",
            "SigningCertUrl": "",
            "UnsubscribeUrl": "",
            "MessageAttributes": attributes,
        }
    }]})
}

/// The EventBridge event of a schedule tick (`"detail-type": "Scheduled Event"`).
pub fn scheduled_event(region: &str, schedule: &str, id: &str, tick_ms: i64) -> Value {
    let time = timestamp(tick_ms);
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": format!("{}Z", &time[..19]),
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{ACCOUNT_ID}:rule/{schedule}")],
        "detail": {},
    })
}

/// Why a destination record was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The function returned.
    Success,
    /// Every attempt failed.
    RetriesExhausted,
    /// The event got too old to try again.
    EventAgeExceeded,
}

impl Condition {
    /// As Lambda writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// What an async invocation's destination receives.
#[derive(Debug, Clone)]
pub struct DestinationRecord<'a> {
    /// The invocation id.
    pub request_id: &'a str,
    /// The function's ARN.
    pub function_arn: &'a str,
    /// Why.
    pub condition: Condition,
    /// Attempts made.
    pub attempts: u32,
    /// When, unix ms.
    pub now_ms: i64,
    /// The event.
    pub request: &'a [u8],
    /// The result (success) or error document (failure).
    pub response: &'a [u8],
    /// The error type of a failure (`Unhandled` in Lambda's words).
    pub function_error: Option<&'a str>,
}

fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The record Lambda sends to an on-success or on-failure destination.
pub fn destination_record(r: &DestinationRecord<'_>) -> Value {
    let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
    if let Some(e) = r.function_error {
        response["functionError"] = json!(e);
    }
    json!({
        "version": "1.0",
        "timestamp": timestamp(r.now_ms),
        "requestContext": {
            "requestId": r.request_id,
            "functionArn": r.function_arn,
            "condition": r.condition.as_str(),
            "approximateInvokeCount": r.attempts,
        },
        "requestPayload": json_or_text(r.request),
        "responseContext": response,
        "responsePayload": json_or_text(r.response),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn sqs_batches_carry_ids_attributes_and_counts() {
        let attrs = vec![
            ("type".to_string(), "order".to_string()),
            ("price".to_string(), "9.5".to_string()),
        ];
        let types = vec![("price".to_string(), "Number".to_string())];
        let m = SqsMessage {
            id: "m1",
            receipt: "r1",
            body: b"hello",
            attributes: &attrs,
            data_types: &types,
            receive_count: 2,
            sent_ms: 5,
        };
        let e = sqs_event("eu-west-1", "orders", &[m], 9);
        let r = &e["Records"][0];
        assert_eq!(r["messageId"], "m1");
        assert_eq!(r["body"], "hello");
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(r["messageAttributes"]["type"]["stringValue"], "order");
        assert_eq!(r["messageAttributes"]["price"]["dataType"], "Number");
        assert_eq!(r["messageAttributes"]["price"]["stringValue"], "9.5");
        assert_eq!(
            r["eventSourceARN"],
            "arn:aws:sqs:eu-west-1:000000000000:orders"
        );
    }

    #[test]
    fn partial_batch_responses_name_the_failed_items() {
        let r = br#"{"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "c"}]}"#;
        assert_eq!(batch_item_failures(r), Some(vec!["a".into(), "c".into()]));
        assert_eq!(
            batch_item_failures(br#"{"batchItemFailures": []}"#),
            Some(vec![])
        );
        assert_eq!(batch_item_failures(b"null"), None);
        assert_eq!(batch_item_failures(b"not json"), None);
    }

    #[test]
    fn sns_and_scheduled_events_have_the_aws_fields() {
        let attrs = vec![
            ("type".to_string(), "order".to_string()),
            ("price".to_string(), "9.5".to_string()),
        ];
        let types = vec![("price".to_string(), "Number".to_string())];
        let e = sns_event(
            "us-east-1",
            &SnsMessage {
                topic: "shop",
                subscription: "s",
                id: "id1",
                subject: None,
                message: b"{\"a\":1}",
                attributes: &attrs,
                data_types: &types,
                published_ms: 0,
            },
        );
        let sns = &e["Records"][0]["Sns"];
        assert_eq!(sns["Message"], "{\"a\":1}");
        assert_eq!(sns["TopicArn"], "arn:aws:sns:us-east-1:000000000000:shop");
        assert_eq!(sns["MessageAttributes"]["type"]["Value"], "order");
        assert_eq!(sns["MessageAttributes"]["price"]["Type"], "Number");
        let s = scheduled_event("us-east-1", "nightly", "i", 60_000);
        assert_eq!(s["detail-type"], "Scheduled Event");
        assert_eq!(s["time"], "1970-01-01T00:01:00Z");
    }

    #[test]
    fn destination_records_embed_json_payloads() {
        let r = destination_record(&DestinationRecord {
            request_id: "x",
            function_arn: "arn",
            condition: Condition::RetriesExhausted,
            attempts: 3,
            now_ms: 0,
            request: b"{\"n\":1}",
            response: b"boom",
            function_error: Some("Unhandled"),
        });
        assert_eq!(r["requestPayload"]["n"], 1);
        assert_eq!(r["responsePayload"], "boom");
        assert_eq!(r["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(r["responseContext"]["functionError"], "Unhandled");
    }
}
