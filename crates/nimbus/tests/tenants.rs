//! End-to-end tests of tenants: two tenants and the default one deploy the same app names on
//! one node; routes (by path prefix and by custom domain), functions, queues, keys, records,
//! usage and AWS credentials stay each tenant's own; a tenant's limits hold; tenants survive a
//! restart; removing one removes everything it owned.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Server, call, client_python, failed, ok, repo};
use reqwest::Method;
use serde_json::{Value, json};

/// The same app every tenant deploys; only `GREETING` differs.
fn app(dir: &Path, greeting: &str) -> String {
    let app = dir.join(format!("app-{greeting}"));
    std::fs::create_dir_all(app.join("py")).unwrap();
    std::fs::copy(
        repo("tests/fixtures/process/py/app.py"),
        app.join("py/app.py"),
    )
    .unwrap();
    std::fs::copy(repo("tests/fixtures/faulty.wasm"), app.join("faulty.wasm")).unwrap();
    std::fs::write(
        app.join("nimbus.toml"),
        format!(
            r#"app = "shop"
[functions.hello]
runtime = "python"
source = "py"
handler = "app.echo"
env = {{ GREETING = "{greeting}" }}
triggers = [{{ http = "GET /hello" }}]
[functions.hog]
runtime = "wasm"
source = "faulty.wasm"
timeout = "2s"
[queues.jobs]
"#
        ),
    )
    .unwrap();
    app.to_str().unwrap().to_string()
}

