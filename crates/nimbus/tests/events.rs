//! End-to-end tests of the event backbone through the real `nimbus` binary: async invocation
//! with retries, destinations, dead-letter queues and the ledger; queues and queue triggers;
//! topics with filtered subscriptions (functions, queues, signed webhooks); CloudEvents ingest;
//! schedules across restarts; and a kill -9 in the middle of thousands of accepted events.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, client_python, ok, repo};
use serde_json::{Value, json};

/// An app directory: the event handlers (`src/app.py`), the echo component, and `manifest`.
fn app(dir: &Path, manifest: &str) -> PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("src")).unwrap();
    std::fs::copy(
        repo("tests/fixtures/process/events/app.py"),
        app.join("src/app.py"),
    )
    .unwrap();
    std::fs::copy(repo("examples/event-echo/echo.wasm"), app.join("echo.wasm")).unwrap();
    std::fs::write(app.join("nimbus.toml"), manifest).unwrap();
    app
}

fn py(name: &str, handler: &str, extra: &str) -> String {
    format!(
        "[functions.{name}]\nruntime = \"python\"\nsource = \"src\"\nhandler = \"app.{handler}\"\n{extra}\n"
    )
}

async fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", server.url))
        .bearer_auth(&server.key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    api(server, "POST", path, Some(body)).await
}

async fn wait_for<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    common::poll_for(what, Duration::from_secs(30), f).await
}

