//! The MySQL/MariaDB sink: one writer task holds one connection and writes each
//! gathered cycle in one transaction of multi-row prepared upserts
//! (`INSERT ... ON DUPLICATE KEY UPDATE`).
//!
//! A multi-row statement that the server refuses is undone whole, so that statement's
//! rows are then written one by one, which isolates the refused ones.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, Value as MyValue};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::batch::{Cycle, RowRef, StoreRequest};
use super::config::StorerConfig;
use super::error::{Result, StorerError};
use super::ident::{column_id, LEGACY_URL_COLUMN, RESERVED_COLUMNS};
use super::prepare::{bind, float_value, int_value, text_value, Bound, Kind, PreparedRow};
use super::schema::{self, Column, Limits, TableSchema};
use super::sql::Dialect;

const MYSQL: Dialect = Dialect::Mysql;

/// Requests waiting for the writer before `store` callers wait for room.
const QUEUE_REQUESTS: usize = 1024;

/// Most placeholders one prepared statement may have.
const MAX_PARAMS: usize = 65_535;

/// Server errors that say "try again" (lock wait, deadlock, table or column dropped
/// behind our back, too many connections, query interrupted), not "this row is bad".
const TRANSIENT_CODES: [u16; 7] = [1205, 1213, 1146, 1054, 1040, 1317, 1927];

/// Makes a value a column cannot take an error instead of a silent truncation.
const STRICT_SQL: &str =
    "SET SESSION sql_mode = TRIM(BOTH ',' FROM CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES'))";

const SCHEMA_SQL: &str = "SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_COMMENT \
     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? \
     ORDER BY ORDINAL_POSITION";

/// Handle to the MySQL writer task and the pool that reads use.
pub struct MysqlSink {
    pool: Pool,
    target: String,
    requests: mpsc::Sender<StoreRequest>,
    writer: JoinHandle<()>,
}

impl MysqlSink {
    /// Connects once (so a wrong url or a server that is down fails here) and starts
    /// the writer.
    pub async fn open(config: &StorerConfig) -> Result<MysqlSink> {
        // The url may hold a password: errors name host, port and database only.
        let opts = Opts::from_url(&config.url)
            .map_err(|e| StorerError::Config(format!("url is not a valid mysql url: {e}")))?;
        let db = opts.db_name().map(str::to_string).ok_or_else(|| {
            StorerError::Config("url names no database (mysql://user@host:port/DATABASE)".into())
        })?;
        let target = format!("{}:{}/{db}", opts.ip_or_hostname(), opts.tcp_port());
        let setup: Vec<&str> = if config.mysql_strict {
            vec![STRICT_SQL]
        } else {
            vec![]
        };
        let pool = Pool::new(OptsBuilder::from_opts(opts).setup(setup));
        let conn = pool.get_conn().await.map_err(|e| error(&target, &e))?;
        let (requests, inbox) = mpsc::channel(QUEUE_REQUESTS);
        let writer = Writer {
            target: target.clone(),
            conn: Some(conn),
            pool: pool.clone(),
            schemas: HashMap::new(),
            limits: Limits {
                rows: config.batch_rows,
                params: MAX_PARAMS,
                bytes: config.batch_bytes,
            },
        };
        let writer = tokio::spawn(writer.run(inbox));
        Ok(MysqlSink {
            pool,
            target,
            requests,
            writer,
        })
    }

    /// Hands a request to the writer (its answer comes on the request's reply).
    pub async fn submit(&self, request: StoreRequest) -> Result<()> {
        self.requests
            .send(request)
            .await
            .map_err(|_| StorerError::Closed)
    }

    /// Rows in `table` (0 when it does not exist).
    pub async fn count_rows(&self, table: &str) -> Result<u64> {
        let mut conn = self.conn().await?;
        if load_schema(&mut conn, table)
            .await
            .map_err(|e| self.error(&e))?
            .is_empty()
        {
            return Ok(0);
        }
        let sql = format!("SELECT COUNT(*) FROM {}", MYSQL.quote(table));
        let n: Option<u64> = conn.query_first(sql).await.map_err(|e| self.error(&e))?;
        Ok(n.unwrap_or_default())
    }

