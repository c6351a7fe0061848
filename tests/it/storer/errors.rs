//! What goes wrong: refused rows reported beside the stored rest, names rejected
//! before any SQL, a killed connection replaced, `open` naming the bad setting.

use std::collections::BTreeSet;

use mysql_async::prelude::Queryable;
use serde_json::json;
use taskbus::storer::{Row, Storer, StorerConfig, StorerError};

use super::{backends, ok, row, unique, Backend};
use crate::common::MARIADB_URL;

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
