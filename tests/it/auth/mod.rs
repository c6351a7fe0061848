//! `[auth]` on the ZeroMQ endpoints, through a real broker: requests and READYs
//! without a token, with a revoked one, with too low a role; the workers' shared
//! secret; protected mode; a pyzmq client sending its token in MessagePack; the
//! refusals in `/metrics`; HTTPS.

mod metrics;
mod python;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use taskbus::accounts::{Accounts, Role};
use taskbus::broker::Broker;
use taskbus::config::Config;
use zeromq::prelude::*;
use zeromq::{DealerSocket, ZmqMessage};

use crate::common::{config, TestBroker};

/// The workers' shared secret in these tests.
const SECRET: &str = "workers-share-this-secret";

/// A broker with `[auth] required = true`, its accounts in `dir`.
fn guarded(dir: &Path) -> (Arc<Config>, Accounts) {
    let accounts_file: PathBuf = dir.join("accounts.sqlite3");
    let accounts = Accounts::open(&accounts_file).expect("accounts open");
    let config = config(|c| {
        c.auth.required = true;
        c.auth.worker_secret = SECRET.into();
        c.http.accounts_path = accounts_file.clone();
    });
    (config, accounts)
}

/// A DEALER on the client endpoint speaking JSON.
pub struct Caller(DealerSocket);

impl Caller {
    pub async fn connect(broker: &TestBroker) -> Caller {
        Caller::connect_to(&broker.endpoints.client).await
    }

    pub async fn connect_to(endpoint: &str) -> Caller {
        let mut socket = DealerSocket::new();
        socket.connect(endpoint).await.unwrap();
        Caller(socket)
    }

    /// Sends `request` (with `token` when given) and returns the reply.
    pub async fn call(&mut self, mut request: Value, token: Option<&str>) -> Value {
        if let Some(token) = token {
            request["token"] = json!(token);
        }
        let frames = vec![
            Bytes::new(),
            Bytes::from(serde_json::to_vec(&request).unwrap()),
        ];
        self.0
            .send(ZmqMessage::try_from(frames).unwrap())
            .await
            .unwrap();
        let reply = self.0.recv().await.unwrap().into_vec();
        serde_json::from_slice(reply.last().unwrap()).unwrap()
    }
}

fn code(reply: &Value) -> &str {
    reply["code"].as_str().unwrap_or("")
}

pub fn put(topic: &str) -> Value {
    json!({"type": "put_task", "tasks": [{"topic": topic, "body": {"n": 1}}]})
}

fn size(topic: &str) -> Value {
    json!({"type": "get_size", "topic": topic})
}

/// A worker written by hand: a DEALER that sends READY (with `token`) in MessagePack.
async fn ready_worker(broker: &TestBroker, topic: &str, token: Option<&str>) -> DealerSocket {
    let mut socket = DealerSocket::new();
    socket.connect(&broker.endpoints.worker).await.unwrap();
    let mut ready = json!({"type": "ready", "protocol": "taskbus/1", "stage": "s",
                           "topics": [topic], "capacity": 4});
    if let Some(token) = token {
        ready["token"] = json!(token);
    }
    let body = rmp_serde::to_vec_named(&ready).unwrap();
    socket.send(ZmqMessage::from(body)).await.unwrap();
    socket
}

/// The next message on a worker socket that is not a heartbeat.
async fn next_message(socket: &mut DealerSocket) -> Value {
    loop {
        let frames = tokio::time::timeout(Duration::from_secs(10), socket.recv())
            .await
            .expect("a message from the broker")
            .unwrap()
            .into_vec();
        let message: Value = rmp_serde::from_slice(frames.last().unwrap()).unwrap();
        if message["type"] != "heartbeat" {
            return message;
        }
    }
}

fn refused_total() -> u64 {
    taskbus::auth::refusals().iter().map(|(_, n)| n).sum()
}

