//! The SQLite sink: one dedicated thread owns the connection (WAL mode) and writes each
//! gathered cycle of requests in one transaction, one cached upsert per row shape.
//!
//! Row isolation is direct here: in SQLite a failed statement undoes only itself, so a
//! refused row is skipped and the transaction goes on.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ErrorCode, ToSql};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::batch::{Cycle, StoreRequest};
use super::config::{SqliteSync, StorerConfig};
use super::error::{Result, StorerError};
use super::ident::{self, RESERVED_COLUMNS};
use super::prepare::{bind, float_value, int_value, text_value, Bound, Kind, PreparedRow};
use super::schema::{self, Column, Limits, TableSchema};
use super::sql::Dialect;

const SQLITE: Dialect = Dialect::Sqlite;
use super::STORED_AT_FORMAT;

/// Requests waiting for the writer before `store` callers wait for room.
const QUEUE_REQUESTS: usize = 1024;

enum Command {
    Store(StoreRequest),
    Count {
        table: String,
        reply: oneshot::Sender<Result<u64>>,
    },
    Fetch {
        table: String,
        reply: oneshot::Sender<Result<Vec<Map<String, Value>>>>,
    },
}

/// Handle to the SQLite writer thread.
pub struct SqliteSink {
    commands: mpsc::Sender<Command>,
    thread: JoinHandle<()>,
}

impl SqliteSink {
    /// Opens the file (creating its folder) on the writer thread and waits until it is
    /// ready, so a bad path fails here.
    pub async fn open(config: &StorerConfig) -> Result<SqliteSink> {
        let (commands, inbox) = mpsc::channel(QUEUE_REQUESTS);
        let (ready_tx, ready_rx) = oneshot::channel();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("storer-sqlite".into())
            .spawn(move || match Writer::open(&config) {
                Ok(writer) => {
                    let _ = ready_tx.send(Ok(()));
                    writer.run(inbox);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            })
            .map_err(|e| StorerError::Config(format!("cannot start the sqlite thread: {e}")))?;
        ready_rx.await.map_err(|_| StorerError::Closed)??;
        Ok(SqliteSink { commands, thread })
    }

    /// Hands a request to the writer (its answer comes on the request's reply).
    pub async fn submit(&self, request: StoreRequest) -> Result<()> {
        self.send(Command::Store(request)).await
    }

    /// Rows in `table` (0 when it does not exist).
    pub async fn count_rows(&self, table: &str) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        let table = table.to_string();
        self.send(Command::Count { table, reply }).await?;
        answer.await.map_err(|_| StorerError::Closed)?
    }

    /// All rows of `table` (empty when it does not exist).
    pub async fn fetch_rows(&self, table: &str) -> Result<Vec<Map<String, Value>>> {
        let (reply, answer) = oneshot::channel();
        let table = table.to_string();
        self.send(Command::Fetch { table, reply }).await?;
        answer.await.map_err(|_| StorerError::Closed)?
    }

    /// Lets the writer finish what is queued, then waits for its thread.
    pub async fn close(self) -> Result<()> {
        drop(self.commands);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|_| StorerError::Closed)?
            .map_err(|_| StorerError::Closed)
    }

    async fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| StorerError::Closed)
    }
}

/// Why a table's write stopped.
enum Abort {
    /// Only this table's requests fail (nothing of them was written).
    Table(StorerError),
    /// The transaction is lost: every request of the cycle fails.
    All(StorerError),
}

struct Writer {
    conn: Connection,
    target: String,
    schemas: HashMap<String, TableSchema>,
    batch_rows: usize,
    batch_bytes: usize,
}

