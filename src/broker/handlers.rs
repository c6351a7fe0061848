//! What the broker does with one client request or one worker message. Handlers
//! change the [`State`] and push what must be sent into the [`Outbox`]; the loop in
//! `broker/mod.rs` does the sending. The client verbs are in `verbs.rs`.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

pub use super::outbox::{Outbox, Reply};
use super::schedule::Scheduling;
use super::state::State;
use super::workers::{peer_name, WorkerEntry};
use super::Call;
use crate::auth::Guard;
use crate::config::Config;
use crate::protocol::client::{ClientFrames, ClientRequest};
use crate::protocol::decode::peek;
use crate::protocol::worker::{encode_broker_message, split_frames, BrokerMessage, WorkerMessage};
use crate::protocol::{code, encode, Format, ProtocolError};

/// How many unknown identities the broker remembers having told to send READY.
const TOLD_UNKNOWN_MAX: usize = 10_000;

/// The broker's state plus what it needs to answer requests.
pub struct Core {
    pub config: Arc<Config>,
    pub state: State,
    /// Set while shutting down: new work is refused.
    pub refuse_work: Option<ProtocolError>,
    /// The last commit failed with this error; new work is refused until a commit
    /// succeeds again.
    pub store_error: Option<String>,
    pub schedule: Option<Scheduling>,
    /// Unknown identities already told to send READY: a worker that follows the doc
    /// sends one READY, however many of its messages were in flight.
    told_unknown: HashSet<Bytes>,
    /// Decides who may call which verb on the ZeroMQ endpoints (`[auth]`).
    guard: Guard,
}

impl Core {
    pub fn new(config: Arc<Config>, state: State) -> Core {
        let guard = Guard::new(
            &config.auth,
            &config.http.accounts_file(&config.store.data_dir),
        );
        Core {
            config,
            state,
            refuse_work: None,
            store_error: None,
            schedule: None,
            told_unknown: HashSet::new(),
            guard,
        }
    }

    /// The error a request that brings new work gets now, if any.
    pub fn work_refusal(&self) -> Option<ProtocolError> {
        if let Some(error) = &self.refuse_work {
            return Some(error.clone());
        }
        self.store_error.as_ref().map(|message| {
            ProtocolError::new(
                code::STORE_UNAVAILABLE,
                format!("store commit failed: {message}; new work is refused until the store takes commits again"),
            )
        })
    }

    /// Handles one message from the client endpoint.
    pub fn on_client(&mut self, frames: Vec<Bytes>, now: Instant, out: &mut Outbox) {
        // Answer in the encoding the client used, even when the frames are wrong.
        let format = frames
            .last()
            .map_or(Format::MsgPack, |body| Format::detect(body));
        let request = match ClientFrames::parse(frames) {
            Ok(request) => request,
            Err((Some(peer), delimited, error)) => {
                log::warn!("client={} bad request: {}", peer_name(&peer), error.message);
                let body = encode(format, &error.to_value());
                out.replies.push(Reply {
                    frames: ClientFrames::reply(peer, delimited, body),
                    answer: None,
                    format,
                    accepts_work: false,
                });
                return;
            }
            Err((None, _, error)) => {
                log::warn!("bad client message: {}", error.message);
                return;
            }
        };
        let max_bytes = self.config.broker.max_message_bytes;
        let parsed = peek(&request.body, format, max_bytes)
            .and_then(|typed| ClientRequest::parse(&typed, self.config.broker.max_get_count));
        let (body, accepts_work) = match parsed {
            Ok(parsed) => match self
                .guard
                .check_request(&request.body, format, &parsed, now)
            {
                Ok(()) => {
                    let accepts_work = parsed.accepts_work();
                    let answer = self.answer(parsed, format, now, out);
                    (answer, accepts_work)
                }
                Err(refused) => (Err(refused), false),
            },
            Err(error) => (Err(error), false),
        };
        let body = body.unwrap_or_else(|error| {
            log::warn!(
                "client={} request refused: {}",
                peer_name(&request.peer),
                error
            );
            encode(format, &error.to_value())
        });
        let frames = ClientFrames::reply(request.peer, request.delimited, body);
        out.replies.push(Reply {
            frames,
            answer: None,
            format,
            accepts_work,
        });
    }

