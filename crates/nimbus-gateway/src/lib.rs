//! Nimbus gateway: the HTTP surface of a node, and nothing else.
//!
//! Every handler parses a request into a typed call of the [`nimbus_invoker::Invoker`], awaits
//! it, and maps its answer or its typed error to HTTP (statuses are chosen here and only here,
//! in `error`). No handler decides whether, where or how a function runs.
//!
//! # Layout
//! - `routes`: the data plane. Requests outside `/v1` are matched against app routes
//!   (404/405/413 decided before anything runs; `access`: CORS preflights and headers, the
//!   route's authorizer) and become [`nimbus_invoker::InvocationRequest`]s
//!   with an HTTP payload; `POST /v1/functions/{name}/invoke` sends an event (CloudEvents
//!   binary-mode `ce-*` headers become typed attributes), or queues it with `?mode=async`.
//! - `lambda`: the AWS Lambda Invoke API (`/2015-03-31/...`), SigV4-authenticated, with AWS
//!   error shapes.
//! - `events`: the event API (queues, topics, schedules, CloudEvents ingest, the invocation
//!   ledger) over the invoker's event engine.
//! - `control`: the `/v1` REST API (artifacts, deploy, list, show, remove, records, logs, usage,
//!   status) and `/metrics`, behind the admin API key.
//! - `secrets`: `/v1/secrets` (set, list, delete; values never come back out).
//! - `keys`: `/v1/keys` (make, list, revoke scoped API keys) and `/v1/audit`; who may call
//!   what is decided in `control::require_key` from `nimbus_core::keys`.
//! - [`serve`] (`serve`): the listener — a connection cap, header and body read timeouts,
//!   graceful shutdown.
//! - [`ApiError`] (`error`): every error a client sees — a status, a stable code, a safe
//!   message — and the mapping of the invoker's errors onto them.

mod access;
mod body_timeout;
mod control;
mod durable;
mod error;
mod events;
mod executions;
mod keys;
mod lambda;
mod lambda_versions;
mod rate;
mod routes;
mod secrets;
mod serve;
mod stepfunctions;
mod tenants;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use nimbus_invoker::{Invoker, Tenancy};

pub use error::{ApiError, ERROR_TYPE_HEADER, function_error};
pub use nimbus_invoker::executor::wasm::{INVOCATION_ID_HEADER, PARAM_HEADER_PREFIX};
pub use serve::{ServeConfig, serve};

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest request body a function receives; larger gets 413.
    pub max_body_bytes: usize,
    /// Largest artifact upload.
    pub max_artifact_bytes: usize,
    /// Prices for `/v1/usage`.
    pub prices: nimbus_core::usage::PriceSheet,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 6 * 1024 * 1024,
            max_artifact_bytes: 64 * 1024 * 1024,
            prices: nimbus_core::usage::PriceSheet::default(),
        }
    }
}

/// What every handler shares.
pub struct Gateway {
    /// The node's invocation layer.
    pub invoker: Arc<Invoker>,
    /// Settings.
    pub config: GatewayConfig,
    /// Rate limits of public routes.
    pub(crate) limiter: rate::RouteLimiter,
    /// Route authorizers' key sets and caches.
    pub(crate) authorizers: nimbus_access::Authorizers,
    /// API keys' usage plans on routes that take keys.
    pub(crate) key_limiter: rate::KeyLimiter,
    /// The node's other tenants: only in the default tenant's gateway (the operator's).
    pub(crate) tenants: Option<Arc<tenants::Tenants>>,
}

impl Gateway {
    fn new(
        invoker: Arc<Invoker>,
        config: GatewayConfig,
        tenants: Option<Arc<tenants::Tenants>>,
    ) -> Self {
        Self {
            invoker,
            config,
            limiter: rate::RouteLimiter::default(),
            authorizers: nimbus_access::Authorizers::new(),
            key_limiter: rate::KeyLimiter::default(),
            tenants,
        }
    }
}

/// The HTTP application of a node with tenants: the default tenant's (with the operator's
/// `/v1/tenants`), and each other tenant's behind its path prefix, its domains and its keys.
pub fn node_router(tenancy: Arc<Tenancy>, config: GatewayConfig) -> Router {
    let tenants = Arc::new(tenants::Tenants::new(tenancy.clone(), config.clone()));
    let gateway = Arc::new(Gateway::new(
        tenancy.default_invoker().clone(),
        config,
        Some(tenants.clone()),
    ));
    let dispatch = tenants::Dispatch {
        tenants,
        default: build(gateway.clone()),
    };
    build(gateway).layer(axum::middleware::from_fn_with_state(
        dispatch,
        tenants::dispatch,
    ))
}

/// The HTTP application of one tenant: `/v1` API plus app routes.
pub fn router(invoker: Arc<Invoker>, config: GatewayConfig) -> Router {
    build(Arc::new(Gateway::new(invoker, config, None)))
}

