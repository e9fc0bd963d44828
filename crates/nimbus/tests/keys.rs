//! End-to-end tests of API keys and roles: every role against a call of each API family (and
//! the CLI, and boto3 with the key's own AWS credentials), invoker keys limited to their scope,
//! revocation and expiry with immediate effect, and the audit log.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, call, client_python, failed, ok, repo};
use reqwest::Method;
use serde_json::{Value, json};

const MANIFEST: &str = r#"app = "shop"
[functions.echo]
runtime = "python"
source = "py"
handler = "app.echo"
triggers = [{ http = "POST /keyed", auth = "api_key" }]
[functions.other]
runtime = "python"
source = "py"
handler = "app.echo"
[queues.jobs]
[topics.news]
"#;

/// A node with the `shop` app (MANIFEST) deployed in `dir`: the server and the app directory.
fn shop(dir: &std::path::Path) -> (Server, std::path::PathBuf) {
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("py")).unwrap();
    std::fs::copy(
        repo("tests/fixtures/process/py/app.py"),
        app.join("py/app.py"),
    )
    .unwrap();
    std::fs::write(app.join("nimbus.toml"), MANIFEST).unwrap();
    let server = Server::start(&dir.join("data"), &[]);
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    (server, app)
}

/// A call, the permission it needs, and whether admin, deployer, invoker and reader may make it.
type Case = (Method, &'static str, Option<Value>, &'static str, [bool; 4]);

