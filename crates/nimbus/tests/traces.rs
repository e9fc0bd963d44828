//! OpenTelemetry traces end to end: the real `nimbus` binary exports over OTLP/HTTP to a
//! receiver this test runs (decoding with the OpenTelemetry protocol's own types), and the
//! test checks one trace per invocation, the cold-start breakdown, and W3C trace context
//! continued from HTTP requests, async invocations and CloudEvents.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

mod common;

use common::otlp::receiver;
use common::{Server, app_with, ok, poll};

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The children of `root`, by name, in start order.
fn children(spans: &[Span], root: &Span) -> Vec<String> {
    let mut c: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == root.span_id && s.trace_id == root.trace_id)
        .collect();
    c.sort_by_key(|s| s.start_time_unix_nano);
    for s in &c {
        assert!(
            s.start_time_unix_nano >= root.start_time_unix_nano,
            "{}",
            s.name
        );
        assert!(
            s.end_time_unix_nano <= root.end_time_unix_nano,
            "{}",
            s.name
        );
    }
    c.iter().map(|s| s.name.clone()).collect()
}

/// A caller's trace context: a fresh trace id and parent span id.
fn caller(n: u8) -> (Vec<u8>, Vec<u8>, String) {
    let trace: Vec<u8> = (0..16).map(|i| i * 7 + n).collect();
    let span: Vec<u8> = (0..8).map(|i| i * 3 + n + 1).collect();
    let header = format!("00-{}-{}-01", hex::encode(&trace), hex::encode(&span));
    (trace, span, header)
}

/// POSTs `body` to `path` with the admin key and `headers`; returns the status and body.
async fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .bearer_auth(&server.key)
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits for the root span of the invocation in trace `trace`.
async fn root_in(spans: &Arc<Mutex<Vec<Span>>>, trace: &[u8], name: &str) -> (Span, Vec<Span>) {
    poll(async || {
        let all = spans.lock().unwrap().clone();
        let root = all
            .iter()
            .find(|s| s.trace_id == trace && s.name == name)?
            .clone();
        // Children are exported in the same batch as the root or before it.
        Some((root, all))
    })
    .await
}

