//! [`SqliteLog`]: the embedded [`MessageLog`] on one SQLite file.
//!
//! Appends are group-committed: callers hand their batch to one writer thread and wait; the
//! writer takes everything queued, writes it in one transaction (`synchronous=FULL`: one fsync)
//! and answers each caller. Under load many appends share an fsync; alone, an append costs one.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Delivery, LogError, MessageLog, NewMessage, QueueStats};

/// How long a deduplication key is remembered.
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL, body BLOB NOT NULL, attributes TEXT NOT NULL,
    appended_ms INTEGER NOT NULL, visible_ms INTEGER NOT NULL, receive_count INTEGER NOT NULL,
    receipt TEXT);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_ms, seq);
CREATE TABLE IF NOT EXISTS dedup (
    queue TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
    PRIMARY KEY (queue, key));
"#;

fn backend(e: impl std::fmt::Display) -> LogError {
    LogError::Backend(e.to_string())
}

type Reply = mpsc::Sender<Result<Vec<String>, LogError>>;

/// The embedded message log.
pub struct SqliteLog {
    conn: Arc<Mutex<Connection>>,
    appends: Mutex<mpsc::Sender<(Vec<NewMessage>, i64, Reply)>>,
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

fn write_batch(
    conn: &mut Connection,
    batch: &[(Vec<NewMessage>, i64)],
) -> Result<Vec<Vec<String>>, LogError> {
    let tx = conn.transaction().map_err(backend)?;
    let mut all = Vec::with_capacity(batch.len());
    for (messages, now_ms) in batch {
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            if let Some(key) = &m.dedup_key {
                let seen: Option<String> = tx
                    .query_row(
                        "SELECT id FROM dedup WHERE queue = ?1 AND key = ?2 AND expires_ms > ?3",
                        params![m.queue, key, now_ms],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(id) = seen {
                    ids.push(id);
                    continue;
                }
            }
            let id = uuid::Uuid::now_v7().to_string();
            tx.execute(
                "INSERT INTO messages (id, queue, body, attributes, appended_ms, visible_ms, receive_count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                params![
                    id,
                    m.queue,
                    m.body,
                    encode_attributes(&m.attributes),
                    now_ms,
                    m.deliver_after_ms.max(*now_ms)
                ],
            )
            .map_err(backend)?;
            if let Some(key) = &m.dedup_key {
                tx.execute(
                    "INSERT OR REPLACE INTO dedup (queue, key, id, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![m.queue, key, id, now_ms + DEDUP_WINDOW_MS],
                )
                .map_err(backend)?;
            }
            ids.push(id);
        }
        all.push(ids);
    }
    tx.commit().map_err(backend)?;
    Ok(all)
}

impl SqliteLog {
    /// Opens (creating) the log at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let open = || -> rusqlite::Result<Connection> {
            let c = Connection::open(path)?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "FULL")?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(c)
        };
        let conn = open().map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        let mut writer = open().map_err(backend)?;
        let (tx, rx) = mpsc::channel::<(Vec<NewMessage>, i64, Reply)>();
        std::thread::Builder::new()
            .name("nimbus-log".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut pending = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        pending.push(more);
                    }
                    let batch: Vec<(Vec<NewMessage>, i64)> = pending
                        .iter_mut()
                        .map(|(m, now, _)| (std::mem::take(m), *now))
                        .collect();
                    match write_batch(&mut writer, &batch) {
                        Ok(ids) => {
                            for ((_, _, reply), ids) in pending.into_iter().zip(ids) {
                                let _ = reply.send(Ok(ids));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "message log append failed");
                            for (_, _, reply) in pending {
                                let _ = reply.send(Err(LogError::Backend(e.to_string())));
                            }
                        }
                    }
                }
            })
            .map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            appends: Mutex::new(tx),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, LogError> {
        self.conn
            .lock()
            .map_err(|_| backend("connection lock poisoned"))
    }
}

impl MessageLog for SqliteLog {
    fn append(&self, messages: Vec<NewMessage>, now_ms: i64) -> Result<Vec<String>, LogError> {
        let (reply, answer) = mpsc::channel();
        self.appends
            .lock()
            .map_err(|_| backend("append lock poisoned"))?
            .send((messages, now_ms, reply))
            .map_err(|_| backend("the log writer has stopped"))?;
        answer
            .recv()
            .map_err(|_| backend("the log writer has stopped"))?
    }

    fn receive(
        &self,
        queue: &str,
        max: usize,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, LogError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(backend)?;
        let mut out = Vec::new();
        {
            let mut select = tx
                .prepare_cached(
                    "SELECT seq, id, body, attributes, receive_count, appended_ms FROM messages
                     WHERE queue = ?1 AND visible_ms <= ?2 ORDER BY visible_ms, seq LIMIT ?3",
                )
                .map_err(backend)?;
            let rows = select
                .query_map(params![queue, now_ms, max as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, u32>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            let mut lease = tx
                .prepare_cached(
                    "UPDATE messages SET visible_ms = ?1, receive_count = receive_count + 1,
                     receipt = ?2 WHERE seq = ?3",
                )
                .map_err(backend)?;
            for (seq, id, body, attributes, count, appended_ms) in rows {
                let receipt = uuid::Uuid::now_v7().to_string();
                lease
                    .execute(params![now_ms + lease_ms, receipt, seq])
                    .map_err(backend)?;
                out.push(Delivery {
                    id,
                    receipt,
                    body,
                    attributes: decode_attributes(&attributes),
                    receive_count: count + 1,
                    appended_ms,
                });
            }
        }
        tx.commit().map_err(backend)?;
        Ok(out)
    }

    fn ack(&self, queue: &str, receipt: &str) -> Result<(), LogError> {
        let n = self
            .conn()?
            .execute(
                "DELETE FROM messages WHERE queue = ?1 AND receipt = ?2",
                params![queue, receipt],
            )
            .map_err(backend)?;
        if n == 0 {
            return Err(LogError::StaleReceipt(queue.to_string()));
        }
        Ok(())
    }

    fn extend(
        &self,
        queue: &str,
        receipt: &str,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let n = self
            .conn()?
            .execute(
                "UPDATE messages SET visible_ms = ?1 WHERE queue = ?2 AND receipt = ?3
                 AND visible_ms > ?4",
                params![now_ms + lease_ms, queue, receipt, now_ms],
            )
            .map_err(backend)?;
        if n == 0 {
            return Err(LogError::StaleReceipt(queue.to_string()));
        }
        Ok(())
    }

    fn stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats, LogError> {
        self.conn()?
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