async fn create_key(server: &Server, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/keys", server.url))
        .bearer_auth(&server.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test]
async fn roles_allow_exactly_their_calls_and_keys_die_when_revoked_or_expired() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, app) = shop(tmp.path());

    let admin = create_key(
        &server,
        json!({"role": "admin", "description": "second admin"}),
    )
    .await;
    let deployer = create_key(&server, json!({"role": "deployer"})).await;
    let invoker = create_key(
        &server,
        json!({"role": "invoker", "functions": ["echo"], "queues": ["jobs"]}),
    )
    .await;
    let reader = create_key(&server, json!({"role": "reader"})).await;
    let keys = [&admin, &deployer, &invoker, &reader];
    let key = |k: &Value| k["key"].as_str().unwrap().to_string();

    // Each call × each role (admin, deployer, invoker, reader): allowed, or 403 naming the
    // missing permission.
    let table: [Case; 14] = [
        (
            Method::GET,
            "/v1/functions",
            None,
            "functions:read",
            [true, true, false, true],
        ),
        (
            Method::GET,
            "/v1/apps",
            None,
            "functions:read",
            [true, true, false, true],
        ),
        (
            Method::DELETE,
            "/v1/functions/nope",
            None,
            "functions:deploy",
            [true, true, false, false],
        ),
        (
            Method::POST,
            "/v1/functions/echo/invoke",
            Some(json!({})),
            "functions:invoke",
            [true, false, true, false],
        ),
        (
            Method::GET,
            "/v1/functions/echo/invocations",
            None,
            "records:read",
            [true, true, false, true],
        ),
        (
            Method::GET,
            "/v1/functions/echo/logs",
            None,
            "records:read",
            [true, true, false, true],
        ),
        (
            Method::GET,
            "/metrics",
            None,
            "metrics:read",
            [true, true, false, true],
        ),
        (
            Method::GET,
            "/v1/usage",
            None,
            "metrics:read",
            [true, true, false, true],
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages",
            Some(json!({"body": "x"})),
            "queues:send",
            [true, false, true, false],
        ),
        (
            Method::PUT,
            "/v1/queues/scratch",
            Some(json!({})),
            "events:manage",
            [true, true, false, false],
        ),
        (
            Method::GET,
            "/v1/queues",
            None,
            "events:read",
            [true, true, false, true],
        ),
        (
            Method::GET,
            "/v1/secrets",
            None,
            "secrets:manage",
            [true, false, false, false],
        ),
        (
            Method::GET,
            "/v1/keys",
            None,
            "keys:manage",
            [true, false, false, false],
        ),
        (
            Method::GET,
            "/v1/audit",
            None,
            "audit:read",
            [true, false, false, false],
        ),
    ];
    for (method, path, body, permission, allowed) in table {
        for (k, want) in keys.iter().zip(allowed) {
            let (status, answer) = call(&server, &key(k), method.clone(), path, body.clone()).await;
            let role = k["role"].as_str().unwrap();
            if want {
                assert!(
                    status != 401 && status != 403,
                    "{role} {method} {path}: {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{role} {method} {path}: {answer}");
                let message = answer["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains(permission),
                    "{role} {method} {path}: {message}"
                );
            }
        }
    }

    // An invoker key reaches its scope only.
    let (status, answer) = call(
        &server,
        &key(&invoker),
        Method::POST,
        "/v1/functions/other/invoke",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on `other`"),
        "{answer}"
    );
    let (status, _) = call(
        &server,
        &key(&invoker),
        Method::POST,
        "/v1/topics/news/messages",
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    // Scopes fit the role.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/keys", server.url))
        .bearer_auth(&server.key)
        .json(&json!({"role": "reader", "functions": ["echo"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The CLI with a reader key reads, and is refused a deploy naming the permission.
    let reader_cli = |args: &[&str]| server.cli_with_key(&key(&reader), args);
    assert!(ok(&reader_cli(&["ls"])).contains("echo"));
    let err = failed(&reader_cli(&["deploy", app.to_str().unwrap()]));
    assert!(err.contains("functions:deploy"), "{err}");

    // boto3 signs with each key's own AWS credentials and gets the same answers.
    let boto = |k: &Value, function: &str| -> Value {
        let out = std::process::Command::new(client_python())
            .arg(repo("tests/clients/boto3_keys.py"))
            .args([
                &server.url,
                k["aws_access_key_id"].as_str().unwrap(),
                k["aws_secret_access_key"].as_str().unwrap(),
                function,
            ])
            .output()
            .unwrap();
        serde_json::from_str(&ok(&out)).unwrap()
    };
    let as_invoker = boto(&invoker, "echo");
    assert_eq!(as_invoker["invoke"]["ok"], 200, "{as_invoker}");
    assert_eq!(
        as_invoker["list"]["error"], "AccessDeniedException",
        "{as_invoker}"
    );
    assert!(
        as_invoker["list"]["message"]
            .as_str()
            .unwrap()
            .contains("functions:read")
    );
    let as_reader = boto(&reader, "echo");
    assert_eq!(as_reader["list"]["ok"], 2, "{as_reader}");
    assert_eq!(as_reader["invoke"]["status"], 403, "{as_reader}");
    assert_eq!(
        boto(&invoker, "other")["invoke"]["error"],
        "AccessDeniedException"
    );

    // Listing shows no key; revocation works at once (the API key and the AWS credentials).
    let listing = ok(&server.cli(&["key", "ls"]));
    assert!(
        listing.contains(reader["id"].as_str().unwrap()),
        "{listing}"
    );
    for k in keys {
        assert!(!listing.contains(&key(k)));
    }
    ok(&server.cli(&["key", "revoke", reader["id"].as_str().unwrap()]));
    let (status, answer) = call(&server, &key(&reader), Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(boto(&reader, "echo")["list"]["status"], 403);
    assert!(ok(&server.cli(&["key", "ls"])).contains("revoked"));
    let err = failed(&server.cli(&["key", "revoke", reader["id"].as_str().unwrap()]));
    assert!(err.contains("no key"), "{err}");

    // Expiry.
    let brief = create_key(&server, json!({"role": "reader", "expires_in_s": 1})).await;
    let (status, _) = call(&server, &key(&brief), Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, answer) = call(&server, &key(&brief), Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{answer}"
    );

    // The audit log names who changed what, and who was refused.
    let audit: Value =
        serde_json::from_str(&ok(&server.cli(&["audit", "--json", "-n", "1000"]))).unwrap();
    let entries = audit.as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["key_id"] == "admin"
            && e["action"] == "POST /v1/keys"
            && e["status"] == 201)
    );
    assert!(entries.iter().any(|e| e["key_id"] == deployer["id"]
        && e["action"] == "GET /v1/secrets"
        && e["status"] == 403
        && e["detail"].as_str().unwrap().contains("secrets:manage")));
    assert!(
        entries
            .iter()
            .any(|e| e["key_id"] == deployer["id"] && e["action"] == "PUT /v1/queues/scratch")
    );
    assert!(
        !entries
            .iter()
            .any(|e| e["action"] == "POST /v1/functions/echo/invoke" && e["status"] == 200),
        "data-plane calls are in records, not the audit log"
    );
}

#[tokio::test]
async fn api_key_routes_take_keys_that_may_invoke_within_their_usage_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _) = shop(tmp.path());
    let created = ok(&server.cli(&[
        "key",
        "create",
        "--role",
        "invoker",
        "--function",
        "echo",
        "--rate",
        "1",
        "--burst",
        "2",
        "--quota",
        "3/month",
        "--json",
    ]));
    let planned: Value = serde_json::from_str(&created).unwrap();
    let reader = create_key(&server, json!({"role": "reader"})).await;
    let elsewhere = create_key(&server, json!({"role": "invoker", "functions": ["other"]})).await;
    let post = |key: Option<String>| {
        let mut r = reqwest::Client::new()
            .post(format!("{}/keyed", server.url))
            .json(&json!({}));
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send()
    };
    let key = |k: &Value| Some(k["key"].as_str().unwrap().to_string());
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("nmb_wrong".into())).await.unwrap().status(), 401);
    assert_eq!(post(key(&reader)).await.unwrap().status(), 403);
    assert_eq!(post(key(&elsewhere)).await.unwrap().status(), 403);
    // The burst, then the rate.
    let r = post(key(&planned)).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let event = &body["event"];
    assert_eq!(
        event["requestContext"]["authorizer"]["apiKey"]["id"],
        planned["id"]
    );
    assert!(
        event["headers"].get("x-api-key").is_none(),
        "the key is not passed on: {event}"
    );
    assert_eq!(post(key(&planned)).await.unwrap().status(), 200);
    let r = post(key(&planned)).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // A second later, the third and last request of the month's quota.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(key(&planned)).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = post(key(&planned)).await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 1, "until the next month: {retry}");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quota of 3"),
        "{body}"
    );
}

