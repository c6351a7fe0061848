//! `taskbus-bench http`: the seed's client loop over HTTP. Tasks are put, then N
//! clients on keep-alive connections take them with `POST /api` `get_task` and
//! finish them with `ack`, as a script in any language would. Reports tasks/s and
//! the latency of each request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::accounts::{Accounts, Role};
use crate::broker::Broker;
use crate::client::Client;
use crate::config::{Config, StoreKind};
use crate::task::NewTask;

/// Flags of `taskbus-bench http`.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Tasks to take and ack.
    #[arg(long, default_value_t = 200_000)]
    pub tasks: u64,
    /// Concurrent HTTP clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// `count` of each `get_task` (the guids of one reply are acked in one request).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Serve with `[http] auth = false` (no bearer token checked per request).
    #[arg(long)]
    pub no_auth: bool,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    pub tasks: u64,
    pub connections: usize,
    pub batch: usize,
    pub auth: bool,
    pub seconds: f64,
    pub tasks_per_s: f64,
    pub requests_per_s: f64,
    pub request_p50_ms: f64,
    pub request_p99_ms: f64,
}

/// Starts a broker with its HTTP face, fills a topic and drains it over HTTP.
pub async fn run(args: &HttpArgs) -> anyhow::Result<HttpReport> {
    anyhow::ensure!(
        args.connections > 0 && args.batch > 0,
        "--connections and --batch must be positive"
    );
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.broker.use_ephemeral_loopback();
    config.store.kind = StoreKind::Memory;
    config.store.data_dir = dir.path().to_owned();
    config.http.listen = "127.0.0.1:0".into();
    config.http.auth = !args.no_auth;
    let config = Arc::new(config);
    let accounts = Accounts::open(&config.http.accounts_file(dir.path()))?;
    let token = accounts.create_token("bench", Role::Worker)?;

    let broker = Broker::bind(config.clone()).await?;
    let endpoint = broker.endpoints().client.clone();
    let stop = CancellationToken::new();
    let http = crate::http::start(
        &config.http,
        dir.path(),
        crate::run::http_limits(&config),
        broker.caller(),
        crate::http::Pages::default(),
        stop.clone(),
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("the HTTP face did not start"))?;
    let broker_task = tokio::spawn(broker.run(stop.clone()));
    fill(&endpoint, args.tasks).await?;

    let url = format!("http://{}/api", http.address);
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let (url, token, latencies) = (url.clone(), token.clone(), latencies.clone());
        let batch = args.batch;
        clients.push(tokio::spawn(async move {
            drain(&url, &token, batch, &latencies).await
        }));
    }
    let mut taken = 0;
    let mut requests = 0;
    for client in clients {
        let (n_tasks, n_requests) = client.await??;
        taken += n_tasks;
        requests += n_requests;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    broker_task.await??;
    anyhow::ensure!(
        taken == args.tasks,
        "took {taken} tasks, put {}",
        args.tasks
    );
    let latencies = latencies.lock().unwrap_or_else(|p| p.into_inner());
    Ok(HttpReport {
        tasks: taken,
        connections: args.connections,
        batch: args.batch,
        auth: !args.no_auth,
        seconds,
        tasks_per_s: taken as f64 / seconds,
        requests_per_s: requests as f64 / seconds,
        request_p50_ms: latencies.value_at_quantile(0.5) as f64 / 1000.0,
        request_p99_ms: latencies.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// Puts `n` small tasks on topic `http` over ZeroMQ.
async fn fill(endpoint: &str, n: u64) -> anyhow::Result<()> {
    let mut client = Client::connect(endpoint).await?;
    let mut put = 0;
    while put < n {
        let batch = (n - put).min(1000);
        let tasks: Vec<NewTask> = (put..put + batch)
            .map(|i| {
                NewTask::new(
                    "http",
                    json!({"url": format!("https://example.com/item/{i}")}),
                )
            })
            .collect();
        client.put(&tasks).await?;
        put += batch;
    }
    Ok(())
}

/// One client's loop: `get_task`, then `ack` what came, until the topic is empty.
/// Returns the tasks taken and the requests sent.
async fn drain(
    url: &str,
    token: &str,
    batch: usize,
    latencies: &Mutex<Histogram<u64>>,
) -> anyhow::Result<(u64, u64)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let (mut taken, mut requests) = (0u64, 0u64);
    let mut local = Histogram::<u64>::new(3)?;
    loop {
        let request = json!({"type": "get_task", "topic": "http", "count": batch});
        let tasks = post(&http, url, token, &request, &mut local).await?;
        requests += 1;
        let guids: Vec<&str> = tasks
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("get_task answered {tasks}"))?
            .iter()
            .filter_map(|t| t["guid"].as_str())
            .collect();
        if guids.is_empty() {
            break;
        }
        let acked = post(
            &http,
            url,
            token,
            &json!({"type": "ack", "guids": guids}),
            &mut local,
        )
        .await?;
        requests += 1;
        anyhow::ensure!(acked["acked"] == json!(guids.len()), "ack answered {acked}");
        taken += guids.len() as u64;
    }
    latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .add(&local)?;
    Ok((taken, requests))
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    latencies: &mut Histogram<u64>,
) -> anyhow::Result<Value> {
    let sent = Instant::now();
    let reply: Value = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    latencies.record(sent.elapsed().as_micros().max(1) as u64)?;
    Ok(reply)
}

/// One line for people.
pub fn summary(report: &HttpReport) -> String {
    format!(
        "http: {} tasks taken and acked by {} keep-alive clients (get_task count {}, auth {}) in {:.2} s: {:.0} tasks/s, {:.0} requests/s; request p50 {:.2} ms, p99 {:.2} ms",
        report.tasks,
        report.connections,
        report.batch,
        if report.auth { "on" } else { "off" },
        report.seconds,
        report.tasks_per_s,
        report.requests_per_s,
        report.request_p50_ms,
        report.request_p99_ms
    )
}
