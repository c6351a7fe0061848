//! What the broker does with one client request or one worker message. Handlers
//! change the [`State`] and push what must be sent into the [`Outbox`]; the loop in
//! `broker/mod.rs` does the sending.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::schedule::Scheduling;
use super::state::{Holder, State};
use super::workers::{peer_name, WorkerEntry};
use crate::config::Config;
use crate::protocol::client::{AckReply, ClientFrames, ClientRequest, PutReply, INVALID_QUEUE};
use crate::protocol::worker::{split_frames, BrokerMessage, WorkerMessage};
use crate::protocol::{code, decode_value, encode, Format, ProtocolError};

/// A reply to a client: its ROUTER frames and the encoding of the request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub frames: Vec<Bytes>,
    pub format: Format,
}

impl Reply {
    /// The same reply with its body replaced by `error`.
    pub fn into_error(mut self, error: &ProtocolError) -> Reply {
        if let Some(body) = self.frames.last_mut() {
            *body = encode(self.format, &error.to_value());
        }
        self
    }
}

/// Messages the handlers want sent.
#[derive(Default)]
pub struct Outbox {
    /// Replies to clients. Sent once the store has committed what the round changed.
    pub replies: Vec<Reply>,
    /// Messages to workers, sent at once.
    pub to_workers: Vec<(Bytes, BrokerMessage)>,
    /// Events for the PUB socket: (event name, body).
    pub events: Vec<(String, Value)>,
}

/// The scheduler verbs, answered by whoever owns the schedule.
pub trait ScheduleVerbs {
    fn handle(
        &mut self,
        state: &mut State,
        request: ClientRequest,
        out: &mut Outbox,
    ) -> Result<Value, ProtocolError>;
}

/// The broker's state plus what it needs to answer requests.
pub struct Core {
    pub config: Arc<Config>,
    pub state: State,
    /// Set while shutting down or after a store failure: new work is refused.
    pub refuse_work: Option<ProtocolError>,
    pub schedule: Option<Scheduling>,
}