#[tokio::test]
async fn a_functions_resource_policy_lets_a_key_invoke_it_until_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, app) = shop(tmp.path());
    let admin = create_key(&server, json!({"role": "admin"})).await;
    let reader = create_key(&server, json!({"role": "reader"})).await;
    let s = |k: &Value, f: &str| k[f].as_str().unwrap().to_string();
    let out = std::process::Command::new(client_python())
        .arg(repo("tests/clients/boto3_policy.py"))
        .args([
            server.url.clone(),
            s(&admin, "aws_access_key_id"),
            s(&admin, "aws_secret_access_key"),
            s(&reader, "aws_access_key_id"),
            s(&reader, "aws_secret_access_key"),
            "echo".into(),
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["before"]["error"], "AccessDeniedException", "{v}");
    assert_eq!(v["no_policy"]["error"], "ResourceNotFoundException", "{v}");
    let statement = &v["grant"]["ok"];
    assert_eq!(statement["Sid"], "let-reader", "{v}");
    assert_eq!(
        statement["Principal"]["AWS"], reader["id"],
        "stored as the key id: {v}"
    );
    assert_eq!(statement["Action"], "lambda:InvokeFunction");
    assert!(
        statement["Resource"]
            .as_str()
            .unwrap()
            .ends_with(":function:echo")
    );
    assert_eq!(v["duplicate"]["error"], "ResourceConflictException", "{v}");
    assert_eq!(
        v["bad_action"]["error"], "InvalidParameterValueException",
        "{v}"
    );
    assert_eq!(
        v["unknown_principal"]["error"], "InvalidParameterValueException",
        "{v}"
    );
    assert_eq!(v["by_reader"]["error"], "AccessDeniedException", "{v}");
    assert_eq!(
        v["policy"]["ok"]["Statement"][0]["Sid"], "let-reader",
        "{v}"
    );
    assert_eq!(v["granted"]["ok"], 200, "{v}");
    assert_eq!(v["remove"]["ok"], 204, "{v}");
    assert_eq!(
        v["remove_again"]["error"], "ResourceNotFoundException",
        "{v}"
    );
    assert_eq!(v["after"]["error"], "AccessDeniedException", "{v}");

    // The native invoke API honours a grant too (made here with the key id).
    let (status, _) = call(
        &server,
        &s(&reader, "key"),
        Method::POST,
        "/v1/functions/echo/invoke",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
    let r = std::process::Command::new(client_python())
        .args(["-c", "import boto3,sys; from botocore.config import Config; \
            c=boto3.client('lambda',endpoint_url=sys.argv[1],region_name='us-east-1',aws_access_key_id=sys.argv[2],aws_secret_access_key=sys.argv[3]); \
            c.add_permission(FunctionName='echo',StatementId='by-id',Action='lambda:InvokeFunction',Principal=sys.argv[4])"])
        .args([server.url.clone(), s(&admin, "aws_access_key_id"), s(&admin, "aws_secret_access_key"), s(&reader, "id")])
        .output()
        .unwrap();
    ok(&r);
    let (status, answer) = call(
        &server,
        &s(&reader, "key"),
        Method::POST,
        "/v1/functions/echo/invoke",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = call(
        &server,
        &s(&reader, "key"),
        Method::POST,
        "/v1/functions/other/invoke",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403, "a grant is for its function only");
    // A removed function's policy goes with it: deployed again, it grants nothing.
    ok(&server.cli(&["rm", "--app", "shop"]));
    ok(&server.cli(&["deploy", app.to_str().unwrap()]));
    let (status, _) = call(
        &server,
        &s(&reader, "key"),
        Method::POST,
        "/v1/functions/echo/invoke",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
}
