//! Storer tests: every body runs against SQLite in a temporary folder AND the real
//! MariaDB at 127.0.0.1:3306 (root, no password, database `test`).
//!
//! Without MariaDB the MariaDB half prints `skipped: ...`, except under `CI=true`,
//! where it fails. Tables have unique names; MariaDB tables are dropped at the end.

use std::collections::BTreeSet;

use futures::future::join_all;
use mysql_async::prelude::Queryable;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use taskbus::storer::{Row, StoreReport, Storer, StorerConfig, StorerError};

const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306/test";

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
    match mysql_async::Conn::from_url(MARIADB_URL).await {
        Ok(conn) => {
            let _ = conn.disconnect().await;
            let mut mysql = StorerConfig {
                url: MARIADB_URL.into(),
                ..StorerConfig::default()
            };
            tweak(&mut mysql);
            out.push(Backend {
                config: mysql,
                _dir: None,
            });
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("MariaDB at {MARIADB_URL} is required under CI=true: {e}")
        }
        Err(e) => println!("skipped: MariaDB half, no server at {MARIADB_URL}: {e}"),
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

#[tokio::test]
async fn creates_the_table_on_first_use_and_reads_the_exact_rows_back() {
    for backend in backends(|_| {}).await {
        let storer = backend.open().await;
        let table = unique("create");
        assert_eq!(storer.count_rows(&table).await.unwrap(), 0);
        assert!(storer.fetch_rows(&table).await.unwrap().is_empty());
        let tricky = "O'Brien \"q\" \\ `; DROP TABLE x; -- 中文 😀";
        let fields = [
            json!({"title": "phone", "price": 1999.5, "stock": 12, "ok": true,
                   "tags": ["a", "b"], "spec": {"ram": 8, "cpu": "x"}, "note": null}),
            json!({"title": tricky, "price": -0.25, "stock": -3, "ok": false,
                   "tags": [], "spec": {}}),
            json!({"title": "", "stock": i64::MAX, "big": i64::MIN}),
        ];
        let rows: Vec<Row> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| row("guid-1", "http://shop/list?p=1", i, f.clone()))
            .collect();
        let report = ok(storer.store(&table, rows).await, backend.name());
        assert_eq!(report.table, table);
        assert_eq!((report.stored, report.refused.len()), (3, 0), "{report:?}");
        assert_eq!(storer.count_rows(&table).await.unwrap(), 3);

        let mut expected: Vec<Map<String, Value>> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut map: Map<String, Value> = f
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                map.insert(
                    "_key".into(),
                    hash_key("guid-1", "http://shop/list?p=1", i).into(),
                );
                map.insert("_guid".into(), "guid-1".into());
                map.insert("_url".into(), "http://shop/list?p=1".into());
                map
            })
            .collect();
        expected.sort_by(|a, b| a["_key"].as_str().cmp(&b["_key"].as_str()));
        let got: Vec<_> = storer.fetch_rows(&table).await.unwrap();
        let got: Vec<_> = got.into_iter().map(without_stored_at).collect();
        assert_eq!(got, expected, "{}", backend.name());

        storer.close().await.unwrap();
        backend.drop_table(&table).await;
    }
}

#[tokio::test]
async fn a_new_field_adds_a_column() {
    for backend in backends(|_| {}).await {
        let storer = backend.open().await;
        let table = unique("newcol");
        let first = storer.store(&table, vec![row("g", "u", 0, json!({"a": 1}))]);
        assert_eq!(ok(first.await, "first").stored, 1);
        let columns = backend.columns(&table).await;
        assert_eq!(columns, ["_key", "_guid", "_url", "_stored_at", "a"]);

        // "B" lands in a new column; "A" is the existing "a" (names ignore case);
        // an all-null field makes no column yet.
        let second = vec![row("g", "u", 1, json!({"A": 2, "B": "x", "c": null}))];
        assert_eq!(ok(storer.store(&table, second).await, "second").stored, 1);
        let columns = backend.columns(&table).await;
        assert_eq!(columns, ["_key", "_guid", "_url", "_stored_at", "a", "B"]);

        let rows = storer.fetch_rows(&table).await.unwrap();
        let by_index = |i: usize| {
            let key = hash_key("g", "u", i);
            rows.iter()
                .find(|r| r["_key"] == json!(key))
                .cloned()
                .unwrap()
        };
        assert_eq!(by_index(0)["a"], json!(1));
        assert!(!by_index(0).contains_key("B"), "{}", backend.name());
        assert_eq!(
            (by_index(1)["a"].clone(), by_index(1)["B"].clone()),
            (json!(2), json!("x"))
        );

        storer.close().await.unwrap();
        backend.drop_table(&table).await;
    }
}

