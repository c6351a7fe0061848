//! The seed's `local_task` envelope, passed stage by stage (executor, fetcher, parser,
//! storer). Field names are the seed's, `sucess` included; unknown keys are kept in
//! `extra` maps so that a task written by another client round-trips unchanged.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Keys a stage does not know, kept verbatim so they survive the round trip.
pub type Extra = Map<String, Value>;

/// One task of the crawl pipeline (the seed's `local_task`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalTask {
    /// The task type (e.g. `jm_crawl`); the storer names its table after it.
    #[serde(default)]
    pub topic: String,
    /// The id of the server task this one came from.
    #[serde(default)]
    pub guid: String,
    /// Everything the stages read and fill.
    #[serde(default)]
    pub body: TaskBody,
    /// Keys beside `topic`, `guid` and `body`.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `local_task.body`. Invariant: once a stage has filled them, `urls`, `result` and
/// `parsing_data` have the same length and correspond index by index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskBody {
    /// Which executor builds `urls` (`name`, `version`).
    #[serde(default)]
    pub crawl: CrawlRef,
    /// Requests to make, filled by the executor.
    #[serde(default)]
    pub urls: Vec<UrlItem>,
    /// Absolute time of the task, as the server sent it (`''` in the seed).
    #[serde(default = "empty_string_value")]
    pub abstime: Value,
    /// Settings shared by every url of the task.
    #[serde(default)]
    pub content: Content,
    /// One fetch result per url, filled by the fetcher.
    #[serde(default)]
    pub result: Vec<ResultEntry>,
    /// One entry per result, filled by the parser: a JSON array of row objects.
    #[serde(default)]
    pub parsing_data: Vec<Value>,
    /// Where the next stage's work goes (`{"topic": "parsing"}` in the seed).
    #[serde(default)]
    pub callback: Callback,
    /// Keys the seed does not name (e.g. executor parameters such as `params`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `body.crawl`: the executor that builds the urls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CrawlRef {
    /// Executor name.
    #[serde(default)]
    pub name: String,
    /// Executor version.
    #[serde(default)]
    pub version: String,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `body.content`: the settings shared by a group of urls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// `auto` (use the configured proxy list when it has entries), `none`, or `always`.
    #[serde(default = "default_proxymode")]
    pub proxymode: String,
    /// Charset of the pages; empty or `auto` means detect it.
    #[serde(default)]
    pub encode: String,
    /// The fetcher the sender wanted (`aiohttp` or `requests`); both mean this fetcher.
    #[serde(default = "default_lib")]
    pub lib: String,
    /// Retries after the first attempt, on connection errors, 5xx and 429.
    #[serde(default)]
    pub max_retry: u32,
    /// True: one parse task carries every result; false: one parse task per url.
    #[serde(default)]
    pub bulk: bool,
    /// Cookies sent with every request: `"a=1; b=2"` or `{"a": "1"}`.
    #[serde(default = "empty_string_value")]
    pub cookie: Value,
    /// Log each request at info level.
    #[serde(default)]
    pub debug: bool,
    /// Browser rendering was asked for; not supported, the page is fetched as is.
    #[serde(default)]
    pub usephantomjs: bool,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A `callback` object: `{"topic": ...}` or `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Callback {
    /// The topic the next stage's work goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One element of `body.urls`: the request and the seed's result placeholders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UrlItem {
    /// The request to make.
    pub url: UrlEntry,
    /// Placeholders the executor writes (`[{'url': '', 'time': '', ...}]` in the seed).
    #[serde(default)]
    pub result: Vec<ResultEntry>,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One request, as the executor builds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UrlEntry {
    /// Absolute URL.
    #[serde(default)]
    pub url: String,
    /// `GET` or `POST` (any method reqwest knows).
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers.
    #[serde(default)]
    pub header: Map<String, Value>,
    /// Form fields (object), a JSON body (object, when `content-type` says json), or a
    /// raw body (string). Query parameters for a GET.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// Which parser rules apply to the response.
    #[serde(default)]
    pub platform: String,
    /// The page number the executor filled in.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub page: Value,
    /// The sort order the executor filled in.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub sort: Value,
    /// How many urls the executor made for the task.
    #[serde(default)]
    pub task_count: u64,
    /// `""` (follow `proxymode`), `false`/`no` (direct), `true`/`yes` (from the list),
    /// or a proxy URL.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub useproxy: Value,
    /// Per-url callback (`{}` in the seed).
    #[serde(default)]
    pub callback: Callback,
    /// The server task id.
    #[serde(default)]
    pub guid: String,
    /// The topic of the response's next stage.
    #[serde(default)]
    pub topic: String,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One fetch result. The seed's placeholder has only `url`, `time`, `html`, `retry`
/// and `sucess`; the other fields are written only when set, so it round-trips.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultEntry {
    /// The URL requested.
    #[serde(default)]
    pub url: String,
    /// When the fetch finished, `%Y-%m-%d %H:%M:%S` local time.
    #[serde(default)]
    pub time: String,
    /// The decoded body.
    #[serde(default)]
    pub html: String,
    /// Why the fetch failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The proxy used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Retries made after the first attempt.
    #[serde(default)]
    pub retry: u32,
    /// Response headers (an object of strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    /// Fetch details: final URL, encoding used, elapsed milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<Value>,
    /// True when a 2xx response was read (the seed's spelling).
    #[serde(default)]
    pub sucess: bool,
    /// The url entry's platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// HTTP status of the last response; 0 when none came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for TaskBody {
    fn default() -> Self {
        TaskBody {
            crawl: CrawlRef::default(),
            urls: Vec::new(),
            abstime: empty_string_value(),
            content: Content::default(),
            result: Vec::new(),
            parsing_data: Vec::new(),
            callback: Callback::topic("parsing"),
            extra: Extra::new(),
        }
    }
}

impl Default for Content {
    /// The seed's values, except `encode`, which is empty (detect the charset).
    fn default() -> Self {
        Content {
            proxymode: default_proxymode(),
            encode: String::new(),
            lib: default_lib(),
            max_retry: 0,
            bulk: false,
            cookie: empty_string_value(),
            debug: false,
            usephantomjs: false,
            extra: Extra::new(),
        }
    }
}

impl Callback {
    /// `{"topic": topic}`.
    pub fn topic(topic: &str) -> Self {
        Callback {
            topic: Some(topic.to_string()),
            extra: Extra::new(),
        }
    }
}

impl ResultEntry {
    /// The seed's placeholder: `{'url': '', 'time': '', 'html': '', 'retry': 0, 'sucess': False}`.
    pub fn placeholder() -> Self {
        ResultEntry::default()
    }
}

impl UrlEntry {
    /// A GET of `url` whose response `platform`'s parser rule reads.
    pub fn get(url: impl Into<String>, platform: &str) -> Self {
        UrlEntry {
            url: url.into(),
            method: "GET".to_string(),
            platform: platform.to_string(),
            task_count: 1,
            topic: "parsing".to_string(),
            ..UrlEntry::default()
        }
    }
}

impl UrlItem {
    /// A url item with the seed's single result placeholder.
    pub fn new(url: UrlEntry) -> Self {
        UrlItem {
            url,
            result: vec![ResultEntry::placeholder()],
            extra: Extra::new(),
        }
    }
}

impl LocalTask {
    /// A crawl task of type `topic` holding `entries` (seed defaults elsewhere), as the
    /// executor would have built it.
    pub fn with_urls(topic: &str, guid: &str, entries: Vec<UrlEntry>) -> Self {
        let count = entries.len() as u64;
        let urls = entries
            .into_iter()
            .map(|mut entry| {
                entry.guid = guid.to_string();
                entry.task_count = count;
                UrlItem::new(entry)
            })
            .collect();
        LocalTask {
            topic: topic.to_string(),
            guid: guid.to_string(),
            body: TaskBody {
                urls,
                ..TaskBody::default()
            },
            extra: Extra::new(),
        }
    }

    /// Every parsed row: the objects in `parsing_data`, whether an entry is one row
    /// or (as the parser writes it) an array of the rows of one result.
    pub fn rows(&self) -> impl Iterator<Item = &Map<String, Value>> {
        self.body.parsing_data.iter().flat_map(|entry| match entry {
            Value::Array(rows) => rows.iter().filter_map(Value::as_object).collect(),
            Value::Object(row) => vec![row],
            _ => Vec::new(),
        })
    }

    /// The topic the next stage's work goes to (`body.callback.topic`).
    pub fn callback_topic(&self) -> Option<&str> {
        self.body.callback.topic.as_deref()
    }

    /// This task with only `urls[index]` (and the matching `result`/`parsing_data`
    /// entries when present), keeping every other field.
    pub fn single(&self, index: usize) -> LocalTask {
        let mut task = self.clone();
        task.body.urls = pick(&self.body.urls, index);
        task.body.result = pick(&self.body.result, index);
        task.body.parsing_data = pick(&self.body.parsing_data, index);
        task
    }
}

fn pick<T: Clone>(list: &[T], index: usize) -> Vec<T> {
    list.get(index).cloned().into_iter().collect()
}

fn empty_string_value() -> Value {
    Value::String(String::new())
}

fn default_proxymode() -> String {
    "auto".to_string()
}

fn default_lib() -> String {
    "aiohttp".to_string()
}

fn default_method() -> String {
    "GET".to_string()
}
