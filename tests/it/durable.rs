//! The durable store: the broker binary killed with SIGKILL while producers and
//! workers run loses no accepted task; leased tasks come back after a restart; a
//! corrupt store file is refused with a clear error.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use taskbus::broker::Broker;
use taskbus::client::Client;
use taskbus::task::{NewTask, Task};
use taskbus::worker::{Stage, StageError};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{
    durable_config, fixed_endpoints, take_one, topic_count, until_stats, TestBroker, TestWorker,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Records every guid it runs, taking a little time so that tasks are in flight.
struct Record(Arc<Mutex<HashSet<String>>>);

impl Stage for Record {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let seen = self.0.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.lock().unwrap().insert(task.guid);
            Ok(Vec::new())
        })
    }
}

/// Starts the broker binary and waits for its "listening" line.
async fn start_broker(config_path: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskbus-broker"))
        .args([
            "--config",
            config_path.to_str().unwrap(),
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("broker binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next_line().await.unwrap().expect("a listening line");
    assert!(line.starts_with("listening"), "{line}");
    child
}

async fn kill(child: &mut Child) {
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
}

/// Puts a batch until the broker accepts it (through kills and restarts).
async fn put_until_accepted(
    endpoint: &str,
    client: &mut Option<Client>,
    tasks: &[NewTask],
) -> Vec<String> {
    loop {
        if client.is_none() {
            if let Ok(c) = Client::connect(endpoint).await {
                *client = Some(c.with_timeout(Duration::from_secs(1)));
            }
        }
        if let Some(c) = client.as_mut() {
            match c.put(tasks).await {
                Ok(guids) => return guids,
                Err(_) => *client = None,
            }
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_put_mid_lease_and_mid_done_loses_no_accepted_task() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_config(dir.path(), fixed_endpoints());
    let config_path = dir.path().join("bus.toml");
    std::fs::write(
        &config_path,
        format!(
            "[broker]\nclient_endpoint = \"{}\"\nworker_endpoint = \"{}\"\nevents_endpoint = \"{}\"\nheartbeat_interval_secs = 0.25\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[store]\nkind = \"sqlite\"\ndata_dir = \"{}\"\n[log]\ndir = \"{}\"\n",
            config.broker.client_endpoint,
            config.broker.worker_endpoint,
            config.broker.events_endpoint,
            dir.path().join("data").display(),
            dir.path().join("log").display(),
        ),
    )
    .unwrap();
    let mut broker = start_broker(&config_path).await;

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut options = taskbus::worker::WorkerOptions::from_config(
            &config,
            "record",
            vec!["durable".into()],
            8,
        );
        options.endpoint = config.broker.worker_endpoint.clone();
        workers.push(TestWorker::start(options, Arc::new(Record(seen.clone()))));
    }

    let endpoint = config.broker.client_endpoint.clone();
    let mut accepted: Vec<String> = Vec::new();
    let mut client = None;
    let batches = 60;
    for batch in 0..batches {
        let tasks: Vec<NewTask> = (0..20)
            .map(|i| {
                let mut task = NewTask::new("durable", json!({"batch": batch, "i": i}));
                task.guid = Some(format!("b{batch}-{i}"));
                task
            })
            .collect();
        let put = put_until_accepted(&endpoint, &mut client, &tasks);
        if batch == 20 || batch == 40 {
            // Kill while a put is on its way and workers hold leases.
            let (guids, ()) = tokio::join!(put, async {
                tokio::task::yield_now().await;
                kill(&mut broker).await;
                broker = start_broker(&config_path).await;
            });
            accepted.extend(guids);
        } else {
            accepted.extend(put.await);
        }
    }
    // Kill once more while the workers are still finishing (DONEs in flight).
    kill(&mut broker).await;
    broker = start_broker(&config_path).await;

    let mut client = Client::connect(&endpoint).await.unwrap();
    until_stats(&mut client, LIMIT, |s| {
        topic_count(s, "durable", "ready") == 0 && topic_count(s, "durable", "leased") == 0
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let lost: Vec<&String> = accepted.iter().filter(|g| !seen.contains(*g)).collect();
    assert_eq!(accepted.len(), batches * 20);
    assert!(
        lost.is_empty(),
        "{} accepted tasks never ran: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    for worker in workers {
        worker.stop().await;
    }
    kill(&mut broker).await;
}

#[tokio::test]
async fn leased_tasks_are_ready_again_after_a_restart_with_their_attempt_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_config(dir.path(), |_| {});
    let broker = TestBroker::start(config.clone()).await;
    let mut client = broker.client().await;
    let tasks: Vec<NewTask> = (0..10)
        .map(|i| NewTask::new("restore", json!({"i": i})))
        .collect();
    let guids = client.put(&tasks).await.unwrap();
    let taken = client.get_task("restore", 3).await.unwrap();
    client.ack(&[taken[0].guid.clone()]).await.unwrap();
    drop(client);
    broker.stop().await;

    let broker = TestBroker::start(config).await;
    let mut client = broker.client().await;
    assert_eq!(client.get_size("restore").await.unwrap(), Some(9));
    // Arrival order is kept; the two leased ones come back with attempt 1 counted.
    let all = client.get_task("restore", 9).await.unwrap();
    let order: Vec<&str> = all.iter().map(|t| t.guid.as_str()).collect();
    assert_eq!(
        order,
        guids[1..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(all[0].attempt, 2);
    assert_eq!(all[1].attempt, 2);
    assert_eq!(all[2].attempt, 1);
    let status = client
        .request(&json!({"type": "task_status", "guid": guids[0]}))
        .await
        .unwrap();
    assert_eq!(status["outcome"], "done", "history survives the restart");
    broker.stop().await;
}

#[tokio::test]
async fn dead_letters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_config(dir.path(), |c| c.broker.max_retry = 0);
    let broker = TestBroker::start(config.clone()).await;
    let mut client = broker.client().await;
    client.put(&[NewTask::new("dl", json!({}))]).await.unwrap();
    let task = take_one(&mut client, "dl", LIMIT).await;
    client
        .request(&json!({"type": "nack", "guid": task.guid, "error": "bad page"}))
        .await
        .unwrap();
    drop(client);
    broker.stop().await;
    let broker = TestBroker::start(config).await;
    let mut client = broker.client().await;
    let dead = client.request(&json!({"type": "dead_list"})).await.unwrap();
    assert_eq!(dead["total"], 1);
    let last_error = dead["tasks"][0]["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.starts_with("bad page (after 1 attempt over "),
        "the dead letter says how many attempts over how long: {last_error}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_corrupt_store_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broker.sqlite3"), vec![0x42u8; 8192]).unwrap();
    let config = durable_config(dir.path(), |_| {});
    let error = Broker::bind(config)
        .await
        .err()
        .expect("a corrupt store is refused")
        .to_string();
    assert!(error.contains("broker.sqlite3"), "{error}");
    assert!(error.contains("not a database"), "{error}");
}
