//! The crawl stages on the bus: executor, fetcher and parser as worker stages, and
//! the conventions every crawl stage (the storer included) shares.
//!
//! A task on the wire is the seed's `local_task`: its `topic` is the queue it is in,
//! its `guid` the broker's, its `body` the envelope body. Because the queue changes at
//! every stage, two body fields carry what must survive the trip (docs/CRAWL.md):
//!
//! - `body.task_type`: the task type (the server task's topic, unless the server task
//!   set it); the storer's table is named after it. Inside a stage it is
//!   [`LocalTask::topic`], as the crawl library expects.
//! - `body.fetch_topic`: the fetcher's topic, where the parser sends follow tasks.
//!
//! **Invariant:** every envelope a crawl stage returns names its destination in
//! `body.callback.topic`, the broker's first routing rule, so routing never depends
//! on which worker ran the stage.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use super::config::CrawlConfig;
use super::envelope::ResultEntry;
use super::envelope::{Callback, LocalTask};
use super::fetcher::{skip_reason, SKIPPED_ROBOTS};
use super::{execute, ExecutorRegistry, Fetcher, Parser};
use crate::body::Body;
use crate::task::{root_guid, NewTask, Task};
use crate::worker::config::WorkerSpec;
use crate::worker::{Stage, StageError};

/// Body field carrying the task type across queues.
pub const TASK_TYPE_KEY: &str = "task_type";
/// Body field naming the fetcher's topic (where follow tasks go).
pub const FETCH_TOPIC_KEY: &str = "fetch_topic";
/// Default topic of the fetcher (the executor's output).
pub const FETCH_TOPIC: &str = "crawl";
/// Default topic of the parser (the fetcher's output), the seed's `parsing`.
pub const PARSE_TOPIC: &str = "parsing";
/// Default topic of the storer (the parser's output).
pub const STORE_TOPIC: &str = "store";

/// The four crawl stages, indexing [`CrawlMetrics::busy_ns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    Executor = 0,
    Fetcher = 1,
    Parser = 2,
    Storer = 3,
}

/// Counters shared by the crawl stages of one process (`taskbus run` and the bench
/// read them; each [`build`] without a caller's metrics gets its own).
#[derive(Debug, Default)]
pub struct CrawlMetrics {
    /// Pages fetched (a response read, whatever its status).
    pub pages: AtomicU64,
    /// Pages whose fetch failed (after the fetcher's retries).
    pub pages_failed: AtomicU64,
    /// Rows the parser read.
    pub rows_parsed: AtomicU64,
    /// Links the parser sent back to the fetcher.
    pub links_followed: AtomicU64,
    /// Pages the parser could not read.
    pub parse_errors: AtomicU64,
    /// Rows the storer wrote (inserted or updated).
    pub rows_stored: AtomicU64,
    /// Rows the database refused.
    pub rows_refused: AtomicU64,
    /// Store calls that failed as a whole (database down, bad table).
    pub store_errors: AtomicU64,
    /// Urls not requested because robots.txt disallows them.
    pub skipped_robots: AtomicU64,
    /// Pages not parsed because of their content type (an image for an html rule).
    pub skipped_content_type: AtomicU64,
    /// Links not followed because their host is outside `allowed_domains`.
    pub skipped_offsite: AtomicU64,
    /// Retries the fetcher made.
    pub retried: AtomicU64,
    /// Final responses with an error status, by status.
    pub http_errors: Mutex<BTreeMap<u16, u64>>,
    /// Nanoseconds spent inside each stage's task futures (polls only, so waiting on
    /// the network or the database is not counted), by [`StageKind`].
    pub busy_ns: [AtomicU64; 4],
}

/// A copy of [`CrawlMetrics`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    pub pages: u64,
    pub pages_failed: u64,
    pub rows_parsed: u64,
    pub links_followed: u64,
    pub parse_errors: u64,
    pub rows_stored: u64,
    pub rows_refused: u64,
    pub store_errors: u64,
    pub skipped_robots: u64,
    pub skipped_content_type: u64,
    pub skipped_offsite: u64,
    pub retried: u64,
    /// Final responses with an error status, by status.
    pub http_errors: BTreeMap<u16, u64>,
    /// Seconds inside executor, fetcher, parser and storer futures.
    pub busy_secs: [f64; 4],
}

