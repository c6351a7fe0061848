//! The Redis intake inside the `package` stage:
//! built through `taskbus::stages::build`, and in a `taskbus-worker --stage package`
//! process that is stopped by SIGHUP or killed with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use redis::AsyncCommands;
use serde_json::json;
use taskbus::config::{Config, WorkerSpec};
use taskbus::packager::PackagerConfig;
use tokio::process::{Child, Command};

use super::support::*;

fn spec() -> WorkerSpec {
    WorkerSpec {
        stage: "package".into(),
        topics: vec!["package".into()],
        capacity: 4,
        count: 1,
        next_topic: None,
    }
}

#[tokio::test]
async fn package_stage_runs_the_redis_intake_and_resumes_leftovers() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        packager: test_config(dir.path()),
        ..Config::default()
    };
    let cfg = config.packager.clone();
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut server = notice_server(&[(200, "success")]).await;
    // One task pushed by a producer, one left by a worker killed mid-package.
    let pushed = seed_task("game", json!(31), &server.url).to_string();
    let left = seed_task("game", json!(32), &server.url).to_string();
    let _: () = conn.rpush(&cfg.redis_key, &pushed).await.unwrap();
    let _: () = conn.rpush(cfg.processing_key(), &left).await.unwrap();

    let stage = taskbus::stages::build(&spec(), &config).await.unwrap();
    let mut channels = vec![
        field(&server.next().await, "channel_id")
            .unwrap()
            .to_string(),
        field(&server.next().await, "channel_id")
            .unwrap()
            .to_string(),
    ];
    channels.sort();
    assert_eq!(channels, ["31", "32"]);
    for channel in ["31", "32"] {
        verify_v123(
            &cfg.sdk_game_path.join(format!("game/game_{channel}.apk")),
            channel,
        );
    }
    drop(stage);
}