#[tokio::test]
async fn a_redelivered_task_makes_no_duplicate_rows() {
    for backend in backends(|_| {}).await {
        let storer = backend.open().await;
        let table = unique("redeliver");
        let task = |price: f64| -> Vec<Row> {
            (0..5)
                .map(|i| row("task-7", "http://x/p", i, json!({"i": i, "price": price})))
                .collect()
        };
        assert_eq!(ok(storer.store(&table, task(1.0)).await, "first").stored, 5);
        // Redelivered once in sequence and twice at the same time.
        assert_eq!(ok(storer.store(&table, task(2.0)).await, "again").stored, 5);
        let (a, b) = tokio::join!(
            storer.store(&table, task(3.0)),
            storer.store(&table, task(3.0))
        );
        assert_eq!(ok(a, "a").stored + ok(b, "b").stored, 10);
        assert_eq!(
            storer.count_rows(&table).await.unwrap(),
            5,
            "{}",
            backend.name()
        );
        let rows = storer.fetch_rows(&table).await.unwrap();
        assert!(rows.iter().all(|r| r["price"] == json!(3.0)), "{rows:?}");

        storer.close().await.unwrap();
        backend.drop_table(&table).await;
    }
}

#[tokio::test]
async fn configured_key_fields_upsert_one_row_per_natural_key() {
    let table = unique("natural");
    let for_table = table.clone();
    let tweak = move |c: &mut StorerConfig| {
        c.key_fields.insert(for_table.clone(), vec!["sku".into()]);
    };
    for backend in backends(tweak).await {
        let storer = backend.open().await;
        let first = vec![
            row(
                "g1",
                "http://a",
                0,
                json!({"sku": "A1", "price": 10, "color": "red"}),
            ),
            row("g1", "http://a", 1, json!({"sku": "a1", "price": 5})),
        ];
        assert_eq!(ok(storer.store(&table, first).await, "first").stored, 2);
        // Another task sees A1 again: same row, new price; absent fields are kept.
        let again = vec![
            row("g2", "http://b", 0, json!({"sku": "A1", "price": 12})),
            row("g2", "http://b", 1, json!({"price": 1})),
        ];
        let report = ok(storer.store(&table, again).await, "again");
        assert_eq!(report.stored, 1);
        assert_eq!(report.refused.len(), 1);
        assert_eq!(report.refused[0].0, 1);
        assert!(
            report.refused[0].1.contains("missing key field \"sku\""),
            "{report:?}"
        );

        assert_eq!(
            storer.count_rows(&table).await.unwrap(),
            2,
            "{}",
            backend.name()
        );
        let rows = storer.fetch_rows(&table).await.unwrap();
        let a1 = rows.iter().find(|r| r["_key"] == json!("A1")).unwrap();
        assert_eq!(
            (
                a1["price"].clone(),
                a1["color"].clone(),
                a1["_guid"].clone()
            ),
            (json!(12), json!("red"), json!("g2"))
        );
        let lower = rows.iter().find(|r| r["_key"] == json!("a1")).unwrap();
        assert_eq!(lower["price"], json!(5));

        // An explicit null clears a field.
        let clear = vec![row(
            "g3",
            "http://c",
            0,
            json!({"sku": "A1", "color": null}),
        )];
        assert_eq!(ok(storer.store(&table, clear).await, "clear").stored, 1);
        let rows = storer.fetch_rows(&table).await.unwrap();
        let a1 = rows.iter().find(|r| r["_key"] == json!("A1")).unwrap();
        assert!(!a1.contains_key("color"), "{a1:?}");

        storer.close().await.unwrap();
        backend.drop_table(&table).await;
    }
}

