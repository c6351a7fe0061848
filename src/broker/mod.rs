//! The broker: a client ROUTER, a worker ROUTER and an events PUB socket, served by
//! one task that owns all state and reacts to one closed [`Event`] enum.
//!
//! Invariant: a reply that accepts work leaves only after the store committed it.
//! Invariant: a send that returns `Ok` proves nothing; only DONE/ack ends a lease.

mod commits;
pub mod handlers;
mod io;
mod outbox;
pub mod schedule;
pub mod state;
mod verbs;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use zeromq::prelude::*;
use zeromq::{PubSocket, RouterSocket};

use crate::config::{Config, StoreKind};
use crate::net;
use crate::protocol::client::ClientRequest;
use crate::protocol::worker::BrokerMessage;
use crate::protocol::{code, ProtocolError};
use crate::store::sqlite::{FailedCommit, SqliteStore, StoreWriter};
use commits::Commits;
use handlers::{Core, Outbox};
use io::Io;
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

/// A typed client request from another transport (HTTP), with where its reply body
/// (JSON, exactly as the ZeroMQ client endpoint would answer) goes.
#[derive(Debug)]
pub struct Call {
    pub request: ClientRequest,
    pub answer: oneshot::Sender<Bytes>,
}

/// Hands calls to a running broker's loop; cheap to clone.
#[derive(Clone)]
pub struct Caller {
    events: mpsc::Sender<Event>,
}

/// The broker did not answer a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the broker is stopping")]
    Stopped,
    #[error("the broker is overloaded")]
    Busy,
}

impl Caller {
    /// Sends `request` to the broker's loop and waits for its reply body. A full
    /// event queue refuses the call at once rather than waiting.
    pub async fn call(&self, request: ClientRequest) -> Result<Bytes, CallError> {
        let (answer, reply) = oneshot::channel();
        self.events
            .try_send(Event::Call(Call { request, answer }))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => CallError::Busy,
                mpsc::error::TrySendError::Closed(_) => CallError::Stopped,
            })?;
        reply.await.map_err(|_| CallError::Stopped)
    }
}

