//! The `[crawl]` section of bus.toml: executors, fetcher, parser rules, dedup filter.
//! Every key and default is documented in bus.toml.fragment.

use serde::Deserialize;
use serde_json::{Map, Value};

pub use super::spider::SpiderConfig;

/// `[crawl]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrawlConfig {
    /// `[[crawl.executors]]`: template executors.
    pub executors: Vec<ExecutorTemplate>,
    /// `[crawl.fetcher]`.
    pub fetcher: FetcherConfig,
    /// `[[crawl.parsers]]`: parser rules, one per platform.
    pub parsers: Vec<ParserRule>,
    /// `[crawl.dedup]`: the filter of followed links.
    pub dedup: DedupConfig,
    /// `[crawl.follow]`: how followed links become fetch tasks.
    pub follow: FollowConfig,
    /// `[[crawl.spiders]]`: crawls given by start URLs, link rules and fields.
    pub spiders: Vec<SpiderConfig>,
}

impl CrawlConfig {
    /// Checks the spiders (names unique, start URLs, fields, regexes).
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for spider in &self.spiders {
            spider.validate()?;
            if !names.insert(spider.name.as_str()) {
                return Err(format!("spider {:?} is defined twice", spider.name));
            }
        }
        Ok(())
    }

    /// The parser's part of the section.
    pub fn parser(&self) -> ParserConfig {
        let spiders = self.spiders.iter().filter_map(|s| s.parser_rule().ok());
        ParserConfig {
            rules: self.parsers.iter().cloned().chain(spiders).collect(),
            dedup: self.dedup.clone(),
            follow: self.follow.clone(),
        }
    }
}

/// `[[crawl.executors]]`: a request template filled from the task body.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorTemplate {
    /// Matched against `body.crawl.name`.
    pub name: String,
    /// Matched against `body.crawl.version`.
    pub version: String,
    /// URL template; `{field}` is replaced by a value of the task body.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// Request headers (values are templates).
    pub headers: Map<String, Value>,
    /// `form` or `json`: how `data` is sent.
    pub body: String,
    /// Request data (string values are templates).
    pub data: Map<String, Value>,
    /// Inclusive page range `[first, last]`; one url per page. Empty: one url.
    pub pages: Vec<i64>,
    /// The url entries' platform (selects the parser rule).
    pub platform: String,
    /// The url entries' topic and the task's callback topic (the parse stage).
    pub topic: String,
    /// The url entries' `sort` (a template).
    pub sort: String,
    /// The url entries' `useproxy`.
    pub useproxy: String,
    /// Refuse to build more urls than this for one task.
    pub max_urls: usize,
}

impl Default for ExecutorTemplate {
    fn default() -> Self {
        ExecutorTemplate {
            name: String::new(),
            version: String::new(),
            url: String::new(),
            method: "GET".to_string(),
            headers: Map::new(),
            body: "form".to_string(),
            data: Map::new(),
            pages: Vec::new(),
            platform: String::new(),
            topic: "parsing".to_string(),
            sort: String::new(),
            useproxy: String::new(),
            max_urls: 10_000,
        }
    }
}

/// `[crawl.fetcher]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetcherConfig {
    /// Requests in flight across all hosts.
    pub global_concurrency: usize,
    /// Requests in flight to one host.
    pub per_domain_concurrency: usize,
    /// Minimum time between the starts of two requests to one host, milliseconds.
    pub per_domain_delay_ms: u64,
    /// Hosts whose limits are remembered; idle hosts beyond this are forgotten.
    pub max_domains: usize,
    /// TCP/TLS connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (headers and body), milliseconds.
    pub request_timeout_ms: u64,
    /// First retry delay, milliseconds; doubles per retry.
    pub backoff_base_ms: u64,
    /// Largest retry delay, milliseconds.
    pub backoff_max_ms: u64,
    /// Largest wait a `Retry-After` header can impose, milliseconds.
    pub retry_after_max_ms: u64,
    /// Upper bound on `content.max_retry`.
    pub max_retry_cap: u32,
    /// Redirects followed per request.
    pub max_redirects: usize,
    /// Bodies larger than this fail the fetch, bytes.
    pub max_body_bytes: usize,
    /// `User-Agent` when the url entry sets none.
    pub user_agent: String,
    /// Proxy URLs (`http://`, `https://`) used round-robin when a url asks for one.
    pub proxies: Vec<String>,
    /// Fetch each origin's robots.txt once and skip the URLs it disallows; its
    /// Crawl-delay spaces the requests to that origin.
    pub obey_robots: bool,
    /// Retries after the first attempt when the task body's `content.max_retry` is 0.
    pub retry_times: u32,
    /// Statuses retried (besides timeouts and connection errors). Others are final.
    pub retry_http_codes: Vec<u16>,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            global_concurrency: 16,
            per_domain_concurrency: 8,
            per_domain_delay_ms: 0,
            max_domains: 10_000,
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            retry_after_max_ms: 60_000,
            max_retry_cap: 10,
            max_redirects: 10,
            max_body_bytes: 16 * 1024 * 1024,
            user_agent: concat!("taskbus/", env!("CARGO_PKG_VERSION")).to_string(),
            proxies: Vec::new(),
            obey_robots: true,
            retry_times: 2,
            retry_http_codes: vec![500, 502, 503, 504, 522, 524, 408, 429],
        }
    }
}

