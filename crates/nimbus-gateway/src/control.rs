//! The `/v1` control-plane API and `/metrics`. Every route requires
//! `Authorization: Bearer <key>` whose role holds the call's permission (`require_key`).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use nimbus_core::api::{DeployRequest, DeployResponse, FunctionInfo, Status};
use nimbus_core::clock::now_ms;
use nimbus_core::store::{AuditEntry, LogEntry};
use nimbus_core::usage::{self, Granularity, UsageQuery, UsageReport};
use nimbus_core::{InvocationRecord, Store, StoreError};
use nimbus_invoker::Removal;
use serde::Deserialize;

use crate::Gateway;
use crate::error::ApiError;

/// Runs a store read on the blocking pool.
async fn read<T: Send + 'static>(
    g: &Gateway,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = g.invoker.store().clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(ApiError::from)
}

/// The API key a request carries (`Authorization: Bearer KEY`).
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Rejects requests without a valid API key, or whose key lacks the permission the call
/// needs (`nimbus_core::keys::permission`; a call the table does not know is for admins).
/// Control-plane changes and refusals go to the audit log.
pub(crate) async fn require_key(
    State(g): State<Arc<Gateway>>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = bearer(request.headers());
    let principal = match key.map(|k| g.invoker.access().authenticate(k.trim(), now_ms())) {
        None => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "missing API key: send `Authorization: Bearer <key>` (the CLI reads \
                 NIMBUS_API_KEY; the admin key is in DATA_DIR/admin.key)",
            )
            .into_response();
        }
        Some(Err(e)) => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", e.to_string())
                .into_response();
        }
        Some(Ok(p)) => p,
    };
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let path = request.uri().path().to_string();
    let action = format!("{method} {path}");
    let need = nimbus_core::keys::permission(&method, &route);
    let checked = match need {
        Some((permission, param)) => {
            let resource = param.and_then(|p| path_param(&route, &path, p));
            match principal.check(permission, resource.as_deref()) {
                // A function's resource policy may let the key invoke it all the same.
                Err(_)
                    if permission == nimbus_core::keys::Permission::FunctionsInvoke
                        && g.invoker
                            .granted_by_policy(&principal, resource.as_deref().unwrap_or(""))
                            .await =>
                {
                    Ok(())
                }
                other => other,
            }
        }
        None if principal.role == nimbus_core::keys::Role::Admin => Ok(()),
        None => principal.check(nimbus_core::keys::Permission::KeysManage, None),
    };
    if let Err(denied) = checked {
        g.invoker
            .audit(AuditEntry {
                seq: 0,
                at_ms: now_ms(),
                key_id: principal.key_id,
                action,
                status: 403,
                detail: denied.to_string(),
            })
            .await;
        return ApiError::new(StatusCode::FORBIDDEN, "AccessDenied", denied.to_string())
            .into_response();
    }
    let key_id = principal.key_id.clone();
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    // Changes to the control plane are audited; data-plane calls (invoke, send, publish) are
    // in the invocation records and the event log.
    let data_plane = need.is_some_and(|(p, _)| {
        use nimbus_core::keys::Permission::*;
        matches!(
            p,
            FunctionsInvoke | QueuesSend | TopicsPublish | EventsIngest
        )
    });
    if method != "GET" && method != "HEAD" && !data_plane {
        g.invoker
            .audit(AuditEntry {
                seq: 0,
                at_ms: now_ms(),
                key_id,
                action,
                status: response.status().as_u16(),
                detail: String::new(),
            })
            .await;
    }
    response
}

/// The value of parameter `name` in `path`, matched against `route` (`/v1/x/{name}/y`).
fn path_param(route: &str, path: &str, name: &str) -> Option<String> {
    let wanted = format!("{{{name}}}");
    let index = route.split('/').position(|s| s == wanted)?;
    let raw = path.split('/').nth(index)?;
    Some(
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

pub(crate) async fn status(State(g): State<Arc<Gateway>>) -> Json<Status> {
    Json(g.invoker.status())
}

/// `GET /healthz`: the node is up and serving HTTP (liveness).
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the node takes work — its event engine runs (readiness); 503 until then.
pub(crate) async fn readyz(State(g): State<Arc<Gateway>>) -> Response {
    match g.invoker.engine() {
        Ok(_) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready", "reason": e.to_string() })),
        )
            .into_response(),
    }
}

pub(crate) async fn put_artifact(
    State(g): State<Arc<Gateway>>,
    Path(sha): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|r| {
        ApiError::new(
            r.status(),
            "BadArtifact",
            format!("artifact upload failed: {}", r.body_text()),
        )
    })?;
    g.invoker.put_artifact(sha, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn deploy(
    State(g): State<Arc<Gateway>>,
    body: Result<Json<DeployRequest>, JsonRejection>,
) -> Result<Json<DeployResponse>, ApiError> {
    let Json(req) = body.map_err(|r| ApiError::bad_request("BadRequest", r.body_text()))?;
    Ok(Json(g.invoker.deploy(req).await?))
}

pub(crate) async fn list_apps(
    State(g): State<Arc<Gateway>>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(read(&g, |s| s.apps()).await?))
}

pub(crate) async fn delete_app(
    State(g): State<Arc<Gateway>>,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    if g.invoker.remove(Removal::App(app.clone())).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no app named `{app}`")))
    }
}

pub(crate) async fn list_functions(State(g): State<Arc<Gateway>>) -> Json<Vec<FunctionInfo>> {
    Json(g.invoker.functions())
}