    /// Handles one typed request from another transport (HTTP): the same verbs, the
    /// same replies in JSON, sent after the same commit.
    pub fn on_call(&mut self, call: Call, now: Instant, out: &mut Outbox) {
        let Call { request, answer } = call;
        let accepts_work = request.accepts_work();
        let body = self
            .answer(request, Format::Json, now, out)
            .unwrap_or_else(|error| encode(Format::Json, &error.to_value()));
        out.replies.push(Reply {
            frames: vec![body],
            answer: Some(answer),
            format: Format::Json,
            accepts_work,
        });
    }

    /// Handles one message from the worker endpoint.
    pub fn on_worker(&mut self, frames: Vec<Bytes>, now: Instant, out: &mut Outbox) {
        let (peer, body) = match split_frames(frames) {
            Ok(parts) => parts,
            Err((peer, error)) => {
                log::warn!("worker message refused: {}", error.message);
                if let Some(peer) = peer {
                    out.to_worker(peer, &error_message(&error));
                }
                return;
            }
        };
        let message = read_worker_message(&body, self.config.broker.max_message_bytes);
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                log::warn!("worker={} message refused: {}", peer_name(&peer), error);
                out.to_worker(peer, &error_message(&error));
                return;
            }
        };
        let known = match self.state.workers.get_mut(&peer) {
            Some(worker) => {
                worker.last_seen = now;
                true
            }
            None => false,
        };
        if !known
            && matches!(
                message,
                WorkerMessage::Done { .. } | WorkerMessage::Fail { .. }
            )
        {
            if let Err(error) = self.guard.check_unregistered() {
                log::warn!("worker={} done/fail refused: {}", peer_name(&peer), error);
                self.tell_unknown(peer, out);
                return;
            }
        }
        match message {
            WorkerMessage::Ready {
                stage,
                topics,
                capacity,
                next_topic,
                ..
            } => {
                if let Err(error) = self.guard.check_ready(&body, now) {
                    log::warn!("worker={} ready refused: {}", peer_name(&peer), error);
                    out.to_worker(peer, &error_message(&error));
                    return;
                }
                let topics: Vec<String> = topics
                    .into_iter()
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                log::info!(
                    "worker={} stage={} topics={:?} capacity={} registered",
                    peer_name(&peer),
                    stage,
                    topics,
                    capacity
                );
                let entry = WorkerEntry {
                    name: peer_name(&peer),
                    stage,
                    topics,
                    capacity,
                    next_topic,
                    in_flight: Default::default(),
                    last_seen: now,
                };
                self.told_unknown.remove(&peer);
                self.state.register_worker(peer.clone(), entry, now);
            }
            WorkerMessage::Done {
                guid,
                next,
                next_topic,
            } => self.on_done(&peer, guid, next, next_topic, now, out),
            WorkerMessage::Fail {
                guid,
                error,
                retryable,
            } => {
                log::warn!(
                    "guid={} worker={} failed retryable={}: {}",
                    guid,
                    peer_name(&peer),
                    retryable,
                    error
                );
                self.state.answered(&peer, &guid);
                if let Err(error) = self.state.fail(&guid, error, retryable, now) {
                    log::debug!("worker={} fail ignored: {}", peer_name(&peer), error);
                }
            }
            WorkerMessage::Heartbeat {} => {}
            WorkerMessage::Disconnect {} => {
                let returned = self.state.remove_worker(&peer, "disconnected", now);
                self.told_unknown.remove(&peer);
                log::info!(
                    "worker={} disconnected, {} leases returned",
                    peer_name(&peer),
                    returned
                );
                return;
            }
        }
        let registered_now = self.state.workers.get(&peer).is_some();
        if !known && !registered_now {
            self.tell_unknown(peer, out);
        }
    }

    /// Tells an identity the broker does not know to send READY, once.
    fn tell_unknown(&mut self, peer: Bytes, out: &mut Outbox) {
        if self.told_unknown.len() >= TOLD_UNKNOWN_MAX {
            // Forgetting costs at most one more disconnect per identity.
            self.told_unknown.clear();
        }
        if self.told_unknown.insert(peer.clone()) {
            out.to_worker(
                peer,
                &BrokerMessage::Disconnect {
                    reason: "unknown worker: send ready".into(),
                },
            );
        }
    }

    fn on_done(
        &mut self,
        peer: &Bytes,
        guid: String,
        next: Vec<crate::task::NewTask>,
        next_topic: Option<String>,
        now: Instant,
        out: &mut Outbox,
    ) {
        self.state.answered(peer, &guid);
        let next_topic = next_topic.or_else(|| {
            self.state
                .workers
                .get(peer)
                .and_then(|w| w.next_topic.clone())
        });
        match self.state.complete(&guid, next, next_topic.as_deref()) {
            Ok(created) => log::debug!(
                "guid={} worker={} done next={}",
                guid,
                peer_name(peer),
                created
            ),
            Err(error) if error.code == code::UNROUTABLE => {
                log::error!(target: "scripts", "guid={guid} worker={} {}", peer_name(peer), error.message);
                let _ = self.state.fail(&guid, error.message.clone(), true, now);
                out.to_worker(peer.clone(), &error_message(&error));
            }
            Err(error) => {
                log::debug!("worker={} done ignored: {}", peer_name(peer), error)
            }
        }
    }

    /// Declares dead every worker silent for `heartbeat_liveness` intervals. Called
    /// often (a tenth of an interval), so detection is not an interval late.
    pub fn check_liveness(&mut self, now: Instant) {
        let expiry = self.config.broker.peer_expiry();
        if let Some(cutoff) = now.checked_sub(expiry) {
            for id in self.state.workers.silent_since(cutoff) {
                let returned = self.state.remove_worker(&id, "missed heartbeats", now);
                log::warn!(
                    "worker={} missed heartbeats, declared dead, {} leases returned",
                    peer_name(&id),
                    returned
                );
            }
        }
    }

    /// Sends a heartbeat to every worker.
    pub fn on_heartbeat_tick(&mut self, now: Instant, out: &mut Outbox) {
        self.check_liveness(now);
        let heartbeat = encode_broker_message(&BrokerMessage::Heartbeat {});
        for id in self.state.workers.ids() {
            out.to_workers.push((id, heartbeat.clone()));
        }
    }

    /// A worker the socket could not reach: its leases go back.
    pub fn on_unreachable_worker(&mut self, id: &Bytes, why: &str, now: Instant) {
        let returned = self.state.remove_worker(id, why, now);
        if returned > 0 || self.state.workers.get(id).is_none() {
            log::warn!(
                "worker={} {}, {} leases returned",
                peer_name(id),
                why,
                returned
            );
        }
    }
}

/// Reads a worker's message: MessagePack only, as the protocol says.
fn read_worker_message(body: &[u8], max_bytes: usize) -> Result<WorkerMessage, ProtocolError> {
    if Format::detect(body) == Format::Json {
        return Err(ProtocolError::new(
            code::MALFORMED,
            "worker messages are MessagePack maps; the worker endpoint takes no JSON",
        ));
    }
    let typed = peek(body, Format::MsgPack, max_bytes)?;
    WorkerMessage::parse(&typed)
}

pub(super) fn error_message(error: &ProtocolError) -> BrokerMessage {
    BrokerMessage::Error {
        error: error.message.clone(),
        code: error.code.to_owned(),
    }
}
