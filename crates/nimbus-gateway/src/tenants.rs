//! Tenants at the HTTP edge: which tenant's gateway serves a request, and the operator's
//! `/v1/tenants` API.
//!
//! Every tenant has its own [`Gateway`] (its invoker, route limiters and authorizer caches)
//! and router, made on first use. [`dispatch`] sends a request to one of them:
//! - `/tenants/{name}/…` → that tenant, the prefix removed;
//! - a `Host` a tenant claims → that tenant;
//! - a control-plane call (`/v1`, the Lambda API, `/metrics`) → the tenant whose API key
//!   (`Authorization: Bearer`) or AWS access key id (SigV4) the call carries;
//! - anything else → the default tenant (the node's own routes at the root).
//!
//! The operator (an admin key of the default tenant) creates, lists and removes tenants and
//! makes their keys; a tenant's own keys reach only that tenant.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, Uri, header};
use nimbus_core::clock::now_ms;
use nimbus_core::tenant::{TENANT_PATH_PREFIX, Tenant, TenantLimits};
use nimbus_invoker::{AuthError, Invoker, Tenancy};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use crate::error::ApiError;
use crate::{Gateway, GatewayConfig};

/// How long a removed tenant's consumers get to settle.
const REMOVE_GRACE: Duration = Duration::from_secs(30);

/// The tenants' gateways, made on first use.
pub(crate) struct Tenants {
    pub(crate) tenancy: Arc<Tenancy>,
    config: GatewayConfig,
    built: RwLock<HashMap<String, (Arc<Gateway>, Router)>>,
}

impl Tenants {
    pub(crate) fn new(tenancy: Arc<Tenancy>, config: GatewayConfig) -> Self {
        Self {
            tenancy,
            config,
            built: RwLock::default(),
        }
    }

    /// Tenant `name`'s gateway and router (not the default tenant's), if it exists.
    fn get(&self, name: &str) -> Option<(Arc<Gateway>, Router)> {
        if name == nimbus_core::DEFAULT_TENANT {
            return None;
        }
        let invoker = self.tenancy.get(name)?;
        let current = |built: &HashMap<String, (Arc<Gateway>, Router)>| {
            built
                .get(name)
                .filter(|(g, _)| Arc::ptr_eq(&g.invoker, &invoker))
                .cloned()
        };
        if let Some(hit) = current(&self.built.read().unwrap_or_else(|p| p.into_inner())) {
            return Some(hit);
        }
        let mut built = self.built.write().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = current(&built) {
            return Some(hit);
        }
        let gateway = Arc::new(Gateway::new(invoker, self.config.clone(), None));
        let router = crate::build(gateway.clone());
        built.insert(name.to_string(), (gateway.clone(), router.clone()));
        Some((gateway, router))
    }

    fn forget(&self, name: &str) {
        self.built
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// What [`dispatch`] needs: the tenants, and the default tenant's plain router (for
/// `/tenants/default/…`).
#[derive(Clone)]
pub(crate) struct Dispatch {
    pub(crate) tenants: Arc<Tenants>,
    pub(crate) default: Router,
}

/// Whether `path` is a control-plane call (whose tenant is the caller's credential's).
pub(crate) fn is_control_path(path: &str) -> bool {
    path == "/metrics"
        || path == "/v1"
        || path.starts_with("/v1/")
        || path.starts_with("/2015-03-31/")
        || path.starts_with("/2025-12-01/")
}

/// The credential a control-plane call carries.
#[derive(Debug, PartialEq, Eq)]
enum Credential<'a> {
    /// A Nimbus API key.
    Key(&'a str),
    /// An AWS access key id (SigV4, in the header or a presigned query).
    AccessKeyId(&'a str),
}

fn credential(request: &Request) -> Option<Credential<'_>> {
    if let Some(auth) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(key) = auth.strip_prefix("Bearer ") {
            return Some(Credential::Key(key.trim()));
        }
        if let Some((_, rest)) = auth.split_once("Credential=") {
            return rest.split('/').next().map(Credential::AccessKeyId);
        }
    }
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("X-Amz-Credential=")?;
        let end = value
            .find("%2F")
            .or_else(|| value.find("%2f"))
            .or_else(|| value.find('/'))?;
        Some(Credential::AccessKeyId(&value[..end]))
    })
}

