//! Helpers shared by the packager tests: fixtures, a notice server, a UDP receiver,
//! Redis access, event waits.
#![allow(dead_code)]

pub mod fixtures;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Form, Router};
use serde_json::{json, Value};
use taskbus::packager::{PackagerConfig, PackagerEvent, RetryBounds, TaskType};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};

/// Upper bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(30);

/// Copies the signed fixture `variant` (see `fixtures::SIGNED`, `fixtures::UNSIGNED`)
/// to `<sdk_game_path>/<game>/<game>.apk`; `None` (after printing `skipped:`) when the
/// APK tools are missing.
pub fn write_mother_variant(cfg: &PackagerConfig, game: &str, variant: &str) -> Option<PathBuf> {
    let fx = fixtures::fixtures()?;
    let dir = cfg.sdk_game_path.join(game);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{game}.apk"));
    std::fs::copy(fx.join(variant), &path).unwrap();
    Some(path)
}

/// The v1+v2+v3 signed mother as `<sdk_game_path>/<game>/<game>.apk`.
pub fn write_mother(cfg: &PackagerConfig, game: &str) -> Option<PathBuf> {
    write_mother_variant(cfg, game, "mother-v123.apk")
}

/// Checks a package built from the v1+v2+v3 mother (`fixtures::verify_package`).
pub fn verify_v123(apk: &Path, channel: &str) {
    fixtures::verify_package(apk, "mother-v123.apk", channel, "1.0");
}

/// Settings for a test under `dir`: fast retries, short blocking pops, unique keys.
pub fn test_config(dir: &Path) -> PackagerConfig {
    let prefix = format!("taskbus-test:{}", uuid::Uuid::new_v4());
    let fast = RetryBounds {
        initial_ms: 20,
        max_ms: 100,
        max_attempts: 3,
    };
    PackagerConfig {
        task_type: TaskType::Redis,
        packet_count: 2,
        sdk_game_path: dir.join("sdkgame"),
        redis_key: format!("{prefix}:task"),
        redis_retry_key: format!("{prefix}:retry"),
        task_schedule_key: format!("{prefix}:schedule:task"),
        upload_file_schedule_key: format!("{prefix}:schedule:uploadfile"),
        notice_key: format!("{prefix}:schedule:notice"),
        redis_sleep_time: 0.2,
        notice_retry: fast,
        upload_retry: fast,
        notice_timeout: 5.0,
        instance_lock_secs: 1.0,
        ..PackagerConfig::default()
    }
}

/// A task in the seed's format.
pub fn seed_task(game: &str, channel: Value, url: &str) -> Value {
    json!({
        "filename": game,
        "channel_id": channel,
        "extend": {"channel_version": "1.0"},
        "finish_notice_url": url,
        "producer_note": "kept as is",
    })
}

/// Waits for the first event matching `pred`.
pub async fn wait_for(
    rx: &mut broadcast::Receiver<PackagerEvent>,
    what: &str,
    pred: impl Fn(&PackagerEvent) -> bool,
) -> PackagerEvent {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(event) if pred(&event) => return event,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("lagged {n} events"),
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Status of a scripted answer that never comes (the request hangs).
pub const HANG: u16 = 0;

/// Status of a scripted answer that waits for a permit of `NoticeServer::gate`, then
/// answers 200 with its body.
pub const GATE: u16 = 1;

/// A local notice receiver answering a script of (status, body); the last answer repeats.
pub struct NoticeServer {
    /// `http://127.0.0.1:<port>/notice`.
    pub url: String,
    /// Every request's form fields, in order.
    pub requests: mpsc::UnboundedReceiver<Vec<(String, String)>>,
    /// Permits for `GATE` answers.
    pub gate: Arc<tokio::sync::Semaphore>,
}

struct Script {
    answers: Mutex<Vec<(u16, String)>>,
    seen: mpsc::UnboundedSender<Vec<(String, String)>>,
    gate: Arc<tokio::sync::Semaphore>,
    delay: Duration,
}

async fn answer(
    State(script): State<Arc<Script>>,
    Form(fields): Form<Vec<(String, String)>>,
) -> (StatusCode, String) {
    let _ = script.seen.send(fields);
    let (status, body) = {
        let mut answers = script.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        }
    };
    if status == HANG {
        std::future::pending::<()>().await;
    }
    if status == GATE {
        script.gate.acquire().await.unwrap().forget();
        return (StatusCode::OK, body);
    }
    if !script.delay.is_zero() {
        tokio::time::sleep(script.delay).await;
    }
    (StatusCode::from_u16(status).unwrap(), body)
}

