//! End-to-end tests of route access: JWT authorizers (tokens issued by PyJWT with keys the test
//! generates, key sets inline and fetched from a URL), function authorizers with their cache,
//! and CORS — answered to reqwest and to a real browser (headless Chromium) on other origins.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Server, client_python, ok, repo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "shop";

/// Keys and tokens from `tests/clients/jwt_tokens.py`.
fn issue() -> Value {
    let out = std::process::Command::new(client_python())
        .arg(repo("tests/clients/jwt_tokens.py"))
        .args([ISSUER, AUDIENCE])
        .output()
        .unwrap();
    serde_json::from_slice(&ok(&out).into_bytes()).unwrap()
}

/// Serves `body` to every request on 127.0.0.1 (any path), counting requests.
async fn static_server(body: String, content_type: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = stream.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    (port, hits)
}

fn manifest(jwks_port: u16, inline: &Value, allowed_origin: &str) -> String {
    format!(
        r#"app = "secure"
[http.cors]
allow_origins = ["{allowed_origin}"]
allow_methods = ["GET", "PUT"]
allow_headers = ["authorization", "content-type"]
expose_headers = ["x-nimbus-invocation-id"]
max_age = 600

[http.authorizers.users]
type = "jwt"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_url = "http://127.0.0.1:{jwks_port}/.well-known/jwks.json"

[http.authorizers.inline]
type = "jwt"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks = '{inline}'

[http.authorizers.qs]
type = "jwt"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks = '{inline}'
identity_source = "$request.querystring.token"

[http.authorizers.gate]
type = "function"
function = "authz"
ttl = "60s"

[functions.whoami]
runtime = "python"
source = "authz"
handler = "app.whoami"
triggers = [
  {{ http = "GET /me", auth = "users", scopes = ["profile"] }},
  {{ http = "GET /me-inline", auth = "inline" }},
  {{ http = "GET /me-qs", auth = "qs" }},
  {{ http = "GET /gated", auth = "gate" }},
  {{ http = "ANY /open" }},
  {{ http = "GET /limited", rate_limit = 2 }},
]

[functions.authz]
runtime = "python"
source = "authz"
handler = "app.authz"
"#
    )
}

fn app_dir(dir: &Path, manifest: &str) -> PathBuf {
    let app = dir.join("app");
    let code = app.join("authz");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::copy(
        repo("tests/fixtures/process/authz/app.py"),
        code.join("app.py"),
    )
    .unwrap();
    std::fs::write(app.join("nimbus.toml"), manifest).unwrap();
    app
}

