//! Nimbus durable executions: the deterministic core.
//!
//! A durable execution is an ordinary handler (written with the AWS durable execution SDKs)
//! that checkpoints each step and is re-invoked and replayed from its journal. This crate is the
//! journal and nothing else: no clock, no storage, no invocations.
//!
//! # Core concepts
//! - [`model`]: the operations of an execution as the Lambda durable-execution API names them
//!   (`EXECUTION`, `STEP`, `WAIT`, `CALLBACK`, `CHAINED_INVOKE`, `CONTEXT`), their statuses, the
//!   updates a checkpoint carries (`START`, `SUCCEED`, `FAIL`, `RETRY`, `CANCEL`).
//! - [`journal`]: [`journal::Journal`], one execution's operations and its checkpoint token.
//!   [`journal::Journal::checkpoint`] validates a whole batch of updates and applies it or
//!   nothing, consuming the token (a repeat with the same client token answers the same), and
//!   returns the [`journal::Effect`]s the engine must carry out: durable timers (a wait's end, a
//!   step's next attempt, a callback's timeouts), chained invokes, the execution's end. The
//!   engine reports what happened back ([`journal::Journal::wait_elapsed`],
//!   [`journal::Journal::complete_callback`], …), each naming the operations a re-invocation
//!   must be told about.
//!
//! - [`store`]: [`store::ExecutionStore`], where executions and their journals are kept (one
//!   record per execution, saved under a revision check), with its [`conformance`] suite.
//!
//! - [`token`]: checkpoint tokens and callback ids, opaque to clients and tagged with HMAC
//!   under the node's secret (they cannot be forged or moved to another execution).
//! - [`wire`]: operations in the API's JSON shape and the input a durable handler is invoked
//!   with, checked against the Python SDK's own parsers; its answer is
//!   [`model::InvocationOutput`], which [`journal::Journal::settle`] turns into what follows.
//!
//! # Edges
//! Time comes in as `now_ms` arguments, new ids from the caller; errors are typed
//! ([`journal::CheckpointError`]) and the HTTP edge turns them into the documented
//! `InvalidParameterValueException`.

pub mod conformance;
pub mod journal;
pub mod model;
pub mod store;
pub mod token;
pub mod wire;