impl CrawlMetrics {
    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            pages: get(&self.pages),
            pages_failed: get(&self.pages_failed),
            rows_parsed: get(&self.rows_parsed),
            links_followed: get(&self.links_followed),
            parse_errors: get(&self.parse_errors),
            rows_stored: get(&self.rows_stored),
            rows_refused: get(&self.rows_refused),
            store_errors: get(&self.store_errors),
            skipped_robots: get(&self.skipped_robots),
            skipped_content_type: get(&self.skipped_content_type),
            skipped_offsite: get(&self.skipped_offsite),
            retried: get(&self.retried),
            http_errors: self.http_errors.lock().expect("metrics lock").clone(),
            busy_secs: std::array::from_fn(|i| get(&self.busy_ns[i]) as f64 / 1e9),
        }
    }

    /// Counts one fetch task's results; returns the failed ones that were requested
    /// (not skipped).
    fn count_fetches<'a>(&self, results: &[&'a ResultEntry]) -> Vec<&'a ResultEntry> {
        let mut failed = Vec::new();
        for result in results {
            CrawlMetrics::add(&self.retried, u64::from(result.retry));
            match skip_reason(result) {
                Some(SKIPPED_ROBOTS) => CrawlMetrics::add(&self.skipped_robots, 1),
                Some(_) => {}
                None if result.sucess => CrawlMetrics::add(&self.pages, 1),
                None => {
                    CrawlMetrics::add(&self.pages, 1);
                    CrawlMetrics::add(&self.pages_failed, 1);
                    if let Some(status) = result.status.filter(|s| *s > 0) {
                        let mut errors = self.http_errors.lock().expect("metrics lock");
                        *errors.entry(status).or_default() += 1;
                    }
                    failed.push(*result);
                }
            }
        }
        failed
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Wraps a stage's task future so its poll time counts as `kind`'s busy time.
    pub fn timed<T: Send + 'static>(
        self: &Arc<Self>,
        kind: StageKind,
        inner: BoxFuture<'static, T>,
    ) -> BoxFuture<'static, T> {
        Box::pin(Timed {
            inner,
            metrics: Arc::clone(self),
            kind,
        })
    }
}

/// A future whose time inside `poll` is added to a stage's busy time.
struct Timed<T> {
    inner: BoxFuture<'static, T>,
    metrics: Arc<CrawlMetrics>,
    kind: StageKind,
}

impl<T> Future for Timed<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let started = Instant::now();
        let poll = self.inner.as_mut().poll(cx);
        let spent = started.elapsed().as_nanos() as u64;
        self.metrics.busy_ns[self.kind as usize].fetch_add(spent, Ordering::Relaxed);
        poll
    }
}

/// Builds the `executor`, `fetcher` or `parser` stage with counters of its own.
pub async fn build(spec: &WorkerSpec, crawl: &CrawlConfig) -> anyhow::Result<Arc<dyn Stage>> {
    build_with(spec, crawl, Arc::new(CrawlMetrics::default())).await
}

/// Builds the `executor`, `fetcher` or `parser` stage, counting into `metrics`.
pub async fn build_with(
    spec: &WorkerSpec,
    crawl: &CrawlConfig,
    metrics: Arc<CrawlMetrics>,
) -> anyhow::Result<Arc<dyn Stage>> {
    Ok(match spec.stage.as_str() {
        "executor" => Arc::new(ExecutorStage {
            registry: Arc::new(ExecutorRegistry::from_config(&crawl.executors)?),
            fetch_topic: topic_or(&spec.next_topic, FETCH_TOPIC),
            metrics,
        }),
        "fetcher" => Arc::new(FetcherStage {
            fetcher: Arc::new(Fetcher::new(&crawl.fetcher)?),
            next_topic: spec.next_topic.clone().filter(|t| !t.is_empty()),
            metrics,
        }),
        "parser" => Arc::new(ParserStage {
            parser: Arc::new(Parser::new(&crawl.parser())?),
            store_topic: topic_or(&spec.next_topic, STORE_TOPIC),
            metrics,
        }),
        other => anyhow::bail!("\"{other}\" is not a crawl stage"),
    })
}

