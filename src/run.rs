//! `taskbus run`: the broker and every configured worker in one process (the seed's
//! `run.py`); with a `[run]` section, also the example site, seed tasks put at start,
//! and an exit with a summary once the work is done.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, Endpoints};
use crate::client::Client;
use crate::config::Config;
use crate::crawl::stage::{CrawlMetrics, MetricsSnapshot, TASK_TYPE_KEY};
use crate::task::NewTask;
use crate::worker::{self, WorkerOptions};

pub use crate::config::RunConfig;

/// Text in a seed task's body replaced by the example site's base URL
/// (`http://127.0.0.1:PORT`).
pub const SITE_PLACEHOLDER: &str = "{example_site}";

/// The broker and workers of one process, running.
pub struct Running {
    pub endpoints: Endpoints,
    /// Where the HTTP API and web site listen, when `[http] listen` is set.
    pub http: Option<std::net::SocketAddr>,
    /// Where the example site listens, when it runs.
    pub site: Option<std::net::SocketAddr>,
    /// The crawl stages' counters.
    pub metrics: Arc<CrawlMetrics>,
    config: Arc<Config>,
    started: Instant,
    workers: TaskTracker,
    workers_stop: CancellationToken,
    broker: tokio::task::JoinHandle<Result<(), crate::broker::BrokerError>>,
    broker_stop: CancellationToken,
    site_stop: CancellationToken,
    grace: Duration,
}

/// What a run did, printed when `exit_when_idle` ends it.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub seconds: f64,
    pub metrics: MetricsSnapshot,
    /// Tasks finished (DONE or acked), all topics together.
    pub tasks_done: u64,
    /// Failed attempts, all topics together.
    pub tasks_failed: u64,
    /// Tasks in the dead letters now.
    pub tasks_dead: u64,
    /// Where the rows are: the SQLite file or the MySQL server (without password).
    pub rows_at: String,
    /// Rows each seed task type's table holds now: (table, rows).
    pub tables: Vec<(String, u64)>,
    /// Feeds written: (task type, file).
    pub feeds: Vec<(String, String)>,
    /// Dead letters now, by topic and reason: (topic, reason, tasks).
    pub dead_reasons: Vec<(String, String, u64)>,
}

impl RunSummary {
    /// Why the run counts as failed (rows lost, tasks dead-lettered), if it does.
    pub fn failure(&self) -> Option<String> {
        let m = &self.metrics;
        let mut why = Vec::new();
        if m.rows_refused > 0 {
            why.push(format!("{} rows refused by the database", m.rows_refused));
        }
        if m.store_errors > 0 {
            why.push(format!("{} store calls failed", m.store_errors));
        }
        if self.tasks_dead > 0 {
            why.push(format!("{} tasks dead-lettered", self.tasks_dead));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

/// Starts the broker, the `[[workers]]`, the example site and puts the seed tasks.
pub async fn start(config: Arc<Config>) -> anyhow::Result<Running> {
    check_consumers(&config)?;
    let broker = Broker::bind(config.clone()).await?;
    let endpoints = broker.endpoints().clone();
    let broker_stop = CancellationToken::new();
    let http = crate::http::start(
        &config.http,
        &config.store.data_dir,
        http_limits(&config),
        broker.caller(),
        crate::web::pages(),
        broker_stop.clone(),
    )
    .await?
    .map(|running| running.address);
    let broker_task = tokio::spawn(broker.run(broker_stop.clone()));
    let site_stop = CancellationToken::new();
    let site = start_site(&config.run.example_site, site_stop.clone()).await?;
    let metrics = Arc::new(CrawlMetrics::default());
    let workers = TaskTracker::new();
    let workers_stop = CancellationToken::new();
    for spec in &config.workers {
        let stage = match spec.stage.as_str() {
            "executor" | "fetcher" | "parser" => {
                crate::crawl::stage::build_with(spec, &config.crawl, metrics.clone()).await?
            }
            "storer" => {
                crate::storer::stage::build_with(spec, &config.storer, metrics.clone()).await?
            }
            _ => crate::stages::build(spec, &config).await?,
        };
        for _ in 0..spec.count {
            let mut options = WorkerOptions::from_config(
                &config,
                &spec.stage,
                spec.topics.clone(),
                spec.capacity,
            );
            options.endpoint = endpoints.worker.clone();
            options.next_topic = spec.next_topic.clone();
            workers.spawn(worker::run(options, stage.clone(), workers_stop.clone()));
        }
    }
    workers.close();
    let running = Running {
        endpoints,
        http,
        site,
        metrics,
        started: Instant::now(),
        config: config.clone(),
        workers,
        workers_stop,
        broker: broker_task,
        broker_stop,
        site_stop,
        grace: Duration::from_secs_f64(config.worker.shutdown_grace_secs + 1.0),
    };
    running.put_seeds().await?;
    Ok(running)
}

/// The broker's request limits, for the HTTP face.
pub fn http_limits(config: &Config) -> crate::http::Limits {
    crate::http::Limits {
        max_message_bytes: config.broker.max_message_bytes,
        max_get_count: config.broker.max_get_count,
    }
}

async fn start_site(
    address: &str,
    stop: CancellationToken,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    if address.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the example site on {address}: {e}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = crate::crawl::site::serve(listener, stop).await {
            log::error!("example site on {addr} stopped: {error}");
        }
    });
    log::info!("example site on http://{addr}");
    Ok(Some(addr))
}

impl Running {
    /// The seed tasks of `[run]`, with the site's address filled in.
    fn seeds(&self) -> Vec<NewTask> {
        let base = self.site.map(|a| format!("http://{a}")).unwrap_or_default();
        let spiders = self.config.crawl.spiders.iter().map(|s| s.seed_task());
        self.config
            .run
            .tasks
            .iter()
            .cloned()
            .chain(spiders)
            .map(|task| NewTask {
                body: fill_placeholder(&task.body.to_value(), &base).into(),
                ..task
            })
            .collect()
    }

