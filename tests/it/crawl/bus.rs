//! The crawl pipeline on the bus, end to end: a broker, the executor, fetcher, parser
//! and storer workers (built by `taskbus::stages::build`, over TCP) against the
//! example site, checking the exact rows (computed from `site_data`) in SQLite and in
//! the real MariaDB; redelivery, refusals, link dedup, a Python parser.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use taskbus::config::{Config, WorkerSpec};
use taskbus::crawl::site::{bind_local, LocalSite};
use taskbus::crawl::site_data::{self, SiteItem, LIST_PAGES};
use taskbus::crawl::{LocalTask, UrlEntry};
use taskbus::storer::{Storer, StorerConfig};
use taskbus::task::{new_guid, NewTask};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::support::crawl_config;
use crate::common::{
    config, mariadb_storer, n_workers, until_stats, TestBroker, TestWorker, MARIADB_URL,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Two unique task types (table names): HTML list items and search API items.
struct Types {
    items: String,
    phones: String,
}

impl Types {
    fn new(label: &str) -> Types {
        let tag = &new_guid()[..10];
        Types {
            items: format!("it_{label}_items_{tag}"),
            phones: format!("it_{label}_phones_{tag}"),
        }
    }
}

fn spec(stage: &str, topics: &[&str], next_topic: Option<&str>) -> WorkerSpec {
    WorkerSpec {
        stage: stage.into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        capacity: 16,
        count: 1,
        next_topic: next_topic.map(str::to_string),
    }
}

/// A broker configuration with the crawl test configuration and `storer`.
fn bus_config(storer: StorerConfig) -> Arc<Config> {
    config(|c| {
        c.crawl = crawl_config(|_| {});
        c.storer = storer;
    })
}

fn sqlite_storer(dir: &Path) -> StorerConfig {
    StorerConfig {
        sqlite_path: dir.join("rows.sqlite3"),
        ..StorerConfig::default()
    }
}

async fn drop_mariadb_tables(tables: &[&str]) {
    let mut conn = mysql_async::Conn::from_url(MARIADB_URL).await.unwrap();
    for table in tables {
        conn.query_drop(format!("DROP TABLE IF EXISTS `{table}`"))
            .await
            .unwrap();
    }
    conn.disconnect().await.unwrap();
}

/// A broker and the given stage workers, each built by `taskbus::stages::build`.
struct Pipeline {
    broker: TestBroker,
    workers: Vec<TestWorker>,
}

impl Pipeline {
    async fn start(config: Arc<Config>, specs: &[WorkerSpec]) -> Pipeline {
        let broker = TestBroker::start(config.clone()).await;
        let mut workers = Vec::new();
        for spec in specs {
            let stage = taskbus::stages::build(spec, &config)
                .await
                .unwrap_or_else(|e| panic!("stage {}: {e}", spec.stage));
            let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
            let mut options = broker.worker_options(&spec.stage, &topics, spec.capacity);
            options.next_topic = spec.next_topic.clone();
            workers.push(TestWorker::start(options, stage));
        }
        Pipeline { broker, workers }
    }

    /// The four Rust stages, executors taking `types`.
    async fn full(config: Arc<Config>, types: &[&str]) -> Pipeline {
        let specs = [
            spec("executor", types, Some("crawl")),
            spec("fetcher", &["crawl"], None),
            spec("parser", &["parsing"], Some("store")),
            spec("storer", &["store"], None),
        ];
        Pipeline::start(config, &specs).await
    }

    async fn put(&self, tasks: &[NewTask]) {
        let mut client = self.broker.client().await;
        client.put(tasks).await.expect("put");
    }

    /// Waits until no topic has a ready or leased task; returns the last stats.
    async fn until_idle(&self) -> Value {
        self.until_idle_except(&[]).await
    }

    /// Waits until no topic but `ignored` has a ready or leased task.
    async fn until_idle_except(&self, ignored: &[&str]) -> Value {
        let mut client = self.broker.client().await;
        until_stats(&mut client, LIMIT, |stats| {
            let topics = stats["topics"].as_object().unwrap();
            !topics.is_empty()
                && topics
                    .iter()
                    .filter(|(name, _)| !ignored.contains(&name.as_str()))
                    .all(|(_, t)| t["ready"] == 0 && t["leased"] == 0)
        })
        .await
    }

    async fn stop(self) {
        for worker in self.workers {
            worker.stop().await;
        }
        self.broker.stop().await;
    }
}

/// The server tasks of a crawl of the example site into `types`.
fn server_tasks(site: &LocalSite, types: &Types) -> Vec<NewTask> {
    let base = site.url("");
    vec![
        NewTask {
            guid: Some(format!("srv-items-{}", &new_guid()[..6])),
            ..NewTask::new(
                types.items.as_str(),
                json!({"crawl": {"name": "example_list", "version": "1"}, "base": base}),
            )
        },
        NewTask {
            guid: Some(format!("srv-phones-{}", &new_guid()[..6])),
            ..NewTask::new(
                types.phones.as_str(),
                json!({"crawl": {"name": "jd_search", "version": "1"}, "base": base,
                       "categoryId": "9987", "c1": "830", "c2": "866", "sort": "price_desc"}),
            )
        },
    ]
}

/// The list pages' rows as stored: (`url`, title, link, price).
fn expected_item_rows(site: &LocalSite, pages: impl Iterator<Item = u32>) -> BTreeSet<String> {
    let mut rows = BTreeSet::new();
    for page in pages {
        for item in site_data::list_items(page) {
            rows.insert(item_row(
                &site.url(&format!("/list/{page}")),
                &item.title,
                &site.url(&format!("/item/{}", item.id)),
                item.price(),
            ));
        }
    }
    rows
}

fn item_row(url: &str, title: &str, link: &str, price: f64) -> String {
    json!({"url": url, "title": title, "link": link, "price": price}).to_string()
}

/// The search API's rows as stored: (`url`, ware_id, name, price).
fn expected_phone_rows(site: &LocalSite) -> BTreeSet<String> {
    let mut rows = BTreeSet::new();
    for page in 1..=3 {
        for item in site_data::search_items("9987-830-866", page, "price_desc") {
            rows.insert(
                json!({
                    "url": site.url("/ware/searchList.action"),
                    "ware_id": item["wareId"].as_str().unwrap().parse::<i64>().unwrap(),
                    "name": item["wname"],
                    "price": item["jdPrice"].as_str().unwrap().parse::<f64>().unwrap(),
                })
                .to_string(),
            );
        }
    }
    rows
}

/// The stored rows of `task_type`, keeping `columns`, as sorted JSON texts.
async fn stored(storer: &Storer, task_type: &str, columns: &[&str]) -> Vec<String> {
    let rows = storer.fetch_rows(task_type).await.expect("fetch rows");
    let mut texts: Vec<String> = rows
        .iter()
        .map(|row| {
            let picked: serde_json::Map<String, Value> = columns
                .iter()
                .filter_map(|c| row.get(*c).map(|v| (c.to_string(), v.clone())))
                .collect();
            Value::Object(picked).to_string()
        })
        .collect();
    texts.sort();
    texts
}

/// Runs both crawls through the four stages into `storer_config`'s database and
/// checks every row; returns the task types for clean-up.
async fn crawl_into(storer_config: StorerConfig, label: &str) -> Types {
    let (_, site) = bind_local().await;
    let types = Types::new(label);
    let config = bus_config(storer_config.clone());
    let pipeline = Pipeline::full(config, &[&types.items, &types.phones]).await;
    pipeline.put(&server_tasks(&site, &types)).await;
    let stats = pipeline.until_idle().await;
    for topic in stats["topics"].as_object().unwrap().values() {
        assert_eq!(topic["dead"], 0, "{stats}");
    }

    let storer = Storer::open(&storer_config).await.unwrap();
    let items = stored(&storer, &types.items, &["url", "title", "link", "price"]).await;
    let want: Vec<String> = expected_item_rows(&site, 1..=LIST_PAGES)
        .into_iter()
        .collect();
    assert_eq!(items, want, "{label}: list rows");
    let phones = stored(&storer, &types.phones, &["url", "ware_id", "name", "price"]).await;
    let want: Vec<String> = expected_phone_rows(&site).into_iter().collect();
    assert_eq!(phones, want, "{label}: search rows");
    let guids: BTreeSet<String> = storer
        .fetch_rows(&types.items)
        .await
        .unwrap()
        .iter()
        .map(|r| r["_guid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        guids.len(),
        1,
        "rows carry the server task's guid: {guids:?}"
    );
    assert!(
        guids.iter().all(|g| g.starts_with("srv-items-")),
        "{guids:?}"
    );
    storer.close().await.unwrap();
    // Every list page links to every other: each was fetched once.
    for page in 1..=LIST_PAGES {
        assert_eq!(site.stats.hits(&format!("/list/{page}")), 1, "page {page}");
    }
    pipeline.stop().await;
    types
}

#[tokio::test]
async fn crawl_pipeline_stores_the_exact_rows_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    crawl_into(sqlite_storer(dir.path()), "sqlite").await;
}

#[tokio::test]
async fn crawl_pipeline_stores_the_exact_rows_in_mariadb() {
    let Some(storer) = mariadb_storer().await else {
        return;
    };
    let types = crawl_into(storer, "maria").await;
    drop_mariadb_tables(&[&types.items, &types.phones]).await;
}

/// A parse task of list page `page`, fetched and wrapped as the fetcher sends it.
async fn parse_task(site: &LocalSite, task_type: &str, page: u32) -> Value {
    let crawl = LocalTask::with_urls(
        task_type,
        "srv-redeliver",
        vec![UrlEntry::get(
            site.url(&format!("/list/{page}")),
            "example_list",
        )],
    );
    let fetcher = taskbus::crawl::Fetcher::new(&Default::default()).unwrap();
    let mut fetched = fetcher.fetch_task(crawl).await;
    let envelope = taskbus::crawl::stage::envelope(fetched.remove(0), "parsing", "crawl");
    envelope.body.to_value()
}

#[tokio::test]
async fn a_redelivered_parse_task_stores_no_duplicate_rows() {
    let (_, site) = bind_local().await;
    let dir = tempfile::tempdir().unwrap();
    let storer_config = sqlite_storer(dir.path());
    let task_type = Types::new("redeliver").items;
    let specs = [
        spec("parser", &["parsing"], Some("store")),
        spec("storer", &["store"], None),
    ];
    let pipeline = Pipeline::start(bus_config(storer_config.clone()), &specs).await;
    let body = parse_task(&site, &task_type, 2).await;
    let task = NewTask {
        guid: Some("parse-once".into()),
        ..NewTask::new("parsing", body)
    };
    let storer = Storer::open(&storer_config).await.unwrap();
    let want: Vec<String> = expected_item_rows(&site, 2..=2).into_iter().collect();
    for round in 0..2 {
        pipeline.put(std::slice::from_ref(&task)).await;
        // No fetcher here: the page's follow tasks wait in `crawl`.
        let stats = pipeline.until_idle_except(&["crawl"]).await;
        assert_eq!(stats["topics"]["store"]["done"], round + 1, "{stats}");
        let rows = stored(&storer, &task_type, &["url", "title", "link", "price"]).await;
        assert_eq!(rows, want, "round {round}");
    }
    storer.close().await.unwrap();
    pipeline.stop().await;
}

#[tokio::test]
async fn a_refused_row_fails_its_task_while_the_rest_are_stored() {
    let (_, site) = bind_local().await;
    let dir = tempfile::tempdir().unwrap();
    let storer_config = sqlite_storer(dir.path());
    let types = Types::new("refuse");
    // The table exists with a rule some items break: their rows are refused.
    let limit = 1500.0;
    std::fs::create_dir_all(dir.path()).unwrap();
    let conn = rusqlite::Connection::open(&storer_config.sqlite_path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE {} (_key TEXT NOT NULL PRIMARY KEY, _guid TEXT, _url TEXT, \
         _stored_at TEXT NOT NULL, title TEXT, link TEXT, price REAL CHECK (price < {limit}))",
        types.items
    ))
    .unwrap();
    drop(conn);
    let pipeline = Pipeline::full(bus_config(storer_config.clone()), &[&types.items]).await;
    pipeline.put(&server_tasks(&site, &types)[..1]).await;
    pipeline.until_idle().await;

    let storer = Storer::open(&storer_config).await.unwrap();
    let rows = stored(&storer, &types.items, &["url", "title", "link", "price"]).await;
    let all_items = (1..=LIST_PAGES).flat_map(site_data::list_items);
    let want: Vec<String> = all_items
        .clone()
        .filter(|item| item.price() < limit)
        .map(|item| {
            let page = (item.id - 1) / site_data::ITEMS_PER_PAGE + 1;
            item_row(
                &site.url(&format!("/list/{page}")),
                &item.title,
                &site.url(&format!("/item/{}", item.id)),
                item.price(),
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(!want.is_empty(), "some rows are kept");
    assert_eq!(rows, want);
    storer.close().await.unwrap();

    // Each store task with a refused row is dead-lettered at once (not retried),
    // its error naming the table and the refusals.
    let refused_pages: BTreeSet<u32> = all_items
        .filter(|item: &SiteItem| item.price() >= limit)
        .map(|item| (item.id - 1) / site_data::ITEMS_PER_PAGE + 1)
        .collect();
    let mut client = pipeline.broker.client().await;
    let dead = client
        .request(&json!({"type": "dead_list", "topic": "store"}))
        .await
        .unwrap();
    assert_eq!(dead["total"], refused_pages.len(), "{dead}");
    for task in dead["tasks"].as_array().unwrap() {
        let error = task["last_error"].as_str().unwrap();
        assert!(error.contains(&types.items), "{error}");
        assert!(error.contains("refused"), "{error}");
        assert!(error.to_lowercase().contains("constraint"), "{error}");
        assert_eq!(task["attempt"], 1, "not retried: {task}");
    }
    pipeline.stop().await;
}

#[tokio::test]
async fn a_seed_crawl_task_put_by_hand_follows_each_link_once() {
    let (_, site) = bind_local().await;
    let dir = tempfile::tempdir().unwrap();
    let storer_config = sqlite_storer(dir.path());
    let task_type = Types::new("dedup").items;
    let specs = [
        spec("fetcher", &["crawl"], None),
        spec("parser", &["parsing"], Some("store")),
        spec("storer", &["store"], None),
    ];
    let pipeline = Pipeline::start(bus_config(storer_config.clone()), &specs).await;
    // The seed's crawl task, put by hand on the fetcher's topic (urls filled,
    // callback.topic "parsing"); its queue is not its type, so the body names it.
    let mut crawl = LocalTask::with_urls(
        &task_type,
        "seed",
        vec![
            UrlEntry::get(site.url("/list/1"), "example_list"),
            UrlEntry::get(site.url("/dupes"), "example_list"),
        ],
    );
    crawl.body.content.bulk = true;
    let mut body = serde_json::to_value(&crawl.body).unwrap();
    body["task_type"] = json!(task_type);
    pipeline.put(&[NewTask::new("crawl", body)]).await;
    let stats = pipeline.until_idle().await;

    for page in 1..=LIST_PAGES {
        assert_eq!(site.stats.hits(&format!("/list/{page}")), 1, "page {page}");
    }
    let storer = Storer::open(&storer_config).await.unwrap();
    let rows = stored(&storer, &task_type, &["url", "title", "link", "price"]).await;
    let want: Vec<String> = expected_item_rows(&site, 1..=LIST_PAGES)
        .into_iter()
        .collect();
    assert_eq!(rows, want);
    storer.close().await.unwrap();
    // /dupes has no items: its page is an error logged by the parser, but the bulk
    // task's other page made rows, so nothing is dead.
    assert_eq!(stats["topics"]["parsing"]["dead"], 0, "{stats}");
    pipeline.stop().await;
}

#[tokio::test]
async fn a_python_parser_replaces_the_rust_parser() {
    let Some(py) = crate::python::python() else {
        return;
    };
    let (_, site) = bind_local().await;
    let dir = tempfile::tempdir().unwrap();
    let storer_config = sqlite_storer(dir.path());
    let task_type = Types::new("python").items;
    let specs = [
        spec("executor", &[&task_type], Some("crawl")),
        spec("fetcher", &["crawl"], None),
        spec("storer", &["store"], None),
    ];
    let config = config(|c| {
        c.broker.heartbeat_interval_secs = 0.2;
        c.crawl = crawl_config(|_| {});
        c.storer = storer_config.clone();
    });
    let pipeline = Pipeline::start(config, &specs).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python_parser.py");
    let mut child = tokio::process::Command::new(py)
        .arg(script)
        .args(["--endpoint", &pipeline.broker.endpoints.worker])
        .args(["--topic", "parsing", "--store-topic", "store"])
        .args(["--heartbeat", "0.2", "--capacity", "4"])
        .args(["--identity", "py-parser"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = stdout.next_line().await.unwrap().unwrap_or_default();
    assert_eq!(line, "ready py-parser");
    let mut client = pipeline.broker.client().await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 4).await;

    let task = NewTask::new(
        task_type.as_str(),
        json!({"crawl": {"name": "example_list", "version": "1"}, "base": site.url(""),
               "pages": [1, LIST_PAGES]}),
    );
    pipeline.put(&[task]).await;
    let stats = pipeline.until_idle().await;
    assert_eq!(stats["topics"]["parsing"]["done"], LIST_PAGES, "{stats}");
    let storer = Storer::open(&storer_config).await.unwrap();
    let rows = stored(&storer, &task_type, &["url", "title", "link", "price"]).await;
    let want: Vec<String> = expected_item_rows(&site, 1..=LIST_PAGES)
        .into_iter()
        .collect();
    assert_eq!(rows, want);
    storer.close().await.unwrap();
    let _ = child.start_kill();
    pipeline.stop().await;
}
