//! `taskbus-bench memory`: what a queued task costs the broker. Puts N tasks of about
//! `--bytes` each (the task map as it goes on the wire: topic and body), and prints
//! the broker's RSS growth over the payload. With `--durable`, a second process then
//! restores the same store and reports the same ratio after a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::client::Client;
use crate::config::{Config, StoreKind};
use crate::task::NewTask;

/// Flags of `taskbus-bench memory`.
#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    /// Tasks to queue.
    #[arg(long, default_value_t = 1_000_000)]
    pub tasks: u64,
    /// Size of one task on the wire (MessagePack map of topic and body), in bytes.
    #[arg(long, default_value_t = 200)]
    pub bytes: usize,
    /// Keep the queues in SQLite and measure a restart from it too.
    #[arg(long)]
    pub durable: bool,
    /// (Internal) restore the store in this directory and measure; used by --durable.
    #[arg(long, hide = true)]
    pub restore: Option<PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MemoryReport {
    pub tasks: u64,
    pub payload_bytes: u64,
    pub rss_growth_bytes: u64,
    /// RSS growth over the payload.
    pub ratio: f64,
    pub put_s: f64,
    /// The same after a restart from the store (with --durable).
    pub restored_rss_growth_bytes: Option<u64>,
    pub restored_ratio: Option<f64>,
    pub restore_s: Option<f64>,
}

const TOPIC: &str = "memory";

/// The resident set size of this process, from /proc.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn config(dir: Option<&Path>) -> Arc<Config> {
    let mut config = Config::default();
    config.broker.use_ephemeral_loopback();
    match dir {
        Some(dir) => {
            config.store.kind = StoreKind::Sqlite;
            config.store.data_dir = dir.to_owned();
        }
        None => config.store.kind = StoreKind::Memory,
    }
    Arc::new(config)
}

/// A task whose wire form is `bytes` long.
fn task(i: u64, bytes: usize) -> (NewTask, usize) {
    let mut filler = String::new();
    loop {
        let body =
            json!({"url": format!("https://example.com/item/{i}"), "page": i, "pad": filler});
        let task = NewTask::new(TOPIC, body);
        let size = rmp_serde::to_vec_named(&task).map_or(0, |b| b.len());
        if size >= bytes {
            return (task, size);
        }
        filler.push_str(&"x".repeat(bytes - size));
    }
}

/// Runs the mode.
pub async fn run(args: &MemoryArgs) -> anyhow::Result<MemoryReport> {
    if let Some(dir) = &args.restore {
        return restore(dir, args).await;
    }
    let dir = tempfile::tempdir()?;
    let config = config(args.durable.then(|| dir.path()));
    let before = rss_bytes();
    let broker = Broker::bind(config).await?;
    let endpoint = broker.endpoints().client.clone();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(broker.run(stop.clone()));
    let mut client = Client::connect(&endpoint)
        .await?
        .with_timeout(Duration::from_secs(60));
    let started = Instant::now();
    let mut payload = 0u64;
    let mut put = 0u64;
    while put < args.tasks {
        let n = (args.tasks - put).min(2_000);
        let batch: Vec<NewTask> = (put..put + n)
            .map(|i| {
                let (task, size) = task(i, args.bytes);
                payload += size as u64;
                task
            })
            .collect();
        client.put(&batch).await?;
        put += n;
    }
    let put_s = started.elapsed().as_secs_f64();
    let size = client.get_size(TOPIC).await?;
    anyhow::ensure!(
        size == Some(args.tasks),
        "queued {size:?}, expected {}",
        args.tasks
    );
    // The client's own buffers are small and freed; what grew is the broker.
    let growth = rss_bytes().saturating_sub(before);
    drop(client);
    stop.cancel();
    handle.await??;
    let mut report = MemoryReport {
        tasks: args.tasks,
        payload_bytes: payload,
        rss_growth_bytes: growth,
        ratio: growth as f64 / payload.max(1) as f64,
        put_s,
        restored_rss_growth_bytes: None,
        restored_ratio: None,
        restore_s: None,
    };
    if args.durable {
        let exe = std::env::current_exe()?;
        let output = std::process::Command::new(exe)
            .args(["memory", "--tasks", &args.tasks.to_string()])
            .args(["--bytes", &args.bytes.to_string(), "--restore"])
            .arg(dir.path())
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "restore run failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let restored: MemoryReport = serde_json::from_slice(&output.stdout)?;
        report.restored_rss_growth_bytes = Some(restored.rss_growth_bytes);
        report.restored_ratio = Some(restored.rss_growth_bytes as f64 / payload.max(1) as f64);
        report.restore_s = restored.restore_s;
    }
    Ok(report)
}

/// The second process of `--durable`: restores the store and measures.
async fn restore(dir: &Path, args: &MemoryArgs) -> anyhow::Result<MemoryReport> {
    let before = rss_bytes();
    let started = Instant::now();
    let broker = Broker::bind(config(Some(dir))).await?;
    let endpoint = broker.endpoints().client.clone();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(broker.run(stop.clone()));
    let mut client = Client::connect(&endpoint)
        .await?
        .with_timeout(Duration::from_secs(120));
    let size = client.get_size(TOPIC).await?;
    let restore_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        size == Some(args.tasks),
        "restored {size:?}, expected {}",
        args.tasks
    );
    let growth = rss_bytes().saturating_sub(before);
    drop(client);
    stop.cancel();
    handle.await??;
    let report = MemoryReport {
        tasks: args.tasks,
        payload_bytes: 0,
        rss_growth_bytes: growth,
        ratio: 0.0,
        put_s: 0.0,
        restored_rss_growth_bytes: None,
        restored_ratio: None,
        restore_s: Some(restore_s),
    };
    println!("{}", serde_json::to_string(&report)?);
    std::process::exit(0);
}

/// One line for people.
pub fn summary(report: &MemoryReport) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut line = format!(
        "memory: {} tasks, payload {:.1} MiB, broker RSS +{:.1} MiB = {:.2}x the payload (put in {:.1} s)",
        report.tasks,
        mib(report.payload_bytes),
        mib(report.rss_growth_bytes),
        report.ratio,
        report.put_s
    );
    if let (Some(growth), Some(ratio), Some(secs)) = (
        report.restored_rss_growth_bytes,
        report.restored_ratio,
        report.restore_s,
    ) {
        line.push_str(&format!(
            "; after a restart: +{:.1} MiB = {ratio:.2}x, serving again in {secs:.2} s",
            mib(growth)
        ));
    }
    line
}
