//! Nimbus storage backends.
//!
//! # Layout
//! - [`sqlite::SqliteStore`]: the embedded [`nimbus_core::Store`] (SQLite in WAL mode). Control-plane
//!   writes (deploys, keys) commit with `synchronous=FULL`; invocation records go through a second
//!   connection with `synchronous=NORMAL` because they are group-committed, never acknowledged.
//!   The same store keeps durable executions (`durable`: [`nimbus_durable::store::ExecutionStore`],
//!   one row per execution with its journal, saved under a revision check, `synchronous=FULL`).
//! - [`artifacts::ArtifactStore`]: content-addressed artifact files (`<sha256>`: components and code bundles), fsynced
//!   before they are visible.
//! - [`group_commit::RecordSink`]: the off-hot-path writer that batches invocation records into one
//!   transaction per batch, for any `Store`.
//! - [`conformance`]: the behaviour every `Store` implementation must show, as plain functions a
//!   backend's tests call.

pub mod artifacts;
pub mod conformance;
mod durable;
pub mod group_commit;
mod machines;
pub mod sqlite;

pub use artifacts::ArtifactStore;
pub use group_commit::RecordSink;
pub use sqlite::SqliteStore;
