//! [`SqliteLog`]: the embedded [`MessageLog`] on one SQLite file.
//!
//! Every change is group-committed: callers hand their operation to one writer thread and wait;
//! the writer takes everything queued, applies it in one transaction and answers each caller.
//! Under load many appends, leases and acks share one commit. Commits that hold an append are
//! `synchronous=FULL` (fsynced before anyone hears "accepted"); commits of leases and acks alone
//! are `synchronous=NORMAL`: a crash may forget them, which only means a redelivery
//! (at-least-once), and the next FULL commit makes them durable too.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::reserve::Reserve;
use crate::{
    Delivery, LogError, MessageInfo, MessageLog, MessageState, NewMessage, Outcome, QueueStats,
    Settle,
};

/// Disk kept in reserve for receives and acks when the disk fills up.
pub const DEFAULT_RESERVE_BYTES: u64 = 64 << 20;

/// How long a deduplication key is remembered.
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL, body BLOB NOT NULL, attributes TEXT NOT NULL,
    appended_ms INTEGER NOT NULL, visible_ms INTEGER NOT NULL, receive_count INTEGER NOT NULL,
    receipt TEXT);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_ms, seq);
DROP INDEX IF EXISTS messages_receipt;
CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (queue, key));
CREATE TABLE IF NOT EXISTS outcomes (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL,
    receive_count INTEGER NOT NULL, appended_ms INTEGER NOT NULL, settled_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS outcomes_settled ON outcomes (settled_ms);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"#;
fn backend(e: rusqlite::Error) -> LogError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            LogError::Full
        }
        _ => LogError::backend(e),
    }
}

