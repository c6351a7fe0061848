//! Interop with real Python peers (pyzmq + msgpack): the seed's interface script
//! and a worker written from docs/PROTOCOL.md alone (`examples/interface.py`,
//! `examples/python_worker.py`), run as child processes against an in-process broker.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use taskbus::task::NewTask;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::common::{config, n_workers, take_one, topic_count, until_stats, TestBroker};

pub fn python() -> Option<&'static str> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import zmq, msgpack"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some("python3");
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("python3 with pyzmq and msgpack is required under CI");
    }
    eprintln!("skipped: python3 with pyzmq and msgpack not found");
    None
}

const LIMIT: Duration = Duration::from_secs(10);

/// The heartbeat interval of these tests' brokers and Python workers. A little
/// longer than the default test one, so that a Python process starved of CPU on a
/// busy machine is not declared dead by mistake (liveness is 3 intervals).
const HEARTBEAT: f64 = 0.2;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn broker_config() -> std::sync::Arc<taskbus::config::Config> {
    config(|c| c.broker.heartbeat_interval_secs = HEARTBEAT)
}

/// Copies a child's stderr into the test's output (shown when a test fails), and
/// hands each line to the returned receiver.
fn forward_stderr(child: &mut Child, label: String) -> UnboundedReceiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (lines_tx, lines_rx) = unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{label}] {line}");
            let _ = lines_tx.send(line);
        }
    });
    lines_rx
}

