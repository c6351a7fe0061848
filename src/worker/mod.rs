//! The worker runtime: a DEALER peer that registers a [`Stage`], runs the tasks the
//! broker sends against its credit, heartbeats, and reconnects by itself.
//!
//! zmq.rs DEALER sockets do not reconnect after the broker restarts, and a `recv`
//! on a dead connection pends forever; so the runtime watches the socket monitor and
//! the broker's heartbeats, and on loss drops the socket, builds a new one and sends
//! READY again (backoff 1 s doubling to 32 s by default).

pub mod config;
pub mod echo;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use zeromq::prelude::*;
use zeromq::util::PeerIdentity;
use zeromq::{DealerSocket, SocketEvent, SocketOptions, ZmqMessage};

use crate::protocol::worker::{BrokerMessage, WorkerMessage, PROTOCOL};
use crate::protocol::{encode, Format};
use crate::task::{NewTask, Task};

/// A failed task, as a stage reports it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub message: String,
    /// Whether another attempt may succeed (the broker retries up to `max_retry`).
    pub retryable: bool,
}

impl StageError {
    pub fn retryable(message: impl Into<String>) -> Self {
        StageError {
            message: message.into(),
            retryable: true,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        StageError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// One stage of a pipeline: takes a task, returns the next stage's envelopes.
pub trait Stage: Send + Sync + 'static {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>>;
}

/// How a worker connects and what it announces. Built from the whole configuration
/// by `WorkerOptions::from_config` in [`crate::stages`] (the runtime sees no
/// `Config`), or field by field.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub endpoint: String,
    /// The routing identity; fixed, so the broker knows a reconnecting worker.
    pub identity: String,
    pub stage: String,
    pub topics: Vec<String>,
    pub capacity: u32,
    pub next_topic: Option<String>,
    /// Sent in READY when the broker requires tokens (`[auth]`).
    pub token: Option<String>,
    pub heartbeat_interval: Duration,
    pub heartbeat_liveness: u32,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub shutdown_grace: Duration,
}

/// Counters of one worker's life, returned when it stops.
#[derive(Debug, Default, Clone)]
pub struct WorkerSummary {
    pub done: u64,
    pub failed: u64,
    pub sessions: u64,
}

/// Why a session with the broker ended.
enum SessionEnd {
    Lost(&'static str),
    Finished,
}

struct Runtime {
    options: WorkerOptions,
    stage: Arc<dyn Stage>,
    results_tx: mpsc::UnboundedSender<WorkerMessage>,
    results_rx: mpsc::UnboundedReceiver<WorkerMessage>,
    in_flight: HashMap<String, AbortHandle>,
    summary: WorkerSummary,
    stopping: Option<Instant>,
}

/// Runs a worker until `shutdown` is cancelled and its in-flight tasks are finished
/// (or `shutdown_grace` has passed).
pub async fn run(
    options: WorkerOptions,
    stage: Arc<dyn Stage>,
    shutdown: CancellationToken,
) -> WorkerSummary {
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let mut runtime = Runtime {
        options,
        stage,
        results_tx,
        results_rx,
        in_flight: HashMap::new(),
        summary: WorkerSummary::default(),
        stopping: None,
    };
    let mut backoff = runtime.options.reconnect_min;
    loop {
        if shutdown.is_cancelled() && runtime.in_flight.is_empty() && runtime.results_rx.is_empty()
        {
            break;
        }
        let socket = tokio::select! {
            socket = runtime.connect() => socket,
            _ = shutdown.cancelled(), if runtime.stopping.is_none() => {
                runtime.stopping = Some(Instant::now());
                continue;
            }
        };
        let session_end = match socket {
            Ok(socket) => {
                runtime.summary.sessions += 1;
                runtime.session(socket, &shutdown, &mut backoff).await
            }
            Err(error) => SessionEnd::Lost(error),
        };
        match session_end {
            SessionEnd::Finished => break,
            SessionEnd::Lost(why) => {
                if runtime
                    .stopping
                    .is_some_and(|t| t.elapsed() >= runtime.options.shutdown_grace)
                {
                    log::warn!(
                        "worker={} stopping without a broker: {why}",
                        runtime.options.identity
                    );
                    break;
                }
                log::warn!(
                    "worker={} lost the broker ({why}); reconnecting in {:?}",
                    runtime.options.identity,
                    backoff
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled(), if runtime.stopping.is_none() => runtime.stopping = Some(Instant::now()),
                }
                backoff = (backoff * 2).min(runtime.options.reconnect_max);
            }
        }
    }
    for handle in runtime.in_flight.values() {
        handle.abort();
    }
    runtime.summary
}

impl Runtime {
    async fn connect(&self) -> Result<DealerSocket, &'static str> {
        let mut options = SocketOptions::default();
        let identity = PeerIdentity::try_from(self.options.identity.clone().into_bytes())
            .map_err(|_| "identity is not a valid routing id")?;
        options.peer_identity(identity);
        options.connect_timeout(self.options.reconnect_max.max(Duration::from_secs(1)));
        let mut socket = DealerSocket::with_options(options);
        socket
            .connect(&self.options.endpoint)
            .await
            .map_err(|_| "connect failed")?;
        Ok(socket)
    }