fn build(gateway: Arc<Gateway>) -> Router {
    let max_body = gateway.config.max_body_bytes;
    let max_artifact = gateway.config.max_artifact_bytes;
    let operator = if gateway.tenants.is_some() {
        Router::new()
            .route("/v1/tenants", get(tenants::list).post(tenants::create))
            .route(
                "/v1/tenants/{tenant}",
                get(tenants::show).delete(tenants::remove),
            )
            .route(
                "/v1/tenants/{tenant}/keys",
                get(tenants::list_keys).post(tenants::create_key),
            )
            .route(
                "/v1/tenants/{tenant}/keys/{id}",
                axum::routing::delete(tenants::revoke_key),
            )
            .route("/v1/tenants/{tenant}/usage", get(tenants::usage))
    } else {
        Router::new()
    };
    let api = operator
        .route("/v1/status", get(control::status))
        .route(
            "/v1/artifacts/{sha256}",
            put(control::put_artifact).layer(DefaultBodyLimit::max(max_artifact)),
        )
        .route("/v1/apps", post(control::deploy).get(control::list_apps))
        .route("/v1/apps/{app}", axum::routing::delete(control::delete_app))
        .route("/v1/functions", get(control::list_functions))
        .route(
            "/v1/functions/{name}",
            get(control::get_function).delete(control::delete_function),
        )
        .route(
            "/v1/functions/{name}/invoke",
            post(routes::invoke).layer(DefaultBodyLimit::max(max_body)),
        )
        .route(
            "/v1/functions/{name}/invocations",
            get(control::invocations),
        )
        .route("/v1/functions/{name}/logs", get(control::logs))
        .route(
            "/v1/functions/{name}/executions",
            get(executions::list)
                .post(executions::start)
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/v1/executions/{arn}", get(executions::show))
        .route("/v1/executions/{arn}/history", get(executions::history))
        .route("/v1/executions/{arn}/stop", post(executions::stop))
        .route("/v1/callbacks/{id}/{action}", post(executions::callback))
        .route(
            "/v1/functions/{name}/versions",
            get(control::published_versions).post(control::publish_version),
        )
        .route("/v1/functions/{name}/aliases", get(control::aliases))
        .route(
            "/v1/functions/{name}/aliases/{alias}",
            put(control::put_alias).delete(control::delete_alias),
        )
        .route("/v1/invocations/{id}", get(events::invocation))
        .route("/v1/usage", get(control::usage))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", axum::routing::delete(keys::revoke))
        .route("/v1/audit", get(keys::audit))
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{name}",
            put(secrets::put).delete(secrets::delete),
        )
        .route("/metrics", get(control::metrics))
        .route("/v1/queues", get(events::list_queues))
        .route(
            "/v1/queues/{name}",
            put(events::put_resource::<events::Queues>)
                .get(events::get_queue)
                .delete(events::delete_resource::<events::Queues>),
        )
        .route(
            "/v1/queues/{name}/messages",
            post(events::send).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/v1/queues/{name}/receive", post(events::receive))
        .route("/v1/queues/{name}/ack", post(events::ack))
        .route("/v1/queues/{name}/visibility", post(events::visibility))
        .route("/v1/queues/{name}/redrive", post(events::redrive))
        .route("/v1/topics", get(events::list_topics))
        .route(
            "/v1/topics/{name}",
            put(events::put_resource::<events::Topics>)
                .get(events::get_topic)
                .delete(events::delete_resource::<events::Topics>),
        )
        .route(
            "/v1/topics/{name}/messages",
            post(events::publish).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/v1/schedules", get(events::list_schedules))
        .route(
            "/v1/schedules/{name}",
            put(events::put_resource::<events::Schedules>)
                .delete(events::delete_resource::<events::Schedules>),
        )
        .route(
            "/v1/schedules/{name}/state",
            post(events::set_schedule_enabled),
        )
        .route(
            "/v1/events",
            post(events::ingest).layer(DefaultBodyLimit::max(max_body)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            control::require_key,
        ));
    // The Lambda API authenticates with SigV4, not the admin key. Other methods on its paths
    // are Lambda operations Nimbus does not serve: answered by name (`routes::not_found`).
    let aws = Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(lambda::invoke).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/durable-executions/{arn}/checkpoint",
            post(durable::checkpoint).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/durable-executions/{arn}/state",
            get(durable::state).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/durable-executions/{arn}/history",
            get(durable::history).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/durable-executions/{arn}/stop",
            post(durable::stop).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/durable-executions/{arn}",
            get(durable::get).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/functions/{name}/durable-executions",
            get(durable::list).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/durable-execution-callbacks/{id}/{action}",
            post(durable::callback).fallback(routes::not_found),
        )
        // The async HTTP pattern's public status resources: the token is the credential.
        .route(
            "/2025-12-01/durable-status/{token}",
            get(executions::public_show).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/durable-status/{token}/stop",
            post(executions::public_stop).fallback(routes::not_found),
        )
        .route(
            "/2025-12-01/durable-status/{token}/callbacks/{id}/{action}",
            post(executions::public_callback).fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions",
            get(lambda::list_functions).fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions/",
            get(lambda::list_functions).fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(lambda::get_function).fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(lambda::get_function_configuration).fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions/{name}/versions",
            get(lambda_versions::list_versions)
                .post(lambda_versions::publish)
                .fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            get(lambda_versions::list_aliases)
                .post(lambda_versions::create_alias)
                .fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(lambda_versions::get_alias)
                .put(lambda_versions::update_alias)
                .delete(lambda_versions::delete_alias)
                .fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions/{name}/policy",
            get(lambda_versions::get_policy)
                .post(lambda_versions::add_permission)
                .fallback(routes::not_found),
        )
        .route(
            "/2015-03-31/functions/{name}/policy/{sid}",
            axum::routing::delete(lambda_versions::remove_permission).fallback(routes::not_found),
        );
    // Probes for load balancers and orchestrators: unauthenticated, no detail.
    let probes = Router::new()
        .route("/healthz", get(control::healthz))
        .route("/readyz", get(control::readyz));
    api.merge(aws)
        .merge(probes)
        .fallback(routes::serve_route)
        .with_state(gateway)
}