/// `GET path` on the data plane (no key), with an optional `Host`: status and body.
async fn get(server: &Server, host: Option<&str>, path: &str) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(format!("{}{path}", server.url));
    if let Some(h) = host {
        r = r.header("host", h);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Whose `hello` answered: the `GREETING` it saw.
fn greeting(body: &Value) -> &str {
    body["env"]["GREETING"].as_str().unwrap_or_default()
}

/// Makes a key of `tenant` with the operator key, through the CLI: (key, access key id, secret).
fn tenant_key(server: &Server, tenant: &str, role: &str) -> (String, String, String) {
    let out = ok(&server.cli(&[
        "key", "create", "--tenant", tenant, "--role", role, "--json",
    ]));
    let k: Value = serde_json::from_str(&out).unwrap();
    let s = |f: &str| k[f].as_str().unwrap().to_string();
    (s("key"), s("aws_access_key_id"), s("aws_secret_access_key"))
}

#[tokio::test]
async fn tenants_share_a_node_without_sharing_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--throttle-wait", "300ms"]);

    // The operator makes two tenants; a custom domain for one, a concurrency limit for the other.
    let out = ok(&server.cli(&["tenant", "create", "acme", "--domain", "API.Acme.Example"]));
    assert!(out.contains("/tenants/acme"), "{out}");
    ok(&server.cli(&["tenant", "create", "globex", "--concurrency", "1"]));
    let err = failed(&server.cli(&["tenant", "create", "acme"]));
    assert!(err.contains("exists"), "{err}");
    let err = failed(&server.cli(&["tenant", "create", "other", "--domain", "api.acme.example"]));
    assert!(err.contains("acme"), "{err}");
    let err = failed(&server.cli(&["tenant", "create", "Bad_Name"]));
    assert!(err.contains("lower-case"), "{err}");
    let listed = ok(&server.cli(&["tenant", "ls"]));
    assert!(
        listed.contains("acme") && listed.contains("api.acme.example"),
        "{listed}"
    );
    assert!(listed.contains("globex"), "{listed}");

    // Only the operator manages tenants: a key of the default tenant without admin cannot.
    let (deployer, _, _) = {
        let out = ok(&server.cli(&["key", "create", "--role", "deployer", "--json"]));
        let k: Value = serde_json::from_str(&out).unwrap();
        (k["key"].as_str().unwrap().to_string(), (), ())
    };
    let (status, body) = call(&server, &deployer, Method::GET, "/v1/tenants", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("tenants:manage"), "{body}");

    let (acme, acme_id, acme_secret) = tenant_key(&server, "acme", "admin");
    let (globex, _, _) = tenant_key(&server, "globex", "admin");

    // Each tenant deploys the same names with its own key (through the plain CLI).
    ok(&server.cli(&["deploy", &app(dir.path(), "default")]));
    let out = ok(&server.cli_with_key(&acme, &["deploy", &app(dir.path(), "acme")]));
    assert!(
        out.contains(&format!("{}/tenants/acme/", server.url)),
        "{out}"
    );
    ok(&server.cli_with_key(&globex, &["deploy", &app(dir.path(), "globex")]));

    // Routes: the default tenant's at the root, the others under their prefix or domain.
    let (s, b) = get(&server, None, "/hello").await;
    assert_eq!((s, greeting(&b)), (200, "default"), "{b}");
    let (s, b) = get(&server, None, "/tenants/acme/hello").await;
    assert_eq!((s, greeting(&b)), (200, "acme"), "{b}");
    let (s, b) = get(&server, Some("api.acme.example"), "/hello").await;
    assert_eq!((s, greeting(&b)), (200, "acme"), "{b}");
    let (s, b) = get(&server, None, "/tenants/globex/hello?x=1").await;
    assert_eq!((s, greeting(&b)), (200, "globex"), "{b}");
    assert_eq!(b["event"]["rawPath"], "/hello", "{b}");
    let (s, b) = get(&server, None, "/tenants/nobody/hello").await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"]["code"], "TenantNotFound", "{b}");

    // The control plane: a tenant's key sees and runs only its own tenant's functions.
    let out = ok(&server.cli_with_key(&acme, &["invoke", "hello"]));
    assert!(
        out.contains("\"GREETING\": \"acme\"") || out.contains("\"GREETING\":\"acme\""),
        "{out}"
    );
    let (status, fns) = call(&server, &globex, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 200);
    assert_eq!(fns.as_array().unwrap().len(), 2, "{fns}");
    // Nor the operator's APIs, nor another tenant's through its prefix.
    let (status, _) = call(&server, &acme, Method::GET, "/v1/tenants", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &server,
        &acme,
        Method::GET,
        "/tenants/globex/v1/functions",
        None,
    )
    .await;
    assert_eq!(status, 401);
    // Its keys are its own.
    let (_, keys) = call(&server, &acme, Method::GET, "/v1/keys", None).await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");

    // Queues of the same name are separate.
    let (status, _) = call(
        &server,
        &acme,
        Method::POST,
        "/v1/queues/jobs/messages",
        Some(json!({"body": "for acme"})),
    )
    .await;
    assert_eq!(status, 202);
    let receive = json!({"max": 10});
    let (_, got) = call(
        &server,
        &globex,
        Method::POST,
        "/v1/queues/jobs/receive",
        Some(receive.clone()),
    )
    .await;
    assert_eq!(got["messages"].as_array().map_or(0, Vec::len), 0, "{got}");
    let (_, got) = call(
        &server,
        &acme,
        Method::POST,
        "/v1/queues/jobs/receive",
        Some(receive),
    )
    .await;
    assert_eq!(got["messages"][0]["body"], "for acme", "{got}");

    // boto3 with the tenant's AWS credentials: its own functions only.
    let out = std::process::Command::new(client_python())
        .arg(repo("tests/clients/boto3_keys.py"))
        .args([&server.url, &acme_id, &acme_secret, "hello"])
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(answer["invoke"]["ok"], 200, "{answer}");
    assert_eq!(answer["list"]["ok"], 2, "{answer}");

    // Limits: globex has one slot across its functions; acme is not affected.
    let hog = {
        let (url, key) = (server.url.clone(), globex.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/functions/hog/invoke"))
                .bearer_auth(key)
                .header("ce-type", "loop")
                .body("{}")
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, b) = get(&server, None, "/tenants/globex/hello").await;
    assert_eq!(s, 429, "{b}");
    let (s, _) = get(&server, None, "/tenants/acme/hello").await;
    assert_eq!(s, 200);
    assert_eq!(hog.await.unwrap(), 504);

    // Usage per tenant, read by the operator.
    let usage = |tenant: &str| {
        let out = ok(&server.cli(&["usage", "--tenant", tenant, "--by", "total", "--json"]));
        let report: Value = serde_json::from_str(&out).unwrap();
        report["total"]["requests"].as_u64().unwrap()
    };
    // acme: two HTTP calls, one CLI invoke, one boto3 invoke, one during the hog.
    common::poll(async || (usage("acme") == 5).then_some(())).await;
    let err = failed(&server.cli(&["usage", "--tenant", "nobody"]));
    assert!(err.contains("does not exist"), "{err}");

    // Tenants, their keys and their apps survive a restart.
    server.stop();
    let server = Server::start(&data, &[]);
    let (s, b) = get(&server, Some("api.acme.example:80"), "/hello").await;
    assert_eq!((s, greeting(&b)), (200, "acme"), "{b}");
    let (status, _) = call(&server, &acme, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 200);

    // Removing a tenant removes everything it had, at once.
    ok(&server.cli(&["tenant", "rm", "acme"]));
    let (s, _) = get(&server, None, "/tenants/acme/hello").await;
    assert_eq!(s, 404);
    let (s, b) = get(&server, Some("api.acme.example"), "/hello").await;
    assert_eq!((s, greeting(&b)), (200, "default"), "{b}");
    let (status, _) = call(&server, &acme, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, 401);
    assert!(!data.join("tenants/acme").exists());
    let listed: Value =
        serde_json::from_str(&ok(&server.cli(&["tenant", "ls", "--json"]))).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["globex"]);
    let err = failed(&server.cli(&["tenant", "rm", "acme"]));
    assert!(err.contains("does not exist"), "{err}");
    // A new tenant of the old name starts empty.
    ok(&server.cli(&["tenant", "create", "acme"]));
    let (acme2, _, _) = tenant_key(&server, "acme", "reader");
    let (_, fns) = call(&server, &acme2, Method::GET, "/v1/functions", None).await;
    assert_eq!(fns, json!([]));
    server.stop();
}

