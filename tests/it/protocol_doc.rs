//! `docs/PROTOCOL.md` versus behaviour: what a worker written from the document alone
//! relies on, one test per statement that was once untrue or unwritten.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use taskbus::protocol::client::ClientRequest;
use taskbus::protocol::client::{DeadRetryReply, NackReply, TaskInfo, TaskLookup};
use taskbus::protocol::worker::WorkerMessage;
use taskbus::task::NewTask;
use tokio::time::Instant;
use zeromq::prelude::*;
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, SocketOptions, ZmqMessage};

use crate::common::{config, n_workers, until_stats, TestBroker};

const LIMIT: Duration = Duration::from_secs(20);

/// A raw worker: a DEALER with a fixed identity that has sent READY.
async fn raw_worker(endpoint: &str, identity: &str, topic: &str, capacity: u32) -> DealerSocket {
    let mut options = SocketOptions::default();
    options.peer_identity(PeerIdentity::try_from(identity.as_bytes().to_vec()).unwrap());
    let mut socket = DealerSocket::with_options(options);
    socket.connect(endpoint).await.expect("dealer connects");
    send(&mut socket, &ready(topic, capacity)).await;
    socket
}

fn ready(topic: &str, capacity: u32) -> WorkerMessage {
    WorkerMessage::Ready {
        protocol: Some("taskbus/1".into()),
        worker_id: None,
        stage: "raw".into(),
        topics: vec![topic.into()],
        capacity,
        next_topic: None,
        token: None,
    }
}

async fn send(socket: &mut DealerSocket, message: &WorkerMessage) {
    let body = rmp_serde::to_vec_named(message).unwrap();
    socket.send(ZmqMessage::from(body)).await.unwrap();
}

/// The next broker message of `kind`, skipping heartbeats and the like.
async fn recv_kind(socket: &mut DealerSocket, kind: &str) -> Value {
    loop {
        let message = tokio::time::timeout(LIMIT, socket.recv())
            .await
            .expect("a broker message in time")
            .unwrap();
        let frames = message.into_vec();
        let message: Value = rmp_serde::from_slice(frames.last().unwrap()).unwrap();
        if message["type"] == kind {
            return message;
        }
    }
}

