//! `taskbus-worker`: runs one or more stages as DEALER workers of a broker.

// glibc's malloc costs a fifth of the broker's time under load; mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use taskbus::cli::{exit_with, shutdown_signal, CommonArgs};
use taskbus::config::WorkerSpec;
use taskbus::worker::{self, WorkerOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Parser)]
#[command(
    name = "taskbus-worker",
    version,
    about = "Runs taskbus stages as workers"
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Stage to run (repeatable); without it, every [[workers]] entry of the config runs.
    #[arg(long = "stage")]
    stages: Vec<String>,
    /// Topics the --stage workers take (repeatable; default: the stage's name).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Tasks one worker may hold at once.
    #[arg(long, default_value_t = 16)]
    capacity: u32,
    /// Topic for the stage's output envelopes that name no callback topic.
    #[arg(long)]
    next_topic: Option<String>,
    /// Workers per stage.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// The broker's worker endpoint (default: [worker] broker_endpoint or [broker] worker_endpoint).
    #[arg(long)]
    endpoint: Option<String>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = real_main(cli).await {
        exit_with(error);
    }
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    let config = cli.common.setup()?;
    let specs: Vec<WorkerSpec> = if cli.stages.is_empty() {
        anyhow::ensure!(
            !config.workers.is_empty(),
            "no --stage given and no [[workers]] in the config"
        );
        config.workers.clone()
    } else {
        cli.stages
            .iter()
            .map(|stage| WorkerSpec {
                stage: stage.clone(),
                topics: if cli.topics.is_empty() {
                    vec![stage.clone()]
                } else {
                    cli.topics.clone()
                },
                capacity: cli.capacity,
                count: cli.count,
                next_topic: cli.next_topic.clone(),
            })
            .collect()
    };
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    for spec in &specs {
        let stage = taskbus::stages::build(spec, &config).await?;
        for _ in 0..spec.count {
            let mut options = WorkerOptions::from_config(
                &config,
                &spec.stage,
                spec.topics.clone(),
                spec.capacity,
            );
            if let Some(endpoint) = &cli.endpoint {
                options.endpoint = endpoint.clone();
            }
            options.next_topic = spec.next_topic.clone();
            log::info!(
                "worker={} stage={} topics={:?} connecting to {}",
                options.identity,
                spec.stage,
                spec.topics,
                options.endpoint
            );
            tracker.spawn(worker::run(options, stage.clone(), shutdown.clone()));
        }
    }
    tracker.close();
    let signal = shutdown_signal().await;
    taskbus::cli::on_signal(signal, &config).await;
    shutdown.cancel();
    tracker.wait().await;
    Ok(())
}