#[tokio::test]
async fn a_tenants_memory_share_and_storage_limit_bound_it_and_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let app = dir.path().join("mem");
    std::fs::create_dir_all(app.join("py")).unwrap();
    std::fs::copy(
        repo("tests/fixtures/process/py/app.py"),
        app.join("py/app.py"),
    )
    .unwrap();
    let function = |name: &str, mb: u32| {
        format!(
            "[functions.{name}]\nruntime = \"python\"\nsource = \"py\"\nhandler = \"app.plain\"\nmemory_mb = {mb}\n"
        )
    };
    std::fs::write(
        app.join("nimbus.toml"),
        format!(
            "app = \"mem\"\n{}{}{}",
            function("a", 128),
            function("b", 128),
            function("big", 256)
        ),
    )
    .unwrap();
    let app = app.to_str().unwrap();
    ok(&server.cli(&[
        "tenant",
        "create",
        "tiny",
        "--memory",
        "200MiB",
        "--storage",
        "1MiB",
    ]));
    let listed = ok(&server.cli(&["tenant", "ls"]));
    assert!(
        listed.contains("200 MiB") && listed.contains("1 MiB"),
        "{listed}"
    );
    let (tiny, _, _) = tenant_key(&server, "tiny", "admin");
    ok(&server.cli_with_key(&tiny, &["deploy", app]));
    ok(&server.cli(&["deploy", app]));
    let invoke = async |key: &str, f: &str| {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/functions/{f}/invoke", server.url))
            .bearer_auth(key)
            .body("{}")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    // One 128 MiB sandbox fits the share; the next function's takes the idle one's room.
    assert_eq!(invoke(&tiny, "a").await.0, 200);
    assert_eq!(invoke(&tiny, "b").await.0, 200);
    // 256 MiB never fits a 200 MiB share: 429, saying whose budget.
    let (status, body) = invoke(&tiny, "big").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("tenant's memory budget"), "{body}");
    // The same function of the default tenant runs: the share bounds only its tenant.
    let (status, body) = invoke(&server.key, "big").await;
    assert_eq!(status, 200, "{body}");

    // Code past the storage limit is refused, and what was deployed stays.
    // Incompressible (xorshift), so the zipped bundle stays over the limit.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..1_500_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(dir.path().join("mem/py/blob.bin"), noise).unwrap();
    let err = failed(&server.cli_with_key(&tiny, &["deploy", app]));
    assert!(err.contains("CodeStorageExceeded"), "{err}");
    assert_eq!(invoke(&tiny, "a").await.0, 200);
    ok(&server.cli(&["deploy", app]));
    server.stop();
}

/// What a caller learns from an answer: its status and error code (a success: its whole
/// body), with the name it asked about replaced, so answers about two names compare.
fn learned(status: u16, body: &Value, name: &str) -> String {
    let what = match body["error"]["code"].as_str() {
        Some(code) => code.to_string(),
        None if status < 300 => body.to_string(),
        None => String::new(),
    };
    format!("{status} {what}").replace(name, "NAME")
}

