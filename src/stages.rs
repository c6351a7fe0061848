//! The stages a worker process can run, by name, and the worker options of one
//! `[[workers]]` entry: here the whole `Config` is taken apart into the sections each
//! stage and the worker runtime receive.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, WorkerSpec};
use crate::worker::{echo::Echo, Stage, WorkerOptions};

/// Names of the built-in stages.
pub const STAGES: &[&str] = &["echo", "executor", "fetcher", "parser", "storer", "package"];

/// Builds the stage a `[[workers]]` entry names (opening what it needs: HTTP
/// clients, database connections).
pub async fn build(spec: &WorkerSpec, config: &Config) -> anyhow::Result<Arc<dyn Stage>> {
    match spec.stage.as_str() {
        "echo" => Ok(Arc::new(Echo {
            forward: spec.next_topic.is_some(),
        })),
        "executor" | "fetcher" | "parser" => crate::crawl::stage::build(spec, &config.crawl).await,
        "storer" => crate::storer::stage::build(spec, &config.storer).await,
        "package" => {
            let grace = Duration::from_secs_f64(config.worker.shutdown_grace_secs);
            crate::packager::stage::build(spec, &config.packager, grace).await
        }
        other => anyhow::bail!(
            "unknown stage \"{other}\", expected one of {}",
            STAGES.join(", ")
        ),
    }
}

impl WorkerOptions {
    /// Options from `config` for one worker of `stage` on `topics`: the worker
    /// endpoint (`[worker]`, else `[broker]`), the broker's heartbeat, and
    /// `[worker]`'s reconnect bounds and shutdown grace.
    pub fn from_config(
        config: &Config,
        stage: &str,
        topics: Vec<String>,
        capacity: u32,
    ) -> WorkerOptions {
        WorkerOptions {
            endpoint: config.worker_connect_endpoint().to_owned(),
            identity: format!("{stage}-{}", &crate::task::new_guid()[..8]),
            stage: stage.to_owned(),
            topics,
            capacity,
            next_topic: None,
            token: config.auth.worker_token(),
            heartbeat_interval: config.broker.heartbeat_interval(),
            heartbeat_liveness: config.broker.heartbeat_liveness,
            reconnect_min: Duration::from_secs_f64(config.worker.reconnect_min_secs),
            reconnect_max: Duration::from_secs_f64(config.worker.reconnect_max_secs),
            shutdown_grace: Duration::from_secs_f64(config.worker.shutdown_grace_secs),
        }
    }
}
