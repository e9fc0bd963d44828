//! The embedded store: one SQLite file in WAL mode.

use nimbus_core::clock::now_ms;
use std::path::Path;
use std::sync::Mutex;

use nimbus_core::events::EventResources;
use nimbus_core::model::{ErrorType, FunctionKind, InvocationRecord, Outcome};
use nimbus_core::store::{
    ActiveFunction, Alias, AppDeployment, LogEntry, PublishedVersion, Result, StoreError,
};
use nimbus_core::usage::{UsageQuery, UsageRow};
use nimbus_core::{FunctionVersion, Store};
use rusqlite::{Connection, OptionalExtension, Row, params};

const SCHEMA_VERSION: i64 = 9;

/// Version 2: event resources (queues, topics, schedules, triggers, CloudEvents routes) per app;
/// app `""` holds those created alone through the API.
const MIGRATE_2: &str = r#"
CREATE TABLE app_events (
    tenant TEXT NOT NULL, app TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (tenant, app));
"#;

/// Version 3: published versions and aliases.
const MIGRATE_3: &str = r#"
CREATE TABLE published (
    tenant TEXT NOT NULL, function TEXT NOT NULL, number INTEGER NOT NULL,
    version_id TEXT NOT NULL, description TEXT NOT NULL, published_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, function, number));
CREATE TABLE aliases (
    tenant TEXT NOT NULL, function TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (tenant, function, name));
"#;

/// Version 4: secrets (values sealed by the caller; the key is never in the database).
const MIGRATE_4: &str = r#"
CREATE TABLE secrets (
    tenant TEXT NOT NULL, name TEXT NOT NULL, sealed BLOB NOT NULL, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name));
"#;

/// Version 5: scoped API keys (the first admin key stays in `api_keys`), the audit log and
/// functions' resource policies.
const MIGRATE_5: &str = r#"
CREATE TABLE keys (
    tenant TEXT NOT NULL, id TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, doc TEXT NOT NULL,
    revoked_ms INTEGER, aws_secret BLOB,
    PRIMARY KEY (tenant, id));
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, at_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL, action TEXT NOT NULL, status INTEGER NOT NULL, detail TEXT NOT NULL);
CREATE TABLE function_policies (
    tenant TEXT NOT NULL, function TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (tenant, function));
"#;

/// Version 6: the node's tenants (the default tenant is implicit).
const MIGRATE_6: &str = r#"
CREATE TABLE tenants (
    name TEXT PRIMARY KEY, doc TEXT NOT NULL, created_ms INTEGER NOT NULL);
"#;

/// Version 7: durable executions, one row each with its journal (JSON).
const MIGRATE_7: &str = r#"
CREATE TABLE durable_executions (
    tenant TEXT NOT NULL, arn TEXT NOT NULL, function TEXT NOT NULL, name TEXT NOT NULL,
    version TEXT NOT NULL, status TEXT NOT NULL, start_ms INTEGER NOT NULL, end_ms INTEGER,
    revision INTEGER NOT NULL, journal TEXT NOT NULL,
    PRIMARY KEY (tenant, arn), UNIQUE (tenant, function, name));
CREATE INDEX durable_executions_by_function ON durable_executions (tenant, function, start_ms);
"#;

/// Version 8: the deployed version a durable execution started on `$LATEST` runs on (its
/// artifact is kept while the execution runs), and the parent a chained execution reports to.
const MIGRATE_8: &str = r#"
ALTER TABLE durable_executions ADD COLUMN code TEXT;
ALTER TABLE durable_executions ADD COLUMN parent TEXT;
"#;

/// Version 9: state machines (their executions are durable executions).
const MIGRATE_9: &str = r#"
CREATE TABLE state_machines (
    tenant TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (tenant, name));
"#;

/// Every table with a `tenant` column: what a tenant owns.
const TENANT_TABLES: [&str; 14] = [
    "api_keys",
    "apps",
    "versions",
    "functions",
    "invocations",
    "app_events",
    "published",
    "aliases",
    "secrets",
    "keys",
    "audit",
    "function_policies",
    "durable_executions",
    "state_machines",
];

/// The migrations: `MIGRATIONS[v]` takes a database from version `v` to `v + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    SCHEMA, MIGRATE_2, MIGRATE_3, MIGRATE_4, MIGRATE_5, MIGRATE_6, MIGRATE_7, MIGRATE_8, MIGRATE_9,
];