/// A `taskbus-worker --stage package` process on `config_path`.
fn start_worker(config_path: &Path) -> Child {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    Command::new(env!("CARGO_BIN_EXE_taskbus-worker"))
        .args(["--config", config_path.to_str().unwrap()])
        .args(["--stage", "package", "--endpoint", &endpoint])
        .args(["--log-level", "off"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("taskbus-worker starts")
}

/// A port nothing listens on: the worker's broker is absent, the intake does not need it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `bus.toml` for the worker process: logs under `dir/log`, the test's packager keys.
fn write_bus_toml(dir: &Path, cfg: &PackagerConfig) -> PathBuf {
    let path = dir.join("bus.toml");
    let text = format!(
        r#"[log]
dir = {log:?}
[packager]
task_type = "redis"
sdk_game_path = {games:?}
redis_key = {key:?}
redis_retry_key = {retry:?}
task_schedule_key = {schedule:?}
upload_file_schedule_key = {upload:?}
notice_key = {notice:?}
redis_sleep_time = 0.2
instance_lock_secs = 1.0
udp_host = "127.0.0.1"
udp_port = {udp}
[packager.notice_retry]
initial_ms = 20
max_ms = 100
max_attempts = 3
"#,
        log = dir.join("log").display().to_string(),
        games = cfg.sdk_game_path.display().to_string(),
        key = cfg.redis_key,
        retry = cfg.redis_retry_key,
        schedule = cfg.task_schedule_key,
        upload = cfg.upload_file_schedule_key,
        notice = cfg.notice_key,
        udp = cfg.udp_port.unwrap(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("worker exits")
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args([name, &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {name} {pid}");
}

#[tokio::test]
async fn worker_binary_packages_redis_tasks_and_announces_sighup() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let socket = udp_receiver(&mut cfg).await;
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let config_path = write_bus_toml(dir.path(), &cfg);
    let mut server = notice_server(&[(200, "success")]).await;
    let mut worker = start_worker(&config_path);
    let task = seed_task("game", json!(41), &server.url).to_string();
    let _: () = conn.rpush(&cfg.redis_key, &task).await.unwrap();

    let notice = server.next().await;
    assert_eq!(field(&notice, "errorCode"), Some("201"));
    verify_v123(&cfg.sdk_game_path.join("game/game_41.apk"), "41");

    signal(&worker, "-HUP");
    let (_, level, info) = parse_udp_line(&udp_line(&socket).await);
    assert_eq!(
        (level.as_str(), info.as_str()),
        ("notice", "SIGHUP seen, exiting")
    );
    assert!(wait_exit(&mut worker).await.success());
    let scripts = std::fs::read_to_string(dir.path().join("log/scripts.log")).unwrap();
    let lines: Vec<_> = scripts
        .lines()
        .filter(|l| l.contains("filename=game channel_id=41 code="))
        .collect();
    assert_eq!(lines.len(), 1, "{scripts}");
    assert!(
        lines[0].contains("code=201 error_key=COMPLETE"),
        "{scripts}"
    );
    for key in [cfg.redis_key.clone(), cfg.processing_key()] {
        let left: Vec<String> = conn.lrange(&key, 0, -1).await.unwrap();
        assert!(left.is_empty(), "{key}: {left:?}");
    }
}

#[tokio::test]
async fn worker_killed_while_notifying_resumes_in_the_next_process() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let _socket = udp_receiver(&mut cfg).await;
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let config_path = write_bus_toml(dir.path(), &cfg);
    // The first notice hangs: the worker is killed while it holds the task.
    let mut server = notice_server(&[(HANG, ""), (200, "success")]).await;
    let mut first = start_worker(&config_path);
    let task = seed_task("game", json!(51), &server.url).to_string();
    let _: () = conn.rpush(&cfg.redis_key, &task).await.unwrap();
    assert_eq!(field(&server.next().await, "channel_id"), Some("51"));
    signal(&first, "-KILL");
    assert!(!wait_exit(&mut first).await.success());
    let held: Vec<String> = conn
        .lrange(cfg.notice_processing_key(), 0, -1)
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "the notice stays in its processing list");

    let mut second = start_worker(&config_path);
    let again = server.next().await;
    assert_eq!(field(&again, "channel_id"), Some("51"));
    assert_eq!(field(&again, "errorCode"), Some("201"));
    signal(&second, "-TERM");
    assert!(wait_exit(&mut second).await.success());
    for key in [
        cfg.redis_key.clone(),
        cfg.processing_key(),
        cfg.notice_key.clone(),
        cfg.notice_processing_key(),
    ] {
        let left: Vec<String> = conn.lrange(&key, 0, -1).await.unwrap();
        assert!(left.is_empty(), "{key}: {left:?}");
    }
    verify_v123(&cfg.sdk_game_path.join("game/game_51.apk"), "51");
}

/// Issue 12: a Redis-only packager needs no broker; `taskbus packager` serves the
/// Redis lists alone, with no "lost the broker" lines, until a signal.
#[tokio::test]
async fn packager_command_serves_redis_alone_until_sigterm() {
    let Some(mut conn) = redis_or_skip().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let _socket = udp_receiver(&mut cfg).await;
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let config_path = write_bus_toml(dir.path(), &cfg);
    let mut server = notice_server(&[(200, "success")]).await;
    let mut packager = Command::new(env!("CARGO_BIN_EXE_taskbus"))
        .args([
            "--config",
            config_path.to_str().unwrap(),
            "--log-level",
            "off",
        ])
        .arg("packager")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("taskbus packager starts");
    let task = seed_task("game", json!(61), &server.url).to_string();
    let _: () = conn.rpush(&cfg.redis_key, &task).await.unwrap();
    let notice = server.next().await;
    assert_eq!(field(&notice, "errorCode"), Some("201"));
    signal(&packager, "-TERM");
    assert!(wait_exit(&mut packager).await.success());
    let all = std::fs::read_to_string(dir.path().join("log/all.log")).unwrap();
    assert!(!all.contains("broker"), "{all}");
    verify_v123(&cfg.sdk_game_path.join("game/game_61.apk"), "61");

    // A bus-mode configuration has nothing for it to serve.
    let bus = dir.path().join("bus-mode.toml");
    std::fs::write(&bus, "[packager]\ntask_type = \"bus\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_taskbus"))
        .args(["--config", bus.to_str().unwrap(), "packager"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("task_type = \"redis\""), "{err}");
}
