//! `[[crawl.spiders]]` through `taskbus run` in-process against a real HTTP server:
//! robots.txt (Disallow, Crawl-delay, `obey_robots = false`), `<base href>`,
//! redirects with `final_url`, canonical URLs, retries (503 twice then 200; a 404
//! once), non-HTML skipped and counted, allow/deny with max_depth, JSON lines and
//! CSV feeds, and a seeded topic nobody takes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use taskbus::config::{Config, WorkerSpec};
use taskbus::crawl::spider::{FieldSpec, Patterns, SpiderConfig, SpiderRule};
use taskbus::run::RunSummary;

use super::spider_site::{SpiderSite, STORED_PAGES};
use crate::common;

const ROBOTS: &str = "User-agent: *\nDisallow: /private\nCrawl-delay: 0.1\n";

fn workers() -> Vec<WorkerSpec> {
    [
        ("fetcher", "crawl"),
        ("parser", "parsing"),
        ("storer", "store"),
    ]
    .into_iter()
    .map(|(stage, topic)| WorkerSpec {
        stage: stage.into(),
        topics: vec![topic.into()],
        capacity: 16,
        count: 1,
        next_topic: None,
    })
    .collect()
}

fn spider(site: &SpiderSite, feed: &Path) -> SpiderConfig {
    let mut fields = BTreeMap::new();
    fields.insert("title".to_string(), FieldSpec::Short("css:title".into()));
    SpiderConfig {
        name: "site".into(),
        start_urls: vec![site.url("/")],
        follow: vec![SpiderRule {
            allow: Patterns::One(".".into()),
            deny: Patterns::One("/deny/".into()),
            ..SpiderRule::default()
        }],
        max_depth: 2,
        fields,
        feed: feed.display().to_string(),
        ..SpiderConfig::default()
    }
}

fn run_config(edit: impl FnOnce(&mut Config)) -> Arc<Config> {
    common::config(|config| {
        config.workers = workers();
        config.run.exit_when_idle = true;
        config.run.max_secs = 60.0;
        config.run.progress_secs = 0.0;
        config.crawl.fetcher.backoff_base_ms = 10;
        edit(config);
        config.wire_spider_feeds();
    })
}

