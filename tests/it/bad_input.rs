//! Every malformed request gets `{"error", "code"}` and the broker keeps serving.

use bytes::Bytes;
use serde_json::{json, Value};
use taskbus::task::NewTask;
use zeromq::prelude::*;
use zeromq::{DealerSocket, ZmqMessage};

use crate::common::{config, TestBroker};

async fn raw_request(socket: &mut DealerSocket, frames: Vec<Bytes>) -> Value {
    socket
        .send(ZmqMessage::try_from(frames).unwrap())
        .await
        .unwrap();
    let reply = socket.recv().await.unwrap().into_vec();
    let body = reply.last().unwrap();
    match body.first() {
        Some(b'{') | Some(b'[') | Some(b'"') => serde_json::from_slice(body).unwrap(),
        _ => rmp_serde::from_slice(body).unwrap(),
    }
}

#[tokio::test]
async fn malformed_requests_get_named_errors_and_the_broker_keeps_serving() {
    let broker = TestBroker::start(config(|c| c.broker.max_message_bytes = 1024)).await;
    let mut socket = DealerSocket::new();
    socket.connect(&broker.endpoints.client).await.unwrap();
    let json = |v: Value| vec![Bytes::new(), Bytes::from(serde_json::to_vec(&v).unwrap())];
    let cases: Vec<(Vec<Bytes>, &str, &str)> = vec![
        (
            vec![Bytes::new(), Bytes::from_static(b"{not json")],
            "malformed",
            "invalid json",
        ),
        (
            vec![Bytes::new(), Bytes::from_static(&[0xc1, 0x00])],
            "malformed",
            "invalid msgpack",
        ),
        (json(json!([1, 2])), "bad_request", "expected a map"),
        (
            json(json!({"topic": "t"})),
            "bad_request",
            "missing field \"type\"",
        ),
        (json(json!({"type": 7})), "unknown_type", "must be a string"),
        (
            json(json!({"type": "get_taks", "topic": "t"})),
            "unknown_type",
            "get_taks",
        ),
        (json(json!({"type": "get_task"})), "bad_request", "topic"),
        (
            json(json!({"type": "get_task", "topic": 5})),
            "bad_request",
            "invalid type",
        ),
        (
            json(json!({"type": "get_task", "topic": "t", "count": 0})),
            "bad_request",
            "count",
        ),
        (
            json(json!({"type": "get_task", "topic": "t", "count": 1_000_000_000})),
            "bad_request",
            "count",
        ),
        (
            json(json!({"type": "put_task", "tasks": [{"body": {}}]})),
            "bad_request",
            "topic",
        ),
        (
            json(json!({"type": "put_task", "task": {"topic": "t", "bdy": 1}})),
            "bad_request",
            "bdy",
        ),
        (
            json(json!({"type": "put_task", "task": {"topic": "t", "body": "x".repeat(2000)}})),
            "too_large",
            "max_message_bytes",
        ),
        (
            json(json!({"type": "nack", "guid": "nope"})),
            "not_found",
            "nope",
        ),
        (
            json(json!({"type": "task_status", "guid": "nope"})),
            "not_found",
            "nope",
        ),
        (
            vec![
                Bytes::new(),
                Bytes::from_static(b"a"),
                Bytes::from_static(b"b"),
            ],
            "bad_frames",
            "one body frame",
        ),
    ];
    for (frames, code, needle) in cases {
        let reply = raw_request(&mut socket, frames.clone()).await;
        assert_eq!(reply["code"], code, "request {frames:?} got {reply}");
        let message = reply["error"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "request {frames:?}: {message:?} lacks {needle:?}"
        );
    }
    // Still serving, and nothing was queued by the bad puts.
    let mut client = broker.client().await;
    assert_eq!(client.get_size("t").await.unwrap(), None);
    client.put(&[NewTask::new("t", json!({}))]).await.unwrap();
    assert_eq!(client.get_size("t").await.unwrap(), Some(1));
    broker.stop().await;
}

#[tokio::test]
async fn a_batch_with_one_bad_task_accepts_none() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut client = broker.client().await;
    let reply = client
        .request(&json!({"type": "put_task", "tasks": [{"topic": "b", "body": 1}, {"body": 2}]}))
        .await;
    assert!(reply.unwrap_err().to_string().contains("tasks[1]"));
    assert_eq!(client.get_size("b").await.unwrap(), None);
    broker.stop().await;
}

#[tokio::test]
async fn malformed_worker_messages_get_error_replies() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut socket = DealerSocket::new();
    socket.connect(&broker.endpoints.worker).await.unwrap();
    for (body, code) in [
        (Bytes::from_static(b"\xc1"), "malformed"),
        (
            Bytes::from(rmp_serde::to_vec_named(&json!({"type": "dance"})).unwrap()),
            "unknown_type",
        ),
        (
            Bytes::from(
                rmp_serde::to_vec_named(
                    &json!({"type": "ready", "stage": "s", "topics": [], "capacity": 1}),
                )
                .unwrap(),
            ),
            "bad_request",
        ),
    ] {
        socket.send(ZmqMessage::from(body)).await.unwrap();
        let reply = socket.recv().await.unwrap().into_vec();
        let reply: Value = rmp_serde::from_slice(reply.last().unwrap()).unwrap();
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["code"], code, "{reply}");
    }
    let mut client = broker.client().await;
    assert!(client.stats().await.is_ok());
    broker.stop().await;
}

#[tokio::test]
async fn a_json_client_with_bad_frames_gets_a_json_error() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut socket = DealerSocket::new();
    socket.connect(&broker.endpoints.client).await.unwrap();
    let frames = vec![
        Bytes::new(),
        Bytes::from_static(b"{\"type\": \"stats\"}"),
        Bytes::from_static(b"{}"),
    ];
    socket
        .send(ZmqMessage::try_from(frames).unwrap())
        .await
        .unwrap();
    let reply = socket.recv().await.unwrap().into_vec();
    let body: Value = serde_json::from_slice(reply.last().unwrap()).expect("a json reply");
    assert_eq!(body["code"], "bad_frames");
    broker.stop().await;
}
