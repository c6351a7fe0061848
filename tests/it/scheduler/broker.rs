//! The broker's scheduler with a hand-moved clock: one firing per due time for
//! interval, cron and date triggers, across a restart, with a coalesced catch-up
//! after downtime; `delete_task` drops instances, cancels work and is announced.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use taskbus::broker::schedule::{Clock, ManualClock};
use taskbus::client::Client;
use zeromq::prelude::*;
use zeromq::{DealerSocket, SubSocket, ZmqMessage};

use crate::common::{durable_config, n_workers, until_stats, TestBroker};

const LIMIT: Duration = Duration::from_secs(10);

/// Waits until the scheduler has run two more checks (so the last clock move was seen).
async fn settle(client: &mut Client) {
    let before = client.stats().await.unwrap()["scheduler"]["ticks"]
        .as_u64()
        .unwrap();
    until_stats(client, LIMIT, |s| {
        s["scheduler"]["ticks"].as_u64().unwrap() >= before + 2
    })
    .await;
}

async fn sizes(client: &mut Client) -> (u64, u64, u64) {
    let mut out = [0u64; 3];
    for (i, topic) in ["every_minute", "every_five", "once"].iter().enumerate() {
        out[i] = client.get_size(topic).await.unwrap().unwrap_or(0);
    }
    (out[0], out[1], out[2])
}

#[tokio::test]
async fn triggers_fire_once_per_due_time_across_a_restart_and_coalesce_after_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_config(dir.path(), |c| c.scheduler.tick_interval_ms = 10);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let clock = ManualClock::new(t0);
    let broker =
        TestBroker::start_with_clock(config.clone(), Some(clock.clone() as Arc<dyn Clock>)).await;
    let mut client = broker.client().await;
    for spec in [
        json!({"type": "add_task", "id": "minutely", "topic": "every_minute", "trigger": {"interval": 60}, "body": {"kind": "interval"}, "max_instances": 10}),
        json!({"type": "add_task", "id": "five", "topic": "every_five", "trigger": {"cron": "*/5 * * * *"}, "max_instances": 10, "misfire_grace_time": null}),
        json!({"type": "add_task", "id": "new_year", "topic": "once", "trigger": {"date": "2026-01-01 00:02:30"}}),
    ] {
        let reply = client.request(&spec).await.unwrap();
        assert_eq!(reply["status"], "scheduled", "{reply}");
    }
    let bad = client
        .request(&json!({"type": "add_task", "topic": "x", "trigger": {"cron": "61 * * * *"}}))
        .await;
    assert!(bad.unwrap_err().to_string().contains("trigger.cron"));

    // 00:01: the interval's first run; the cron's 00:00 (due at creation) too.
    clock.advance(chrono::Duration::seconds(60));
    settle(&mut client).await;
    assert_eq!(sizes(&mut client).await, (1, 1, 0));
    clock.advance(chrono::Duration::seconds(120)); // 00:03:00: minute 2 and 3 due, the date passed
    settle(&mut client).await;
    assert_eq!(
        sizes(&mut client).await,
        (2, 1, 1),
        "coalesced: one run for the two due minutes"
    );
    let instance = client.get_task("every_minute", 1).await.unwrap().remove(0);
    assert!(instance.guid.starts_with("minutely:"), "{}", instance.guid);
    assert_eq!(instance.body, json!({"kind": "interval"}));
    client.ack(&[instance.guid]).await.unwrap();

    // Restart at the same instant: nothing fires twice.
    drop(client);
    broker.stop().await;
    let broker =
        TestBroker::start_with_clock(config.clone(), Some(clock.clone() as Arc<dyn Clock>)).await;
    let mut client = broker.client().await;
    settle(&mut client).await;
    assert_eq!(sizes(&mut client).await, (1, 1, 1));

    // Downtime of an hour: one coalesced catch-up per task, not a burst (the cron
    // task may run late without bound; the interval's latest run is due right now).
    drop(client);
    broker.stop().await;
    clock.advance(chrono::Duration::seconds(3600));
    let broker = TestBroker::start_with_clock(config, Some(clock.clone() as Arc<dyn Clock>)).await;
    let mut client = broker.client().await;
    settle(&mut client).await;
    assert_eq!(sizes(&mut client).await, (2, 2, 1));
    let listed = client
        .request(&json!({"type": "list_tasks"}))
        .await
        .unwrap();
    let scheduled = listed["scheduled"].as_array().unwrap();
    let once = scheduled.iter().find(|t| t["id"] == "new_year").unwrap();
    assert_eq!(once["status"], "finished");
    let five = scheduled.iter().find(|t| t["id"] == "five").unwrap();
    assert_eq!(five["next_fire_time"], "2026-01-01T01:05:00Z", "{five}");
    broker.stop().await;
}

#[tokio::test]
async fn pause_and_resume_stop_and_restart_firing() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_config(dir.path(), |c| c.scheduler.tick_interval_ms = 10);
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
    let broker = TestBroker::start_with_clock(config, Some(clock.clone() as Arc<dyn Clock>)).await;
    let mut client = broker.client().await;
    client
        .request(
            &json!({"type": "add_task", "id": "p", "topic": "paused", "trigger": {"interval": 10}}),
        )
        .await
        .unwrap();
    let paused = client
        .request(&json!({"type": "pause_task", "id": "p"}))
        .await
        .unwrap();
    assert_eq!(paused["status"], "paused");
    clock.advance(chrono::Duration::seconds(100));
    settle(&mut client).await;
    assert_eq!(client.get_size("paused").await.unwrap(), None);
    client
        .request(&json!({"type": "resume_task", "id": "p"}))
        .await
        .unwrap();
    clock.advance(chrono::Duration::seconds(10));
    settle(&mut client).await;
    assert_eq!(client.get_size("paused").await.unwrap(), Some(1));
    let modified = client
        .request(&json!({"type": "modify_task", "id": "p", "body": {"v": 2}}))
        .await
        .unwrap();
    assert_eq!(modified["body"], json!({"v": 2}));
    broker.stop().await;
}

