//! `taskbus-bench package --redis`: the packager's Redis intake end to end. N tasks of
//! the seed's format are pushed to `redis_key` of a live Redis; the clock runs from the
//! first push to the last notice received by an in-process receiver that answers
//! `success` after `--notice-delay-ms`.
//!
//! Run with: `taskbus-bench package --redis [--small-count 1000] [--notice-delay-ms 100,0]
//! [--runs 5] [--redis-port 6379]`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::PackageBenchArgs;
use crate::packager::{run_with, Packager, PackagerConfig, PackagerEvent, TaskType};

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct RedisRun {
    /// How long the receiver took to answer each notice.
    pub notice_delay_ms: u64,
    /// First push to last notice received.
    pub seconds: f64,
    pub packages_per_s: f64,
}

/// Every run of `--redis`.
#[derive(Debug, Clone, Serialize)]
pub struct RedisBenchReport {
    pub tasks: usize,
    pub apk_bytes: u64,
    pub packet_count: usize,
    pub message_count: usize,
    pub notice_concurrency: usize,
    pub fsync: bool,
    pub runs: Vec<RedisRun>,
}

/// Runs every delay `--runs` times and prints one line per run and a summary.
pub async fn run(args: &PackageBenchArgs, small: &Path) -> anyhow::Result<RedisBenchReport> {
    anyhow::ensure!(args.small_count > 0, "--small-count must be at least 1");
    let work = tempfile::tempdir().context("creating the bench directory")?;
    let base = bench_config(args, work.path())?;
    let mut report = RedisBenchReport {
        tasks: args.small_count,
        apk_bytes: std::fs::metadata(small)?.len(),
        packet_count: base.packet_count,
        message_count: base.message_count,
        notice_concurrency: base.notice_concurrency,
        fsync: base.fsync,
        runs: Vec::new(),
    };
    let mut run_number = 0;
    for &delay_ms in &args.notice_delay_ms {
        for i in 0..args.runs {
            run_number += 1;
            let game = format!("bench{run_number}");
            let mother = base.sdk_game_path.join(&game).join(format!("{game}.apk"));
            std::fs::create_dir_all(mother.parent().unwrap())?;
            std::fs::copy(small, &mother)
                .with_context(|| format!("copying {}", small.display()))?;
            let seconds = one_run(&base, &game, args.small_count, delay_ms).await?;
            let packages_per_s = args.small_count as f64 / seconds;
            println!(
                "redis intake: {} packages, notice delay {delay_ms} ms, run {}: {seconds:.2} s ({packages_per_s:.0}/s)",
                args.small_count,
                i + 1
            );
            report.runs.push(RedisRun {
                notice_delay_ms: delay_ms,
                seconds,
                packages_per_s,
            });
        }
    }
    for &delay_ms in &args.notice_delay_ms {
        let times: Vec<f64> = report
            .runs
            .iter()
            .filter(|r| r.notice_delay_ms == delay_ms)
            .map(|r| r.seconds)
            .collect();
        let (min, max) = times
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        println!(
            "notice delay {delay_ms} ms: {:.2}-{:.2} s over {} runs (packet_count {}, fsync {})",
            min,
            max,
            times.len(),
            report.packet_count,
            report.fsync
        );
    }
    Ok(report)
}

/// Each run packages a mother of its own (`bench<n>`) into a new directory, and no
/// package is deleted before the end: on ext4, creating files right after deleting as
/// many costs a scan of the recently deleted inodes per file, which the packager
/// meets nowhere else.
fn bench_config(args: &PackageBenchArgs, work: &Path) -> anyhow::Result<PackagerConfig> {
    let defaults = PackagerConfig::default();
    Ok(PackagerConfig {
        task_type: TaskType::Redis,
        redis_host: args.redis_host.clone(),
        redis_port: args.redis_port,
        sdk_game_path: work.join("sdkgame"),
        packet_count: args.packet_count.unwrap_or(defaults.packet_count),
        fsync: !args.no_fsync,
        redis_sleep_time: 0.5,
        ..defaults
    })
}

/// One run on fresh keys: start the packager, push, wait for the last notice, stop.
async fn one_run(
    base: &PackagerConfig,
    game: &str,
    tasks: usize,
    delay_ms: u64,
) -> anyhow::Result<f64> {
    let prefix = format!("taskbus-bench:{}", uuid::Uuid::new_v4().simple());
    let receiver = Receiver::start(tasks, Duration::from_millis(delay_ms)).await?;
    let cfg = PackagerConfig {
        redis_key: format!("{prefix}:task"),
        redis_retry_key: format!("{prefix}:task:retry"),
        task_schedule_key: format!("{prefix}:task:schedule:task"),
        upload_file_schedule_key: format!("{prefix}:task:schedule:uploadfile"),
        notice_key: format!("{prefix}:task:schedule:notice"),
        ..base.clone()
    };
    // RedisError's message already holds its cause: a message, not a chain.
    let at = |e: redis::RedisError| {
        anyhow::anyhow!(
            "redis {}:{} (the bench needs it): {e}",
            cfg.redis_host,
            cfg.redis_port
        )
    };
    let client = crate::packager::queue::redis_client(&cfg).map_err(at)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(at)?;
    let packager = Arc::new(Packager::new(cfg.clone()).await?);
    let mut events = packager.subscribe();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run_with(packager, shutdown.clone()));
    // Started once the last processing list is resumed.
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(PackagerEvent::Resumed { list, .. })) if list == cfg.notice_key => break,
            Ok(Ok(_)) => {}
            _ => anyhow::bail!("the packager did not start"),
        }
    }
    let started = Instant::now();
    let mut push = redis::pipe();
    for i in 0..tasks {
        let task = serde_json::json!({
            "filename": game, "channel_id": i,
            "extend": {"channel_version": "1.0"},
            "finish_notice_url": receiver.url,
        });
        push.rpush(&cfg.redis_key, task.to_string()).ignore();
    }
    let _: () = push.query_async(&mut conn).await.map_err(at)?;
    let all = tokio::time::timeout(Duration::from_secs(600), receiver.all.notified()).await;
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await??;
    all.context("not every notice arrived within 600 s")?;
    let _: () = redis::cmd("DEL")
        .arg(cfg.rejected_key())
        .arg(&cfg.redis_retry_key)
        .query_async(&mut conn)
        .await
        .map_err(at)?;
    Ok(seconds)
}

/// The notice receiver: answers `success` after `delay`; `all` fires at the N-th notice.
struct Receiver {
    url: String,
    all: Arc<Notify>,
}

struct Counter {
    seen: AtomicUsize,
    want: usize,
    delay: Duration,
    all: Arc<Notify>,
}

impl Receiver {
    async fn start(want: usize, delay: Duration) -> anyhow::Result<Self> {
        let all = Arc::new(Notify::new());
        let counter = Arc::new(Counter {
            seen: AtomicUsize::new(0),
            want,
            delay,
            all: Arc::clone(&all),
        });
        let app = axum::Router::new()
            .route("/notice", axum::routing::post(answer))
            .with_state(counter);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/notice", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, all })
    }
}

async fn answer(axum::extract::State(counter): axum::extract::State<Arc<Counter>>) -> &'static str {
    if !counter.delay.is_zero() {
        tokio::time::sleep(counter.delay).await;
    }
    if counter.seen.fetch_add(1, Ordering::SeqCst) + 1 == counter.want {
        counter.all.notify_one();
    }
    "success"
}
