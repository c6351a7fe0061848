//! The `[storer]` section of `bus.toml`: where rows go and how they are batched.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::error::{Result, StorerError};
use super::feed::FeedConfig;
use super::ident;

/// How hard SQLite syncs its WAL on commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// Survives a crash of the process; the last commits may be lost on power loss.
    Normal,
    /// Survives power loss too; every commit waits for the disk.
    Full,
}

/// Configuration of the storer (`[storer]` in `bus.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorerConfig {
    /// `mysql://user:password@host:port/database` (MySQL or MariaDB); empty = the
    /// embedded SQLite file at `sqlite_path`. mysql_async's URL parameters work too
    /// (e.g. `?pool_max=4`).
    pub url: String,
    /// The SQLite database file used when `url` is empty; parent folders are created.
    pub sqlite_path: PathBuf,
    /// `normal` (default) or `full`, see [`SqliteSync`].
    pub sqlite_synchronous: SqliteSync,
    /// Natural key per table: task type (without `table_prefix`) -> field names whose
    /// values, joined, make the row's `_key`. Tables not listed key rows by a hash of
    /// guid + url + item index.
    pub key_fields: BTreeMap<String, Vec<String>>,
    /// Prepended to every task type to make the table name (e.g. `crawl_`).
    pub table_prefix: String,
    /// Rows per multi-row statement, and the most rows gathered into one transaction
    /// from concurrent `store` calls.
    pub batch_rows: usize,
    /// Upper bound of one multi-row statement's values, in bytes (keep it well under the
    /// server's `max_allowed_packet`).
    pub batch_bytes: usize,
    /// Add `STRICT_ALL_TABLES` to the MySQL session's `sql_mode`, so a value a column
    /// cannot take is refused (and reported) instead of truncated silently.
    pub mysql_strict: bool,
    /// Task type -> a JSON lines or CSV file its rows go to instead of a table.
    pub feeds: BTreeMap<String, FeedConfig>,
}

impl Default for StorerConfig {
    fn default() -> Self {
        StorerConfig {
            url: String::new(),
            sqlite_path: PathBuf::from("data/rows.sqlite3"),
            sqlite_synchronous: SqliteSync::Normal,
            key_fields: BTreeMap::new(),
            table_prefix: String::new(),
            batch_rows: 500,
            batch_bytes: 4 * 1024 * 1024,
            mysql_strict: true,
            feeds: BTreeMap::new(),
        }
    }
}

impl StorerConfig {
    /// Checks what serde cannot: limits, the prefix and the key field names.
    pub fn validate(&self) -> Result<()> {
        if self.batch_rows == 0 {
            return Err(StorerError::Config("batch_rows must be at least 1".into()));
        }
        if self.batch_bytes < 1024 {
            return Err(StorerError::Config(
                "batch_bytes must be at least 1024".into(),
            ));
        }
        if !self.table_prefix.is_empty() {
            ident::check_name(&self.table_prefix)
                .map_err(|why| StorerError::Config(format!("table_prefix: {why}")))?;
        }
        let scheme = self.url.split(':').next().unwrap_or_default();
        if !self.url.is_empty() && scheme != "mysql" {
            return Err(StorerError::Config(format!(
                "url must start with mysql:// (or be empty for SQLite), got scheme {scheme:?}"
            )));
        }
        if self.url.is_empty() && self.sqlite_path.as_os_str().is_empty() {
            return Err(StorerError::Config(
                "sqlite_path is empty and no url is set".into(),
            ));
        }
        for (task_type, feed) in &self.feeds {
            let path = feed.path.to_string_lossy().to_ascii_lowercase();
            if !(path.ends_with(".jsonl") || path.ends_with(".csv")) {
                return Err(StorerError::Config(format!(
                    "feeds.{task_type}: path {:?} must end in .jsonl or .csv",
                    feed.path
                )));
            }
        }
        for (table, fields) in &self.key_fields {
            if fields.is_empty() {
                return Err(StorerError::Config(format!(
                    "key_fields.{table} lists no field"
                )));
            }
            for field in fields {
                ident::check_column(field)
                    .map_err(|why| StorerError::Config(format!("key_fields.{table}: {why}")))?;
            }
        }
        Ok(())
    }
}
