//! `taskbus-bench hop`: a broker and N workers over loopback TCP; producers put
//! tasks, each goes through one hop (put -> worker -> DONE). Reports tasks/s and the
//! latency from put to delivery at the worker, at full load or a fixed offered rate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::client::Client;
use crate::config::{Config, StoreKind};
use crate::task::{NewTask, Task};
use crate::worker::{self, Stage, StageError, WorkerOptions};

/// Flags of `taskbus-bench hop`.
#[derive(Debug, Clone, Args)]
pub struct HopArgs {
    /// Echo workers.
    #[arg(long, default_value_t = 4)]
    pub workers: u32,
    /// Tasks to push through.
    #[arg(long, default_value_t = 200_000)]
    pub tasks: u64,
    /// Offered rate in tasks/s; without it, full load.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Keep the queues in the durable SQLite store (in a temporary directory).
    #[arg(long)]
    pub durable: bool,
    /// Tasks per put request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Producer connections.
    #[arg(long, default_value_t = 2)]
    pub producers: u32,
    /// Credit of each worker.
    #[arg(long, default_value_t = 256)]
    pub capacity: u32,
    /// Most tasks put but not yet delivered, at full load.
    #[arg(long, default_value_t = 50_000)]
    pub window: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct HopReport {
    pub tasks_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub workers: u32,
    pub tasks: u64,
    pub durable: bool,
    pub offered_rate: Option<u64>,
    pub seconds: f64,
    /// Bytes of the store's files after the run (durable only): finished tasks are
    /// dropped and the history is trimmed, so this stays bounded.
    pub store_bytes: Option<u64>,
}

struct Recorder {
    origin: Instant,
    delivered: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    progress: Notify,
}

/// The bench's stage: records how long each task took from its put to here.
struct Record(Arc<Recorder>);

impl Stage for Record {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let recorder = &self.0;
        #[derive(serde::Deserialize)]
        struct Stamp {
            #[serde(default)]
            t: u64,
        }
        let put_us = task.body.decode::<Stamp>().map_or(0, |s| s.t);
        let now_us = recorder.origin.elapsed().as_micros() as u64;
        let _ = recorder
            .latency_us
            .lock()
            .expect("histogram lock")
            .record(now_us.saturating_sub(put_us).max(1));
        recorder.delivered.fetch_add(1, Ordering::Relaxed);
        recorder.progress.notify_waiters();
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Runs the bench and returns its figures.
pub async fn run(args: &HopArgs) -> anyhow::Result<HopReport> {
    anyhow::ensure!(
        args.workers >= 1 && args.tasks >= 1 && args.batch >= 1,
        "workers, tasks and batch must be >= 1"
    );
    let data_dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.broker.use_ephemeral_loopback();
    config.broker.max_get_count = 100_000;
    config.store.kind = if args.durable {
        StoreKind::Sqlite
    } else {
        StoreKind::Memory
    };
    config.store.data_dir = data_dir.path().to_owned();
    let config = Arc::new(config);
    let broker = Broker::bind(config.clone()).await?;
    let endpoints = broker.endpoints().clone();
    let stop_broker = CancellationToken::new();
    let broker_task = tokio::spawn(broker.run(stop_broker.clone()));

    let recorder = Arc::new(Recorder {
        origin: Instant::now(),
        delivered: AtomicU64::new(0),
        latency_us: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        progress: Notify::new(),
    });
    let stop_workers = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let mut options =
            WorkerOptions::from_config(&config, "bench", vec!["hop".into()], args.capacity);
        options.endpoint = endpoints.worker.clone();
        workers.push(tokio::spawn(worker::run(
            options,
            Arc::new(Record(recorder.clone())),
            stop_workers.clone(),
        )));
    }
    let mut admin = Client::connect(&endpoints.client).await?;
    while registered(&mut admin).await? < args.workers as usize {
        tokio::task::yield_now().await;
    }

