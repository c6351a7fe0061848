//! The broker binary under attack: started with a config in a temp dir, its stderr
//! log watched line by line, its RSS read from /proc, and a normal client whose
//! round trips are timed while the attack runs.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use taskbus::client::Client;
use taskbus::task::NewTask;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long any awaited event may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(8);

/// The topic of the tasks put before an attack.
const TOPIC: &str = "before";
/// How many tasks are put before an attack.
pub const TASKS: u64 = 20;

/// A `taskbus-broker` process.
pub struct BrokerProcess {
    child: Child,
    pub pid: u32,
    /// `host:port` of the client endpoint.
    pub client_addr: String,
    pub client_endpoint: String,
    lines: Arc<Mutex<Vec<String>>>,
    seen: watch::Receiver<usize>,
    _dir: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts the broker with `limits` (lines of `[broker]`) and waits for its
    /// "listening" line.
    pub async fn start(limits: &str) -> BrokerProcess {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.toml");
        let text = format!(
            "[broker]\nclient_endpoint = \"tcp://127.0.0.1:0\"\nworker_endpoint = \"tcp://127.0.0.1:0\"\n\
             events_endpoint = \"tcp://127.0.0.1:0\"\n{limits}\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[store]\nkind = \"memory\"\n[log]\ndir = \"{}\"\n",
            dir.path().join("log").display()
        );
        std::fs::write(&path, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_taskbus-broker"))
            .args(["--config", path.to_str().unwrap(), "--log-level", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("broker binary starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = stdout.next_line().await.unwrap().expect("a listening line");
        let client_endpoint = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("client="))
            .expect("client endpoint")
            .to_owned();
        let (lines, seen) = watch_lines(child.stderr.take().unwrap());
        BrokerProcess {
            pid: child.id().unwrap(),
            client_addr: client_endpoint.trim_start_matches("tcp://").to_owned(),
            client_endpoint,
            child,
            lines,
            seen,
            _dir: dir,
        }
    }

    /// A normal client, which has put `TASKS` tasks.
    pub async fn client_with_tasks(&self) -> Client {
        let mut client = Client::connect(&self.client_endpoint)
            .await
            .expect("client connects")
            .with_timeout(LIMIT);
        let tasks: Vec<NewTask> = (0..TASKS)
            .map(|n| NewTask::new(TOPIC, json!({ "n": n })))
            .collect();
        client.put(&tasks).await.expect("put");
        client
    }

    /// Waits until `count` log lines contain every one of `parts`; returns them.
    pub async fn log_lines(&self, parts: &[&str], count: usize) -> Vec<String> {
        let mut seen = self.seen.clone();
        let deadline = Instant::now() + LIMIT;
        loop {
            let matching: Vec<String> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|line| parts.iter().all(|part| line.contains(part)))
                .cloned()
                .collect();
            if matching.len() >= count {
                return matching;
            }
            let waited = tokio::time::timeout_at(deadline, seen.changed()).await;
            assert!(
                matches!(waited, Ok(Ok(()))),
                "{} of {count} log lines with {parts:?}; log so far:\n{}",
                matching.len(),
                self.lines.lock().unwrap().join("\n")
            );
        }
    }

    /// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
    }

    /// Checks that the broker still runs, still holds the tasks put before the
    /// attack, and that its peak RSS stayed within 64 MB of `rss_before`.
    pub async fn check_survived(&mut self, client: &mut Client, rss_before_kib: u64) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the broker exited"
        );
        assert_eq!(client.get_size(TOPIC).await.expect("get_size"), Some(TASKS));
        let peak = self.memory_kib("VmHWM");
        println!(
            "broker RSS before {} MiB, peak {} MiB",
            rss_before_kib / 1024,
            peak / 1024
        );
        assert!(
            peak.saturating_sub(rss_before_kib) < 64 * 1024,
            "peak RSS {peak} KiB is more than 64 MB over {rss_before_kib} KiB"
        );
    }
}

/// Collects the lines of `stderr`, counting them in a watch channel.
fn watch_lines(
    stderr: tokio::process::ChildStderr,
) -> (Arc<Mutex<Vec<String>>>, watch::Receiver<usize>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = watch::channel(0);
    let store = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            store.lock().unwrap().push(line);
            tx.send_modify(|n| *n += 1);
        }
    });
    (lines, rx)
}

/// Runs `attack` while a normal client asks `get_size` every few milliseconds in a
/// task of its own; prints the client's p99 round trip after checking that every
/// request was answered.
pub async fn served_during<F: std::future::Future>(
    mut client: Client,
    name: &str,
    attack: F,
) -> (F::Output, Client) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let probe = tokio::spawn(async move {
        let mut times = Vec::new();
        let mut pace = tokio::time::interval(Duration::from_millis(2));
        while !stopped.load(Ordering::Acquire) || times.is_empty() {
            pace.tick().await;
            let start = Instant::now();
            let size = client.get_size(TOPIC).await;
            assert_eq!(size.expect("get_size during the attack"), Some(TASKS));
            times.push(start.elapsed());
        }
        (client, times)
    });
    let output = attack.await;
    stop.store(true, Ordering::Release);
    let (client, mut times) = probe.await.expect("the normal client's task");
    times.sort();
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    println!(
        "{name}: normal client served {} requests meanwhile, p99 {p99:?}",
        times.len()
    );
    assert!(p99 < Duration::from_secs(2), "{name}: p99 {p99:?}");
    (output, client)
}
