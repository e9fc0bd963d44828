//! Answers for AWS calls Nimbus does not serve, in the caller's own protocol.
//!
//! A client pointed at Nimbus with `endpoint_url` (an SQS, SNS, S3 or Step Functions client, or a
//! Lambda call beyond the ones Nimbus implements) must hear *which* operation is unsupported in
//! a shape its SDK parses — not a bare 404 that boto3 shows as an empty message. The protocol is
//! read off the request the way the SDKs build it:
//! - AWS JSON 1.0/1.1 (`X-Amz-Target: Prefix.Operation`: SQS, Step Functions, DynamoDB, ...):
//!   400 `UnknownOperationException`, `{"__type", "message"}`;
//! - AWS Query (form body `Action=...`: SNS, STS, SQS before JSON): 400 `InvalidAction` in an
//!   `<ErrorResponse>`;
//! - REST-JSON Lambda (a URI of the Lambda model, [`crate::lambda_ops`]): 501 `NotImplemented`
//!   naming the operation, Lambda's `{"Type", "message"}`; a Lambda-signed call that is no
//!   operation of the model (a method its path does not take): 404 `UnknownOperationException`;
//! - REST-XML S3 (SigV4 scope `s3`): 501 `NotImplemented` in an `<Error>`, as S3 answers
//!   features it lacks.

use http::HeaderMap;

/// The wire protocol of an AWS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.0 / 1.1, operation in `X-Amz-Target`.
    Json,
    /// AWS Query, operation in the form field `Action`.
    Query,
    /// REST-JSON (Lambda).
    RestJson,
    /// A Lambda-signed call that is no operation of the Lambda model.
    RestJsonUnknown,
    /// REST-XML (S3).
    RestXml,
}

/// An AWS call Nimbus does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedCall {
    /// How to answer.
    pub protocol: Protocol,
    /// The service, as the signature's scope (or the target's prefix) names it.
    pub service: String,
    /// The operation, as the service model names it (or `METHOD path` when unknown).
    pub operation: String,
}

/// The answer: status, content type, extra `x-amzn-ErrorType` and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `x-amzn-ErrorType` (JSON protocols).
    pub error_type: Option<&'static str>,
    /// The body.
    pub body: String,
}

/// The SigV4 service a request is signed for (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`,
/// in the `Authorization` header or a presigned URL's `X-Amz-Credential`).
pub fn signed_service(headers: &HeaderMap, query: &str) -> Option<String> {
    let from_header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|a| a.starts_with("AWS4-HMAC-SHA256"))
        .and_then(|a| a.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or("").to_string());
    let credential = from_header.or_else(|| {
        form_value(query, "X-Amz-Credential").map(|c| c.replace("%2F", "/").replace("%2f", "/"))
    })?;
    let mut parts = credential.split('/');
    let service = parts.nth(3)?;
    (!service.is_empty()).then(|| service.to_string())
}

/// The value of `key` in a form-encoded string (`a=1&b=2`), percent- and plus-decoded.
pub fn form_value(form: &str, key: &str) -> Option<String> {
    form.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The Lambda operation a method and path name, if the path is one of the Lambda model's.
pub fn lambda_operation(method: &str, path: &str, query: &str) -> Option<&'static str> {
    let path = path.strip_suffix('/').unwrap_or(path);
    crate::lambda_ops::OPERATIONS
        .iter()
        .find(|(m, template, _)| {
            let (template, wanted) = template.split_once('?').unwrap_or((template, ""));
            *m == method
                && template_matches(template, path)
                && (wanted.is_empty() || query.split('&').any(|kv| kv == wanted))
        })
        .map(|(_, _, op)| *op)
}

