//! The crawl modules' shared fixtures: the crawl test configuration (one set of
//! executor templates and parser rules for every crawl test) and fetcher helpers.

use taskbus::crawl::{
    Content, CrawlConfig, Fetcher, FetcherConfig, LocalTask, ResultEntry, UrlEntry,
};

/// The `[crawl]` section of the tests: executors for the example site's list pages and
/// search API (and two that only the executor tests build), parser rules for every
/// platform the tests fetch (including broken ones whose errors the parser tests
/// read). Fetcher, dedup and follow keep their defaults.
const CRAWL: &str = r#"
[[executors]]
name = "example_list"
version = "1"
url = "{base}/list/{page}"
pages = [1, 1]
platform = "example_list"

[[executors]]
name = "jd_search"
version = "1"
url = "{base}/ware/searchList.action"
method = "POST"
pages = [1, 3]
platform = "jd_app"
sort = "{sort}"
headers = { referer = "{base}/products/{categoryId}-{c1}-{c2}.html", Accept = "application/json", x-requested-with = "XMLHttpRequest" }
data = { categoryId = "{categoryId}", c1 = "{c1}", c2 = "{c2}", page = "{page}", sort = "{sort}", stock = 0, _format_ = "json" }

[[executors]]
name = "jd_search"
version = "2-json"
url = "{base}/api/search"
method = "POST"
body = "json"
platform = "jd_app"
topic = "parsing_json"
data = { categoryId = "{params.categoryId}", c1 = "x", c2 = "y", page = 1, sort = "", stock = 0, _format_ = "json" }

[[executors]]
name = "list"
version = "1"
url = "{base}/list/{page}?guid={guid}&topic={topic}"
pages = [2, 4]
platform = "example_list"

[[parsers]]
name = "jd_search_json"
platform = "jd_app"
kind = "json"
item = "data.items[*]"
[[parsers.fields]]
name = "ware_id"
path = "wareId"
required = true
transforms = ["integer"]
[[parsers.fields]]
name = "name"
path = "wname"
[[parsers.fields]]
name = "price"
path = "jdPrice"
transforms = ["number"]

[[parsers]]
name = "example_list"
platform = "example_list"
kind = "html"
item = "li.item"
[[parsers.fields]]
name = "title"
selector = "a.title"
required = true
[[parsers.fields]]
name = "link"
selector = "a.title"
attr = "href"
transforms = ["absolute_url"]
[[parsers.fields]]
name = "price"
selector = ".price"
transforms = ["number"]
[[parsers.fields]]
name = "id"
attr = "data-id"
transforms = ["integer"]
[[parsers.follow]]
selector = ".pager a"
allow = "/list/\\d+$"

[[parsers]]
name = "item_rule"
platform = "example_item"
kind = "html"
[[parsers.fields]]
name = "title"
selector = "h1.title"
[[parsers.fields]]
name = "desc"
selector = ".desc"
content = "inner_html"
[[parsers.fields]]
name = "bold"
selector = ".desc b"
transforms = ["regex:(\\d+)", "integer"]

[[parsers]]
name = "dupes_rule"
platform = "dupes"
allow_empty = true
[[parsers.follow]]
selector = "a.x"
platform = "example_item"

[[parsers]]
name = "bench"
platform = "bench"
[[parsers.follow]]
selector = "a"

[[parsers]]
name = "strict_json"
platform = "wants_json"
kind = "json"
item = "data.items[*]"
[[parsers.fields]]
name = "name"
path = "wname"

[[parsers]]
name = "missing_items"
platform = "no_items"
kind = "html"
item = "div.does-not-exist"
[[parsers.fields]]
name = "x"
selector = "span"

[[parsers]]
name = "needs_sku"
platform = "needs_sku"
kind = "html"
item = "li.item"
[[parsers.fields]]
name = "sku"
selector = ".sku"
required = true
"#;

/// The crawl test configuration, changed by `edit` for one test.
pub fn crawl_config(edit: impl FnOnce(&mut CrawlConfig)) -> CrawlConfig {
    let mut config: CrawlConfig =
        toml::from_str(CRAWL).expect("the crawl test configuration parses");
    edit(&mut config);
    config
}

/// A fetcher whose retries back off in milliseconds.
pub fn fast_config() -> FetcherConfig {
    FetcherConfig {
        backoff_base_ms: 40,
        backoff_max_ms: 400,
        retry_times: 0,
        ..FetcherConfig::default()
    }
}

/// A task's `content` with this charset and retry limit.
pub fn content(encode: &str, max_retry: u32) -> Content {
    Content {
        encode: encode.to_string(),
        max_retry,
        ..Content::default()
    }
}

/// Fetches one url entry.
pub async fn fetch(fetcher: &Fetcher, entry: UrlEntry, content: &Content) -> ResultEntry {
    fetcher.fetch_url(&entry, content).await
}

/// Fetches `urls` as one task of type `crawl_test`.
pub async fn fetch_all(fetcher: &Fetcher, urls: Vec<String>, content: Content) -> Vec<LocalTask> {
    let entries = urls.into_iter().map(|u| UrlEntry::get(u, "test")).collect();
    let mut task = LocalTask::with_urls("crawl_test", "guid-1", entries);
    task.body.content = content;
    fetcher.fetch_task(task).await
}
