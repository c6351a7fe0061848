//! The storer stage (the seed's `upload_data_save`): parsed rows go to a table named
//! after the task type, in MySQL/MariaDB when `url` is set, else in an embedded SQLite
//! file.
//!
//! What a caller can rely on:
//! - **Invariant:** a table is created on first use, and a new field adds a column;
//!   columns are `_key` (primary key), `_guid`, `url`, `_stored_at` (UTC, the last
//!   write), then one per field.
//! - **Invariant:** writes are upserts on `_key` (the configured key fields' values, or
//!   a sha256 of guid + url + item index), so a redelivered task never makes a
//!   duplicate row; fields absent from a new write keep their stored values.
//! - **Invariant:** a row the database refuses is logged on the `scripts` target and
//!   returned in [`StoreReport::refused`] with the reason; the other rows are stored.
//! - **Invariant:** table and column names are validated and quoted; no name can change
//!   a statement.
//!
//! Concurrent [`Storer::store`] calls are gathered by one writer into one transaction
//! (group commit), which is what makes one-row-per-page crawls fast.

mod batch;
mod config;
mod error;
pub mod feed;
mod ident;
mod mysql;
mod prepare;
mod schema;
mod sql;
mod sqlite;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

pub use config::{SqliteSync, StorerConfig};
pub use error::{Result, StorerError};
pub use feed::{FeedConfig, Feeds};
pub use prepare::Row;

use batch::StoreRequest;

/// What became of one [`Storer::store`] call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreReport {
    /// The table written (prefix included).
    pub table: String,
    /// Rows inserted or updated.
    pub stored: usize,
    /// Rows not stored: `(position in the rows given to store, reason)`, by position.
    pub refused: Vec<(usize, String)>,
}

/// Writes rows to the configured database. Cheap to share (`&self` everywhere); open
/// one per process.
pub struct Storer {
    config: StorerConfig,
    sink: Sink,
}

/// The two backends behind one interface.
enum Sink {
    Mysql(mysql::MysqlSink),
    Sqlite(sqlite::SqliteSink),
}

impl Storer {
    /// Opens the configured database: connects to MySQL/MariaDB (so a bad url fails
    /// here, naming the server) or opens the SQLite file in WAL mode, creating its
    /// folder. Must be called within a tokio runtime.
    pub async fn open(config: &StorerConfig) -> Result<Storer> {
        config.validate()?;
        let sink = if config.url.is_empty() {
            Sink::Sqlite(sqlite::SqliteSink::open(config).await?)
        } else {
            Sink::Mysql(mysql::MysqlSink::open(config).await?)
        };
        Ok(Storer {
            config: config.clone(),
            sink,
        })
    }

    /// `mysql` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self.sink {
            Sink::Mysql(_) => "mysql",
            Sink::Sqlite(_) => "sqlite",
        }
    }

    /// The table a task type's rows go to (`table_prefix` + task type), or why there
    /// can be no such table.
    pub fn table_name(&self, task_type: &str) -> Result<String> {
        let name = format!("{}{}", self.config.table_prefix, task_type);
        match ident::check_table(&name) {
            Ok(()) => Ok(name),
            Err(why) => Err(StorerError::InvalidTable { name, why }),
        }
    }

    /// Upserts `rows` into the task type's table. `Err` means nothing of this call was
    /// stored (bad table name, database down: see [`StorerError::is_retryable`]);
    /// `Ok` may still list refused rows.
    pub async fn store(&self, task_type: &str, rows: Vec<Row>) -> Result<StoreReport> {
        let table = self.table_name(task_type)?;
        let key_fields = self.config.key_fields.get(task_type).map(Vec::as_slice);
        let (prepared, refused) = prepare::prepare_rows(&table, rows, key_fields);
        let report = StoreReport {
            table: table.clone(),
            stored: 0,
            refused,
        };
        if prepared.is_empty() {
            return Ok(report);
        }
        let (reply, answer) = oneshot::channel();
        let request = StoreRequest {
            table,
            rows: prepared,
            n_logged: report.refused.len(),
            report,
            reply,
        };
        match &self.sink {
            Sink::Mysql(sink) => sink.submit(request).await?,
            Sink::Sqlite(sink) => sink.submit(request).await?,
        }
        answer.await.map_err(|_| StorerError::Closed)?
    }

    /// How many rows the task type's table holds (0 when it does not exist yet).
    pub async fn count_rows(&self, task_type: &str) -> Result<u64> {
        let table = self.table_name(task_type)?;
        match &self.sink {
            Sink::Mysql(sink) => sink.count_rows(&table).await,
            Sink::Sqlite(sink) => sink.count_rows(&table).await,
        }
    }

    /// Every row of the task type's table, ordered by `_key`, each as a map of its
    /// non-NULL columns (`_key`, `_guid`, `url`, `_stored_at` and the fields, typed
    /// back as they were stored). Meant for tests and run summaries, not big tables.
    pub async fn fetch_rows(&self, task_type: &str) -> Result<Vec<Map<String, Value>>> {
        let table = self.table_name(task_type)?;
        match &self.sink {
            Sink::Mysql(sink) => sink.fetch_rows(&table).await,
            Sink::Sqlite(sink) => sink.fetch_rows(&table).await,
        }
    }

    /// Writes what is pending, stops the writer and closes the connections.
    pub async fn close(self) -> Result<()> {
        match self.sink {
            Sink::Mysql(sink) => sink.close().await,
            Sink::Sqlite(sink) => sink.close().await,
        }
    }
}

/// `_stored_at` text: UTC with milliseconds, the form both backends read back.
pub(crate) const STORED_AT_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";
pub mod stage;
