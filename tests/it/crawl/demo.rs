//! The crawl as a user starts it: `taskbus run` with the repository's bus.toml (the
//! demo), and a short run of `taskbus-bench crawl`.

use std::path::Path;
use std::sync::Arc;

use taskbus::crawl::site_data::{self, LIST_PAGES};

use crate::common::free_port;

/// `taskbus run` with the repository's bus.toml, in a temporary data folder, twice.
#[tokio::test]
async fn taskbus_run_crawls_the_example_site_and_exits_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bus.toml");
    let env = [
        ("STORE__DATA_DIR", data.display().to_string()),
        (
            "STORER__SQLITE_PATH",
            data.join("rows.sqlite3").display().to_string(),
        ),
        ("BROKER__CLIENT_ENDPOINT", "tcp://127.0.0.1:0".into()),
        ("BROKER__WORKER_ENDPOINT", "tcp://127.0.0.1:0".into()),
        ("BROKER__EVENTS_ENDPOINT", "tcp://127.0.0.1:0".into()),
        // One fixed port for both runs: the same pages, so the same rows.
        ("RUN__EXAMPLE_SITE", format!("127.0.0.1:{}", free_port())),
        ("RUN__PROGRESS_SECS", "0".into()),
        ("HTTP__LISTEN", "127.0.0.1:0".into()),
    ]
    .map(|(k, v)| (format!("TASKBUS__{k}"), v));
    let config = Arc::new(taskbus::config::load(Some(&path), env).expect("bus.toml loads"));
    assert!(
        config.run.exit_when_idle,
        "the default bus.toml runs a demo"
    );
    let want_rows = (LIST_PAGES * site_data::ITEMS_PER_PAGE) as u64;
    for round in 0..2 {
        let summary = taskbus::run::run(config.clone(), std::future::pending())
            .await
            .expect("run")
            .expect("a summary");
        let text = taskbus::run::summary_text(&summary);
        let m = &summary.metrics;
        assert_eq!(m.pages, u64::from(LIST_PAGES) + 3, "round {round}: {text}");
        assert_eq!(m.rows_stored, want_rows + 30, "round {round}: {text}");
        assert_eq!((m.pages_failed, m.rows_refused), (0, 0), "{text}");
        assert_eq!(summary.tasks_dead, 0, "{text}");
        let tables: Vec<(String, u64)> = vec![
            ("example_items".into(), want_rows),
            ("jd_phones".into(), 30),
        ];
        assert_eq!(
            summary.tables, tables,
            "round {round}: no duplicates: {text}"
        );
        assert!(text.contains("rows.sqlite3"), "{text}");
        assert!(text.contains("errors: 0"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crawl_bench_follows_parses_and_stores_pages() {
    let args = taskbus::bench::crawl::CrawlArgs {
        seconds: 2.0,
        json: None,
        mysql: None,
        show: 20,
        frontier: 1_000,
        backlog: 500,
        concurrency: 16,
        capacity: 4,
        bulk: true,
        store_capacity: 64,
        quiet: true,
    };
    let report = taskbus::bench::crawl::run(&args).await.expect("bench runs");
    assert!(
        report.pages > 20,
        "more than the first page's links: {report:?}"
    );
    assert_eq!(report.pages_failed, 0, "{report:?}");
    assert!(report.rows > 0 && report.rows <= report.pages, "{report:?}");
    assert!(report.site_requests >= report.pages, "{report:?}");
    assert!(
        report.links_dropped > 0,
        "the frontier cap holds: {report:?}"
    );
}
