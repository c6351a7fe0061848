//! The three stages chained in-process against the example site, as the bus workers
//! chain them: executor -> fetcher -> parser, follow tasks fed back to the fetcher.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::{json, Value};
use taskbus::crawl::site::bind_local;
use taskbus::crawl::site_data::{self, ITEMS_PER_PAGE, LIST_PAGES};
use taskbus::crawl::{
    execute, CrawlConfig, ExecutorRegistry, Fetcher, LocalTask, Parser, UrlEntry,
};

use super::support::crawl_config;

/// The crawl test configuration, four requests at once to one host.
fn config() -> CrawlConfig {
    crawl_config(|c| c.fetcher.per_domain_concurrency = 4)
}

#[tokio::test]
async fn search_task_becomes_rows_of_the_sites_items() {
    let (_, site) = bind_local().await;
    let config = config();
    let registry = ExecutorRegistry::from_config(&config.executors).unwrap();
    let fetcher = Fetcher::new(&config.fetcher).unwrap();
    let parser = Parser::new(&config.parser()).unwrap();

    let server_task: LocalTask = serde_json::from_value(json!({
        "topic": "jd_phones", "guid": "srv-7",
        "body": {"crawl": {"name": "jd_search", "version": "1"},
                 "base": site.url(""), "categoryId": "9987", "c1": "830", "c2": "866", "sort": "price_desc"}
    }))
    .unwrap();
    let crawl_task = execute(&registry, server_task).unwrap();
    let parse_tasks = fetcher.fetch_task(crawl_task).await;
    assert_eq!(parse_tasks.len(), 3, "bulk false: one parse task per page");
    for parse_task in parse_tasks {
        let page = parse_task.body.urls[0].url.page.as_u64().unwrap() as u32;
        let out = parser.parse_task(parse_task);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let rows: Vec<Value> = out
            .parsed
            .rows()
            .map(|r| Value::Object(r.clone()))
            .collect();
        let expected: Vec<Value> = site_data::search_items("9987-830-866", page, "price_desc")
            .into_iter()
            .map(|item| {
                json!({
                    "url": site.url("/ware/searchList.action"),
                    "final_url": site.url("/ware/searchList.action"),
                    "ware_id": item["wareId"].as_str().unwrap().parse::<i64>().unwrap(),
                    "name": item["wname"],
                    "price": item["jdPrice"].as_str().unwrap().parse::<f64>().unwrap(),
                })
            })
            .collect();
        assert_eq!(rows, expected, "page {page}");
        assert_eq!(
            out.parsed.topic, "jd_phones",
            "the storer's table is the task type"
        );
    }
}

/// Runs fetch and parse until no follow work is left or `budget` pages were fetched.
async fn crawl(
    fetcher: &Fetcher,
    parser: &Parser,
    start: LocalTask,
    budget: usize,
) -> (usize, usize) {
    let mut queue = VecDeque::from([start]);
    let (mut pages, mut rows) = (0, 0);
    while let Some(task) = queue.pop_front() {
        if pages >= budget {
            break;
        }
        pages += task.body.urls.len();
        for parse_task in fetcher.fetch_task(task).await {
            let out = parser.parse_task(parse_task);
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            rows += out.parsed.rows().count();
            queue.extend(out.follow);
        }
    }
    (pages, rows)
}

#[tokio::test]
async fn following_the_pager_fetches_every_list_page_once() {
    let (_, site) = bind_local().await;
    let config = config();
    let fetcher = Fetcher::new(&config.fetcher).unwrap();
    let parser = Parser::new(&config.parser()).unwrap();
    let start = LocalTask::with_urls(
        "example_items",
        "g",
        vec![UrlEntry::get(site.url("/list/1"), "example_list")],
    );
    let (pages, rows) = crawl(&fetcher, &parser, start, 1_000).await;
    assert_eq!(pages, LIST_PAGES as usize);
    assert_eq!(rows, (LIST_PAGES * ITEMS_PER_PAGE) as usize);
    for page in 1..=LIST_PAGES {
        assert_eq!(site.stats.hits(&format!("/list/{page}")), 1, "page {page}");
    }
}

#[tokio::test]
async fn link_bench_crawl_fetches_distinct_pages() {
    let (_, site) = bind_local().await;
    let mut config = config();
    config.fetcher.global_concurrency = 16;
    config.fetcher.per_domain_concurrency = 8;
    config.follow.batch = 20;
    let fetcher = Fetcher::new(&config.fetcher).unwrap();
    let parser = Parser::new(&config.parser()).unwrap();
    let start = LocalTask::with_urls(
        "bench",
        "g",
        vec![UrlEntry::get(site.url("/follow/0"), "bench")],
    );
    let started = Instant::now();
    let (pages, _) = crawl(&fetcher, &parser, start, 300).await;
    let elapsed = started.elapsed();
    assert!(pages >= 300, "{pages}");
    let robots = site.stats.hits("/robots.txt");
    assert_eq!(robots, 1, "robots.txt asked once");
    assert_eq!(
        site.stats.requests() - robots,
        pages as u64,
        "no page fetched twice"
    );
    println!(
        "link bench: {pages} pages in {elapsed:?} ({:.0} pages/s)",
        pages as f64 / elapsed.as_secs_f64()
    );
}
