//! The broker: a client ROUTER, a worker ROUTER and an events PUB socket, served by
//! one task that owns all state and reacts to one closed [`Event`] enum.
//!
//! Invariant: a reply that accepts work leaves only after the store committed it.
//! Invariant: a send that returns `Ok` proves nothing; only DONE/ack ends a lease.

pub mod handlers;
pub mod schedule;
pub mod state;
pub mod workers;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use zeromq::prelude::*;
use zeromq::{PubSocket, RouterSendHalf, RouterSocket, ZmqMessage};

use crate::config::{Config, StoreKind};
use crate::net;
use crate::protocol::worker::BrokerMessage;
use crate::protocol::{code, encode, Format, ProtocolError};
use crate::store::sqlite::{SqliteStore, StoreWriter};
use crate::store::StoreOp;
use handlers::{Core, Outbox, Reply};
use schedule::{Clock, Scheduling, SystemClock};
use state::State;

/// Why the broker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot bind {role} endpoint {endpoint}: {message}")]
    Bind {
        role: &'static str,
        endpoint: String,
        message: String,
    },
    #[error("store: {0}")]
    Store(String),
}

impl From<net::BindError> for BrokerError {
    fn from(e: net::BindError) -> Self {
        BrokerError::Bind {
            role: e.role,
            endpoint: e.endpoint,
            message: e.message,
        }
    }
}

/// The endpoints the broker actually bound (port 0 resolved).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub client: String,
    pub worker: String,
    pub events: String,
}

/// One input of the broker's loop.
enum Event {
    Client(Vec<Bytes>),
    Worker(Vec<Bytes>),
    Committed {
        batch: u64,
        result: Result<(), String>,
    },
}

/// A bound broker, ready to run.
pub struct Broker {
    config: Arc<Config>,
    client: RouterSocket,
    worker: RouterSocket,
    events: PubSocket,
    endpoints: Endpoints,
    store: Option<SqliteStore>,
    clock: Arc<dyn Clock>,
}

