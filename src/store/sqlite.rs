//! The durable store: one SQLite file (bundled SQLite, WAL mode) under `data_dir`,
//! written by one thread that commits each batch in one transaction.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension};

use super::{compact, HistoryRecord, Restore, StoreOp, StoredState, TaskRecord};
use crate::body::Body;
use crate::config::store::{StoreConfig, Synchronous};

/// A store that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// What a restore read: how many rows went into the [`Restore`], and the schedule.
pub struct Loaded {
    pub tasks: usize,
    pub history: usize,
    /// Scheduled total tasks, as the JSON the scheduler saved.
    pub schedule: Vec<serde_json::Value>,
}

/// An open store file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
    history_per_topic: usize,
    finished_since_compaction: usize,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    timeout REAL,
    max_retry INTEGER,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bodies (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    guid TEXT NOT NULL,
    topic TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    finished_at_ms INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS history_by_topic ON history (topic, id);
CREATE TABLE IF NOT EXISTS schedule (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS deletions (
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    record TEXT NOT NULL
);
";

/// How many finished tasks between two trims of the history table.
const COMPACT_EVERY: usize = 10_000;

impl SqliteStore {
    /// Opens (or creates) `data_dir/broker.sqlite3`.
    pub fn open(config: &StoreConfig) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StoreError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let path = config.data_dir.join("broker.sqlite3");
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        let synchronous = match config.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        // Exclusive before WAL: a second broker on the same file would hand out the
        // same tasks twice, and in exclusive mode WAL keeps its index in the heap
        // instead of mapping a `-shm` file (a mapped file that cannot be written
        // kills the process with SIGBUS instead of failing a statement).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", synchronous)
            .map_err(sqlite)?;
        migrate_bodies_out_of_tasks(&conn).map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        if config.max_size_mb > 0 {
            let page_size: i64 = conn
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .map_err(sqlite)?;
            let max_bytes =
                i64::try_from(config.max_size_mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX);
            let pages = max_bytes / page_size.max(512);
            conn.pragma_update(None, "max_page_count", pages)
                .map_err(sqlite)?;
        }
        // No integrity scan here: it would read the whole file at every start. A file
        // that is not a database fails the statements above; damage inside one fails
        // the read or write that meets it, which is reported with the path.
        Ok(SqliteStore {
            path,
            conn,
            history_per_topic: config.history_per_topic,
            finished_since_compaction: 0,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Streams every task (in arrival order) and the history into `into`, row by
    /// row, and reads the schedule.
    pub fn load_into(&self, into: &mut impl Restore) -> Result<Loaded, StoreError> {
        let tasks = self.load_tasks(into)?;
        let history = self.load_history(into)?;
        let mut statement = self
            .conn
            .prepare("SELECT spec FROM schedule ORDER BY id")
            .map_err(|e| self.sqlite(e))?;
        let schedule = statement
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| self.sqlite(e))?
            .into_iter()
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect();
        Ok(Loaded {
            tasks,
            history,
            schedule,
        })
    }

    fn load_tasks(&self, into: &mut impl Restore) -> Result<usize, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT guid, topic, body, attempt, state, timeout, max_retry, last_error, created_at_ms
                 FROM tasks JOIN bodies USING (seq) ORDER BY seq",
            )
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement.query([]).map_err(|e| self.sqlite(e))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            into.task(task_record(row).map_err(|e| self.sqlite(e))?);
            n += 1;
        }
        Ok(n)
    }

    fn load_history(&self, into: &mut impl Restore) -> Result<usize, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT guid, topic, outcome, attempt, finished_at_ms, error FROM history ORDER BY id")
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement.query([]).map_err(|e| self.sqlite(e))?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(|e| self.sqlite(e))? {
            let record = (|| {
                Ok(HistoryRecord {
                    guid: r.get(0)?,
                    topic: r.get(1)?,
                    outcome: r.get(2)?,
                    attempt: r.get(3)?,
                    finished_at_ms: r.get(4)?,
                    error: r.get(5)?,
                })
            })()
            .map_err(|e| self.sqlite(e))?;
            into.history(record);
            n += 1;
        }
        Ok(n)
    }

    /// Writes one batch in one transaction.
    pub fn commit(&mut self, ops: &[StoreOp]) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        let mut finished = 0;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO tasks (guid, topic, attempt, state, timeout, max_retry, last_error, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (guid) DO UPDATE SET topic = ?2, attempt = ?3, state = ?4,
                     timeout = ?5, max_retry = ?6, last_error = ?7
                 RETURNING seq",
            )?;
            let mut put_body =
                tx.prepare_cached("INSERT OR REPLACE INTO bodies (seq, body) VALUES (?1, ?2)")?;
            let mut delete_body = tx.prepare_cached(
                "DELETE FROM bodies WHERE seq = (SELECT seq FROM tasks WHERE guid = ?1)",
            )?;
            let mut set_state =
                tx.prepare_cached("UPDATE tasks SET state = ?2, attempt = ?3, last_error = coalesce(?4, last_error) WHERE guid = ?1")?;
            let mut delete = tx.prepare_cached("DELETE FROM tasks WHERE guid = ?1")?;
            let mut probe = tx.prepare_cached(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('probed_at_ms', strftime('%s', 'now') * 1000)",
            )?;
            let mut history = tx.prepare_cached(
                "INSERT INTO history (guid, topic, outcome, attempt, finished_at_ms, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut put_schedule =
                tx.prepare_cached("INSERT OR REPLACE INTO schedule (id, spec) VALUES (?1, ?2)")?;
            let mut drop_schedule = tx.prepare_cached("DELETE FROM schedule WHERE id = ?1")?;
            let mut deletion =
                tx.prepare_cached("INSERT INTO deletions (task_id, record) VALUES (?1, ?2)")?;
            for op in ops {
                match op {
                    StoreOp::Upsert(r) => {
                        let seq: i64 = upsert.query_row(
                            params![
                                &r.guid,
                                &r.topic,
                                r.attempt,
                                r.state.as_str(),
                                r.timeout,
                                r.max_retry,
                                &r.last_error,
                                r.created_at_ms
                            ],
                            |row| row.get(0),
                        )?;
                        put_body.execute(params![seq, r.body.as_bytes()])?;
                    }
                    StoreOp::SetState {
                        guid,
                        state,
                        attempt,
                        last_error,
                    } => {
                        set_state.execute(params![guid, state.as_str(), attempt, last_error])?;
                    }
                    StoreOp::Finish(h) => {
                        delete_body.execute(params![h.guid])?;
                        delete.execute(params![h.guid])?;
                        history.execute(params![
                            &h.guid,
                            &h.topic,
                            &h.outcome,
                            h.attempt,
                            h.finished_at_ms,
                            &h.error
                        ])?;
                        finished += 1;
                    }
                    StoreOp::Delete { guid } => {
                        delete_body.execute(params![guid])?;
                        delete.execute(params![guid])?;
                    }
                    StoreOp::Probe => {
                        probe.execute([])?;
                    }
                    StoreOp::PutSchedule { id, spec } => {
                        put_schedule.execute(params![id, spec.to_string()])?;
                    }
                    StoreOp::DropSchedule { id, record } => {
                        drop_schedule.execute(params![id])?;
                        deletion.execute(params![id, record.to_string()])?;
                    }
                }
            }
        }
        tx.commit()?;
        self.finished_since_compaction += finished;
        if self.finished_since_compaction >= COMPACT_EVERY {
            self.finished_since_compaction = 0;
            self.trim_history()?;
        }
        Ok(())
    }

    /// Keeps the newest `history_per_topic` lines of each topic.
    fn trim_history(&self) -> Result<(), rusqlite::Error> {
        self.conn.execute(
            "DELETE FROM history WHERE id IN (
                 SELECT id FROM (
                     SELECT id, row_number() OVER (PARTITION BY topic ORDER BY id DESC) AS n FROM history
                 ) WHERE n > ?1)",
            params![self.history_per_topic as i64],
        )?;
        Ok(())
    }

    /// Number of task rows (tests and the bench).
    pub fn count_tasks(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM tasks", [], |r| r.get::<_, i64>(0))
            .optional()
            .map(|n| n.unwrap_or(0) as u64)
            .map_err(|e| self.sqlite(e))
    }
}