fn topic_or(topic: &Option<String>, default: &str) -> String {
    topic
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or(default)
        .to_string()
}

/// Reads a wire task as the crawl library's [`LocalTask`]: `topic` is the task type
/// (`body.task_type`, else the queue the task is in), `guid` the server task's (the
/// root of the wire guid). A body that is not an envelope is a permanent failure.
pub fn local_task(task: &mut Task) -> Result<LocalTask, StageError> {
    let body = task.body.decode().map_err(|e| {
        StageError::permanent(format!(
            "guid={} body is not a local_task body: {e}",
            task.guid
        ))
    })?;
    let mut local = LocalTask {
        topic: task.topic.clone(),
        guid: root_guid(&task.guid).to_string(),
        body,
        extra: Default::default(),
    };
    if let Some(Value::String(task_type)) = local.body.extra.get(TASK_TYPE_KEY) {
        if !task_type.is_empty() {
            local.topic = task_type.clone();
        }
    }
    Ok(local)
}

/// The body field `key` of a local task, when it is a non-empty string.
pub fn body_str<'a>(local: &'a LocalTask, key: &str) -> Option<&'a str> {
    local
        .body
        .extra
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The envelope that sends `local` to `destination`: `body.callback.topic` names it,
/// `body.task_type` keeps the task type, `body.fetch_topic` the fetcher's topic.
pub fn envelope(mut local: LocalTask, destination: &str, fetch_topic: &str) -> NewTask {
    local.body.callback = Callback {
        topic: Some(destination.to_string()),
        extra: std::mem::take(&mut local.body.callback.extra),
    };
    let extra = &mut local.body.extra;
    extra.insert(TASK_TYPE_KEY.into(), Value::String(local.topic.clone()));
    extra.insert(
        FETCH_TOPIC_KEY.into(),
        Value::String(fetch_topic.to_string()),
    );
    let body = Body::encode(&local.body).expect("a local_task body encodes");
    NewTask {
        topic: Some(destination.to_string()),
        body,
        ..NewTask::default()
    }
}

/// Server task -> crawl task, sent to the fetcher.
struct ExecutorStage {
    registry: Arc<ExecutorRegistry>,
    fetch_topic: String,
    metrics: Arc<CrawlMetrics>,
}

impl Stage for ExecutorStage {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let registry = Arc::clone(&self.registry);
        let fetch_topic = self.fetch_topic.clone();
        self.metrics.timed(
            StageKind::Executor,
            Box::pin(async move {
                let mut task = task;
                let local = local_task(&mut task)?;
                let crawl = execute(&registry, local)
                    .map_err(|e| StageError::permanent(format!("executor: {e}")))?;
                Ok(vec![envelope(crawl, &fetch_topic, &fetch_topic)])
            }),
        )
    }
}

/// Crawl task -> parse task(s), sent to the parse topic.
struct FetcherStage {
    fetcher: Arc<Fetcher>,
    next_topic: Option<String>,
    metrics: Arc<CrawlMetrics>,
}

/// Where a parse task goes: the crawl task's `callback.topic` when it names another
/// queue than the one the crawl task came from (a seed task put by hand), else the url
/// entry's `topic` (set by the executor template), else the worker's `next_topic`,
/// else `parsing`.
fn parse_destination(
    callback: Option<&str>,
    here: &str,
    next_topic: Option<&str>,
    parse_task: &LocalTask,
) -> String {
    let url_topic = parse_task
        .body
        .urls
        .first()
        .map(|item| item.url.topic.as_str());
    callback
        .filter(|t| !t.is_empty() && *t != here)
        .or(url_topic.filter(|t| !t.is_empty()))
        .or(next_topic)
        .unwrap_or(PARSE_TOPIC)
        .to_string()
}