    let bar = progress_bar(args);
    let started = Instant::now();
    let per_producer = args.tasks.div_ceil(args.producers as u64);
    let mut producers = Vec::new();
    for index in 0..args.producers as u64 {
        let count = per_producer.min(args.tasks.saturating_sub(index * per_producer));
        let (endpoint, recorder, args) = (endpoints.client.clone(), recorder.clone(), args.clone());
        producers.push(tokio::spawn(async move {
            produce(&endpoint, count, &args, &recorder).await
        }));
    }
    let ticker = {
        let (recorder, bar) = (recorder.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(recorder.delivered.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    for producer in producers {
        producer.await??;
    }
    // Done means the broker has taken every DONE, not only that workers ran the tasks.
    loop {
        let stats = admin.stats().await?;
        if stats["topics"]["hop"]["done"].as_u64().unwrap_or(0) >= args.tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();
    stop_workers.cancel();
    for worker in workers {
        worker.await?;
    }
    stop_broker.cancel();
    broker_task.await??;
    let store_bytes = args.durable.then(|| dir_bytes(data_dir.path()));
    let histogram = recorder.latency_us.lock().expect("histogram lock");
    Ok(HopReport {
        tasks_per_s: args.tasks as f64 / seconds,
        p50_ms: histogram.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        workers: args.workers,
        tasks: args.tasks,
        durable: args.durable,
        offered_rate: args.rate,
        seconds,
        store_bytes,
    })
}

/// Total size of the files in `dir`.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn registered(client: &mut Client) -> anyhow::Result<usize> {
    Ok(client.stats().await?["workers"]
        .as_array()
        .map_or(0, Vec::len))
}

fn progress_bar(args: &HopArgs) -> indicatif::ProgressBar {
    if args.quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(args.tasks);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} tasks {per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Puts `count` tasks in batches, at full load (bounded by the window) or at the
/// offered rate's share of this producer.
async fn produce(
    endpoint: &str,
    count: u64,
    args: &HopArgs,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let mut client = Client::connect(endpoint).await?;
    let rate_share = args.rate.map(|r| r as f64 / args.producers as f64);
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        let mut n = (args.batch as u64).min(count - sent);
        match rate_share {
            Some(rate) => {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                if due <= sent {
                    let wait = (sent + 1) as f64 / rate - started.elapsed().as_secs_f64();
                    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0005))).await;
                    continue;
                }
                n = n.min(due - sent);
            }
            None => {
                while window_full(recorder, args) {
                    let notified = recorder.progress.notified();
                    // Delivery may have caught up between the check and the wait.
                    let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
                }
            }
        }
        let t = recorder.origin.elapsed().as_micros() as u64;
        let tasks: Vec<NewTask> = (0..n)
            .map(|_| NewTask::new("hop", json!({ "t": t })))
            .collect();
        client.put(&tasks).await?;
        PUT.fetch_add(n, Ordering::Relaxed);
        sent += n;
    }
    Ok(())
}

static PUT: AtomicU64 = AtomicU64::new(0);

/// Whether the tasks put but not yet delivered fill the window.
fn window_full(recorder: &Recorder, args: &HopArgs) -> bool {
    PUT.load(Ordering::Relaxed)
        .saturating_sub(recorder.delivered.load(Ordering::Relaxed))
        >= args.window
}

/// One line for people.
pub fn summary(report: &HopReport) -> String {
    format!(
        "hop: {} tasks through {} workers ({}{}) in {:.2} s: {:.0} tasks/s, latency p50 {:.2} ms, p99 {:.2} ms",
        report.tasks,
        report.workers,
        if report.durable { "durable" } else { "in-memory" },
        report.offered_rate.map(|r| format!(", offered {r}/s")).unwrap_or_default(),
        report.seconds,
        report.tasks_per_s,
        report.p50_ms,
        report.p99_ms
    ) + &report.store_bytes.map(|b| format!(", store {:.1} MiB after the run", b as f64 / 1048576.0)).unwrap_or_default()
}
