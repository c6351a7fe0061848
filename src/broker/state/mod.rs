//! The broker's state: per-topic queues, leases, delayed retries, dead letters and
//! workers. Pure: no I/O; lease time is passed in. Every change is also written to
//! the journal that the store commits (when the store is durable).
//!
//! Invariant: a task put by a client, or made by a DONE or a firing, is not handed
//! out before the store batch that holds it has committed ([`State::seal_round`],
//! [`State::release`]); a refused put never runs ([`State::refuse`]).
//! Invariant: a worker never holds more than its capacity: a lease that expired while
//! its worker lives keeps counting against that worker until it answers or dies.

mod admin;
mod leases;
pub mod queue;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::workers::{peer_name, Workers};
use crate::body::Body;
use crate::config::Config;
use crate::protocol::{code, ProtocolError};
use crate::store::{HistoryRecord, Restore, StoreOp, StoredState, TaskRecord};
use crate::task::{child_guid, new_guid, NewTask};
pub use queue::{Backoff, Extra, Holder, Leased, Slot, TopicId, TopicQueue, TopicSettings};

/// Where a new task came from; decides what a failed commit does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client's `put_task`: the client is told the put failed, so the task is dropped.
    Put,
    /// A DONE's next-stage envelope or a scheduler firing: kept, and written again
    /// with the next commit.
    Derived,
}

/// A new task waiting for the commit of its batch.
#[derive(Debug)]
struct Pending {
    topic: TopicId,
    slot: Slot,
    origin: Origin,
}