impl Writer {
    fn open(config: &StorerConfig) -> Result<Writer> {
        let target = config.sqlite_path.display().to_string();
        let fail = |message: String| StorerError::Database {
            backend: "sqlite",
            target: target.clone(),
            message,
            retryable: false,
        };
        if let Some(parent) = config.sqlite_path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
            }
        }
        let conn = Connection::open(&config.sqlite_path).map_err(|e| fail(e.to_string()))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| fail(e.to_string()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!(
                "cannot use WAL mode (journal_mode is {mode})"
            )));
        }
        let sync = match config.sqlite_synchronous {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .and_then(|()| conn.busy_timeout(Duration::from_secs(5)))
            .map_err(|e| fail(e.to_string()))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Writer {
            conn,
            target,
            schemas: HashMap::new(),
            batch_rows: config.batch_rows,
            batch_bytes: config.batch_bytes,
        })
    }

    fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let mut pending: Option<Command> = None;
        loop {
            let command = match pending.take() {
                Some(command) => command,
                None => match inbox.blocking_recv() {
                    Some(command) => command,
                    None => break,
                },
            };
            match command {
                Command::Store(first) => {
                    let mut cycle =
                        Cycle::gather(first, self.batch_rows, || match inbox.try_recv() {
                            Ok(Command::Store(request)) => Some(request),
                            Ok(other) => {
                                pending = Some(other);
                                None
                            }
                            Err(_) => None,
                        });
                    self.write_cycle(&mut cycle);
                    cycle.finish();
                }
                Command::Count { table, reply } => {
                    let _ = reply.send(self.count(&table));
                }
                Command::Fetch { table, reply } => {
                    let _ = reply.send(self.fetch(&table));
                }
            }
        }
        log::debug!("storer sqlite={} writer stopped", self.target);
    }

    fn write_cycle(&mut self, cycle: &mut Cycle) {
        let stored_at = chrono::Utc::now().format(STORED_AT_FORMAT).to_string();
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            cycle.fail_all(self.error(&e));
            return;
        }
        for table in cycle.tables() {
            match self.write_table(cycle, &table, &stored_at) {
                Ok(()) => {}
                Err(Abort::Table(error)) => cycle.fail_table(&table, error),
                Err(Abort::All(error)) => {
                    self.rollback();
                    cycle.fail_all(error);
                    return;
                }
            }
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let error = self.error(&e);
            self.rollback();
            cycle.fail_all(error);
        }
    }

    /// Undoes the cycle; DDL is undone too, so the cached columns are forgotten.
    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.schemas.clear();
    }

    fn write_table(
        &mut self,
        cycle: &mut Cycle,
        table: &str,
        stored_at: &str,
    ) -> Result<(), Abort> {
        let schema = self.ensure_columns(cycle, table)?;
        let limits = Limits {
            rows: self.batch_rows,
            params: usize::MAX,
            bytes: self.batch_bytes,
        };
        let chunks = schema::chunks(
            &schema,
            &cycle.rows_of(table),
            RESERVED_COLUMNS.len(),
            limits,
        );
        for chunk in chunks {
            let sql = SQLITE.upsert(table, &chunk.shape, 1);
            let mut stmt = self
                .conn
                .prepare_cached(&sql)
                .map_err(|e| Abort::All(error(&self.target, &e)))?;
            for at in chunk.members {
                let result = {
                    let params = row_params(&schema, cycle.row(at), stored_at);
                    stmt.execute(params_from_iter(params.iter()))
                };
                match result {
                    Ok(_) => cycle.add_stored(at.0, 1),
                    Err(e) if is_row_error(&e) && !self.conn.is_autocommit() => {
                        cycle.refuse(at, e.to_string())
                    }
                    Err(e) => return Err(Abort::All(error(&self.target, &e))),
                }
            }
        }
        Ok(())
    }

    /// Creates the table or adds the columns the rows need; rows with a value for a
    /// column that could not be added are refused. Returns the table's columns.
    fn ensure_columns(&mut self, cycle: &mut Cycle, table: &str) -> Result<TableSchema, Abort> {
        let mut schema = match self.schemas.get(table) {
            Some(schema) => schema.clone(),
            None => self.load_schema(table).map_err(Abort::Table)?,
        };
        let mut missing = missing_columns(cycle, table, &schema);
        if schema.is_empty() {
            let sql = SQLITE.create_table(table, &missing);
            self.conn
                .execute_batch(&sql)
                .map_err(|e| self.abort_table(&e))?;
            schema = self.load_schema(table).map_err(Abort::Table)?;
            missing = missing_columns(cycle, table, &schema);
        }
        let mut failed = HashMap::new();
        for column in missing {
            let sql = SQLITE.add_columns(table, std::slice::from_ref(&column));
            match self.conn.execute_batch(&sql) {
                Ok(()) => schema.push(column),
                Err(e) if self.conn.is_autocommit() => return Err(Abort::All(self.error(&e))),
                Err(e) => {
                    failed.insert(
                        ident::column_id(&column.name),
                        format!("cannot add column {:?}: {e}", column.name),
                    );
                }
            }
        }
        cycle.refuse_unplaced(table, &schema, &failed);
        self.schemas.insert(table.to_string(), schema.clone());
        Ok(schema)
    }

    fn abort_table(&self, e: &rusqlite::Error) -> Abort {
        if self.conn.is_autocommit() {
            Abort::All(self.error(e))
        } else {
            Abort::Table(self.error(e))
        }
    }

    /// The table's columns. A table made before the page column was named `url` has
    /// its `_url` column renamed first.
    fn load_schema(&self, table: &str) -> Result<TableSchema> {
        let schema = self.read_schema(table)?;
        if schema.get(ident::LEGACY_URL_COLUMN).is_none() || schema.get("url").is_some() {
            return Ok(schema);
        }
        let sql = format!(
            "ALTER TABLE {} RENAME COLUMN {} TO \"url\"",
            ident::quote_sqlite(table),
            ident::quote_sqlite(ident::LEGACY_URL_COLUMN)
        );
        self.conn.execute_batch(&sql).map_err(|e| self.error(&e))?;
        self.read_schema(table)
    }

    fn read_schema(&self, table: &str) -> Result<TableSchema> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, type FROM pragma_table_info(?1)")
            .map_err(|e| self.error(&e))?;
        let columns = stmt
            .query_map([table], |row| {
                let name: String = row.get(0)?;
                let declared: String = row.get(1)?;
                Ok(Column {
                    name,
                    kind: Kind::from_sql_type(&declared, ""),
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Column>>>())
            .map_err(|e| self.error(&e))?;
        Ok(TableSchema::from_columns(columns))
    }

    fn count(&self, table: &str) -> Result<u64> {
        if self.load_schema(table)?.is_empty() {
            return Ok(0);
        }
        let sql = format!("SELECT COUNT(*) FROM {}", SQLITE.quote(table));
        let n: i64 = self
            .conn
            .query_row(&sql, [], |row| row.get(0))
            .map_err(|e| self.error(&e))?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    fn fetch(&self, table: &str) -> Result<Vec<Map<String, Value>>> {
        let schema = self.load_schema(table)?;
        if schema.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT * FROM {} ORDER BY \"_key\"", SQLITE.quote(table));
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.error(&e))?;
        let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let kinds: Vec<Kind> = names
            .iter()
            .map(|n| schema.get(n).map_or(Kind::Text, |c| c.kind))
            .collect();
        let mut rows = stmt.query([]).map_err(|e| self.error(&e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.error(&e))? {
            let mut map = Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = row.get_ref(i).map_err(|e| self.error(&e))?;
                if let Some(value) = decode(value, kinds[i]) {
                    map.insert(name.clone(), value);
                }
            }
            out.push(map);
        }
        Ok(out)
    }

    fn error(&self, e: &rusqlite::Error) -> StorerError {
        error(&self.target, e)
    }
}