/// The `EVENT {...}` lines a Python handler printed, oldest first.
async fn events_of(server: &Server, function: &str) -> Vec<Value> {
    let (_, logs) = api(
        server,
        "GET",
        &format!("/v1/functions/{function}/logs?limit=1000"),
        None,
    )
    .await;
    logs.as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            e["text"]
                .as_str()
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| {
            l.strip_prefix("EVENT ")
                .map(|j| serde_json::from_str(j).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn typed_attributes_filter_as_in_the_sns_guide() {
    let tmp = tempfile::tempdir().unwrap();
    // The guide's policies, one queue each.
    let manifest = "app = \"guide\"\n[functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n[queues.pricey]\n[queues.rugby]\n[queues.office]\n[queues.absent]\n\
         [topics.tx]\nsubscriptions = [\n\
         { name = \"pricey\", queue = \"pricey\", filter = { price_usd = [{ numeric = [\">=\", 100] }] } },\n\
         { name = \"rugby\", queue = \"rugby\", filter = { customer_interests = [\"rugby\", \"tennis\"] } },\n\
         { name = \"office\", queue = \"office\", filter = { source_ip = [{ cidr = \"10.0.0.0/24\" }], \
           store = [{ anything-but = { suffix = \"_test\" } }] } },\n\
         { name = \"absent\", queue = \"absent\", filter = { coupon = [{ exists = false }] } },\n]\n";
    let dir = app(tmp.path(), manifest);
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    // SNS's typed form through the API.
    let (status, r) = post(
        &server,
        "/v1/topics/tx/messages",
        json!({"body": "api", "attributes": {
            "customer_interests": {"Type": "String.Array", "Value": "[\"soccer\", \"rugby\", \"hockey\"]"},
            "store": {"Type": "String", "Value": "example_corp"},
            "price_usd": {"Type": "Number", "Value": "210.75"},
            "source_ip": "10.0.0.42",
        }}),
    )
    .await;
    assert_eq!(status, 202, "{r}");
    // The CLI's key:Type=value; a price that is text is not a number.
    ok(&server.cli(&[
        "topic",
        "publish",
        "tx",
        "cli",
        "--attr",
        "price_usd:Number=99.5",
        "--attr",
        "customer_interests:String.Array=[\"tennis\"]",
        "--attr",
        "store=shop_test",
        "--attr",
        "source_ip=10.0.0.7",
    ]));
    ok(&server.cli(&["topic", "publish", "tx", "text", "--attr", "price_usd=500"]));
    // No attributes at all: `exists: false` does not match an empty set.
    ok(&server.cli(&["topic", "publish", "tx", "bare"]));
    let bodies = async |q: &str| -> Vec<Value> {
        drain(&server, q)
            .await
            .iter()
            .map(|m| m["body"].clone())
            .collect()
    };
    assert_eq!(bodies("pricey").await, [json!("api")]);
    assert_eq!(bodies("rugby").await, [json!("api"), json!("cli")]);
    assert_eq!(bodies("office").await, [json!("api")]);
    assert_eq!(
        bodies("absent").await,
        [json!("api"), json!("cli"), json!("text")]
    );
    // A type SNS does not have, or a Number that is not one: refused, nothing published.
    for bad in [
        json!({"x": {"Type": "Decimal", "Value": "1"}}),
        json!({"x": {"Type": "Number", "Value": "ten"}}),
        json!({"x": {"Type": "String.Array", "Value": "a,b"}}),
    ] {
        let (status, r) = post(
            &server,
            "/v1/topics/tx/messages",
            json!({"body": "bad", "attributes": bad}),
        )
        .await;
        assert_eq!(status, 400, "{r}");
    }
    assert_eq!(bodies("absent").await, Vec::<Value>::new());
    server.stop();
}

#[tokio::test]
async fn cloudevents_sdk_events_keep_their_fidelity() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "app = \"fidelity\"\n{}[queues.ce]\n\
         [[cloudevents]]\ntype = \"com.example.fidelity\"\ntarget = {{ function = \"rec\" }}\n\
         [[cloudevents]]\ntype = \"com.example.fidelity\"\ntarget = {{ queue = \"ce\" }}\n",
        py("rec", "record_raw", "")
    );
    let dir = app(tmp.path(), &manifest);
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let out = std::process::Command::new(client_python())
        .arg(repo("tests/clients/cloudevents_sdk.py"))
        .args([&server.url, &server.key])
        .output()
        .unwrap();
    let statuses: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(
        statuses,
        json!({"structured": 202, "binary": 202, "empty_batch": 202})
    );
    // The process function gets the structured event as sent: an integer extension stays an
    // integer, string data stays a string, the percent-encoded subject is decoded.
    let got = wait_for("both events at the function", async || {
        let e = events_of(&server, "rec").await;
        (e.len() >= 2).then_some(e)
    })
    .await;
    let by_id = |id: &str| {
        got.iter()
            .map(|e| &e["value"])
            .find(|v| v["id"] == id)
            .cloned()
            .unwrap()
    };
    let s = by_id("s-1");
    assert_eq!(s["count"], json!(42), "{s}");
    assert_eq!(s["data"], json!("123"), "{s}");
    assert_eq!(s["subject"], "café order");
    assert_eq!(s["datacontenttype"], "application/json");
    assert!(
        s["time"].as_str().is_some_and(|t| t.starts_with("20")),
        "{s}"
    );
    let b = by_id("b-1");
    assert_eq!(
        b["subject"], "café order",
        "percent-decoded from ce-subject"
    );
    assert_eq!(b["data"], json!({"total": 5}));
    // Queue receivers get the context attributes, extensions included.
    let messages = drain(&server, "ce").await;
    assert_eq!(messages.len(), 2);
    let structured = messages
        .iter()
        .find(|m| m["attributes"]["id"] == "s-1")
        .unwrap();
    let attrs = &structured["attributes"];
    assert_eq!(attrs["specversion"], "1.0");
    assert_eq!(attrs["datacontenttype"], "application/json");
    assert_eq!(attrs["count"], "42");
    assert!(attrs["time"].is_string(), "{attrs}");
    server.stop();
}

async fn depth(server: &Server, queue: &str) -> u64 {
    let (status, q) = api(server, "GET", &format!("/v1/queues/{queue}"), None).await;
    assert_eq!(status, 200, "{q}");
    q["messages"].as_u64().unwrap()
}

/// Receives and deletes everything a queue holds right now.
async fn drain(server: &Server, queue: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let (_, r) = api(
            server,
            "POST",
            &format!("/v1/queues/{queue}/receive"),
            Some(json!({"max": 100})),
        )
        .await;
        let messages = r["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            return all;
        }
        let receipts: Vec<&Value> = messages.iter().map(|m| &m["receipt"]).collect();
        let (status, _) = api(
            server,
            "POST",
            &format!("/v1/queues/{queue}/ack"),
            Some(json!({ "receipts": receipts })),
        )
        .await;
        assert_eq!(status, 200);
        all.extend(messages);
    }
}

