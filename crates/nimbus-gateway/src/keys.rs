//! `/v1/keys` and `/v1/audit`: make, list and revoke API keys (a new key and its AWS secret are
//! shown once), and read the audit log. Admin keys only (`keys:manage`, `audit:read`).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use nimbus_core::keys::{KeyInfo, KeyScope, QuotaPeriod, Role, UsagePlan};
use nimbus_core::store::AuditEntry;
use nimbus_invoker::{CreatedKey, KeyRequest};
use serde::{Deserialize, Serialize};

use crate::Gateway;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyBody {
    role: String,
    #[serde(default)]
    description: String,
    /// Seconds until it expires.
    expires_in_s: Option<u64>,
    #[serde(default)]
    functions: Vec<String>,
    #[serde(default)]
    queues: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    /// Usage plan on API-key routes: requests per second.
    rate: Option<u32>,
    /// Requests at once above the rate.
    burst: Option<u32>,
    /// Requests per `quota_period`.
    quota: Option<u64>,
    /// `day` (default), `week` or `month`.
    quota_period: Option<String>,
}

/// The usage plan a key request asks for, checked.
fn plan(b: &KeyBody) -> Result<Option<UsagePlan>, ApiError> {
    let bad = |m: &str| ApiError::bad_request("InvalidRequest", m.to_string());
    if b.rate.is_none() && b.burst.is_none() && b.quota.is_none() && b.quota_period.is_none() {
        return Ok(None);
    }
    if b.rate == Some(0) || b.burst == Some(0) || b.quota == Some(0) {
        return Err(bad("rate, burst and quota must be positive"));
    }
    if b.burst.is_some() && b.rate.is_none() {
        return Err(bad("a burst needs a rate"));
    }
    let period = match b.quota_period.as_deref() {
        None => QuotaPeriod::Day,
        Some(p) => {
            QuotaPeriod::parse(p).ok_or_else(|| bad("quota_period is day, week or month"))?
        }
    };
    if b.quota_period.is_some() && b.quota.is_none() {
        return Err(bad("a quota_period needs a quota"));
    }
    Ok(Some(UsagePlan {
        rate: b.rate,
        burst: b.burst,
        quota: b.quota,
        period,
    }))
}

/// A key as listed.
#[derive(Serialize)]
pub(crate) struct KeyListing {
    #[serde(flatten)]
    info: KeyInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_ms: Option<i64>,
}

/// `POST /v1/keys`: 201 with the key and its AWS credentials, shown this once.
pub(crate) async fn create(
    State(g): State<Arc<Gateway>>,
    body: Result<Json<KeyBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let Json(b) = body.map_err(|r| ApiError::bad_request("InvalidRequest", r.body_text()))?;
    let role = Role::parse(&b.role).ok_or_else(|| {
        ApiError::bad_request(
            "InvalidRequest",
            format!(
                "`{}` is not a role (admin, deployer, invoker, reader)",
                b.role
            ),
        )
    })?;
    if b.expires_in_s == Some(0) {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            "expires_in_s must be positive",
        ));
    }
    let plan = plan(&b)?;
    let created = g
        .invoker
        .create_key(KeyRequest {
            plan,
            role,
            scope: KeyScope {
                functions: b.functions,
                queues: b.queues,
                topics: b.topics,
            },
            description: b.description,
            expires_in: b.expires_in_s.map(std::time::Duration::from_secs),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /v1/keys`: every key made (never the keys themselves).
pub(crate) async fn list(State(g): State<Arc<Gateway>>) -> Result<Json<Vec<KeyListing>>, ApiError> {
    Ok(Json(
        g.invoker
            .keys()
            .await?
            .into_iter()
            .map(|(info, revoked_ms)| KeyListing { info, revoked_ms })
            .collect(),
    ))
}

/// `DELETE /v1/keys/{id}`: revokes it; its next call is refused.
pub(crate) async fn revoke(
    State(g): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    g.invoker.revoke_key(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /v1/audit?limit=N`: the newest entries (default 100), oldest first.
pub(crate) async fn audit(
    State(g): State<Arc<Gateway>>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let store = g.invoker.store().clone();
    let entries = tokio::task::spawn_blocking(move || store.audit(limit))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    Ok(Json(entries))
}