/// Starts a notice receiver on 127.0.0.1:0.
pub async fn notice_server(answers: &[(u16, &str)]) -> NoticeServer {
    notice_server_slow(answers, Duration::ZERO).await
}

/// A notice receiver that takes `delay` to answer each request.
pub async fn notice_server_slow(answers: &[(u16, &str)], delay: Duration) -> NoticeServer {
    let (seen, requests) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let script = Arc::new(Script {
        answers: Mutex::new(answers.iter().map(|(s, b)| (*s, b.to_string())).collect()),
        seen,
        gate: Arc::clone(&gate),
        delay,
    });
    let app = Router::new()
        .route("/notice", post(answer))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notice", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    NoticeServer {
        url,
        requests,
        gate,
    }
}

impl NoticeServer {
    /// The next request's fields.
    pub async fn next(&mut self) -> Vec<(String, String)> {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("timed out waiting for a notice")
            .expect("notice server stopped")
    }
}

/// The value of a form field.
pub fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A UDP socket on 127.0.0.1:0; points the settings at it.
pub async fn udp_receiver(cfg: &mut PackagerConfig) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    cfg.udp_host = Some("127.0.0.1".into());
    cfg.udp_port = Some(socket.local_addr().unwrap().port());
    socket
}

/// The next UDP line.
pub async fn udp_line(socket: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("timed out waiting for a udp line")
        .unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Splits a UDP line into (time, level, info), checking the seed's layout: a
/// `%Y-%m-%d %H:%M:%S` time, 3 spaces, the level, 3 spaces, the info.
pub fn parse_udp_line(line: &str) -> (String, String, String) {
    let (time, rest) = line.split_at(19);
    chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("bad time in {line:?}: {e}"));
    let rest = rest.strip_prefix("   ").expect("3 spaces after the time");
    let (level, info) = rest.split_once("   ").expect("3 spaces after the level");
    assert!(!level.contains(' '), "level {level:?}");
    (time.to_string(), level.to_string(), info.to_string())
}

/// A Redis connection to 127.0.0.1:6379, or `None` after printing why the test skips
/// (a panic instead when `CI=true`).
pub async fn redis_or_skip() -> Option<redis::aio::MultiplexedConnection> {
    let attempt = async {
        let client = redis::Client::open("redis://127.0.0.1:6379/0")?;
        client.get_multiplexed_async_connection().await
    };
    match attempt.await {
        Ok(conn) => Some(conn),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("redis at 127.0.0.1:6379 is required in CI: {e}")
        }
        Err(e) => {
            println!("skipped: no redis at 127.0.0.1:6379: {e}");
            None
        }
    }
}

/// A `moto` S3 server on a free 127.0.0.1 port, killed on drop.
pub struct Moto {
    child: tokio::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `moto_server` (or `python3 -m moto.server`) on port 0 and reads the port from
/// its "Running on" line; `None` (after printing why) when moto is not installed,
/// a panic instead when `CI=true`.
pub async fn moto_or_skip() -> Option<Moto> {
    let commands: [&[&str]; 2] = [
        &["moto_server", "-H", "127.0.0.1", "-p", "0"],
        &["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
    ];
    let mut why = String::new();
    for command in commands {
        match start_moto(command).await {
            Ok(moto) => return Some(moto),
            Err(e) => why.push_str(&format!("{}: {e}; ", command.join(" "))),
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("moto is required in CI (pip install 'moto[server]'): {why}");
    }
    println!("skipped: moto server not available: {why}");
    None
}

async fn start_moto(command: &[&str]) -> Result<Moto, String> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(command[0])
        .args(&command[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find("Running on http://") {
                return Some(line[at + "Running on ".len()..].trim().to_string());
            }
        }
        None
    })
    .await;
    let endpoint = match found {
        Ok(Some(endpoint)) => endpoint,
        Ok(None) => return Err("exited without a \"Running on\" line".into()),
        Err(_) => return Err("no \"Running on\" line within 60 s".into()),
    };
    // Keep reading its log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Moto { child, endpoint })
}
