//! End-to-end tests of secrets: set from the CLI, granted through `env`, readable by the
//! function that names them only, replaced live, refused when missing or in use, rotated to a
//! new key — and absent from every output path (the data dir, the server's log, records, logs,
//! listings).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Server, failed, ok, repo};
use serde_json::{Value, json};
use sha2::Digest;

const FIRST: &str = "hunter2-Xq7Zr9-first";
const SECOND: &str = "correct-horse-Wv3Kp8-second";

fn sha(v: &str) -> String {
    hex::encode(sha2::Sha256::digest(v.as_bytes()))
}

fn app(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let app = dir.join(name);
    std::fs::create_dir_all(app.join("code")).unwrap();
    std::fs::copy(
        repo("tests/fixtures/process/secrets/app.py"),
        app.join("code/app.py"),
    )
    .unwrap();
    std::fs::write(
        app.join("nimbus.toml"),
        format!(
            r#"app = "{name}"
[functions.granted]
runtime = "python"
source = "code"
handler = "app.check"
env = {{ DB_PASSWORD = {{ secret = "{secret}" }}, GREETING = "hi" }}
[functions.other]
runtime = "python"
source = "code"
handler = "app.check"
"#
        ),
    )
    .unwrap();
    app
}

fn start(data: &Path, log: &Path, env: &[&str], extra: &[&str]) -> Server {
    let redirect = format!("exec \"$0\" \"$@\" 2>>{}", log.display());
    let mut wrapper = vec!["env"];
    wrapper.extend_from_slice(env);
    wrapper.extend_from_slice(&["sh", "-c", &redirect]);
    Server::start_with(&wrapper, data, extra)
}

async fn check(server: &Server, function: &str) -> Value {
    let r = server.invoke(function, &json!({})).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(p);
            }
        }
    }
    found
}

#[tokio::test]
async fn secrets_reach_granted_functions_only_and_never_leave_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, log) = (tmp.path().join("data"), tmp.path().join("server.log"));
    let server = start(&data, &log, &[], &[]);
    let value_file = tmp.path().join("value");
    std::fs::write(&value_file, format!("{FIRST}\n")).unwrap();

    // A deploy naming a secret that does not exist is refused, naming it.
    let dir = app(tmp.path(), "vault", "db");
    let err = failed(&server.cli(&["deploy", dir.to_str().unwrap()]));
    assert!(err.contains("no secret `db`"), "{err}");
    assert!(err.contains("functions.granted.env"), "{err}");

    let out = ok(&server.cli(&[
        "secret",
        "set",
        "db",
        "--from-file",
        value_file.to_str().unwrap(),
    ]));
    assert!(out.contains("Secret `db` created"), "{out}");
    std::fs::remove_file(&value_file).unwrap();
    ok(&server.cli(&["deploy", dir.to_str().unwrap()]));

    let granted = check(&server, "granted").await;
    assert_eq!(granted["has"], true);
    assert_eq!(
        granted["sha256"],
        sha(FIRST),
        "the trailing newline is dropped"
    );
    assert_eq!(granted["greeting"], "hi");
    let other = check(&server, "other").await;
    assert_eq!(other["has"], false);

    // Replaced over the API: the function gets the new value on its next invocation.
    let r = reqwest::Client::new()
        .put(format!("{}/v1/secrets/db", server.url))
        .bearer_auth(&server.key)
        .json(&json!({ "value": SECOND }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(check(&server, "granted").await["sha256"], sha(SECOND));

    // Listed without values; not deletable while used; bad names and values refused.
    let listing = ok(&server.cli(&["secret", "ls"]));
    assert!(
        listing.contains("db") && listing.contains("granted"),
        "{listing}"
    );
    let json_listing = ok(&server.cli(&["secret", "ls", "--json"]));
    let parsed: Value = serde_json::from_str(&json_listing).unwrap();
    assert_eq!(parsed[0]["used_by"], json!(["granted"]));
    let err = failed(&server.cli(&["secret", "rm", "db"]));
    assert!(err.contains("used by granted"), "{err}");
    for (name, body, status) in [
        ("bad name!", json!({"value": "x"}), 400),
        ("ok", json!({"value": ""}), 400),
        ("ok", json!({"value": "x".repeat(40_000)}), 400),
        ("ok", json!({"v": "x"}), 400),
    ] {
        let r = reqwest::Client::new()
            .put(format!(
                "{}/v1/secrets/{}",
                server.url,
                name.replace(' ', "%20")
            ))
            .bearer_auth(&server.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{name} {body}");
    }

    // Nowhere to be read: API outputs, the data dir, the server's log.
    let outputs = [
        server.get_json("/v1/functions/granted").await.to_string(),
        server.get_json("/v1/secrets").await.to_string(),
        server
            .get_json("/v1/functions/granted/invocations")
            .await
            .to_string(),
        server
            .get_json("/v1/functions/granted/logs")
            .await
            .to_string(),
        ok(&server.cli(&["show", "granted"])),
        ok(&server.cli(&["logs", "granted"])),
    ];
    for text in &outputs {
        for v in [FIRST, SECOND] {
            assert!(!text.contains(v), "{text}");
        }
    }
    assert!(
        outputs[3].contains("DB_PASSWORD"),
        "the function ran and logged: {}",
        outputs[3]
    );
    assert!(
        outputs[4].contains("DB_PASSWORD (secret db)"),
        "{}",
        outputs[4]
    );
    server.stop();
    for v in [FIRST, SECOND] {
        assert_eq!(files_containing(&data, v), Vec::<PathBuf>::new());
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!log_text.contains(v));
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("secrets.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // A key rotation: the new key in NIMBUS_SECRETS_KEY, the old file as the previous key.
    let new_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let env = format!("NIMBUS_SECRETS_KEY={new_key}");
    let old_key = data.join("secrets.key");
    let server = start(
        &data,
        &log,
        &[&env],
        &["--secrets-previous-key-file", old_key.to_str().unwrap()],
    );
    assert_eq!(check(&server, "granted").await["sha256"], sha(SECOND));
    server.stop();
    // Resealed at that start: the old key is no longer needed.
    std::fs::remove_file(&old_key).unwrap();
    let server = start(&data, &log, &[&env], &[]);
    assert_eq!(check(&server, "granted").await["sha256"], sha(SECOND));
    // Once no function uses it, it can go.
    ok(&server.cli(&["rm", "granted"]));
    ok(&server.cli(&["secret", "rm", "db"]));
    let err = failed(&server.cli(&["secret", "rm", "db"]));
    assert!(err.contains("no secret `db`"), "{err}");
    server.stop();
}
