//! [`ExecutionStore`] on the SQLite store: one row per durable execution, its journal as JSON,
//! written on the control connection (`synchronous=FULL`: a checkpoint is on disk before it is
//! answered) and replaced only at the revision it was read at.

use nimbus_core::StoreError;
use nimbus_durable::model::OperationStatus;
use nimbus_durable::store::{Created, ExecutionRecord, ExecutionStore, ExecutionSummary};
use rusqlite::{OptionalExtension, Row, params};

use crate::sqlite::{SqliteStore, backend, lock};

fn status_text(status: OperationStatus) -> Result<String, StoreError> {
    match serde_json::to_value(status).map_err(backend)? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(StoreError::backend(format!("status {other} is not text"))),
    }
}

fn status_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<OperationStatus> {
    let text: String = row.get(idx)?;
    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

const RECORD_COLUMNS: &str =
    "arn, function, version, name, status, start_ms, end_ms, revision, journal, code, parent";

fn record_at(row: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    let mut journal: nimbus_durable::journal::Journal = crate::sqlite::json_col(row, 8)?;
    journal.reindex();
    Ok(ExecutionRecord {
        arn: row.get(0)?,
        function: row.get(1)?,
        version: row.get(2)?,
        name: row.get(3)?,
        status: status_at(row, 4)?,
        start_ms: row.get(5)?,
        end_ms: row.get(6)?,
        revision: row.get::<_, i64>(7)? as u64,
        journal,
        code: row.get(9)?,
        parent: match row.get::<_, Option<String>>(10)? {
            None => None,
            Some(_) => crate::sqlite::json_col(row, 10)?,
        },
    })
}

impl ExecutionStore for SqliteStore {
    fn create_execution(&self, r: &ExecutionRecord) -> Result<Created, StoreError> {
        let journal = serde_json::to_string(&r.journal).map_err(backend)?;
        let parent = r
            .parent
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(backend)?;
        let status = status_text(r.status)?;
        let mut conn = lock(&self.control);
        // IMMEDIATE: it reads, then writes; a deferred transaction whose snapshot another
        // connection (the record writer) moved on meanwhile would fail at once (SQLITE_BUSY),
        // where this one waits for the write lock up front.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(backend)?;
        // Cached statements: a workflow saves its record at every turn.
        let existing = tx
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM durable_executions
                 WHERE tenant = ?1 AND function = ?2 AND name = ?3"
            ))
            .and_then(|mut st| {
                st.query_row(params![self.tenant, r.function, r.name], record_at)
                    .optional()
            })
            .map_err(backend)?;
        if let Some(found) = existing {
            return Ok(Created::Existing(Box::new(found)));
        }
        tx.prepare_cached(
            "INSERT INTO durable_executions
               (tenant, arn, function, name, version, status, start_ms, end_ms, revision, journal,
                code, parent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .and_then(|mut st| {
            st.execute(params![
                self.tenant,
                r.arn,
                r.function,
                r.name,
                r.version,
                status,
                r.start_ms,
                r.end_ms,
                r.revision as i64,
                journal,
                r.code,
                parent
            ])
        })
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Created::New)
    }

    fn execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        lock(&self.control)
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM durable_executions WHERE tenant = ?1 AND arn = ?2"
            ))
            .and_then(|mut st| {
                st.query_row(params![self.tenant, arn], record_at)
                    .optional()
            })
            .map_err(backend)
    }

    fn save_execution(&self, r: &ExecutionRecord, expected: u64) -> Result<bool, StoreError> {
        let journal = serde_json::to_string(&r.journal).map_err(backend)?;
        let status = status_text(r.status)?;
        let n = lock(&self.control)
            .prepare_cached(
                "UPDATE durable_executions
                 SET status = ?1, end_ms = ?2, journal = ?3, revision = revision + 1
                 WHERE tenant = ?4 AND arn = ?5 AND revision = ?6",
            )
            .and_then(|mut st| {
                st.execute(params![
                    status,
                    r.end_ms,
                    journal,
                    self.tenant,
                    r.arn,
                    expected as i64
                ])
            })
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn list_executions(
        &self,
        function: &str,
        status: Option<OperationStatus>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ExecutionSummary>, bool), StoreError> {
        let status = status.map(status_text).transpose()?;
        let conn = lock(&self.control);
        // The page starts after the marker's (start_ms, arn), newest first.
        let marker: Option<(i64, String)> = match after {
            None => None,
            Some(arn) => conn
                .query_row(
                    "SELECT start_ms, arn FROM durable_executions WHERE tenant = ?1 AND arn = ?2",
                    params![self.tenant, arn],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?,
        };
        let (m_start, m_arn) = marker.unzip();
        let mut stmt = conn
            .prepare(
                "SELECT arn, name, function, status, start_ms, end_ms FROM durable_executions
                 WHERE tenant = ?1 AND function = ?2 AND (?3 IS NULL OR status = ?3)
                   AND (?4 IS NULL OR start_ms < ?4 OR (start_ms = ?4 AND arn < ?5))
                 ORDER BY start_ms DESC, arn DESC LIMIT ?6",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![
                    self.tenant,
                    function,
                    status,
                    m_start,
                    m_arn,
                    limit as i64 + 1
                ],
                |r| {
                    Ok(ExecutionSummary {
                        arn: r.get(0)?,
                        name: r.get(1)?,
                        function: r.get(2)?,
                        status: status_at(r, 3)?,
                        start_ms: r.get(4)?,
                        end_ms: r.get(5)?,
                    })
                },
            )
            .map_err(backend)?;
        let mut page: Vec<ExecutionSummary> =
            rows.collect::<rusqlite::Result<_>>().map_err(backend)?;
        let more = page.len() > limit;
        page.truncate(limit);
        Ok((page, more))
    }

    fn running_executions(&self) -> Result<Vec<String>, StoreError> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare("SELECT arn FROM durable_executions WHERE tenant = ?1 AND end_ms IS NULL")
            .map_err(backend)?;
        let rows = stmt
            .query_map([&self.tenant], |r| r.get(0))
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn purge_executions(&self, function: Option<&str>, before_ms: i64) -> Result<u64, StoreError> {
        let n = lock(&self.control)
            .execute(
                "DELETE FROM durable_executions WHERE tenant = ?1 AND end_ms < ?2 \
                 AND (?3 IS NULL OR function = ?3)",
                params![self.tenant, before_ms, function],
            )
            .map_err(backend)?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_store_passes_the_execution_store_conformance_suite() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let n = std::sync::atomic::AtomicUsize::new(0);
        nimbus_durable::conformance::run_all(|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::SqliteStore::open(&dir.path().join(format!("db{i}")), "default")
                .unwrap_or_else(|e| panic!("{e}"))
        });
    }
}