const SCHEMA: &str = r#"
CREATE TABLE api_keys (
    tenant TEXT NOT NULL, hash TEXT NOT NULL, created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, hash));
CREATE TABLE apps (
    tenant TEXT NOT NULL, name TEXT NOT NULL, digest TEXT, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name));
CREATE TABLE versions (
    tenant TEXT NOT NULL, function TEXT NOT NULL, id TEXT NOT NULL, app TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL, kind TEXT NOT NULL, config TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, function, id));
CREATE TABLE functions (
    tenant TEXT NOT NULL, name TEXT NOT NULL, app TEXT NOT NULL, version_id TEXT NOT NULL,
    routes TEXT NOT NULL,
    PRIMARY KEY (tenant, name));
CREATE TABLE invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL, id TEXT NOT NULL UNIQUE, function TEXT NOT NULL, version TEXT NOT NULL,
    trigger TEXT NOT NULL, start_ms INTEGER NOT NULL, duration_us INTEGER NOT NULL,
    billed_ms INTEGER NOT NULL, memory_mb INTEGER NOT NULL, max_memory_bytes INTEGER NOT NULL,
    cold_start INTEGER NOT NULL, init_us INTEGER NOT NULL, outcome TEXT NOT NULL,
    error_type TEXT, error_message TEXT, logs TEXT NOT NULL);
CREATE INDEX invocations_by_function ON invocations (tenant, function, seq);
"#;

/// Deletes every row tenant `name` owns.
fn delete_owned(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<()> {
    for table in TENANT_TABLES {
        tx.execute(&format!("DELETE FROM {table} WHERE tenant = ?1"), [name])
            .map_err(backend)?;
    }
    Ok(())
}

/// [`Store`] on a SQLite file.
pub struct SqliteStore {
    pub(crate) tenant: String,
    /// Deploys, keys and reads: `synchronous=FULL`.
    pub(crate) control: Mutex<Connection>,
    /// Group-committed invocation records: `synchronous=NORMAL`.
    records: Mutex<Connection>,
}

pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    let full = (&e as &dyn std::error::Error)
        .downcast_ref::<rusqlite::Error>()
        .is_some_and(|e| {
            matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
        });
    if full {
        StoreError::Full
    } else {
        StoreError::backend(e)
    }
}

pub(crate) fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open_connection(path: &Path, synchronous: &str) -> Result<Connection> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON;"
    ))
    .map_err(backend)?;
    Ok(conn)
}

fn all_events(conn: &Connection, tenant: &str) -> Result<Vec<(String, EventResources)>> {
    let mut stmt = conn
        .prepare("SELECT app, doc FROM app_events WHERE tenant = ?1 ORDER BY app")
        .map_err(backend)?;
    stmt.query_map(params![tenant], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })
    .map_err(backend)?
    .map(|row| {
        let (app, doc) = row.map_err(backend)?;
        Ok((app, serde_json::from_str(&doc).map_err(backend)?))
    })
    .collect()
}