impl Core {
    pub fn new(config: Arc<Config>, state: State) -> Core {
        Core {
            config,
            state,
            refuse_work: None,
            schedule: None,
        }
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
                    format,
                });
                return;
            }
            Err((None, _, error)) => {
                log::warn!("bad client message: {}", error.message);
                return;
            }
        };
        let reply = match self.answer(&request.body, now, out) {
            Ok(reply) => reply,
            Err(error) => {
                log::warn!(
                    "client={} request refused: {}",
                    peer_name(&request.peer),
                    error
                );
                error.to_value()
            }
        };
        let body = encode(format, &reply);
        let frames = ClientFrames::reply(request.peer, request.delimited, body);
        out.replies.push(Reply { frames, format });
    }

    fn answer(
        &mut self,
        body: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) -> Result<Value, ProtocolError> {
        let (value, _) = decode_value(body, self.config.broker.max_message_bytes)?;
        let request = ClientRequest::parse(value, self.config.broker.max_get_count)?;
        let state = &mut self.state;
        match request {
            ClientRequest::GetTask { topic, count } => {
                let tasks: Vec<_> = (0..count)
                    .map_while(|_| state.lease_next(&topic, Holder::Client, now))
                    .collect();
                Ok(serde_json::to_value(tasks).expect("tasks serialize"))
            }
            ClientRequest::GetSize { topic } => Ok(match state.size(&topic) {
                Some(n) => json!(n),
                None => json!(INVALID_QUEUE),
            }),
            ClientRequest::PutTask { tasks } => {
                if let Some(error) = &self.refuse_work {
                    return Err(error.clone());
                }
                // Validate all first, so that a bad task in a batch accepts none.
                for (i, task) in tasks.iter().enumerate() {
                    if task.topic.as_deref().is_none_or(str::is_empty) {
                        return Err(ProtocolError::new(
                            code::BAD_REQUEST,
                            format!("tasks[{i}]: missing field `topic`"),
                        ));
                    }
                }
                let guids = tasks
                    .into_iter()
                    .map(|task| state.put(task))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(serde_json::to_value(PutReply { guids }).expect("reply serializes"))
            }
            ClientRequest::Ack { guids } => {
                let mut acked = 0;
                let mut missing = Vec::new();
                for guid in guids {
                    match state.complete(&guid, Vec::new(), None) {
                        Ok(_) => acked += 1,
                        Err(_) => missing.push(guid),
                    }
                }
                Ok(serde_json::to_value(AckReply { acked, missing }).expect("reply serializes"))
            }
            ClientRequest::Nack {
                guid,
                retryable,
                error,
            } => {
                let error = error.unwrap_or_else(|| "nacked by client".into());
                let now_in = state.fail(&guid, error, retryable)?;
                Ok(json!({ "guid": guid, "state": now_in }))
            }
            ClientRequest::ListTasks(filter) => {
                let queued = state.list(
                    filter.topic.as_deref(),
                    filter.state.as_deref(),
                    filter.limit,
                    now,
                );
                let mut reply = json!({ "queued": queued });
                if let Some(schedule) = self.schedule.as_mut() {
                    let scheduled =
                        schedule.handle(state, ClientRequest::ListTasks(filter), out)?;
                    reply["scheduled"] = scheduled;
                }
                Ok(reply)
            }
            ClientRequest::TaskStatus { guid } => state.task_status(&guid, now).ok_or_else(|| {
                ProtocolError::new(code::NOT_FOUND, format!("no task with guid \"{guid}\""))
            }),
            ClientRequest::Stats => Ok(json!({
                "topics": state.topic_stats(),
                "workers": state.workers.stats(now),
                "scheduler": self.schedule.as_ref().map(Scheduling::stats),
            })),
            ClientRequest::DeadList { topic, limit } => {
                let guids = state.dead_guids(topic.as_deref());
                let tasks: Vec<Value> = guids
                    .iter()
                    .take(limit)
                    .filter_map(|g| state.task_status(g, now))
                    .collect();
                Ok(json!({ "total": guids.len(), "tasks": tasks }))
            }
            ClientRequest::DeadRetry { topic, guids } => {
                let guids = if guids.is_empty() {
                    state.dead_guids(topic.as_deref())
                } else {
                    guids
                };
                let retried = guids.iter().filter(|g| state.retry_dead(g)).count();
                Ok(json!({ "retried": retried }))
            }
            ClientRequest::DeadPurge { topic, guids } => {
                let guids = if guids.is_empty() {
                    state.dead_guids(topic.as_deref())
                } else {
                    guids
                };
                let purged = guids.iter().filter(|g| state.purge_dead(g)).count();
                Ok(json!({ "purged": purged }))
            }
            scheduled @ (ClientRequest::AddTask { .. }
            | ClientRequest::ModifyTask { .. }
            | ClientRequest::PauseTask { .. }
            | ClientRequest::ResumeTask { .. }
            | ClientRequest::DeleteTask { .. }) => {
                if matches!(scheduled, ClientRequest::AddTask { .. }) {
                    if let Some(error) = &self.refuse_work {
                        return Err(error.clone());
                    }
                }
                match self.schedule.as_mut() {
                    Some(schedule) => schedule.handle(state, scheduled, out),
                    None => Err(ProtocolError::new(
                        code::UNKNOWN_TYPE,
                        "this broker runs no scheduler",
                    )),
                }
            }
        }
    }

    /// Handles one message from the worker endpoint.
    pub fn on_worker(&mut self, frames: Vec<Bytes>, now: Instant, out: &mut Outbox) {
        let (peer, body) = match split_frames(frames) {
            Ok(parts) => parts,
            Err((peer, error)) => {
                log::warn!("worker message refused: {}", error.message);
                if let Some(peer) = peer {
                    out.to_workers.push((peer, error_message(&error)));
                }
                return;
            }
        };
        let message = decode_value(&body, self.config.broker.max_message_bytes)
            .and_then(|(value, _)| WorkerMessage::parse(value));
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                log::warn!("worker={} message refused: {}", peer_name(&peer), error);
                out.to_workers.push((peer, error_message(&error)));
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
        match message {
            WorkerMessage::Ready {
                stage,
                topics,
                capacity,
                next_topic,
                ..
            } => {
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
                    in_flight: HashSet::new(),
                    last_seen: now,
                };
                self.state.register_worker(peer.clone(), entry);
            }
            WorkerMessage::Done { guid, next } => {
                let next_topic = self
                    .state
                    .workers
                    .get(&peer)
                    .and_then(|w| w.next_topic.clone());
                match self.state.complete(&guid, next, next_topic.as_deref()) {
                    Ok(created) => log::debug!(
                        "guid={} worker={} done next={}",
                        guid,
                        peer_name(&peer),
                        created
                    ),
                    Err(error) => {
                        log::debug!("worker={} done ignored: {}", peer_name(&peer), error)
                    }
                }
            }
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
                if let Err(error) = self.state.fail(&guid, error, retryable) {
                    log::debug!("worker={} fail ignored: {}", peer_name(&peer), error);
                }
            }
            WorkerMessage::Heartbeat {} => {}
            WorkerMessage::Disconnect {} => {
                let returned = self.state.remove_worker(&peer, "disconnected");
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
            out.to_workers.push((
                peer,
                BrokerMessage::Disconnect {
                    reason: "unknown worker: send ready".into(),
                },
            ));
        }
    }

    /// Declares dead every worker silent for longer than the heartbeat expiry and
    /// sends heartbeats to the others.
    pub fn on_heartbeat_tick(&mut self, now: Instant, out: &mut Outbox) {
        let expiry = self.config.broker.peer_expiry();
        if let Some(cutoff) = now.checked_sub(expiry) {
            for id in self.state.workers.silent_since(cutoff) {
                let returned = self.state.remove_worker(&id, "missed heartbeats");
                log::warn!(
                    "worker={} missed heartbeats, declared dead, {} leases returned",
                    peer_name(&id),
                    returned
                );
            }
        }
        for id in self.state.workers.ids() {
            out.to_workers.push((id, BrokerMessage::Heartbeat {}));
        }
    }

    /// A worker the socket could not reach: its leases go back.
    pub fn on_unreachable_worker(&mut self, id: &Bytes, why: &str) {
        let returned = self.state.remove_worker(id, why);
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

fn error_message(error: &ProtocolError) -> BrokerMessage {
    BrokerMessage::Error {
        error: error.message.clone(),
        code: error.code.to_owned(),
    }
}