    /// All rows of `table`, ordered by `_key` (empty when it does not exist).
    pub async fn fetch_rows(&self, table: &str) -> Result<Vec<Map<String, Value>>> {
        let mut conn = self.conn().await?;
        let schema = load_schema(&mut conn, table)
            .await
            .map_err(|e| self.error(&e))?;
        if schema.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT * FROM {} ORDER BY `_key`", MYSQL.quote(table));
        // Prepared (binary protocol) so numbers and dates come back typed.
        let rows: Vec<mysql_async::Row> = conn.exec(sql, ()).await.map_err(|e| self.error(&e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut map = Map::new();
            for (i, column) in row.columns_ref().iter().enumerate() {
                let name = column.name_str();
                let kind = schema.get(&name).map_or(Kind::Text, |c| c.kind);
                if let Some(value) = row.as_ref(i).and_then(|v| decode(v, kind)) {
                    map.insert(name.into_owned(), value);
                }
            }
            out.push(map);
        }
        Ok(out)
    }

    /// Lets the writer finish what is queued, then closes every connection.
    pub async fn close(self) -> Result<()> {
        drop(self.requests);
        let _ = self.writer.await;
        self.pool
            .disconnect()
            .await
            .map_err(|e| error(&self.target, &e))
    }

    async fn conn(&self) -> Result<Conn> {
        self.pool.get_conn().await.map_err(|e| self.error(&e))
    }

    fn error(&self, e: &mysql_async::Error) -> StorerError {
        error(&self.target, e)
    }
}

struct Writer {
    target: String,
    /// Kept across cycles: no pool round trip, and its statement cache stays warm.
    conn: Option<Conn>,
    pool: Pool,
    schemas: HashMap<String, TableSchema>,
    limits: Limits,
}

impl Writer {
    async fn run(mut self, mut inbox: mpsc::Receiver<StoreRequest>) {
        while let Some(first) = inbox.recv().await {
            wait_for_stragglers(&inbox).await;
            let mut cycle = Cycle::gather(first, self.limits.rows, || inbox.try_recv().ok());
            self.write_cycle(&mut cycle).await;
            cycle.finish();
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
        log::debug!("storer mysql={} writer stopped", self.target);
    }

    /// Writes the cycle; when the connection turns out dead (idle past the server's
    /// `wait_timeout`, server restarted), starts over once on a fresh one. Upserts make
    /// the second attempt safe even if the first one's COMMIT did land.
    async fn write_cycle(&mut self, cycle: &mut Cycle) {
        let before = cycle.snapshot();
        match self.attempt(cycle).await {
            Err(e) if is_connection_lost(&e) => {
                log::warn!(
                    "storer mysql={} connection lost, writing again: {e}",
                    self.target
                );
                cycle.restore(before);
                if let Err(e) = self.attempt(cycle).await {
                    cycle.fail_all(error(&self.target, &e));
                }
            }
            Err(e) => cycle.fail_all(error(&self.target, &e)),
            Ok(()) => {}
        }
    }

    /// One try at the cycle, on the kept connection or a fresh one. An error here
    /// means the transaction was lost and nothing of it counts.
    async fn attempt(&mut self, cycle: &mut Cycle) -> Result<(), mysql_async::Error> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.get_conn().await?,
        };
        match self.write_with(&mut conn, cycle).await {
            Ok(()) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(e) => {
                // DDL or another writer may have changed what we cached.
                self.schemas.clear();
                if !is_connection_lost(&e) {
                    let _ = conn.query_drop("ROLLBACK").await;
                    self.conn = Some(conn);
                }
                Err(e)
            }
        }
    }

    /// Errors returned here lose the whole transaction; row refusals do not get here.
    async fn write_with(
        &mut self,
        conn: &mut Conn,
        cycle: &mut Cycle,
    ) -> Result<(), mysql_async::Error> {
        let stored_at = Utc::now();
        // DDL commits implicitly in MySQL, so it runs before the transaction.
        let mut ready = Vec::new();
        for table in cycle.tables() {
            match self.ensure_columns(conn, cycle, &table).await {
                Ok(schema) => ready.push((table, schema)),
                Err(e) if is_refusal(&e) => cycle.fail_table(&table, error(&self.target, &e)),
                Err(e) => return Err(e),
            }
        }
        conn.query_drop("START TRANSACTION").await?;
        for (table, schema) in ready {
            self.write_table(conn, cycle, &table, &schema, stored_at)
                .await?;
        }
        conn.query_drop("COMMIT").await
    }