fn missing_columns(cycle: &Cycle, table: &str, schema: &TableSchema) -> Vec<Column> {
    schema::missing_columns(schema, cycle.rows_of(table).into_iter().map(|(_, row)| row))
}

fn error(target: &str, e: &rusqlite::Error) -> StorerError {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::SchemaChanged
                | ErrorCode::Unknown
        )
    );
    StorerError::Database {
        backend: "sqlite",
        target: target.to_string(),
        message: e.to_string(),
        retryable,
    }
}

/// Errors that are about the row itself (a constraint, a type a STRICT column cannot
/// take, a value too big), not about the database.
fn is_row_error(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig)
    )
}

/// A bound value as rusqlite takes it, borrowing the row's strings.
struct Param<'a>(Bound<'a>);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match &self.0 {
            Bound::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Bound::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Bound::Int(int) => ToSqlOutput::Borrowed(ValueRef::Integer(*int)),
            Bound::Float(float) => ToSqlOutput::Borrowed(ValueRef::Real(*float)),
        })
    }
}

fn row_params<'a>(
    schema: &TableSchema,
    row: &'a PreparedRow,
    stored_at: &'a str,
) -> Vec<Param<'a>> {
    let mut params = Vec::with_capacity(row.cells.len() + RESERVED_COLUMNS.len());
    for base in [&row.key, &row.guid, &row.url] {
        params.push(Param(Bound::Text(base.as_str().into())));
    }
    params.push(Param(Bound::Text(stored_at.into())));
    for (column, value) in schema::row_values(schema, row) {
        params.push(Param(bind(value, column.kind)));
    }
    params
}

fn decode(value: ValueRef<'_>, kind: Kind) -> Option<Value> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(int) => Some(int_value(int, kind)),
        ValueRef::Real(float) => Some(float_value(float)),
        ValueRef::Text(text) | ValueRef::Blob(text) => {
            Some(text_value(String::from_utf8_lossy(text).into_owned(), kind))
        }
    }
}
