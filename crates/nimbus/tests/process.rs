//! End-to-end tests of process runtimes: real Python and Node handlers in real sandboxes behind
//! the real `nimbus` binary, invoked through the CLI, HTTP routes, and the Lambda Invoke API.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Server, aws_script, client_python, failed, installed, ok, repo};
use serde_json::{Value, json};

/// Copies the fixture code directories next to a manifest made of `functions`.
fn app(dir: &Path, name: &str, functions: &str) -> PathBuf {
    let app = dir.join(name);
    for code in ["py", "pybad", "node-esm", "node-cjs"] {
        let to = app.join(code);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(repo(&format!("tests/fixtures/process/{code}"))).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        app.join("nimbus.toml"),
        format!("app = \"{name}\"\n{functions}"),
    )
    .unwrap();
    app
}

fn py(name: &str, handler: &str, extra: &str) -> String {
    format!(
        "[functions.{name}]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.{handler}\"\n{extra}\n"
    )
}

async fn invoke(server: &Server, function: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/functions/{function}/invoke", server.url))
        .bearer_auth(&server.key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test]
async fn python_and_node_handlers_run_unmodified() {
    let tmp = tempfile::tempdir().unwrap();
    let functions = [
        py(
            "echo",
            "echo",
            "env = { GREETING = \"hi\" }\nmemory_mb = 256",
        ),
        py(
            "web",
            "http",
            "triggers = [{ http = \"POST /items/{id}\" }]",
        ),
        py("plain", "plain", "triggers = [{ http = \"GET /plain\" }]"),
        "[functions.esm]\nruntime = \"node\"\nsource = \"node-esm\"\nhandler = \"index.handler\"\n"
            .to_string(),
        "[functions.cjs]\nruntime = \"node\"\nsource = \"node-cjs\"\nhandler = \"index.handler\"\n"
            .to_string(),
    ]
    .concat();
    let dir = app(tmp.path(), "langs", &functions);
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    // Python through the CLI: the event, the context and Lambda's environment.
    let out: Value = serde_json::from_str(&ok(&server.cli(&[
        "invoke",
        "echo",
        "--data",
        r#"{"n": 7}"#,
    ])))
    .unwrap();
    assert_eq!(out["event"], json!({"n": 7}));
    assert_eq!(out["function_name"], "echo");
    assert!(out["remaining_ms"].as_u64().unwrap() > 1000);
    let env = &out["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "echo");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["_HANDLER"], "app.echo");
    assert_eq!(env["LAMBDA_TASK_ROOT"], "/var/task");
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["TZ"], ":UTC");
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(
        env["HOME"],
        Value::Null,
        "a clean environment: nothing of the server's"
    );

    // Node: an ES module (async) and a CommonJS module (callback).
    let esm = json_of(invoke(&server, "esm", json!({"x": 1})).await).await;
    assert_eq!(esm["runtime"], "node-esm");
    assert_eq!(esm["event"], json!({"x": 1}));
    assert_eq!(esm["fn"], "esm");
    let cjs = json_of(invoke(&server, "cjs", json!([1, 2])).await).await;
    assert_eq!(cjs["runtime"], "node-cjs");
    assert_eq!(cjs["memory"], "128");

    // An HTTP route: API Gateway payload 2.0 in, proxy response out.
    let r = reqwest::Client::new()
        .post(format!("{}/items/42?q=find%20me", server.url))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-route"], "POST /items/{id}");
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(
        r.text().await.unwrap(),
        "POST /items/42 id=42 q=find me body=payload"
    );
    // A plain JSON value becomes a 200 JSON body.
    let r = reqwest::get(format!("{}/plain", server.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(json_of(r).await, json!({"answer": 42}));

    // Logs: Lambda-style lines around the output, init output and duration on the cold start.
    let logs = ok(&server.cli(&["logs", "echo"]));
    assert!(logs.contains("init ran"), "{logs}");
    assert!(logs.contains("echo {'n': 7}"), "{logs}");
    for line in [
        "START RequestId:",
        "END RequestId:",
        "REPORT RequestId:",
        "Init Duration:",
    ] {
        assert!(logs.contains(line), "missing {line}: {logs}");
    }
    assert!(logs.contains("Memory Size: 256 MB"), "{logs}");
    let show = ok(&server.cli(&["show", "echo"]));
    assert!(show.contains("app.echo"), "{show}");
    assert!(show.contains("1 warm, 0 busy, 1 started"), "{show}");
    assert!(show.contains("isolation"), "{show}");
    let pid = server.child.id();
    server.stop();
    // A clean shutdown stops the sandboxes and removes their cgroups.
    let leftovers: Vec<String> = ["/sys/fs/cgroup/memory/nimbus", "/sys/fs/cgroup/nimbus"]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{pid}-")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn failures_end_only_their_invocation() {
    let tmp = tempfile::tempdir().unwrap();
    let functions = [
        py("echo", "echo", ""),
        py("fail", "fail", ""),
        py("boom", "fail", "triggers = [{ http = \"GET /boom\" }]"),
        py("sleepy", "sleep", "timeout = \"1s\""),
        py("hog", "oom", "memory_mb = 64"),
        py("crash", "crash", ""),
        "[functions.bad]\nruntime = \"python\"\nsource = \"pybad\"\nhandler = \"app.handler\"\n"
            .to_string(),
    ]
    .concat();
    let dir = app(tmp.path(), "failures", &functions);
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    let error_type = |r: &reqwest::Response| {
        r.headers()
            .get("x-nimbus-error-type")
            .map(|v| v.to_str().unwrap().to_string())
    };

    // A handler error: typed, with the function's message; the sandbox stays warm.
    let r = invoke(&server, "fail", json!({"why": "no"})).await;
    assert_eq!(r.status(), 500);
    assert_eq!(error_type(&r).as_deref(), Some("Function.Error"));
    assert!(
        json_of(r)
            .await
            .to_string()
            .contains("ValueError: bad input: no"),
        "the message keeps the exception's type"
    );
    // A public route's caller sees the error type only; the record keeps the detail.
    let r = reqwest::get(format!("{}/boom", server.url)).await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(error_type(&r).as_deref(), Some("Function.Error"));
    let body = r.text().await.unwrap();
    assert!(!body.contains("bad input"), "{body}");
    let records = ok(&server.cli(&["invocations", "boom", "--json"]));
    assert!(records.contains("ValueError: bad input"), "{records}");

    // A timeout kills the sandbox with Lambda's message; the next call gets a fresh one.
    let r = invoke(&server, "sleepy", json!({"seconds": 30})).await;
    assert_eq!(r.status(), 504);
    assert!(
        json_of(r)
            .await
            .to_string()
            .contains("Task timed out after 1.00 seconds")
    );
    let r = invoke(&server, "sleepy", json!({"seconds": 0})).await;
    assert_eq!(r.status(), 200, "a fresh sandbox after the timeout");

    // Memory past the cgroup limit: Runtime.OutOfMemory.
    let r = invoke(&server, "hog", json!({})).await;
    assert_eq!(r.status(), 500);
    assert_eq!(error_type(&r).as_deref(), Some("Runtime.OutOfMemory"));

    // A crash: Runtime.ExitError with the status.
    let r = invoke(&server, "crash", json!({})).await;
    assert_eq!(error_type(&r).as_deref(), Some("Runtime.ExitError"));
    assert!(json_of(r).await.to_string().contains("exit status 3"));

    // An import error is an init error naming the module.
    let r = invoke(&server, "bad", json!({})).await;
    assert_eq!(error_type(&r).as_deref(), Some("Function.InitError"));
    let body = json_of(r).await.to_string();
    assert!(
        body.contains("Unable to import module 'app'")
            && body.contains("module_that_does_not_exist"),
        "{body}"
    );

    // None of it touched the server or other functions.
    let r = invoke(&server, "echo", json!({"still": "fine"})).await;
    assert_eq!(r.status(), 200);
    let records: Value =
        serde_json::from_str(&ok(&server.cli(&["invocations", "crash", "--json"]))).unwrap();
    assert_eq!(records[0]["error_type"], "Runtime.ExitError");
    let logs = ok(&server.cli(&["logs", "crash"]));
    assert!(logs.contains("about to crash"), "{logs}");
    server.stop();
}

#[tokio::test]
async fn sandboxes_are_isolated_from_the_host_and_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let functions = [
        py("probe", "probe", ""),
        "[functions.other]\nruntime = \"node\"\nsource = \"node-cjs\"\nhandler = \"index.handler\"\n"
            .to_string(),
    ]
    .concat();
    let dir = app(tmp.path(), "iso", &functions);
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let status = server.get_json("/v1/status").await;
    let isolation = status["isolation"].as_str().unwrap();
    assert!(
        isolation.starts_with("full"),
        "these tests need full isolation (run as root with cgroups): {isolation}"
    );

    // The other function's unpacked code, as a path on the host.
    let code_root = data.join("code");
    let other_code = std::fs::read_dir(&code_root)
        .unwrap()
        .map(|e| e.unwrap().path().join("index.js"))
        .find(|p| p.exists())
        .unwrap();
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let r = invoke(
        &server,
        "probe",
        json!({
            "other_code": other_code,
            "data_dir": data,
            "port": port,
        }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let p = json_of(r).await;
    // Its own PID namespace: the init and the runtime, nothing of the host.
    let pids = p["pids"].as_array().unwrap();
    assert!(pids.len() <= 3, "sees only its own processes: {pids:?}");
    assert_eq!(pids[0], 1);
    assert_eq!(p["hostname"], "nimbus");
    assert_ne!(p["uid"], 0, "not root");
    assert_eq!(p["read_other_code"], "FileNotFoundError");
    assert_eq!(p["read_data_dir"], "FileNotFoundError");
    assert_eq!(p["connect_server"], "ConnectionRefusedError", "no network");
    assert_eq!(p["write_code"], "OSError", "code is read-only");
    assert_eq!(p["write_tmp"], "ok", "/tmp is writable");
    let root: Vec<&str> = p["root_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !root.contains(&"root") && !root.contains(&"home"),
        "{root:?}"
    );
    server.stop();
}

#[tokio::test]
async fn concurrent_invocations_spread_over_sandboxes_never_interleaved() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = app(
        tmp.path(),
        "conc",
        &py("slow", "slow", "max_concurrency = 3\ntimeout = \"10s\""),
    );
    let server = Server::start(&tmp.path().join("data"), &["--sandbox-idle", "2s"]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let calls = (0..9).map(|_| invoke(&server, "slow", json!({"seconds": 0.3})));
    let results = futures_util::future::join_all(calls).await;
    let mut sandboxes = std::collections::BTreeSet::new();
    for r in results {
        assert_eq!(r.status(), 200);
        let v = json_of(r).await;
        assert_eq!(v["overlapped"], false, "two invocations in one sandbox");
        sandboxes.insert(v["sandbox"].as_str().unwrap().to_string());
    }
    assert!(
        (2..=3).contains(&sandboxes.len()),
        "9 concurrent calls with max_concurrency 3 use 2-3 sandboxes: {sandboxes:?}"
    );
    // Idle sandboxes are reaped after --sandbox-idle.
    let show = |s: &Server| ok(&s.cli(&["show", "slow"]));
    let mut reaped = false;
    for _ in 0..100 {
        if show(&server).contains("0 warm, 0 busy") {
            reaped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reaped, "{}", show(&server));
    // And the function still answers, from a new sandbox.
    assert_eq!(
        invoke(&server, "slow", json!({"seconds": 0}))
            .await
            .status(),
        200
    );
    server.stop();
}

async fn wait_for_status(server: &Server, id: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/invocations/{id}", server.url))
            .bearer_auth(&server.key)
            .send()
            .await
            .unwrap();
        last = json_of(r).await;
        if last["status"] == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("invocation {id} never became {want}: {last}");
}

#[tokio::test]
async fn boto3_invokes_functions_through_the_lambda_api() {
    let tmp = tempfile::tempdir().unwrap();
    let functions = [
        py("echo", "echo", ""),
        py("fail", "fail", ""),
        "[functions.wasm-echo]\nruntime = \"wasm\"\nsource = \"echo.wasm\"\n".to_string(),
    ]
    .concat();
    let dir = app(tmp.path(), "aws", &functions);
    std::fs::copy(repo("examples/event-echo/echo.wasm"), dir.join("echo.wasm")).unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let credentials = data.join("aws-credentials");
    let v = aws_script(&server, "boto3_invoke.py", &[credentials.to_str().unwrap()]);

    let rr = &v["request_response"];
    assert_eq!(rr["status"], 200);
    assert_eq!(rr["payload"]["event"], json!({"hello": "boto3"}));
    assert_eq!(rr["executed_version"], "$LATEST");
    assert_eq!(rr["function_error"], Value::Null);
    assert_eq!(v["dry_run"], 204);
    let tail = v["tail"].as_str().unwrap();
    assert!(tail.contains("START RequestId:"), "{tail}");
    assert!(tail.contains("echo {'tail': True}"), "{tail}");
    assert!(tail.contains("REPORT RequestId:"), "{tail}");
    let err = &v["handler_error"];
    assert_eq!(err["status"], 200);
    assert_eq!(err["function_error"], "Unhandled");
    assert_eq!(err["payload"]["errorType"], "ValueError");
    assert_eq!(err["payload"]["errorMessage"], "bad input: boto3");
    assert_eq!(v["by_arn"]["event"], json!([1]));
    assert_eq!(v["wasm"]["data"], json!({"from": "boto3"}), "{}", v["wasm"]);
    assert_eq!(v["missing"], json!(["ResourceNotFoundException", 404]));
    // InvocationType=Event: 202 with the invocation id, then the ledger tells the outcome.
    assert_eq!(v["event"]["status"], 202, "{}", v["event"]);
    assert_eq!(v["event"]["payload"], "");
    let id = v["event"]["request_id"].as_str().unwrap();
    let status = wait_for_status(&server, id, "succeeded").await;
    assert_eq!(status["function"], "echo");
    assert_eq!(status["result"]["event"], json!({"async": 1}));
    assert_eq!(
        v["bad_qualifier"],
        json!(["ResourceNotFoundException", 404])
    );
    assert_eq!(v["client_context"], json!({"tenant": "acme"}));
    for case in ["client_context_too_large", "client_context_not_json"] {
        assert_eq!(
            v[case],
            json!(["InvalidRequestContentException", 400]),
            "{case}"
        );
    }
    assert_eq!(v["wrong_secret"], json!(["InvalidSignatureException", 403]));
    assert_eq!(
        v["unknown_key"],
        json!(["UnrecognizedClientException", 403])
    );
    server.stop();
}

#[tokio::test]
async fn aws_clients_read_the_lambda_control_plane_and_hear_what_is_unsupported() {
    let tmp = tempfile::tempdir().unwrap();
    let functions = [
        py("echo", "echo", "memory_mb = 256\ntimeout = \"2500ms\""),
        py("fail", "fail", ""),
    ]
    .concat();
    let dir = app(tmp.path(), "surface", &functions);
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let credentials = data.join("aws-credentials");
    let aws_env = |c: &mut std::process::Command| {
        c.env_clear()
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_DEFAULT_REGION", "us-east-1");
    };
    let mut c = std::process::Command::new(client_python());
    c.arg(repo("tests/clients/boto3_surface.py"))
        .arg(&server.url);
    aws_env(&mut c);
    let v: Value = serde_json::from_str(&ok(&c.output().unwrap())).unwrap();

    assert_eq!(v["first_page"], json!(["echo"]));
    assert_eq!(v["next_marker"], "echo");
    assert_eq!(
        v["all"],
        json!(["echo", "fail"]),
        "the paginator walks every page"
    );
    let conf = &v["get_configuration"];
    assert_eq!(conf["FunctionName"], "echo");
    assert_eq!(
        conf["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:echo"
    );
    assert_eq!(conf["Handler"], "app.echo");
    assert_eq!(conf["MemorySize"], 256);
    assert_eq!(conf["Timeout"], 3);
    assert_eq!(conf["Version"], "$LATEST");
    assert_eq!(conf["State"], "Active");
    assert_eq!(v["get_function"], *conf);
    assert_eq!(v["by_arn_qualified"], "$LATEST");
    assert_eq!(v["versions"], json!(["$LATEST"]));
    assert_eq!(v["aliases"], json!([]));
    assert_eq!(v["get_alias"]["code"], "ResourceNotFoundException");
    assert_eq!(v["missing"]["code"], "ResourceNotFoundException");
    assert_eq!(
        v["missing"]["message"],
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"
    );
    for (service, code, operation) in [
        ("lambda", "NotImplemented", "CreateFunction"),
        ("sqs", "UnknownOperationException", "ListQueues"),
        ("sns", "InvalidAction", "Publish"),
        ("s3", "NotImplemented", "ListBuckets"),
        (
            "stepfunctions",
            "UnknownOperationException",
            "ListActivities",
        ),
    ] {
        let e = &v["unsupported"][service];
        assert_eq!(e["code"], code, "{service}: {e}");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(operation) && message.contains("Nimbus does not support"),
            "{service}: {message}"
        );
    }

    // The AWS CLI, as the README shows it.
    let aws = client_python().with_file_name("aws");
    let mut c = std::process::Command::new(&aws);
    c.args([
        "lambda",
        "list-functions",
        "--endpoint-url",
        &server.url,
        "--output",
        "json",
    ]);
    aws_env(&mut c);
    let listed: Value = serde_json::from_str(&ok(&c.output().unwrap())).unwrap();
    let names: Vec<&str> = listed["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FunctionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "fail"]);
    server.stop();
}

#[tokio::test]
async fn the_newcomer_path_probes_env_data_dir_key_and_newest_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = app(tmp.path(), "newcomer", &py("echo", "echo", ""));
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    // Liveness and readiness need no key.
    for probe in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("{}{probe}", server.url))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe}");
    }
    // The CLI finds the admin key in the data dir it is given (no NIMBUS_API_KEY).
    let nimbus = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(args)
            .env_remove("NIMBUS_API_KEY")
            .env("NIMBUS_URL", &server.url)
            .env("NIMBUS_DATA_DIR", &data)
            .output()
            .unwrap()
    };
    ok(&nimbus(&["deploy", dir.to_str().unwrap()]));
    assert!(ok(&nimbus(&["ls"])).contains("echo"));
    // `nimbus env` points AWS SDKs at the node: boto3 needs nothing else.
    let exports = ok(&nimbus(&["env"]));
    let script = format!(
        "{exports}\n{} -c 'import boto3, json; \
         r = boto3.client(\"lambda\").invoke(FunctionName=\"echo\", Payload=b\"{{}}\"); \
         print(r[\"StatusCode\"])'",
        client_python().display()
    );
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), "200", "{exports}");

    // Logs: the newest entries last, each line with its time and invocation.
    for i in 0..3 {
        invoke(&server, "echo", json!({"n": i})).await;
    }
    let logs = ok(&server.cli(&["logs", "echo", "--tail", "1"]));
    assert!(logs.contains("echo {'n': 2}"), "{logs}");
    assert!(!logs.contains("echo {'n': 1}"), "{logs}");
    let line = logs.lines().find(|l| l.contains("echo {'n': 2}")).unwrap();
    assert!(
        line.starts_with("20") && line.contains('T'),
        "timestamped: {line}"
    );
    let all = ok(&server.cli(&["logs", "echo", "--since", "10m"]));
    let order: Vec<usize> = (0..3)
        .map(|i| all.find(&format!("echo {{'n': {i}}}")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "oldest first: {all}");
    // `-f` starts from now: only what runs after it started.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["logs", "echo", "-f"])
        .env("NIMBUS_URL", &server.url)
        .env("NIMBUS_API_KEY", &server.key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    invoke(&server, "echo", json!({"n": "new"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    follow.kill().unwrap();
    let followed = String::from_utf8(follow.wait_with_output().unwrap().stdout).unwrap();
    assert!(followed.contains("echo {'n': 'new'}"), "{followed}");
    assert!(!followed.contains("echo {'n': 2}"), "{followed}");
    server.stop();
}

#[tokio::test]
async fn published_versions_and_aliases_through_boto3_and_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    let deploy = |greeting: &str| {
        let dir = app(
            tmp.path(),
            "versions",
            &py(
                "echo",
                "echo",
                &format!("env = {{ GREETING = \"{greeting}\" }}"),
            ),
        );
        ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    };
    let boto3 = |stage: &str| -> Value { aws_script(&server, "boto3_versions.py", &[stage]) };
    deploy("one");
    let v = boto3("first");
    assert_eq!(
        v["published"],
        json!([
            "1",
            "first",
            "arn:aws:lambda:us-east-1:000000000000:function:echo:1"
        ])
    );
    assert_eq!(v["again"], "1", "nothing changed: no new version");
    assert_eq!(
        v["alias"],
        json!([
            "arn:aws:lambda:us-east-1:000000000000:function:echo:live",
            "1"
        ])
    );
    assert_eq!(v["duplicate"], "ResourceConflictException");
    assert_eq!(v["numeric_name"], "InvalidParameterValueException");
    assert_eq!(v["missing_version"], "ResourceNotFoundException");
    // The header and the runtime's context agree.
    assert_eq!(
        v["v1"],
        json!({"executed": "1", "context": "1", "greeting": "one"})
    );

    // New code: $LATEST moves, version 1 and the alias keep the old code.
    deploy("two");
    let v = boto3("second");
    assert_eq!(
        v["latest"],
        json!({"executed": "$LATEST", "context": "$LATEST", "greeting": "two"})
    );
    assert_eq!(v["v1"]["greeting"], "one");
    assert_eq!(
        v["live"],
        json!({"executed": "1", "context": "1", "greeting": "one"})
    );
    assert_eq!(v["by_arn"]["executed"], "1");
    assert_eq!(v["partial_arn"]["executed"], "1");
    assert_eq!(v["published"], "2");
    assert_eq!(
        v["v2"],
        json!({"executed": "2", "context": "2", "greeting": "two"})
    );
    assert_eq!(
        v["shifted"],
        json!(["1", "2"]),
        "a 50% shift reaches both versions"
    );
    assert_eq!(
        v["alias_routing"],
        json!({"AdditionalVersionWeights": {"2": 0.5}})
    );
    assert_eq!(v["forward"]["executed"], "2");
    assert_eq!(v["versions"], json!(["$LATEST", "1", "2"]));
    assert_eq!(v["aliases"], json!([["live", "2"]]));
    assert_eq!(v["config_live"], "2");
    assert_eq!(v["deleted"], "ResourceNotFoundException");

    // The CLI: publish (nothing changed: still 2), alias, invoke by alias, sync and async.
    assert!(ok(&server.cli(&["publish", "echo"])).contains("version 2"));
    ok(&server.cli(&["alias", "set", "echo", "stable", "1"]));
    assert!(ok(&server.cli(&["alias", "ls", "echo"])).contains("stable"));
    let out: Value = serde_json::from_str(&ok(&server.cli(&[
        "invoke",
        "echo",
        "--qualifier",
        "stable",
    ])))
    .unwrap();
    assert_eq!(out["env"]["GREETING"], "one", "{out}");
    assert_eq!(out["function_version"], "1");
    let id = ok(&server.cli(&["invoke", "echo", "--qualifier", "stable", "--async"]));
    let done = wait_for_status(&server, id.trim(), "succeeded").await;
    assert_eq!(done["result"]["env"]["GREETING"], "one", "{done}");
    let bad = server.cli(&["alias", "set", "echo", "x", "9"]);
    assert!(!bad.status.success());
    let listed = ok(&server.cli(&["versions", "echo"]));
    assert!(listed.contains("second"), "{listed}");

    // Routes, queue triggers and topic subscriptions can target an alias.
    let dir = app(
        tmp.path(),
        "versions",
        &py(
            "echo",
            "echo",
            "env = { GREETING = \"two\" }\ntriggers = [{ http = \"GET /stable\", qualifier = \"stable\" }, \
             { queue = \"jobs\", qualifier = \"stable\" }]\n\
             [queues.jobs]\n[topics.t]\nsubscriptions = [{ name = \"s\", function = \"echo:stable\" }]",
        ),
    );
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let r: Value = reqwest::get(format!("{}/stable", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["env"]["GREETING"], "one", "{r}");
    assert_eq!(r["function_version"], "1");
    let versions: Value =
        serde_json::from_str(&ok(&server.cli(&["versions", "echo", "--json"]))).unwrap();
    let v1 = versions[0]["version"]["id"].as_str().unwrap().to_string();
    ok(&server.cli(&["queue", "send", "jobs", "{}"]));
    ok(&server.cli(&["topic", "publish", "t", "{}"]));
    let mut triggered = Vec::new();
    for _ in 0..100 {
        let records: Value = serde_json::from_str(&ok(&server.cli(&[
            "invocations",
            "echo",
            "--json",
            "--limit",
            "50",
        ])))
        .unwrap();
        triggered = records
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| matches!(r["trigger"]["type"].as_str(), Some("queue" | "topic")))
            .map(|r| (r["trigger"]["type"].clone(), r["version"].clone()))
            .collect();
        if triggered.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(triggered.len(), 2, "{triggered:?}");
    assert!(
        triggered.iter().all(|(_, v)| v == &json!(v1)),
        "{triggered:?}"
    );
    ok(&server.cli(&["alias", "rm", "echo", "stable"]));
    server.stop();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Builds the `lambda_runtime` fixture and returns its binary.
fn rust_lambda_bootstrap() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("target"))
        .join("fixtures");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(repo("tests/fixtures/process/rust-lambda/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "building the lambda_runtime fixture failed"
    );
    target.join("release/bootstrap")
}

#[tokio::test]
async fn aws_runtime_clients_run_unmodified() {
    let tmp = tempfile::tempdir().unwrap();
    // awslambdaric (AWS's Python runtime client) next to the handler, started by a bootstrap.
    let ric = installed(
        "NIMBUS_TEST_RIC_PYTHON",
        "/var/tmp/nimbus-ric/python",
        "awslambdaric",
    );
    let dir = tmp.path().join("clients");
    copy_dir(
        &repo("tests/fixtures/process/ric-python"),
        &dir.join("ricpy"),
    );
    std::fs::copy(
        repo("tests/fixtures/process/py/app.py"),
        dir.join("ricpy/app.py"),
    )
    .unwrap();
    copy_dir(&ric, &dir.join("ricpy/ric"));
    // aws-lambda-ric (AWS's Node.js runtime client, with its native addon) next to an ES module.
    let ric_node = installed(
        "NIMBUS_TEST_RIC_NODE",
        "/var/tmp/nimbus-ric/node/node_modules/aws-lambda-ric",
        "dist/rapid-client.node",
    );
    copy_dir(
        &repo("tests/fixtures/process/ric-node"),
        &dir.join("ricnode"),
    );
    std::fs::copy(
        repo("tests/fixtures/process/node-esm/index.mjs"),
        dir.join("ricnode/index.mjs"),
    )
    .unwrap();
    for part in ["bin", "dist", "package.json"] {
        let to = dir.join("ricnode/node_modules/aws-lambda-ric").join(part);
        if ric_node.join(part).is_dir() {
            copy_dir(&ric_node.join(part), &to);
        } else {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(ric_node.join(part), &to).unwrap();
        }
    }
    // Nimbus's own Python and Node bootstraps, beside AWS's clients.
    copy_dir(&repo("tests/fixtures/process/py"), &dir.join("py"));
    copy_dir(&repo("tests/fixtures/process/node-esm"), &dir.join("node"));
    // A Rust function built with the official `lambda_runtime` crate.
    std::fs::create_dir_all(dir.join("rust")).unwrap();
    std::fs::copy(rust_lambda_bootstrap(), dir.join("rust/bootstrap")).unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "app = \"clients\"\n\
         [functions.ric]\nruntime = \"provided\"\nsource = \"ricpy\"\nhandler = \"app.echo\"\n\
         [functions.ricnode]\nruntime = \"provided\"\nsource = \"ricnode\"\nhandler = \"index.handler\"\n\
         [functions.rust]\nruntime = \"provided\"\nsource = \"rust\"\nhandler = \"bootstrap\"\n\
         [functions.py]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.echo\"\n\
         [functions.node]\nruntime = \"node\"\nsource = \"node\"\nhandler = \"index.handler\"\n",
    )
    .unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    let r = invoke(&server, "ric", json!({"via": "awslambdaric"})).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["event"], json!({"via": "awslambdaric"}));
    assert_eq!(v["function_name"], "ric");

    let r = invoke(&server, "ricnode", json!({"via": "aws-lambda-ric"})).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["runtime"], "node-esm");
    assert_eq!(v["event"], json!({"via": "aws-lambda-ric"}));
    assert_eq!(v["fn"], "ricnode");

    let r = invoke(&server, "rust", json!({"via": "lambda_runtime"})).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["runtime"], "rust");
    assert_eq!(v["event"], json!({"via": "lambda_runtime"}));
    assert_eq!(
        v["arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:rust"
    );
    let r = invoke(&server, "rust", json!({"fail": true})).await;
    assert_eq!(r.headers()["x-nimbus-error-type"], "Function.Error");
    assert!(json_of(r).await.to_string().contains("asked to fail"));
    let logs = ok(&server.cli(&["logs", "rust"]));
    assert!(logs.contains("rust handler got"), "{logs}");

    // A caller's client context (base64 JSON, as boto3's ClientContext sends it) reaches
    // `context.client_context` in every runtime; the version the context reports is the one
    // the Invoke API reports.
    let ctx = base64_encode(r#"{"custom": {"tenant": "acme"}, "env": {"platform": "linux"}}"#);
    for (function, field) in [
        ("ric", "client_custom"),
        ("py", "client_custom"),
        ("ricnode", "clientCustom"),
        ("node", "clientCustom"),
        ("rust", "client_custom"),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/functions/{function}/invoke", server.url))
            .bearer_auth(&server.key)
            .header("x-amz-client-context", &ctx)
            .json(&json!({"with": "context"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{function}");
        let v = json_of(r).await;
        assert_eq!(v[field], json!({"tenant": "acme"}), "{function}: {v}");
    }
    for (function, field) in [("py", "function_version"), ("node", "functionVersion")] {
        let v = json_of(invoke(&server, function, json!({})).await).await;
        assert_eq!(v[field], "$LATEST", "{function}: {v}");
    }
    // Not base64 JSON: refused before anything runs.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/functions/py/invoke", server.url))
        .bearer_auth(&server.key)
        .header("x-amz-client-context", "not base64 json")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    server.stop();
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn every_sandbox_has_its_own_loopback_even_with_allowed_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let net = "allowed_hosts = [\"127.0.0.1\"]";
    let functions = [
        py("victim", "whoami", &format!("{net}\nmax_concurrency = 1")),
        py("snoop", "snoop", &format!("{net}\ntimeout = \"6s\"")),
    ]
    .concat();
    let dir = app(tmp.path(), "net", &functions);
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let victim = json_of(invoke(&server, "victim", json!({})).await).await;
    // The Runtime API sits on the sandbox's own loopback, as on Lambda; no other sandbox and
    // nothing on the host shares that loopback.
    assert_eq!(victim["api"], "127.0.0.1:9001", "{victim}");
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let snoop = json_of(
        invoke(
            &server,
            "snoop",
            json!({ "api": format!("127.0.0.1:{port}") }),
        )
        .await,
    )
    .await;
    assert_eq!(
        snoop, "URLError",
        "the host's loopback (where Nimbus listens) is not reachable from a sandbox"
    );
    server.stop();
}

#[tokio::test]
async fn without_root_process_functions_run_with_reduced_isolation_and_say_so() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = app(tmp.path(), "plain", &py("echo", "echo", ""));
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let server = Server::start_with(
        &[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ],
        &data,
        &[],
    );
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let out: Value =
        serde_json::from_str(&ok(&server.cli(&["invoke", "echo", "--data", "[3]"]))).unwrap();
    assert_eq!(out["event"], json!([3]));
    let show = ok(&server.cli(&["show", "echo"]));
    assert!(
        show.contains("reduced: no namespaces") && show.contains("memory_mb is not enforced"),
        "{show}"
    );
    server.stop();
}

#[tokio::test]
async fn bad_process_code_is_rejected_at_deploy_and_sandboxes_die_with_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[]);
    // A zip source works like a directory.
    let dir = app(tmp.path(), "zipped", &py("echo", "echo", ""));
    std::fs::write(
        dir.join("code.zip"),
        nimbus_process::code::bundle_dir(&dir.join("py")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("nimbus.toml"),
        "app = \"zipped\"\n[functions.echo]\nruntime = \"python\"\nsource = \"code.zip\"\n\
         handler = \"app.echo\"\n",
    )
    .unwrap();
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    assert_eq!(invoke(&server, "echo", json!(1)).await.status(), 200);
    let sleeper = app(
        tmp.path(),
        "sleeper",
        &py("sleepy", "sleep", "timeout = \"60s\""),
    );
    ok(&server.cli(&["deploy", sleeper.to_str().unwrap()]));

    // A provided function without an executable bootstrap, and a corrupt zip: rejected, naming
    // the function, and the app keeps its previous version.
    for (source, expected) in [("py", "bootstrap"), ("broken.zip", "zip")] {
        std::fs::write(dir.join("broken.zip"), b"PK\x03\x04 not really").unwrap();
        std::fs::write(
            dir.join("nimbus.toml"),
            format!(
                "app = \"zipped\"\n[functions.echo]\nruntime = \"provided\"\nsource = \"{source}\"\n"
            ),
        )
        .unwrap();
        let err = failed(&server.cli(&["deploy", dir.to_str().unwrap()]));
        assert!(
            err.contains("functions.echo.source") && err.contains(expected),
            "{err}"
        );
        let show = ok(&server.cli(&["show", "echo"]));
        assert!(
            show.contains("python"),
            "the old version still serves: {show}"
        );
    }

    // Handler modules that do not compile fail the deploy with file:line; nothing changes.
    for (runtime, dir_name, file, source, handler, expected) in [
        (
            "python",
            "pysyntax",
            "app.py",
            "def handler(event, context):\n    return {'a': 1\n",
            "app.handler",
            "app.py:2",
        ),
        (
            "node",
            "nodesyntax",
            "index.mjs",
            "export const handler = async () => {\n  return (\n};\n",
            "index.handler",
            "index.mjs:3: SyntaxError",
        ),
    ] {
        std::fs::create_dir_all(dir.join(dir_name)).unwrap();
        std::fs::write(dir.join(dir_name).join(file), source).unwrap();
        std::fs::write(
            dir.join("nimbus.toml"),
            format!(
                "app = \"zipped\"\n[functions.echo]\nruntime = \"{runtime}\"\nsource = \"{dir_name}\"\n\
                 handler = \"{handler}\"\n"
            ),
        )
        .unwrap();
        let err = failed(&server.cli(&["deploy", dir.to_str().unwrap()]));
        assert!(
            err.contains("functions.echo") && err.contains(expected),
            "{runtime}: {err}"
        );
        assert!(ok(&server.cli(&["show", "echo"])).contains("python"));
        assert_eq!(invoke(&server, "echo", json!(1)).await.status(), 200);
    }

    // Sandboxes are killed with their parent: kill -9 the server, and every process under it
    // (the warm sandbox of `echo` with its Python runtime, the standby) goes with it.
    fn descendants(pid: u32) -> Vec<u32> {
        let out = std::process::Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .flat_map(|c| std::iter::once(c).chain(descendants(c)))
            .collect()
    }
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };
    // A busy sandbox (its handler sleeping, blind to the server) must die too.
    let url = format!("{}/v1/functions/sleepy/invoke", server.url);
    let key = server.key.clone();
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .bearer_auth(key)
            .json(&json!({"seconds": 30}))
            .send()
            .await;
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tree = descendants(server.child.id());
    assert!(
        tree.len() >= 4,
        "two sandboxes and their runtimes exist: {tree:?}"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if !tree.iter().any(alive) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivors: Vec<String> = tree
        .iter()
        .filter(|p| alive(p))
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect();
    assert!(gone, "sandbox processes outlived the server: {survivors:?}");
}

#[tokio::test]
async fn min_instances_are_warm_before_the_first_request_and_never_reaped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = app(
        tmp.path(),
        "warm",
        &[
            py("kept", "echo", "min_instances = 1\nmax_concurrency = 2"),
            py("lazy", "echo", ""),
        ]
        .concat(),
    );
    let server = Server::start(&tmp.path().join("data"), &["--sandbox-idle", "1s"]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let shown = ok(&server.cli(&["show", "kept"]));
    assert!(shown.contains("1 kept warm"), "{shown}");
    assert!(
        shown.contains("1 warm, 0 busy"),
        "started at deploy: {shown}"
    );
    assert!(shown.contains("idle instances stop after 1s"), "{shown}");

    // The first invocation is warm (no cold start recorded), the lazy one's is cold.
    for (f, cold) in [("kept", false), ("lazy", true)] {
        let r = invoke(&server, f, json!({})).await;
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-nimbus-invocation-id"]
            .to_str()
            .unwrap()
            .to_string();
        let status: Value = loop {
            let out = server.cli(&["invocation", &id]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                if !v["record"].is_null() {
                    break v;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status["record"]["cold_start"], cold, "{f}: {status}");
    }
    // Past the idle timeout the lazy sandbox is reaped, the kept one is not.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let kept = ok(&server.cli(&["show", "kept"]));
    assert!(kept.contains("1 warm, 0 busy"), "{kept}");
    let lazy = ok(&server.cli(&["show", "lazy"]));
    assert!(lazy.contains("0 warm, 0 busy"), "{lazy}");
    server.stop();
}