/// `[[crawl.parsers]]`: how to read the pages of one platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParserRule {
    /// Names the rule in errors.
    pub name: String,
    /// The url entries' platform this rule reads.
    pub platform: String,
    /// `html`, `json`, or `auto` (JSON when the body parses as JSON).
    pub kind: String,
    /// Repeated items: a CSS selector (HTML) or a field path (JSON). Empty: the
    /// whole page is one row.
    pub item: String,
    /// A page whose item selector matches nothing is not an error.
    pub allow_empty: bool,
    /// The row's fields.
    pub fields: Vec<FieldRule>,
    /// Links to fetch next.
    pub follow: Vec<FollowRule>,
    /// Links of this rule's pages further than this many hops from the first page
    /// are not followed; 0: `[crawl.follow] max_depth`.
    pub max_depth: u32,
}

impl Default for ParserRule {
    fn default() -> Self {
        ParserRule {
            name: String::new(),
            platform: String::new(),
            kind: "auto".to_string(),
            item: String::new(),
            allow_empty: false,
            fields: Vec::new(),
            follow: Vec::new(),
            max_depth: 0,
        }
    }
}

/// `[[crawl.parsers.fields]]`: one column of the row.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldRule {
    /// Column name (`url` is taken by the page URL).
    pub name: String,
    /// CSS selector inside the item (HTML). Empty: the item element itself.
    pub selector: String,
    /// Field path inside the item (JSON), e.g. `data.items[*].name`. Empty: the item.
    pub path: String,
    /// `text`, `html` (outer), `inner_html`, or `attr`.
    pub content: String,
    /// Attribute to read; setting it implies `content = "attr"`.
    pub attr: String,
    /// Every match as an array instead of the first match.
    pub all: bool,
    /// A row without this field is an error.
    pub required: bool,
    /// Applied in order: `trim`, `lowercase`, `uppercase`, `number`, `integer`,
    /// `absolute_url`, `regex:<pattern>` (first capture group, else the whole match).
    pub transforms: Vec<String>,
}

impl Default for FieldRule {
    fn default() -> Self {
        FieldRule {
            name: String::new(),
            selector: String::new(),
            path: String::new(),
            content: "text".to_string(),
            attr: String::new(),
            all: false,
            required: false,
            transforms: vec!["trim".to_string()],
        }
    }
}

/// `[[crawl.parsers.follow]]`: links that become new fetch work.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FollowRule {
    /// CSS selector of the link elements (HTML).
    pub selector: String,
    /// Field path of URL strings (JSON).
    pub path: String,
    /// Attribute holding the link.
    pub attr: String,
    /// Platform of the new url entries; empty: the rule's platform.
    pub platform: String,
    /// Only absolute URLs matching this regex are followed; empty: all.
    pub allow: String,
    /// Links whose absolute URL matches this regex are not followed; empty: none.
    pub deny: String,
    /// Links whose path ends with `.EXT` for one of these are not followed. Default:
    /// Scrapy's `IGNORED_EXTENSIONS` (images, audio, video, archives, office, ...).
    pub deny_extensions: Option<Vec<String>>,
    /// Host names whose pages (and their subdomains', any port) are followed; empty:
    /// `same_host` decides.
    pub allowed_domains: Vec<String>,
    /// Only links to the page's own host and port are followed (when
    /// `allowed_domains` is empty).
    pub same_host: bool,
}

impl Default for FollowRule {
    fn default() -> Self {
        FollowRule {
            selector: String::new(),
            path: String::new(),
            attr: "href".to_string(),
            platform: String::new(),
            allow: String::new(),
            deny: String::new(),
            deny_extensions: None,
            allowed_domains: Vec::new(),
            same_host: true,
        }
    }
}

/// `[crawl.dedup]`: the bounded, expiring filter of followed links.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Most fingerprints held (8 bytes each plus set overhead).
    pub capacity: usize,
    /// A link is forgotten at most this long after it was first seen, seconds.
    pub ttl_secs: u64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            capacity: 1_000_000,
            ttl_secs: 3_600,
        }
    }
}

/// `[crawl.follow]`: how followed links are packed into fetch tasks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FollowConfig {
    /// Most urls in one follow task.
    pub batch: usize,
    /// Links further than this many hops from the first page are dropped; 0: no limit.
    pub max_depth: u32,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            batch: 100,
            max_depth: 0,
        }
    }
}

/// What [`crate::crawl::Parser::new`] takes.
#[derive(Debug, Clone, Default)]
pub struct ParserConfig {
    /// The rules, one per platform.
    pub rules: Vec<ParserRule>,
    /// The link filter.
    pub dedup: DedupConfig,
    /// Follow task packing.
    pub follow: FollowConfig,
}