#[tokio::test]
async fn invocations_are_traced_with_their_cold_start_and_callers_context() {
    let (otlp, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &["env", "OTEL_BSP_SCHEDULE_DELAY=100"],
        &dir.path().join("data"),
        &["--otlp-endpoint", &otlp],
    );
    let app = app_with(
        dir.path(),
        "app = \"traced\"\n\
         [functions.hello]\nruntime = \"wasm\"\nsource = \"hello.wasm\"\ntriggers = [{ http = \"GET /hello\" }]\n\
         [functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n\
         [functions.py]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.handler\"\n\
         [[cloudevents]]\ntype = \"com.example.traced\"\ntarget = { function = \"echo\" }\n",
        &[
            "examples/hello-http/hello.wasm",
            "examples/event-echo/echo.wasm",
        ],
    );
    std::fs::create_dir_all(app.join("py")).unwrap();
    std::fs::write(
        app.join("py/app.py"),
        "import os\n\ndef handler(event, context):\n    return {\"xray\": os.environ.get(\"_X_AMZN_TRACE_ID\")}\n",
    )
    .unwrap();
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let http = reqwest::Client::new();

    // HTTP requests with a traceparent. Deploy loaded the component, so both are warm.
    let (trace, parent, header) = caller(1);
    let get_hello = async |server: &Server, header: &str| {
        let r = http
            .get(format!("{}/hello", server.url))
            .header("traceparent", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    get_hello(&server, &header).await;
    get_hello(&server, &header).await;
    let all = poll(async || {
        let all = spans.lock().unwrap().clone();
        let n = all
            .iter()
            .filter(|s| s.trace_id == trace && s.name == "invoke hello")
            .count();
        (n == 2).then_some(all)
    })
    .await;
    for root in all
        .iter()
        .filter(|s| s.trace_id == trace && s.name == "invoke hello")
    {
        assert_eq!(root.parent_span_id, parent, "continues the caller's span");
        assert_eq!(
            attr(root, "faas.trigger"),
            Some(&Value::StringValue("http".into()))
        );
        assert_eq!(attr(root, "faas.coldstart"), Some(&Value::BoolValue(false)));
        assert_eq!(children(&all, root), ["queue_wait", "instantiate", "run"]);
    }

    // A Python cold start: sandbox start and runtime init are their own spans.
    let (trace, parent, header) = caller(2);
    let traced = [("traceparent", header.as_str())];
    let (status, body) = post(&server, "/v1/functions/py/invoke", &traced, "{}").await;
    assert_eq!(status, 200);
    let (root, all) = root_in(&spans, &trace, "invoke py").await;
    assert_eq!(root.parent_span_id, parent);
    assert_eq!(attr(&root, "faas.coldstart"), Some(&Value::BoolValue(true)));
    assert_eq!(
        children(&all, &root),
        ["queue_wait", "placement", "sandbox_start", "init", "run"]
    );
    // The handler sees its invocation's span as X-Ray's `_X_AMZN_TRACE_ID`, as on Lambda.
    let root_id = hex::encode(&trace);
    let xray = format!(
        "Root=1-{}-{};Parent={};Sampled=1",
        &root_id[..8],
        &root_id[8..],
        hex::encode(&root.span_id)
    );
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["xray"], xray.as_str());

    // An async invocation continues the trace it was accepted under, across the log.
    let (trace, parent, header) = caller(3);
    let traced = [("traceparent", header.as_str())];
    let path = "/v1/functions/echo/invoke?mode=async";
    assert_eq!(post(&server, path, &traced, "{}").await.0, 202);
    let (root, all) = root_in(&spans, &trace, "invoke echo").await;
    assert_eq!(root.parent_span_id, parent);
    assert_eq!(
        attr(&root, "faas.trigger"),
        Some(&Value::StringValue("pubsub".into()))
    );
    assert_eq!(children(&all, &root)[0], "queue_wait");

    // A CloudEvent's traceparent extension (binary mode: the ce-traceparent header).
    let (trace, parent, header) = caller(4);
    let binary_mode = [
        ("ce-specversion", "1.0"),
        ("ce-id", "traced-1"),
        ("ce-source", "/tests"),
        ("ce-type", "com.example.traced"),
        ("ce-traceparent", header.as_str()),
        ("content-type", "application/json"),
    ];
    assert_eq!(post(&server, "/v1/events", &binary_mode, "{}").await.0, 202);
    let (root, _) = root_in(&spans, &trace, "invoke echo").await;
    assert_eq!(root.parent_span_id, parent);
    assert_eq!(
        attr(&root, "nimbus.trigger"),
        Some(&Value::StringValue("event".into()))
    );

    // Without a caller's context, each invocation starts its own trace.
    let before = spans.lock().unwrap().len();
    ok(&server.cli(&["invoke", "echo"]));
    let root = poll(async || {
        let all = spans.lock().unwrap().clone();
        all[before..]
            .iter()
            .find(|s| s.name == "invoke echo" && s.parent_span_id.is_empty())
            .cloned()
    })
    .await;
    assert_eq!(root.trace_id.len(), 16);
    server.stop();

    // After a restart components load lazily: the first request is a cold start whose
    // trace shows the load.
    let server = Server::start_with(
        &["env", "OTEL_BSP_SCHEDULE_DELAY=100"],
        &dir.path().join("data"),
        &["--otlp-endpoint", &otlp],
    );
    let (trace, parent, header) = caller(5);
    get_hello(&server, &header).await;
    let (root, all) = root_in(&spans, &trace, "invoke hello").await;
    assert_eq!(root.parent_span_id, parent);
    assert_eq!(attr(&root, "faas.coldstart"), Some(&Value::BoolValue(true)));
    assert_eq!(
        children(&all, &root),
        ["queue_wait", "load", "instantiate", "run"]
    );
    server.stop();
}
