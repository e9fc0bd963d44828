//! API Gateway HTTP API (payload format 2.0): the event a Lambda handler receives for an HTTP
//! request, and the mapping of its result back to an HTTP response, as on AWS.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use crate::RawRequest;

/// An HTTP request as the gateway saw it, after routing.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The request as received.
    pub request: RawRequest<'a>,
    /// The matched route, e.g. `GET /items/{id}`.
    pub route_key: &'a str,
    /// Captured path parameters.
    pub path_parameters: &'a [(String, String)],
    /// The invocation id, used as the request id.
    pub request_id: &'a str,
    /// Client address.
    pub source_ip: &'a str,
    /// Request time, unix milliseconds.
    pub time_ms: i64,
    /// What the route's authorizer said (`requestContext.authorizer`: `{"jwt": {"claims",
    /// "scopes"}}` or `{"lambda": context}`).
    pub authorizer: Option<&'a Value>,
}

fn is_text(headers: &HeaderMap, body: &[u8]) -> bool {
    let ctype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let binary = [
        "application/octet-stream",
        "image/",
        "audio/",
        "video/",
        "application/zip",
    ]
    .iter()
    .any(|p| ctype.starts_with(p));
    !binary && std::str::from_utf8(body).is_ok()
}

fn clf_time(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// Builds the payload-format-2.0 event for `req`.
pub fn event(routed: &HttpRequest<'_>) -> Value {
    let req = &routed.request;
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in req.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| c.trim().to_string()));
            continue;
        }
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for pair in req.raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        query
            .entry(decode(k))
            .and_modify(|e| {
                e.push(',');
                e.push_str(&decode(v));
            })
            .or_insert_with(|| decode(v));
    }
    let text = is_text(req.headers, req.body);
    let mut event = json!({
        "version": "2.0",
        "routeKey": routed.route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": crate::lambda::ACCOUNT_ID,
            "apiId": "nimbus",
            "domainName": headers.get("host").cloned().unwrap_or_default(),
            "domainPrefix": headers.get("host").and_then(|h| h.split('.').next()).unwrap_or_default(),
            "http": {
                "method": req.method,
                "path": percent_decode_str(req.raw_path).decode_utf8_lossy(),
                "protocol": "HTTP/1.1",
                "sourceIp": routed.source_ip,
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": routed.request_id,
            "routeKey": routed.route_key,
            "stage": "$default",
            "time": clf_time(routed.time_ms),
            "timeEpoch": routed.time_ms,
        },
        "isBase64Encoded": !text,
    });
    if let Some(a) = routed.authorizer {
        event["requestContext"]["authorizer"] = a.clone();
    }
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !routed.path_parameters.is_empty() {
        let params: Map<String, Value> = routed
            .path_parameters
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        event["pathParameters"] = Value::Object(params);
    }
    if !req.body.is_empty() {
        event["body"] = if text {
            Value::String(String::from_utf8_lossy(req.body).into_owned())
        } else {
            Value::String(BASE64.encode(req.body))
        };
    }
    event
}

