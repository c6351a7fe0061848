//! Outcomes recorded across a Redis restart, on a `redis-server` of the test's own (a
//! free loopback port, its data in a temp directory); the shared 6379 server is never
//! restarted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use redis::AsyncCommands;
use serde_json::json;
use taskbus::packager::{run_with, Packager, PackagerConfig, PackagerEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::support::*;

/// A `redis-server` on `port` keeping its data in `dir`, killed on drop.
struct OwnRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl OwnRedis {
    /// Starts it and waits for "Ready to accept connections"; `None` (after printing
    /// why) when `redis-server` is not installed, a panic instead under `CI=true`.
    async fn start(dir: &Path, port: u16) -> Option<Self> {
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", dir.to_str().unwrap(), "--dbfilename", "dump.rdb"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("redis-server is required in CI: {e}")
            }
            Err(e) => {
                println!("skipped: cannot start redis-server: {e}");
                return None;
            }
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            ready,
            Ok(true),
            "redis-server on port {port} did not get ready"
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Self {
            child,
            port,
            dir: dir.to_path_buf(),
        })
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/0", self.port)).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }

    /// `SHUTDOWN SAVE` (the data survive in `dump.rdb`), then waits for the exit.
    async fn stop(mut self) -> (PathBuf, u16) {
        let mut conn = self.conn().await;
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
            .arg("SAVE")
            .query_async(&mut conn)
            .await;
        let status = tokio::time::timeout(WAIT, self.child.wait()).await;
        assert!(status.expect("redis-server exits").unwrap().success());
        (self.dir.clone(), self.port)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Events = tokio::sync::broadcast::Receiver<PackagerEvent>;
type Running = tokio::task::JoinHandle<anyhow::Result<()>>;

async fn start(cfg: PackagerConfig) -> (Events, CancellationToken, Running) {
    let packager = Arc::new(Packager::new(cfg).await.unwrap());
    let events = packager.subscribe();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run_with(packager, shutdown.clone()));
    (events, shutdown, handle)
}

/// Issue 12: after a Redis outage, delivered notices stayed in `notice:processing` for
/// the rest of the run (the outcome was given up after one broken pipe) and the next
/// start sent them again.
#[tokio::test]
async fn notice_delivered_while_redis_is_down_is_recorded_once_it_is_back() {
    let data = tempfile::tempdir().unwrap();
    let Some(server_proc) = OwnRedis::start(data.path(), free_port()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = PackagerConfig {
        redis_port: server_proc.port,
        ..test_config(dir.path())
    };
    let Some(_) = write_mother(&cfg, "game") else {
        return;
    };
    let mut notices = notice_server(&[(GATE, "success")]).await;
    let mut conn = server_proc.conn().await;
    let task = seed_task("game", json!(21), &notices.url).to_string();
    let _: () = conn.rpush(&cfg.redis_key, &task).await.unwrap();

    let (mut events, shutdown, handle) = start(cfg.clone()).await;
    // The notice is at the receiver, held there while Redis goes away.
    let first = notices.next().await;
    assert_eq!(field(&first, "errorCode"), Some("201"));
    let (data_dir, port) = server_proc.stop().await;
    notices.gate.add_permits(1);
    let notice_list = cfg.notice_processing_key();
    wait_for(
        &mut events,
        "a failed attempt to record the notice",
        |e| matches!(e, PackagerEvent::RedisRetry { what, .. } if what.contains(&notice_list)),
    )
    .await;

    let server_proc = OwnRedis::start(&data_dir, port).await.expect("restarts");
    shutdown.cancel();
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("stops once the outcome is recorded")
        .unwrap()
        .unwrap();
    let mut conn = server_proc.conn().await;
    for key in [
        cfg.redis_key.clone(),
        cfg.processing_key(),
        cfg.notice_key.clone(),
        cfg.notice_processing_key(),
    ] {
        let left: Vec<String> = conn.lrange(&key, 0, -1).await.unwrap();
        assert!(left.is_empty(), "{key}: {left:?}");
    }
    // The next start has nothing to send again.
    let (mut events, shutdown, handle) = start(cfg.clone()).await;
    let resumed = wait_for(
        &mut events,
        "resume of the notices",
        |e| matches!(e, PackagerEvent::Resumed { list, .. } if *list == cfg.notice_key),
    )
    .await;
    assert!(
        matches!(resumed, PackagerEvent::Resumed { count: 0, .. }),
        "{resumed:?}"
    );
    shutdown.cancel();
    handle.await.unwrap().unwrap();
    assert!(notices.requests.try_recv().is_err(), "one notice in all");
}