#[tokio::test]
async fn admin_verbs_and_ready_without_a_token_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, accounts) = guarded(dir.path());
    let operator = accounts.create_token("ops", Role::Operator).unwrap();
    let broker = TestBroker::start(config).await;
    let before = refused_total();
    let mut caller = Caller::connect(&broker).await;
    let reply = caller
        .call(json!({"type": "delete_task", "id": "x"}), None)
        .await;
    assert_eq!(code(&reply), "unauthorized", "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("delete_task"),
        "{reply}"
    );
    let reply = caller.call(put("t"), None).await;
    assert_eq!(code(&reply), "unauthorized", "{reply}");
    let mut worker = ready_worker(&broker, "t", None).await;
    let message = next_message(&mut worker).await;
    assert_eq!(message["type"], "error", "{message}");
    assert_eq!(message["code"], "unauthorized", "{message}");
    // Nothing was taken: no task queued, no worker registered.
    let stats = caller.call(json!({"type": "stats"}), Some(&operator)).await;
    assert_eq!(crate::common::n_workers(&stats), 0, "{stats}");
    let reply = caller.call(size("t"), Some(&operator)).await;
    assert_eq!(
        reply,
        json!("invalid queue"),
        "the seed's reply for no such topic"
    );
    assert!(refused_total() >= before + 3);
    broker.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_the_next_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (config, accounts) = guarded(dir.path());
    let operator = accounts.create_token("ops", Role::Operator).unwrap();
    let gone = accounts.create_token("gone", Role::Operator).unwrap();
    accounts.revoke_token("gone").unwrap();
    let broker = TestBroker::start(config).await;
    let mut caller = Caller::connect(&broker).await;
    let reply = caller.call(put("t"), Some(&gone)).await;
    assert_eq!(code(&reply), "unauthorized", "{reply}");
    let mut worker = ready_worker(&broker, "t", Some(&gone)).await;
    assert_eq!(next_message(&mut worker).await["code"], "unauthorized");
    // A token in use: served, then refused within the lookup cache's second.
    let reply = caller.call(put("t"), Some(&operator)).await;
    assert!(reply.get("code").is_none(), "{reply}");
    accounts.revoke_token("ops").unwrap();
    let revoked_at = std::time::Instant::now();
    loop {
        let reply = caller.call(size("t"), Some(&operator)).await;
        if code(&reply) == "unauthorized" {
            break;
        }
        assert_eq!(reply, json!(1));
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "a revoked token still served after 3 s"
        );
        tokio::task::yield_now().await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_viewer_reads_but_may_not_change_and_an_operator_may() {
    let dir = tempfile::tempdir().unwrap();
    let (config, accounts) = guarded(dir.path());
    let viewer = accounts.create_token("looker", Role::Viewer).unwrap();
    let operator = accounts.create_token("ops", Role::Operator).unwrap();
    let broker = TestBroker::start(config).await;
    let mut caller = Caller::connect(&broker).await;
    let reply = caller.call(put("t"), Some(&viewer)).await;
    assert_eq!(code(&reply), "forbidden", "{reply}");
    let reply = caller.call(put("t"), Some(&operator)).await;
    let guid = reply["guids"][0].as_str().expect("a guid").to_owned();
    let reply = caller.call(size("t"), Some(&viewer)).await;
    assert_eq!(reply, json!(1));
    let delete = json!({"type": "delete_task", "id": guid});
    let reply = caller.call(delete.clone(), Some(&viewer)).await;
    assert_eq!(code(&reply), "forbidden", "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("operator"),
        "{reply}"
    );
    let reply = caller
        .call(
            json!({"type": "get_task", "topic": "t", "count": 1}),
            Some(&viewer),
        )
        .await;
    assert_eq!(code(&reply), "forbidden", "{reply}");
    let reply = caller.call(size("t"), Some(&viewer)).await;
    assert_eq!(reply, json!(1), "refused calls changed nothing");
    broker.stop().await;
}

#[tokio::test]
async fn a_worker_with_the_shared_secret_gets_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (config, accounts) = guarded(dir.path());
    let operator = accounts.create_token("ops", Role::Operator).unwrap();
    let broker = TestBroker::start(config).await;
    let mut caller = Caller::connect(&broker).await;
    let mut worker = ready_worker(&broker, "jobs", Some(SECRET)).await;
    let reply = caller.call(put("jobs"), Some(&operator)).await;
    let guid = reply["guids"][0].as_str().expect("a guid").to_owned();
    let message = next_message(&mut worker).await;
    assert_eq!(message["type"], "task", "{message}");
    assert_eq!(message["tasks"][0]["guid"], guid.as_str(), "{message}");
    // The secret is a worker's: it may take work by get_task, not change the bus.
    caller.call(put("pull"), Some(&operator)).await;
    let take = json!({"type": "get_task", "topic": "pull", "count": 1});
    let reply = caller.call(take, Some(SECRET)).await;
    assert!(reply.get("code").is_none(), "{reply}");
    let reply = caller.call(put("pull"), Some(SECRET)).await;
    assert_eq!(code(&reply), "forbidden", "{reply}");
    broker.stop().await;
}

