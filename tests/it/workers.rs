//! Workers: READY and credit, DONE routing, FAIL and retries, dead workers, and
//! reconnecting after the broker restarts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use taskbus::task::{NewTask, Task};
use taskbus::worker::echo::Echo;
use taskbus::worker::{Stage, StageError};
use zeromq::prelude::*;
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, SocketOptions, ZmqMessage};

use crate::common::{
    config, fixed_endpoints, n_workers, take_one, topic_count, until_stats, TestBroker, TestWorker,
};

const LIMIT: Duration = Duration::from_secs(10);

fn echo(forward: bool) -> Arc<dyn Stage> {
    Arc::new(Echo { forward })
}

#[tokio::test]
async fn tasks_flow_stage_by_stage_to_next_topic_or_callback_topic() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut options = broker.worker_options("echo", &["stage_a"], 4);
    options.next_topic = Some("stage_b".into());
    let worker = TestWorker::start(options, echo(true));
    let mut client = broker.client().await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;

    let plain = json!({"n": 1});
    let seed = json!({"topic": "jm_crawl", "n": 2, "callback": {"topic": "parsing"}});
    let guids = client
        .put(&[
            NewTask::new("stage_a", plain.clone()),
            NewTask::new("stage_a", seed.clone()),
        ])
        .await
        .unwrap();
    let to_b = take_one(&mut client, "stage_b", LIMIT).await;
    assert_eq!(to_b.body, plain);
    assert_eq!(to_b.guid, format!("{}/0", guids[0]));
    // The seed's callback.topic wins over the worker's next topic; the envelope's
    // own topic field is kept true to where it went.
    let to_parsing = take_one(&mut client, "parsing", LIMIT).await;
    assert_eq!(to_parsing.body.to_value()["n"], 2);
    assert_eq!(to_parsing.body.to_value()["topic"], "parsing");
    let stats = until_stats(&mut client, LIMIT, |s| {
        topic_count(s, "stage_a", "done") == 2
    })
    .await;
    assert_eq!(topic_count(&stats, "stage_a", "ready"), 0);
    let summary = worker.stop().await;
    assert_eq!(summary.done, 2);
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 0).await;
    broker.stop().await;
}

/// Fails the first `failures` attempts of every task.
struct Flaky {
    failures: u32,
    retryable: bool,
    calls: AtomicU32,
}

impl Stage for Flaky {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let result = if call < self.failures {
            Err(StageError {
                message: format!("attempt {} failed", task.attempt),
                retryable: self.retryable,
            })
        } else {
            Ok(vec![NewTask::new(
                "flaky_out",
                json!({"attempt": task.attempt}),
            )])
        };
        Box::pin(async move { result })
    }
}

#[tokio::test]
async fn retryable_failures_are_retried_and_permanent_ones_dead_letter() {
    let broker = TestBroker::start(config(|c| c.broker.max_retry = 3)).await;
    let stage = Arc::new(Flaky {
        failures: 2,
        retryable: true,
        calls: AtomicU32::new(0),
    });
    let worker = TestWorker::start(broker.worker_options("flaky", &["flaky_in"], 1), stage);
    let mut client = broker.client().await;
    client
        .put(&[NewTask::new("flaky_in", json!({}))])
        .await
        .unwrap();
    let out = take_one(&mut client, "flaky_out", LIMIT).await;
    assert_eq!(
        out.body.to_value()["attempt"],
        3,
        "succeeded on the third attempt"
    );
    let stats = client.stats().await.unwrap();
    assert_eq!(topic_count(&stats, "flaky_in", "failed"), 2);
    assert_eq!(topic_count(&stats, "flaky_in", "done"), 1);
    worker.stop().await;

    let stage = Arc::new(Flaky {
        failures: 1,
        retryable: false,
        calls: AtomicU32::new(0),
    });
    let worker = TestWorker::start(broker.worker_options("flaky", &["perm_in"], 1), stage);
    let guid = client
        .put(&[NewTask::new("perm_in", json!({}))])
        .await
        .unwrap()
        .remove(0);
    until_stats(&mut client, LIMIT, |s| {
        topic_count(s, "perm_in", "dead") == 1
    })
    .await;
    let status = client
        .request(&json!({"type": "task_status", "guid": guid}))
        .await
        .unwrap();
    assert_eq!(
        (status["state"].as_str(), status["attempt"].as_u64()),
        (Some("dead"), Some(1))
    );
    let last_error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.starts_with("attempt 1 failed (after 1 attempt over "),
        "the dead letter says how many attempts over how long: {last_error}"
    );
    worker.stop().await;
    broker.stop().await;
}

