//! Nimbus's invocation layer: the one way anything runs a function.
//!
//! # Core concepts
//! - [`Invoker`] (`invoker`): one per tenant of a node, the crate's whole public surface. It runs
//!   invocations: [`Invoker::invoke`] takes an [`InvocationRequest`] (function + qualifier, id,
//!   trigger, payload, trace and client context) and answers an [`Invocation`] or an
//!   [`InvokeError`]. HTTP routes, the invoke APIs, the event engine (through
//!   [`nimbus_events::Invoker`], implemented in `engine`) and, later, durable executions and
//!   other nodes all call it; none of them speaks HTTP to it.
//! - The live state (`live`): a lock-free snapshot of deployed functions and routes, swapped
//!   whole by deploys and removals under one deploy lock, and the event engine running over it
//!   (`live::events`: topology, resources created alone, the invocation ledger).
//! - Admission (`admission`): the quota, then the function's and the tenant's concurrency
//!   slots, each once, before anything runs ([`AdmissionError`]).
//! - [`Executor`] (`executor`): the runtimes behind one trait — wasm components and process
//!   sandboxes. Each prepares versions at deploy and owns its instances' lifecycle (cold
//!   starts, keep-alive, `min_instances`); the invoker never branches on the runtime.
//! - Finishing (`finish`): every admitted invocation ends once — its record to the
//!   group-committing sink, its trace, its metrics ([`Metrics`]).
//! - [`Tenancy`] (`tenancy`): the node's tenants, one invoker each (their own store scope,
//!   artifacts, event log, admission and keys; the runtimes shared), opened through the
//!   composition root's [`TenantOpener`].
//! - [`Node`] (`lifecycle`): the node's background duties (reapers, record purge, the event
//!   engine, the record writer), started by one supervisor and stopped in a stated order.
//!
//! # Edges
//! No HTTP statuses here: errors are typed ([`InvokeError`], [`AdmissionError`],
//! [`DeployError`], [`ResourceError`]) and the gateway maps them. Storage is reached through
//! `nimbus_core::Store` and `nimbus_log::MessageLog`; the runtimes through [`Executor`].
//! Modules depend downwards only (request, metrics, access ← finish, error ← executor,
//! admission, engine ← live ← invoker ← tenancy ← lifecycle, testing); this root only re-exports.

mod access;
mod admission;
pub mod durable;
mod engine;
mod error;
pub mod executor;
mod finish;
mod invoker;
mod lifecycle;
mod live;
mod metrics;
mod request;
mod secrets;
mod tenancy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use access::{ADMIN_KEY_ID, Access, AuthError, CreatedKey, KeyError, KeyRequest};
pub use admission::Quota;
pub use error::{
    AdmissionError, DeployError, EventsUnavailable, InvokeError, QuotaKind, ResourceError,
    ThrottleReason, VersionError,
};
pub use executor::{Executor, Executors, Instances, PrepareError};
pub use invoker::{
    AliasWrite, AsyncRequest, DurableEndpoint, Invoker, InvokerConfig, InvokerParts,
};
pub use lifecycle::{Node, PurgeConfig};
pub use live::{Put, Removal, RouteHit, RouteLookup};
pub use metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics};
pub use nimbus_core::events::ResourceKind;
pub use request::{
    Body, BodyError, BoxError, FunctionError, HttpRequest, Invocation, InvocationRequest, Output,
    Payload, ResponseBody, TraceContext, new_id,
};
pub use secrets::{SecretListing, SecretsError};
pub use tenancy::{OpenError, OpenedTenant, Tenancy, TenancyError, TenantOpener};