impl Broker {
    /// Opens the store and binds the three endpoints of `config`.
    pub async fn bind(config: Arc<Config>) -> Result<Broker, BrokerError> {
        let store = match config.store.kind {
            StoreKind::Memory => None,
            StoreKind::Sqlite => Some(
                SqliteStore::open(&config.store).map_err(|e| BrokerError::Store(e.to_string()))?,
            ),
        };
        let mut client = RouterSocket::new();
        let mut worker = RouterSocket::new();
        let mut events = PubSocket::new();
        let endpoints = Endpoints {
            client: net::bind(&mut client, "client", &config.broker.client_endpoint).await?,
            worker: net::bind(&mut worker, "worker", &config.broker.worker_endpoint).await?,
            events: net::bind(&mut events, "events", &config.broker.events_endpoint).await?,
        };
        Ok(Broker {
            config,
            client,
            worker,
            events,
            endpoints,
            store,
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads scheduler time from `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Broker {
        self.clock = clock;
        self
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Serves until `shutdown` is cancelled, then stops taking work, lets the store
    /// flush, and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let Broker {
            clock,
            config,
            client,
            worker,
            events,
            endpoints,
            store,
        } = self;
        let (event_tx, mut event_rx) = mpsc::channel::<Event>(4096);
        let (client_send, client_recv) = client.split();
        let (worker_send, worker_recv) = worker.split();
        let readers = CancellationToken::new();
        spawn_reader(
            client_recv,
            event_tx.clone(),
            Event::Client,
            readers.clone(),
        );
        spawn_reader(
            worker_recv,
            event_tx.clone(),
            Event::Worker,
            readers.clone(),
        );

        let mut state = State::new(config.clone(), store.is_some());
        let mut saved_schedule = Vec::new();
        let writer = match store {
            Some(store) => {
                let loaded = store
                    .load()
                    .map_err(|e| BrokerError::Store(e.to_string()))?;
                log::info!(
                    "store: {} tasks and {} history lines restored",
                    loaded.tasks.len(),
                    loaded.history.len()
                );
                for record in loaded.tasks {
                    state.restore(record);
                }
                for record in loaded.history {
                    state.restore_history(record);
                }
                saved_schedule = loaded.schedule;
                let tx = event_tx.clone();
                Some(StoreWriter::spawn(store, move |batch, result| {
                    let _ = tx.blocking_send(Event::Committed { batch, result });
                }))
            }
            None => None,
        };
        drop(event_tx);
        log::info!(
            "broker serving clients={} workers={} events={}",
            endpoints.client,
            endpoints.worker,
            endpoints.events
        );
        let mut io = Io {
            config: config.clone(),
            client: client_send,
            worker: worker_send,
            events,
            commits: Commits::new(writer),
            released: Vec::new(),
        };
        let mut core = Core::new(config.clone(), state);
        core.schedule = Some(Scheduling::new(
            config.scheduler.clone(),
            clock,
            saved_schedule,
        ));
        let mut schedule_check: Option<Instant> = None;
        let mut heartbeat = tokio::time::interval(config.broker.heartbeat_interval());
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            let mut out = Outbox::default();
            let lease_deadline = core.state.next_deadline();
            // Absolute, so that a stream of requests cannot keep pushing the check away.
            if let Some(schedule) = core.schedule.as_ref() {
                let next = Instant::now() + schedule.next_check_in();
                schedule_check = Some(schedule_check.map_or(next, |at: Instant| at.min(next)));
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                event = event_rx.recv() => {
                    let Some(event) = event else { break };
                    let now = Instant::now();
                    io.handle(&mut core, event, now, &mut out);
                    // Drain what else is waiting, so one commit and one dispatch serve many.
                    for _ in 0..512 {
                        let Ok(event) = event_rx.try_recv() else { break };
                        io.handle(&mut core, event, now, &mut out);
                    }
                }
                _ = heartbeat.tick() => core.on_heartbeat_tick(Instant::now(), &mut out),
                _ = sleep_until_opt(lease_deadline) => {
                    core.state.expire_leases(Instant::now());
                }
                _ = sleep_until_opt(schedule_check) => {
                    schedule_check = None;
                    if let Some(schedule) = core.schedule.as_mut() {
                        schedule.tick(&mut core.state);
                    }
                }
            }
            io.flush(&mut core, out).await;
        }

        log::info!(
            "broker stopping: no new work; {} leases outstanding",
            core.state.n_leased()
        );
        core.refuse_work = Some(ProtocolError::new(
            code::SHUTTING_DOWN,
            "broker is shutting down",
        ));
        let mut out = Outbox::default();
        for id in core.state.workers.ids() {
            out.to_workers.push((
                id,
                BrokerMessage::Disconnect {
                    reason: "broker shutting down".into(),
                },
            ));
        }
        let told_workers = !out.to_workers.is_empty();
        io.flush(&mut core, out).await;
        if told_workers {
            // zmq.rs has no linger: give the writer tasks a moment to put the
            // DISCONNECTs on the wire before the sockets go.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Let the last batch reach the disk before the process goes.
        while io.commits.busy() {
            match event_rx.recv().await {
                Some(Event::Committed { batch, result }) => {
                    io.on_committed(&mut core, batch, result).await
                }
                Some(_) => {}
                None => break,
            }
        }
        readers.cancel();
        if let Some(writer) = io.commits.writer.take() {
            writer.close();
        }
        log::info!("broker stopped");
        Ok(())
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Reads one ROUTER socket without pause: zmq.rs only notices a dead peer while
/// its receive side is polled.
fn spawn_reader(
    mut recv: zeromq::RouterRecvHalf,
    tx: mpsc::Sender<Event>,
    wrap: fn(Vec<Bytes>) -> Event,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = recv.recv() => message,
            };
            match message {
                Ok(message) => {
                    if tx.send(wrap(message.into_vec())).await.is_err() {
                        break;
                    }
                }
                Err(zeromq::ZmqError::NoMessage) => break,
                Err(error) => log::warn!("socket receive error: {error}"),
            }
        }
    });
}

/// The commit pipeline: while one batch is being written, the next one gathers
/// (group commit). Replies wait for the batch that holds their changes.
struct Commits {
    writer: Option<StoreWriter>,
    next_batch: u64,
    in_flight: Option<(u64, Vec<Reply>)>,
    staged_ops: Vec<StoreOp>,
    staged_replies: Vec<Reply>,
}

impl Commits {
    fn new(writer: Option<StoreWriter>) -> Commits {
        Commits {
            writer,
            next_batch: 0,
            in_flight: None,
            staged_ops: Vec::new(),
            staged_replies: Vec::new(),
        }
    }

    /// Ends the batch in flight: its replies go out as they are, or, when the commit
    /// failed, as `store_unavailable` errors (nothing they accepted was kept).
    fn finish(
        &mut self,
        batch: u64,
        result: Result<(), String>,
    ) -> (Vec<Reply>, Option<ProtocolError>) {
        let Some((in_flight, replies)) = self.in_flight.take() else {
            return (Vec::new(), None);
        };
        debug_assert_eq!(in_flight, batch);
        match result {
            Ok(()) => (replies, None),
            Err(message) => {
                let error = ProtocolError::new(
                    code::STORE_UNAVAILABLE,
                    format!("store commit failed: {message}"),
                );
                (
                    replies.into_iter().map(|r| r.into_error(&error)).collect(),
                    Some(error),
                )
            }
        }
    }

    fn busy(&self) -> bool {
        self.in_flight.is_some() || !self.staged_ops.is_empty()
    }

    /// Starts writing the staged batch if none is being written. Returns replies that
    /// need no wait.
    fn submit(&mut self) -> Vec<Reply> {
        if self.in_flight.is_some() {
            return Vec::new();
        }
        let Some(writer) = &self.writer else {
            return std::mem::take(&mut self.staged_replies);
        };
        if self.staged_ops.is_empty() {
            return std::mem::take(&mut self.staged_replies);
        }
        self.next_batch += 1;
        let ops = std::mem::take(&mut self.staged_ops);
        writer.submit(self.next_batch, ops);
        self.in_flight = Some((self.next_batch, std::mem::take(&mut self.staged_replies)));
        Vec::new()
    }
}

/// The sockets' sending sides and the commit pipeline.
struct Io {
    config: Arc<Config>,
    client: RouterSendHalf,
    worker: RouterSendHalf,
    events: PubSocket,
    commits: Commits,
    /// Replies whose batch has committed, to be sent before anything staged later.
    released: Vec<Reply>,
}

impl Io {
    fn handle(&mut self, core: &mut Core, event: Event, now: Instant, out: &mut Outbox) {
        match event {
            Event::Client(frames) => core.on_client(frames, now, out),
            Event::Worker(frames) => core.on_worker(frames, now, out),
            Event::Committed { batch, result } => {
                // Sent first in flush: they precede every reply staged since.
                let replies = self.commit_done(core, batch, result);
                self.released.extend(replies);
            }
        }
    }

    fn commit_done(
        &mut self,
        core: &mut Core,
        batch: u64,
        result: Result<(), String>,
    ) -> Vec<Reply> {
        let (replies, error) = self.commits.finish(batch, result);
        if let Some(error) = error {
            log::error!(
                "store commit of batch {batch} failed, refusing new work: {}",
                error.message
            );
            core.refuse_work = Some(error);
        }
        replies
    }

    async fn on_committed(&mut self, core: &mut Core, batch: u64, result: Result<(), String>) {
        let replies = self.commit_done(core, batch, result);
        self.released.extend(replies);
        self.flush(core, Outbox::default()).await;
    }

    /// Dispatches, stages the round's changes and sends everything that may go now.
    async fn flush(&mut self, core: &mut Core, mut out: Outbox) {
        let now = Instant::now();
        for (id, tasks) in core.state.dispatch(now) {
            out.to_workers.push((id, BrokerMessage::Task { tasks }));
        }
        for reply in std::mem::take(&mut self.released) {
            self.send_client(reply.frames).await;
        }
        let ops = core.state.take_journal();
        self.commits.staged_ops.extend(ops);
        // Replies keep their order: while a commit is pending, every reply waits
        // behind it, even one that changed nothing.
        self.commits.staged_replies.extend(out.replies);
        for reply in self.commits.submit() {
            self.send_client(reply.frames).await;
        }
        for (id, message) in out.to_workers {
            self.send_worker(core, id, &message).await;
        }
        for (name, body) in out.events {
            let frames = vec![Bytes::from(name.clone()), encode(Format::MsgPack, &body)];
            let message = ZmqMessage::try_from(frames).expect("two frames");
            if let Err(error) = self.events.send(message).await {
                log::warn!("event {name} not published: {error}");
            }
        }
    }

    async fn send_client(&mut self, frames: Vec<Bytes>) {
        let peer = workers::peer_name(&frames[0]);
        let message = ZmqMessage::try_from(frames).expect("reply frames are not empty");
        match tokio::time::timeout(self.config.broker.send_timeout(), self.client.send(message))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => log::debug!("client={peer} reply not sent: {error}"),
            Err(_) => log::warn!("client={peer} reply dropped: peer is not reading"),
        }
    }

    async fn send_worker(&mut self, core: &mut Core, id: Bytes, message: &BrokerMessage) {
        let frames = vec![id.clone(), encode(Format::MsgPack, message)];
        let message = ZmqMessage::try_from(frames).expect("two frames");
        match tokio::time::timeout(self.config.broker.send_timeout(), self.worker.send(message))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => core.on_unreachable_worker(&id, &format!("unreachable ({error})")),
            Err(_) => core.on_unreachable_worker(&id, "not reading"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::{json, Value};

    fn reply(format: Format, body: &Value) -> Reply {
        Reply {
            frames: vec![Bytes::from("peer"), Bytes::new(), encode(format, body)],
            format,
        }
    }

    #[test]
    fn a_failed_commit_turns_its_replies_into_store_errors_in_their_own_encoding() {
        let mut commits = Commits::new(None);
        commits.in_flight = Some((
            7,
            vec![
                reply(Format::Json, &json!(3)),
                reply(Format::MsgPack, &json!({"guids": ["a"]})),
            ],
        ));
        let (replies, error) = commits.finish(7, Err("disk full".into()));
        assert_eq!(error.unwrap().code, code::STORE_UNAVAILABLE);
        let json_body: Value = serde_json::from_slice(replies[0].frames.last().unwrap()).unwrap();
        assert_eq!(json_body["code"], code::STORE_UNAVAILABLE);
        assert!(json_body["error"].as_str().unwrap().contains("disk full"));
        let packed: Value = rmp_serde::from_slice(replies[1].frames.last().unwrap()).unwrap();
        assert_eq!(packed["code"], code::STORE_UNAVAILABLE);
        assert!(!commits.busy());
    }

    #[test]
    fn a_committed_batch_releases_its_replies_unchanged() {
        let mut commits = Commits::new(None);
        let sent = reply(Format::Json, &json!({"guids": ["a"]}));
        commits.in_flight = Some((1, vec![sent.clone()]));
        let (replies, error) = commits.finish(1, Ok(()));
        assert!(error.is_none());
        assert_eq!(replies[0].frames, sent.frames);
    }

    #[test]
    fn a_broker_that_refuses_work_still_answers_reads() {
        let config = Arc::new(Config::default());
        let mut core = Core::new(config.clone(), State::new(config, false));
        core.refuse_work = Some(ProtocolError::new(
            code::STORE_UNAVAILABLE,
            "store commit failed: disk full",
        ));
        let mut out = Outbox::default();
        let request = |body: Value| {
            vec![
                Bytes::from("peer"),
                Bytes::new(),
                Bytes::from(serde_json::to_vec(&body).unwrap()),
            ]
        };
        let now = Instant::now();
        core.on_client(
            request(json!({"type": "put_task", "task": {"topic": "t"}})),
            now,
            &mut out,
        );
        core.on_client(
            request(json!({"type": "get_size", "topic": "t"})),
            now,
            &mut out,
        );
        let bodies: Vec<Value> = out
            .replies
            .iter()
            .map(|r| serde_json::from_slice(r.frames.last().unwrap()).unwrap())
            .collect();
        assert_eq!(bodies[0]["code"], code::STORE_UNAVAILABLE);
        assert_eq!(bodies[1], json!("invalid queue"), "nothing was queued");
    }
}
