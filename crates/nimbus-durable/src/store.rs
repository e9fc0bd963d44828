//! Where executions are kept: [`ExecutionStore`], implemented by the embedded SQLite store
//! (`nimbus-store`) and held to [`crate::conformance`].

use nimbus_core::StoreError;
use serde::{Deserialize, Serialize};

use crate::journal::Journal;
use crate::model::OperationStatus;

/// One execution as stored: what identifies it, and its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// Its ARN (unique on the node).
    pub arn: String,
    /// The durable function.
    pub function: String,
    /// The function version it started on (it stays on it).
    pub version: String,
    /// Its name (unique per function: a start by an existing name is that execution).
    pub name: String,
    /// The execution's status (the journal's `EXECUTION` operation's).
    pub status: OperationStatus,
    /// When it started, unix ms.
    pub start_ms: i64,
    /// When it ended, unix ms.
    pub end_ms: Option<i64>,
    /// Bumped by every save: what [`ExecutionStore::save`] compares.
    pub revision: u64,
    /// Its operations.
    pub journal: Journal,
    /// The deployed version id it runs on, when it started on `$LATEST` (its code and
    /// configuration then: a redeploy does not change what an execution replays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The execution and `CHAINED_INVOKE` operation it reports its end to, when another
    /// execution started it (`context.invoke` of a durable function).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<(String, String)>,
}

/// An execution as listed (no journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// The function.
    pub function: String,
    /// Its status.
    pub status: OperationStatus,
    /// When it started, unix ms.
    pub start_ms: i64,
    /// When it ended, unix ms.
    pub end_ms: Option<i64>,
}

/// What [`ExecutionStore::create`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The execution was stored.
    New,
    /// One of that function and name exists: this one (nothing was stored).
    Existing(Box<ExecutionRecord>),
}

/// Durable executions of one tenant.
pub trait ExecutionStore: Send + Sync + 'static {
    /// Stores a new execution, unless the function has one of that name.
    fn create_execution(&self, record: &ExecutionRecord) -> Result<Created, StoreError>;
    /// The execution `arn`.
    fn execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, StoreError>;
    /// Replaces the execution's journal (and status, end) if it is still at `expected`
    /// revision; `false` (nothing changed) if another save came first. The stored revision
    /// becomes `expected + 1`.
    fn save_execution(&self, record: &ExecutionRecord, expected: u64) -> Result<bool, StoreError>;
    /// A function's executions, newest first, with `status` only if given: at most `limit`
    /// after the ARN `after` (a page marker), and whether there are more.
    fn list_executions(
        &self,
        function: &str,
        status: Option<OperationStatus>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ExecutionSummary>, bool), StoreError>;
    /// Executions still running (to resume at start).
    fn running_executions(&self) -> Result<Vec<String>, StoreError>;
    /// Deletes executions (of `function` only, if given) that ended before `before_ms`; how
    /// many went.
    fn purge_executions(&self, function: Option<&str>, before_ms: i64) -> Result<u64, StoreError>;
}
