//! Brokers and workers started in-process on port 0, and small waiting helpers.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use taskbus::broker::{Broker, Endpoints};
use taskbus::client::Client;
use taskbus::config::{Config, StoreKind};
use taskbus::storer::StorerConfig;
use taskbus::worker::{self, Stage, WorkerOptions, WorkerSummary};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A configuration for tests: loopback port 0, memory store, fast heartbeats, retries
/// without backoff (the backoff has tests of its own).
pub fn config(edit: impl FnOnce(&mut Config)) -> Arc<Config> {
    let mut config = Config::default();
    config.broker.use_ephemeral_loopback();
    config.http.listen = "127.0.0.1:0".into();
    config.broker.heartbeat_interval_secs = 0.25;
    config.broker.retry_backoff_secs = 0.0;
    config.store.kind = StoreKind::Memory;
    config.worker.reconnect_min_secs = 0.05;
    config.worker.reconnect_max_secs = 0.4;
    config.worker.shutdown_grace_secs = 2.0;
    edit(&mut config);
    Arc::new(config)
}

/// A broker running in this process.
pub struct TestBroker {
    pub endpoints: Endpoints,
    pub config: Arc<Config>,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl TestBroker {
    pub async fn start(config: Arc<Config>) -> TestBroker {
        Self::start_with_clock(config, None).await
    }

    /// Starts a broker whose scheduler reads `clock`.
    pub async fn start_with_clock(
        config: Arc<Config>,
        clock: Option<Arc<dyn taskbus::broker::schedule::Clock>>,
    ) -> TestBroker {
        let mut broker = bind(&config).await;
        if let Some(clock) = clock {
            broker = broker.with_clock(clock);
        }
        let endpoints = broker.endpoints().clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move { broker.run(token).await.expect("broker runs") });
        TestBroker {
            endpoints,
            config,
            stop,
            handle,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.endpoints.client)
            .await
            .expect("client connects")
    }

    /// Stops the broker and waits until it has released its sockets.
    pub async fn stop(self) {
        self.stop.cancel();
        self.handle.await.expect("broker task");
    }

    /// Options for a worker of this broker.
    pub fn worker_options(&self, stage: &str, topics: &[&str], capacity: u32) -> WorkerOptions {
        let mut options = WorkerOptions::from_config(
            &self.config,
            stage,
            topics.iter().map(|t| t.to_string()).collect(),
            capacity,
        );
        options.endpoint = self.endpoints.worker.clone();
        options
    }
}

/// Binds a broker. A broker restarted in this process on the endpoints of one that
/// just stopped may find them still held: the old listeners close on their own
/// tasks once the stop reaches them, so binding is tried again (yielding to those
/// tasks) until they have.
async fn bind(config: &Arc<Config>) -> Broker {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Broker::bind(config.clone()).await {
            Ok(broker) => return broker,
            Err(error)
                if error.to_string().contains("Address already in use")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::task::yield_now().await
            }
            Err(error) => panic!("broker binds: {error:?}"),
        }
    }
}

/// A worker runtime running in this process.
pub struct TestWorker {
    stop: CancellationToken,
    handle: JoinHandle<WorkerSummary>,
}

impl TestWorker {
    pub fn start(options: WorkerOptions, stage: Arc<dyn Stage>) -> TestWorker {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(worker::run(options, stage, stop.clone()));
        TestWorker { stop, handle }
    }

    pub async fn stop(self) -> WorkerSummary {
        self.stop.cancel();
        self.handle.await.expect("worker task")
    }
}

/// Asks the broker until `check` holds on the `stats` reply (each try is a round
/// trip, not a sleep); panics after `limit`.
pub async fn until_stats(
    client: &mut Client,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let stats = client.stats().await.expect("stats");
        if check(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}; last stats: {stats}"
        );
        tokio::task::yield_now().await;
    }
}

/// Takes tasks from `topic` with `get_task` until one comes (or panics after `limit`).
pub async fn take_one(client: &mut Client, topic: &str, limit: Duration) -> taskbus::task::Task {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut tasks = client.get_task(topic, 1).await.expect("get_task");
        if let Some(task) = tasks.pop() {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no task on {topic} within {limit:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// A configuration with the SQLite store in `dir`.
pub fn durable_config(dir: &std::path::Path, edit: impl FnOnce(&mut Config)) -> Arc<Config> {
    config(|c| {
        c.store.kind = StoreKind::Sqlite;
        c.store.data_dir = dir.to_owned();
        edit(c)
    })
}

/// The `test` database of the local MariaDB (root, no password).
pub const MARIADB_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A storer configuration for the local MariaDB, or None (after a `skipped:` line)
/// when no server answers; under `CI=true` a missing server fails the test.
pub async fn mariadb_storer() -> Option<StorerConfig> {
    match mysql_async::Conn::from_url(MARIADB_URL).await {
        Ok(conn) => {
            let _ = conn.disconnect().await;
            Some(StorerConfig {
                url: MARIADB_URL.into(),
                ..StorerConfig::default()
            })
        }
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("MariaDB at {MARIADB_URL} is required under CI=true: {error}")
        }
        Err(error) => {
            eprintln!("skipped: MariaDB at {MARIADB_URL} not reachable: {error}");
            None
        }
    }
}

/// A port free at the time of the call, for tests that restart a broker in place.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fixed endpoints on three free ports.
pub fn fixed_endpoints() -> impl Fn(&mut Config) + Copy {
    let (client, worker, events) = (free_port(), free_port(), free_port());
    move |c: &mut Config| {
        c.broker.client_endpoint = format!("tcp://127.0.0.1:{client}");
        c.broker.worker_endpoint = format!("tcp://127.0.0.1:{worker}");
        c.broker.events_endpoint = format!("tcp://127.0.0.1:{events}");
    }
}

/// The number of registered workers in a `stats` reply.
pub fn n_workers(stats: &Value) -> usize {
    stats["workers"].as_array().map_or(0, Vec::len)
}

/// A counter of one topic in a `stats` reply.
pub fn topic_count(stats: &Value, topic: &str, counter: &str) -> u64 {
    stats["topics"][topic][counter].as_u64().unwrap_or(0)
}