    async fn session(
        &mut self,
        mut socket: DealerSocket,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
    ) -> SessionEnd {
        let mut monitor = socket.monitor();
        let (mut send, mut recv) = socket.split();
        let (inbox_tx, mut inbox) = mpsc::channel::<Vec<Bytes>>(1024);
        let reader = tokio::spawn(async move {
            while let Ok(message) = recv.recv().await {
                if inbox_tx.send(message.into_vec()).await.is_err() {
                    break;
                }
            }
        });
        let end = 'session: {
            if let Err(why) = self.send(&mut send, &self.ready()).await {
                break 'session SessionEnd::Lost(why);
            }
            let expiry = self.options.heartbeat_interval * self.options.heartbeat_liveness;
            let mut last_heard = Instant::now();
            let mut heartbeat = tokio::time::interval(self.options.heartbeat_interval);
            loop {
                if self.stopping.is_some()
                    && self.in_flight.is_empty()
                    && self.results_rx.is_empty()
                {
                    let _ = self.send(&mut send, &WorkerMessage::Disconnect {}).await;
                    break 'session SessionEnd::Finished;
                }
                let grace_end = self.stopping.map(|t| t + self.options.shutdown_grace);
                tokio::select! {
                    message = inbox.recv() => {
                        let Some(frames) = message else { break 'session SessionEnd::Lost("socket closed") };
                        last_heard = Instant::now();
                        *backoff = self.options.reconnect_min;
                        if let Err(why) = self.on_broker_message(&mut send, frames).await {
                            break 'session SessionEnd::Lost(why);
                        }
                    }
                    Some(result) = self.results_rx.recv() => {
                        if let Err(why) = self.send_result(&mut send, result).await {
                            break 'session SessionEnd::Lost(why);
                        }
                    }
                    event = monitor.next() => {
                        if matches!(event, Some(SocketEvent::Disconnected(_)) | None) {
                            break 'session SessionEnd::Lost("disconnected");
                        }
                    }
                    _ = heartbeat.tick() => {
                        if last_heard.elapsed() > expiry {
                            break 'session SessionEnd::Lost("broker silent past heartbeat expiry");
                        }
                        if let Err(why) = self.send(&mut send, &WorkerMessage::Heartbeat {}).await {
                            break 'session SessionEnd::Lost(why);
                        }
                    }
                    _ = shutdown.cancelled(), if self.stopping.is_none() => {
                        log::info!("worker={} stopping: finishing {} tasks", self.options.identity, self.in_flight.len());
                        self.stopping = Some(Instant::now());
                    }
                    _ = sleep_until_opt(grace_end) => {
                        log::warn!("worker={} grace over: dropping {} tasks", self.options.identity, self.in_flight.len());
                        for (_, handle) in self.in_flight.drain() {
                            handle.abort();
                        }
                        let _ = self.send(&mut send, &WorkerMessage::Disconnect {}).await;
                        break 'session SessionEnd::Finished;
                    }
                }
            }
        };
        reader.abort();
        end
    }

    fn ready(&self) -> WorkerMessage {
        WorkerMessage::Ready {
            protocol: Some(PROTOCOL.into()),
            worker_id: Some(self.options.identity.clone()),
            stage: self.options.stage.clone(),
            topics: self.options.topics.clone(),
            capacity: self.options.capacity,
            next_topic: self.options.next_topic.clone(),
            token: self.options.token.clone(),
        }
    }

