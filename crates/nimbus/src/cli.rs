//! Client verbs: each one is a call (or a few) to a running node's `/v1` API.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use nimbus_client::Client;
use nimbus_core::InvocationRecord;
use nimbus_core::api::FunctionInfo;

use crate::Command;

pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn function_rows(functions: &[FunctionInfo]) -> Vec<Vec<String>> {
    functions
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.app.clone(),
                f.kind.as_str().into(),
                f.version[..12.min(f.version.len())].into(),
                format!("{} MiB", f.memory_mb),
                format!("{} ms", f.timeout_ms),
                f.routes.join(", "),
            ]
        })
        .collect()
}

const FUNCTION_HEADERS: [&str; 7] = [
    "NAME", "APP", "KIND", "VERSION", "MEMORY", "TIMEOUT", "ROUTES",
];

fn record_rows(records: &[InvocationRecord]) -> Vec<Vec<String>> {
    records
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.trigger.to_string(),
                format!("{:.3} ms", r.duration_us as f64 / 1000.0),
                format!("{} ms", r.billed_ms),
                if r.cold_start {
                    format!("cold ({} us)", r.init_us)
                } else {
                    "warm".into()
                },
                match r.error_type {
                    Some(t) => t.to_string(),
                    None => "ok".into(),
                },
            ]
        })
        .collect()
}

/// The key to use: flag/env, else the data dir's admin.key if readable.
fn resolve_key(api_key: Option<String>, data_dir: &Path) -> Option<String> {
    api_key.or_else(|| {
        std::fs::read_to_string(data_dir.join("admin.key"))
            .ok()
            .map(|k| k.trim().to_string())
    })
}

async fn alias(client: &Client, cmd: crate::AliasCommand) -> anyhow::Result<()> {
    use crate::AliasCommand;
    match cmd {
        AliasCommand::Set {
            function,
            name,
            version,
            additional,
            description,
        } => {
            let additional = match additional {
                None => serde_json::Value::Null,
                Some(spec) => {
                    let Some((v, w)) = spec.split_once('=') else {
                        bail!("--additional takes VERSION=WEIGHT, e.g. 4=0.1");
                    };
                    serde_json::json!({ "version": v.parse::<u32>()?, "weight": w.parse::<f64>()? })
                }
            };
            let body = serde_json::json!({
                "version": version, "additional": additional, "description": description,
            });
            client.put_alias(&function, &name, &body).await?;
            println!("Alias `{function}:{name}` points at version {version}.");
        }
        AliasCommand::Ls { function, json } => {
            let aliases = client.aliases(&function).await?;
            if json {
                return print_json(&aliases);
            }
            let rows: Vec<Vec<String>> = aliases
                .iter()
                .map(|a| {
                    let extra = match a["additional"].as_array() {
                        Some(pair) => {
                            format!("{} ({}%)", pair[0], pair[1].as_f64().unwrap_or(0.0) * 100.0)
                        }
                        None => "-".into(),
                    };
                    vec![
                        a["name"].as_str().unwrap_or_default().to_string(),
                        a["version"].to_string(),
                        extra,
                    ]
                })
                .collect();
            print_table(&["ALIAS", "VERSION", "ADDITIONAL"], &rows);
        }
        AliasCommand::Rm { function, name } => {
            client.delete_alias(&function, &name).await?;
            println!("Alias `{function}:{name}` deleted.");
        }
    }
    Ok(())
}

