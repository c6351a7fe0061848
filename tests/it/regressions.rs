//! Regressions of the broker's second pass, each named after what it guards: DONEs
//! that reach a restarted broker before READY, one `disconnect` per unknown worker,
//! refused puts that must not run, a store that recovers, a store over files that
//! cannot be written, JSON on the worker endpoint, and the lease a task carries.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use taskbus::client::ClientError;
use taskbus::task::NewTask;
use tokio::process::Command;
use zeromq::prelude::*;
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, SocketOptions, ZmqMessage};

use crate::common::{
    config, durable_config, fixed_endpoints, topic_count, until_stats, TestBroker,
};

const LIMIT: Duration = Duration::from_secs(20);

/// A DEALER with a fixed identity, as a worker written from PROTOCOL.md has.
async fn dealer(endpoint: &str, identity: &str) -> DealerSocket {
    let mut options = SocketOptions::default();
    options.peer_identity(PeerIdentity::try_from(identity.as_bytes().to_vec()).unwrap());
    let mut socket = DealerSocket::with_options(options);
    socket.connect(endpoint).await.expect("dealer connects");
    socket
}

async fn send(socket: &mut DealerSocket, message: &Value) {
    let body = rmp_serde::to_vec_named(message).unwrap();
    socket.send(ZmqMessage::from(body)).await.unwrap();
}

async fn recv(socket: &mut DealerSocket) -> Value {
    let message = tokio::time::timeout(LIMIT, socket.recv())
        .await
        .expect("a broker message in time")
        .unwrap();
    let frames = message.into_vec();
    rmp_serde::from_slice(frames.last().unwrap()).unwrap()
}

