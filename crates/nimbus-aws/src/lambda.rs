//! The Lambda service's wire shapes: ARNs, function error bodies and the JSON error responses
//! AWS SDKs parse (`x-amzn-ErrorType` plus a `message`).

use serde_json::{Value, json};

/// The account id in every ARN Nimbus hands out (one account per node).
pub const ACCOUNT_ID: &str = "000000000000";

/// Header naming an AWS error's type; botocore reads it before the body.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";

/// The ARN of `function` in `region`.
pub fn function_arn(region: &str, function: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function}")
}

/// Lambda's exceptions whose model spells the message `Message` (the rest say `message`).
const CAPITALISED_MESSAGE: &[&str] = &[
    "ResourceNotFoundException",
    "ServiceException",
    "ResourceInUseException",
    "NoPublishedVersionException",
    "ServiceQuotaExceededException",
];

/// The body of a Lambda error response as the service model shapes it: `Type` (`User`, or
/// `Service` for the service's own faults) and `message` — or `Message` for the exceptions whose
/// model spells it so. The exception's name travels in `x-amzn-ErrorType`.
pub fn error_body(aws_type: &str, message: &str) -> Value {
    let kind = if aws_type == "ServiceException" {
        "Service"
    } else {
        "User"
    };
    let key = if CAPITALISED_MESSAGE.contains(&aws_type) {
        "Message"
    } else {
        "message"
    };
    json!({ "Type": kind, key: message })
}

/// `TooManyRequestsException`'s `Reason`, from the Lambda model's enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// The function's own concurrency limit (`max_concurrency`: Lambda's reserved concurrency).
    ReservedFunctionConcurrentInvocationLimitExceeded,
    /// The account-wide (for Nimbus: tenant-wide) concurrency limit.
    ConcurrentInvocationLimitExceeded,
    /// The caller's rate or quota.
    CallerRateLimitExceeded,
}

impl ThrottleReason {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReservedFunctionConcurrentInvocationLimitExceeded => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
            Self::ConcurrentInvocationLimitExceeded => "ConcurrentInvocationLimitExceeded",
            Self::CallerRateLimitExceeded => "CallerRateLimitExceeded",
        }
    }
}

/// A `TooManyRequestsException` body: `Reason` and `retryAfterSeconds` beside `Type` and
/// `message` (`Retry-After` carries the seconds too).
pub fn throttle_body(reason: ThrottleReason, message: &str, retry_after_s: u64) -> Value {
    json!({
        "Type": "User",
        "message": message,
        "Reason": reason.as_str(),
        "retryAfterSeconds": retry_after_s.to_string(),
    })
}

/// A function error as Lambda reports it to callers and runtimes:
/// `{"errorMessage": ..., "errorType": ...}`.
pub fn function_error(error_type: &str, message: &str) -> Value {
    json!({ "errorMessage": message, "errorType": error_type })
}

/// The most base64 bytes of client context an Invoke may carry (`X-Amz-Client-Context`).
pub const CLIENT_CONTEXT_MAX_BYTES: usize = 3583;

/// Why an Invoke's client context was refused (both are `InvalidRequestContentException`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientContextError {
    /// Longer than [`CLIENT_CONTEXT_MAX_BYTES`].
    #[error(
        "Client context must be at most {CLIENT_CONTEXT_MAX_BYTES} bytes of base64-encoded data"
    )]
    TooLarge,
    /// Not base64, or not a JSON object once decoded.
    #[error("Client context must be a valid Base64-encoded JSON object.")]
    Invalid,
}

/// Decodes an Invoke's `X-Amz-Client-Context` (base64 of a JSON object) into the JSON text the
/// Runtime API hands runtimes as `Lambda-Runtime-Client-Context`.
pub fn decode_client_context(b64: &str) -> Result<String, ClientContextError> {
    use base64::Engine as _;
    if b64.len() > CLIENT_CONTEXT_MAX_BYTES {
        return Err(ClientContextError::TooLarge);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ClientContextError::Invalid)?;
    match serde_json::from_slice::<Value>(&raw) {
        // Re-serialised: one line, no control characters, safe as a header value.
        Ok(v @ Value::Object(_)) => Ok(v.to_string()),
        _ => Err(ClientContextError::Invalid),
    }
}

