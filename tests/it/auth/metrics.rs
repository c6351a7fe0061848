//! ZeroMQ refusals as `/metrics` shows them.

use serde_json::json;
use taskbus::accounts::Role;
use taskbus::broker::Broker;
use tokio_util::sync::CancellationToken;

use super::{guarded, Caller};

/// The value of the line of `metrics` that starts with `name`.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

#[tokio::test]
async fn metrics_count_the_refused_zeromq_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (config, accounts) = guarded(dir.path());
    let viewer = accounts.create_token("looker", Role::Viewer).unwrap();
    let broker = Broker::bind(config.clone()).await.unwrap();
    let stop = CancellationToken::new();
    let limits = taskbus::run::http_limits(&config);
    let http = taskbus::http::start(
        &config.http,
        dir.path(),
        limits,
        broker.caller(),
        taskbus::http::Pages::default(),
        stop.clone(),
    )
    .await
    .unwrap()
    .expect("http is on");
    let endpoints = broker.endpoints().clone();
    let broker_task = tokio::spawn(broker.run(stop.clone()));
    let scrape = || async {
        reqwest::Client::new()
            .get(format!("http://{}/metrics", http.address))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let name = "taskbus_zmq_refused_total{code=\"forbidden\"}";
    let before = sample(&scrape().await, name);
    let mut caller = Caller::connect_to(&endpoints.client).await;
    let reply = caller
        .call(json!({"type": "dead_purge"}), Some(&viewer))
        .await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
    assert!(sample(&scrape().await, name) > before);
    stop.cancel();
    broker_task.await.unwrap().unwrap();
}