#[tokio::test]
async fn our_own_client_and_worker_runtime_send_the_configured_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (config, accounts) = guarded(dir.path());
    let operator = accounts.create_token("ops", Role::Operator).unwrap();
    let broker = TestBroker::start(config.clone()).await;
    // Without a token the Rust client is refused; with one it is served.
    let mut anonymous = broker.client().await;
    let refused = anonymous
        .get_size("own")
        .await
        .expect_err("refused without a token");
    assert!(refused.to_string().contains("unauthorized"), "{refused}");
    let mut client = broker.client().await.with_token(Some(operator));
    let tasks: Vec<_> = (0..3)
        .map(|n| taskbus::task::NewTask::new("own", json!({"n": n})))
        .collect();
    client
        .put(&tasks)
        .await
        .expect("put with the operator's token");
    // The worker runtime sends `[auth] worker_secret` in READY (`config.auth`).
    let options = broker.worker_options("echo", &["own"], 4);
    assert_eq!(options.token.as_deref(), Some(SECRET));
    let worker = crate::common::TestWorker::start(
        options,
        Arc::new(taskbus::worker::echo::Echo { forward: false }),
    );
    crate::common::until_stats(&mut client, Duration::from_secs(10), |s| {
        s["topics"]["own"]["done"] == json!(3)
    })
    .await;
    assert_eq!(worker.stop().await.done, 3);
    broker.stop().await;
}

#[tokio::test]
async fn with_auth_off_a_token_changes_no_reply() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut caller = Caller::connect(&broker).await;
    caller.call(put("t"), None).await;
    let plain = caller.call(size("t"), None).await;
    let with_token = caller.call(size("t"), Some("tbk_anything")).await;
    assert_eq!(plain, with_token);
    assert_eq!(plain, json!(1));
    broker.stop().await;
}

#[tokio::test]
async fn protected_mode_refuses_a_public_address_unless_told() {
    let public = |edit: fn(&mut Config)| {
        config(move |c| {
            c.broker.client_endpoint = "tcp://0.0.0.0:0".into();
            edit(c);
        })
    };
    let error = match Broker::bind(public(|_| {})).await {
        Ok(_) => panic!("a broker without auth bound 0.0.0.0"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("client endpoint tcp://0.0.0.0:0"), "{error}");
    assert!(error.contains("required = true"), "{error}");
    assert!(
        error.contains("allow_unauthenticated_public = true"),
        "{error}"
    );
    let open = Broker::bind(public(|c| c.auth.allow_unauthenticated_public = true)).await;
    let open = open.expect("the override lets it bind");
    assert!(open.endpoints().client.starts_with("tcp://0.0.0.0:"));
    drop(open);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("accounts.sqlite3");
    let mut guarded = (*public(|c| c.auth.required = true)).clone();
    guarded.http.accounts_path = file;
    Broker::bind(Arc::new(guarded))
        .await
        .expect("with tokens required it binds");
}

#[tokio::test]
async fn a_done_from_a_peer_that_never_registered_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (config, accounts) = guarded(dir.path());
    let operator = accounts.create_token("ops", Role::Operator).unwrap();
    let broker = TestBroker::start(config).await;
    let mut caller = Caller::connect(&broker).await;
    caller.call(put("t"), Some(&operator)).await;
    let take = json!({"type": "get_task", "topic": "t", "count": 1});
    let taken = caller.call(take, Some(SECRET)).await;
    let guid = taken[0]["guid"].as_str().expect("a leased task").to_owned();
    let mut intruder = DealerSocket::new();
    intruder.connect(&broker.endpoints.worker).await.unwrap();
    let done = json!({"type": "done", "guid": guid, "next": [{"topic": "evil", "body": {}}]});
    let body = rmp_serde::to_vec_named(&done).unwrap();
    intruder.send(ZmqMessage::from(body)).await.unwrap();
    let message = next_message(&mut intruder).await;
    assert_eq!(message["type"], "disconnect", "{message}");
    let status = json!({"type": "task_status", "guid": guid});
    let status = caller.call(status, Some(&operator)).await;
    assert_eq!(status["state"], "leased", "{status}");
    let reply = caller.call(size("evil"), Some(&operator)).await;
    assert_eq!(reply, json!("invalid queue"), "no next-stage task was put");
    broker.stop().await;
}