pub(crate) async fn get_function(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    g.invoker
        .function(&name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no function named `{name}`")))
}

pub(crate) async fn delete_function(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if g.invoker.remove(Removal::Function(name.clone())).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no function named `{name}`")))
    }
}

#[derive(Deserialize)]
pub(crate) struct Page {
    limit: Option<usize>,
}

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    limit: Option<usize>,
    /// Entries after this cursor, oldest first (following).
    after: Option<i64>,
    /// Without `after`: the newest `limit` entries of invocations started at or after this
    /// time (unix ms).
    since: Option<i64>,
}

pub(crate) async fn invocations(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<InvocationRecord>>, ApiError> {
    let limit = page.limit.unwrap_or(20).min(1000);
    Ok(Json(read(&g, move |s| s.invocations(&name, limit)).await?))
}

/// `GET /v1/functions/{name}/logs`: with `after`, the entries after that cursor, oldest first;
/// else the newest `limit` (default 100) entries since `since` — what a user asks first.
pub(crate) async fn logs(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Vec<LogEntry>>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    Ok(Json(
        read(&g, move |s| match q.after {
            Some(after) => s.logs(&name, after, limit),
            None => s.recent_logs(&name, q.since.unwrap_or(0), limit),
        })
        .await?,
    ))
}

#[derive(Deserialize)]
pub(crate) struct UsageParams {
    function: Option<String>,
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
}

/// `GET /v1/usage?function=&from=&to=&by=hour|day|total`: usage aggregated from the records and
/// its cost under the price sheet (default range: this calendar month).
pub(crate) async fn usage(
    State(g): State<Arc<Gateway>>,
    Query(q): Query<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let time = |name: &str, v: &Option<String>, default: i64| match v {
        None => Ok(default),
        Some(text) => usage::parse_time(text).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidRequest",
                format!("{name}=`{text}`: write unix ms, a date (2026-11-01) or an RFC 3339 time"),
            )
        }),
    };
    let now = now_ms();
    let to = time("to", &q.to, now + 1)?;
    let from = time("from", &q.from, usage::month_start(now))?;
    let granularity = match q.by.as_deref() {
        None | Some("day") => Granularity::Day,
        Some("hour") => Granularity::Hour,
        Some("total") => Granularity::Total,
        Some(other) => {
            return Err(ApiError::bad_request(
                "InvalidRequest",
                format!("by=`{other}`: write hour, day or total"),
            ));
        }
    };
    let query = UsageQuery {
        function: q.function,
        from_ms: from,
        to_ms: to,
        granularity,
    };
    let (rows, daily) = read(&g, move |s| {
        let rows = s.usage(&query)?;
        let daily = s.usage(&UsageQuery {
            granularity: Granularity::Day,
            ..query
        })?;
        Ok((rows, daily))
    })
    .await?;
    Ok(Json(usage::report(rows, &daily, &g.config.prices)))
}

/// `GET /metrics`: the Prometheus text format (version 0.0.4).
pub(crate) async fn metrics(State(g): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    let text = g.invoker.render_metrics().await?;
    Ok((
        [(header::CONTENT_TYPE, nimbus_invoker::METRICS_CONTENT_TYPE)],
        text,
    )
        .into_response())
}

#[derive(Deserialize, Default)]
pub(crate) struct PublishBody {
    #[serde(default)]
    description: String,
}

/// `POST /v1/functions/{name}/versions`: publishes the deployed code as the next version.
pub(crate) async fn publish_version(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Option<Json<PublishBody>>,
) -> Result<Response, ApiError> {
    let description = body.map(|b| b.0.description).unwrap_or_default();
    let p = g.invoker.publish_version(&name, &description).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// `GET /v1/functions/{name}/versions`: the published versions, oldest first.
pub(crate) async fn published_versions(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<nimbus_core::store::PublishedVersion>>, ApiError> {
    Ok(Json(g.invoker.published_versions(&name).await?))
}

/// `GET /v1/functions/{name}/aliases`.
pub(crate) async fn aliases(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<nimbus_core::store::Alias>>, ApiError> {
    Ok(Json(g.invoker.aliases(&name).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasBody {
    version: u32,
    /// `{version, weight}`: a share of invocations for a second version.
    additional: Option<Additional>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Additional {
    version: u32,
    weight: f64,
}

/// `PUT /v1/functions/{name}/aliases/{alias}`: creates or moves an alias.
pub(crate) async fn put_alias(
    State(g): State<Arc<Gateway>>,
    Path((name, alias)): Path<(String, String)>,
    body: Result<Json<AliasBody>, JsonRejection>,
) -> Result<Json<nimbus_core::store::Alias>, ApiError> {
    let Json(b) = body.map_err(|r| ApiError::bad_request("InvalidRequest", r.body_text()))?;
    let alias = nimbus_core::store::Alias {
        function: name,
        name: alias,
        version: b.version,
        additional: b.additional.map(|a| (a.version, a.weight)),
        description: b.description,
    };
    Ok(Json(
        g.invoker
            .put_alias(alias, nimbus_invoker::AliasWrite::Upsert)
            .await?,
    ))
}

/// `DELETE /v1/functions/{name}/aliases/{alias}`.
pub(crate) async fn delete_alias(
    State(g): State<Arc<Gateway>>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if g.invoker.delete_alias(&name, &alias).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "`{name}` has no alias `{alias}`"
        )))
    }
}
