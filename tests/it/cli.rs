//! The binaries as a user runs them: the broker and a worker as processes, the CLI
//! against them, the three log files, and clear one-line errors.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{n_workers, take_one, until_stats};

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("bus.toml");
    let text = format!(
        "[broker]\nclient_endpoint = \"tcp://127.0.0.1:0\"\nworker_endpoint = \"tcp://127.0.0.1:0\"\n\
         events_endpoint = \"tcp://127.0.0.1:0\"\nheartbeat_interval_secs = 0.25\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[store]\nkind = \"sqlite\"\ndata_dir = \"{}\"\n[log]\ndir = \"{}\"\n",
        dir.join("data").display(),
        dir.join("log").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `taskbus-broker` and returns it with its client and worker endpoints.
async fn broker(config: &Path) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskbus-broker"))
        .args(["--config", config.to_str().unwrap(), "--log-level", "warn"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
            .unwrap()
    };
    (child, field("client"), field("worker"))
}

async fn cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskbus"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        tokio::io::AsyncWriteExt::write_all(&mut input, text.as_bytes())
            .await
            .unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn terminate(child: &Child) {
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
}

#[tokio::test]
async fn broker_worker_and_cli_processes_run_a_task_and_write_the_three_logs() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let (mut broker, client_ep, worker_ep) = broker(&config).await;

    let mut worker = Command::new(env!("CARGO_BIN_EXE_taskbus-worker"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "warn",
            "--stage",
            "echo",
        ])
        .args([
            "--topic",
            "cli_in",
            "--next-topic",
            "cli_out",
            "--endpoint",
            &worker_ep,
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut client = taskbus::client::Client::connect(&client_ep).await.unwrap();
    until_stats(&mut client, Duration::from_secs(10), |s| n_workers(s) == 1).await;

    let (code, out, err) = cli(
        &["--endpoint", &client_ep, "put", "--topic", "cli_in"],
        Some(r#"[{"body": {"n": 1}}]"#),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let reply: Value = serde_json::from_str(&out).unwrap();
    let guid = reply["guids"][0].as_str().unwrap().to_owned();
    let forwarded = take_one(&mut client, "cli_out", Duration::from_secs(10)).await;
    assert_eq!(forwarded.guid, format!("{guid}/0"));

    let (code, out, _) = cli(
        &["--endpoint", &client_ep, "--json", "get-size", "nowhere"],
        None,
    )
    .await;
    assert_eq!((code, out.trim()), (0, "\"invalid queue\""));
    let (code, out, _) = cli(&["--endpoint", &client_ep, "stats"], None).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["topics"]["cli_in"]["done"],
        1
    );

    terminate(&worker);
    assert!(worker.wait().await.unwrap().success());
    terminate(&broker);
    assert!(broker.wait().await.unwrap().success());
    let log = dir.path().join("log");
    let all = std::fs::read_to_string(log.join("all.log")).unwrap();
    assert!(all.contains("broker serving"), "{all}");
    let scripts = std::fs::read_to_string(log.join("scripts.log")).unwrap();
    assert!(
        scripts.contains(&format!("guid={guid} topic=cli_in ok")),
        "{scripts}"
    );
    assert!(log.join("error.log").exists());
}

#[tokio::test]
async fn errors_are_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[broker]\nclinet_endpoint = \"x\"\n").unwrap();
    let (code, _, err) = cli(&["--config", bad.to_str().unwrap(), "stats"], None).await;
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("clinet_endpoint"), "{err}");

    let (code, _, err) = cli(&["put", "--topic", "t"], Some("{not json")).await;
    assert_eq!(code, 1);
    assert!(err.contains("stdin is not valid json"), "{err}");

    let (code, _, err) = cli(
        &[
            "--endpoint",
            "tcp://127.0.0.1:1",
            "--timeout",
            "0.3",
            "stats",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("tcp://127.0.0.1:1"), "{err}");
}

/// `taskbus ARGS` run in `dir` with extra environment; (exit code, stdout, stderr).
async fn cli_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_taskbus"))
        .args(args)
        .current_dir(dir)
        .env_remove("TASKBUS_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("taskbus exits")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 12: without `bus.toml` (after `cargo install`, say) `taskbus run` started an
/// idle broker and waited forever; the built-in configuration is the shipped bus.toml.
#[tokio::test]
async fn run_in_an_empty_directory_runs_the_shipped_demo() {
    let dir = tempfile::tempdir().unwrap();
    // Only the fixed ports change, so that tests running beside it do not collide.
    let env = [
        ("TASKBUS__BROKER__CLIENT_ENDPOINT", "tcp://127.0.0.1:0"),
        ("TASKBUS__BROKER__WORKER_ENDPOINT", "tcp://127.0.0.1:0"),
        ("TASKBUS__BROKER__EVENTS_ENDPOINT", "tcp://127.0.0.1:0"),
        ("TASKBUS__RUN__EXAMPLE_SITE", "127.0.0.1:0"),
        ("TASKBUS__HTTP__LISTEN", "127.0.0.1:0"),
    ];
    let (code, out, err) = cli_in(dir.path(), &["run", "--log-level", "warn"], &env).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("crawl finished in"), "{out}");
    assert!(out.contains("table example_items:"), "{out}");
    assert!(dir.path().join("data/rows.sqlite3").exists());
    assert!(dir.path().join("log/all.log").exists());
}

/// `taskbus apk package MOTHER --channel 11 --channel-version 1.0 --out OUT`, in `dir`.
async fn apk_package(dir: &Path, mother: &Path, out: &Path) -> (i32, String, String) {
    let (mother, out) = (mother.display().to_string(), out.display().to_string());
    let args = [
        "apk",
        "package",
        &mother,
        "--channel",
        "11",
        "--channel-version",
        "1.0",
    ];
    cli_in(dir, &[&args[..], &["--out", &out]].concat(), &[]).await
}

/// Issue 12: `apk package --out DIR` failed when DIR did not exist, and errors printed
/// their reason twice without the seed's status code.
#[tokio::test]
async fn apk_package_makes_its_out_dir_and_errors_say_the_status_once() {
    let Some(fx) = crate::packager::support::fixtures::fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mother = fx.join("mother-v123.apk");
    let out = dir.path().join("new/sub");
    let (code, stdout, err) = apk_package(dir.path(), &mother, &out).await;
    assert_eq!(code, 0, "{err}");
    let package = out.join("mother-v123_11.apk");
    assert_eq!(stdout.trim(), package.display().to_string());
    crate::packager::support::fixtures::verify_package(&package, "mother-v123.apk", "11", "1.0");

    let unsigned = fx.join("mother-unsigned.apk");
    let (code, _, err) = apk_package(dir.path(), &unsigned, &out).await;
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: 404 WRONG_APK: "), "{err}");
    let reason = "no apk signing block (unsigned or v1-only apk)";
    assert_eq!(err.matches(reason).count(), 1, "{err}");

    let under_a_file = dir.path().join("new/sub/mother-v123_11.apk/x");
    let (code, _, err) = apk_package(dir.path(), &mother, &under_a_file).await;
    assert_eq!(code, 1);
    assert!(err.starts_with("error: 405 COPY_APK_ERROR: "), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}