#[tokio::test]
async fn a_refused_row_is_reported_and_the_rest_of_the_batch_is_stored() {
    for backend in backends(|_| {}).await {
        let table = unique("refuse");
        let stored_at = if backend.is_mysql() {
            "DATETIME(3)"
        } else {
            "TEXT"
        };
        backend
            .raw(&format!(
                "CREATE TABLE {table} (_key VARCHAR(191) NOT NULL PRIMARY KEY, _guid TEXT, \
                 _url TEXT, _stored_at {stored_at} NOT NULL, n BIGINT CHECK (n >= 0))"
            ))
            .await;
        let storer = backend.open().await;
        let rows: Vec<Row> = [1, -1, 2, -5, 3]
            .iter()
            .enumerate()
            .map(|(i, n)| row("g", "u", i, json!({"n": n})))
            .collect();
        let report = ok(storer.store(&table, rows).await, backend.name());
        assert_eq!(report.stored, 3, "{report:?}");
        let positions: Vec<usize> = report.refused.iter().map(|r| r.0).collect();
        assert_eq!(positions, [1, 3], "{report:?}");
        for (_, reason) in &report.refused {
            assert!(reason.to_lowercase().contains("constraint"), "{reason}");
        }

        // Two callers at once: one's bad row does not cost the other anything.
        let bad = vec![
            row("h", "u", 0, json!({"n": 7})),
            row("h", "u", 1, json!({"n": -7})),
        ];
        let good = vec![
            row("k", "u", 0, json!({"n": 8})),
            row("k", "u", 1, json!({"n": 9})),
        ];
        let (bad, good) = tokio::join!(storer.store(&table, bad), storer.store(&table, good));
        let (bad, good) = (ok(bad, "bad"), ok(good, "good"));
        assert_eq!((bad.stored, bad.refused.len()), (1, 1), "{bad:?}");
        assert_eq!(bad.refused[0].0, 1);
        assert_eq!((good.stored, good.refused.len()), (2, 0), "{good:?}");

        let rows = storer.fetch_rows(&table).await.unwrap();
        let ns: BTreeSet<i64> = rows.iter().map(|r| r["n"].as_i64().unwrap()).collect();
        assert_eq!(ns, BTreeSet::from([1, 2, 3, 7, 8, 9]), "{}", backend.name());

        storer.close().await.unwrap();
        backend.drop_table(&table).await;
    }
}

#[tokio::test]
async fn a_string_in_an_integer_column_is_refused_by_mariadb_and_kept_as_text_by_sqlite() {
    for backend in backends(|_| {}).await {
        let storer = backend.open().await;
        let table = unique("strict");
        let first = storer.store(&table, vec![row("g", "u", 0, json!({"n": 1}))]);
        assert_eq!(ok(first.await, "first").stored, 1);
        let rows = vec![
            row("g", "u", 1, json!({"n": 2})),
            row("g", "u", 2, json!({"n": "abc"})),
            row("g", "u", 3, json!({"n": 3})),
        ];
        let report = ok(storer.store(&table, rows).await, backend.name());
        let values: BTreeSet<String> = storer
            .fetch_rows(&table)
            .await
            .unwrap()
            .iter()
            .map(|r| r["n"].to_string())
            .collect();
        if backend.is_mysql() {
            // Strict mode: the value is refused with the server's reason.
            assert_eq!(report.stored, 2, "{report:?}");
            assert_eq!(report.refused.len(), 1, "{report:?}");
            assert_eq!(report.refused[0].0, 1);
            assert!(
                report.refused[0].1.contains("Incorrect integer value"),
                "{report:?}"
            );
            assert_eq!(values, BTreeSet::from(["1".into(), "2".into(), "3".into()]));
        } else {
            // SQLite's type affinity keeps the text as it was given.
            assert_eq!((report.stored, report.refused.len()), (3, 0), "{report:?}");
            assert!(values.contains("\"abc\""), "{values:?}");
        }
        storer.close().await.unwrap();
        backend.drop_table(&table).await;
    }
}

#[tokio::test]
async fn invalid_table_and_field_names_are_rejected_with_clear_errors() {
    for backend in backends(|_| {}).await {
        let storer = backend.open().await;
        let long = "a".repeat(65);
        let bad_names = [
            "",
            "a.b",
            "x; DROP TABLE y",
            "a`b",
            "a\"b",
            "a b",
            &long,
            "sqlite_master",
        ];
        for name in bad_names {
            let rows = vec![row("g", "u", 0, json!({"a": 1}))];
            let error = storer.store(name, rows).await.unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(&error, StorerError::InvalidTable { name: n, .. } if n == name),
                "{error:?}"
            );
            assert!(message.contains(&format!("{name:?}")), "{message}");
            assert!(!error.is_retryable());
            assert!(storer.count_rows(name).await.is_err());
        }

        // A field that cannot be a column refuses its row only.
        let table = unique("fields");
        let rows = vec![
            row("g", "u", 0, json!({"a b": 1})),
            row("g", "u", 1, json!({"_key": "mine"})),
            row("g", "u", 2, json!({"ok": 1})),
        ];
        let report = ok(storer.store(&table, rows).await, backend.name());
        assert_eq!(report.stored, 1);
        assert_eq!(report.refused.len(), 2, "{report:?}");
        assert!(report.refused[0].1.contains("\"a b\""), "{report:?}");
        assert!(report.refused[1].1.contains("reserved"), "{report:?}");
        storer.close().await.unwrap();
        backend.drop_table(&table).await;
    }
}