/// Fails if `events` would take a queue, topic or schedule name that another owner holds.
fn check_event_names(
    conn: &Connection,
    tenant: &str,
    owner: &str,
    events: &EventResources,
) -> Result<()> {
    let describe = |app: &str| {
        if app.is_empty() {
            "was created through the API".to_string()
        } else {
            format!("belongs to app `{app}`")
        }
    };
    for (app, other) in all_events(conn, tenant)? {
        if app == owner {
            continue;
        }
        let clash = |kind: &str, mine: Vec<&String>, theirs: Vec<&String>| {
            mine.into_iter()
                .find(|n| theirs.contains(n))
                .map(|n| StoreError::Conflict(format!("{kind} `{n}` {}", describe(&app))))
        };
        fn names(e: &EventResources) -> (Vec<&String>, Vec<&String>, Vec<&String>) {
            (
                e.queues.iter().map(|q| &q.name).collect::<Vec<_>>(),
                e.topics.iter().map(|t| &t.name).collect::<Vec<_>>(),
                e.schedules.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
        }
        let (mq, mt, ms) = names(events);
        let (tq, tt, ts) = names(&other);
        if let Some(e) = clash("queue", mq, tq)
            .or_else(|| clash("topic", mt, tt))
            .or_else(|| clash("schedule", ms, ts))
        {
            return Err(e);
        }
    }
    Ok(())
}

fn put_events(conn: &Connection, tenant: &str, app: &str, events: &EventResources) -> Result<()> {
    if events.is_empty() {
        conn.execute(
            "DELETE FROM app_events WHERE tenant = ?1 AND app = ?2",
            params![tenant, app],
        )
        .map_err(backend)?;
        return Ok(());
    }
    let doc = serde_json::to_string(events).map_err(backend)?;
    conn.execute(
        "INSERT INTO app_events (tenant, app, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant, app) DO UPDATE SET doc = excluded.doc",
        params![tenant, app, doc],
    )
    .map_err(backend)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path` for `tenant`.
    pub fn open(path: &Path, tenant: &str) -> Result<Self> {
        let control = open_connection(path, "FULL")?;
        let version: i64 = control
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(backend)?;
        match usize::try_from(version) {
            Ok(v) if v < MIGRATIONS.len() => control
                .execute_batch(&format!(
                    "BEGIN; {} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
                    MIGRATIONS[v..].concat()
                ))
                .map_err(backend)?,
            Ok(v) if v == MIGRATIONS.len() => {}
            _ => {
                return Err(StoreError::backend(format!(
                    "database schema version {version} is newer than this Nimbus understands ({SCHEMA_VERSION})"
                )));
            }
        }
        let records = open_connection(path, "NORMAL")?;
        Ok(Self {
            tenant: tenant.to_string(),
            control: Mutex::new(control),
            records: Mutex::new(records),
        })
    }
}

/// Published versions of `function` (one `number`, or all), oldest first.
fn published_rows(
    conn: &Connection,
    tenant: &str,
    function: &str,
    number: Option<u32>,
) -> Result<Vec<PublishedVersion>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT p.number, p.description, p.published_ms, v.function, v.app, v.id,
                    v.artifact_sha256, v.kind, v.config, v.created_ms
             FROM published p JOIN versions v
               ON v.tenant = p.tenant AND v.function = p.function AND v.id = p.version_id
             WHERE p.tenant = ?1 AND p.function = ?2 AND (?3 IS NULL OR p.number = ?3)
             ORDER BY p.number",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![tenant, function, number], |r| {
            Ok(PublishedVersion {
                number: r.get(0)?,
                description: r.get(1)?,
                published_ms: r.get(2)?,
                version: version_at(r, 3)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<rusqlite::Result<_>>().map_err(backend)
}

/// A function version from seven columns starting at `first`: function, app, id, artifact
/// sha256, kind, config (JSON), created ms.
fn version_at(r: &Row<'_>, first: usize) -> rusqlite::Result<FunctionVersion> {
    Ok(FunctionVersion {
        function: r.get(first)?,
        app: r.get(first + 1)?,
        id: r.get(first + 2)?,
        artifact_sha256: r.get(first + 3)?,
        kind: parse_kind(&r.get::<_, String>(first + 4)?)?,
        config: json_col(r, first + 5)?,
        created_at_ms: r.get(first + 6)?,
    })
}

fn kind_str(kind: FunctionKind) -> &'static str {
    kind.as_str()
}

fn parse_kind(s: &str) -> rusqlite::Result<FunctionKind> {
    match s {
        "http" => Ok(FunctionKind::Http),
        "event" => Ok(FunctionKind::Event),
        other => Err(rusqlite::Error::InvalidColumnType(
            0,
            format!("kind {other}"),
            rusqlite::types::Type::Text,
        )),
    }
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

const RECORD_COLUMNS: &str = "id, function, version, trigger, start_ms, duration_us, billed_ms, \
    memory_mb, max_memory_bytes, cold_start, init_us, outcome, error_type, error_message, logs";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<InvocationRecord> {
    let outcome: String = row.get(11)?;
    let error_type: Option<String> = row.get(12)?;
    Ok(InvocationRecord {
        id: row.get(0)?,
        function: row.get(1)?,
        version: row.get(2)?,
        trigger: json_col(row, 3)?,
        start_ms: row.get(4)?,
        duration_us: row.get::<_, i64>(5)? as u64,
        billed_ms: row.get::<_, i64>(6)? as u64,
        memory_mb: row.get(7)?,
        max_memory_bytes: row.get::<_, i64>(8)? as u64,
        cold_start: row.get(9)?,
        init_us: row.get::<_, i64>(10)? as u64,
        outcome: if outcome == "success" {
            Outcome::Success
        } else {
            Outcome::Error
        },
        error_type: error_type
            .and_then(|t| serde_json::from_value::<ErrorType>(serde_json::Value::String(t)).ok()),
        error_message: row.get(13)?,
        logs: row.get(14)?,
    })
}

impl Store for SqliteStore {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn tenants(&self) -> Result<Vec<nimbus_core::tenant::Tenant>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare("SELECT doc FROM tenants ORDER BY name")
            .map_err(backend)?;
        let rows = stmt.query_map([], |r| json_col(r, 0)).map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn insert_tenant(&self, tenant: &nimbus_core::tenant::Tenant) -> Result<bool> {
        let doc = serde_json::to_string(tenant).map_err(backend)?;
        let mut conn = lock(&self.control);
        let tx = conn.transaction().map_err(backend)?;
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO tenants (name, doc, created_ms) VALUES (?1, ?2, ?3)",
                params![tenant.name, doc, tenant.created_ms],
            )
            .map_err(backend)?;
        if n == 1 {
            delete_owned(&tx, &tenant.name)?;
        }
        tx.commit().map_err(backend)?;
        Ok(n == 1)
    }

    fn delete_tenant(&self, name: &str) -> Result<bool> {
        let mut conn = lock(&self.control);
        let tx = conn.transaction().map_err(backend)?;
        let n = tx
            .execute("DELETE FROM tenants WHERE name = ?1", [name])
            .map_err(backend)?;
        if n == 1 {
            delete_owned(&tx, name)?;
        }
        tx.commit().map_err(backend)?;
        Ok(n == 1)
    }

    fn node_artifacts(&self) -> Result<Vec<String>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare(
                "SELECT v.artifact_sha256 FROM functions f JOIN versions v
                   ON v.tenant = f.tenant AND v.function = f.name AND v.id = f.version_id
                 UNION
                 SELECT v.artifact_sha256 FROM published p JOIN versions v
                   ON v.tenant = p.tenant AND v.function = p.function AND v.id = p.version_id
                 UNION
                 SELECT v.artifact_sha256 FROM durable_executions d JOIN versions v
                   ON v.tenant = d.tenant AND v.function = d.function AND v.id = d.code
                 WHERE d.end_ms IS NULL",
            )
            .map_err(backend)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn insert_key(&self, key: &nimbus_core::store::StoredKey) -> Result<()> {
        let doc = serde_json::to_string(&key.info).map_err(backend)?;
        lock(&self.control)
            .execute(
                "INSERT INTO keys (tenant, id, hash, doc, revoked_ms, aws_secret)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    self.tenant,
                    key.info.id,
                    key.hash,
                    doc,
                    key.revoked_ms,
                    key.sealed_aws_secret
                ],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn keys(&self) -> Result<Vec<nimbus_core::store::StoredKey>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare(
                "SELECT doc, hash, revoked_ms, aws_secret FROM keys WHERE tenant = ?1
                 ORDER BY rowid",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([&self.tenant], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            })
            .map_err(backend)?;
        rows.map(|row| {
            let (doc, hash, revoked_ms, sealed_aws_secret) = row.map_err(backend)?;
            Ok(nimbus_core::store::StoredKey {
                info: serde_json::from_str(&doc).map_err(backend)?,
                hash,
                revoked_ms,
                sealed_aws_secret,
            })
        })
        .collect()
    }

    fn revoke_key(&self, id: &str) -> Result<bool> {
        let n = lock(&self.control)
            .execute(
                "UPDATE keys SET revoked_ms = ?3
                 WHERE tenant = ?1 AND id = ?2 AND revoked_ms IS NULL",
                params![self.tenant, id, now_ms()],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn function_policy(&self, function: &str) -> Result<Vec<nimbus_core::keys::PolicyStatement>> {
        let doc: Option<String> = lock(&self.control)
            .query_row(
                "SELECT doc FROM function_policies WHERE tenant = ?1 AND function = ?2",
                params![self.tenant, function],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        match doc {
            None => Ok(Vec::new()),
            Some(d) => serde_json::from_str(&d).map_err(backend),
        }
    }

    fn put_function_policy(
        &self,
        function: &str,
        statements: &[nimbus_core::keys::PolicyStatement],
    ) -> Result<()> {
        let conn = lock(&self.control);
        if statements.is_empty() {
            conn.execute(
                "DELETE FROM function_policies WHERE tenant = ?1 AND function = ?2",
                params![self.tenant, function],
            )
            .map_err(backend)?;
        } else {
            let doc = serde_json::to_string(statements).map_err(backend)?;
            conn.execute(
                "INSERT INTO function_policies (tenant, function, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, function) DO UPDATE SET doc = excluded.doc",
                params![self.tenant, function, doc],
            )
            .map_err(backend)?;
        }
        Ok(())
    }

    fn append_audit(&self, e: &nimbus_core::store::AuditEntry) -> Result<()> {
        lock(&self.control)
            .execute(
                "INSERT INTO audit (tenant, at_ms, key_id, action, status, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![self.tenant, e.at_ms, e.key_id, e.action, e.status, e.detail],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn audit(&self, limit: usize) -> Result<Vec<nimbus_core::store::AuditEntry>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare(
                "SELECT seq, at_ms, key_id, action, status, detail FROM
                   (SELECT * FROM audit WHERE tenant = ?1 ORDER BY seq DESC LIMIT ?2)
                 ORDER BY seq",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![self.tenant, limit as i64], |r| {
                Ok(nimbus_core::store::AuditEntry {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    key_id: r.get(2)?,
                    action: r.get(3)?,
                    status: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn put_secret(&self, name: &str, sealed: &[u8]) -> Result<bool> {
        let conn = lock(&self.control);
        let existed: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM secrets WHERE tenant = ?1 AND name = ?2)",
                params![self.tenant, name],
                |r| r.get(0),
            )
            .map_err(backend)?;
        conn.execute(
            "INSERT INTO secrets (tenant, name, sealed, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, name) DO UPDATE SET sealed = excluded.sealed,
                 updated_ms = excluded.updated_ms",
            params![self.tenant, name, sealed, now_ms()],
        )
        .map_err(backend)?;
        Ok(!existed)
    }

    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        lock(&self.control)
            .query_row(
                "SELECT sealed FROM secrets WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
    }

    fn secrets(&self) -> Result<Vec<nimbus_core::store::SecretInfo>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare("SELECT name, updated_ms FROM secrets WHERE tenant = ?1 ORDER BY name")
            .map_err(backend)?;
        let rows = stmt
            .query_map([&self.tenant], |r| {
                Ok(nimbus_core::store::SecretInfo {
                    name: r.get(0)?,
                    updated_ms: r.get(1)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn delete_secret(&self, name: &str) -> Result<bool> {
        let n = lock(&self.control)
            .execute(
                "DELETE FROM secrets WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, name],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn api_key_hashes(&self) -> Result<Vec<String>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare("SELECT hash FROM api_keys WHERE tenant = ?1")
            .map_err(backend)?;
        let rows = stmt
            .query_map([&self.tenant], |r| r.get(0))
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn insert_api_key(&self, hash_hex: &str) -> Result<()> {
        lock(&self.control)
            .execute(
                "INSERT OR IGNORE INTO api_keys (tenant, hash, created_ms) VALUES (?1, ?2, ?3)",
                params![self.tenant, hash_hex, now_ms()],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn app_digest(&self, app: &str) -> Result<Option<String>> {
        lock(&self.control)
            .query_row(
                "SELECT digest FROM apps WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, app],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(backend)
    }

    fn deploy_app(&self, d: &AppDeployment) -> Result<()> {
        let mut conn = lock(&self.control);
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut owner_of = tx
                .prepare_cached("SELECT app FROM functions WHERE tenant = ?1 AND name = ?2")
                .map_err(backend)?;
            for f in &d.functions {
                let owner: Option<String> = owner_of
                    .query_row(params![self.tenant, f.version.function], |r| r.get(0))
                    .optional()
                    .map_err(backend)?;
                if let Some(owner) = owner
                    && owner != d.app
                {
                    return Err(StoreError::Conflict(format!(
                        "function `{}` belongs to app `{owner}`; remove it there first or rename it",
                        f.version.function
                    )));
                }
            }
        }
        check_event_names(&tx, &self.tenant, &d.app, &d.events)?;
        put_events(&tx, &self.tenant, &d.app, &d.events)?;
        crate::machines::put_app_machines(&tx, &self.tenant, &d.app, &d.workflows)?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO apps (tenant, name, digest, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, name) DO UPDATE SET digest = excluded.digest, updated_ms = excluded.updated_ms",
            params![self.tenant, d.app, d.digest, now],
        )
        .map_err(backend)?;
        tx.execute(
            "DELETE FROM functions WHERE tenant = ?1 AND app = ?2",
            params![self.tenant, d.app],
        )
        .map_err(backend)?;
        {
            // Prepared once: an app of thousands of functions is one statement each.
            let mut version = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO versions
                     (tenant, function, id, app, artifact_sha256, kind, config, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(backend)?;
            let mut function = tx
                .prepare_cached(
                    "INSERT INTO functions (tenant, name, app, version_id, routes) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(backend)?;
            for f in &d.functions {
                let v = &f.version;
                let config = serde_json::to_string(&v.config).map_err(backend)?;
                version
                    .execute(params![
                        self.tenant,
                        v.function,
                        v.id,
                        d.app,
                        v.artifact_sha256,
                        kind_str(v.kind),
                        config,
                        v.created_at_ms
                    ])
                    .map_err(backend)?;
                let routes = serde_json::to_string(&f.routes).map_err(backend)?;
                function
                    .execute(params![self.tenant, v.function, d.app, v.id, routes])
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    fn event_resources(&self) -> Result<Vec<(String, EventResources)>> {
        let conn = lock(&self.control);
        all_events(&conn, &self.tenant)
    }

    fn put_events(&self, owner: &str, events: &EventResources) -> Result<()> {
        let mut conn = lock(&self.control);
        let tx = conn.transaction().map_err(backend)?;
        check_event_names(&tx, &self.tenant, owner, events)?;
        put_events(&tx, &self.tenant, owner, events)?;
        tx.commit().map_err(backend)
    }

    fn remove_app(&self, app: &str) -> Result<bool> {
        let mut conn = lock(&self.control);
        let tx = conn.transaction().map_err(backend)?;
        tx.execute(
            "DELETE FROM app_events WHERE tenant = ?1 AND app = ?2",
            params![self.tenant, app],
        )
        .map_err(backend)?;
        crate::machines::remove_app_machines(&tx, &self.tenant, app)?;
        for table in ["published", "aliases"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE tenant = ?1 AND function IN
                     (SELECT name FROM functions WHERE tenant = ?1 AND app = ?2)"
                ),
                params![self.tenant, app],
            )
            .map_err(backend)?;
        }
        tx.execute(
            "DELETE FROM functions WHERE tenant = ?1 AND app = ?2",
            params![self.tenant, app],
        )
        .map_err(backend)?;
        let n = tx
            .execute(
                "DELETE FROM apps WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, app],
            )
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(n > 0)
    }

    fn remove_function(&self, function: &str) -> Result<bool> {
        let mut conn = lock(&self.control);
        let tx = conn.transaction().map_err(backend)?;
        let app: Option<String> = tx
            .query_row(
                "DELETE FROM functions WHERE tenant = ?1 AND name = ?2 RETURNING app",
                params![self.tenant, function],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        if app.is_some() {
            for table in ["published", "aliases"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE tenant = ?1 AND function = ?2"),
                    params![self.tenant, function],
                )
                .map_err(backend)?;
            }
        }
        if let Some(app) = &app {
            // The app no longer matches its manifest: the next deploy of it must not be a no-op.
            tx.execute(
                "UPDATE apps SET digest = NULL WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, app],
            )
            .map_err(backend)?;
            tx.execute(
                "DELETE FROM apps WHERE tenant = ?1 AND name = ?2
                 AND NOT EXISTS (SELECT 1 FROM functions WHERE tenant = ?1 AND app = ?2)",
                params![self.tenant, app],
            )
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(app.is_some())
    }

    fn version(&self, function: &str, id: &str) -> Result<Option<FunctionVersion>> {
        lock(&self.control)
            .query_row(
                "SELECT function, app, id, artifact_sha256, kind, config, created_ms FROM versions
                 WHERE tenant = ?1 AND function = ?2 AND id = ?3",
                params![self.tenant, function, id],
                |r| version_at(r, 0),
            )
            .optional()
            .map_err(backend)
    }

    fn active_functions(&self) -> Result<Vec<ActiveFunction>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare(
                "SELECT f.name, f.app, v.id, v.artifact_sha256, v.kind, v.config, v.created_ms, f.routes
                 FROM functions f JOIN versions v
                   ON v.tenant = f.tenant AND v.function = f.name AND v.id = f.version_id
                 WHERE f.tenant = ?1 ORDER BY f.name",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([&self.tenant], |r| {
                Ok(ActiveFunction {
                    version: version_at(r, 0)?,
                    routes: json_col(r, 7)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn publish_version(&self, function: &str, description: &str) -> Result<PublishedVersion> {
        let mut conn = lock(&self.control);
        let tx = conn.transaction().map_err(backend)?;
        let active: Option<String> = tx
            .query_row(
                "SELECT version_id FROM functions WHERE tenant = ?1 AND name = ?2",
                params![self.tenant, function],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let Some(active) = active else {
            return Err(StoreError::NotFound(format!(
                "no function named `{function}`"
            )));
        };
        let latest: Option<(u32, String)> = tx
            .query_row(
                "SELECT number, version_id FROM published WHERE tenant = ?1 AND function = ?2
                 ORDER BY number DESC LIMIT 1",
                params![self.tenant, function],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(backend)?;
        let number = match latest {
            Some((n, id)) if id == active => n,
            other => {
                let n = other.map_or(1, |(n, _)| n + 1);
                tx.execute(
                    "INSERT INTO published (tenant, function, number, version_id, description,
                     published_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![self.tenant, function, n, active, description, now_ms()],
                )
                .map_err(backend)?;
                n
            }
        };
        let published = published_rows(&tx, &self.tenant, function, Some(number))?
            .pop()
            .ok_or_else(|| StoreError::backend("the published version vanished"))?;
        tx.commit().map_err(backend)?;
        Ok(published)
    }

    fn published_versions(&self, function: &str) -> Result<Vec<PublishedVersion>> {
        published_rows(&lock(&self.control), &self.tenant, function, None)
    }

    fn published_artifacts(&self) -> Result<Vec<String>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare_cached(
                "SELECT DISTINCT v.artifact_sha256 FROM published p JOIN versions v
                   ON v.tenant = p.tenant AND v.function = p.function AND v.id = p.version_id
                 WHERE p.tenant = ?1",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([&self.tenant], |r| r.get(0))
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn put_alias(&self, alias: &Alias) -> Result<()> {
        let mut conn = lock(&self.control);
        let tx = conn.transaction().map_err(backend)?;
        let wanted = std::iter::once(alias.version).chain(alias.additional.map(|(v, _)| v));
        for number in wanted {
            let exists: Option<u32> = tx
                .query_row(
                    "SELECT number FROM published WHERE tenant = ?1 AND function = ?2 AND number = ?3",
                    params![self.tenant, alias.function, number],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!(
                    "`{}` has no published version {number}",
                    alias.function
                )));
            }
        }
        let doc = serde_json::to_string(alias).map_err(backend)?;
        tx.execute(
            "INSERT INTO aliases (tenant, function, name, doc) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, function, name) DO UPDATE SET doc = excluded.doc",
            params![self.tenant, alias.function, alias.name, doc],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn aliases(&self, function: &str) -> Result<Vec<Alias>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare_cached(
                "SELECT doc FROM aliases WHERE tenant = ?1 AND function = ?2 ORDER BY name",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![self.tenant, function], |r| json_col(r, 0))
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn delete_alias(&self, function: &str, name: &str) -> Result<bool> {
        let n = lock(&self.control)
            .execute(
                "DELETE FROM aliases WHERE tenant = ?1 AND function = ?2 AND name = ?3",
                params![self.tenant, function, name],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn apps(&self) -> Result<Vec<String>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare("SELECT name FROM apps WHERE tenant = ?1 ORDER BY name")
            .map_err(backend)?;
        let rows = stmt
            .query_map([&self.tenant], |r| r.get(0))
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn insert_records(&self, records: &[InvocationRecord]) -> Result<()> {
        let mut conn = lock(&self.records);
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO invocations (tenant, {RECORD_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ))
                .map_err(backend)?;
            for r in records {
                stmt.execute(params![
                    self.tenant,
                    r.id,
                    r.function,
                    r.version,
                    serde_json::to_string(&r.trigger).map_err(backend)?,
                    r.start_ms,
                    r.duration_us as i64,
                    r.billed_ms as i64,
                    r.memory_mb,
                    r.max_memory_bytes as i64,
                    r.cold_start,
                    r.init_us as i64,
                    match r.outcome {
                        Outcome::Success => "success",
                        Outcome::Error => "error",
                    },
                    r.error_type.map(|t| t.as_str()),
                    r.error_message,
                    r.logs,
                ])
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    fn purge_records(&self, before_ms: i64) -> Result<u64> {
        let conn = lock(&self.records);
        let n = conn
            .execute(
                "DELETE FROM invocations WHERE tenant = ?1 AND start_ms < ?2",
                params![self.tenant, before_ms],
            )
            .map_err(backend)?;
        conn.execute(
            "DELETE FROM audit WHERE tenant = ?1 AND at_ms < ?2",
            params![self.tenant, before_ms],
        )
        .map_err(backend)?;
        Ok(n as u64)
    }

    fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>> {
        let conn = lock(&self.control);
        // Whole-range buckets start at the range start.
        let (bucket, origin) = match q.granularity.bucket_ms() {
            Some(b) => (b, 0),
            None => (i64::MAX, q.from_ms),
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT function, ((start_ms - ?5) / ?4) * ?4 + ?5 AS period, COUNT(*),
                        SUM(outcome = 'error'), SUM(cold_start), SUM(billed_ms),
                        SUM(memory_mb * billed_ms)
                 FROM invocations
                 WHERE tenant = ?1 AND start_ms >= ?2 AND start_ms < ?3
                   AND (?6 IS NULL OR function = ?6)
                 GROUP BY function, period ORDER BY period, function",
            )
            .map_err(backend)?;
        stmt.query_map(
            params![self.tenant, q.from_ms, q.to_ms, bucket, origin, q.function],
            |r| {
                Ok(UsageRow {
                    function: r.get(0)?,
                    period_start_ms: r.get(1)?,
                    requests: r.get::<_, i64>(2)? as u64,
                    errors: r.get::<_, i64>(3)? as u64,
                    cold_starts: r.get::<_, i64>(4)? as u64,
                    billed_ms: r.get::<_, i64>(5)? as u64,
                    mb_ms: r.get::<_, i64>(6)? as u64,
                })
            },
        )
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)
    }

    fn invocations(&self, function: &str, limit: usize) -> Result<Vec<InvocationRecord>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM invocations WHERE tenant = ?1 AND function = ?2
                 ORDER BY seq DESC LIMIT ?3"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![self.tenant, function, limit as i64],
                record_from_row,
            )
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn invocation(&self, id: &str) -> Result<Option<InvocationRecord>> {
        lock(&self.control)
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM invocations WHERE tenant = ?1 AND id = ?2"),
                params![self.tenant, id],
                record_from_row,
            )
            .optional()
            .map_err(backend)
    }

    fn logs(&self, function: &str, after: i64, limit: usize) -> Result<Vec<LogEntry>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, id, start_ms, logs FROM invocations
                 WHERE tenant = ?1 AND function = ?2 AND seq > ?3 AND logs != ''
                 ORDER BY seq LIMIT ?4",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![self.tenant, function, after, limit as i64], |r| {
                Ok(LogEntry {
                    seq: r.get(0)?,
                    invocation_id: r.get(1)?,
                    start_ms: r.get(2)?,
                    text: r.get(3)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<_>>().map_err(backend)
    }

    fn recent_logs(&self, function: &str, since_ms: i64, limit: usize) -> Result<Vec<LogEntry>> {
        let conn = lock(&self.control);
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, id, start_ms, logs FROM invocations
                 WHERE tenant = ?1 AND function = ?2 AND start_ms >= ?3 AND logs != ''
                 ORDER BY seq DESC LIMIT ?4",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![self.tenant, function, since_ms, limit as i64],
                |r| {
                    Ok(LogEntry {
                        seq: r.get(0)?,
                        invocation_id: r.get(1)?,
                        start_ms: r.get(2)?,
                        text: r.get(3)?,
                    })
                },
            )
            .map_err(backend)?;
        let mut newest: Vec<LogEntry> = rows.collect::<rusqlite::Result<_>>().map_err(backend)?;
        newest.reverse();
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nimbus.db"), "default").unwrap();
        (dir, store)
    }

    #[test]
    fn sqlite_store_passes_the_conformance_suite() {
        crate::conformance::run_all(|| open().1);
    }

    #[test]
    fn sqlite_store_passes_the_tenant_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::run_tenants(|tenant| {
            SqliteStore::open(&dir.path().join("nimbus.db"), tenant).unwrap()
        });
    }

    #[test]
    fn state_survives_reopening() {
        let (dir, store) = open();
        crate::conformance::deploy_sample(&store, "app1", &["f1"]);
        drop(store);
        let store = SqliteStore::open(&dir.path().join("nimbus.db"), "default").unwrap();
        assert_eq!(store.active_functions().unwrap().len(), 1);
    }

    #[test]
    fn tenants_do_not_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nimbus.db");
        let a = SqliteStore::open(&path, "a").unwrap();
        let b = SqliteStore::open(&path, "b").unwrap();
        crate::conformance::deploy_sample(&a, "app1", &["f1"]);
        assert!(b.active_functions().unwrap().is_empty());
        a.insert_api_key("k").unwrap();
        assert!(b.api_key_hashes().unwrap().is_empty());
    }
}