/// The tenant (other than the default one) whose credential a request carries.
fn tenant_of(tenancy: &Tenancy, credential: Credential<'_>) -> Option<Arc<Invoker>> {
    let default = tenancy.default_invoker().access();
    match credential {
        Credential::Key(key) => {
            if !matches!(default.authenticate(key, now_ms()), Err(AuthError::Invalid)) {
                return None;
            }
            tenancy.by_key(key)
        }
        Credential::AccessKeyId(id) => {
            if default.aws_secret(id).is_some() {
                return None;
            }
            tenancy.by_access_key_id(id)
        }
    }
}

/// Sends a request to the gateway of its tenant (see the module documentation).
pub(crate) async fn dispatch(State(d): State<Dispatch>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let prefixed = path.starts_with(TENANT_PATH_PREFIX);
    if !prefixed && !d.tenants.tenancy.is_multi_tenant() {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host());
    let target = d.tenants.tenancy.resolve(host, path);
    let (name, new_path) = match target.tenant {
        Some(name) => {
            let new_path = (target.path != path).then(|| target.path.to_string());
            (name, new_path)
        }
        // The Step Functions API is at `/`: its calls are told by their target header.
        None if is_control_path(path)
            || crate::stepfunctions::is_call(
                request.method().as_str(),
                path,
                request.headers(),
            ) =>
        {
            let owner = credential(&request).and_then(|c| tenant_of(&d.tenants.tenancy, c));
            match owner {
                Some(invoker) => (invoker.store().tenant().to_string(), None),
                None => return next.run(request).await,
            }
        }
        None => return next.run(request).await,
    };
    // A fresh request for the tenant's router, which matches the path afresh: the default
    // router's path parameters and matched path stay behind; the client's address goes on.
    let (parts, body) = request.into_parts();
    let uri = match new_path {
        None => parts.uri,
        Some(new_path) => {
            let path_and_query = match parts.uri.query() {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path,
            };
            let mut uri = parts.uri.into_parts();
            uri.path_and_query = path_and_query.parse().ok();
            match Uri::from_parts(uri) {
                Ok(uri) => uri,
                Err(_) => return ApiError::not_found("no such path").into_response(),
            }
        }
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers;
    if let Some(client) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        request.extensions_mut().insert(*client);
    }
    let router = if name == nimbus_core::DEFAULT_TENANT {
        d.default.clone()
    } else {
        match d.tenants.get(&name) {
            Some((_, router)) => router,
            None => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "TenantNotFound",
                    format!("tenant `{name}` does not exist"),
                )
                .into_response();
            }
        }
    };
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    }
}

/// A tenant as the API shows it.
#[derive(Serialize)]
pub(crate) struct TenantView {
    #[serde(flatten)]
    tenant: Tenant,
    /// Where its routes are served on any host.
    path_prefix: String,
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> Self {
        let path_prefix = nimbus_core::tenant::route_prefix(&tenant.name);
        Self {
            tenant,
            path_prefix,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantBody {
    name: String,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    limits: TenantLimits,
}

fn operator(g: &Gateway) -> Result<&Arc<Tenants>, ApiError> {
    // Only the default tenant's gateway has the tenants (its admin keys are the operator's).
    g.tenants
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no such API"))
}

fn tenant_gateway(g: &Gateway, name: &str) -> Result<Arc<Gateway>, ApiError> {
    operator(g)?
        .get(name)
        .map(|(gateway, _)| gateway)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "TenantNotFound",
                format!("tenant `{name}` does not exist"),
            )
        })
}

/// `GET /v1/tenants`.
pub(crate) async fn list(State(g): State<Arc<Gateway>>) -> Result<Json<Vec<TenantView>>, ApiError> {
    let tenants = operator(&g)?;
    Ok(Json(
        tenants
            .tenancy
            .list()
            .into_iter()
            .map(TenantView::from)
            .collect(),
    ))
}