async fn key(client: &Client, cmd: crate::KeyCommand) -> anyhow::Result<()> {
    use crate::KeyCommand;
    match cmd {
        KeyCommand::Create {
            role,
            functions,
            queues,
            topics,
            expires,
            rate,
            burst,
            quota,
            description,
            tenant,
            json,
        } => {
            let (quota, quota_period) = match quota.as_deref().map(|q| q.split_once('/')) {
                None => (None, None),
                Some(Some((n, period))) => (
                    Some(
                        n.parse::<u64>()
                            .context("--quota takes N/day, N/week or N/month")?,
                    ),
                    Some(period.to_string()),
                ),
                Some(None) => bail!("--quota takes N/day, N/week or N/month"),
            };
            let body = serde_json::json!({
                "role": role, "functions": functions, "queues": queues, "topics": topics,
                "expires_in_s": expires.map(|d| d.as_secs().max(1)), "description": description,
                "rate": rate, "burst": burst, "quota": quota, "quota_period": quota_period,
            });
            let k = client
                .call(
                    nimbus_client::Method::POST,
                    &keys_path(tenant.as_deref()),
                    Some(body),
                )
                .await?;
            if json {
                return print_json(&k);
            }
            let s = |f: &str| k[f].as_str().unwrap_or_default().to_string();
            println!("Key {} ({}), shown once:", s("id"), s("role"));
            println!("  {}", s("key"));
            println!("AWS credentials (SigV4 calls act as this key):");
            println!("  aws_access_key_id = {}", s("aws_access_key_id"));
            println!("  aws_secret_access_key = {}", s("aws_secret_access_key"));
            if let Some(at) = k["expires_ms"].as_i64() {
                println!("Expires {}.", nimbus_aws::events::timestamp(at));
            }
        }
        KeyCommand::Ls { tenant, json } => {
            let keys = client
                .call(
                    nimbus_client::Method::GET,
                    &keys_path(tenant.as_deref()),
                    None,
                )
                .await?;
            if json {
                return print_json(&keys);
            }
            let rows: Vec<Vec<String>> = keys
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|k| {
                    let scope: Vec<String> = ["functions", "queues", "topics"]
                        .iter()
                        .filter_map(|kind| {
                            let list = k["scope"][kind].as_array()?;
                            let names: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
                            (!names.is_empty()).then(|| format!("{kind}: {}", names.join(",")))
                        })
                        .collect();
                    let state = match (k["revoked_ms"].as_i64(), k["expires_ms"].as_i64()) {
                        (Some(_), _) => "revoked".to_string(),
                        (None, Some(at)) if at <= nimbus_core::clock::now_ms() => "expired".into(),
                        (None, Some(at)) => format!("until {}", nimbus_aws::events::timestamp(at)),
                        (None, None) => "active".into(),
                    };
                    vec![
                        k["id"].as_str().unwrap_or_default().to_string(),
                        k["role"].as_str().unwrap_or_default().to_string(),
                        if scope.is_empty() {
                            "-".into()
                        } else {
                            scope.join("; ")
                        },
                        state,
                        k["description"].as_str().unwrap_or_default().to_string(),
                    ]
                })
                .collect();
            print_table(&["ID", "ROLE", "SCOPE", "STATE", "DESCRIPTION"], &rows);
        }
        KeyCommand::Revoke { id, tenant } => {
            client
                .call(
                    nimbus_client::Method::DELETE,
                    &format!("{}/{id}", keys_path(tenant.as_deref())),
                    None,
                )
                .await?;
            println!("Key {id} revoked.");
        }
    }
    Ok(())
}

/// Where keys are managed: the caller's tenant's, or (the operator) another tenant's.
fn keys_path(tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("/v1/tenants/{t}/keys"),
        None => "/v1/keys".into(),
    }
}

