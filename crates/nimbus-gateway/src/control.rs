//! The `/v1` control-plane API. Every route requires `Authorization: Bearer <admin key>`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use nimbus_core::InvocationRecord;
use nimbus_core::api::{DeployRequest, DeployResponse, FunctionInfo, Status};
use nimbus_core::store::LogEntry;
use nimbus_core::usage::{self, Granularity, UsageQuery, UsageReport};
use serde::Deserialize;

use crate::error::ApiError;
use crate::platform::{Platform, blocking};

/// Rejects requests without a valid API key.
pub(crate) async fn require_key(
    State(p): State<Arc<Platform>>,
    request: Request,
    next: Next,
) -> Response {
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match key {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing API key: send `Authorization: Bearer <key>` (the CLI reads NIMBUS_API_KEY; \
             the admin key is in DATA_DIR/admin.key)",
        )
        .into_response(),
        Some(k) if !p.is_valid_key(k.trim()) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "invalid API key")
                .into_response()
        }
        Some(_) => next.run(request).await,
    }
}

pub(crate) async fn status(State(p): State<Arc<Platform>>) -> Json<Status> {
    let stats = p.runtime.stats();
    Json(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_ms: p.uptime().as_millis() as u64,
        functions: p.snapshot().functions.len(),
        compiled: stats.compiled,
        loaded_from_cache: stats.loaded_from_cache,
        isolation: p.process_runtime().isolation().describe(),
    })
}

pub(crate) async fn put_artifact(
    State(p): State<Arc<Platform>>,
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
    p.put_artifact(sha, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn deploy(
    State(p): State<Arc<Platform>>,
    body: Result<Json<DeployRequest>, JsonRejection>,
) -> Result<Json<DeployResponse>, ApiError> {
    let Json(req) = body.map_err(|r| ApiError::bad_request("BadRequest", r.body_text()))?;
    Ok(Json(p.deploy(req).await?))
}

pub(crate) async fn list_apps(
    State(p): State<Arc<Platform>>,
) -> Result<Json<Vec<String>>, ApiError> {
    let store = p.store.clone();
    Ok(Json(blocking(move || store.apps()).await??))
}

pub(crate) async fn delete_app(
    State(p): State<Arc<Platform>>,
    Path(app): Path<String>,
) -> Result<StatusCode, ApiError> {
    if p.remove(None, Some(app.clone())).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no app named `{app}`")))
    }
}

pub(crate) async fn list_functions(State(p): State<Arc<Platform>>) -> Json<Vec<FunctionInfo>> {
    let mut list: Vec<FunctionInfo> = p
        .snapshot()
        .functions
        .values()
        .map(|d| p.describe(d))
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Json(list)
}

pub(crate) async fn get_function(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    p.snapshot()
        .functions
        .get(&name)
        .map(|d| Json(p.describe(d)))
        .ok_or_else(|| ApiError::not_found(format!("no function named `{name}`")))
}

pub(crate) async fn delete_function(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if p.remove(Some(name.clone()), None).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no function named `{name}`")))
    }
}

#[derive(Deserialize)]
pub(crate) struct Page {
    limit: Option<usize>,
    after: Option<i64>,
}

pub(crate) async fn invocations(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<InvocationRecord>>, ApiError> {
    let store = p.store.clone();
    let limit = page.limit.unwrap_or(20).min(1000);
    Ok(Json(
        blocking(move || store.invocations(&name, limit)).await??,
    ))
}

pub(crate) async fn logs(
    State(p): State<Arc<Platform>>,
    Path(name): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<LogEntry>>, ApiError> {
    let store = p.store.clone();
    let (after, limit) = (page.after.unwrap_or(0), page.limit.unwrap_or(100).min(1000));
    Ok(Json(
        blocking(move || store.logs(&name, after, limit)).await??,
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
    State(p): State<Arc<Platform>>,
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
    let now = crate::platform::now_ms();
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
    let store = p.store.clone();
    let (rows, daily) = blocking(move || {
        let rows = store.usage(&query)?;
        let daily = store.usage(&UsageQuery {
            granularity: Granularity::Day,
            ..query
        })?;
        Ok::<_, nimbus_core::StoreError>((rows, daily))
    })
    .await??;
    Ok(Json(usage::report(rows, &daily, &p.config.prices)))
}