/// `POST /v1/tenants`: 201 with the tenant.
pub(crate) async fn create(
    State(g): State<Arc<Gateway>>,
    body: Result<Json<TenantBody>, JsonRejection>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let tenants = operator(&g)?;
    let Json(b) = body.map_err(|r| ApiError::bad_request("InvalidRequest", r.body_text()))?;
    let tenant = Tenant::new(&b.name, &b.domains, b.limits, now_ms())
        .map_err(|e| ApiError::bad_request("InvalidRequest", e.to_string()))?;
    let created = tenants.tenancy.create(tenant).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// `GET /v1/tenants/{tenant}`.
pub(crate) async fn show(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    operator(&g)?
        .tenancy
        .list()
        .into_iter()
        .find(|t| t.name == name)
        .map(|t| Json(t.into()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "TenantNotFound",
                format!("tenant `{name}` does not exist"),
            )
        })
}

/// `DELETE /v1/tenants/{tenant}`: the tenant and everything it owns.
pub(crate) async fn remove(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenants = operator(&g)?;
    tenants.tenancy.remove(&name, REMOVE_GRACE).await?;
    tenants.forget(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/tenants/{tenant}/keys`: a key of that tenant, shown once.
pub(crate) async fn create_key(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Result<Json<crate::keys::KeyBody>, JsonRejection>,
) -> Result<(StatusCode, Json<nimbus_invoker::CreatedKey>), ApiError> {
    crate::keys::create(State(tenant_gateway(&g, &name)?), body).await
}

/// `GET /v1/tenants/{tenant}/keys`.
pub(crate) async fn list_keys(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<crate::keys::KeyListing>>, ApiError> {
    crate::keys::list(State(tenant_gateway(&g, &name)?)).await
}

/// `DELETE /v1/tenants/{tenant}/keys/{id}`.
pub(crate) async fn revoke_key(
    State(g): State<Arc<Gateway>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    crate::keys::revoke(State(tenant_gateway(&g, &name)?), Path(id)).await
}

/// `GET /v1/tenants/{tenant}/usage`: the tenant's usage and bill, as its own `/v1/usage`.
pub(crate) async fn usage(
    State(g): State<Arc<Gateway>>,
    Path(name): Path<String>,
    query: Query<crate::control::UsageParams>,
) -> Result<Json<nimbus_core::usage::UsageReport>, ApiError> {
    crate::control::usage(State(tenant_gateway(&g, &name)?), query).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>, uri: &str) -> Request {
        let mut b = http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn credentials_are_read_from_bearer_keys_and_sigv4() {
        assert_eq!(
            credential(&request(Some("Bearer nmb_1 "), "/v1/apps")),
            Some(Credential::Key("nmb_1"))
        );
        let sig = "AWS4-HMAC-SHA256 Credential=AKNB1/20261205/us-east-1/lambda/aws4_request, \
                   SignedHeaders=host, Signature=00";
        assert_eq!(
            credential(&request(Some(sig), "/2015-03-31/functions")),
            Some(Credential::AccessKeyId("AKNB1"))
        );
        assert_eq!(
            credential(&request(
                None,
                "/2015-03-31/functions?X-Amz-Algorithm=x&X-Amz-Credential=AKNB2%2F20261205%2Fus-east-1"
            )),
            Some(Credential::AccessKeyId("AKNB2"))
        );
        assert_eq!(credential(&request(None, "/v1/apps")), None);
        assert_eq!(credential(&request(Some("Basic x"), "/v1/apps?a=b")), None);
    }

    #[test]
    fn control_paths_are_the_apis_and_nothing_else() {
        for p in [
            "/v1",
            "/v1/apps",
            "/metrics",
            "/2015-03-31/functions/f/invocations",
            "/2025-12-01/durable-executions/arn/checkpoint",
        ] {
            assert!(is_control_path(p), "{p}");
        }
        for p in [
            "/",
            "/hello",
            "/v1x",
            "/metricsx",
            "/tenants/a/v1",
            "/healthz",
        ] {
            assert!(!is_control_path(p), "{p}");
        }
        // Every API the router serves is a control path (so a tenant's key reaches it).
        let router = include_str!("lib.rs");
        for route in router
            .split('"')
            .filter(|s| s.starts_with('/') && !s.contains(' ') && s.len() > 1)
            .filter(|s| !["/healthz", "/readyz"].contains(s))
        {
            assert!(is_control_path(route), "{route}");
        }
    }
}
