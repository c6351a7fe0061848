//! `taskbus run`: the broker and every configured worker in one process (the seed's
//! `run.py`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, Endpoints};
use crate::config::Config;
use crate::worker::{self, WorkerOptions};

/// The broker and workers of one process, running.
pub struct Running {
    pub endpoints: Endpoints,
    workers: TaskTracker,
    workers_stop: CancellationToken,
    broker: tokio::task::JoinHandle<Result<(), crate::broker::BrokerError>>,
    broker_stop: CancellationToken,
    grace: Duration,
}

/// Starts the broker and the `[[workers]]` of `config`.
pub async fn start(config: Arc<Config>) -> anyhow::Result<Running> {
    let broker = Broker::bind(config.clone()).await?;
    let endpoints = broker.endpoints().clone();
    let broker_stop = CancellationToken::new();
    let broker_task = tokio::spawn(broker.run(broker_stop.clone()));
    let workers = TaskTracker::new();
    let workers_stop = CancellationToken::new();
    for spec in &config.workers {
        let stage = crate::stages::build(spec, &config).await?;
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
    Ok(Running {
        endpoints,
        workers,
        workers_stop,
        broker: broker_task,
        broker_stop,
        grace: Duration::from_secs_f64(config.worker.shutdown_grace_secs + 1.0),
    })
}

impl Running {
    /// Stops the workers first (so they can hand their results to a broker that
    /// still listens), then the broker.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.workers_stop.cancel();
        if tokio::time::timeout(self.grace, self.workers.wait())
            .await
            .is_err()
        {
            log::warn!("workers did not stop within {:?}", self.grace);
        }
        self.broker_stop.cancel();
        self.broker.await??;
        Ok(())
    }
}

/// Runs everything until `shutdown` is cancelled.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let running = start(config).await?;
    shutdown.cancelled().await;
    running.stop().await
}