#[tokio::test]
async fn another_tenants_key_learns_nothing_of_a_tenants_resources() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    ok(&server.cli(&["tenant", "create", "acme"]));
    ok(&server.cli(&["tenant", "create", "globex"]));
    let (acme, _, _) = tenant_key(&server, "acme", "admin");
    let (globex, globex_id, globex_secret) = tenant_key(&server, "globex", "admin");
    // acme's resources, with names no one else has.
    let app = dir.path().join("acme");
    std::fs::create_dir_all(app.join("py")).unwrap();
    std::fs::copy(
        repo("tests/fixtures/process/py/app.py"),
        app.join("py/app.py"),
    )
    .unwrap();
    std::fs::write(
        app.join("nimbus.toml"),
        "app = \"acmeapp\"\n[functions.acmefn]\nruntime = \"python\"\nsource = \"py\"\n\
         handler = \"app.plain\"\n[queues.acmeq]\n[topics.acmet]\n\
         [schedules.acmesched]\nexpression = \"rate(1 hour)\"\ntarget = { function = \"acmefn\" }\n\
         [workflows.acmefn]\ndefinition = '{\"StartAt\": \"A\", \"States\": {\"A\": {\"Type\": \"Pass\", \"End\": true}}}'\n",
    )
    .unwrap();
    ok(&server.cli_with_key(&acme, &["deploy", app.to_str().unwrap()]));
    // acme's own key reaches its workflows through the Step Functions API at `/`.
    let started = ok(&server.cli_with_key(
        &acme,
        &[
            "workflows",
            "start",
            "acmefn",
            "--name",
            "acmerun",
            "--wait",
        ],
    ));
    assert!(started.contains("SUCCEEDED"), "{started}");
    assert!(
        ok(&server.cli(&["workflows", "ls"])).lines().count() <= 1,
        "not the operator's"
    );
    let mut secret = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["secret", "set", "acmesecret"])
        .env("NIMBUS_URL", &server.url)
        .env("NIMBUS_API_KEY", &acme)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    secret.stdin.take().unwrap().write_all(b"hunter2").unwrap();
    assert!(secret.wait().unwrap().success());
    ok(&server.cli_with_key(&acme, &["publish", "acmefn"]));
    let (_, r) = call(
        &server,
        &acme,
        Method::POST,
        "/v1/functions/acmefn/invoke",
        Some(json!({})),
    )
    .await;
    let invocation = acme_invocation(&server, &acme).await;
    assert!(!r.is_null());
    let (_, keys) = call(&server, &acme, Method::GET, "/v1/keys", None).await;
    let acme_key_id = keys[0]["id"].as_str().unwrap().to_string();

    // Listings hold none of acme's names (before globex asks about them: its audit log would).
    for path in [
        "/v1/functions",
        "/v1/apps",
        "/v1/queues",
        "/v1/topics",
        "/v1/schedules",
        "/v1/secrets",
        "/v1/keys",
        "/v1/audit",
        "/v1/usage?by=total",
        "/metrics",
        "/v1/status",
    ] {
        let (status, body) = call(&server, &globex, Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.to_string().contains("acme"),
            "{path} shows acme's: {body}"
        );
    }
    // Every API family, with globex's admin key: an acme name is answered exactly as a name
    // that exists nowhere (the Lambda API, which takes SigV4, through boto3 below).
    let calls: Vec<(Method, &str, Option<Value>, &str)> = vec![
        (Method::GET, "/v1/functions/{}", None, "acmefn"),
        (Method::DELETE, "/v1/functions/{}", None, "acmefn"),
        (
            Method::POST,
            "/v1/functions/{}/invoke",
            Some(json!({})),
            "acmefn",
        ),
        (Method::GET, "/v1/functions/{}/invocations", None, "acmefn"),
        (Method::GET, "/v1/functions/{}/logs", None, "acmefn"),
        (Method::GET, "/v1/functions/{}/versions", None, "acmefn"),
        (
            Method::POST,
            "/v1/functions/{}/versions",
            Some(json!({})),
            "acmefn",
        ),
        (Method::GET, "/v1/functions/{}/aliases", None, "acmefn"),
        (
            Method::PUT,
            "/v1/functions/{}/aliases/live",
            Some(json!({"version": 1})),
            "acmefn",
        ),
        (Method::DELETE, "/v1/apps/{}", None, "acmeapp"),
        (Method::GET, "/v1/invocations/{}", None, &invocation),
        (Method::GET, "/v1/queues/{}", None, "acmeq"),
        (Method::DELETE, "/v1/queues/{}", None, "acmeq"),
        (
            Method::POST,
            "/v1/queues/{}/messages",
            Some(json!({"body": "x"})),
            "acmeq",
        ),
        (
            Method::POST,
            "/v1/queues/{}/receive",
            Some(json!({})),
            "acmeq",
        ),
        (Method::POST, "/v1/queues/{}/redrive", None, "acmeq"),
        (Method::GET, "/v1/topics/{}", None, "acmet"),
        (Method::DELETE, "/v1/topics/{}", None, "acmet"),
        (
            Method::POST,
            "/v1/topics/{}/messages",
            Some(json!({"body": "x"})),
            "acmet",
        ),
        (Method::GET, "/v1/schedules/{}", None, "acmesched"),
        (
            Method::PUT,
            "/v1/schedules/{}/state",
            Some(json!({"enabled": false})),
            "acmesched",
        ),
        (Method::DELETE, "/v1/secrets/{}", None, "acmesecret"),
        (Method::DELETE, "/v1/keys/{}", None, &acme_key_id),
    ];
    for (method, path, body, name) in calls {
        let (s1, b1) = call(
            &server,
            &globex,
            method.clone(),
            &path.replace("{}", name),
            body.clone(),
        )
        .await;
        let (s2, b2) = call(
            &server,
            &globex,
            method.clone(),
            &path.replace("{}", "nosuch"),
            body,
        )
        .await;
        assert!(
            (400..500).contains(&s1) || b1 == json!([]),
            "{method} {path}: {s1} {b1}"
        );
        assert_eq!(
            learned(s1, &b1, name),
            learned(s2, &b2, "nosuch"),
            "{method} {path}: {b1} vs {b2}"
        );
    }
    // Nor can globex point its own resources at acme's.
    let topic = json!({"subscriptions": [{"name": "s", "function": "acmefn"}]});
    let (s, b) = call(
        &server,
        &globex,
        Method::PUT,
        "/v1/topics/mine",
        Some(topic),
    )
    .await;
    assert_eq!(s, 400, "{b}");

    // The CLI, with globex's key: the same refusal for acme's names as for names of no one.
    let cli = |args: &[&str]| {
        let out = server.cli_with_key(&globex, args);
        format!(
            "{} {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for (args, name) in [
        (vec!["show", "{}"], "acmefn"),
        (vec!["invoke", "{}"], "acmefn"),
        (vec!["logs", "{}"], "acmefn"),
        (vec!["invocations", "{}"], "acmefn"),
        (vec!["publish", "{}"], "acmefn"),
        (vec!["rm", "{}"], "acmefn"),
        (vec!["rm", "--app", "{}"], "acmeapp"),
        (vec!["queue", "send", "{}", "x"], "acmeq"),
        (vec!["queue", "receive", "{}"], "acmeq"),
        (vec!["topic", "publish", "{}", "x"], "acmet"),
        (vec!["schedule", "disable", "{}"], "acmesched"),
        (vec!["secret", "rm", "{}"], "acmesecret"),
        (vec!["key", "revoke", "{}"], &acme_key_id),
        (vec!["invocation", "{}"], &invocation),
    ] {
        let with = |n: &str| args.iter().map(|a| a.replace("{}", n)).collect::<Vec<_>>();
        let a: Vec<String> = with(name);
        let b: Vec<String> = with("nosuch");
        let a = cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let b = cli(&b.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            a.replace(name, "NAME"),
            b.replace("nosuch", "NAME"),
            "{args:?}"
        );
    }

    // boto3 with globex's AWS credentials.
    let out = std::process::Command::new(client_python())
        .arg(repo("tests/clients/boto3_tenant_probe.py"))
        .args([&server.url, &globex_id, &globex_secret, "acmefn", "nosuch"])
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(answer["names"], json!([]), "{answer}");
    assert_eq!(answer["machines"], json!([]), "{answer}");
    assert_eq!(
        answer["probes"]["acmefn"], answer["probes"]["nosuch"],
        "{answer}"
    );
    assert_eq!(
        answer["probes"]["acmefn"]["invoke"], "ResourceNotFoundException 404",
        "{answer}"
    );

    // And all of acme's is still there.
    let (status, _) = call(&server, &acme, Method::GET, "/v1/functions/acmefn", None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, &acme, Method::GET, "/v1/keys", None).await;
    assert_eq!(status, 200);
    server.stop();
}

/// The id of an invocation of acme's (the newest record of `acmefn`).
async fn acme_invocation(server: &Server, key: &str) -> String {
    let (_, records) = call(
        server,
        key,
        Method::GET,
        "/v1/functions/acmefn/invocations",
        None,
    )
    .await;
    records[0]["id"].as_str().unwrap().to_string()
}