/// An HTTP response mapped from a handler's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers, including one `set-cookie` per cookie.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why a handler's result cannot be an HTTP response (API Gateway answers 502 then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Lambda proxy response: {0}")]
pub struct BadResponse(pub String);

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), BadResponse> {
    Ok((
        HeaderName::try_from(name).map_err(|_| BadResponse(format!("bad header name `{name}`")))?,
        HeaderValue::from_str(value)
            .map_err(|_| BadResponse(format!("bad value for header `{name}`")))?,
    ))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Maps a handler's JSON result to an HTTP response. An object with `statusCode` is a proxy
/// response (`statusCode`, `headers`, `cookies`, `body`, `isBase64Encoded`); any other JSON
/// value becomes a 200 `application/json` response whose body is the value (a string value is
/// sent as its text).
pub fn response(result: &[u8]) -> Result<HttpResponse, BadResponse> {
    let value: Value = serde_json::from_slice(result)
        .map_err(|e| BadResponse(format!("the handler's result is not JSON: {e}")))?;
    let mut headers = HeaderMap::new();
    let Some(status) = value.get("statusCode") else {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = match value {
            Value::String(s) => s.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        return Ok(HttpResponse {
            status: StatusCode::OK,
            headers,
            body,
        });
    };
    let status = status
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| BadResponse(format!("statusCode {status} is not an HTTP status")))?;
    if let Some(h) = value.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            let v =
                scalar(v).ok_or_else(|| BadResponse(format!("header `{k}` is not a string")))?;
            let (k, v) = header(k, &v)?;
            headers.insert(k, v);
        }
    }
    if let Some(cookies) = value.get("cookies").and_then(Value::as_array) {
        for c in cookies {
            let c = c
                .as_str()
                .ok_or_else(|| BadResponse("cookies must be strings".into()))?;
            let (k, v) = header("set-cookie", c)?;
            headers.append(k, v);
        }
    }
    let body = match value.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            if value.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                BASE64
                    .decode(s)
                    .map_err(|e| BadResponse(format!("body is not base64: {e}")))?
            } else {
                s.clone().into_bytes()
            }
        }
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_carries_the_request_in_format_2() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("api.local"));
        headers.insert("user-agent", HeaderValue::from_static("curl/8"));
        headers.insert("cookie", HeaderValue::from_static("a=1; b=2"));
        headers.append("x-multi", HeaderValue::from_static("1"));
        headers.append("x-multi", HeaderValue::from_static("2"));
        let params = [("id".to_string(), "42".to_string())];
        let e = event(&HttpRequest {
            request: RawRequest {
                method: "POST",
                raw_path: "/items/42",
                raw_query: "q=a%20b&q=c&flag",
                headers: &headers,
                body: b"{\"x\":1}",
            },
            route_key: "POST /items/{id}",
            path_parameters: &params,
            request_id: "rid",
            source_ip: "127.0.0.1",
            time_ms: 1_763_900_000_123,
            authorizer: Some(&json!({"jwt": {"claims": {"sub": "u1"}, "scopes": ["a"]}})),
        });
        assert_eq!(e["version"], "2.0");
        assert_eq!(
            e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"],
            "u1"
        );
        assert_eq!(e["routeKey"], "POST /items/{id}");
        assert_eq!(e["rawPath"], "/items/42");
        assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(e["headers"]["x-multi"], "1,2");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(
            e["queryStringParameters"],
            json!({"q": "a b,c", "flag": ""})
        );
        assert_eq!(e["pathParameters"], json!({"id": "42"}));
        assert_eq!(e["body"], "{\"x\":1}");
        assert_eq!(e["isBase64Encoded"], false);
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["requestContext"]["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(e["requestContext"]["http"]["userAgent"], "curl/8");
        assert_eq!(e["requestContext"]["requestId"], "rid");
        assert_eq!(e["requestContext"]["timeEpoch"], 1_763_900_000_123_i64);
        assert_eq!(e["requestContext"]["time"], "23/Nov/2025:12:13:20 +0000");
    }

    #[test]
    fn binary_bodies_are_base64() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        let e = event(&HttpRequest {
            request: RawRequest {
                method: "PUT",
                raw_path: "/b",
                raw_query: "",
                headers: &headers,
                body: &[0, 159, 146, 150],
            },
            route_key: "PUT /b",
            path_parameters: &[],
            request_id: "r",
            source_ip: "127.0.0.1",
            time_ms: 0,
            authorizer: None,
        });
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "AJ+Slg==");
        assert!(e.get("queryStringParameters").is_none());
    }

    #[test]
    fn proxy_responses_map_status_headers_cookies_and_body() {
        let r = response(
            br#"{"statusCode": 201, "headers": {"x-a": "1", "x-n": 2},
                "cookies": ["s=1; Path=/", "t=2"], "body": "created"}"#,
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.headers["x-a"], "1");
        assert_eq!(r.headers["x-n"], "2");
        let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["s=1; Path=/", "t=2"]);
        assert_eq!(r.body, b"created");
        let b = response(br#"{"statusCode": 200, "body": "AJ+Slg==", "isBase64Encoded": true}"#)
            .unwrap();
        assert_eq!(b.body, [0, 159, 146, 150]);
    }

    #[test]
    fn plain_values_become_json_200s() {
        let r = response(br#"{"message": "hi"}"#).unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.body, br#"{"message":"hi"}"#);
        assert_eq!(response(br#""hello""#).unwrap().body, b"hello");
        assert_eq!(response(b"[1,2]").unwrap().body, b"[1,2]");
    }

    #[test]
    fn malformed_results_are_errors() {
        assert!(response(b"not json").is_err());
        assert!(response(br#"{"statusCode": "ok"}"#).is_err());
        assert!(response(br#"{"statusCode": 99}"#).is_err());
        assert!(response(br#"{"statusCode": 200, "headers": {"bad name": "x"}}"#).is_err());
        assert!(
            response(br#"{"statusCode": 200, "body": "%%", "isBase64Encoded": true}"#).is_err()
        );
    }
}