fn template_matches(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

/// Classifies a request no Nimbus endpoint or route took. `None`: not an AWS call.
/// `body` is (a prefix of) the request body, read for the Query protocol's `Action`.
pub fn classify(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<UnsupportedCall> {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, operation) = target.rsplit_once('.').unwrap_or(("", target));
        let service = signed_service(headers, query).unwrap_or_else(|| prefix.to_string());
        return Some(UnsupportedCall {
            protocol: Protocol::Json,
            service,
            operation: operation.to_string(),
        });
    }
    let signed = signed_service(headers, query);
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let action = if form {
        form_value(&String::from_utf8_lossy(body), "Action")
    } else {
        None
    }
    .or_else(|| form_value(query, "Action"));
    if let Some(action) = action.filter(|_| signed.is_some() || path == "/") {
        return Some(UnsupportedCall {
            protocol: Protocol::Query,
            service: signed.unwrap_or_default(),
            operation: action,
        });
    }
    if let Some(op) = lambda_operation(method, path, query) {
        return Some(UnsupportedCall {
            protocol: Protocol::RestJson,
            service: "lambda".into(),
            operation: op.to_string(),
        });
    }
    match signed.as_deref() {
        Some("lambda") => Some(UnsupportedCall {
            protocol: Protocol::RestJsonUnknown,
            service: "lambda".into(),
            operation: format!("{method} {path}"),
        }),
        Some("s3") => Some(UnsupportedCall {
            protocol: Protocol::RestXml,
            service: "s3".into(),
            operation: s3_operation(method, path, query),
        }),
        _ => None,
    }
}