async fn get(
    server: &Server,
    path: &str,
    token: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut r = reqwest::Client::new().get(format!("{}{path}", server.url));
    if let Some(t) = token {
        r = r.header("authorization", t);
    }
    // A client's own claim to have been authorized is never believed.
    let r = r
        .header(
            "x-nimbus-authorizer",
            r#"{"jwt":{"claims":{"sub":"admin"}}}"#,
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

#[tokio::test]
async fn jwt_authorizers_admit_valid_tokens_only_and_pass_their_claims() {
    let tmp = tempfile::tempdir().unwrap();
    let issued = issue();
    let (jwks_port, jwks_hits) =
        static_server(issued["jwks_url_doc"].to_string(), "application/json").await;
    let dir = app_dir(
        tmp.path(),
        &manifest(jwks_port, &issued["jwks_inline"], "http://127.0.0.1:1"),
    );
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let token = |name: &str| format!("Bearer {}", issued["tokens"][name].as_str().unwrap());

    // Valid tokens of each algorithm, from the fetched and the inline key sets.
    let (status, body, _) = get(&server, "/me", Some(&token("rs256"))).await;
    assert_eq!(status, 200, "{body}");
    let jwt = &body["authorizer"]["jwt"];
    assert_eq!(jwt["claims"]["sub"], "user-1");
    assert_eq!(jwt["claims"]["iss"], ISSUER);
    assert_eq!(jwt["claims"]["name"], "Zoë");
    assert_eq!(jwt["scopes"], json!(["profile", "orders:read"]));
    assert_eq!(body["spoofed"], Value::Null);
    for t in ["es256", "eddsa"] {
        let (status, body, _) = get(&server, "/me-inline", Some(&token(t))).await;
        assert_eq!(status, 200, "{t}: {body}");
        assert_eq!(body["authorizer"]["jwt"]["claims"]["sub"], "user-1");
    }

    // Refusals: 401 for an unknown caller, 403 for a known one without the scope.
    for (name, status, says) in [
        ("expired", 401, "expired"),
        ("wrong_audience", 401, "audience"),
        ("wrong_issuer", 401, "issuer"),
        ("wrong_signature", 401, "signature"),
        ("unsigned", 401, "signing algorithm"),
        ("hs256_with_public_key", 401, "not one of the issuer's keys"),
        ("missing_scope", 403, "profile"),
    ] {
        let (got, body, headers) = get(&server, "/me", Some(&token(name))).await;
        assert_eq!(got, status, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{name}: {message}");
        let www = headers["www-authenticate"].to_str().unwrap();
        assert!(www.starts_with("Bearer error="), "{www}");
    }
    let (status, body, _) = get(&server, "/me", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, _) = get(&server, "/me", Some("Bearer not.a.token")).await;
    assert_eq!(status, 401);
    // An authorizer may take its token from elsewhere: here the query string.
    let eddsa = issued["tokens"]["eddsa"].as_str().unwrap();
    let (status, body, _) = get(&server, &format!("/me-qs?token={eddsa}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["authorizer"]["jwt"]["claims"]["sub"], "user-1");
    let (status, _, _) = get(&server, "/me-qs", Some(&token("eddsa"))).await;
    assert_eq!(status, 401, "the header is not where this authorizer looks");
    // The inline key set does not hold the URL one's keys.
    let (status, _, _) = get(&server, "/me-inline", Some(&token("rs256"))).await;
    assert_eq!(status, 401);
    // The open route stays open; the key set was fetched once for all of the above.
    let (status, body, _) = get(&server, "/open", None).await;
    assert_eq!((status, &body["authorizer"]), (200, &Value::Null));
    assert_eq!(jwks_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn function_authorizers_allow_deny_and_cache_by_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let issued = issue();
    let dir = app_dir(
        tmp.path(),
        // No key set server: routes of the JWT authorizers are not called here.
        &manifest(1, &issued["jwks_inline"], "http://127.0.0.1:1"),
    );
    let server = Server::start(&tmp.path().join("data"), &[]);
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    let (status, body, _) = get(&server, "/gated", Some("Bearer letmein")).await;
    assert_eq!(status, 200, "{body}");
    let lambda = &body["authorizer"]["lambda"];
    assert_eq!(lambda["route"], "GET /gated");
    assert_eq!(lambda["type"], "REQUEST");
    let first_calls = lambda["calls"].as_i64().unwrap();
    // Cached: the same identity is not asked again.
    let (status, body, _) = get(&server, "/gated", Some("Bearer letmein")).await;
    assert_eq!(status, 200);
    assert_eq!(body["authorizer"]["lambda"]["calls"], first_calls);
    // Another identity is: an IAM policy allowing it.
    let (status, body, _) = get(&server, "/gated", Some("Bearer policy")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["authorizer"]["lambda"]["calls"].as_i64().unwrap() > first_calls);
    // Denied, missing identity, and a broken authorizer.
    let (status, body, _) = get(&server, "/gated", Some("Bearer nope")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("gate"));
    let (status, _, _) = get(&server, "/gated", None).await;
    assert_eq!(status, 401);
    let (status, body, _) = get(&server, "/gated", Some("Bearer crash")).await;
    assert_eq!(status, 500, "{body}");
    assert!(!body.to_string().contains("the authorizer broke"), "{body}");
    // A route's own rate limit: a burst of one second's worth, then 429 with Retry-After; the
    // function's other routes are not affected.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = reqwest::get(format!("{}/limited", server.url))
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let body: Value = r.json().await.unwrap();
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("GET /limited")
            );
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (2..=4).contains(&served) && statuses.contains(&429),
        "{statuses:?}"
    );
    for _ in 0..4 {
        assert_eq!(
            reqwest::get(format!("{}/open", server.url))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // The authorizer's four calls (letmein, policy, nope, crash) are recorded as such.
    let records = common::poll(async || {
        let r = server.get_json("/v1/functions/authz/invocations").await;
        (r.as_array()?.len() >= 4).then_some(r)
    })
    .await;
    for r in records.as_array().unwrap() {
        assert_eq!(r["trigger"]["type"], "authorizer", "{r}");
        assert_eq!(r["trigger"]["route"], "GET /gated", "{r}");
    }
}

/// What a page on `origin_port`'s origin got when its script called `url` with a PUT that
/// needs a preflight, as headless Chromium ran it (`RESULT ok STATUS id|noid` or
/// `RESULT blocked ERROR`).
fn browser_result(page_port: u16, profile: &Path) -> String {
    let out = std::process::Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        // The test talks only to this machine: no background services, and every name but
        // 127.0.0.1 fails to resolve.
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--no-first-run",
            "--no-pings",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .args(["--virtual-time-budget=15000", "--dump-dom"])
        .arg(format!("http://127.0.0.1:{page_port}/"))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    dom.lines()
        .find_map(|l| l.split("RESULT ").nth(1))
        .map(|r| r.split('<').next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|| {
            panic!(
                "no result in the page: {dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn page(nimbus: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="r">pending</pre><script>
fetch("{nimbus}/open", {{method: "PUT", headers: {{"content-type": "application/json"}}, body: "{{}}"}})
  .then(r => {{ document.getElementById("r").textContent =
      "RESULT ok " + r.status + " " + (r.headers.get("x-nimbus-invocation-id") ? "id" : "noid"); }})
  .catch(e => {{ document.getElementById("r").textContent = "RESULT blocked " + e.name; }});
</script></body></html>"#
    )
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only_also_to_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let issued = issue();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let (allowed_port, _) = static_server(page(&server.url), "text/html").await;
    let (denied_port, _) = static_server(page(&server.url), "text/html").await;
    let allowed = format!("http://127.0.0.1:{allowed_port}");
    let denied = format!("http://127.0.0.1:{denied_port}");
    let dir = app_dir(tmp.path(), &manifest(1, &issued["jwks_inline"], &allowed));
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));
    let client = reqwest::Client::new();
    let preflight = |origin: &str, method: &str, headers: &str, path: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", server.url))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    let r = preflight(&allowed, "PUT", "Content-Type", "/open")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], allowed.as_str());
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "content-type");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["vary"], "Origin");
    // A JWT route's preflight needs no token (browsers send none).
    let r = preflight(&allowed, "GET", "authorization", "/me")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for (origin, method, headers, says) in [
        (denied.as_str(), "PUT", "content-type", "origin"),
        (allowed.as_str(), "DELETE", "", "DELETE"),
        (allowed.as_str(), "PUT", "x-secret", "x-secret"),
    ] {
        let r = preflight(origin, method, headers, "/open").await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{body}"
        );
    }
    // Actual responses carry the headers for allowed origins, errors included.
    let r = client
        .get(format!("{}/open", server.url))
        .header("origin", &allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], allowed.as_str());
    assert_eq!(
        r.headers()["access-control-expose-headers"],
        "x-nimbus-invocation-id"
    );
    let r = client
        .get(format!("{}/me", server.url))
        .header("origin", &allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], allowed.as_str());
    let r = client
        .get(format!("{}/open", server.url))
        .header("origin", &denied)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // An OPTIONS that is not a preflight reaches the route.
    let r = client
        .request(reqwest::Method::OPTIONS, format!("{}/open", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A real browser: the page on the allowed origin reads the answer and its exposed header;
    // the page on the other origin is refused before its PUT is sent.
    let (a, d) = (tmp.path().join("profile-a"), tmp.path().join("profile-d"));
    let (ok_result, blocked_result) = tokio::task::spawn_blocking(move || {
        (
            browser_result(allowed_port, &a),
            browser_result(denied_port, &d),
        )
    })
    .await
    .unwrap();
    assert_eq!(ok_result, "ok 200 id");
    assert_eq!(blocked_result, "blocked TypeError");
}
