//! The `package` stage on the bus: built through
//! `taskbus::stages::build`, called directly and run by the worker runtime against an
//! in-process broker. DONE results, FAIL errors and scripts.log lines carry the seed's
//! codes; SIGHUP sends the seed's `notice` line.

use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};
use taskbus::broker::Broker;
use taskbus::client::Client;
use taskbus::config::{Config, StoreKind, WorkerSpec};
use taskbus::task::{NewTask, Task};
use taskbus::worker::{self, Stage, WorkerOptions};
use tokio_util::sync::CancellationToken;

use super::support::*;

/// scripts.log lines (`target: "scripts"`) of this test binary.
fn scripts_lines() -> &'static Mutex<Vec<String>> {
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, meta: &log::Metadata) -> bool {
            meta.target() == "scripts"
        }
        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                let line = format!("{} {}", record.level(), record.args());
                scripts_lines().lock().unwrap().push(line);
            }
        }
        fn flush(&self) {}
    }
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        log::set_boxed_logger(Box::new(Capture)).expect("no other logger");
        log::set_max_level(log::LevelFilter::Info);
    });
    LINES.get_or_init(Default::default)
}

/// The scripts.log lines that mention `guid=<guid> `.
fn lines_of(guid: &str) -> Vec<String> {
    let needle = format!("guid={guid} ");
    scripts_lines()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&needle))
        .cloned()
        .collect()
}

fn bus_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.broker.use_ephemeral_loopback();
    config.broker.heartbeat_interval_secs = 0.25;
    config.store.kind = StoreKind::Memory;
    config.worker.reconnect_min_secs = 0.05;
    config.worker.reconnect_max_secs = 0.4;
    config.worker.shutdown_grace_secs = 5.0;
    config.packager = taskbus::packager::PackagerConfig {
        task_type: taskbus::packager::TaskType::Bus,
        ..test_config(dir)
    };
    config
}

fn spec(next_topic: Option<&str>) -> WorkerSpec {
    WorkerSpec {
        stage: "package".into(),
        topics: vec!["package".into()],
        capacity: 4,
        count: 1,
        next_topic: next_topic.map(str::to_string),
    }
}

fn bus_task(guid: &str, body: Value) -> Task {
    Task {
        guid: guid.into(),
        topic: "package".into(),
        body: body.into(),
        attempt: 1,
        timeout: None,
        max_retry: None,
    }
}

fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test]
async fn stage_answers_with_the_seeds_codes() {
    scripts_lines();
    let dir = tempfile::tempdir().unwrap();
    let config = bus_config(dir.path());
    let cfg = &config.packager;
    let Some(_) = write_mother(cfg, "game") else {
        return;
    };
    let Some(_) = write_mother_variant(cfg, "old", "mother-v1.apk") else {
        return;
    };
    let stage = taskbus::stages::build(&spec(Some("package_done")), &config)
        .await
        .unwrap();

    // COMPLETE: DONE with one envelope, the task as it came plus the result.
    let guid = unique("ok");
    let next = stage
        .handle(bus_task(&guid, seed_task("game", json!(11), "")))
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    let body = &next[0].body.to_value();
    assert_eq!(body["filename"], "game");
    assert_eq!(body["producer_note"], "kept as is");
    let result = &body["result"];
    assert_eq!(
        (&result["code"], &result["error_key"], &result["message"]),
        (&json!(201), &json!("COMPLETE"), &json!("打包已完成"))
    );
    let package = std::path::PathBuf::from(result["path"].as_str().unwrap());
    verify_v123(&package, "11");
    let lines = lines_of(&guid);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            "guid={guid} topic=package filename=game channel_id=11"
        )) && lines[0].contains("code=201 error_key=COMPLETE"),
        "{lines:?}"
    );

    // HAVEN_SUB: the package exists and the task does not enforce a rebuild.
    let guid = unique("haven");
    let mut value = seed_task("game", json!(11), "");
    value["extend"]["enforcement"] = json!(false);
    let next = stage.handle(bus_task(&guid, value)).await.unwrap();
    assert_eq!(next[0].body.to_value()["result"]["code"], 403);
    assert_eq!(next[0].body.to_value()["result"]["error_key"], "HAVEN_SUB");
    assert!(lines_of(&guid)[0].contains("code=403 error_key=HAVEN_SUB"));

    // Failures: FAIL with the code first; retryable only what can change.
    let cases = [
        (seed_task("absent", json!(1), ""), "402 NO_APK", true),
        (seed_task("old", json!(1), ""), "404 WRONG_APK", false),
        (json!({"filename": "game"}), "401 ARG_MISS", false),
        (json!("not an object"), "401 ARG_MISS", false),
    ];
    for (body, code, retryable) in cases {
        let guid = unique("fail");
        let err = stage
            .handle(bus_task(&guid, body.clone()))
            .await
            .unwrap_err();
        assert!(err.message.starts_with(code), "{body}: {}", err.message);
        assert_eq!(err.retryable, retryable, "{body}: {}", err.message);
        let lines = lines_of(&guid);
        let (number, key) = code.split_once(' ').unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(&format!("code={number} error_key={key}")),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn results_go_on_only_to_a_callback_or_next_topic() {
    let dir = tempfile::tempdir().unwrap();
    let config = bus_config(dir.path());
    let Some(_) = write_mother(&config.packager, "game") else {
        return;
    };
    let stage = taskbus::stages::build(&spec(None), &config).await.unwrap();
    let next = stage
        .handle(bus_task(&unique("g"), seed_task("game", json!(1), "")))
        .await
        .unwrap();
    assert!(next.is_empty(), "nobody to tell: {next:?}");
    let mut value = seed_task("game", json!(2), "");
    value["callback"] = json!({"topic": "package_report"});
    let next = stage.handle(bus_task(&unique("g"), value)).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        next[0].body.routing().callback_topic.as_deref(),
        Some("package_report")
    );
    assert_eq!(next[0].body.to_value()["result"]["code"], 201);
}

