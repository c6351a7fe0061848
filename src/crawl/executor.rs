//! The executor stage: a server task becomes a crawl task whose `body.urls` lists the
//! requests to make. Executors are looked up by `body.crawl` name and version; the
//! built-in one fills a bus.toml request template from the task body.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use super::config::ExecutorTemplate;
use super::envelope::{Callback, LocalTask, UrlEntry, UrlItem};
use super::error::CrawlError;

/// Builds the requests of a task. Custom executors implement this and are registered
/// beside the templates.
pub trait Executor: Send + Sync {
    /// Matched against `body.crawl.name`.
    fn name(&self) -> &str;
    /// Matched against `body.crawl.version`.
    fn version(&self) -> &str;
    /// The url entries for `task`, in order.
    fn build(&self, task: &LocalTask) -> Result<Vec<UrlEntry>, CrawlError>;
}

/// Executors by (name, version).
#[derive(Default, Clone)]
pub struct ExecutorRegistry {
    executors: HashMap<(String, String), Arc<dyn Executor>>,
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding one [`TemplateExecutor`] per `[[crawl.executors]]` entry.
    pub fn from_config(templates: &[ExecutorTemplate]) -> Result<Self, CrawlError> {
        let mut registry = Self::new();
        for template in templates {
            registry.register(Arc::new(TemplateExecutor::new(template.clone())?))?;
        }
        Ok(registry)
    }

    /// Adds `executor`; a second one with the same name and version is refused.
    pub fn register(&mut self, executor: Arc<dyn Executor>) -> Result<(), CrawlError> {
        let key = (executor.name().to_string(), executor.version().to_string());
        if self.executors.contains_key(&key) {
            return Err(CrawlError::DuplicateExecutor {
                name: key.0,
                version: key.1,
            });
        }
        self.executors.insert(key, executor);
        Ok(())
    }

    /// The executor registered under `name` and `version`.
    pub fn get(&self, name: &str, version: &str) -> Option<&Arc<dyn Executor>> {
        self.executors.get(&(name.to_string(), version.to_string()))
    }

    /// How many executors are registered.
    pub fn len(&self) -> usize {
        self.executors.len()
    }

    /// True when no executor is registered.
    pub fn is_empty(&self) -> bool {
        self.executors.is_empty()
    }
}

/// Runs the task's executor: fills `body.urls` (each with the seed's result
/// placeholder, `task_count` set to the number of urls, `guid` to the task's when
/// empty), empties `result` and `parsing_data`, and points `body.callback` at
/// the url entries' topic.
pub fn execute(registry: &ExecutorRegistry, mut task: LocalTask) -> Result<LocalTask, CrawlError> {
    let crawl = &task.body.crawl;
    let executor =
        registry
            .get(&crawl.name, &crawl.version)
            .ok_or_else(|| CrawlError::UnknownExecutor {
                name: crawl.name.clone(),
                version: crawl.version.clone(),
            })?;
    let mut entries = executor.build(&task)?;
    let count = entries.len() as u64;
    for entry in &mut entries {
        if entry.guid.is_empty() {
            entry.guid = task.guid.clone();
        }
        entry.task_count = count;
        if entry.topic.is_empty() {
            entry.topic = "parsing".to_string();
        }
    }
    if let Some(first) = entries.first() {
        task.body.callback = Callback::topic(&first.topic);
    }
    log::debug!(
        "guid={} topic={} urls={} built",
        task.guid,
        task.topic,
        count
    );
    task.body.urls = entries.into_iter().map(UrlItem::new).collect();
    task.body.result.clear();
    task.body.parsing_data.clear();
    Ok(task)
}

/// The built-in executor: one `[[crawl.executors]]` template, one url per page.
pub struct TemplateExecutor {
    template: ExecutorTemplate,
}

impl TemplateExecutor {
    /// Checks the template once (method, body kind, page range).
    pub fn new(template: ExecutorTemplate) -> Result<Self, CrawlError> {
        let label = format!("{}@{}", template.name, template.version);
        let fail = |reason: String| CrawlError::Config(format!("executor {label}: {reason}"));
        if template.name.is_empty() {
            return Err(fail("name is empty".into()));
        }
        if template.url.is_empty() {
            return Err(fail("url is empty".into()));
        }
        if reqwest::Method::from_bytes(template.method.as_bytes()).is_err() {
            return Err(fail(format!("bad method {:?}", template.method)));
        }
        if template.body != "form" && template.body != "json" {
            return Err(fail(format!(
                "body must be form or json, not {:?}",
                template.body
            )));
        }
        if !template.pages.is_empty() && template.pages.len() != 2 {
            return Err(fail("pages must be [first, last]".into()));
        }
        Ok(TemplateExecutor { template })
    }

    fn error(&self, reason: String) -> CrawlError {
        CrawlError::Template {
            executor: format!("{}@{}", self.template.name, self.template.version),
            reason,
        }
    }

