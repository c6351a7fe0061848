//! The seed's client calls and the admin verbs over the client endpoint.

use std::time::Duration;

use serde_json::json;
use taskbus::protocol::Format;
use taskbus::task::NewTask;

use crate::common::{config, take_one, TestBroker};

#[tokio::test]
async fn get_size_and_get_task_follow_the_seed_in_both_encodings() {
    let broker = TestBroker::start(config(|_| {})).await;
    for format in [Format::Json, Format::MsgPack] {
        let mut client = broker.client().await.with_format(format);
        let topic = format!("jd_{format:?}");
        // A topic nobody declared or put to is the seed's "invalid queue".
        let reply = client
            .request(&json!({"type": "get_size", "topic": topic, "count": 3}))
            .await
            .unwrap();
        assert_eq!(reply, json!("invalid queue"));
        let reply = client
            .request(&json!({"type": "get_task", "topic": topic, "count": 3}))
            .await
            .unwrap();
        assert_eq!(reply, json!([]));

        let bodies: Vec<_> = (0..5).map(|i| json!({"page": i})).collect();
        let tasks: Vec<NewTask> = bodies
            .iter()
            .map(|b| NewTask::new(&topic, b.clone()))
            .collect();
        let guids = client.put(&tasks).await.unwrap();
        assert_eq!(guids.len(), 5);
        assert_eq!(client.get_size(&topic).await.unwrap(), Some(5));

        let taken = client.get_task(&topic, 3).await.unwrap();
        assert_eq!(
            taken.iter().map(|t| t.body.clone()).collect::<Vec<_>>(),
            bodies[..3]
        );
        assert!(taken.iter().all(|t| t.topic == topic && t.attempt == 1));
        assert_eq!(client.get_size(&topic).await.unwrap(), Some(2));

        let acked = client
            .ack(&taken.iter().map(|t| t.guid.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(acked.acked, 3);
        let again = client.ack(&[taken[0].guid.clone()]).await.unwrap();
        assert_eq!(
            (again.acked, again.missing.clone()),
            (0, vec![taken[0].guid.clone()])
        );

        let stats = client.stats().await.unwrap();
        assert_eq!(stats["topics"][&topic]["done"], 3);
        assert_eq!(stats["topics"][&topic]["ready"], 2);
        let status = client
            .request(&json!({"type": "task_status", "guid": taken[0].guid}))
            .await
            .unwrap();
        assert_eq!(status["outcome"], "done");
    }
    broker.stop().await;
}

#[tokio::test]
async fn a_task_taken_with_get_task_comes_back_when_its_lease_expires() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut client = broker.client().await;
    let mut task = NewTask::new("lease", json!({"n": 1}));
    task.timeout = Some(0.2);
    let guid = client.put(&[task]).await.unwrap().remove(0);
    let first = take_one(&mut client, "lease", Duration::from_secs(1)).await;
    assert_eq!((first.guid.as_str(), first.attempt), (guid.as_str(), 1));
    // Not acked: after 0.2 s the broker puts it back, with its attempt counted.
    let second = take_one(&mut client, "lease", Duration::from_secs(5)).await;
    assert_eq!((second.guid.as_str(), second.attempt), (guid.as_str(), 2));
    let status = client
        .request(&json!({"type": "task_status", "guid": guid}))
        .await
        .unwrap();
    assert_eq!(status["state"], "leased");
    assert_eq!(status["last_error"], "lease expired");
    // A small body comes whole, with its size.
    assert_eq!(status["body"], json!({"n": 1}), "{status}");
    assert!(
        status["body_bytes"].as_u64().is_some_and(|n| n > 0),
        "{status}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn nack_retries_until_max_retry_then_dead_letters() {
    let broker = TestBroker::start(config(|c| c.broker.max_retry = 1)).await;
    let mut client = broker.client().await;
    let guid = client
        .put(&[NewTask::new("flaky", json!({}))])
        .await
        .unwrap()
        .remove(0);
    for expected in ["ready", "dead"] {
        let task = take_one(&mut client, "flaky", Duration::from_secs(1)).await;
        let reply = client
            .request(&json!({"type": "nack", "guid": task.guid, "error": "boom"}))
            .await
            .unwrap();
        assert_eq!(reply["state"], expected);
    }
    let dead = client
        .request(&json!({"type": "dead_list", "topic": "flaky"}))
        .await
        .unwrap();
    assert_eq!(dead["total"], 1);
    assert_eq!(dead["tasks"][0]["guid"], guid.as_str());
    let last_error = dead["tasks"][0]["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.starts_with("boom (after 2 attempts over "),
        "the dead letter says how many attempts over how long: {last_error}"
    );
    assert_eq!(client.stats().await.unwrap()["topics"]["flaky"]["dead"], 1);

    let retried = client
        .request(&json!({"type": "dead_retry", "topic": "flaky"}))
        .await
        .unwrap();
    assert_eq!(retried["retried"], 1);
    assert_eq!(client.get_size("flaky").await.unwrap(), Some(1));
    let task = take_one(&mut client, "flaky", Duration::from_secs(1)).await;
    client
        .request(&json!({"type": "nack", "guid": task.guid, "retryable": false}))
        .await
        .unwrap();
    let purged = client
        .request(&json!({"type": "dead_purge", "guids": [guid]}))
        .await
        .unwrap();
    assert_eq!(purged["purged"], 1);
    assert_eq!(client.stats().await.unwrap()["topics"]["flaky"]["dead"], 0);
    broker.stop().await;
}

#[tokio::test]
async fn put_with_a_known_guid_does_not_queue_twice_and_list_tasks_shows_queues() {
    let broker = TestBroker::start(config(|_| {})).await;
    let mut client = broker.client().await;
    let mut task = NewTask::new("idem", json!({"x": 1}));
    task.guid = Some("fixed-guid".into());
    assert_eq!(
        client.put(&[task.clone()]).await.unwrap(),
        vec!["fixed-guid"]
    );
    assert_eq!(client.put(&[task]).await.unwrap(), vec!["fixed-guid"]);
    assert_eq!(client.get_size("idem").await.unwrap(), Some(1));
    let listed = client
        .request(&json!({"type": "list_tasks", "topic": "idem"}))
        .await
        .unwrap();
    assert_eq!(listed["queued"][0]["guid"], "fixed-guid");
    assert_eq!(listed["queued"][0]["state"], "ready");
    broker.stop().await;
}

#[tokio::test]
async fn declared_topics_are_known_before_any_put() {
    let broker = TestBroker::start(config(|c| {
        c.topics.insert("declared".into(), Default::default());
    }))
    .await;
    let mut client = broker.client().await;
    assert_eq!(client.get_size("declared").await.unwrap(), Some(0));
    broker.stop().await;
}

#[tokio::test]
async fn strict_topics_refuse_puts_to_unknown_topics() {
    let broker = TestBroker::start(config(|c| c.broker.strict_topics = true)).await;
    let mut client = broker.client().await;
    let err = client
        .put(&[NewTask::new("nowhere", json!({}))])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown_topic"), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");
    broker.stop().await;
}