/// Takes one task from `topic`, asking again after each empty answer (each try is a
/// round trip, not a sleep).
async fn take_one(client: &mut Client, topic: &str) -> Task {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(task) = client.get_task(topic, 1).await.unwrap().pop() {
            return task;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing on {topic}");
        tokio::task::yield_now().await;
    }
}

/// Asks `task_status` until the task is dead-lettered; returns the status.
async fn until_dead(client: &mut Client, guid: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = client
            .request(&json!({"type": "task_status", "guid": guid}))
            .await
            .unwrap();
        if status["state"] == "dead" {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{guid} not dead: {status}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn package_topic_flows_through_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(bus_config(dir.path()));
    let Some(_) = write_mother(&config.packager, "game") else {
        return;
    };
    let mut server = notice_server(&[(200, "success")]).await;
    let broker = Broker::bind(config.clone()).await.unwrap();
    let endpoints = broker.endpoints().clone();
    let broker_stop = CancellationToken::new();
    let broker_task = tokio::spawn(broker.run(broker_stop.clone()));

    let spec = spec(Some("package_done"));
    let stage: Arc<dyn Stage> = taskbus::stages::build(&spec, &config).await.unwrap();
    let mut options = WorkerOptions::from_config(&config, "package", spec.topics.clone(), 4);
    options.endpoint = endpoints.worker.clone();
    options.next_topic = spec.next_topic.clone();
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker::run(options, stage, worker_stop.clone()));

    let mut client = Client::connect(&endpoints.client).await.unwrap();
    let no_retry = |body: Value| NewTask {
        max_retry: Some(0),
        ..NewTask::new("package", body)
    };
    let guids = client
        .put(&[
            NewTask::new("package", seed_task("game", json!(21), &server.url)),
            no_retry(seed_task("absent", json!(22), "")),
            no_retry(json!({"filename": "game", "channel_id": 23})),
        ])
        .await
        .unwrap();

    let done = take_one(&mut client, "package_done").await;
    assert_eq!(done.guid, format!("{}/0", guids[0]));
    assert_eq!(done.body.to_value()["result"]["code"], 201);
    verify_v123(
        std::path::Path::new(done.body.to_value()["result"]["path"].as_str().unwrap()),
        "21",
    );
    let notice = server.next().await;
    assert_eq!(field(&notice, "errorCode"), Some("201"));

    let no_apk = until_dead(&mut client, &guids[1]).await;
    assert!(
        no_apk["last_error"]
            .as_str()
            .unwrap()
            .starts_with("402 NO_APK"),
        "{no_apk}"
    );
    let arg_miss = until_dead(&mut client, &guids[2]).await;
    assert!(
        arg_miss["last_error"]
            .as_str()
            .unwrap()
            .starts_with("401 ARG_MISS"),
        "{arg_miss}"
    );

    worker_stop.cancel();
    tokio::time::timeout(WAIT, worker_task)
        .await
        .unwrap()
        .unwrap();
    broker_stop.cancel();
    broker_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn sighup_sends_the_seeds_notice_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = bus_config(dir.path());
    let socket = udp_receiver(&mut config.packager).await;
    taskbus::cli::on_signal(taskbus::cli::Signal::Hangup, &config).await;
    let (_, level, info) = parse_udp_line(&udp_line(&socket).await);
    assert_eq!(
        (level.as_str(), info.as_str()),
        ("notice", "SIGHUP seen, exiting")
    );
    // Other signals send nothing: the next line is the one sent after them.
    taskbus::cli::on_signal(taskbus::cli::Signal::Terminate, &config).await;
    taskbus::packager::stage::on_hangup(&config).await;
    let (_, level, _) = parse_udp_line(&udp_line(&socket).await);
    assert_eq!(level, "notice");
    let mut buf = [0u8; 16];
    assert!(
        socket.try_recv(&mut buf).is_err(),
        "one line per hangup, none for SIGTERM"
    );
}
