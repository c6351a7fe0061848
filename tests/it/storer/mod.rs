//! Storer tests: every body runs against SQLite in a temporary folder AND the real
//! MariaDB at 127.0.0.1:3306 (root, no password, database `test`).
//!
//! Without MariaDB the MariaDB half prints `skipped: ...`, except under `CI=true`,
//! where it fails. Tables have unique names; MariaDB tables are dropped at the end.
//!
//! - `rows`: tables and columns created on use, exact rows, upserts, prefix, concurrency.
//! - `errors`: refused rows, invalid names, a killed connection, bad settings.
//!
//! This file holds their fixtures: the backends and row helpers.

mod errors;
mod rows;

use mysql_async::prelude::Queryable;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use taskbus::storer::{Row, StoreReport, Storer, StorerConfig, StorerError};

use crate::common::{mariadb_storer, MARIADB_URL};

/// One backend under test.
struct Backend {
    config: StorerConfig,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn is_mysql(&self) -> bool {
        !self.config.url.is_empty()
    }

    fn name(&self) -> &'static str {
        if self.is_mysql() {
            "mariadb"
        } else {
            "sqlite"
        }
    }

    async fn open(&self) -> Storer {
        Storer::open(&self.config)
            .await
            .unwrap_or_else(|e| panic!("{}: open: {e}", self.name()))
    }

    /// Runs raw SQL beside the storer (to prepare a table, or drop one).
    async fn raw(&self, sql: &str) {
        if self.is_mysql() {
            let mut conn = mysql_async::Conn::from_url(MARIADB_URL).await.unwrap();
            conn.query_drop(sql).await.unwrap();
            conn.disconnect().await.unwrap();
        } else {
            std::fs::create_dir_all(self.config.sqlite_path.parent().unwrap()).unwrap();
            let conn = rusqlite::Connection::open(&self.config.sqlite_path).unwrap();
            conn.execute_batch(sql).unwrap();
        }
    }

    /// The table's column names, as the database reports them.
    async fn columns(&self, table: &str) -> Vec<String> {
        if self.is_mysql() {
            let mut conn = mysql_async::Conn::from_url(MARIADB_URL).await.unwrap();
            let names: Vec<String> = conn
                .exec(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = \
                     DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (table,),
                )
                .await
                .unwrap();
            conn.disconnect().await.unwrap();
            names
        } else {
            let conn = rusqlite::Connection::open(&self.config.sqlite_path).unwrap();
            let mut stmt = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .unwrap();
            let names = stmt.query_map([table], |row| row.get(0)).unwrap();
            names.collect::<Result<_, _>>().unwrap()
        }
    }

    async fn drop_table(&self, table: &str) {
        if self.is_mysql() {
            self.raw(&format!("DROP TABLE IF EXISTS `{table}`")).await;
        }
    }
}

/// SQLite always; MariaDB when reachable (a failure under CI=true).
async fn backends(tweak: impl Fn(&mut StorerConfig)) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = StorerConfig {
        sqlite_path: dir.path().join("db").join("rows.sqlite3"),
        ..StorerConfig::default()
    };
    tweak(&mut sqlite);
    let mut out = vec![Backend {
        config: sqlite,
        _dir: Some(dir),
    }];
    if let Some(mut mysql) = mariadb_storer().await {
        tweak(&mut mysql);
        out.push(Backend {
            config: mysql,
            _dir: None,
        });
    }
    out
}

fn unique(test: &str) -> String {
    format!(
        "t_{test}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn row(guid: &str, url: &str, index: usize, fields: Value) -> Row {
    Row {
        guid: guid.into(),
        url: url.into(),
        index,
        fields: fields.as_object().cloned().expect("fields are an object"),
    }
}

/// The documented hash key: sha256 hex of "guid\nurl\nindex".
fn hash_key(guid: &str, url: &str, index: usize) -> String {
    format!("{:x}", Sha256::digest(format!("{guid}\n{url}\n{index}")))
}

/// A fetched row without `_stored_at`, after checking its form.
fn without_stored_at(mut row: Map<String, Value>) -> Map<String, Value> {
    let stored_at = row.remove("_stored_at").expect("_stored_at is set");
    let stored_at = stored_at.as_str().expect("_stored_at is text");
    assert!(
        chrono::NaiveDateTime::parse_from_str(stored_at, "%Y-%m-%d %H:%M:%S%.3f").is_ok(),
        "_stored_at {stored_at:?}"
    );
    row
}

fn ok(report: Result<StoreReport, StorerError>, what: &str) -> StoreReport {
    report.unwrap_or_else(|e| panic!("{what}: {e}"))
}
