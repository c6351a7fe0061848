//! The parser on pages fetched from the example site: rows from HTML list pages and
//! JSON bodies, link following with a bounded dedup filter, and errors that name the
//! rule for pages the rules cannot read.

use serde_json::{json, Map, Value};
use taskbus::crawl::site::{bind_local, LocalSite};
use taskbus::crawl::site_data::{self, LIST_PAGES};
use taskbus::crawl::{Content, CrawlConfig, Fetcher, FetcherConfig, LocalTask, Parser, UrlEntry};

use super::support::crawl_config;

/// The parser of the crawl test configuration, changed by `edit`.
fn parser(edit: impl FnOnce(&mut CrawlConfig)) -> Parser {
    Parser::new(&crawl_config(edit).parser()).expect("rules compile")
}

/// Fetches `paths` from the site as one bulk task whose urls have `platform`.
async fn fetched(site: &LocalSite, paths: &[&str], platform: &str) -> LocalTask {
    let fetcher = Fetcher::new(&FetcherConfig::default()).unwrap();
    let entries = paths
        .iter()
        .map(|p| UrlEntry::get(site.url(p), platform))
        .collect();
    let mut task = LocalTask::with_urls("crawl_test", "guid-9", entries);
    task.body.content = Content {
        bulk: true,
        ..Content::default()
    };
    let mut tasks = fetcher.fetch_task(task).await;
    assert_eq!(tasks.len(), 1);
    tasks.pop().unwrap()
}

fn expected_list_rows(site: &LocalSite, page: u32) -> Vec<Value> {
    site_data::list_items(page)
        .into_iter()
        .map(|item| {
            json!({
                "url": site.url(&format!("/list/{page}")),
                "final_url": site.url(&format!("/list/{page}")),
                "title": item.title,
                "link": site.url(&format!("/item/{}", item.id)),
                "price": item.price(),
                "id": item.id,
            })
        })
        .collect()
}

fn follow_urls(tasks: &[LocalTask]) -> Vec<String> {
    let mut urls: Vec<String> = tasks
        .iter()
        .flat_map(|t| t.body.urls.iter().map(|u| u.url.url.clone()))
        .collect();
    urls.sort();
    urls
}

#[tokio::test]
async fn html_list_pages_give_the_sites_items() {
    let (_, site) = bind_local().await;
    let task = fetched(&site, &["/list/1", "/list/2"], "example_list").await;
    let out = parser(|_| {}).parse_task(task);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let data = &out.parsed.body.parsing_data;
    assert_eq!(data.len(), 2, "one entry per result");
    assert_eq!(data[0], Value::Array(expected_list_rows(&site, 1)));
    assert_eq!(data[1], Value::Array(expected_list_rows(&site, 2)));
    assert_eq!(
        out.parsed.rows().count(),
        2 * site_data::ITEMS_PER_PAGE as usize
    );
}

#[tokio::test]
async fn detail_page_whole_page_row_with_inner_html_and_regex() {
    let (_, site) = bind_local().await;
    let task = fetched(&site, &["/item/7"], "example_item").await;
    let out = parser(|_| {}).parse_task(task);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let row = out.parsed.rows().next().unwrap().clone();
    assert_eq!(row["title"], json!(site_data::SiteItem::new(7).title));
    assert_eq!(row["desc"], json!("<p>Item <b>7</b> description.</p>"));
    assert_eq!(row["bold"], json!(7));
}

#[tokio::test]
async fn pager_links_are_followed_once_across_pages_and_tasks() {
    let (_, site) = bind_local().await;
    let parser = parser(|_| {});
    let first = parser.parse_task(fetched(&site, &["/list/1", "/list/2"], "example_list").await);
    let expected: Vec<String> = (3..=LIST_PAGES)
        .map(|n| site.url(&format!("/list/{n}")))
        .collect();
    assert_eq!(
        follow_urls(&first.follow),
        expected,
        "both pages link every page; each unparsed one is followed once"
    );
    let entry = &first.follow[0].body.urls[0].url;
    assert_eq!(
        (entry.method.as_str(), entry.platform.as_str()),
        ("GET", "example_list")
    );
    assert_eq!(entry.extra["depth"], json!(1));
    assert_eq!(
        (
            first.follow[0].topic.as_str(),
            first.follow[0].guid.as_str()
        ),
        ("crawl_test", "guid-9")
    );
    assert!(
        first.follow[0].body.content.bulk,
        "follow work keeps the task's content"
    );

    let again = parser.parse_task(fetched(&site, &["/list/3"], "example_list").await);
    assert!(
        again.follow.is_empty(),
        "already seen: {:?}",
        follow_urls(&again.follow)
    );
}

#[tokio::test]
async fn same_link_twice_on_a_page_is_one_follow_and_off_site_is_dropped() {
    let (_, site) = bind_local().await;
    let out = parser(|_| {}).parse_task(fetched(&site, &["/dupes"], "dupes").await);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        follow_urls(&out.follow),
        [site.url("/item/1"), site.url("/list/2")]
    );
    assert!(out.follow[0]
        .body
        .urls
        .iter()
        .all(|u| u.url.platform == "example_item"));
}

