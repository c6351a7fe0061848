//! `taskbus-bench crawl`: a link-following crawl through executor -> fetcher ->
//! parser -> storer on the bus, like `scrapy bench`: the example site's link-bench
//! pages (each links to `show` pages no other page links to), every link followed
//! for a fixed time, every page parsed into one row, every row stored.
//!
//! Everything runs in this process over loopback TCP (broker, four stage workers,
//! the site), so the figures include the bus and the site. Unlike `scrapy bench`,
//! whose frontier grows ~19 URLs per page without bound, the frontier here is capped
//! (`--frontier`): links beyond it are dropped and counted, so a long run measures a
//! steady state instead of a growing queue.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::client::Client;
use crate::config::{Config, StoreKind, WorkerSpec};
use crate::crawl::config::{FieldRule, FollowRule, ParserRule};
use crate::crawl::stage::{CrawlMetrics, FETCH_TOPIC};
use crate::crawl::{ExecutorTemplate, TaskBody};
use crate::task::{NewTask, Task};
use crate::worker::{self, Stage, StageError, WorkerOptions};

/// Flags of `taskbus-bench crawl`.
#[derive(Debug, Clone, Args)]
pub struct CrawlArgs {
    /// Seconds to crawl.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Store rows in this MySQL/MariaDB database (`mysql://root@127.0.0.1:3306/test`)
    /// instead of a SQLite file in a temporary folder; the table is dropped after.
    #[arg(long)]
    pub mysql: Option<String>,
    /// Links per page.
    #[arg(long, default_value_t = 20)]
    pub show: u64,
    /// Most URLs waiting to be fetched; links beyond it are dropped (and counted).
    /// The site's page numbers saturate 14 links deep, and a capped frontier goes one
    /// level deeper per `frontier` pages: keep it above pages / 14.
    #[arg(long, default_value_t = 250_000)]
    pub frontier: u64,
    /// Most pages fetched but not yet parsed: the fetcher waits beyond it (the
    /// backpressure `scrapy bench` gets from parsing in its one loop).
    #[arg(long, default_value_t = 2_000)]
    pub backlog: u64,
    /// Requests in flight in the fetcher (all to the one site).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Credit of the fetcher and parser workers (tasks of 20 urls each).
    #[arg(long, default_value_t = 8)]
    pub capacity: u32,
    /// The seed's `content.bulk`: one parse task per fetch task (true) or per url.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub bulk: bool,
    /// Credit of the storer worker (store calls in flight, gathered into one
    /// transaction).
    #[arg(long, default_value_t = 256)]
    pub store_capacity: u32,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct CrawlReport {
    pub pages_per_s: f64,
    pub rows_per_s: f64,
    pub seconds: f64,
    pub pages: u64,
    pub rows: u64,
    pub pages_failed: u64,
    /// Links dropped because the frontier was full.
    pub links_dropped: u64,
    /// Requests the site served.
    pub site_requests: u64,
    /// `sqlite` or `mysql`.
    pub backend: String,
    /// Process CPU seconds (all threads) during the crawl, and per wall second.
    pub cpu_secs: f64,
    pub cpu_cores_used: f64,
    /// Share of the process CPU spent inside each stage's task futures; the rest is
    /// the broker, the HTTP connections, the site, the storer's writer thread and
    /// the runtime.
    pub cpu_share: StageShares,
    pub rss_start_mb: f64,
    pub rss_end_mb: f64,
    pub rss_peak_mb: f64,
}

/// Per-stage share of the process CPU, 0..1.
#[derive(Debug, Clone, Serialize)]
pub struct StageShares {
    pub executor: f64,
    pub fetcher: f64,
    pub parser: f64,
    pub storer: f64,
    pub other: f64,
}

/// The bench's task type (and table name).
const TASK_TYPE: &str = "bench_pages";

/// The parser stage with the frontier cap in front of its follow tasks.
struct Capped {
    inner: Arc<dyn Stage>,
    metrics: Arc<CrawlMetrics>,
    frontier: u64,
    queued_urls: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl Stage for Capped {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let inner = self.inner.handle(task);
        let (metrics, frontier) = (self.metrics.clone(), self.frontier);
        let (queued, dropped) = (self.queued_urls.clone(), self.dropped.clone());
        Box::pin(async move {
            let next = inner.await?;
            let fetched = metrics.pages.load(Ordering::Relaxed);
            let kept = next
                .into_iter()
                .filter(|envelope| {
                    if envelope.body.routing().callback_topic.as_deref() != Some(FETCH_TOPIC) {
                        return true;
                    }
                    #[derive(serde::Deserialize)]
                    struct Urls {
                        #[serde(default)]
                        urls: Vec<serde::de::IgnoredAny>,
                    }
                    let urls = envelope.body.decode::<Urls>().map_or(0, |u| u.urls.len()) as u64;
                    let waiting = queued.load(Ordering::Relaxed).saturating_sub(fetched);
                    if waiting + urls > frontier {
                        dropped.fetch_add(urls, Ordering::Relaxed);
                        return false;
                    }
                    queued.fetch_add(urls, Ordering::Relaxed);
                    true
                })
                .collect();
            Ok(kept)
        })
    }
}

/// The fetcher stage, waiting while the parser is `backlog` pages behind.
struct Throttled {
    inner: Arc<dyn Stage>,
    metrics: Arc<CrawlMetrics>,
    backlog: u64,
}

impl Stage for Throttled {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let (inner, metrics, backlog) = (self.inner.clone(), self.metrics.clone(), self.backlog);
        Box::pin(async move {
            let behind = || {
                let fetched = metrics.pages.load(Ordering::Relaxed);
                fetched.saturating_sub(metrics.rows_parsed.load(Ordering::Relaxed))
            };
            while behind() > backlog {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            inner.handle(task).await
        })
    }
}

fn bench_config(args: &CrawlArgs, data_dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.broker.use_ephemeral_loopback();
    config.store.kind = StoreKind::Memory;
    config.worker.shutdown_grace_secs = 2.0;
    let crawl = &mut config.crawl;
    crawl.fetcher.global_concurrency = args.concurrency;
    crawl.fetcher.per_domain_concurrency = args.concurrency;
    crawl.follow.batch = args.show.max(1) as usize;
    crawl.executors.push(ExecutorTemplate {
        name: "bench".into(),
        version: "1".into(),
        url: "{base}/follow/0?show={show}".into(),
        platform: "bench".into(),
        ..ExecutorTemplate::default()
    });
    crawl.parsers.push(ParserRule {
        name: "bench".into(),
        platform: "bench".into(),
        kind: "html".into(),
        fields: vec![FieldRule {
            name: "first_link".into(),
            selector: "a".into(),
            attr: "href".into(),
            ..FieldRule::default()
        }],
        follow: vec![FollowRule {
            selector: "a".into(),
            ..FollowRule::default()
        }],
        ..ParserRule::default()
    });
    config.storer.sqlite_path = data_dir.join("rows.sqlite3");
    if let Some(url) = &args.mysql {
        config.storer.url = url.clone();
    }
    config
}

fn spec(stage: &str, topic: &str, capacity: u32) -> WorkerSpec {
    WorkerSpec {
        stage: stage.into(),
        topics: vec![topic.into()],
        capacity,
        count: 1,
        next_topic: None,
    }
}

/// Runs the bench and returns its figures.
pub async fn run(args: &CrawlArgs) -> anyhow::Result<CrawlReport> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be > 0");
    let rss_start_mb = rss_mb("VmRSS");
    let data_dir = tempfile::tempdir()?;
    let config = Arc::new(bench_config(args, data_dir.path()));
    let broker = Broker::bind(config.clone()).await?;
    let endpoints = broker.endpoints().clone();
    let stop_broker = CancellationToken::new();
    let broker_task = tokio::spawn(broker.run(stop_broker.clone()));
    let (_, site) = crate::crawl::site::bind_local().await;