/// A raw DEALER that registers and then never reads, answers or heartbeats.
async fn zombie(endpoint: &str, topic: &str, capacity: u32) -> DealerSocket {
    let mut options = SocketOptions::default();
    options.peer_identity(PeerIdentity::try_from(b"zombie".to_vec()).unwrap());
    let mut socket = DealerSocket::with_options(options);
    socket.connect(endpoint).await.unwrap();
    let ready =
        json!({"type": "ready", "stage": "zombie", "topics": [topic], "capacity": capacity});
    socket
        .send(ZmqMessage::from(rmp_serde::to_vec_named(&ready).unwrap()))
        .await
        .unwrap();
    socket
}

#[tokio::test]
async fn a_silent_worker_is_declared_dead_and_its_task_handed_on() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut client = broker.client().await;
    let mut zombie = zombie(&broker.endpoints.worker, "dying", 1).await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    let guid = client
        .put(&[NewTask::new("dying", json!({"k": "v"}))])
        .await
        .unwrap()
        .remove(0);
    // The zombie heartbeats until it gets the task (proof that it holds the lease),
    // then goes silent.
    let mut beat = tokio::time::interval(Duration::from_millis(100));
    let message = loop {
        tokio::select! {
            frames = zombie.recv() => {
                let frames: Vec<Bytes> = frames.unwrap().into_vec();
                let message: Value = rmp_serde::from_slice(frames.last().unwrap()).unwrap();
                if message["type"] == "task" {
                    break message;
                }
            }
            _ = beat.tick() => {
                let heartbeat = rmp_serde::to_vec_named(&json!({"type": "heartbeat"})).unwrap();
                zombie.send(ZmqMessage::from(heartbeat)).await.unwrap();
            }
        }
    };
    assert_eq!(message["tasks"][0]["guid"], guid.as_str());

    let mut options = broker.worker_options("echo", &["dying"], 4);
    options.next_topic = Some("survived".into());
    let worker = TestWorker::start(options, echo(true));
    let out = take_one(&mut client, "survived", LIMIT).await;
    assert_eq!(out.body, json!({"k": "v"}));
    let status = client
        .request(&json!({"type": "task_status", "guid": guid}))
        .await
        .unwrap();
    assert_eq!(
        (status["outcome"].as_str(), status["attempt"].as_u64()),
        (Some("done"), Some(2))
    );
    let stats = client.stats().await.unwrap();
    assert_eq!(topic_count(&stats, "dying", "failed"), 1);
    assert_eq!(n_workers(&stats), 1, "the zombie is gone: {stats}");
    drop(zombie);
    worker.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_stuck_worker_holds_only_its_credit_and_never_stalls_the_others() {
    let broker = TestBroker::start(config(|c| c.broker.heartbeat_liveness = 30)).await;
    let mut client = broker.client().await;
    // Registers with capacity 2 and never reads its socket again.
    let _stuck = zombie(&broker.endpoints.worker, "busy", 2).await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    let worker = TestWorker::start(broker.worker_options("echo", &["busy"], 8), echo(false));
    let tasks: Vec<NewTask> = (0..200)
        .map(|i| NewTask::new("busy", json!({"i": i})))
        .collect();
    client.put(&tasks).await.unwrap();
    // The stuck worker is still registered (liveness is long here), and everything
    // but its two tasks is done by the other worker.
    let stats = until_stats(&mut client, LIMIT, |s| {
        topic_count(s, "busy", "done") == 198
    })
    .await;
    assert_eq!(topic_count(&stats, "busy", "leased"), 2);
    assert_eq!(n_workers(&stats), 2);
    worker.stop().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_worker_reconnects_and_registers_again_after_the_broker_restarts() {
    let fixed = fixed_endpoints();
    let first = TestBroker::start(config(fixed)).await;
    let mut options = first.worker_options("echo", &["restart_in"], 4);
    options.next_topic = Some("restart_out".into());
    let worker = TestWorker::start(options, echo(true));
    let mut client = first.client().await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    drop(client);
    first.stop().await;

    let second = TestBroker::start(config(fixed)).await;
    let mut client = second.client().await;
    // The worker notices the loss, rebuilds its socket and sends READY by itself.
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    client
        .put(&[NewTask::new("restart_in", json!({"after": "restart"}))])
        .await
        .unwrap();
    let out = take_one(&mut client, "restart_out", LIMIT).await;
    assert_eq!(out.body, json!({"after": "restart"}));
    let summary = worker.stop().await;
    assert!(summary.sessions >= 2, "{summary:?}");
    second.stop().await;
}

#[tokio::test]
async fn ipc_endpoints_work_and_a_stale_socket_file_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.sock");
    // A socket file left by a process that died.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let endpoint = format!("ipc://{}", path.display());
    let broker = TestBroker::start(config(|c| c.broker.client_endpoint = endpoint.clone())).await;
    let mut client = broker.client().await;
    assert_eq!(client.get_size("ipc").await.unwrap(), None);
    broker.stop().await;
}