async fn tenant(client: &Client, cmd: crate::TenantCommand) -> anyhow::Result<()> {
    use crate::TenantCommand;
    match cmd {
        TenantCommand::Create {
            name,
            domains,
            concurrency,
            quota_requests,
            quota_gb_seconds,
            memory,
            storage,
            json,
        } => {
            let limits = nimbus_core::tenant::TenantLimits {
                concurrency,
                monthly_requests: quota_requests,
                monthly_gb_seconds: quota_gb_seconds,
                memory_bytes: memory,
                storage_bytes: storage,
            };
            let body = serde_json::json!({"name": name, "domains": domains, "limits": limits});
            let t = client
                .call(nimbus_client::Method::POST, "/v1/tenants", Some(body))
                .await?;
            if json {
                return print_json(&t);
            }
            println!(
                "Tenant `{name}` created: its routes are at {}{}",
                client.base_url(),
                t["path_prefix"].as_str().unwrap_or_default()
            );
            println!("Give it an admin key: nimbus key create --tenant {name} --role admin");
        }
        TenantCommand::Ls { json } => {
            let tenants = client
                .call(nimbus_client::Method::GET, "/v1/tenants", None)
                .await?;
            if json {
                return print_json(&tenants);
            }
            let mib = |v: &serde_json::Value| {
                v.as_u64()
                    .map_or("-".into(), |b| format!("{} MiB", b >> 20))
            };
            let limit = |v: &serde_json::Value| {
                if v.is_null() {
                    "-".to_string()
                } else {
                    v.to_string()
                }
            };
            let rows: Vec<Vec<String>> = tenants
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    let domains: Vec<&str> = t["domains"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|d| d.as_str())
                        .collect();
                    vec![
                        t["name"].as_str().unwrap_or_default().to_string(),
                        t["path_prefix"].as_str().unwrap_or_default().to_string(),
                        if domains.is_empty() {
                            "-".into()
                        } else {
                            domains.join(",")
                        },
                        limit(&t["limits"]["concurrency"]),
                        limit(&t["limits"]["monthly_requests"]),
                        limit(&t["limits"]["monthly_gb_seconds"]),
                        mib(&t["limits"]["memory_bytes"]),
                        mib(&t["limits"]["storage_bytes"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME",
                    "PREFIX",
                    "DOMAINS",
                    "CONCURRENCY",
                    "REQUESTS/MO",
                    "GB-S/MO",
                    "MEMORY",
                    "STORAGE",
                ],
                &rows,
            );
        }
        TenantCommand::Rm { name } => {
            client
                .call(
                    nimbus_client::Method::DELETE,
                    &format!("/v1/tenants/{name}"),
                    None,
                )
                .await?;
            println!("Tenant `{name}` and everything it owned removed.");
        }
    }
    Ok(())
}

async fn audit(client: &Client, limit: usize, json: bool) -> anyhow::Result<()> {
    let entries = client
        .call(
            nimbus_client::Method::GET,
            &format!("/v1/audit?limit={limit}"),
            None,
        )
        .await?;
    if json {
        return print_json(&entries);
    }
    let rows: Vec<Vec<String>> = entries
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            vec![
                nimbus_aws::events::timestamp(e["at_ms"].as_i64().unwrap_or(0)),
                e["key_id"].as_str().unwrap_or_default().to_string(),
                e["action"].as_str().unwrap_or_default().to_string(),
                e["status"].to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    print_table(&["TIME", "KEY", "ACTION", "STATUS", "DETAIL"], &rows);
    Ok(())
}

async fn secret(client: &Client, cmd: crate::SecretCommand) -> anyhow::Result<()> {
    use crate::SecretCommand;
    match cmd {
        SecretCommand::Set { name, from_file } => {
            let mut value = match from_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        eprintln!("Type the value of `{name}`, then Ctrl-D:");
                    }
                    std::io::read_to_string(std::io::stdin()).context("reading standard input")?
                }
            };
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            let created = client.put_secret(&name, &value).await?;
            println!(
                "Secret `{name}` {}.",
                if created { "created" } else { "updated" }
            );
        }
        SecretCommand::Ls { json } => {
            let secrets = client.secrets().await?;
            if json {
                return print_json(&secrets);
            }
            let rows: Vec<Vec<String>> = secrets
                .iter()
                .map(|s| {
                    let used: Vec<&str> = s["used_by"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
                        .unwrap_or_default();
                    vec![
                        s["name"].as_str().unwrap_or_default().to_string(),
                        nimbus_aws::events::timestamp(s["updated_ms"].as_i64().unwrap_or(0)),
                        if used.is_empty() {
                            "-".into()
                        } else {
                            used.join(", ")
                        },
                    ]
                })
                .collect();
            print_table(&["SECRET", "UPDATED", "USED BY"], &rows);
        }
        SecretCommand::Rm { name } => {
            client.delete_secret(&name).await?;
            println!("Secret `{name}` deleted.");
        }
    }
    Ok(())
}