    let metrics = Arc::new(CrawlMetrics::default());
    let queued_urls = Arc::new(AtomicU64::new(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let stop_workers = CancellationToken::new();
    let mut workers = Vec::new();
    let stages = [
        spec("executor", TASK_TYPE, 1),
        spec("fetcher", FETCH_TOPIC, args.capacity),
        spec("parser", "parsing", args.capacity),
        spec("storer", "store", args.store_capacity),
    ];
    for spec in &stages {
        let stage = match spec.stage.as_str() {
            "storer" => {
                crate::storer::stage::build_with(spec, &config.storer, metrics.clone()).await?
            }
            _ => crate::crawl::stage::build_with(spec, &config.crawl, metrics.clone()).await?,
        };
        let stage: Arc<dyn Stage> = if spec.stage == "parser" {
            Arc::new(Capped {
                inner: stage,
                metrics: metrics.clone(),
                frontier: args.frontier,
                queued_urls: queued_urls.clone(),
                dropped: dropped.clone(),
            })
        } else if spec.stage == "fetcher" {
            Arc::new(Throttled {
                inner: stage,
                metrics: metrics.clone(),
                backlog: args.backlog,
            })
        } else {
            stage
        };
        let mut options =
            WorkerOptions::from_config(&config, &spec.stage, spec.topics.clone(), spec.capacity);
        options.endpoint = endpoints.worker.clone();
        workers.push(tokio::spawn(worker::run(
            options,
            stage,
            stop_workers.clone(),
        )));
    }
    let mut client = Client::connect(&endpoints.client).await?;
    while client.stats().await?["workers"]
        .as_array()
        .map_or(0, Vec::len)
        < stages.len()
    {
        tokio::task::yield_now().await;
    }

    let mut seed = TaskBody {
        crawl: crate::crawl::CrawlRef {
            name: "bench".into(),
            version: "1".into(),
            ..Default::default()
        },
        ..TaskBody::default()
    };
    // One parse task (and one store task) per fetch task of `show` urls.
    seed.content.bulk = args.bulk;
    let mut body = serde_json::to_value(seed)?;
    body["base"] = json!(site.url(""));
    body["show"] = json!(args.show);
    let cpu_start = cpu_secs();
    let started = Instant::now();
    client.put(&[NewTask::new(TASK_TYPE, body)]).await?;
    let deadline = started + Duration::from_secs_f64(args.seconds);
    while Instant::now() < deadline {
        let tick = (deadline - Instant::now()).min(Duration::from_secs(1));
        tokio::time::sleep(tick).await;
        if !args.quiet {
            let m = metrics.snapshot();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{secs:6.1} s  pages {:>9} ({:>6.0}/s)  rows {:>9}  rss {:.0} MB",
                m.pages,
                m.pages as f64 / secs,
                m.rows_stored,
                rss_mb("VmRSS")
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_start;
    let m = metrics.snapshot();
    let rss_end_mb = rss_mb("VmRSS");
    let rss_peak_mb = rss_mb("VmHWM");
    let site_requests = site.stats.requests();

    stop_workers.cancel();
    for worker in workers {
        worker.await?;
    }
    stop_broker.cancel();
    broker_task.await??;
    if let Some(url) = &args.mysql {
        drop_mysql_table(url).await?;
    }
    let share = |busy: f64| if cpu > 0.0 { busy / cpu } else { 0.0 };
    let busy: f64 = m.busy_secs.iter().sum();
    let report = CrawlReport {
        pages_per_s: m.pages as f64 / seconds,
        rows_per_s: m.rows_stored as f64 / seconds,
        seconds,
        pages: m.pages,
        rows: m.rows_stored,
        pages_failed: m.pages_failed,
        links_dropped: dropped.load(Ordering::Relaxed),
        site_requests,
        backend: if args.mysql.is_some() {
            "mysql"
        } else {
            "sqlite"
        }
        .into(),
        cpu_secs: cpu,
        cpu_cores_used: cpu / seconds,
        cpu_share: StageShares {
            executor: share(m.busy_secs[0]),
            fetcher: share(m.busy_secs[1]),
            parser: share(m.busy_secs[2]),
            storer: share(m.busy_secs[3]),
            other: share((cpu - busy).max(0.0)),
        },
        rss_start_mb,
        rss_end_mb,
        rss_peak_mb,
    };
    if !args.quiet {
        eprintln!("{}", summary(&report));
    }
    Ok(report)
}

async fn drop_mysql_table(url: &str) -> anyhow::Result<()> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(url).await?;
    conn.query_drop(format!("DROP TABLE IF EXISTS `{TASK_TYPE}`"))
        .await?;
    conn.disconnect().await?;
    Ok(())
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`; 0 elsewhere).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name; USER_HZ is
    // 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/self/status` memory line (`VmRSS`, `VmHWM`) in MB; 0 when unknown.
fn rss_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Lines for people.
pub fn summary(report: &CrawlReport) -> String {
    let s = &report.cpu_share;
    format!(
        "crawl: {} pages in {:.1} s: {:.0} pages/s, {:.0} rows/s ({}), {} failed, {} links dropped (frontier full)\n\
         cpu: {:.2} cores; inside stages: executor {:.1}%, fetcher {:.1}%, parser {:.1}%, storer {:.1}%; broker, http, site, runtime {:.1}%\n\
         rss: {:.0} MB at start, {:.0} MB at end, {:.0} MB peak",
        report.pages,
        report.seconds,
        report.pages_per_s,
        report.rows_per_s,
        report.backend,
        report.pages_failed,
        report.links_dropped,
        report.cpu_cores_used,
        s.executor * 100.0,
        s.fetcher * 100.0,
        s.parser * 100.0,
        s.storer * 100.0,
        s.other * 100.0,
        report.rss_start_mb,
        report.rss_end_mb,
        report.rss_peak_mb
    )
}