/// A batch that did not commit: why, and its operations (compacted), to be written
/// again with a later batch.
#[derive(Debug)]
pub struct FailedCommit {
    pub message: String,
    pub ops: Vec<StoreOp>,
}

/// Stores written before bodies had a table of their own kept them in `tasks`; move
/// them out, so that a state change never rewrites a body (a lease on a full disk
/// must not need room for a copy of the page it leases).
fn migrate_bodies_out_of_tasks(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has_body: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('tasks') WHERE name = 'body'",
        [],
        |r| r.get(0),
    )?;
    if has_body {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS bodies (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
             INSERT OR REPLACE INTO bodies (seq, body) SELECT seq, body FROM tasks;
             ALTER TABLE tasks DROP COLUMN body;
             COMMIT;",
        )?;
        log::info!("store: task bodies moved to their own table");
    }
    Ok(())
}

/// The thread that commits batches, so the broker's loop never waits on the disk.
pub struct StoreWriter {
    tx: std_mpsc::Sender<(u64, Vec<StoreOp>)>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWriter {
    /// Starts the thread; `done(batch, result)` is called after each commit.
    pub fn spawn(
        mut store: SqliteStore,
        done: impl Fn(u64, Result<(), FailedCommit>) + Send + 'static,
    ) -> StoreWriter {
        let (tx, rx) = std_mpsc::channel::<(u64, Vec<StoreOp>)>();
        let thread = std::thread::Builder::new()
            .name("taskbus-store".into())
            .spawn(move || {
                for (batch, ops) in rx {
                    let ops = compact(ops);
                    let result = store.commit(&ops).map_err(|e| FailedCommit {
                        message: format!("{}: {e}", store.path.display()),
                        ops,
                    });
                    done(batch, result);
                }
            })
            .expect("spawn the store thread");
        StoreWriter {
            tx,
            thread: Some(thread),
        }
    }

    /// Queues a batch for commit.
    pub fn submit(&self, batch: u64, ops: Vec<StoreOp>) {
        if self.tx.send((batch, ops)).is_err() {
            log::error!("store thread is gone; batch {batch} not written");
        }
    }

    /// Stops the thread after the queued batches are written.
    pub fn close(mut self) {
        let (tx, _) = std_mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One row of the tasks query as a record; the body is kept as stored, checked when
/// it is first handed out.
fn task_record(r: &rusqlite::Row<'_>) -> Result<TaskRecord, rusqlite::Error> {
    let state = match r.get_ref(4)?.as_str()? {
        "dead" => StoredState::Dead,
        "leased" => StoredState::Leased,
        _ => StoredState::Ready,
    };
    Ok(TaskRecord {
        guid: r.get(0)?,
        topic: r.get(1)?,
        body: Body::from_packed_unchecked(r.get::<_, Vec<u8>>(2)?),
        attempt: r.get(3)?,
        state,
        timeout: r.get(5)?,
        max_retry: r.get(6)?,
        last_error: r.get(7)?,
        created_at_ms: r.get(8)?,
    })
}
