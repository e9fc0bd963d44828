//! `/v1/secrets`: set, list and delete the tenant's secrets. A value goes in once and never
//! comes out of the API: listings show names, times and the functions using each.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use http::StatusCode;
use nimbus_invoker::SecretListing;
use serde::Deserialize;

use crate::Gateway;
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretBody {
    value: String,
}

/// `GET /v1/secrets`.
pub(crate) async fn list(
    State(g): State<Arc<Gateway>>,
) -> Result<Json<Vec<SecretListing>>, ApiError> {
    Ok(Json(g.invoker.secrets().await?))
}

/// `PUT /v1/secrets/{name}` with `{"value": "..."}`: 201 when new, 204 when replaced.
pub(crate) async fn put(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Result<Json<SecretBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    // The rejection's text could quote the value: it is not repeated.
    let Json(b) = body.map_err(|_| {
        ApiError::bad_request("InvalidRequest", "the body must be {\"value\": \"TEXT\"}")
    })?;
    Ok(if g.invoker.put_secret(&name, b.value).await? {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// `DELETE /v1/secrets/{name}`: 204, 404 when absent, 409 while a function uses it.
pub(crate) async fn delete(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    g.invoker.delete_secret(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
