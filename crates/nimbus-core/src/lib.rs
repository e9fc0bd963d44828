//! Nimbus core: the nouns every other crate shares, with no I/O.
//!
//! # Core concepts
//! - [`manifest`]: the `nimbus.toml` app manifest, parsed and validated into an [`manifest::AppSpec`]
//!   with errors that name the offending key.
//! - [`model`]: functions, immutable content-addressed versions ([`model::FunctionVersion`]),
//!   invocation records ([`model::InvocationRecord`], the unit of metering and history) and
//!   typed invocation errors ([`model::ErrorType`]).
//! - [`route`]: HTTP route specs (`GET /users/{id}`, trailing wildcards) and the immutable
//!   [`route::RouteTable`] the gateway matches requests against (404 vs 405 decided here).
//! - [`events`]: queues, topics and subscriptions, schedules, queue triggers, CloudEvents routes
//!   and asynchronous-invocation policies, as declared in the manifest.
//! - [`filter`]: SNS-style subscription filter policies; [`schedule`]: `rate()`/`cron()`.
//! - [`burst`]: the node's burst rate for starting instances (a token bucket).
//! - [`budget`]: the node's memory budget, charged by both runtimes.
//! - [`egress`]: what `allowed_hosts` lets a function reach (names resolve only to public
//!   addresses), for both runtimes.
//! - [`keepalive`]: keep-alive policies (fixed, and the hybrid histogram policy of "Serverless in
//!   the Wild"), with a trace simulator.
//! - [`usage`]: metering (usage aggregated from records) and billing (a price sheet with a monthly
//!   free tier).
//! - [`store`]: the [`store::Store`] trait that storage backends implement.
//! - [`tenant`]: tenants, their limits, and which tenant a request's host or path prefix names.
//! - [`trace`]: the phases of an invocation (the cold-start breakdown) and W3C `traceparent`.
//! - [`clock`]: the one wall-clock read (`now_ms`) the I/O edges share.
//!
//! # Edges
//! Everything here is deterministic and tested without sockets, files or clocks. Runtimes
//! (`nimbus-wasm`), storage (`nimbus-store`) and the HTTP surface (`nimbus-gateway`) depend on this
//! crate, never the other way round.

pub mod access;
pub mod api;
pub mod budget;
pub mod burst;
pub mod clock;
pub mod egress;
pub mod events;
pub mod filter;
pub mod keepalive;
pub mod keys;
pub mod manifest;
pub mod model;
pub mod route;
pub mod schedule;
pub mod store;
pub mod tenant;
pub mod trace;
pub mod usage;
pub mod workflow;

pub use manifest::{AppSpec, FunctionSpec, ManifestError};
pub use model::{
    ErrorType, EventAttributes, FunctionConfig, FunctionKind, FunctionVersion, InvocationRecord,
    Outcome, Trigger,
};
pub use route::{RouteMatch, RouteSpec, RouteTable};
pub use store::{Store, StoreError};

/// The tenant used in single-user mode. Every stored key carries a tenant.
pub const DEFAULT_TENANT: &str = "default";

/// Hex-encoded sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