    async fn send(
        &self,
        send: &mut zeromq::DealerSendHalf,
        message: &WorkerMessage,
    ) -> Result<(), &'static str> {
        let message = ZmqMessage::from(encode(Format::MsgPack, message));
        match tokio::time::timeout(self.options.heartbeat_interval * 2, send.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("send failed"),
            Err(_) => Err("send timed out"),
        }
    }

    async fn send_result(
        &mut self,
        send: &mut zeromq::DealerSendHalf,
        result: WorkerMessage,
    ) -> Result<(), &'static str> {
        let guid = match &result {
            WorkerMessage::Done { guid, .. } | WorkerMessage::Fail { guid, .. } => guid.clone(),
            _ => String::new(),
        };
        if let Err(why) = self.send(send, &result).await {
            // Keep it for the next session: the broker still holds the lease or will
            // have put the task back, and a late DONE still completes it.
            self.results_tx
                .send(result)
                .expect("receiver is owned by self");
            return Err(why);
        }
        match result {
            WorkerMessage::Done { .. } => self.summary.done += 1,
            WorkerMessage::Fail { .. } => self.summary.failed += 1,
            _ => {}
        }
        self.in_flight.remove(&guid);
        Ok(())
    }

    async fn on_broker_message(
        &mut self,
        send: &mut zeromq::DealerSendHalf,
        frames: Vec<Bytes>,
    ) -> Result<(), &'static str> {
        let Some(body) = frames.into_iter().rfind(|f| !f.is_empty()) else {
            return Ok(());
        };
        let message = match BrokerMessage::parse(&body, usize::MAX) {
            Ok(message) => message,
            Err(error) => {
                log::warn!(
                    "worker={} unreadable broker message: {error}",
                    self.options.identity
                );
                return Ok(());
            }
        };
        match message {
            BrokerMessage::Task { tasks } => {
                for task in tasks {
                    self.start(task);
                }
            }
            BrokerMessage::Heartbeat {} => {}
            BrokerMessage::Disconnect { reason } => {
                log::info!(
                    "worker={} broker says: {reason}; registering again",
                    self.options.identity
                );
                return self.send(send, &self.ready()).await;
            }
            BrokerMessage::Cancel { guids, reason } => {
                for guid in guids {
                    if let Some(handle) = self.in_flight.remove(&guid) {
                        handle.abort();
                        log::info!(target: "scripts", "guid={guid} worker={} dropped: {reason}", self.options.identity);
                    }
                }
            }
            BrokerMessage::Error { error, code } => {
                log::error!(
                    "worker={} broker refused a message: {code}: {error}",
                    self.options.identity
                );
            }
        }
        Ok(())
    }

    fn start(&mut self, task: Task) {
        let guid = task.guid.clone();
        if self.stopping.is_some() {
            let _ = self.results_tx.send(WorkerMessage::Fail {
                guid,
                error: "worker shutting down".into(),
                retryable: true,
            });
            return;
        }
        let stage = self.stage.clone();
        let results = self.results_tx.clone();
        let topic = task.topic.clone();
        let next_topic = self.options.next_topic.clone();
        let handle = tokio::spawn(async move {
            let guid = task.guid.clone();
            let lease = task.timeout.map(Duration::from_secs_f64);
            let (attempt, max_retry) = (task.attempt, task.max_retry);
            let started = Instant::now();
            let result = stage.handle(task).await;
            if let Some(lease) = lease.filter(|lease| started.elapsed() > *lease) {
                // The broker has put the task back (attempt `attempt` of 1 + max_retry):
                // it may run elsewhere too. The answer is still sent and still counts.
                log::warn!(
                    target: "scripts",
                    "guid={guid} topic={topic} attempt={attempt} max_retry={max_retry:?} ran {:.1?}, past its lease of {lease:.1?}",
                    started.elapsed()
                );
            }
            let message = match result {
                Ok(next) => {
                    log::info!(target: "scripts", "guid={guid} topic={topic} ok next={}", next.len());
                    WorkerMessage::Done {
                        guid,
                        next,
                        next_topic: next_topic.clone(),
                    }
                }
                Err(error) => {
                    log::error!(target: "scripts", "guid={guid} topic={topic} failed: {}", error.message);
                    WorkerMessage::Fail {
                        guid,
                        error: error.message,
                        retryable: error.retryable,
                    }
                }
            };
            let _ = results.send(message);
        });
        self.in_flight.insert(guid, handle.abort_handle());
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