fn encode_attributes(attributes: &[(String, String)]) -> String {
    // Tab/newline-separated; both are escaped so any text round-trips.
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    attributes
        .iter()
        .map(|(k, v)| format!("{}\t{}", esc(k), esc(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode_attributes(text: &str) -> Vec<(String, String)> {
    let unesc = |s: &str| {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match (c, c == '\\') {
                (_, true) => match chars.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => {}
                },
                (c, false) => out.push(c),
            }
        }
        out
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (unesc(k), unesc(v)))
        .collect()
}

/// A change for the writer thread, with where to send its answer.
enum Op {
    Append(
        Vec<NewMessage>,
        Option<(String, i64)>,
        i64,
        mpsc::Sender<Result<Vec<String>, LogError>>,
    ),
    Receive {
        queue: String,
        max: usize,
        lease_ms: i64,
        now_ms: i64,
        reply: mpsc::Sender<Result<Vec<Delivery>, LogError>>,
    },
    Settle(
        String,
        Vec<Settle>,
        i64,
        mpsc::Sender<Result<Vec<bool>, LogError>>,
    ),
    Extend {
        queue: String,
        receipt: String,
        lease_ms: i64,
        now_ms: i64,
        reply: mpsc::Sender<Result<bool, LogError>>,
    },
}

/// An applied op's answer, sent only once its transaction has committed.
enum Answer {
    Ids(mpsc::Sender<Result<Vec<String>, LogError>>, Vec<String>),
    Deliveries(mpsc::Sender<Result<Vec<Delivery>, LogError>>, Vec<Delivery>),
    Settled(mpsc::Sender<Result<Vec<bool>, LogError>>, Vec<bool>),
    Extended(mpsc::Sender<Result<bool, LogError>>, bool),
}

impl Answer {
    fn send(self) {
        let _ = match self {
            Answer::Ids(r, v) => r.send(Ok(v)).is_ok(),
            Answer::Deliveries(r, v) => r.send(Ok(v)).is_ok(),
            Answer::Settled(r, v) => r.send(Ok(v)).is_ok(),
            Answer::Extended(r, v) => r.send(Ok(v)).is_ok(),
        };
    }

    fn fail(self, e: &LogError) {
        let err = || e.clone();
        let _ = match self {
            Answer::Ids(r, _) => r.send(Err(err())).is_ok(),
            Answer::Deliveries(r, _) => r.send(Err(err())).is_ok(),
            Answer::Settled(r, _) => r.send(Err(err())).is_ok(),
            Answer::Extended(r, _) => r.send(Err(err())).is_ok(),
        };
    }
}

fn append(
    tx: &Transaction<'_>,
    messages: &[NewMessage],
    cursor: Option<(String, i64)>,
    now_ms: i64,
) -> rusqlite::Result<Vec<String>> {
    if let Some((name, value)) = cursor {
        tx.prepare_cached("INSERT OR REPLACE INTO cursors (name, value) VALUES (?1, ?2)")?
            .execute(params![name, value])?;
    }
    let mut ids = Vec::with_capacity(messages.len());
    for m in messages {
        if let Some(key) = &m.dedup_key {
            let seen: Option<String> = tx
                .prepare_cached(
                    "SELECT id FROM dedup WHERE queue = ?1 AND key = ?2 AND expires_ms > ?3",
                )?
                .query_row(params![m.queue, key, now_ms], |r| r.get(0))
                .optional()?;
            if let Some(id) = seen {
                ids.push(id);
                continue;
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        tx.prepare_cached(
            "INSERT INTO messages (id, queue, body, attributes, appended_ms, visible_ms, receive_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
        )?
        .execute(params![
            id,
            m.queue,
            m.body,
            encode_attributes(&m.attributes),
            now_ms,
            m.deliver_after_ms.max(now_ms)
        ])?;
        if let Some(key) = &m.dedup_key {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO dedup (queue, key, id, expires_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![m.queue, key, id, now_ms + DEDUP_WINDOW_MS])?;
        }
        ids.push(id);
    }
    Ok(ids)
}

fn receive(
    tx: &Transaction<'_>,
    queue: &str,
    max: usize,
    lease_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<Vec<Delivery>> {
    let rows = tx
        .prepare_cached(
            "SELECT seq, id, body, attributes, receive_count, appended_ms FROM messages
             WHERE queue = ?1 AND visible_ms <= ?2 ORDER BY visible_ms, seq LIMIT ?3",
        )?
        .query_map(params![queue, now_ms, max as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut lease = tx.prepare_cached(
        "UPDATE messages SET visible_ms = ?1, receive_count = receive_count + 1, receipt = ?2
         WHERE seq = ?3",
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (seq, id, body, attributes, count, appended_ms) in rows {
        // The receipt names the row (no index needed to find it) and this lease.
        let receipt = format!("{seq}.{:016x}", rand::random::<u64>());
        lease.execute(params![now_ms + lease_ms, receipt, seq])?;
        out.push(Delivery {
            id,
            receipt,
            body,
            attributes: decode_attributes(&attributes),
            receive_count: count + 1,
            appended_ms,
        });
    }
    Ok(out)
}

/// The row a receipt names (`-1`, which names none, for a malformed receipt).
fn receipt_seq(receipt: &str) -> i64 {
    receipt
        .split_once('.')
        .and_then(|(seq, _)| seq.parse().ok())
        .unwrap_or(-1)
}

fn settle(
    tx: &Transaction<'_>,
    queue: &str,
    items: &[Settle],
    now_ms: i64,
) -> rusqlite::Result<Vec<bool>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let row: Option<(String, u32, i64)> = tx
            .prepare_cached(
                "DELETE FROM messages WHERE seq = ?1 AND receipt = ?2 AND queue = ?3
                 RETURNING id, receive_count, appended_ms",
            )?
            .query_row(
                params![receipt_seq(&item.receipt), item.receipt, queue],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let (Some((id, count, appended_ms)), Some(o)) = (&row, &item.outcome) {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO outcomes
                 (id, queue, status, detail, receive_count, appended_ms, settled_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                id,
                queue,
                o.status,
                o.detail,
                count,
                appended_ms,
                now_ms
            ])?;
        }
        out.push(row.is_some());
    }
    Ok(out)
}

fn extend(
    tx: &Transaction<'_>,
    queue: &str,
    receipt: &str,
    lease_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE messages SET visible_ms = ?1 WHERE seq = ?2 AND receipt = ?3 AND queue = ?4
             AND visible_ms > ?5",
        )?
        .execute(params![
            now_ms + lease_ms,
            receipt_seq(receipt),
            receipt,
            queue,
            now_ms
        ])?;
    Ok(n > 0)
}

/// Applies a batch of ops in one transaction; answers are sent by the caller after commit.
fn apply(tx: &Transaction<'_>, ops: Vec<Op>) -> (Vec<Answer>, Option<rusqlite::Error>) {
    let mut answers = Vec::with_capacity(ops.len());
    let mut failed = None;
    for op in ops {
        let answer = match op {
            Op::Append(m, cursor, now, r) => append(tx, &m, cursor, now)
                .map(|v| Answer::Ids(r.clone(), v))
                .map_err(|e| (e, Answer::Ids(r, Vec::new()))),
            Op::Receive {
                queue,
                max,
                lease_ms,
                now_ms,
                reply,
            } => receive(tx, &queue, max, lease_ms, now_ms)
                .map(|v| Answer::Deliveries(reply.clone(), v))
                .map_err(|e| (e, Answer::Deliveries(reply, Vec::new()))),
            Op::Settle(q, items, now, r) => settle(tx, &q, &items, now)
                .map(|v| Answer::Settled(r.clone(), v))
                .map_err(|e| (e, Answer::Settled(r, Vec::new()))),
            Op::Extend {
                queue,
                receipt,
                lease_ms,
                now_ms,
                reply,
            } => extend(tx, &queue, &receipt, lease_ms, now_ms)
                .map(|v| Answer::Extended(reply.clone(), v))
                .map_err(|e| (e, Answer::Extended(reply, false))),
        };
        match answer {
            Ok(a) => answers.push(a),
            Err((e, a)) => {
                answers.push(a);
                failed.get_or_insert(e);
            }
        }
    }
    (answers, failed)
}

/// The writer thread: drains queued ops, one transaction per batch. When the disk runs low
/// (see [`Reserve`]) appends are refused with [`LogError::Full`] and everything else goes on.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Op>, mut reserve: Reserve) {
    let mut synchronous_full = true;
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        // Looked at for every batch: a nearly full disk gives up the ballast before receives
        // and acks need the room.
        if !reserve.appends_allowed() {
            ops.retain(|op| match op {
                Op::Append(_, _, _, reply) => {
                    let _ = reply.send(Err(LogError::Full));
                    false
                }
                _ => true,
            });
            if ops.is_empty() {
                continue;
            }
        }
        let durable = ops.iter().any(|op| matches!(op, Op::Append(..)));
        if durable != synchronous_full {
            let mode = if durable { "FULL" } else { "NORMAL" };
            if conn.pragma_update(None, "synchronous", mode).is_ok() {
                synchronous_full = durable;
            }
        }
        let result = conn.transaction().map_err(backend).and_then(|tx| {
            let (answers, failed) = apply(&tx, ops);
            match failed {
                None => tx.commit().map(|()| answers).map_err(backend),
                Some(e) => {
                    drop(tx);
                    let e = backend(e);
                    for a in answers {
                        a.fail(&e);
                    }
                    Err(e)
                }
            }
        });
        match result {
            Ok(answers) => answers.into_iter().for_each(Answer::send),
            Err(e) => tracing::error!(error = %e, "message log write failed"),
        }
    }
}

/// The embedded message log.
pub struct SqliteLog {
    reader: Arc<Mutex<Connection>>,
    ops: Mutex<mpsc::Sender<Op>>,
    /// The checkpointer thread stops when this is the last reference.
    _alive: Arc<()>,
}

impl SqliteLog {
    /// Opens (creating) the log at `path` and starts its writer thread, with a disk reserve of
    /// [`DEFAULT_RESERVE_BYTES`].
    pub fn open(path: &Path) -> Result<Self, LogError> {
        Self::open_with_reserve(path, DEFAULT_RESERVE_BYTES)
    }

    /// [`SqliteLog::open`] with a disk reserve of `reserve_bytes` (0: none), kept next to the
    /// log as `<file>.reserve`.
    pub fn open_with_reserve(path: &Path, reserve_bytes: u64) -> Result<Self, LogError> {
        let open = || -> rusqlite::Result<Connection> {
            let c = Connection::open(path)?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(c)
        };
        let reader = open().map_err(backend)?;
        reader.execute_batch(SCHEMA).map_err(backend)?;
        let writer = open().map_err(backend)?;
        // Checkpoints run on their own thread, so that copying the WAL back rarely stalls the
        // writer (and everyone waiting on its commits). Under steady load that thread cannot
        // finish (new frames keep coming), so the writer still checkpoints past 32 MiB of WAL,
        // copying only what is left, and the WAL starts over.
        writer
            .pragma_update(None, "wal_autocheckpoint", 8192)
            .map_err(backend)?;
        writer
            .pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(backend)?;
        let checkpointer = open().map_err(backend)?;
        let alive = Arc::new(());
        let stop = alive.clone();
        std::thread::Builder::new()
            .name("nimbus-log-ckpt".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    let result =
                        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "message log checkpoint failed");
                    }
                    if Arc::strong_count(&stop) == 1 {
                        return;
                    }
                }
            })
            .map_err(LogError::backend)?;
        let (tx, rx) = mpsc::channel::<Op>();
        let reserve = Reserve::new(path.with_extension("reserve"), reserve_bytes);
        std::thread::Builder::new()
            .name("nimbus-log".into())
            .spawn(move || write_loop(writer, rx, reserve))
            .map_err(LogError::backend)?;
        Ok(Self {
            reader: Arc::new(Mutex::new(reader)),
            ops: Mutex::new(tx),
            _alive: alive,
        })
    }

    fn reader(&self) -> Result<std::sync::MutexGuard<'_, Connection>, LogError> {
        self.reader
            .lock()
            .map_err(|_| LogError::backend("connection lock poisoned"))
    }

    /// Sends an op to the writer and waits for its answer.
    fn call<T>(
        &self,
        op: impl FnOnce(mpsc::Sender<Result<T, LogError>>) -> Op,
    ) -> Result<T, LogError> {
        let (reply, answer) = mpsc::channel();
        self.ops
            .lock()
            .map_err(|_| LogError::backend("writer lock poisoned"))?
            .send(op(reply))
            .map_err(|_| LogError::backend("the log writer has stopped"))?;
        answer
            .recv()
            .map_err(|_| LogError::backend("the log writer has stopped"))?
    }

    /// Runs a rare maintenance statement on the reader connection, outside group commit.
    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize, LogError> {
        self.reader()?.execute(sql, p).map_err(backend)
    }
}