/// What Lambda's `FunctionConfiguration` reports of a deployed function.
#[derive(Debug, Clone)]
pub struct FunctionFacts<'a> {
    /// The function's name.
    pub name: &'a str,
    /// Nimbus's runtime (`wasm`, `python`, `node`, `provided`).
    pub runtime: &'a str,
    /// Process runtimes' handler.
    pub handler: Option<&'a str>,
    /// Memory limit, MiB.
    pub memory_mb: u32,
    /// Timeout, ms.
    pub timeout_ms: u64,
    /// When the deployed code was first deployed, unix ms.
    pub modified_ms: i64,
    /// The deployed code's version id (Lambda's `RevisionId`).
    pub revision: &'a str,
    /// The app the function belongs to (its `Description`).
    pub app: &'a str,
}

/// Lambda's `LastModified` spelling: `2019-10-25T19:50:00.000+0000`.
pub fn last_modified(unix_ms: i64) -> String {
    let utc = crate::events::timestamp(unix_ms);
    format!("{}+0000", utc.trim_end_matches('Z'))
}

/// The Lambda API's `FunctionConfiguration` of `f` at `version` (`$LATEST` or a number).
pub fn function_configuration(region: &str, f: &FunctionFacts<'_>, version: &str) -> Value {
    let arn = function_arn(region, f.name);
    let mut c = json!({
        "FunctionName": f.name,
        "FunctionArn": if version == "$LATEST" { arn.clone() } else { format!("{arn}:{version}") },
        "Runtime": f.runtime,
        "Role": format!("arn:aws:iam::{ACCOUNT_ID}:role/nimbus-function"),
        "Description": format!("Nimbus app {}", f.app),
        "Timeout": f.timeout_ms.div_ceil(1000),
        "MemorySize": f.memory_mb,
        "LastModified": last_modified(f.modified_ms),
        "Version": version,
        "RevisionId": f.revision,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": { "Size": 512 },
        "TracingConfig": { "Mode": "PassThrough" },
        "LoggingConfig": { "LogFormat": "Text", "LogGroup": format!("/aws/lambda/{}", f.name) },
    });
    if let Some(h) = f.handler {
        c["Handler"] = json!(h);
    }
    c
}

/// Lambda's message for an invocation cut at its timeout.
pub fn timeout_message(timeout_ms: u64) -> String {
    format!(
        "Task timed out after {:.2} seconds",
        timeout_ms as f64 / 1000.0
    )
}

/// Splits a function name as Lambda accepts it — a name, `name:qualifier`, a partial ARN
/// (`ACCOUNT:function:NAME[:QUALIFIER]`) or a full ARN
/// (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`) — into name and qualifier.
pub fn parse_function_name(s: &str) -> (&str, Option<&str>) {
    let rest = match s.strip_prefix("arn:aws:lambda:") {
        Some(rest) => rest.splitn(3, ':').nth(2).unwrap_or(""),
        None => s,
    };
    // `ACCOUNT:function:...` (the account is 12 digits).
    let rest = match rest.split_once(':') {
        Some((account, after))
            if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            after
        }
        _ => rest,
    };
    let rest = rest.strip_prefix("function:").unwrap_or(rest);
    match rest.split_once(':') {
        Some((name, q)) => (name, Some(q)),
        None => (rest, None),
    }
}