/// One invocation's output, each line prefixed with the invocation's start time and id.
fn print_log_entry(entry: &nimbus_core::store::LogEntry) {
    let at = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_millis(entry.start_ms.max(0) as u64),
    );
    for line in entry.text.lines() {
        println!("{at} {} {line}", entry.invocation_id);
    }
}

/// Quotes a value for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub async fn run(
    url: &str,
    api_key: Option<String>,
    data_dir: &Path,
    command: Command,
) -> anyhow::Result<()> {
    let client = Client::new(url, resolve_key(api_key, data_dir));
    match command {
        Command::Up(_) => unreachable!("handled by main"),
        Command::Env => {
            let credentials = data_dir.join("aws-credentials");
            if !credentials.exists() {
                bail!(
                    "{} does not exist: start the node with `nimbus up` (and the same --data-dir) first",
                    credentials.display()
                );
            }
            let region = client
                .status()
                .await
                .ok()
                .map(|s| s.region)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "us-east-1".into());
            for (k, v) in [
                ("NIMBUS_URL", url.to_string()),
                ("AWS_ENDPOINT_URL", url.to_string()),
                (
                    "AWS_SHARED_CREDENTIALS_FILE",
                    credentials.display().to_string(),
                ),
                ("AWS_DEFAULT_REGION", region),
            ] {
                println!("export {k}={}", shell_quote(&v));
            }
        }
        Command::Deploy { dir, json } => {
            let app = crate::app_dir::read(&dir)?;
            let mut artifacts = BTreeMap::new();
            for (source, bytes) in app.sources {
                artifacts.insert(source, client.upload_artifact(bytes).await?);
            }
            let report = client.deploy(app.manifest, artifacts).await?;
            if json {
                return print_json(&report);
            }
            if report.changed {
                println!("Deployed app `{}`:", report.app);
            } else {
                println!(
                    "App `{}` is already deployed with this content; nothing changed.",
                    report.app
                );
            }
            print_table(&FUNCTION_HEADERS, &function_rows(&report.functions));
            // A tenant's routes are under its prefix: say so where the routes are listed.
            let routed = report.functions.iter().any(|f| !f.routes.is_empty());
            if routed
                && let Ok(status) = client.status().await
                && !status.route_prefix.is_empty()
            {
                println!(
                    "Routes of tenant `{}` are served at {}{}/... (and on its domains).",
                    status.tenant,
                    client.base_url(),
                    status.route_prefix
                );
            }
        }
        Command::Ls { json } => {
            let functions = client.functions().await?;
            if json {
                return print_json(&functions);
            }
            print_table(&FUNCTION_HEADERS, &function_rows(&functions));
        }
        Command::Show { function, json } => {
            let f = client.function(&function).await?;
            if json {
                return print_json(&f);
            }
            let mut rows = vec![
                ("name", f.name.clone()),
                ("app", f.app.clone()),
                ("kind", f.kind.as_str().into()),
                ("runtime", f.runtime.clone()),
                ("version", f.version.clone()),
                ("memory", format!("{} MiB", f.memory_mb)),
                ("timeout", format!("{} ms", f.timeout_ms)),
                ("routes", f.routes.join(", ")),
                ("env", f.env.join(", ")),
                ("allowed hosts", f.allowed_hosts.join(", ")),
            ];
            if !f.secrets.is_empty() {
                let secrets: Vec<String> = f
                    .secrets
                    .iter()
                    .map(|(var, secret)| format!("{var} (secret {secret})"))
                    .collect();
                rows.push(("secret env", secrets.join(", ")));
            }
            if let Some(h) = &f.handler {
                rows.push(("handler", h.clone()));
            }
            if let Some(n) = f.max_concurrency {
                rows.push(("concurrency", format!("at most {n} at once")));
            }
            rows.push((
                "per instance",
                format!("{} invocation(s) at once", f.concurrency_per_instance),
            ));
            if f.min_instances > 0 {
                rows.push(("min instances", format!("{} kept warm", f.min_instances)));
            }
            if let Some(k) = &f.keep_alive {
                rows.push(("keep-alive", k.clone()));
            }
            if let Some(s) = f.instances {
                let mut line = format!("{} warm, {} busy, {} started", s.idle, s.busy, s.started);
                if f.concurrency_per_instance > 1 {
                    line.push_str(&format!("; {} invocations running", s.running));
                }
                rows.push(("instances", line));
            }
            if let Some(i) = &f.isolation {
                rows.push(("isolation", i.clone()));
            }
            for (k, v) in rows {
                println!("{k:<14} {v}");
            }
        }
        Command::Rm { function, app } => match (function, app) {
            (Some(f), _) => {
                client.remove_function(&f).await?;
                println!("Removed function `{f}`.");
            }
            (None, Some(a)) => {
                client.remove_app(&a).await?;
                println!("Removed app `{a}`.");
            }
            (None, None) => bail!("name a function, or an app with --app"),
        },
        Command::Invoke {
            function,
            data,
            asynchronous: true,
            idempotency_key,
            qualifier,
            ..
        } => {
            let id = client
                .invoke_async(
                    &function,
                    qualifier.as_deref(),
                    data.into_bytes(),
                    idempotency_key.as_deref(),
                )
                .await?;
            println!("{id}");
        }
        Command::Invoke {
            function,
            data,
            event_type,
            qualifier,
            ..
        } => {
            let inv = client
                .invoke(
                    &function,
                    qualifier.as_deref(),
                    data.into_bytes(),
                    event_type.as_deref(),
                )
                .await?;
            if let Some(kind) = inv.error_type {
                let message = serde_json::from_slice::<nimbus_core::api::ErrorBody>(&inv.body)
                    .map(|b| b.error.message)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&inv.body).into_owned());
                bail!(
                    "{kind}: {message} (invocation {})",
                    inv.id.unwrap_or_default()
                );
            }
            println!("{}", String::from_utf8_lossy(&inv.body));
        }
        Command::Publish {
            function,
            description,
        } => {
            let v = client.publish_version(&function, &description).await?;
            println!(
                "Published `{function}` version {} (code {}).",
                v["number"],
                v["version"]["id"]
                    .as_str()
                    .map_or("", |id| &id[..12.min(id.len())])
            );
        }
        Command::Versions { function, json } => {
            let versions = client.published_versions(&function).await?;
            if json {
                return print_json(&versions);
            }
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    let id = v["version"]["id"].as_str().unwrap_or_default();
                    vec![
                        v["number"].to_string(),
                        id[..12.min(id.len())].to_string(),
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH
                                + Duration::from_millis(v["published_ms"].as_u64().unwrap_or(0)),
                        )
                        .to_string(),
                        v["description"].as_str().unwrap_or_default().to_string(),
                    ]
                })
                .collect();
            print_table(&["VERSION", "CODE", "PUBLISHED", "DESCRIPTION"], &rows);
        }
        Command::Alias(cmd) => alias(&client, cmd).await?,
        Command::Secret(cmd) => secret(&client, cmd).await?,
        Command::Key(cmd) => key(&client, cmd).await?,
        Command::Tenant(cmd) => tenant(&client, cmd).await?,
        Command::Audit { limit, json } => audit(&client, limit, json).await?,
        Command::Logs {
            function,
            follow,
            tail,
            since,
        } => {
            // Fail clearly on an unknown function.
            client.function(&function).await?;
            let since_ms = since.map_or(0, |d| {
                nimbus_core::clock::now_ms().saturating_sub(d.as_millis() as i64)
            });
            // `-f` alone starts from now; otherwise the newest entries come first.
            let shown = tail.unwrap_or(if follow && since.is_none() { 0 } else { 20 });
            let mut after = 0;
            if shown > 0 || since.is_some() {
                let limit = if shown == 0 { 1000 } else { shown.min(1000) };
                for entry in client.recent_logs(&function, limit, since_ms).await? {
                    print_log_entry(&entry);
                    after = entry.seq;
                }
            }
            if follow && after == 0 {
                // The cursor of the newest entry, not printed.
                after = client
                    .recent_logs(&function, 1, 0)
                    .await?
                    .last()
                    .map_or(0, |e| e.seq);
            }
            if follow {
                loop {
                    for entry in client.logs(&function, after).await? {
                        print_log_entry(&entry);
                        after = entry.seq;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Command::Invocations {
            function,
            limit,
            json,
        } => {
            let records = client.invocations(&function, limit).await?;
            if json {
                return print_json(&records);
            }
            print_table(
                &["ID", "TRIGGER", "DURATION", "BILLED", "COLD", "OUTCOME"],
                &record_rows(&records),
            );
        }
        Command::Invocation { id } => print_json(&client.invocation(&id).await?)?,
        Command::Usage {
            function,
            from,
            to,
            by,
            tenant,
            json,
            csv,
        } => {
            let mut query = vec![format!("by={by}")];
            for (k, v) in [("function", function), ("from", from), ("to", to)] {
                if let Some(v) = v {
                    query.push(format!("{k}={v}"));
                }
            }
            let report = match tenant {
                Some(t) => client.tenant_usage(&t, &query.join("&")).await?,
                None => client.usage(&query.join("&")).await?,
            };
            if json {
                return print_json(&report);
            }
            let row = |r: &nimbus_core::usage::UsageRow| {
                vec![
                    nimbus_aws::events::timestamp(r.period_start_ms),
                    r.function.clone(),
                    r.requests.to_string(),
                    r.errors.to_string(),
                    r.cold_starts.to_string(),
                    r.billed_ms.to_string(),
                    format!("{:.6}", r.gb_seconds()),
                ]
            };
            let headers = [
                "PERIOD",
                "FUNCTION",
                "REQUESTS",
                "ERRORS",
                "COLD",
                "BILLED_MS",
                "GB_S",
            ];
            let mut rows: Vec<Vec<String>> = report.rows.iter().map(row).collect();
            rows.push(row(&report.total));
            if csv {
                println!("{}", headers.join(",").to_lowercase());
                for r in rows {
                    println!("{}", r.join(","));
                }
                return Ok(());
            }
            print_table(&headers, &rows);
            println!(
                "cost: {:.6} {} (compute {:.6}, requests {:.6}; free tier taken off per month)",
                report.cost.total, report.cost.currency, report.cost.compute, report.cost.requests
            );
        }
        Command::Executions {
            verb: _,
            function,
            status,
            limit,
            json,
        } => crate::durable_cli::list(&client, &function, status, limit, json).await?,
        Command::Execution(c) => crate::durable_cli::execution(&client, c).await?,
        Command::Callback(c) => crate::durable_cli::callback(&client, c).await?,
        Command::Queue(c) => crate::events_cli::queue(&client, c).await?,
        Command::Topic(c) => crate::events_cli::topic(&client, c).await?,
        Command::Schedule(c) => crate::events_cli::schedule(&client, c).await?,
        Command::Dlq(c) => crate::events_cli::dlq(&client, c).await?,
        Command::Workflows(c) => crate::workflows_cli::workflows(&client, c).await?,
    }
    Ok(())
}
