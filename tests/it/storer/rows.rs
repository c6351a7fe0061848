//! Rows in and out: tables and columns created on use, exact rows read back,
//! idempotent upserts on the hash key or configured key fields, the table prefix,
//! concurrent stores.

use futures::future::join_all;
use serde_json::{json, Map, Value};
use taskbus::storer::{Row, StorerConfig};

use super::{backends, hash_key, ok, row, unique, without_stored_at};

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
                map.insert("url".into(), "http://shop/list?p=1".into());
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
        assert_eq!(columns, ["_key", "_guid", "url", "_stored_at", "a"]);

        // "B" lands in a new column; "A" is the existing "a" (names ignore case);
        // an all-null field makes no column yet.
        let second = vec![row("g", "u", 1, json!({"A": 2, "B": "x", "c": null}))];
        assert_eq!(ok(storer.store(&table, second).await, "second").stored, 1);
        let columns = backend.columns(&table).await;
        assert_eq!(columns, ["_key", "_guid", "url", "_stored_at", "a", "B"]);

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