#[tokio::test]
async fn the_table_prefix_is_prepended() {
    for backend in backends(|c| c.table_prefix = "crawl_".into()).await {
        let storer = backend.open().await;
        let task_type = unique("prefix");
        let report = storer.store(&task_type, vec![row("g", "u", 0, json!({"a": 1}))]);
        let report = ok(report.await, backend.name());
        assert_eq!(report.table, format!("crawl_{task_type}"));
        assert_eq!(backend.columns(&report.table).await.len(), 5);
        assert_eq!(storer.count_rows(&task_type).await.unwrap(), 1);
        storer.close().await.unwrap();
        backend.drop_table(&report.table).await;
    }
}

#[tokio::test]
async fn many_concurrent_single_row_stores_are_all_written() {
    for backend in backends(|c| c.batch_rows = 64).await {
        let storer = backend.open().await;
        let table = unique("concurrent");
        let calls = (0..300).map(|i| {
            let rows = vec![row(&format!("task-{i}"), "http://x", 0, json!({"i": i}))];
            storer.store(&table, rows)
        });
        for report in join_all(calls).await {
            assert_eq!(ok(report, backend.name()).stored, 1);
        }
        assert_eq!(
            storer.count_rows(&table).await.unwrap(),
            300,
            "{}",
            backend.name()
        );
        storer.close().await.unwrap();
        backend.drop_table(&table).await;
    }
}

#[tokio::test]
async fn a_killed_mariadb_connection_is_replaced_without_failing_the_store() {
    let Some(mariadb) = backends(|_| {}).await.into_iter().find(Backend::is_mysql) else {
        return; // skipped above (not reachable here under CI=true)
    };
    // A user of its own, so that killing its connections touches no other test.
    let user = unique("killer");
    for host in ["localhost", "127.0.0.1", "%"] {
        let create =
            format!("CREATE USER '{user}'@'{host}'; GRANT ALL ON test.* TO '{user}'@'{host}'");
        mariadb.raw(&create).await;
    }
    let config = StorerConfig {
        url: format!("mysql://{user}@127.0.0.1:3306/test"),
        ..StorerConfig::default()
    };
    let storer = Storer::open(&config).await.unwrap();
    let table = unique("killed");
    let first = storer.store(&table, vec![row("g", "u", 0, json!({"a": 1}))]);
    assert_eq!(ok(first.await, "first").stored, 1);

    let mut root = mysql_async::Conn::from_url(MARIADB_URL).await.unwrap();
    let ids: Vec<u64> = root
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
            (&user,),
        )
        .await
        .unwrap();
    assert!(!ids.is_empty());
    for id in ids {
        root.query_drop(format!("KILL {id}")).await.unwrap();
    }
    let second = storer.store(&table, vec![row("g", "u", 1, json!({"a": 2}))]);
    assert_eq!(ok(second.await, "after kill").stored, 1);
    assert_eq!(storer.count_rows(&table).await.unwrap(), 2);

    storer.close().await.unwrap();
    mariadb.drop_table(&table).await;
    for host in ["localhost", "127.0.0.1", "%"] {
        root.query_drop(format!("DROP USER '{user}'@'{host}'"))
            .await
            .unwrap();
    }
    root.disconnect().await.unwrap();
}

#[tokio::test]
async fn open_names_what_is_wrong() {
    let no_db = StorerConfig {
        url: "mysql://root@127.0.0.1:3306".into(),
        ..StorerConfig::default()
    };
    let error = Storer::open(&no_db).await.err().unwrap();
    assert!(error.to_string().contains("names no database"), "{error}");

    let bad_scheme = StorerConfig {
        url: "postgres://x/y".into(),
        ..StorerConfig::default()
    };
    let error = Storer::open(&bad_scheme).await.err().unwrap();
    assert!(error.to_string().contains("mysql://"), "{error}");

    // Nothing listens on port 1: the error names the server, not the password.
    let down = StorerConfig {
        url: "mysql://root:secret@127.0.0.1:1/test".into(),
        ..StorerConfig::default()
    };
    let error = Storer::open(&down).await.err().unwrap();
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1/test"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert!(error.is_retryable());

    let toml_text = "url = \"\"\nbatch_rows = 10\n[key_fields]\njd = [\"sku\"]\n";
    let config: StorerConfig = toml::from_str(toml_text).unwrap();
    assert_eq!(config.key_fields["jd"], ["sku"]);
    assert!(toml::from_str::<StorerConfig>("batch_rowz = 1").is_err());
}