/// A readable name for an S3 call: the subresource asked for, or the plain verb on a bucket or
/// object (`ListBuckets`, `PutObject`, `GetBucketNotificationConfiguration`, ...).
fn s3_operation(method: &str, path: &str, query: &str) -> String {
    let depth = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .count();
    let target = match depth {
        0 => "Buckets",
        1 => "Bucket",
        _ => "Object",
    };
    let verb = match method {
        "GET" if depth == 0 => "List",
        "GET" if depth == 1 => "ListObjectsIn",
        "GET" => "Get",
        "PUT" => "Put",
        "DELETE" => "Delete",
        "HEAD" => "Head",
        "POST" => "Post",
        other => other,
    };
    match query
        .split('&')
        .map(|kv| kv.split('=').next().unwrap_or(""))
        .find(|k| {
            !k.is_empty() && !k.starts_with("X-Amz-") && !k.starts_with("x-id") && *k != "prefix"
        }) {
        Some(sub) => format!("{method} {target} ?{sub}"),
        None => format!("{verb}{target}"),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl UnsupportedCall {
    /// The message every shape carries.
    pub fn message(&self) -> String {
        let service = if self.service.is_empty() {
            String::new()
        } else {
            format!("{} ", self.service)
        };
        format!(
            "Nimbus does not support the {service}operation {}; see the Nimbus README for the \
             AWS APIs it serves",
            self.operation
        )
    }

    /// The answer in the call's protocol; `request_id` goes where the protocol carries one.
    pub fn answer(&self, request_id: &str) -> ErrorAnswer {
        let message = self.message();
        match self.protocol {
            Protocol::Json => ErrorAnswer {
                status: 400,
                content_type: "application/x-amz-json-1.0",
                error_type: Some("UnknownOperationException"),
                body: serde_json::json!({
                    "__type": "UnknownOperationException",
                    "message": message,
                })
                .to_string(),
            },
            Protocol::Query => ErrorAnswer {
                status: 400,
                content_type: "text/xml",
                error_type: None,
                body: format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>\
                     <Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                    xml_escape(&message),
                    xml_escape(request_id)
                ),
            },
            Protocol::RestJson => ErrorAnswer {
                status: 501,
                content_type: "application/json",
                error_type: Some("NotImplemented"),
                body: serde_json::json!({ "Type": "User", "message": message }).to_string(),
            },
            Protocol::RestJsonUnknown => ErrorAnswer {
                status: 404,
                content_type: "application/json",
                error_type: Some("UnknownOperationException"),
                body: serde_json::json!({
                    "Type": "User",
                    "message": format!(
                        "{} is not an operation of the Lambda API",
                        self.operation
                    ),
                })
                .to_string(),
            },
            Protocol::RestXml => ErrorAnswer {
                status: 501,
                content_type: "application/xml",
                error_type: None,
                body: format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NotImplemented</Code>\
                     <Message>{}</Message><RequestId>{}</RequestId></Error>",
                    xml_escape(&message),
                    xml_escape(request_id)
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const SIGNED: &str = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{}/aws4_request, \
                          SignedHeaders=host;x-amz-date, Signature=abc";

    fn signed(service: &str) -> String {
        SIGNED.replace("{}", service)
    }

    #[test]
    fn json_protocol_calls_name_their_target() {
        let h = headers(&[
            ("x-amz-target", "AmazonSQS.SendMessage"),
            ("authorization", &signed("sqs")),
        ]);
        let call = classify("POST", "/", "", &h, b"{}").unwrap();
        assert_eq!(call.protocol, Protocol::Json);
        assert_eq!(call.service, "sqs");
        assert_eq!(call.operation, "SendMessage");
        let a = call.answer("r1");
        assert_eq!(a.status, 400);
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["__type"], "UnknownOperationException");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("sqs operation SendMessage")
        );
        let sfn = headers(&[("x-amz-target", "AWSStepFunctions.StartExecution")]);
        assert_eq!(
            classify("POST", "/", "", &sfn, b"").unwrap().service,
            "AWSStepFunctions"
        );
    }

    #[test]
    fn query_protocol_calls_name_their_action() {
        let h = headers(&[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("authorization", &signed("sns")),
        ]);
        let call = classify(
            "POST",
            "/",
            "",
            &h,
            b"Action=Publish&Version=2010-03-31&Message=hi+there",
        )
        .unwrap();
        assert_eq!(call.protocol, Protocol::Query);
        assert_eq!(call.operation, "Publish");
        let a = call.answer("r<1>");
        assert_eq!(a.status, 400);
        assert!(a.body.contains("<Code>InvalidAction</Code>"), "{}", a.body);
        assert!(a.body.contains("sns operation Publish"));
        assert!(a.body.contains("<RequestId>r&lt;1&gt;</RequestId>"));
        // A form posted to an app's route is not an AWS call.
        let plain = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(
            classify("POST", "/signup", "", &plain, b"Action=join"),
            None
        );
    }

    #[test]
    fn lambda_calls_are_named_from_the_model() {
        let h = headers(&[("authorization", &signed("lambda"))]);
        for (method, path, query, op) in [
            ("POST", "/2015-03-31/functions", "", "CreateFunction"),
            ("POST", "/2015-03-31/functions/", "", "CreateFunction"),
            (
                "PUT",
                "/2015-03-31/functions/f/code",
                "",
                "UpdateFunctionCode",
            ),
            (
                "DELETE",
                "/2015-03-31/functions/f/policy/s1",
                "",
                "RemovePermission",
            ),
            (
                "GET",
                "/2018-10-31/layers",
                "find=LayerVersion&Arn=x",
                "GetLayerVersionByArn",
            ),
            ("GET", "/2018-10-31/layers", "", "ListLayers"),
            (
                "GET",
                "/2017-03-31/tags/arn:aws:lambda:us-east-1:1:function:f",
                "",
                "ListTags",
            ),
        ] {
            let call = classify(method, path, query, &h, b"").unwrap();
            assert_eq!(call.protocol, Protocol::RestJson, "{method} {path}");
            assert_eq!(call.operation, op, "{method} {path}");
        }
        // Signed for Lambda but no operation of its model: the caller's mistake, a 4xx.
        let unknown = classify("PATCH", "/2099-01-01/x", "", &h, b"").unwrap();
        assert_eq!(unknown.operation, "PATCH /2099-01-01/x");
        assert_eq!(unknown.protocol, Protocol::RestJsonUnknown);
        let a = unknown.answer("r");
        assert_eq!(a.status, 404);
        assert_eq!(a.error_type, Some("UnknownOperationException"));
        assert!(
            a.body.contains("PATCH /2099-01-01/x is not an operation"),
            "{}",
            a.body
        );
    }

    #[test]
    fn s3_calls_get_an_s3_error_document() {
        let h = headers(&[("authorization", &signed("s3"))]);
        let call = classify("PUT", "/bucket/key.txt", "", &h, b"data").unwrap();
        assert_eq!(call.protocol, Protocol::RestXml);
        assert_eq!(call.operation, "PutObject");
        assert_eq!(
            classify("GET", "/", "", &h, b"").unwrap().operation,
            "ListBuckets"
        );
        assert_eq!(
            classify("GET", "/b", "notification=", &h, b"")
                .unwrap()
                .operation,
            "GET Bucket ?notification"
        );
        let a = call.answer("r");
        assert_eq!(a.status, 501);
        assert!(a.body.contains("<Code>NotImplemented</Code>"));
        // Presigned: the scope is in the query.
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request";
        assert_eq!(
            classify("GET", "/b/k", q, &HeaderMap::new(), b"")
                .unwrap()
                .service,
            "s3"
        );
    }

    #[test]
    fn ordinary_requests_are_not_aws_calls() {
        assert_eq!(classify("GET", "/hello", "", &HeaderMap::new(), b""), None);
        let bearer = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(classify("POST", "/", "", &bearer, b"{}"), None);
    }
}