    async fn put_seeds(&self) -> anyhow::Result<()> {
        let seeds = self.seeds();
        if seeds.is_empty() {
            return Ok(());
        }
        let mut client = Client::connect(&self.endpoints.client)
            .await?
            .with_token(self.config.auth.client_token());
        let guids = client.put(&seeds).await?;
        for (seed, guid) in seeds.iter().zip(&guids) {
            log::info!(
                "seed task guid={guid} topic={} put (a guid still queued from an earlier run is not queued twice)",
                seed.topic.as_deref().unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Waits until no topic has a ready or leased task, logging progress every
    /// `[run] progress_secs`. Errors after `[run] max_secs`.
    pub async fn until_idle(&self) -> anyhow::Result<()> {
        let mut client = Client::connect(&self.endpoints.client)
            .await?
            .with_token(self.config.auth.client_token());
        let run = &self.config.run;
        let progress_every = Duration::from_secs_f64(run.progress_secs.max(0.0));
        let mut last_progress = Instant::now();
        loop {
            let stats = client.stats().await?;
            let (ready, leased) = queued(&stats);
            if ready == 0 && leased == 0 {
                return Ok(());
            }
            if !progress_every.is_zero() && last_progress.elapsed() >= progress_every {
                last_progress = Instant::now();
                let m = self.metrics.snapshot();
                log::info!(
                    "progress: pages {} (failed {}), rows parsed {}, stored {}, refused {}; tasks ready {ready}, leased {leased}",
                    m.pages, m.pages_failed, m.rows_parsed, m.rows_stored, m.rows_refused
                );
            }
            if run.max_secs > 0.0 && self.started.elapsed().as_secs_f64() > run.max_secs {
                anyhow::bail!(
                    "work not finished after {} s ([run] max_secs): {ready} ready, {leased} leased",
                    run.max_secs
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Counters of this run, the broker's totals, and the rows of every seed task
    /// type's table.
    pub async fn summary(&self) -> anyhow::Result<RunSummary> {
        let mut client = Client::connect(&self.endpoints.client)
            .await?
            .with_token(self.config.auth.client_token());
        let stats = client.stats().await?;
        let total = |counter: &str| -> u64 {
            stats["topics"]
                .as_object()
                .map(|t| t.values().filter_map(|v| v[counter].as_u64()).sum())
                .unwrap_or(0)
        };
        let mut summary = RunSummary {
            seconds: self.started.elapsed().as_secs_f64(),
            metrics: self.metrics.snapshot(),
            tasks_done: total("done"),
            tasks_failed: total("failed"),
            tasks_dead: total("dead"),
            rows_at: rows_location(&self.config.storer),
            tables: Vec::new(),
            feeds: Vec::new(),
            dead_reasons: dead_reasons(&mut client).await?,
        };
        let feeds = &self.config.storer.feeds;
        let mut task_types = seed_task_types(&self.config.run.tasks);
        task_types.extend(
            self.config
                .crawl
                .spiders
                .iter()
                .map(|s| s.table().to_string()),
        );
        let (fed, tabled): (Vec<String>, Vec<String>) =
            task_types.into_iter().partition(|t| feeds.contains_key(t));
        summary.feeds = fed
            .into_iter()
            .map(|t| {
                let path = feeds[&t].path.display().to_string();
                (t, path)
            })
            .collect();
        let has_storer = self.config.workers.iter().any(|w| w.stage == "storer");
        if has_storer && !tabled.is_empty() {
            let storer = crate::storer::Storer::open(&self.config.storer).await?;
            for task_type in tabled {
                let table = storer.table_name(&task_type)?;
                summary
                    .tables
                    .push((table, storer.count_rows(&task_type).await?));
            }
            storer.close().await?;
        }
        Ok(summary)
    }

    /// Stops the workers first (so they can hand their results to a broker that
    /// still listens), then the broker and the site.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.workers_stop.cancel();
        if tokio::time::timeout(self.grace, self.workers.wait())
            .await
            .is_err()
        {
            log::warn!("workers did not stop within {:?}", self.grace);
        }
        self.broker_stop.cancel();
        self.site_stop.cancel();
        self.broker.await??;
        Ok(())
    }
}

/// Runs everything until `shutdown` resolves; with `[run] exit_when_idle`, until the
/// work is done, and then returns the summary.
pub async fn run(
    config: Arc<Config>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Option<RunSummary>> {
    let running = start(config.clone()).await?;
    log::info!(
        "taskbus running: clients {} workers {} events {}",
        running.endpoints.client,
        running.endpoints.worker,
        running.endpoints.events
    );
    if !config.run.exit_when_idle {
        shutdown.await;
        running.stop().await?;
        return Ok(None);
    }
    let outcome = tokio::select! {
        _ = shutdown => None,
        idle = running.until_idle() => Some(idle),
    };
    let summary = match outcome {
        Some(Ok(())) => Some(running.summary().await),
        Some(Err(error)) => Some(Err(error)),
        None => None,
    };
    running.stop().await?;
    summary.transpose()
}

/// The lines `taskbus run` prints at the end.
pub fn summary_text(summary: &RunSummary) -> String {
    let m = &summary.metrics;
    let http: Vec<String> = m
        .http_errors
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    let mut text = format!(
        "crawl finished in {:.1} s\n  pages fetched: {} ({} failed), retries: {}\n  skipped: robots.txt {}, not html {}, off-domain links {}\n  http errors: {}\n  rows parsed: {}, stored: {} (upserts: a page crawled again updates its rows), refused: {}\n  parse errors: {}\n  tasks: {} done, {} failed attempts, {} dead\n  rows are in {}\n",
        summary.seconds,
        m.pages,
        m.pages_failed,
        m.retried,
        m.skipped_robots,
        m.skipped_content_type,
        m.skipped_offsite,
        if http.is_empty() { "none".to_string() } else { http.join(", ") },
        m.rows_parsed,
        m.rows_stored,
        m.rows_refused,
        m.parse_errors,
        summary.tasks_done,
        summary.tasks_failed,
        summary.tasks_dead,
        summary.rows_at
    );
    for (table, rows) in &summary.tables {
        text.push_str(&format!("  table {table}: {rows} rows\n"));
    }
    for (task_type, path) in &summary.feeds {
        text.push_str(&format!("  feed {task_type}: {path}\n"));
    }
    for (topic, reason, n) in &summary.dead_reasons {
        text.push_str(&format!("  dead in {topic}: {n} x {reason}\n"));
    }
    let errors = m.pages_failed + m.parse_errors + m.rows_refused + m.store_errors;
    text.push_str(&format!("  errors: {errors}"));
    if errors > 0 || summary.tasks_dead > 0 {
        text.push_str(
            " (details in scripts.log; the dead letters stay in the broker's store: start \
             `taskbus run` with TASKBUS__RUN__EXIT_WHEN_IDLE=false, then `taskbus dead list`)",
        );
    }
    text
}

/// Longest dead-letter reason shown in the summary, in characters.
const REASON_CHARS: usize = 120;

/// The dead letters by topic and reason (their last error, cut short).
async fn dead_reasons(client: &mut Client) -> anyhow::Result<Vec<(String, String, u64)>> {
    let reply = client
        .request(&serde_json::json!({"type": "dead_list", "limit": 1000}))
        .await?;
    let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for task in reply["tasks"].as_array().into_iter().flatten() {
        let topic = task["topic"].as_str().unwrap_or_default().to_string();
        let error = task["last_error"].as_str().unwrap_or("no error recorded");
        let reason: String = error.chars().take(REASON_CHARS).collect();
        *counts.entry((topic, reason)).or_default() += 1;
    }
    Ok(counts.into_iter().map(|((t, r), n)| (t, r, n)).collect())
}

/// With `exit_when_idle`, a seeded topic no `[[workers]]` entry takes would wait until
/// `max_secs`: refuse to start instead, naming the topic. Without it, warn (a worker
/// in another process may take it).
fn check_consumers(config: &Config) -> anyhow::Result<()> {
    let taken: BTreeSet<&str> = config
        .workers
        .iter()
        .flat_map(|w| w.topics.iter().map(String::as_str))
        .collect();
    let mut wanted: Vec<(String, &str)> = config
        .run
        .tasks
        .iter()
        .filter_map(|t| t.topic.clone())
        .map(|t| (t, "[[run.tasks]]"))
        .collect();
    if !config.crawl.spiders.is_empty() {
        use crate::crawl::stage::{FETCH_TOPIC, PARSE_TOPIC, STORE_TOPIC};
        for topic in [FETCH_TOPIC, PARSE_TOPIC, STORE_TOPIC] {
            wanted.push((topic.to_string(), "[[crawl.spiders]]"));
        }
    }
    for (topic, by) in wanted {
        if taken.contains(topic.as_str()) {
            continue;
        }
        let message = format!(
            "no [[workers]] entry takes topic {topic:?} (its tasks come from {by}); add a \
             [[workers]] entry with topics = [{topic:?}]"
        );
        if config.run.exit_when_idle {
            anyhow::bail!(message);
        }
        log::warn!("{message}");
    }
    Ok(())
}

/// The number of waiting (pending, ready or delayed) and of leased tasks in a
/// `stats` reply.
fn queued(stats: &Value) -> (u64, u64) {
    let topics = stats["topics"].as_object();
    let sum = |key: &str| {
        topics
            .map(|t| t.values().filter_map(|v| v[key].as_u64()).sum())
            .unwrap_or(0)
    };
    (
        sum("pending") + sum("ready") + sum("delayed"),
        sum("leased"),
    )
}

/// The task types the seed tasks make rows of.
fn seed_task_types(tasks: &[NewTask]) -> BTreeSet<String> {
    tasks
        .iter()
        .filter_map(|t| {
            t.body
                .to_value()
                .get(TASK_TYPE_KEY)
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(t.topic.clone())
        })
        .collect()
}

fn rows_location(storer: &crate::storer::StorerConfig) -> String {
    if storer.url.is_empty() {
        return format!("SQLite file {}", storer.sqlite_path.display());
    }
    match url::Url::parse(&storer.url) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            format!("MySQL {url}")
        }
        Err(_) => "MySQL (url not shown)".to_string(),
    }
}

fn fill_placeholder(value: &Value, base: &str) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace(SITE_PLACEHOLDER, base)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| fill_placeholder(v, base)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_placeholder(v, base)))
                .collect(),
        ),
        other => other.clone(),
    }
}