/// The X-Ray trace header (`Lambda-Runtime-Trace-Id`, `_X_AMZN_TRACE_ID`) for a W3C trace
/// context: X-Ray's root id is the same 128 bits, its first 32 as the "epoch" part
/// (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`).
pub fn xray_trace_header(trace_id: &[u8; 16], parent_id: &[u8; 8], sampled: bool) -> String {
    let root = hex::encode(trace_id);
    format!(
        "Root=1-{}-{};Parent={};Sampled={}",
        &root[..8],
        &root[8..],
        hex::encode(parent_id),
        u8::from(sampled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_w3c_context_maps_to_the_xray_header() {
        let trace = hex::decode("5759e988bd862e3fe1be46a994272793").unwrap();
        let parent = hex::decode("53995c3f42cd8ad8").unwrap();
        assert_eq!(
            xray_trace_header(
                &trace.try_into().unwrap(),
                &parent.try_into().unwrap(),
                true
            ),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
    }

    #[test]
    fn function_names_arns_and_qualifiers() {
        assert_eq!(parse_function_name("hello"), ("hello", None));
        assert_eq!(
            parse_function_name("hello:$LATEST"),
            ("hello", Some("$LATEST"))
        );
        assert_eq!(
            parse_function_name("arn:aws:lambda:us-east-1:000000000000:function:hello"),
            ("hello", None)
        );
        assert_eq!(
            parse_function_name("arn:aws:lambda:us-east-1:000000000000:function:hello:abc"),
            ("hello", Some("abc"))
        );
        assert_eq!(
            parse_function_name("123456789012:function:hello:live"),
            ("hello", Some("live"))
        );
        assert_eq!(
            parse_function_name("123456789012:function:hello"),
            ("hello", None)
        );
        assert_eq!(
            parse_function_name("arn:aws:lambda:us-east-1:000000000000:function:hello:7"),
            ("hello", Some("7"))
        );
        assert_eq!(
            function_arn("eu-west-1", "f"),
            "arn:aws:lambda:eu-west-1:000000000000:function:f"
        );
    }

    #[test]
    fn client_contexts_decode_to_one_line_of_json() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let doc = "{\"custom\": {\"tenant\": \"acme\"},\n \"env\": {}}";
        assert_eq!(
            decode_client_context(&b64(doc)).unwrap(),
            r#"{"custom":{"tenant":"acme"},"env":{}}"#
        );
        assert_eq!(decode_client_context(&b64("{}")).unwrap(), "{}");
        for bad in ["not base64!", &b64("[1]"), &b64("\"s\""), &b64("{oops")] {
            assert_eq!(
                decode_client_context(bad),
                Err(ClientContextError::Invalid),
                "{bad}"
            );
        }
        let big = b64(&format!(
            "{{\"custom\":{{\"k\":\"{}\"}}}}",
            "x".repeat(2700)
        ));
        assert!(big.len() > CLIENT_CONTEXT_MAX_BYTES);
        assert_eq!(
            decode_client_context(&big),
            Err(ClientContextError::TooLarge)
        );
    }

    #[test]
    fn configurations_use_lambdas_field_spellings() {
        let f = FunctionFacts {
            name: "echo",
            runtime: "python",
            handler: Some("app.handler"),
            memory_mb: 256,
            timeout_ms: 2500,
            modified_ms: 1_572_033_000_123,
            revision: "abc",
            app: "demo",
        };
        let c = function_configuration("us-east-1", &f, "$LATEST");
        assert_eq!(
            c["FunctionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:echo"
        );
        assert_eq!(c["Timeout"], 3, "whole seconds, rounded up");
        assert_eq!(c["LastModified"], "2019-10-25T19:50:00.123+0000");
        assert_eq!(c["Handler"], "app.handler");
        let v = function_configuration("us-east-1", &f, "2");
        assert!(v["FunctionArn"].as_str().unwrap().ends_with(":echo:2"));
    }

    #[test]
    fn messages_match_lambda() {
        assert_eq!(timeout_message(3000), "Task timed out after 3.00 seconds");
        assert_eq!(function_error("E", "m")["errorType"], "E");
        assert_eq!(
            error_body("InvalidParameterValueException", "m"),
            json!({"Type": "User", "message": "m"})
        );
        assert_eq!(
            error_body("ResourceNotFoundException", "m"),
            json!({"Type": "User", "Message": "m"})
        );
        assert_eq!(error_body("ServiceException", "m")["Type"], "Service");
    }
}