// ---------------------------------------------------------------------------
// examples/interface.py
// ---------------------------------------------------------------------------

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert!(self.status.success(), "interface.py failed: {self:?}");
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstdout: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `python3 examples/interface.py --endpoint ENDPOINT ARGS...` in `dir`.
async fn interface(python: &str, dir: &std::path::Path, endpoint: &str, args: &[&str]) -> Run {
    let output = Command::new(python)
        .arg(example("interface.py"))
        .args(["--endpoint", endpoint, "--timeout", "5"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The seed's local_task body (seeds/README.md, 002).
fn seed_body() -> Value {
    json!({
        "crawl": {"name": "jd", "version": "1"},
        "urls": [{"url": {"url": "https://so.m.jd.com/ware/searchList.action", "method": "POST",
                          "data": {"categoryId": "9987", "page": 15}},
                  "result": [{"url": "", "time": "", "html": "", "retry": 0, "sucess": false}]}],
        "abstime": "",
        "content": {"proxymode": "auto", "encode": "utf-8", "lib": "aiohttp", "max_retry": 0,
                    "bulk": false, "cookie": "", "debug": false, "usephantomjs": false},
        "result": [],
        "parsing_data": [],
        "callback": {"topic": "parsing"}
    })
}

/// put, get_size, get_task, ack and stats through the script, in one encoding.
async fn seed_calls_through_interface_py(json_mode: bool) {
    let Some(py) = python() else { return };
    let broker = TestBroker::start(broker_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = broker.endpoints.client.clone();
    let topic = if json_mode {
        "jm_crawl_json"
    } else {
        "jm_crawl_msgpack"
    };
    // Each run starts a Python interpreter, so runs that do not depend on each
    // other go at the same time.
    macro_rules! run {
        ($($arg:expr),*) => {async {
            let mut args: Vec<&str> = if json_mode { vec!["--json"] } else { vec![] };
            $(args.push($arg);)*
            interface(py, dir.path(), &endpoint, &args).await
        }};
    }

    // The seed's get_size on a topic nobody declared or put to.
    assert_eq!(run!("get_size", topic).await.json(), json!("invalid queue"));

    let body = seed_body().to_string();
    let (seed, plain) = tokio::join!(
        run!("put", topic, &body, "--guid", "seed-1"),
        run!("put", topic, r#"{"page": 2}"#),
    );
    assert_eq!(seed.json(), json!({"guids": ["seed-1"]}));
    let plain = plain.json()["guids"][0]
        .as_str()
        .expect("a broker-made guid")
        .to_owned();
    assert_ne!(plain, "seed-1");

    assert_eq!(run!("get_size", topic).await.json(), json!(2));

    // The seed's get_task: a list of tasks in the local_task shape.
    let tasks = run!("get_task", topic, "--count", "5").await.json();
    let mut tasks = tasks.as_array().expect("a list").clone();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    tasks.sort_by_key(|t| t["guid"] != "seed-1");
    assert_eq!(tasks[0]["guid"], "seed-1");
    assert_eq!(tasks[0]["topic"], topic);
    assert_eq!(tasks[0]["body"], seed_body());
    assert_eq!(tasks[0]["attempt"], 1);
    assert_eq!(tasks[1]["guid"], plain.as_str());
    assert_eq!(tasks[1]["body"], json!({"page": 2}));

    let acked = run!("ack", "seed-1", &plain, "never-was").await.json();
    assert_eq!(acked, json!({"acked": 2, "missing": ["never-was"]}));

    // An error reply is printed as JSON and exits with 1.
    let (stats, refused) = tokio::join!(run!("stats"), run!("get_task", topic, "--count", "0"));
    let stats = stats.json();
    assert_eq!(topic_count(&stats, topic, "done"), 2, "{stats}");
    assert_eq!(topic_count(&stats, topic, "ready"), 0, "{stats}");
    assert_eq!(topic_count(&stats, topic, "leased"), 0, "{stats}");
    assert_eq!(n_workers(&stats), 0);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let reply: Value = serde_json::from_str(refused.stdout.trim()).unwrap();
    assert_eq!(reply["code"], "bad_request", "{refused:?}");

    // The seed's script logged to myapp.log in the current directory.
    let log = std::fs::read_to_string(dir.path().join("myapp.log")).expect("myapp.log");
    assert!(log.contains("get_task"), "{log}");
    broker.stop().await;
}

#[tokio::test]
async fn interface_py_speaks_the_seed_calls_in_msgpack() {
    seed_calls_through_interface_py(false).await;
}

#[tokio::test]
async fn interface_py_speaks_the_seed_calls_in_json() {
    seed_calls_through_interface_py(true).await;
}

#[tokio::test]
async fn interface_py_is_importable_and_never_waits_forever() {
    let Some(py) = python() else { return };
    let broker = TestBroker::start(broker_config()).await;
    let dir = tempfile::tempdir().unwrap();

    // The calls as functions of `class Interface`, from another script.
    let script = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
from interface import Interface, BrokerError
with Interface(sys.argv[2], timeout=5) as bus:
    guid = bus.put("imported", {"k": 1}, max_retry=2)
    size = bus.get_size("imported")
    tasks = bus.get_task("imported", count=3)
    acked = bus.ack(*[t["guid"] for t in tasks])
    try:
        bus.get_task("imported", count=0)
        refused = None
    except BrokerError as e:
        refused = e.code
    stats = bus.stats()
print(json.dumps({"guid": guid, "size": size, "tasks": tasks, "acked": acked,
                  "refused": refused, "done": stats["topics"]["imported"]["done"]}))
"#;
    let output = Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(example(""))
        .arg(&broker.endpoints.client)
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["size"], 1, "{out}");
    assert_eq!(out["tasks"][0]["guid"], out["guid"]);
    assert_eq!(out["tasks"][0]["body"], json!({"k": 1}));
    assert_eq!(out["acked"], json!({"acked": 1, "missing": []}));
    assert_eq!(out["refused"], "bad_request");
    assert_eq!(out["done"], 1);

    // Nobody listens here: the request times out, the script says so and exits 2.
    let port = free_port();
    let dead = format!("tcp://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let run = interface(py, dir.path(), &dead, &["--timeout", "0.3", "stats"]).await;
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(run.stderr.contains("no reply from"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(started.elapsed() < LIMIT);
    broker.stop().await;
}

#[tokio::test]
async fn a_pyzmq_sub_completes_its_handshake_on_the_events_endpoint() {
    let Some(py) = python() else { return };
    let broker = TestBroker::start(broker_config()).await;
    let script = r#"
import sys, zmq
from zmq.utils.monitor import recv_monitor_message
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.LINGER, 0)
monitor = sub.get_monitor_socket()
sub.setsockopt(zmq.SUBSCRIBE, b"task_deleted")
sub.connect(sys.argv[1])
while monitor.poll(5000):
    event = recv_monitor_message(monitor)["event"]
    if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
        print("handshake ok")
        break
    if event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        print("handshake failed")
        break
sub.disable_monitor()
monitor.close(linger=0)
sub.close(linger=0)
ctx.term()
"#;
    let output = Command::new(py)
        .args(["-c", script])
        .arg(&broker.endpoints.events)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "handshake ok"
    );
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// examples/python_worker.py
// ---------------------------------------------------------------------------

/// A `python_worker.py` child process (killed when dropped).
pub struct PyWorker {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    log: UnboundedReceiver<String>,
    identity: String,
}

impl PyWorker {
    /// Starts the worker and waits for its `ready <identity>` line.
    pub async fn start(py: &str, endpoint: &str, identity: &str, args: &[&str]) -> PyWorker {
        let heartbeat = HEARTBEAT.to_string();
        let mut child = Command::new(py)
            .arg(example("python_worker.py"))
            .args(["--endpoint", endpoint, "--identity", identity])
            .args(["--heartbeat", &heartbeat])
            .args(["--reconnect-min", "0.05", "--reconnect-max", "0.4"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let log = forward_stderr(&mut child, identity.to_owned());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(LIMIT, stdout.read_line(&mut line))
            .await
            .expect("the worker says ready in time")
            .expect("stdout readable");
        assert_eq!(line.trim_end(), format!("ready {identity}"));
        PyWorker {
            child,
            _stdout: stdout,
            log,
            identity: identity.to_owned(),
        }
    }

    /// Waits for a log line (stderr) that contains `needle`.
    async fn until_log(&mut self, needle: &str) -> String {
        let wait = async {
            while let Some(line) = self.log.recv().await {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!(
                "{} closed its stderr before logging {needle:?}",
                self.identity
            );
        };
        tokio::time::timeout(LIMIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{} did not log {needle:?} in time", self.identity))
    }

    /// Sends SIGTERM (the worker sends DISCONNECT and exits).
    fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn exit_status(&mut self) -> ExitStatus {
        tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit in time", self.identity))
            .unwrap()
    }
}

fn workers(stats: &Value) -> &Vec<Value> {
    stats["workers"].as_array().expect("workers")
}

#[tokio::test]
async fn a_python_worker_runs_a_stage_and_forwards_to_the_next_topic() {
    let Some(py) = python() else { return };
    let broker = TestBroker::start(broker_config()).await;
    let mut client = broker.client().await;
    let mut worker = PyWorker::start(
        py,
        &broker.endpoints.worker,
        "py-stage-1",
        &[
            "--topic",
            "py_in",
            "--next-topic",
            "py_out",
            "--stage",
            "py-echo",
            "--capacity",
            "2",
            "--exit-after",
            "4",
        ],
    )
    .await;
    let stats = until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    let registered = &workers(&stats)[0];
    assert_eq!(registered["id"], "py-stage-1", "{stats}");
    assert_eq!(registered["stage"], "py-echo");
    assert_eq!(registered["capacity"], 2);
    assert_eq!(registered["topics"], json!(["py_in"]));

    let mut tasks: Vec<NewTask> = (0..3)
        .map(|n| NewTask::new("py_in", json!({"n": n})))
        .collect();
    tasks.push(NewTask::new("py_in", seed_body()));
    let guids = client.put(&tasks).await.unwrap();

    for _ in 0..3 {
        let out = take_one(&mut client, "py_out", LIMIT).await;
        // Two run at once, so the order of the results is not fixed.
        let n = out.body.to_value()["n"].as_u64().expect("n") as usize;
        assert_eq!(out.body, json!({"n": n, "handled_by": "python"}));
        assert_eq!(out.guid, format!("{}/0", guids[n]));
        assert_eq!(out.topic, "py_out");
    }
    // The seed's callback.topic wins over the worker's next topic.
    let parsed = take_one(&mut client, "parsing", LIMIT).await;
    assert_eq!(parsed.guid, format!("{}/0", guids[3]));
    assert_eq!(parsed.body.to_value()["handled_by"], "python");
    assert_eq!(parsed.body.to_value()["urls"], seed_body()["urls"]);

    // --exit-after 4: the worker leaves by itself, with a DISCONNECT.
    assert!(worker.exit_status().await.success());
    let stats = until_stats(&mut client, LIMIT, |s| n_workers(s) == 0).await;
    assert_eq!(topic_count(&stats, "py_in", "done"), 4, "{stats}");
    assert_eq!(topic_count(&stats, "py_in", "failed"), 0, "{stats}");
    assert_eq!(topic_count(&stats, "py_in", "ready"), 0, "{stats}");
    assert_eq!(topic_count(&stats, "py_in", "leased"), 0, "{stats}");
    broker.stop().await;
}

#[tokio::test]
async fn a_python_worker_fail_is_retried_until_every_task_is_done() {
    let Some(py) = python() else { return };
    let broker = TestBroker::start(config(|c| {
        c.broker.heartbeat_interval_secs = HEARTBEAT;
        c.broker.max_retry = 5;
    }))
    .await;
    let mut client = broker.client().await;
    let worker = PyWorker::start(
        py,
        &broker.endpoints.worker,
        "py-flaky",
        &[
            "--topic",
            "pyf_in",
            "--next-topic",
            "pyf_out",
            "--fail-every",
            "2",
        ],
    )
    .await;
    let tasks: Vec<NewTask> = (0..5)
        .map(|n| NewTask::new("pyf_in", json!({"n": n})))
        .collect();
    client.put(&tasks).await.unwrap();
    let stats = until_stats(&mut client, LIMIT, |s| {
        topic_count(s, "pyf_in", "done") == 5 && topic_count(s, "pyf_out", "ready") == 5
    })
    .await;
    assert!(topic_count(&stats, "pyf_in", "failed") >= 1, "{stats}");
    assert_eq!(topic_count(&stats, "pyf_in", "dead"), 0, "{stats}");
    let out = take_one(&mut client, "pyf_out", LIMIT).await;
    assert_eq!(out.body.to_value()["handled_by"], "python");

    // SIGTERM: DISCONNECT, then a clean exit.
    let mut worker = worker;
    worker.terminate();
    assert!(worker.exit_status().await.success());
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 0).await;
    broker.stop().await;
}

#[tokio::test]
async fn a_killed_python_worker_has_its_task_handed_to_another() {
    let Some(py) = python() else { return };
    let broker = TestBroker::start(broker_config()).await;
    let mut client = broker.client().await;
    // --hold: takes the task and never answers it.
    let mut holder = PyWorker::start(
        py,
        &broker.endpoints.worker,
        "py-holder",
        &["--topic", "pyk_in", "--hold"],
    )
    .await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    let guid = client
        .put(&[NewTask::new("pyk_in", json!({"k": "v"}))])
        .await
        .unwrap()
        .remove(0);
    until_stats(&mut client, LIMIT, |s| {
        topic_count(s, "pyk_in", "leased") == 1
    })
    .await;
    let status = client
        .request(&json!({"type": "task_status", "guid": guid}))
        .await
        .unwrap();
    assert_eq!(status["holder"], "py-holder", "{status}");

    // SIGKILL mid-task: no DISCONNECT, no FAIL.
    holder.child.start_kill().unwrap();
    assert!(!holder.exit_status().await.success());

    let _taker = PyWorker::start(
        py,
        &broker.endpoints.worker,
        "py-taker",
        &["--topic", "pyk_in", "--next-topic", "pyk_out"],
    )
    .await;
    let out = take_one(&mut client, "pyk_out", LIMIT).await;
    assert_eq!(out.body, json!({"k": "v", "handled_by": "python"}));
    assert_eq!(out.guid, format!("{guid}/0"));
    let status = client
        .request(&json!({"type": "task_status", "guid": guid}))
        .await
        .unwrap();
    assert_eq!(
        (status["outcome"].as_str(), status["attempt"].as_u64()),
        (Some("done"), Some(2)),
        "{status}"
    );
    let stats = until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    assert_eq!(workers(&stats)[0]["id"], "py-taker", "{stats}");
    assert_eq!(topic_count(&stats, "pyk_in", "failed"), 1, "{stats}");
    broker.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_python_worker_reconnects_after_the_broker_restarts() {
    let Some(py) = python() else { return };
    let (client_port, worker_port, events_port) = (free_port(), free_port(), free_port());
    let fixed = move |c: &mut taskbus::config::Config| {
        c.broker.client_endpoint = format!("tcp://127.0.0.1:{client_port}");
        c.broker.worker_endpoint = format!("tcp://127.0.0.1:{worker_port}");
        c.broker.events_endpoint = format!("tcp://127.0.0.1:{events_port}");
        c.broker.heartbeat_interval_secs = HEARTBEAT;
    };
    let first = TestBroker::start(config(fixed)).await;
    let mut worker = PyWorker::start(
        py,
        &first.endpoints.worker,
        "py-restart",
        &["--topic", "pyr_in", "--next-topic", "pyr_out"],
    )
    .await;
    let mut client = first.client().await;
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    client
        .put(&[NewTask::new("pyr_in", json!({"before": "restart"}))])
        .await
        .unwrap();
    let out = take_one(&mut client, "pyr_out", LIMIT).await;
    assert_eq!(
        out.body,
        json!({"before": "restart", "handled_by": "python"})
    );
    drop(client);
    first.stop().await;
    // Whatever the broker said last, the worker hears nothing for 3 intervals,
    // drops its socket and retries with back-off (the ZeroMQ guide's Paranoid
    // Pirate) while nobody listens on the port.
    worker.until_log("broker silent").await;
    worker.until_log("broker silent").await;

    let second = TestBroker::start(config(fixed)).await;
    let mut client = second.client().await;
    // The worker notices the silence, rebuilds its socket and sends READY again.
    let stats = until_stats(&mut client, LIMIT, |s| n_workers(s) == 1).await;
    assert_eq!(workers(&stats)[0]["id"], "py-restart");
    client
        .put(&[NewTask::new("pyr_in", json!({"after": "restart"}))])
        .await
        .unwrap();
    let out = take_one(&mut client, "pyr_out", LIMIT).await;
    assert_eq!(
        out.body,
        json!({"after": "restart", "handled_by": "python"})
    );

    worker.terminate();
    assert!(worker.exit_status().await.success());
    until_stats(&mut client, LIMIT, |s| n_workers(s) == 0).await;
    second.stop().await;
}