#[tokio::test]
async fn dedup_filter_stays_bounded_and_batches_are_capped() {
    let (_, site) = bind_local().await;
    let parser = parser(|c| {
        c.dedup.capacity = 30;
        c.dedup.ttl_secs = 600;
        c.follow.batch = 7;
    });
    let paths: Vec<String> = (0..6).map(|n| format!("/follow/{n}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let out = parser.parse_task(fetched(&site, &refs, "bench").await);
    let urls = follow_urls(&out.follow);
    assert_eq!(urls.len(), 6 * 20, "every link on the bench pages is new");
    assert!(out.follow.iter().all(|t| t.body.urls.len() <= 7));
    assert!(
        parser.dedup_len() <= 30,
        "filter holds {}",
        parser.dedup_len()
    );
}

#[tokio::test]
async fn depth_limit_drops_links_too_far_from_the_start() {
    let (_, site) = bind_local().await;
    let parser = parser(|c| c.follow.max_depth = 1);
    let first = parser.parse_task(fetched(&site, &["/follow/0?show=3"], "bench").await);
    assert_eq!(follow_urls(&first.follow).len(), 3);
    let mut second = fetched(&site, &["/follow/1?show=3"], "bench").await;
    second.body.urls[0]
        .url
        .extra
        .insert("depth".into(), json!(1));
    assert!(parser.parse_task(second).follow.is_empty());
}

fn error_for<'a>(errors: &'a [String], needle: &str) -> &'a str {
    errors
        .iter()
        .find(|e| e.contains(needle))
        .unwrap_or_else(|| panic!("no error mentioning {needle:?} in {errors:?}"))
}

#[tokio::test]
async fn unreadable_pages_give_errors_naming_the_rule() {
    let (_, site) = bind_local().await;
    let parser = parser(|_| {});
    let mut task = fetched(
        &site,
        &[
            "/notjson", "/list/1", "/list/1", "/list/1", "/fail/q", "/item/1",
        ],
        "wants_json",
    )
    .await;
    let platforms = [
        "wants_json",
        "no_items",
        "needs_sku",
        "example_list",
        "example_list",
        "nobody_reads_this",
    ];
    for (item, platform) in task.body.urls.iter_mut().zip(platforms) {
        item.url.platform = platform.to_string();
    }
    for (result, platform) in task.body.result.iter_mut().zip(platforms) {
        result.platform = Some(platform.to_string());
    }
    let out = parser.parse_task(task);
    assert!(error_for(&out.errors, "strict_json").contains("not json"));
    assert!(error_for(&out.errors, "missing_items").contains("div.does-not-exist"));
    assert!(error_for(&out.errors, "needs_sku").contains("sku"));
    assert!(error_for(&out.errors, "/fail/q").contains("http status 500"));
    assert!(error_for(&out.errors, "nobody_reads_this").contains("no parser rule"));
    let data = &out.parsed.body.parsing_data;
    assert_eq!(data.len(), 6, "parsing_data stays one to one with result");
    let counts: Vec<usize> = data.iter().map(|d| d.as_array().unwrap().len()).collect();
    assert_eq!(counts, [0, 0, 0, site_data::ITEMS_PER_PAGE as usize, 0, 0]);
}

#[test]
fn bad_rules_are_config_errors_naming_the_rule() {
    let cases = [
        ("[[parsers]]\nname = \"r1\"\nplatform = \"p\"\nkind = \"html\"\nitem = \"li[\"", "r1"),
        ("[[parsers]]\nname = \"r2\"\nplatform = \"p\"\n[[parsers.fields]]\nname = \"a\"\nselector = \"b\"\ntransforms = [\"explode\"]", "explode"),
        ("[[parsers]]\nname = \"r3\"\nplatform = \"p\"\n[[parsers.fields]]\nname = \"url\"\nselector = \"b\"", "url"),
        ("[[parsers]]\nname = \"r4\"\nplatform = \"p\"\n[[parsers]]\nname = \"r5\"\nplatform = \"p\"", "r5"),
    ];
    for (toml_text, needle) in cases {
        let config: CrawlConfig = toml::from_str(toml_text).unwrap();
        let error = Parser::new(&config.parser())
            .err()
            .expect("rule refused")
            .to_string();
        assert!(error.contains(needle), "{error}");
    }
    let unknown =
        toml::from_str::<CrawlConfig>("[[parsers]]\nname = \"r\"\nselectr = \"x\"").unwrap_err();
    assert!(unknown.to_string().contains("selectr"), "{unknown}");
}

#[test]
fn json_rows_from_field_paths() {
    let parser = parser(|_| {});
    let items = site_data::search_items("9987-830-866", 1, "price_desc");
    let body = json!({"code": 0, "data": {"items": items}});
    let mut task = LocalTask::with_urls(
        "t",
        "g",
        vec![UrlEntry::get("http://api.test/s", "wants_json")],
    );
    task.body.result = vec![taskbus::crawl::ResultEntry {
        url: "http://api.test/s".into(),
        html: body.to_string(),
        sucess: true,
        platform: Some("wants_json".into()),
        ..Default::default()
    }];
    let out = parser.parse_task(task);
    let names: Vec<Value> = out.parsed.rows().map(|r| r["name"].clone()).collect();
    let expected: Vec<Value> = items.iter().map(|i| i["wname"].clone()).collect();
    assert_eq!(names, expected);
    assert!(out
        .parsed
        .rows()
        .all(|r: &Map<String, Value>| r["url"] == json!("http://api.test/s")));
}