fn task_guids(message: &Value) -> Vec<(String, u64)> {
    message["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["guid"].as_str().unwrap().to_owned(),
                t["attempt"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_is_declared_dead_within_heartbeat_liveness_intervals() {
    let broker = TestBroker::start(config(|c| {
        c.broker.heartbeat_interval_secs = 0.5;
        c.broker.heartbeat_liveness = 3;
    }))
    .await;
    let mut client = broker.client().await;
    let mut worker = raw_worker(&broker.endpoints.worker, "silent", "silent", 1).await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    // Fall silent just after a broker heartbeat: a check that ran only at heartbeats
    // would see 3 intervals less a little, and wait for a 4th.
    recv_kind(&mut worker, "heartbeat").await;
    send(&mut worker, &WorkerMessage::Heartbeat {}).await;
    let silent_since = Instant::now();
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 0).await;
    let silent = silent_since.elapsed();
    assert!(
        silent >= Duration::from_millis(1_480) && silent < Duration::from_millis(1_800),
        "declared dead after {silent:?} of silence, expected 3 intervals of 0.5 s (not 4)"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_worker_message_without_type_is_a_bad_request() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut socket = DealerSocket::new();
    socket.connect(&broker.endpoints.worker).await.unwrap();
    let body = rmp_serde::to_vec_named(&json!({"guid": "g"})).unwrap();
    socket.send(ZmqMessage::from(body)).await.unwrap();
    let error = recv_kind(&mut socket, "error").await;
    assert_eq!(error["code"], "bad_request", "{error}");
    assert!(error["error"].as_str().unwrap().contains("type"), "{error}");
    broker.stop().await;
}

#[tokio::test]
async fn empty_frames_around_a_worker_message_are_ignored() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut client = broker.client().await;
    let mut socket = DealerSocket::new();
    socket.connect(&broker.endpoints.worker).await.unwrap();
    let body = Bytes::from(rmp_serde::to_vec_named(&ready("empty", 1)).unwrap());
    let mut message = ZmqMessage::from(Bytes::new());
    message.push_back(body);
    message.push_back(Bytes::new());
    socket.send(message).await.unwrap();
    client
        .put(&[NewTask::new("empty", json!(1))])
        .await
        .unwrap();
    let task = recv_kind(&mut socket, "task").await;
    assert_eq!(task["tasks"][0]["topic"], "empty", "the READY was read");
    broker.stop().await;
}

#[tokio::test]
async fn the_task_message_carries_the_effective_lease_and_retry_limit() {
    let broker = TestBroker::start(config(|c| {
        c.broker.lease_timeout_secs = 12.5;
        c.broker.max_retry = 7;
    }))
    .await;
    let mut client = broker.client().await;
    let mut worker = raw_worker(&broker.endpoints.worker, "lease", "lease", 2).await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    let mut own = NewTask::new("lease", json!(2));
    own.timeout = Some(3.0);
    own.max_retry = Some(1);
    client
        .put(&[NewTask::new("lease", json!(1)), own])
        .await
        .unwrap();
    let mut leases = Vec::new();
    while leases.len() < 2 {
        let message = recv_kind(&mut worker, "task").await;
        for task in message["tasks"].as_array().unwrap() {
            leases.push((
                task["body"].as_i64(),
                task["timeout"].as_f64(),
                task["max_retry"].as_u64(),
            ));
        }
    }
    leases.sort_by_key(|lease| lease.0);
    assert_eq!(
        leases,
        [
            (Some(1), Some(12.5), Some(7)),
            (Some(2), Some(3.0), Some(1))
        ]
    );
    broker.stop().await;
}

#[tokio::test]
async fn dead_retry_starts_attempt_again_at_zero() {
    let broker = TestBroker::start(config(|c| c.broker.max_retry = 0)).await;
    let mut client = broker.client().await;
    let guid = client
        .put(&[NewTask::new("once", json!(1))])
        .await
        .unwrap()
        .remove(0);
    let taken = client.get_task("once", 1).await.unwrap();
    assert_eq!(taken[0].attempt, 1);
    let nack = ClientRequest::Nack {
        guid: guid.clone(),
        retryable: true,
        error: Some("boom".into()),
    };
    let reply: NackReply = client.call(&nack).await.unwrap();
    assert_eq!(reply.state, "dead", "max_retry 0: one attempt only");
    let retry = ClientRequest::DeadRetry {
        topic: None,
        guids: vec![guid.clone()],
    };
    let reply: DeadRetryReply = client.call(&retry).await.unwrap();
    assert_eq!(reply.retried, 1);
    let status: TaskLookup = client
        .call(&ClientRequest::TaskStatus { guid: guid.clone() })
        .await
        .unwrap();
    let TaskLookup::Live(info) = status else {
        panic!("{guid} is live again: {status:?}")
    };
    assert_eq!((info.state.as_str(), info.attempt), ("ready", 0));
    let last_error = info.last_error.unwrap_or_default();
    assert!(
        last_error.starts_with("boom (after 1 attempt"),
        "{last_error}"
    );
    let again = client.get_task("once", 1).await.unwrap();
    assert_eq!(again[0].attempt, 1, "a fresh set of attempts");
    broker.stop().await;
}

#[tokio::test]
async fn a_task_taken_with_get_task_is_held_by_client() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut client = broker.client().await;
    let guid = client
        .put(&[NewTask::new("held", json!(1))])
        .await
        .unwrap()
        .remove(0);
    client.get_task("held", 1).await.unwrap();
    let status: TaskInfo = client
        .call(&ClientRequest::TaskStatus { guid })
        .await
        .unwrap();
    assert_eq!(status.state, "leased");
    assert_eq!(status.holder.as_deref(), Some("client"));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_back_at_the_same_worker_never_exceeds_its_capacity() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut client = broker.client().await;
    let mut worker = raw_worker(&broker.endpoints.worker, "slow", "cap", 2).await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    let mut short = NewTask::new("cap", json!("a"));
    short.guid = Some("a".into());
    short.timeout = Some(0.3);
    client.put(&[short]).await.unwrap();
    assert_eq!(
        task_guids(&recv_kind(&mut worker, "task").await),
        [("a".into(), 1)]
    );
    // The lease ends while the worker still runs attempt 1; attempt 2 comes back to it.
    assert_eq!(
        task_guids(&recv_kind(&mut worker, "task").await),
        [("a".into(), 2)]
    );

    let mut other = NewTask::new("cap", json!("b"));
    other.guid = Some("b".into());
    client.put(&[other]).await.unwrap();
    let b: TaskInfo = client
        .call(&ClientRequest::TaskStatus { guid: "b".into() })
        .await
        .unwrap();
    assert_eq!(
        b.state, "ready",
        "the worker runs two attempts of a: it is full"
    );
    let stats = client.stats().await.unwrap();
    assert_eq!(stats["workers"][0]["in_flight"], 2, "{stats}");

    // The late DONE of attempt 1 frees one slot: b goes out, attempt 2 still counts.
    let done = WorkerMessage::Done {
        guid: "a".into(),
        next: Vec::new(),
        next_topic: None,
    };
    send(&mut worker, &done).await;
    assert_eq!(
        task_guids(&recv_kind(&mut worker, "task").await),
        [("b".into(), 1)]
    );
    let stats = client.stats().await.unwrap();
    assert_eq!(stats["workers"][0]["in_flight"], 2, "{stats}");
    broker.stop().await;
}