    /// The pages to build: the body's `pages = [first, last]` if given, else the
    /// template's; `[None]` when neither sets a range.
    fn pages(&self, body: &Value) -> Result<Vec<Option<i64>>, CrawlError> {
        let range: Vec<i64> = match body.get("pages") {
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| self.error(format!("body pages: {e}")))?,
            None => self.template.pages.clone(),
        };
        match range.as_slice() {
            [] => Ok(vec![None]),
            [first, last] if last >= first => {
                let count = (last - first + 1) as u64;
                if count > self.template.max_urls as u64 {
                    return Err(self.error(format!(
                        "{count} pages exceed max_urls {}",
                        self.template.max_urls
                    )));
                }
                Ok((*first..=*last).map(Some).collect())
            }
            _ => Err(self.error(format!("bad page range {range:?}"))),
        }
    }

    fn entry(&self, context: &Context<'_>) -> Result<UrlEntry, CrawlError> {
        let template = &self.template;
        let fill = |value: &Value| context.fill(value).map_err(|e| self.error(e));
        let url = render(&fill(&Value::String(template.url.clone()))?);
        let mut header = Map::new();
        for (name, value) in &template.headers {
            header.insert(
                name.to_ascii_lowercase(),
                Value::String(render(&fill(value)?)),
            );
        }
        if template.body == "json" && !header.contains_key("content-type") {
            header.insert("content-type".into(), "application/json".into());
        }
        let mut data = Map::new();
        for (name, value) in &template.data {
            data.insert(name.clone(), fill(value)?);
        }
        Ok(UrlEntry {
            url,
            method: template.method.to_ascii_uppercase(),
            header,
            data: Value::Object(data),
            platform: template.platform.clone(),
            page: context.page.map(Value::from).unwrap_or(Value::Null),
            sort: fill(&Value::String(template.sort.clone()))?,
            useproxy: Value::String(template.useproxy.clone()),
            guid: context.guid.to_string(),
            topic: template.topic.clone(),
            ..UrlEntry::default()
        })
    }
}

impl Executor for TemplateExecutor {
    fn name(&self) -> &str {
        &self.template.name
    }

    fn version(&self) -> &str {
        &self.template.version
    }

    fn build(&self, task: &LocalTask) -> Result<Vec<UrlEntry>, CrawlError> {
        let body = serde_json::to_value(&task.body).map_err(|e| self.error(e.to_string()))?;
        let pages = self.pages(&body)?;
        let total = pages.len() as u64;
        let mut entries = Vec::with_capacity(pages.len());
        for page in pages {
            let context = Context {
                body: &body,
                guid: &task.guid,
                topic: &task.topic,
                page,
            };
            let mut entry = self.entry(&context)?;
            entry.task_count = total;
            entries.push(entry);
        }
        Ok(entries)
    }
}

/// Where `{field}` values come from: `page`, `guid`, `topic`, then a dotted path in
/// the task body, then the same path under `body.params`.
struct Context<'a> {
    body: &'a Value,
    guid: &'a str,
    topic: &'a str,
    page: Option<i64>,
}

impl Context<'_> {
    fn lookup(&self, path: &str) -> Option<Value> {
        match path {
            "page" => {
                if let Some(page) = self.page {
                    return Some(Value::from(page));
                }
            }
            "guid" => return Some(Value::from(self.guid)),
            "topic" => return Some(Value::from(self.topic)),
            _ => {}
        }
        walk(self.body, path)
            .or_else(|| self.body.get("params").and_then(|p| walk(p, path)))
            .cloned()
    }

    /// A string that is exactly one placeholder takes the value with its JSON type
    /// (so `"{page}"` gives the number 15); other strings are interpolated.
    fn fill(&self, value: &Value) -> Result<Value, String> {
        match value {
            Value::String(text) => self.fill_str(text),
            Value::Array(items) => items
                .iter()
                .map(|v| self.fill(v))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, item) in map {
                    out.insert(key.clone(), self.fill(item)?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn fill_str(&self, text: &str) -> Result<Value, String> {
        let pattern = placeholder();
        if let Some(caps) = pattern.captures(text) {
            if caps.get(0).map(|m| m.as_str().len()) == Some(text.len()) {
                return self.lookup(&caps[1]).ok_or_else(|| missing(&caps[1]));
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for caps in pattern.captures_iter(text) {
            let whole = caps.get(0).expect("group 0 always matches");
            let value = self.lookup(&caps[1]).ok_or_else(|| missing(&caps[1]))?;
            out.push_str(&text[last..whole.start()]);
            out.push_str(&render(&value));
            last = whole.end();
        }
        out.push_str(&text[last..]);
        Ok(Value::String(out))
    }
}

fn missing(path: &str) -> String {
    format!("task body has no field {path:?}")
}

fn placeholder() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}").expect("valid regex")
    })
}

fn walk<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(root, |value, key| match value {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A value as it appears inside a URL or header: strings bare, null empty, the rest
/// as JSON text.
fn render(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