/// One input of the broker's loop.
enum Event {
    Client(Vec<Bytes>),
    Worker(Vec<Bytes>),
    Call(Call),
    Committed {
        batch: u64,
        result: Result<(), FailedCommit>,
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
    event_tx: mpsc::Sender<Event>,
    event_rx: mpsc::Receiver<Event>,
}

impl Broker {
    /// Opens the store and binds the three endpoints of `config`.
    pub async fn bind(config: Arc<Config>) -> Result<Broker, BrokerError> {
        config.auth.protect(&[
            ("client", &config.broker.client_endpoint),
            ("worker", &config.broker.worker_endpoint),
            ("events", &config.broker.events_endpoint),
        ])?;
        let store = match config.store.kind {
            StoreKind::Memory => None,
            StoreKind::Sqlite => Some(
                SqliteStore::open(&config.store).map_err(|e| BrokerError::Store(e.to_string()))?,
            ),
        };
        let b = &config.broker;
        let limits = net::TransportLimits {
            max_message_bytes: b.max_message_bytes,
            max_frames_per_message: b.max_frames_per_message,
            handshake_timeout: b.handshake_timeout(),
            max_connections: b.max_connections,
            max_queued_per_peer: b.max_queued_per_peer,
        };
        let options = || net::socket_options(&limits);
        let mut client = RouterSocket::with_options(options());
        let mut worker = RouterSocket::with_options(options());
        let mut events = PubSocket::with_options(options());
        let endpoints = Endpoints {
            client: net::bind(&mut client, "client", &config.broker.client_endpoint).await?,
            worker: net::bind(&mut worker, "worker", &config.broker.worker_endpoint).await?,
            events: net::bind(&mut events, "events", &config.broker.events_endpoint).await?,
        };
        let (event_tx, event_rx) = mpsc::channel::<Event>(4096);
        Ok(Broker {
            config,
            client,
            worker,
            events,
            endpoints,
            store,
            clock: Arc::new(SystemClock),
            event_tx,
            event_rx,
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

    /// A handle through which another transport (HTTP) calls the running broker.
    pub fn caller(&self) -> Caller {
        Caller {
            events: self.event_tx.clone(),
        }
    }

    /// Serves until `shutdown` is cancelled, then stops taking work, lets the store
    /// flush, and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let Restored {
            mut core,
            mut io,
            readers,
            event_rx,
        } = self.restore()?;
        let event_rx = serve(&mut core, &mut io, event_rx, &shutdown).await;
        drain(core, io, event_rx).await;
        readers.cancel();
        log::info!("broker stopped");
        Ok(())
    }

    /// Loads the store into the state and starts the socket readers and the store
    /// writer.
    fn restore(self) -> Result<Restored, BrokerError> {
        let Broker {
            clock,
            config,
            client,
            worker,
            events,
            endpoints,
            store,
            event_tx,
            event_rx,
        } = self;
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
                let started = std::time::Instant::now();
                let loaded = store
                    .load_into(&mut state)
                    .map_err(|e| BrokerError::Store(e.to_string()))?;
                let (n_tasks, n_history) = (loaded.tasks, loaded.history);
                log::info!(
                    "store: {n_tasks} tasks and {n_history} history lines restored in {:.2?}",
                    started.elapsed()
                );
                saved_schedule = loaded.schedule;
                let tx = event_tx;
                Some(StoreWriter::spawn(store, move |batch, result| {
                    let _ = tx.blocking_send(Event::Committed { batch, result });
                }))
            }
            None => None,
        };
        log::info!(
            "broker serving clients={} workers={} events={}",
            endpoints.client,
            endpoints.worker,
            endpoints.events
        );
        let io = Io {
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
        Ok(Restored {
            core,
            io,
            readers,
            event_rx,
        })
    }
}

/// A broker ready to serve: its state, its sockets and store writer, the token that
/// stops its socket readers, and the events they feed.
struct Restored {
    core: Core,
    io: Io,
    readers: CancellationToken,
    event_rx: mpsc::Receiver<Event>,
}

/// The loop: one closed set of inputs (events, timers, shutdown), one flush per round.
async fn serve(
    core: &mut Core,
    io: &mut Io,
    mut event_rx: mpsc::Receiver<Event>,
    shutdown: &CancellationToken,
) -> mpsc::Receiver<Event> {
    let mut schedule_check: Option<Instant> = None;
    let interval = core.config.broker.heartbeat_interval();
    let mut heartbeat = tokio::time::interval(interval);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Liveness is checked ten times per interval, so a dead worker is declared dead
    // `heartbeat_liveness` intervals after it fell silent, not an interval later.
    let mut liveness = tokio::time::interval(interval / 10);
    liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let mut out = Outbox::default();
        let deadline = core.state.next_deadline();
        let commit_hold = io.commits.held_until();
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
                handle(core, io, event, now, &mut out);
                // Drain what else is waiting, so one commit and one dispatch serve many.
                for _ in 0..512 {
                    let Ok(event) = event_rx.try_recv() else { break };
                    handle(core, io, event, now, &mut out);
                }
            }
            _ = heartbeat.tick() => core.on_heartbeat_tick(Instant::now(), &mut out),
            _ = liveness.tick() => core.check_liveness(Instant::now()),
            _ = sleep_until_opt(deadline) => {
                core.state.on_timer(Instant::now());
            }
            _ = sleep_until_opt(commit_hold) => {}
            _ = sleep_until_opt(schedule_check) => {
                schedule_check = None;
                if let Some(schedule) = core.schedule.as_mut() {
                    schedule.tick(&mut core.state);
                }
            }
        }
        io.flush(core, out).await;
    }
    event_rx
}

fn handle(core: &mut Core, io: &mut Io, event: Event, now: Instant, out: &mut Outbox) {
    match event {
        Event::Client(frames) => core.on_client(frames, now, out),
        Event::Worker(frames) => core.on_worker(frames, now, out),
        Event::Call(call) => core.on_call(call, now, out),
        Event::Committed { batch, result } => io.on_committed(core, batch, result, now),
    }
}

/// Stops taking work, tells the workers, and lets the last batches reach the disk.
async fn drain(mut core: Core, mut io: Io, mut event_rx: mpsc::Receiver<Event>) {
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
        out.to_worker(
            id,
            &BrokerMessage::Disconnect {
                reason: "broker shutting down".into(),
            },
        );
    }
    let told_workers = !out.to_workers.is_empty();
    io.flush(&mut core, out).await;
    if told_workers {
        // zmq.rs has no linger: give the writer tasks a moment to put the
        // DISCONNECTs on the wire before the sockets go.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the last batch reach the disk before the process goes; a store that keeps
    // failing gets a few more tries, then what it holds is given up with a log line.
    let mut failures = 0;
    while io.commits.busy() && failures < 3 {
        if !io.commits.writing() {
            // Staged but not started: the pipeline pauses after a failure.
            if let Some(until) = io.commits.held_until() {
                tokio::time::sleep_until(until).await;
            }
            io.flush(&mut core, Outbox::default()).await;
            if !io.commits.writing() {
                break;
            }
        }
        match event_rx.recv().await {
            Some(Event::Committed { batch, result }) => {
                if result.is_err() {
                    failures += 1;
                }
                io.on_committed(&mut core, batch, result, Instant::now());
            }
            Some(_) => {}
            None => break,
        }
    }
    if io.commits.busy() {
        log::error!(
            "broker stopping with changes the store did not take; restored tasks may run again"
        );
    }
    if let Some(writer) = io.commits.writer.take() {
        writer.close();
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