#[tokio::test]
async fn async_invocations_retry_report_in_the_ledger_and_dead_letter() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = [
        "app = \"async\"\n",
        &py(
            "flaky",
            "flaky",
            "max_retries = 2\ndead_letter = \"failed\"\non_success = { queue = \"done\" }\n\
             on_failure = { queue = \"failures\" }",
        ),
        "[queues.failed]\n[queues.done]\n[queues.failures]\n",
    ]
    .concat();
    let dir = app(tmp.path(), &manifest);
    let server = Server::start(&tmp.path().join("data"), &["--retry-base", "200ms"]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    // Success through the CLI: 202 at once, then the ledger has the result.
    let id = ok(&server.cli(&["invoke", "flaky", "--async", "--data", r#"{"n": 1}"#]));
    let id = id.trim().to_string();
    let shown: Value = wait_for("success", async || {
        let v: Value = serde_json::from_str(&ok(&server.cli(&["invocation", &id]))).unwrap();
        (v["status"] == "succeeded").then_some(v)
    })
    .await;
    assert_eq!(shown["attempts"], 1);
    assert_eq!(shown["result"], json!({"ok": 1}));
    assert_eq!(shown["record"]["trigger"]["type"], "async");

    // A failure is tried 1 + max_retries times with backoff, then dead-lettered.
    let (status, r) = post(
        &server,
        "/v1/functions/flaky/invoke?mode=async",
        json!({"fail": true, "n": 2}),
    )
    .await;
    assert_eq!(status, 202);
    let failing = r["id"].as_str().unwrap().to_string();
    let shown = wait_for("dead-lettering", async || {
        let (_, v) = api(&server, "GET", &format!("/v1/invocations/{failing}"), None).await;
        (v["status"] == "dead-lettered").then_some(v)
    })
    .await;
    assert_eq!(shown["attempts"], 3, "{shown}");
    assert_eq!(
        shown["error"]["errorMessage"],
        "RuntimeError: asked to fail: 2"
    );
    assert_eq!(shown["error"]["condition"], "RetriesExhausted");
    let attempts: Vec<Value> = events_of(&server, "flaky")
        .await
        .into_iter()
        .filter(|e| e["value"]["n"] == 2)
        .collect();
    assert_eq!(attempts.len(), 3);

    // The dead-letter queue holds the event with Lambda's error attributes; the destinations
    // got Lambda's destination records.
    let dead = drain(&server, "failed").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(dead[0]["body"].as_str().unwrap()).unwrap()["n"],
        2
    );
    assert_eq!(
        dead[0]["attributes"]["ErrorMessage"],
        "RuntimeError: asked to fail: 2"
    );
    assert_eq!(dead[0]["attributes"]["RequestID"], failing.as_str());
    let done = drain(&server, "done").await;
    let record: Value = serde_json::from_str(done[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["requestId"], id.as_str());
    assert_eq!(record["responsePayload"], json!({"ok": 1}));
    let failures = drain(&server, "failures").await;
    let record: Value = serde_json::from_str(failures[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);

    // An idempotency key makes a repeat the same invocation, run once.
    let key = [
        "invoke",
        "flaky",
        "--async",
        "--idempotency-key",
        "k-1",
        "--data",
        r#"{"n": 3}"#,
    ];
    let first = ok(&server.cli(&key));
    let second = ok(&server.cli(&key));
    assert_eq!(first, second);
    wait_for("the keyed invocation", async || {
        let (_, v) = api(
            &server,
            "GET",
            &format!("/v1/invocations/{}", first.trim()),
            None,
        )
        .await;
        (v["status"] == "succeeded").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = events_of(&server, "flaky")
        .await
        .into_iter()
        .filter(|e| e["value"]["n"] == 3)
        .count();
    assert_eq!(runs, 1);

    // Bad input: unknown function, oversized event; neither is accepted.
    let (status, _) = post(&server, "/v1/functions/nope/invoke?mode=async", json!({})).await;
    assert_eq!(status, 404);
    let big = json!({"blob": "x".repeat(300 * 1024)});
    let (status, e) = post(&server, "/v1/functions/flaky/invoke?mode=async", big).await;
    assert_eq!(status, 413, "{e}");
    let (status, _) = api(&server, "GET", "/v1/invocations/not-an-id", None).await;
    assert_eq!(status, 404);

    // Redrive: the dead-lettered event goes back to the function (and fails again, 3 times).
    let (status, r) = post(
        &server,
        "/v1/functions/flaky/invoke?mode=async",
        json!({"fail": true, "n": 4}),
    )
    .await;
    assert_eq!(status, 202, "{r}");
    wait_for("the second dead letter", async || {
        (depth(&server, "failed").await == 1).then_some(())
    })
    .await;
    let out = ok(&server.cli(&["dlq", "redrive", "failed"]));
    assert!(out.contains("Moved 1 message"), "{out}");
    // A queue no one dead-letters to has nothing to redrive: refused, as SQS refuses it.
    let (status, e) = post(&server, "/v1/queues/done/redrive", json!({})).await;
    assert_eq!(status, 400, "{e}");
    assert!(e.to_string().contains("not a dead-letter queue"), "{e}");
    wait_for("the redriven event to fail again", async || {
        let n = events_of(&server, "flaky")
            .await
            .into_iter()
            .filter(|e| e["value"]["n"] == 4)
            .count();
        (n == 6 && depth_now(&server, "failed").await == 1).then_some(())
    })
    .await;
    server.stop();
}

async fn depth_now(server: &Server, queue: &str) -> u64 {
    depth(server, queue).await
}

#[tokio::test]
async fn queues_send_receive_and_trigger_batches_with_partial_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = [
        "app = \"q\"\n",
        &py("batch", "batch", "triggers = [{ queue = \"jobs\", batch_size = 10 }]"),
        "[queues.jobs]\nvisibility_timeout = \"1s\"\nmax_receive_count = 2\ndead_letter = \"jobs-dlq\"\n[queues.jobs-dlq]\n",
    ]
    .concat();
    let dir = app(tmp.path(), &manifest);
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    // The trigger gets one SQS-shaped batch; the item it reports failed comes back alone, then
    // goes to the dead-letter queue after max_receive_count deliveries.
    let (status, r) = post(&server, "/v1/queues/jobs/messages", json!([{"body": "good 1"}, {"body": "bad 1", "attributes": {"k": "v"}}, {"body": "good 2"}])).await;
    assert_eq!(status, 202);
    assert_eq!(r["ids"].as_array().unwrap().len(), 3);
    wait_for("the poison message in the DLQ", async || {
        (depth(&server, "jobs-dlq").await == 1).then_some(())
    })
    .await;
    let batches: Vec<Value> = events_of(&server, "batch")
        .await
        .into_iter()
        .map(|e| e["value"].clone())
        .collect();
    assert_eq!(batches[0]["bodies"], json!(["good 1", "bad 1", "good 2"]));
    assert_eq!(batches[0]["attributes"][1], json!({"k": "v"}));
    assert_eq!(batches[1]["bodies"], json!(["bad 1"]));
    assert_eq!(batches[1]["counts"], json!(["2"]));
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(depth(&server, "jobs").await, 0);

    // A queue made through the CLI, used through the API: delay, visibility, ack.
    ok(&server.cli(&["queue", "create", "plain", "--visibility-timeout", "1s"]));
    let id = ok(&server.cli(&["queue", "send", "plain", "hello", "--attr", "type=greeting"]));
    let delayed = json!({"body": "later", "delay_seconds": 2});
    let (status, _) = post(&server, "/v1/queues/plain/messages", delayed).await;
    assert_eq!(status, 202);
    let (_, r) = post(&server, "/v1/queues/plain/receive", json!({"max": 10})).await;
    let got = r["messages"].as_array().unwrap();
    assert_eq!(got.len(), 1, "the delayed message must wait: {r}");
    assert_eq!(got[0]["id"], id.trim());
    assert_eq!(got[0]["attributes"]["type"], "greeting");
    // Not acked: it comes back after the visibility timeout, counted.
    let (_, r) = post(
        &server,
        "/v1/queues/plain/receive",
        json!({"max": 10, "wait_seconds": 3}),
    )
    .await;
    let again: Vec<&Value> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["body"] == "hello")
        .collect();
    let receipt = match again.first() {
        Some(m) => {
            assert_eq!(m["receive_count"], 2);
            m["receipt"].clone()
        }
        None => {
            let (_, r) = post(
                &server,
                "/v1/queues/plain/receive",
                json!({"max": 10, "wait_seconds": 3}),
            )
            .await;
            r["messages"][0]["receipt"].clone()
        }
    };
    let (status, r) = post(
        &server,
        "/v1/queues/plain/ack",
        json!({"receipts": [receipt, "stale"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r["deleted"], json!([true, false]));
    let later = wait_for("the delayed message", async || {
        let (_, r) = post(&server, "/v1/queues/plain/receive", json!({"max": 1})).await;
        r["messages"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(later["body"], "later");
    // Change visibility to 0: visible again at once.
    let (status, _) = post(
        &server,
        "/v1/queues/plain/visibility",
        json!({"receipt": later["receipt"], "visibility_seconds": 0}),
    )
    .await;
    assert_eq!(status, 204);
    let (_, r) = post(&server, "/v1/queues/plain/receive", json!({"max": 1})).await;
    assert_eq!(r["messages"][0]["body"], "later");

    // Mistakes get 4xx and change nothing.
    let (status, e) = post(&server, "/v1/queues/nope/messages", json!({"body": "x"})).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("NotFound"))
    );
    let big = json!({"body": "x".repeat(300 * 1024)});
    let (status, _) = post(&server, "/v1/queues/plain/messages", big).await;
    assert_eq!(status, 413);
    let (status, _) = post(&server, "/v1/queues/plain/messages", json!({"bogus": 1})).await;
    assert_eq!(status, 400);
    let (status, _) = api(&server, "PUT", "/v1/queues/jobs", Some(json!({}))).await;
    assert_eq!(
        status, 409,
        "an app's queue cannot be replaced through the API"
    );
    let (status, _) = api(
        &server,
        "PUT",
        "/v1/queues/x",
        Some(json!({"max_receive_count": 2})),
    )
    .await;
    assert_eq!(status, 400, "max_receive_count needs dead_letter");
    assert_eq!(depth(&server, "plain").await, 1);
    let table = ok(&server.cli(&["queue", "ls"]));
    assert!(
        table.contains("jobs-dlq") && table.contains("plain"),
        "{table}"
    );
    ok(&server.cli(&["queue", "rm", "plain"]));

    // A manifest naming a queue that does not exist is refused whole; nothing changes.
    let broken = manifest.replace("queue = \"jobs\"", "queue = \"missing\"");
    std::fs::write(dir.join("nimbus.toml"), broken).unwrap();
    let err = String::from_utf8(server.cli(&["deploy", dir.to_str().unwrap()]).stderr).unwrap();
    assert!(err.contains("queue `missing` does not exist"), "{err}");
    assert_eq!(
        depth(&server, "jobs-dlq").await,
        1,
        "the old deployment keeps running"
    );
    let (status, _) = api(&server, "GET", "/v1/queues/plain", None).await;
    assert_eq!(status, 404);
    server.stop();
}

/// A webhook receiver: answers 500 to the first delivery, 200 after; records what it got.
/// Requests a webhook receiver got: headers (lower-case names) and body.
type Deliveries = Arc<Mutex<Vec<(HashMap<String, String>, Vec<u8>)>>>;

fn webhook_receiver() -> (String, Deliveries) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .map_or(0, |v| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            seen.lock().unwrap().push((headers, body));
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
        }
    });
    (url, got)
}

#[tokio::test]
async fn topics_filter_and_fan_out_to_functions_queues_and_signed_webhooks() {
    use hmac::Mac;
    let tmp = tempfile::tempdir().unwrap();
    let (hook, deliveries) = webhook_receiver();
    let manifest = format!(
        "app = \"t\"\n{}[queues.all]\n[topics.shop]\nsubscriptions = [\n\
         {{ name = \"orders\", function = \"rec\", filter = {{ type = [\"order\"], region = [{{ prefix = \"eu-\" }}] }} }},\n\
         {{ name = \"everything\", queue = \"all\" }},\n\
         {{ name = \"big\", webhook = \"{hook}\", filter_scope = \"body\", filter = {{ total = [{{ numeric = [\">\", 100] }}] }} }},\n]\n",
        py("rec", "record", "")
    );
    let dir = app(tmp.path(), &manifest);
    let server = Server::start(&tmp.path().join("data"), &["--retry-base", "200ms"]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    let messages = json!([
        {"body": "{\"total\": 50}", "attributes": {"type": "order", "region": "eu-west"}},
        {"body": "{\"total\": 500}", "attributes": {"type": "order", "region": "us-east"}},
        {"body": "{\"total\": 7}", "attributes": {"type": "refund", "region": "eu-west"}},
    ]);
    // Published under a trace context, which webhooks receive.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = reqwest::Client::new()
        .post(format!("{}/v1/topics/shop/messages", server.url))
        .bearer_auth(&server.key)
        .header("traceparent", traceparent)
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r: Value = r.json().await.unwrap();
    let ids = r["ids"].as_array().unwrap().clone();
    // The CLI publishes too.
    ok(&server.cli(&[
        "topic",
        "publish",
        "shop",
        "{\"total\": 1}",
        "--attr",
        "type=order",
        "--attr",
        "region=eu-north",
    ]));

    // Function: only orders from eu-*, as SNS records.
    let got = wait_for("two SNS deliveries", async || {
        let e = events_of(&server, "rec").await;
        (e.len() >= 2).then_some(e)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events_of(&server, "rec").await.len(), 2);
    let mut bodies: Vec<&str> = got
        .iter()
        .map(|e| e["value"]["message"].as_str().unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["{\"total\": 1}", "{\"total\": 50}"]);
    assert_eq!(got[0]["kind"], "sns");
    assert_eq!(
        got[0]["value"]["topic"],
        "arn:aws:sns:us-east-1:000000000000:shop"
    );
    // Queue: everything, attributes kept.
    let all = drain(&server, "all").await;
    assert_eq!(all.len(), 4);
    assert!(all.iter().any(|m| m["attributes"]["type"] == "refund"));
    // Webhook: only the body with total > 100; refused once, then delivered again, signed.
    let hooks = wait_for("the webhook retry", async || {
        let d = deliveries.lock().unwrap().clone();
        (d.len() >= 2).then_some(d)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        deliveries.lock().unwrap().len(),
        2,
        "delivered again after a 500, then not"
    );
    let (_, topic) = api(&server, "GET", "/v1/topics/shop", None).await;
    let secret = topic["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "big")
        .unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    for (n, (headers, body)) in hooks.iter().enumerate() {
        assert_eq!(body, b"{\"total\": 500}");
        assert_eq!(headers["x-nimbus-message-id"], ids[1].as_str().unwrap());
        assert_eq!(headers["x-nimbus-delivery-attempt"], (n + 1).to_string());
        assert_eq!(headers["traceparent"], traceparent);
        let sig = &headers["x-nimbus-signature"];
        let (t, v1) = sig.split_once(",v1=").unwrap();
        let t = t.strip_prefix("t=").unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            v1,
            "bad signature"
        );
    }

    // Topics made through the CLI; filters are checked; unknown topics are 404.
    ok(&server.cli(&["topic", "create", "alerts"]));
    ok(&server.cli(&[
        "topic",
        "subscribe",
        "alerts",
        "to-all",
        "--queue",
        "all",
        "--filter",
        r#"{"level": ["high"]}"#,
    ]));
    let bad = server.cli(&[
        "topic",
        "subscribe",
        "alerts",
        "x",
        "--queue",
        "all",
        "--filter",
        r#"{"level": [{"numeric": ["!", 1]}]}"#,
    ]);
    assert!(!bad.status.success());
    let bad = server.cli(&["topic", "subscribe", "alerts", "x", "--queue", "missing"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not exist"));
    ok(&server.cli(&["topic", "publish", "alerts", "one", "--attr", "level=high"]));
    ok(&server.cli(&["topic", "publish", "alerts", "two", "--attr", "level=low"]));
    let all = drain(&server, "all").await;
    assert_eq!(
        all.iter().map(|m| m["body"].clone()).collect::<Vec<_>>(),
        [json!("one")]
    );
    let (status, _) = post(&server, "/v1/topics/nope/messages", json!({"body": "x"})).await;
    assert_eq!(status, 404);
    server.stop();
}

#[tokio::test]
async fn cloudevents_are_validated_routed_and_deduplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "app = \"ce\"\n{}[functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n\
         on_success = {{ queue = \"echoed\" }}\n[queues.ce]\n[queues.echoed]\n\
         [[cloudevents]]\ntype = \"com.example.order.*\"\ntarget = {{ function = \"rec\" }}\n\
         [[cloudevents]]\ntype = \"com.example.order.created\"\nsource = \"/shop\"\ntarget = {{ queue = \"ce\" }}\n\
         [[cloudevents]]\ntype = \"com.example.wasm\"\ntarget = {{ function = \"echo\" }}\n",
        py("rec", "record", "")
    );
    let dir = app(tmp.path(), &manifest);
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let post = async |headers: &[(&str, &str)], body: &str| {
        let mut rb = reqwest::Client::new()
            .post(format!("{}/v1/events", server.url))
            .bearer_auth(&server.key)
            .body(body.to_string());
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        )
    };

    // Binary mode to two routes (function and queue), structured mode, batch mode.
    let binary = [
        ("ce-specversion", "1.0"),
        ("ce-id", "b-1"),
        ("ce-source", "/shop"),
        ("ce-type", "com.example.order.created"),
        (
            "ce-traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("content-type", "application/json"),
    ];
    assert_eq!(post(&binary, r#"{"total": 5}"#).await.0, 202);
    // The same source + id again is accepted but not delivered twice.
    assert_eq!(post(&binary, r#"{"total": 5}"#).await.0, 202);
    let structured = json!({"specversion": "1.0", "id": "s-1", "source": "/web", "type": "com.example.order.paid", "data": {"n": 2}});
    let (status, _) = post(
        &[("content-type", "application/cloudevents+json")],
        &structured.to_string(),
    )
    .await;
    assert_eq!(status, 202);
    let batch = json!([
        {"specversion": "1.0", "id": "w-1", "source": "/b", "type": "com.example.wasm", "data": "hi"},
        {"specversion": "1.0", "id": "w-2", "source": "/b", "type": "com.example.order.shipped"},
    ]);
    let (status, r) = post(
        &[("content-type", "application/cloudevents-batch+json")],
        &batch.to_string(),
    )
    .await;
    assert_eq!((status, r["accepted"].as_u64()), (202, Some(2)));

    let got = wait_for("three CloudEvents at the function", async || {
        let e = events_of(&server, "rec").await;
        (e.len() >= 3).then_some(e)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events_of(&server, "rec").await.len(),
        3,
        "the duplicate must not be delivered"
    );
    let mut types: Vec<&str> = got
        .iter()
        .map(|e| e["value"]["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "com.example.order.created",
            "com.example.order.paid",
            "com.example.order.shipped"
        ]
    );
    let created = got
        .iter()
        .find(|e| e["value"]["type"] == "com.example.order.created")
        .unwrap();
    assert_eq!(created["value"]["data"], json!({"total": 5}));
    assert_eq!(
        depth(&server, "ce").await,
        1,
        "only /shop order.created goes to the queue"
    );
    // The wasm event function got the CloudEvent's attributes (it echoes type and source).
    let echoed = wait_for("the wasm result", async || {
        drain(&server, "echoed").await.pop()
    })
    .await;
    let record: Value = serde_json::from_str(echoed["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        record["responsePayload"],
        json!({"type": "com.example.wasm", "source": "/b", "data": "hi"})
    );

    // Malformed or unroutable events get 4xx and nothing of the request is accepted.
    let missing_type = json!({"specversion": "1.0", "id": "x", "source": "/s"});
    let (status, e) = post(
        &[("content-type", "application/cloudevents+json")],
        &missing_type.to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("type"),
        "{e}"
    );
    let (status, _) = post(
        &[
            ("ce-specversion", "1.0"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 400, "binary mode without ce-id");
    let (status, _) = post(
        &[("content-type", "application/cloudevents+json")],
        "{not json",
    )
    .await;
    assert_eq!(status, 400);
    let old =
        json!({"specversion": "0.3", "id": "x", "source": "/s", "type": "com.example.order.x"});
    let (status, e) = post(
        &[("content-type", "application/cloudevents+json")],
        &old.to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(e["error"]["message"].as_str().unwrap().contains("0.3"));
    let mixed = json!([
        {"specversion": "1.0", "id": "m-1", "source": "/shop", "type": "com.example.order.created"},
        {"specversion": "1.0", "id": "m-2", "source": "/shop", "type": "com.unknown"},
    ]);
    let (status, e) = post(
        &[("content-type", "application/cloudevents-batch+json")],
        &mixed.to_string(),
    )
    .await;
    assert_eq!(status, 404, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("com.unknown")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        depth(&server, "ce").await,
        1,
        "the routable half of a rejected batch is not accepted"
    );
    server.stop();
}

#[tokio::test]
async fn schedules_fire_once_per_tick_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = format!(
        "app = \"s\"\n{}[queues.ticks]\n\
         [schedules.every-minute]\nexpression = \"rate(1 minute)\"\ntarget = {{ queue = \"ticks\" }}\n\
         [schedules.to-function]\nexpression = \"cron(* * * * ? *)\"\ntimezone = \"Europe/Paris\"\ntarget = {{ function = \"rec\" }}\n",
        py("rec", "record", "")
    );
    let dir = app(tmp.path(), &manifest);
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let table = ok(&server.cli(&["schedule", "ls"]));
    assert!(
        table.contains("every-minute") && table.contains("Europe/Paris"),
        "{table}"
    );

    // The next minute boundary fires both schedules once.
    let deadline = Instant::now() + Duration::from_secs(75);
    while depth(&server, "ticks").await == 0 {
        assert!(Instant::now() < deadline, "no tick within 75 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let tick = wait_for("the function's tick", async || {
        events_of(&server, "rec").await.pop()
    })
    .await;
    assert_eq!(tick["kind"], "schedule");
    assert!(
        tick["value"]["resources"][0]
            .as_str()
            .unwrap()
            .ends_with("rule/to-function")
    );
    // A restart within the same minute does not fire that tick again.
    server.stop();
    let server = Server::start(&data, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks = drain(&server, "ticks").await;
    let body: Value = serde_json::from_str(ticks[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["detail-type"], "Scheduled Event");
    let seconds = body["time"].as_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now % 60 < 55 {
        assert_eq!(ticks.len(), 1, "fired twice: {ticks:?} ({seconds})");
    }
    // Disabled schedules do not fire; the CLI says so.
    ok(&server.cli(&["schedule", "disable", "every-minute"]));
    let table = ok(&server.cli(&["schedule", "ls"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("every-minute") && l.contains("disabled")),
        "{table}"
    );
    let (status, _) = api(
        &server,
        "POST",
        "/v1/schedules/nope/state?enabled=true",
        None,
    )
    .await;
    assert_eq!(status, 404);
    server.stop();
}

#[tokio::test]
async fn a_kill_9_loses_no_accepted_event_or_message() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = "app = \"crash\"\n[functions.echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n\
                    on_success = { queue = \"done\" }\n[queues.done]\n[queues.work]\n";
    let dir = app(tmp.path(), manifest);
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let (url, key) = (server.url.clone(), server.key.clone());

    // Clients send async invocations (20 at a time) and queue batches (50 messages, 4 at a
    // time) and remember what was accepted (a 202 came back).
    let accepted_events = Arc::new(Mutex::new(HashSet::new()));
    let accepted_messages = Arc::new(Mutex::new(HashSet::new()));
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for w in 0..20 {
        let (http, url, key, acc) = (
            http.clone(),
            url.clone(),
            key.clone(),
            accepted_events.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let r = http
                    .post(format!("{url}/v1/functions/echo/invoke?mode=async"))
                    .bearer_auth(&key)
                    .json(&json!({"w": w, "i": i}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 202 => {
                        let v: Value = r.json().await.unwrap();
                        acc.lock()
                            .unwrap()
                            .insert(v["id"].as_str().unwrap().to_string());
                    }
                    _ => return,
                }
            }
        }));
    }
    for w in 0..4 {
        let (http, url, key, acc) = (
            http.clone(),
            url.clone(),
            key.clone(),
            accepted_messages.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let batch: Vec<Value> = (0..50)
                    .map(|j| json!({"body": format!("{w}-{i}-{j}")}))
                    .collect();
                let r = http
                    .post(format!("{url}/v1/queues/work/messages"))
                    .bearer_auth(&key)
                    .json(&batch)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 202 => {
                        let v: Value = r.json().await.unwrap();
                        let mut acc = acc.lock().unwrap();
                        for id in v["ids"].as_array().unwrap() {
                            acc.insert(id.as_str().unwrap().to_string());
                        }
                    }
                    _ => return,
                }
            }
        }));
    }
    // Consumers receive and acknowledge queue messages meanwhile, remembering what they got.
    let received: Arc<Mutex<HashMap<String, u32>>> = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..2 {
        let (http, url, key, got, stop) = (
            http.clone(),
            url.clone(),
            key.clone(),
            received.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(format!("{url}/v1/queues/work/receive"))
                    .bearer_auth(&key)
                    .json(&json!({"max": 100}))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let messages = v["messages"].as_array().cloned().unwrap_or_default();
                let receipts: Vec<Value> = messages.iter().map(|m| m["receipt"].clone()).collect();
                {
                    let mut got = got.lock().unwrap();
                    for m in &messages {
                        *got.entry(m["id"].as_str().unwrap().to_string())
                            .or_default() += 1;
                    }
                }
                if receipts.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let acked = http
                    .post(format!("{url}/v1/queues/work/ack"))
                    .bearer_auth(&key)
                    .json(&json!({"receipts": receipts}))
                    .send()
                    .await;
                if acked.is_err() {
                    return;
                }
            }
        }));
    }
    // Kill -9 once thousands are accepted, with more on the wire.
    wait_for("thousands of acceptances", async || {
        let (e, m) = (
            accepted_events.lock().unwrap().len(),
            accepted_messages.lock().unwrap().len(),
        );
        (e >= 2000 && m >= 3000).then_some(())
    })
    .await;
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    drop(server);
    let events = accepted_events.lock().unwrap().clone();
    let messages = accepted_messages.lock().unwrap().clone();

    let before_crash = received.lock().unwrap().len();

    // Restart: every accepted async event runs (its success destination record names it), and
    // every accepted message was received before the crash or is still in its queue.
    let server = Server::start(&data, &[]);
    let mut runs: HashMap<String, u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !events.iter().all(|id| runs.contains_key(id)) {
        assert!(
            Instant::now() < deadline,
            "{} accepted events never ran",
            events.iter().filter(|id| !runs.contains_key(*id)).count()
        );
        for m in drain(&server, "done").await {
            let record: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
            let id = record["requestContext"]["requestId"]
                .as_str()
                .unwrap()
                .to_string();
            *runs.entry(id).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut received = received.lock().unwrap().clone();
    for m in drain(&server, "work").await {
        *received
            .entry(m["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let lost = messages
        .iter()
        .filter(|id| !received.contains_key(*id))
        .count();
    assert_eq!(
        lost,
        0,
        "{lost} of {} accepted messages were lost",
        messages.len()
    );
    let duplicates: u32 = runs.values().map(|n| n - 1).sum();
    let redelivered: u32 = received.values().map(|n| n - 1).sum();
    eprintln!(
        "crash test: {} async events accepted, all ran ({duplicates} duplicate runs); \
         {} queue messages accepted, all received ({before_crash} before the kill, \
         {redelivered} received twice)",
        events.len(),
        messages.len(),
    );
    server.stop();
}