impl MessageLog for SqliteLog {
    fn append(&self, messages: Vec<NewMessage>, now_ms: i64) -> Result<Vec<String>, LogError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|r| Op::Append(messages, None, now_ms, r))
    }

    fn append_with_cursor(
        &self,
        messages: Vec<NewMessage>,
        cursor: (&str, i64),
        now_ms: i64,
    ) -> Result<Vec<String>, LogError> {
        let cursor = Some((cursor.0.to_string(), cursor.1));
        self.call(|r| Op::Append(messages, cursor, now_ms, r))
    }

    fn cursor(&self, name: &str) -> Result<Option<i64>, LogError> {
        self.reader()?
            .query_row(
                "SELECT value FROM cursors WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
    }

    fn release_leases(&self, now_ms: i64) -> Result<u64, LogError> {
        Ok(self.exec(
            "UPDATE messages SET visible_ms = ?1, receipt = NULL
             WHERE receipt IS NOT NULL AND visible_ms > ?1",
            params![now_ms],
        )? as u64)
    }

    fn receive(
        &self,
        queue: &str,
        max: usize,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, LogError> {
        // Cheap read first: an empty queue costs no trip through the writer.
        let ready: bool = self
            .reader()?
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE queue = ?1 AND visible_ms <= ?2)",
            )
            .and_then(|mut s| s.query_row(params![queue, now_ms], |r| r.get(0)))
            .map_err(backend)?;
        if !ready || max == 0 {
            return Ok(Vec::new());
        }
        self.call(|reply| Op::Receive {
            queue: queue.to_string(),
            max,
            lease_ms,
            now_ms,
            reply,
        })
    }

    fn settle(&self, queue: &str, items: Vec<Settle>, now_ms: i64) -> Result<Vec<bool>, LogError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|r| Op::Settle(queue.to_string(), items, now_ms, r))
    }

    fn extend(
        &self,
        queue: &str,
        receipt: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let current = self.call(|reply| Op::Extend {
            queue: queue.to_string(),
            receipt: receipt.to_string(),
            lease_ms,
            now_ms,
            reply,
        })?;
        if current {
            Ok(())
        } else {
            Err(LogError::StaleReceipt(queue.to_string()))
        }
    }

    fn stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats, LogError> {
        self.reader()?
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(receipt IS NOT NULL AND visible_ms > ?2), 0),
                 COALESCE(MIN(appended_ms), 0) FROM messages WHERE queue = ?1",
                params![queue, now_ms],
                |r| {
                    Ok(QueueStats {
                        messages: r.get::<_, i64>(0)? as u64,
                        in_flight: r.get::<_, i64>(1)? as u64,
                        oldest_ms: r.get(2)?,
                    })
                },
            )
            .map_err(backend)
    }

    fn next_visible(&self, queue: &str, now_ms: i64) -> Result<Option<i64>, LogError> {
        let earliest: Option<i64> = self
            .reader()?
            .query_row(
                "SELECT MIN(visible_ms) FROM messages WHERE queue = ?1",
                params![queue],
                |r| r.get(0),
            )
            .map_err(backend)?;
        Ok(earliest.map(|at| at.max(now_ms)))
    }

    fn lookup(&self, id: &str, now_ms: i64) -> Result<Option<MessageInfo>, LogError> {
        let conn = self.reader()?;
        let waiting = conn
            .query_row(
                "SELECT queue, visible_ms, receipt IS NOT NULL, receive_count, appended_ms
                 FROM messages WHERE id = ?1",
                params![id],
                |r| {
                    let visible_ms: i64 = r.get(1)?;
                    let leased: bool = r.get(2)?;
                    Ok(MessageInfo {
                        queue: r.get(0)?,
                        state: if leased && visible_ms > now_ms {
                            MessageState::Leased {
                                until_ms: visible_ms,
                            }
                        } else {
                            MessageState::Waiting { visible_ms }
                        },
                        receive_count: r.get(3)?,
                        appended_ms: r.get(4)?,
                        settled_ms: 0,
                    })
                },
            )
            .optional()
            .map_err(backend)?;
        if waiting.is_some() {
            return Ok(waiting);
        }
        conn.query_row(
            "SELECT queue, status, detail, receive_count, appended_ms, settled_ms
             FROM outcomes WHERE id = ?1",
            params![id],
            |r| {
                Ok(MessageInfo {
                    queue: r.get(0)?,
                    state: MessageState::Settled(Outcome {
                        status: r.get(1)?,
                        detail: r.get(2)?,
                    }),
                    receive_count: r.get(3)?,
                    appended_ms: r.get(4)?,
                    settled_ms: r.get(5)?,
                })
            },
        )
        .optional()
        .map_err(backend)
    }

    fn purge(&self, queue: &str) -> Result<u64, LogError> {
        Ok(self.exec("DELETE FROM messages WHERE queue = ?1", params![queue])? as u64)
    }

    fn expire(&self, before_ms: i64) -> Result<(), LogError> {
        self.exec(
            "DELETE FROM outcomes WHERE settled_ms < ?1",
            params![before_ms],
        )?;
        self.exec(
            "DELETE FROM dedup WHERE expires_ms < ?1",
            params![before_ms],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_any_text() {
        let attrs = vec![
            ("type".to_string(), "order".to_string()),
            ("weird\tkey".to_string(), "line\nbreak\\slash".to_string()),
        ];
        assert_eq!(decode_attributes(&encode_attributes(&attrs)), attrs);
        assert!(decode_attributes("").is_empty());
    }

    #[test]
    fn the_sqlite_log_conforms() {
        crate::conformance::run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            let log = SqliteLog::open(&dir.path().join("log.db")).unwrap();
            (dir, log)
        });
    }

    #[test]
    fn appends_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let ids = {
            let log = SqliteLog::open(&path).unwrap();
            log.append(
                vec![NewMessage {
                    queue: "q".into(),
                    body: b"kept".to_vec(),
                    ..NewMessage::default()
                }],
                1_000,
            )
            .unwrap()
        };
        let log = SqliteLog::open(&path).unwrap();
        let got = log.receive("q", 10, 30_000, 2_000).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, ids[0]);
        assert_eq!(got[0].body, b"kept");
    }
}
