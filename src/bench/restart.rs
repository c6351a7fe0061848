//! `taskbus-bench restart`: how long a broker takes to serve again with N ready
//! tasks in its store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::broker::Broker;
use crate::client::Client;
use crate::config::{Config, StoreKind};
use crate::store::sqlite::SqliteStore;
use crate::store::{compact, StoreOp, StoredState, TaskRecord};

/// Flags of `taskbus-bench restart`.
#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// Ready tasks in the store before the start.
    #[arg(long, default_value_t = 1_000_000)]
    pub tasks: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    pub tasks: u64,
    /// From the start of `Broker::bind` to the first `get_size` reply counting them all.
    pub serve_again_s: f64,
    pub store_bytes: u64,
}

/// Fills a store, starts a broker on it and times until it answers.
pub async fn run(args: &RestartArgs) -> anyhow::Result<RestartReport> {
    let data_dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.broker.use_ephemeral_loopback();
    config.store.kind = StoreKind::Sqlite;
    config.store.data_dir = data_dir.path().to_owned();
    let config = Arc::new(config);
    fill(&config, args.tasks)?;
    let store_bytes = super::hop::dir_bytes(data_dir.path());

    let started = Instant::now();
    let broker = Broker::bind(config.clone()).await?;
    let endpoint = broker.endpoints().client.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn(broker.run(stop.clone()));
    let mut client = Client::connect(&endpoint)
        .await?
        .with_timeout(std::time::Duration::from_secs(60));
    let size = client.get_size("restart").await?;
    let serve_again_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        size == Some(args.tasks),
        "the broker counts {size:?} ready tasks, expected {}",
        args.tasks
    );
    stop.cancel();
    task.await??;
    Ok(RestartReport {
        tasks: args.tasks,
        serve_again_s,
        store_bytes,
    })
}

/// Writes `n` ready tasks straight into the store, in large batches.
fn fill(config: &Config, n: u64) -> anyhow::Result<()> {
    let mut store = SqliteStore::open(&config.store)?;
    let mut written = 0;
    while written < n {
        let batch = (n - written).min(50_000);
        let ops = (written..written + batch)
            .map(|i| {
                StoreOp::Upsert(TaskRecord {
                    guid: format!("restart-{i}"),
                    topic: "restart".into(),
                    body: Body::from_value(
                        &json!({"url": format!("https://example.com/item/{i}"), "page": i}),
                    ),
                    attempt: 0,
                    state: StoredState::Ready,
                    timeout: None,
                    max_retry: None,
                    last_error: None,
                    created_at_ms: 0,
                })
            })
            .collect();
        store.commit(&compact(ops))?;
        written += batch;
    }
    Ok(())
}

/// One line for people.
pub fn summary(report: &RestartReport) -> String {
    format!(
        "restart: {} ready tasks ({:.1} MiB store): serving again after {:.2} s",
        report.tasks,
        report.store_bytes as f64 / 1048576.0,
        report.serve_again_s
    )
}