impl Stage for FetcherStage {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let fetcher = Arc::clone(&self.fetcher);
        let metrics = Arc::clone(&self.metrics);
        let next_topic = self.next_topic.clone();
        self.metrics.timed(
            StageKind::Fetcher,
            Box::pin(async move {
                let mut task = task;
                let local = local_task(&mut task)?;
                let fetch_topic = body_str(&local, FETCH_TOPIC_KEY)
                    .unwrap_or(&task.topic)
                    .to_string();
                let callback = local.callback_topic().map(str::to_string);
                let parse_tasks = fetcher.fetch_task(local).await;
                let results: Vec<_> = parse_tasks.iter().flat_map(|t| &t.body.result).collect();
                let failed = metrics.count_fetches(&results);
                if !failed.is_empty()
                    && failed.len() == results.len()
                    && failed.iter().all(|r| transient(r))
                {
                    return Err(StageError::retryable(format!(
                        "every url failed; first: {} {}",
                        failed[0].url,
                        failed[0].error.as_deref().unwrap_or("no response")
                    )));
                }
                Ok(parse_tasks
                    .into_iter()
                    .map(|parse_task| {
                        let to = parse_destination(
                            callback.as_deref(),
                            &task.topic,
                            next_topic.as_deref(),
                            &parse_task,
                        );
                        envelope(parse_task, &to, &fetch_topic)
                    })
                    .collect())
            }),
        )
    }
}

/// A failed fetch worth giving the whole task back to the broker: no response at all
/// (a connection error or timeout) or a server error. A 404 or 410 is final.
fn transient(result: &ResultEntry) -> bool {
    match result.status.unwrap_or(0) {
        0 => true,
        status => status >= 500 || status == 429 || status == 408,
    }
}

/// Parse task -> rows for the storer, and follow tasks back to the fetcher.
struct ParserStage {
    parser: Arc<Parser>,
    store_topic: String,
    metrics: Arc<CrawlMetrics>,
}

impl Stage for ParserStage {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let parser = Arc::clone(&self.parser);
        let metrics = Arc::clone(&self.metrics);
        let store_topic = self.store_topic.clone();
        self.metrics.timed(
            StageKind::Parser,
            Box::pin(async move {
                let mut task = task;
                let local = local_task(&mut task)?;
                let fetch_topic = body_str(&local, FETCH_TOPIC_KEY)
                    .unwrap_or(FETCH_TOPIC)
                    .to_string();
                let mut out = parser.parse_task(local);
                let rows = out.parsed.rows().count() as u64;
                let links: usize = out.follow.iter().map(|t| t.body.urls.len()).sum();
                CrawlMetrics::add(&metrics.rows_parsed, rows);
                CrawlMetrics::add(&metrics.links_followed, links as u64);
                let parse_errors = out.errors.len() - out.fetch_failed;
                CrawlMetrics::add(&metrics.parse_errors, parse_errors as u64);
                CrawlMetrics::add(
                    &metrics.skipped_content_type,
                    out.skipped_content_type as u64,
                );
                CrawlMetrics::add(&metrics.skipped_offsite, out.offsite as u64);
                if rows == 0 && out.follow.is_empty() && parse_errors > 0 {
                    return Err(StageError::permanent(out.errors.join("; ")));
                }
                // The storer reads urls and parsing_data; the pages stay behind.
                for result in &mut out.parsed.body.result {
                    result.html.clear();
                }
                let mut next = Vec::with_capacity(out.follow.len() + 1);
                if rows > 0 {
                    next.push(envelope(out.parsed, &store_topic, &fetch_topic));
                }
                next.extend(
                    out.follow
                        .into_iter()
                        .map(|follow| envelope(follow, &fetch_topic, &fetch_topic)),
                );
                Ok(next)
            }),
        )
    }
}
