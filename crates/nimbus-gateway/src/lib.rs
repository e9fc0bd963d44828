//! Nimbus gateway: the HTTP surface of a node.
//!
//! # Layout
//! - [`Platform`] (in `platform`): the live state of a node — store, wasm runtime, artifact store,
//!   record sink — and the [`Snapshot`] of deployed functions and routes that every request reads
//!   lock-free (an `ArcSwap`, swapped whole on deploy). Deploys compile and check everything
//!   before one store transaction and one swap: all of an app or nothing.
//! - `invoke`: the data plane. Requests outside `/v1` are matched against app routes (404/405/413
//!   decided before any guest runs) and served by a fresh wasm instance; `POST
//!   /v1/functions/{name}/invoke` calls event functions. Each invocation's record goes to the
//!   group-committing [`nimbus_store::RecordSink`] when the guest finishes.
//! - `apigw`: HTTP routes to process functions, as API Gateway HTTP API (payload 2.0) events.
//! - `lambda`: the AWS Lambda Invoke API (`/2015-03-31/...`), SigV4-authenticated, for AWS SDKs.
//! - `events`: the event API (queues, topics, schedules, CloudEvents ingest, async invocation
//!   and the invocation ledger) over the `nimbus-events` engine, and the engine's `Invoker`.
//!   Each invocation is traced (`nimbus-telemetry`) when an OTLP endpoint is configured.
//! - `instances`: wasm functions' instances (the loaded component), loaded on demand and
//!   unloaded by a reaper after the keep-alive: scale to zero.
//! - `metrics`: `/metrics` in the Prometheus text format (behind the admin key).
//! - `control`: the `/v1` REST API (deploy, list, show, remove, records, logs, status), behind the
//!   admin API key.
//! - [`ApiError`]: every error a client sees — a status, a stable code, a safe message.

mod apigw;
mod control;
mod error;
mod events;
mod instances;
mod invoke;
mod lambda;
mod metrics;
mod platform;
mod quota;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

pub use error::ApiError;
pub use invoke::{ERROR_TYPE_HEADER, INVOCATION_ID_HEADER, PARAM_HEADER_PREFIX};
pub use platform::{Deployed, GatewayConfig, Platform, Runtimes, Snapshot};
pub use quota::Quota;

/// The complete HTTP application of a node: `/v1` API plus app routes.
pub fn router(platform: Arc<Platform>) -> Router {
    let max_body = platform.config.max_body_bytes;
    let max_artifact = platform.config.max_artifact_bytes;
    let api = Router::new()
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
            post(invoke::invoke).layer(DefaultBodyLimit::max(max_body)),
        )
        .route(
            "/v1/functions/{name}/invocations",
            get(control::invocations),
        )
        .route("/v1/functions/{name}/logs", get(control::logs))
        .route("/v1/invocations/{id}", get(events::invocation))
        .route("/v1/usage", get(control::usage))
        .route("/metrics", get(metrics::scrape))
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
            platform.clone(),
            control::require_key,
        ));
    // The Lambda Invoke API authenticates with SigV4, not the admin key.
    let aws = Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        post(lambda::invoke),
    );
    api.merge(aws)
        .fallback(invoke::serve_route)
        .with_state(platform)
}