async fn run(config: Arc<Config>) -> RunSummary {
    taskbus::run::run(config, std::future::pending())
        .await
        .expect("run")
        .expect("a summary")
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spider_crawls_politely_and_correctly_into_a_json_lines_feed() {
    let site = SpiderSite::start(ROBOTS).await;
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("rows.jsonl");
    let config = run_config(|c| c.crawl.spiders = vec![spider(&site, &feed)]);
    let summary = run(config).await;
    let text = taskbus::run::summary_text(&summary);
    let hits = &site.hits;
    // robots.txt: asked once, its Disallow obeyed, its Crawl-delay spacing requests.
    assert_eq!(hits.count("/robots.txt"), 1, "{text}");
    assert_eq!(hits.count_prefix("/private"), 0, "{text}");
    assert_eq!(summary.metrics.skipped_robots, 1, "{text}");
    // Starts are 100 ms apart; each request may leave a few ms late.
    let times = hits.page_times();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(50),
            "{:?}",
            pair[1] - pair[0]
        );
    }
    let span = *times.last().unwrap() - times[0];
    assert!(
        span >= Duration::from_millis(95) * (times.len() as u32 - 1),
        "{span:?}"
    );
    // Canonical URLs: one request per page, whatever the query order or escapes.
    assert_eq!(hits.count_prefix("/a?"), 1, "{text}");
    assert_eq!(hits.count("/a?a=1&b=2"), 1, "{text}");
    assert_eq!(hits.count("/~user"), 1, "{text}");
    // Extensions denied by default; content types skipped and counted.
    assert_eq!(hits.count("/pic.png"), 0);
    assert_eq!(hits.count("/notes.txt"), 1);
    assert_eq!(summary.metrics.skipped_content_type, 1, "{text}");
    // Retries: 503 twice then 200 is stored; a 404 is asked once.
    assert_eq!(hits.count("/flaky"), 3, "{text}");
    assert_eq!(hits.count("/gone"), 1, "{text}");
    assert_eq!(summary.metrics.retried, 2, "{text}");
    assert_eq!(
        summary.metrics.http_errors,
        BTreeMap::from([(404, 1)]),
        "{text}"
    );
    // <base href>, deny, off-domain, depth.
    assert_eq!(hits.count("/other/rel"), 1, "{text}");
    assert_eq!(hits.count_prefix("/deny"), 0);
    assert_eq!(summary.metrics.skipped_offsite, 1, "{text}");
    assert_eq!(
        (hits.count("/deep/2"), hits.count("/deep/3")),
        (1, 0),
        "{text}"
    );
    // The rows: url and final_url, canonical.
    let rows = read_lines(&feed);
    assert_eq!(rows.len(), STORED_PAGES, "{rows:?}");
    let by_title = |title: &str| rows.iter().find(|r| r["title"] == title).cloned();
    let landed = by_title("Landed").expect("the redirect's row");
    assert_eq!(landed["url"], site.url("/redirect"));
    assert_eq!(landed["final_url"], site.url("/landed"));
    assert_eq!(by_title("A").unwrap()["url"], site.url("/a?a=1&b=2"));
    assert!(by_title("Flaky").is_some(), "{rows:?}");
    assert_eq!(summary.metrics.rows_stored, STORED_PAGES as u64, "{text}");
    assert_eq!(summary.tasks_dead, 0, "{text}");
    assert_eq!(summary.failure(), None, "{text}");
    assert!(text.contains("http errors: 404: 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obey_robots_false_fetches_disallowed_pages_into_a_csv_feed() {
    let site = SpiderSite::start(ROBOTS).await;
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("rows.csv");
    let config = run_config(|c| {
        let mut spider = spider(&site, &feed);
        spider.start_urls = vec![site.url("/private/secret"), site.url("/redirect")];
        spider.follow.clear();
        c.crawl.spiders = vec![spider];
        c.crawl.fetcher.obey_robots = false;
    });
    let summary = run(config).await;
    assert_eq!(site.hits.count("/robots.txt"), 0);
    assert_eq!(site.hits.count("/private/secret"), 1);
    let text = std::fs::read_to_string(&feed).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.remove(0), "url,final_url,title", "{text}");
    lines.sort();
    assert_eq!(
        lines,
        [
            format!(
                "{},{},Secret",
                site.url("/private/secret"),
                site.url("/private/secret")
            ),
            format!("{},{},Landed", site.url("/redirect"), site.url("/landed")),
        ]
    );
    assert_eq!(summary.metrics.rows_stored, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spider_rows_go_to_a_table_with_url_and_final_url_columns() {
    let site = SpiderSite::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let config = run_config(|c| {
        let mut spider = spider(&site, Path::new(""));
        spider.feed.clear();
        spider.start_urls = vec![site.url("/redirect")];
        spider.table = "pages".into();
        c.crawl.spiders = vec![spider];
        c.storer.sqlite_path = dir.path().join("rows.sqlite3");
    });
    let summary = run(config.clone()).await;
    assert_eq!(summary.tables, [("pages".to_string(), 1)]);
    let storer = taskbus::storer::Storer::open(&config.storer).await.unwrap();
    let rows = storer.fetch_rows("pages").await.unwrap();
    assert_eq!(rows[0]["url"], site.url("/redirect"));
    assert_eq!(rows[0]["final_url"], site.url("/landed"));
    storer.close().await.unwrap();
}

#[tokio::test]
async fn a_seeded_topic_nobody_takes_is_named_at_once() {
    let config = common::config(|c| {
        c.run.exit_when_idle = true;
        c.run.tasks = vec![taskbus::task::NewTask::new(
            "orphans",
            serde_json::json!({}),
        )];
    });
    let started = std::time::Instant::now();
    let error = taskbus::run::run(config, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("\"orphans\""), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn paths_in_bus_toml_are_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.toml");
    std::fs::write(
        &path,
        "[store]\ndata_dir = \"state\"\n[storer]\nsqlite_path = \"rows/r.sqlite3\"\n",
    )
    .unwrap();
    let config = taskbus::config::load(Some(&path), Vec::new()).unwrap();
    assert_eq!(config.store.data_dir, dir.path().join("state"));
    assert_eq!(config.storer.sqlite_path, dir.path().join("rows/r.sqlite3"));
    assert_eq!(config.log.dir, dir.path().join("log"));
}