/// Receives until a message of `kind` comes, counting the others by type.
async fn recv_until(socket: &mut DealerSocket, kind: &str, seen: &mut Vec<String>) -> Value {
    loop {
        let message = recv(socket).await;
        let this = message["type"].as_str().unwrap_or_default().to_owned();
        if this == kind {
            return message;
        }
        seen.push(this);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dones_before_ready_after_a_fast_restart_lose_no_next_stage_task() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_config(dir.path(), fixed_endpoints());
    let broker = TestBroker::start(config.clone()).await;
    let mut client = broker.client().await;
    let tasks: Vec<NewTask> = (0..4)
        .map(|n| NewTask::new("stage_a", json!({"n": n})))
        .collect();
    client.put(&tasks).await.unwrap();
    let mut worker = dealer(&broker.endpoints.worker, "restart-w1").await;
    send(
        &mut worker,
        &json!({"type": "ready", "stage": "t", "topics": ["stage_a"], "capacity": 4, "next_topic": "stage_b"}),
    )
    .await;
    let mut guids = Vec::new();
    while guids.len() < 4 {
        let message = recv_until(&mut worker, "task", &mut Vec::new()).await;
        for task in message["tasks"].as_array().unwrap() {
            assert!(
                task["timeout"].as_f64().unwrap() > 0.0,
                "the lease is on the wire"
            );
            assert!(task["max_retry"].is_u64(), "so is the retry limit");
            guids.push(task["guid"].as_str().unwrap().to_owned());
        }
    }
    drop(client);
    broker.stop().await;
    drop(worker);

    // The broker is back before the worker's new READY: the DONEs come first.
    let broker = TestBroker::start(config).await;
    let mut worker = dealer(&broker.endpoints.worker, "restart-w1").await;
    for (i, guid) in guids.iter().enumerate() {
        // Two DONEs carry their destination; two rely on a session the broker lost.
        let next_topic = if i < 2 { json!("stage_b") } else { Value::Null };
        send(
            &mut worker,
            &json!({"type": "done", "guid": guid, "next": [{"body": {"from": guid}}], "next_topic": next_topic}),
        )
        .await;
    }
    let mut others = Vec::new();
    for _ in 0..2 {
        let error = recv_until(&mut worker, "error", &mut others).await;
        assert_eq!(error["code"], "unroutable", "{error}");
    }
    assert_eq!(
        others.iter().filter(|t| *t == "disconnect").count(),
        1,
        "one disconnect for the unknown identity, not one per message: {others:?}"
    );
    let mut client = broker.client().await;
    let stats = until_stats(&mut client, LIMIT, |s| {
        topic_count(s, "stage_b", "ready") == 2
    })
    .await;
    assert_eq!(topic_count(&stats, "stage_a", "done"), 2);
    assert_eq!(
        topic_count(&stats, "stage_a", "ready") + topic_count(&stats, "stage_a", "delayed"),
        2,
        "the unroutable DONEs left their tasks to run again: {stats}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_put_never_runs_and_the_store_takes_work_again_once_it_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(durable_config(dir.path(), |c| c.store.max_size_mb = 1)).await;
    let mut client = broker.client().await;
    let page = "x".repeat(64 * 1024);
    let mut accepted = Vec::new();
    let refused_guid = loop {
        let guid = format!("fill-{}", accepted.len());
        let mut task = NewTask::new("fill", json!({"page": page}));
        task.guid = Some(guid.clone());
        match client.put(&[task]).await {
            Ok(guids) => accepted.extend(guids),
            Err(ClientError::Refused { code, message }) => {
                assert_eq!(code, "store_unavailable", "{message}");
                break guid;
            }
            Err(other) => panic!("{other}"),
        }
        assert!(
            accepted.len() < 100,
            "a 1 MiB store holds fewer than 100 pages"
        );
    };
    let stats = client.stats().await.unwrap();
    assert_eq!(stats["store"]["state"], "refusing_work", "{stats}");
    assert_eq!(
        topic_count(&stats, "fill", "ready") as usize,
        accepted.len()
    );
    let taken = client.get_task("fill", 1000).await.unwrap();
    let taken: Vec<String> = taken.into_iter().map(|t| t.guid).collect();
    assert_eq!(taken, accepted, "exactly the accepted tasks run");
    let status = client
        .request(&json!({"type": "task_status", "guid": refused_guid}))
        .await;
    assert!(
        matches!(&status, Err(ClientError::Refused { code, .. }) if code == "not_found"),
        "the refused task is gone: {status:?}"
    );

    // Finished tasks make room; the broker finds out by itself and takes work again.
    client.ack(&taken).await.unwrap();
    let again = loop {
        match client
            .put(&[NewTask::new("fill", json!({"small": true}))])
            .await
        {
            Ok(guids) => break guids,
            Err(ClientError::Refused { code, .. }) if code == "store_unavailable" => {}
            Err(other) => panic!("{other}"),
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(again.len(), 1);
    assert_eq!(client.stats().await.unwrap()["store"]["state"], "ok");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_files_that_cannot_be_written_fails_cleanly_not_with_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("bus.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config_path,
        format!(
            "[broker]\nclient_endpoint = \"tcp://127.0.0.1:0\"\nworker_endpoint = \"tcp://127.0.0.1:0\"\nevents_endpoint = \"tcp://127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[log]\ndir = \"{}\"\n",
            data.display(),
            dir.path().join("log").display()
        ),
    )
    .unwrap();
    {
        let config = durable_config(&data, |_| {});
        let broker = TestBroker::start(config).await;
        let mut client = broker.client().await;
        client
            .put(&[NewTask::new("t", json!({"kept": true}))])
            .await
            .unwrap();
        broker.stop().await;
    }
    assert!(
        !data.join("broker.sqlite3-shm").exists(),
        "the store maps no -shm file (exclusive WAL)"
    );
    let files: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let immutable = |flag: &str| {
        let mut args = vec![flag.to_owned()];
        args.extend(files.iter().map(|p| p.display().to_string()));
        args.push(data.display().to_string());
        std::process::Command::new("chattr").args(&args).status()
    };
    match immutable("+i") {
        Ok(status) if status.success() => {}
        other => {
            assert!(
                std::env::var("CI").is_err(),
                "chattr +i is needed for this test: {other:?}"
            );
            eprintln!("skipped: chattr +i does not work here ({other:?})");
            return;
        }
    }
    let output = Command::new(env!("CARGO_BIN_EXE_taskbus-broker"))
        .args(["--config", config_path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(LIMIT, output.wait_with_output()).await;
    let _ = immutable("-i");
    let output = output.expect("the broker exits by itself").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&output.status),
        None,
        "no SIGBUS: {stderr}"
    );
    assert!(!output.status.success());
    assert!(
        stderr.contains("broker.sqlite3") || stderr.contains(&data.display().to_string()),
        "the error names the store: {stderr}"
    );
}

#[tokio::test]
async fn the_worker_endpoint_refuses_json_with_a_named_error() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut worker = dealer(&broker.endpoints.worker, "json-w").await;
    let ready = json!({"type": "ready", "stage": "s", "topics": ["t"], "capacity": 1});
    worker
        .send(ZmqMessage::from(Bytes::from(ready.to_string())))
        .await
        .unwrap();
    let error = recv_until(&mut worker, "error", &mut Vec::new()).await;
    assert_eq!(error["code"], "malformed");
    assert!(
        error["error"].as_str().unwrap().contains("MessagePack"),
        "{error}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn get_task_hands_out_the_effective_lease_and_retry_limit() {
    let broker = TestBroker::start(config(|c| {
        c.broker.lease_timeout_secs = 12.5;
        c.broker.max_retry = 7;
    }))
    .await;
    let mut client = broker.client().await;
    let mut own = NewTask::new("t", json!({}));
    own.timeout = Some(3.0);
    client
        .put(&[NewTask::new("t", json!({})), own])
        .await
        .unwrap();
    let tasks = client.get_task("t", 2).await.unwrap();
    let leases: Vec<_> = tasks.iter().map(|t| (t.timeout, t.max_retry)).collect();
    assert_eq!(leases, [(Some(12.5), Some(7)), (Some(3.0), Some(7))]);
    broker.stop().await;
}

/// A worker written from PROTOCOL.md alone loses no next-stage task across 20 fast
/// restarts of a durable broker: DONEs that reach a restarted broker before the
/// worker's new READY carry their destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_loses_no_next_stage_task_across_twenty_fast_restarts() {
    let Some(py) = crate::python::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = durable_config(dir.path(), |c| {
        fixed_endpoints()(c);
        c.broker.heartbeat_interval_secs = 0.2;
    });
    let mut broker = TestBroker::start(config.clone()).await;
    let _worker = crate::python::PyWorker::start(
        py,
        &broker.endpoints.worker,
        "py-restarts",
        &[
            "--topic",
            "pyx_in",
            "--next-topic",
            "pyx_out",
            "--capacity",
            "8",
        ],
    )
    .await;
    let mut client = broker.client().await;
    let tasks: Vec<NewTask> = (0..3000)
        .map(|n| NewTask::new("pyx_in", json!({"n": n})))
        .collect();
    let guids = client.put(&tasks).await.unwrap();
    drop(client);
    for _ in 0..20 {
        broker.stop().await;
        broker = TestBroker::start(config.clone()).await;
    }
    let mut client = broker.client().await;
    let limit = Duration::from_secs(60);
    let stats = until_stats(&mut client, limit, |s| {
        topic_count(s, "pyx_out", "ready") == 3000
            && ["pending", "ready", "delayed", "leased"]
                .iter()
                .all(|k| topic_count(s, "pyx_in", k) == 0)
    })
    .await;
    assert_eq!(topic_count(&stats, "pyx_in", "dead"), 0, "{stats}");
    let children = client.get_task("pyx_out", 3000).await.unwrap();
    let got: std::collections::BTreeSet<String> = children.into_iter().map(|t| t.guid).collect();
    let want: std::collections::BTreeSet<String> = guids.iter().map(|g| format!("{g}/0")).collect();
    assert_eq!(got, want, "every task's output, once");
    broker.stop().await;
}