    async fn write_table(
        &self,
        conn: &mut Conn,
        cycle: &mut Cycle,
        table: &str,
        schema: &TableSchema,
        stored_at: DateTime<Utc>,
    ) -> Result<(), mysql_async::Error> {
        let n_base = RESERVED_COLUMNS.len();
        let chunks = schema::chunks(schema, &cycle.rows_of(table), n_base, self.limits);
        for chunk in chunks {
            let sql = MYSQL.upsert(table, &chunk.shape, chunk.members.len());
            let params = chunk_params(cycle, schema, &chunk.members, stored_at);
            match conn.exec_drop(sql, params).await {
                Ok(()) => chunk
                    .members
                    .iter()
                    .for_each(|at| cycle.add_stored(at.0, 1)),
                Err(e) if is_refusal(&e) && chunk.members.len() == 1 => {
                    cycle.refuse(chunk.members[0], server_message(&e))
                }
                Err(e) if is_refusal(&e) => {
                    self.one_by_one(conn, cycle, table, schema, &chunk, stored_at)
                        .await?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes a refused statement's rows one at a time, refusing the bad ones.
    async fn one_by_one(
        &self,
        conn: &mut Conn,
        cycle: &mut Cycle,
        table: &str,
        schema: &TableSchema,
        chunk: &schema::Chunk<RowRef>,
        stored_at: DateTime<Utc>,
    ) -> Result<(), mysql_async::Error> {
        let sql = MYSQL.upsert(table, &chunk.shape, 1);
        for at in &chunk.members {
            let params = chunk_params(cycle, schema, std::slice::from_ref(at), stored_at);
            match conn.exec_drop(sql.as_str(), params).await {
                Ok(()) => cycle.add_stored(at.0, 1),
                Err(e) if is_refusal(&e) => cycle.refuse(*at, server_message(&e)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates the table or adds the columns the rows need; rows with a value for a
    /// column that could not be added are refused. Returns the table's columns.
    async fn ensure_columns(
        &mut self,
        conn: &mut Conn,
        cycle: &mut Cycle,
        table: &str,
    ) -> Result<TableSchema, mysql_async::Error> {
        let mut schema = match self.schemas.get(table) {
            Some(schema) => schema.clone(),
            None => load_schema(conn, table).await?,
        };
        let mut missing = missing_columns(cycle, table, &schema);
        if schema.is_empty() {
            conn.query_drop(MYSQL.create_table(table, &missing)).await?;
            schema = load_schema(conn, table).await?;
            missing = missing_columns(cycle, table, &schema);
        }
        let mut failed = HashMap::new();
        if !missing.is_empty() {
            match conn.query_drop(MYSQL.add_columns(table, &missing)).await {
                Ok(()) => missing.into_iter().for_each(|c| schema.push(c)),
                Err(e) if !is_refusal(&e) => return Err(e),
                Err(_) => {
                    // Maybe another writer added some; add the rest one by one.
                    schema = load_schema(conn, table).await?;
                    for column in missing_columns(cycle, table, &schema) {
                        match conn
                            .query_drop(MYSQL.add_columns(table, std::slice::from_ref(&column)))
                            .await
                        {
                            Ok(()) => schema.push(column),
                            Err(e) if !is_refusal(&e) => return Err(e),
                            Err(e) => {
                                let why = format!(
                                    "cannot add column {:?}: {}",
                                    column.name,
                                    server_message(&e)
                                );
                                failed.insert(column_id(&column.name), why);
                            }
                        }
                    }
                }
            }
        }
        cycle.refuse_unplaced(table, &schema, &failed);
        self.schemas.insert(table.to_string(), schema.clone());
        Ok(schema)
    }
}

/// Callers answered by the last commit are about to send their next rows: let them
/// run (a few scheduler turns, no timer) while they keep coming, so one commit carries
/// them all. A commit costs a disk flush, so this is what makes small stores fast.
async fn wait_for_stragglers(inbox: &mpsc::Receiver<StoreRequest>) {
    let mut queued = inbox.len();
    for _ in 0..8 {
        tokio::task::yield_now().await;
        if inbox.len() == queued {
            break;
        }
        queued = inbox.len();
    }
}

/// The table's columns. A table made before the page column was named `url` has
/// its `_url` column renamed first.
async fn load_schema(conn: &mut Conn, table: &str) -> Result<TableSchema, mysql_async::Error> {
    let mut rows: Vec<(String, String, String)> = conn.exec(SCHEMA_SQL, (table,)).await?;
    let has = |rows: &[(String, String, String)], name: &str| rows.iter().any(|r| r.0 == name);
    if has(&rows, LEGACY_URL_COLUMN) && !has(&rows, "url") {
        let sql = format!(
            "ALTER TABLE {} RENAME COLUMN `{LEGACY_URL_COLUMN}` TO `url`",
            super::ident::quote_mysql(table)
        );
        conn.query_drop(sql).await?;
        rows = conn.exec(SCHEMA_SQL, (table,)).await?;
    }
    let columns = rows
        .into_iter()
        .map(|(name, declared, comment)| Column {
            kind: Kind::from_sql_type(&declared, &comment),
            name,
        })
        .collect();
    Ok(TableSchema::from_columns(columns))
}

fn missing_columns(cycle: &Cycle, table: &str, schema: &TableSchema) -> Vec<Column> {
    schema::missing_columns(schema, cycle.rows_of(table).into_iter().map(|(_, row)| row))
}

fn error(target: &str, e: &mysql_async::Error) -> StorerError {
    let retryable = match e {
        mysql_async::Error::Server(server) => TRANSIENT_CODES.contains(&server.code),
        mysql_async::Error::Url(_) => false,
        _ => true,
    };
    StorerError::Database {
        backend: "mysql",
        target: target.to_string(),
        message: e.to_string(),
        retryable,
    }
}

/// The connection is gone (as opposed to the server answering with an error).
fn is_connection_lost(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))
}

/// The server refused the statement for what it holds (strict mode, a constraint, a
/// value too long, a column it cannot add); the connection and the transaction go on,
/// and trying again would be refused again.
fn is_refusal(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(server) if !TRANSIENT_CODES.contains(&server.code))
}

fn server_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(server) => format!("{} (error {})", server.message, server.code),
        other => other.to_string(),
    }
}

fn chunk_params(
    cycle: &Cycle,
    schema: &TableSchema,
    members: &[RowRef],
    stored_at: DateTime<Utc>,
) -> Vec<MyValue> {
    let stored_at = MyValue::Date(
        u16::try_from(stored_at.year()).unwrap_or_default(),
        stored_at.month() as u8,
        stored_at.day() as u8,
        stored_at.hour() as u8,
        stored_at.minute() as u8,
        stored_at.second() as u8,
        stored_at.timestamp_subsec_millis() * 1000,
    );
    let mut params = Vec::new();
    for at in members {
        let row: &PreparedRow = cycle.row(*at);
        for base in [&row.key, &row.guid, &row.url] {
            params.push(MyValue::Bytes(base.as_bytes().to_vec()));
        }
        params.push(stored_at.clone());
        for (column, value) in schema::row_values(schema, row) {
            params.push(match bind(value, column.kind) {
                Bound::Null => MyValue::NULL,
                Bound::Text(text) => MyValue::Bytes(text.into_owned().into_bytes()),
                Bound::Int(int) => MyValue::Int(int),
                Bound::Float(float) => MyValue::Double(float),
            });
        }
    }
    params
}

fn decode(value: &MyValue, kind: Kind) -> Option<Value> {
    Some(match value {
        MyValue::NULL => return None,
        MyValue::Bytes(bytes) => text_value(String::from_utf8_lossy(bytes).into_owned(), kind),
        MyValue::Int(int) => int_value(*int, kind),
        MyValue::UInt(int) => Value::from(*int),
        MyValue::Float(float) => float_value(f64::from(*float)),
        MyValue::Double(float) => float_value(*float),
        MyValue::Date(y, mo, d, h, mi, s, us) => Value::String(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{:03}",
            us / 1000
        )),
        MyValue::Time(negative, days, h, mi, s, _) => {
            let sign = if *negative { "-" } else { "" };
            Value::String(format!(
                "{sign}{:02}:{mi:02}:{s:02}",
                days * 24 + u32::from(*h)
            ))
        }
    })
}