#[tokio::test]
async fn delete_task_drops_instances_cancels_work_and_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    // The raw worker below sends no heartbeats: give it a long life.
    let config = durable_config(dir.path(), |c| {
        c.scheduler.tick_interval_ms = 10;
        c.broker.heartbeat_liveness = 40;
    });
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let broker = TestBroker::start_with_clock(config, Some(clock.clone() as Arc<dyn Clock>)).await;
    let mut client = broker.client().await;
    let mut sub = SubSocket::new();
    sub.connect(&broker.endpoints.events).await.unwrap();
    sub.subscribe("task_deleted").await.unwrap();

    // A worker that takes the instance and holds it.
    let mut worker = DealerSocket::new();
    worker.connect(&broker.endpoints.worker).await.unwrap();
    let ready = json!({"type": "ready", "stage": "hold", "topics": ["doomed"], "capacity": 1});
    worker
        .send(ZmqMessage::from(rmp_serde::to_vec_named(&ready).unwrap()))
        .await
        .unwrap();
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;

    client
        .request(&json!({"type": "add_task", "id": "doomed_task", "topic": "doomed", "trigger": {"interval": 60}, "max_instances": 3}))
        .await
        .unwrap();
    clock.advance(chrono::Duration::seconds(60));
    let held = recv_value(&mut worker).await;
    assert_eq!(held["type"], "task");
    let held_guid = held["tasks"][0]["guid"].as_str().unwrap().to_owned();
    clock.advance(chrono::Duration::seconds(60));
    settle(&mut client).await;
    assert_eq!(
        client.get_size("doomed").await.unwrap(),
        Some(1),
        "a second instance waits"
    );

    let reply = client
        .request(&json!({"type": "delete_task", "id": "doomed_task", "by": "ops"}))
        .await
        .unwrap();
    assert_eq!(reply["dropped"], 2);
    assert_eq!(client.get_size("doomed").await.unwrap(), Some(0));
    // Heartbeats may come first; the cancel names the held instance.
    loop {
        let message = recv_value(&mut worker).await;
        if message["type"] == "cancel" {
            assert_eq!(message["guids"], json!([held_guid]));
            break;
        }
    }
    let event = sub.recv().await.unwrap().into_vec();
    assert_eq!(event[0], Bytes::from_static(b"task_deleted"));
    let body: Value = rmp_serde::from_slice(&event[1]).unwrap();
    assert_eq!(
        (
            body["id"].as_str(),
            body["by"].as_str(),
            body["dropped"].as_u64()
        ),
        (Some("doomed_task"), Some("ops"), Some(2))
    );
    let listed = client
        .request(&json!({"type": "list_tasks"}))
        .await
        .unwrap();
    assert_eq!(listed["scheduled"], json!([]));
    broker.stop().await;
}

async fn recv_value(socket: &mut DealerSocket) -> Value {
    let frames = socket.recv().await.unwrap().into_vec();
    rmp_serde::from_slice(frames.last().unwrap()).unwrap()
}

/// A pyzmq SUB that prints each `task_deleted` body as JSON, one per line.
const PY_SUBSCRIBER: &str = r#"
import json, sys, msgpack, zmq
sub = zmq.Context().socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"task_deleted")
sub.connect(sys.argv[1])
print("subscribed", flush=True)
sub.setsockopt(zmq.RCVTIMEO, 20000)
name, body = sub.recv_multipart()
print(json.dumps({"name": name.decode(), "body": msgpack.unpackb(body)}), flush=True)
"#;

#[tokio::test]
async fn a_pyzmq_subscriber_sees_task_deleted() {
    let Some(python) = crate::python::python() else {
        return;
    };
    let broker = TestBroker::start(crate::common::config(|_| {})).await;
    let mut client = broker.client().await;
    let mut child = tokio::process::Command::new(python)
        .args(["-c", PY_SUBSCRIBER, &broker.endpoints.events])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("subscribed")
    );
    // A subscription reaches the publisher a moment after the connection: delete
    // total tasks until one deletion is seen (each is published once).
    let mut attempt = 0;
    let event: Value = loop {
        attempt += 1;
        assert!(
            attempt < 200,
            "no task_deleted seen by the python subscriber"
        );
        let id = format!("py_{attempt}");
        client
            .request(&json!({"type": "add_task", "id": id, "topic": "py_topic", "trigger": {"interval": 3600}}))
            .await
            .unwrap();
        client
            .request(&json!({"type": "delete_task", "id": id, "by": "pytest"}))
            .await
            .unwrap();
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(100), lines.next_line()).await
        {
            break serde_json::from_str(&line.unwrap().unwrap()).unwrap();
        }
    };
    assert_eq!(event["name"], "task_deleted");
    assert!(event["body"]["id"].as_str().unwrap().starts_with("py_"));
    assert_eq!(event["body"]["by"], "pytest");
    assert_eq!(event["body"]["dropped"], 0);
    broker.stop().await;
}