/// Everything the broker knows.
pub struct State {
    config: Arc<Config>,
    topics: Vec<TopicQueue>,
    topic_ids: HashMap<Arc<str>, TopicId>,
    leased: HashMap<Arc<str>, Leased>,
    lease_deadlines: BinaryHeap<Reverse<(Instant, u64, Arc<str>)>>,
    next_lease_id: u64,
    /// Tasks waiting out their retry backoff, by (ready time, sequence).
    delayed: BTreeMap<(Instant, u64), (TopicId, Slot)>,
    next_delay_seq: u64,
    dead: HashMap<Arc<str>, (TopicId, Slot)>,
    /// New tasks of the current round, then of each sealed round until it commits.
    pending: Vec<Pending>,
    sealed: VecDeque<(u64, Vec<Pending>)>,
    next_round: u64,
    /// Live tasks that came with their own guid (a put with a guid, a DONE's
    /// children): a second one with the same guid is not queued twice.
    explicit: HashSet<Arc<str>>,
    /// Tasks waiting again after a lease expired or the broker restarted; a late DONE
    /// for one of them still finishes it.
    requeued: HashSet<Arc<str>>,
    /// Ready slots finished by a late DONE, skipped when popped.
    tombstones: HashSet<Arc<str>>,
    pub workers: Workers,
    dirty: HashSet<TopicId>,
    durable: bool,
    journal: Vec<StoreOp>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The settings `config` gives `topic`: `[topics.NAME]`, else `[broker]`.
fn settings_for(config: &Config, topic: &str) -> TopicSettings {
    let broker = &config.broker;
    let own = config.topics.get(topic);
    let pick = |own: Option<f64>, default: f64| Duration::from_secs_f64(own.unwrap_or(default));
    TopicSettings {
        lease_timeout: pick(
            own.and_then(|t| t.lease_timeout_secs),
            broker.lease_timeout_secs,
        ),
        max_retry: own.and_then(|t| t.max_retry).unwrap_or(broker.max_retry),
        backoff: Backoff {
            base: pick(
                own.and_then(|t| t.retry_backoff_secs),
                broker.retry_backoff_secs,
            ),
            max: pick(
                own.and_then(|t| t.retry_backoff_max_secs),
                broker.retry_backoff_max_secs,
            ),
            jitter: own
                .and_then(|t| t.retry_jitter)
                .unwrap_or(broker.retry_jitter),
        },
    }
}

impl State {
    pub fn new(config: Arc<Config>, durable: bool) -> State {
        let mut state = State {
            config,
            topics: Vec::new(),
            topic_ids: HashMap::new(),
            leased: HashMap::new(),
            lease_deadlines: BinaryHeap::new(),
            next_lease_id: 0,
            delayed: BTreeMap::new(),
            next_delay_seq: 0,
            dead: HashMap::new(),
            pending: Vec::new(),
            sealed: VecDeque::new(),
            next_round: 0,
            explicit: HashSet::new(),
            requeued: HashSet::new(),
            tombstones: HashSet::new(),
            workers: Workers::default(),
            dirty: HashSet::new(),
            durable,
            journal: Vec::new(),
        };
        let declared: Vec<String> = state.config.topics.keys().cloned().collect();
        for topic in declared {
            state.topic_id(&topic);
        }
        state
    }
    /// The id of `topic`, creating its queue on first use.
    fn topic_id(&mut self, topic: &str) -> TopicId {
        if let Some(&id) = self.topic_ids.get(topic) {
            return id;
        }
        let id = self.topics.len() as TopicId;
        let name: Arc<str> = Arc::from(topic);
        let settings = settings_for(&self.config, topic);
        self.topics.push(TopicQueue::new(name.clone(), settings));
        self.topic_ids.insert(name, id);
        id
    }
    fn queue(&mut self, id: TopicId) -> &mut TopicQueue {
        &mut self.topics[id as usize]
    }
    /// The store operations since the last call.
    pub fn take_journal(&mut self) -> Vec<StoreOp> {
        std::mem::take(&mut self.journal)
    }
    /// Adds an operation of another owner (the scheduler) to this round's journal.
    pub fn journal_op(&mut self, op: StoreOp) {
        self.record(|| op);
    }
    fn record(&mut self, op: impl FnOnce() -> StoreOp) {
        if self.durable {
            self.journal.push(op());
        }
    }
    /// Whether changes go to a store (and new tasks wait for its commits).
    pub fn is_durable(&self) -> bool {
        self.durable
    }
    /// Whether the broker knows `topic` (declared in `bus.toml` or ever used).
    pub fn knows_topic(&self, topic: &str) -> bool {
        self.topic_ids.contains_key(topic)
    }
    /// Number of ready tasks in `topic`, `None` for an unknown topic.
    pub fn size(&self, topic: &str) -> Option<usize> {
        let id = self.topic_ids.get(topic)?;
        Some(self.topics[*id as usize].n_ready)
    }
    /// Accepts a new task; an explicit guid that is already live is not queued twice.
    pub fn put(&mut self, new: NewTask, origin: Origin) -> Result<String, ProtocolError> {
        let topic =
            new.topic.clone().filter(|t| !t.is_empty()).ok_or_else(|| {
                ProtocolError::new(code::BAD_REQUEST, "task: missing field `topic`")
            })?;
        if self.config.broker.strict_topics && !self.knows_topic(&topic) {
            return Err(ProtocolError::new(
                code::UNKNOWN_TOPIC,
                format!("unknown topic \"{topic}\" (strict_topics is on)"),
            ));
        }
        if new.timeout.is_some_and(|t| !(t > 0.0 && t < 1e9)) {
            return Err(ProtocolError::new(
                code::BAD_REQUEST,
                "task: timeout must be > 0 seconds",
            ));
        }
        let explicit = new.guid.as_deref().is_some_and(|g| !g.is_empty());
        let extra = extra_of(&new);
        let guid = match new.guid {
            Some(g) if !g.is_empty() => g,
            _ => new_guid(),
        };
        self.insert_new(&topic, guid, explicit, new.body, extra, origin)
    }
    fn insert_new(
        &mut self,
        topic: &str,
        guid: String,
        explicit: bool,
        body: Body,
        extra: Option<Box<Extra>>,
        origin: Origin,
    ) -> Result<String, ProtocolError> {
        if explicit && self.explicit.contains(guid.as_str()) {
            return Ok(guid);
        }
        let guid_arc: Arc<str> = Arc::from(guid.as_str());
        if explicit {
            self.explicit.insert(guid_arc.clone());
        }
        let topic_id = self.topic_id(topic);
        let slot = Slot {
            guid: guid_arc,
            body,
            attempt: 0,
            unchecked: false,
            created_at_ms: now_ms(),
            extra,
        };
        self.record(|| StoreOp::Upsert(record_of(topic, &slot, StoredState::Ready)));
        if self.durable {
            self.pending.push(Pending {
                topic: topic_id,
                slot,
                origin,
            });
        } else {
            self.push_ready(topic_id, slot);
        }
        Ok(guid)
    }
    fn push_ready(&mut self, topic: TopicId, slot: Slot) {
        let queue = self.queue(topic);
        queue.ready.push_back(slot);
        queue.n_ready += 1;
        self.dirty.insert(topic);
    }
    /// Ends the round: its new tasks wait for the commit that `round` names.
    pub fn seal_round(&mut self) -> Option<u64> {
        if self.pending.is_empty() {
            return None;
        }
        self.next_round += 1;
        let round = self.next_round;
        self.sealed
            .push_back((round, std::mem::take(&mut self.pending)));
        Some(round)
    }
    /// The commit of `round` (and of every round sealed before it) succeeded: their
    /// tasks may be handed out.
    pub fn release(&mut self, round: u64) {
        while self.sealed.front().is_some_and(|(r, _)| *r <= round) {
            let (_, tasks) = self.sealed.pop_front().expect("front checked");
            for pending in tasks {
                self.push_ready(pending.topic, pending.slot);
            }
        }
    }
    /// The commit of `round` failed: its clients' puts are dropped (they were told
    /// so); its derived tasks stay pending for the next commit. Returns the guids
    /// dropped, whose operations must not be written again.
    pub fn refuse(&mut self, round: u64) -> HashSet<Arc<str>> {
        let mut dropped = HashSet::new();
        let mut kept = Vec::new();
        while self.sealed.front().is_some_and(|(r, _)| *r <= round) {
            let (_, tasks) = self.sealed.pop_front().expect("front checked");
            for pending in tasks {
                match pending.origin {
                    Origin::Put => {
                        self.explicit.remove(&pending.slot.guid);
                        dropped.insert(pending.slot.guid);
                    }
                    Origin::Derived => kept.push(pending),
                }
            }
        }
        // Written again with the next commit, so they wait for that one.
        kept.append(&mut self.pending);
        self.pending = kept;
        dropped
    }
    /// Restores a task from the store at start-up. A task that was leased when the
    /// broker stopped is ready again, its attempt counted; a late DONE still ends it.
    pub fn restore(&mut self, record: TaskRecord) {
        let topic = self.topic_id(&record.topic);
        let guid: Arc<str> = Arc::from(record.guid);
        let extra =
            (record.timeout.is_some() || record.max_retry.is_some() || record.last_error.is_some())
                .then(|| {
                    Box::new(Extra {
                        timeout: record.timeout,
                        max_retry: record.max_retry,
                        last_error: record.last_error,
                    })
                });
        if !crate::task::is_generated(&guid) {
            self.explicit.insert(guid.clone());
        }
        let slot = Slot {
            guid: guid.clone(),
            body: record.body,
            attempt: record.attempt,
            unchecked: true,
            created_at_ms: record.created_at_ms,
            extra,
        };
        match record.state {
            StoredState::Dead => {
                self.queue(topic).n_dead += 1;
                self.dead.insert(guid, (topic, slot));
            }
            StoredState::Leased => {
                self.requeued.insert(guid);
                self.push_ready(topic, slot);
            }
            StoredState::Ready => self.push_ready(topic, slot),
        }
    }
    /// Restores a history line at start-up.
    pub fn restore_history(&mut self, record: HistoryRecord) {
        let limit = self.config.store.history_per_topic;
        let topic = self.topic_id(&record.topic);
        self.queue(topic).remember(record, limit);
    }
    /// Finishes a task (DONE or ack) and enqueues its next-stage envelopes. A task
    /// that waits again after its lease expired is finished too: the work was done.
    ///
    /// Invariant: a task is never finished while its output is dropped. When an
    /// envelope names no topic (no `callback.topic`, `next_topic` or `topic`), the
    /// task stays as it is and the error says which envelope.
    pub fn complete(
        &mut self,
        guid: &str,
        next: Vec<NewTask>,
        next_topic: Option<&str>,
    ) -> Result<usize, ProtocolError> {
        let routed = route(guid, next, next_topic)?;
        let (topic, slot) = self.take_finished(guid)?;
        let queue = self.queue(topic);
        queue.n_done += 1;
        let name = queue.name.clone();
        self.finish(topic, &slot, "done", None);
        let mut created = 0;
        for (index, (child_topic, envelope)) in routed.into_iter().enumerate() {
            if self.enqueue_child(&slot.guid, index, child_topic, envelope) {
                created += 1;
            }
        }
        log::trace!("guid={guid} topic={name} done next={created}");
        Ok(created)
    }
    /// Takes a leased task, or a requeued one a late DONE finishes, out of the state.
    fn take_finished(&mut self, guid: &str) -> Result<(TopicId, Slot), ProtocolError> {
        if let Some(leased) = self.leased.remove(guid) {
            self.queue(leased.topic).n_leased -= 1;
            return Ok((leased.topic, leased.slot));
        }
        if self.dead.contains_key(guid) {
            return Err(ProtocolError::new(
                code::NOT_LEASED,
                format!("task \"{guid}\" is dead-lettered"),
            ));
        }
        if let Some(key) = self.requeued.take(guid) {
            if let Some(found) = self.take_delayed(&key) {
                return Ok(found);
            }
            // Waiting in a ready queue: skipped when its slot comes up.
            let topic = self.topic_of_ready(&key);
            if let Some((topic, slot)) = topic {
                self.queue(topic).n_ready -= 1;
                self.tombstones.insert(key);
                return Ok((topic, slot));
            }
        }
        Err(ProtocolError::new(
            code::NOT_FOUND,
            format!("no leased task with guid \"{guid}\""),
        ))
    }
    fn take_delayed(&mut self, guid: &Arc<str>) -> Option<(TopicId, Slot)> {
        let key = *self
            .delayed
            .iter()
            .find(|(_, (_, slot))| &slot.guid == guid)?
            .0;
        let (topic, slot) = self.delayed.remove(&key)?;
        self.queue(topic).n_delayed -= 1;
        Some((topic, slot))
    }
    /// A copy of the ready slot of `guid` and its topic (a late DONE; rare).
    fn topic_of_ready(&self, guid: &Arc<str>) -> Option<(TopicId, Slot)> {
        self.topics.iter().enumerate().find_map(|(id, queue)| {
            queue
                .ready
                .iter()
                .find(|slot| &slot.guid == guid)
                .map(|slot| (id as TopicId, slot.clone()))
        })
    }
    fn enqueue_child(
        &mut self,
        parent: &str,
        index: usize,
        topic: String,
        envelope: NewTask,
    ) -> bool {
        let extra = extra_of(&envelope);
        let explicit_guid = envelope.guid.filter(|g| !g.is_empty() && g != parent);
        let guid = explicit_guid.unwrap_or_else(|| child_guid(parent, index));
        let body = envelope.body;
        let before = self.explicit.len();
        let _ = self.insert_new(&topic, guid, true, body, extra, Origin::Derived);
        self.explicit.len() > before
    }
    fn finish(&mut self, topic: TopicId, slot: &Slot, outcome: &str, error: Option<String>) {
        let name = self.topics[topic as usize].name.to_string();
        let record = HistoryRecord {
            guid: slot.guid.to_string(),
            topic: name,
            outcome: outcome.to_owned(),
            attempt: slot.attempt,
            finished_at_ms: now_ms(),
            error,
        };
        self.explicit.remove(&slot.guid);
        let limit = self.config.store.history_per_topic;
        self.queue(topic).remember(record.clone(), limit);
        self.record(|| StoreOp::Finish(record));
    }
    /// All leased tasks (for shutdown accounting).
    pub fn n_leased(&self) -> usize {
        self.leased.len()
    }
}

/// The rarely set fields of a new task.
fn extra_of(task: &NewTask) -> Option<Box<Extra>> {
    (task.timeout.is_some() || task.max_retry.is_some()).then(|| {
        Box::new(Extra {
            timeout: task.timeout,
            max_retry: task.max_retry,
            last_error: None,
        })
    })
}

/// The store row of a slot.
fn record_of(topic: &str, slot: &Slot, state: StoredState) -> TaskRecord {
    TaskRecord {
        guid: slot.guid.to_string(),
        topic: topic.to_owned(),
        body: slot.body.clone(),
        attempt: slot.attempt,
        state,
        timeout: slot.timeout(),
        max_retry: slot.max_retry(),
        last_error: slot.last_error().map(str::to_owned),
        created_at_ms: slot.created_at_ms,
    }
}

/// The topic of each next-stage envelope: `body.callback.topic` (the seed's field),
/// else `next_topic` (the DONE's, else the worker's), else the envelope's `topic`.
/// The seed's envelope carries its own `topic`: it is set to the destination. Each
/// body is walked once.
fn route(
    guid: &str,
    next: Vec<NewTask>,
    next_topic: Option<&str>,
) -> Result<Vec<(String, NewTask)>, ProtocolError> {
    next.into_iter()
        .enumerate()
        .map(|(index, mut envelope)| {
            let routing = envelope.body.routing();
            let topic = routing
                .callback_topic
                .or_else(|| next_topic.filter(|t| !t.is_empty()).map(str::to_owned))
                .or_else(|| envelope.topic.clone().filter(|t| !t.is_empty()));
            match topic {
                Some(topic) => {
                    if routing.topic.is_some_and(|own| own != topic) {
                        envelope.body = envelope.body.with_topic(&topic);
                    }
                    Ok((topic, envelope))
                }
                None => Err(ProtocolError::new(
                    code::UNROUTABLE,
                    format!(
                        "task \"{guid}\": next[{index}] names no topic (no body.callback.topic, next_topic or topic); the task is not finished"
                    ),
                )),
            }
        })
        .collect()
}

/// The store streams its rows straight into the state at start-up.
impl Restore for State {
    fn task(&mut self, record: TaskRecord) {
        self.restore(record);
    }

    fn history(&mut self, record: HistoryRecord) {
        self.restore_history(record);
    }
}
