//! The broker's state: tasks, per-topic queues, leases and workers. Pure: no I/O,
//! time is passed in. Every change is also written to the journal that the store
//! commits (when the store is durable).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::workers::{peer_name, WorkerEntry, Workers};
use crate::config::Config;
use crate::protocol::{code, ProtocolError};
use crate::store::{Body, HistoryRecord, StoreOp, StoredState, TaskRecord};
use crate::task::{child_guid, new_guid, NewTask, Task};

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    Worker(Bytes),
    /// A client that took the task with `get_task`; only its ack or the timeout ends it.
    Client,
}

#[derive(Debug)]
enum EntryState {
    Ready,
    Leased {
        lease_id: u64,
        holder: Holder,
        deadline: Instant,
    },
    Dead,
}

#[derive(Debug)]
struct Entry {
    /// The task; its body is `Null` while `packed` holds it.
    task: Task,
    /// The body still packed as the store gave it, decoded when the task is handed out.
    packed: Option<Vec<u8>>,
    state: EntryState,
    last_error: Option<String>,
    created_at_ms: i64,
}

/// Counters and queues of one topic.
#[derive(Debug, Default)]
struct TopicQueue {
    /// Guids in arrival order; entries that are no longer ready are skipped on pop.
    ready: VecDeque<Arc<str>>,
    n_ready: usize,
    n_leased: usize,
    n_dead: usize,
    n_done: u64,
    n_failed: u64,
    history: VecDeque<HistoryRecord>,
    /// Index into the topic's workers where the next dispatch round starts.
    next_worker: usize,
}

/// One topic as `stats` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopicStats {
    pub ready: usize,
    pub leased: usize,
    pub done: u64,
    pub failed: u64,
    pub dead: usize,
}

/// Everything the broker knows.
pub struct State {
    config: Arc<Config>,
    tasks: HashMap<Arc<str>, Entry>,
    topics: HashMap<String, TopicQueue>,
    leases: BinaryHeap<Reverse<(Instant, u64, Arc<str>)>>,
    next_lease_id: u64,
    pub workers: Workers,
    dirty: HashSet<String>,
    durable: bool,
    journal: Vec<StoreOp>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl State {
    pub fn new(config: Arc<Config>, durable: bool) -> State {
        let mut state = State {
            config,
            tasks: HashMap::new(),
            topics: HashMap::new(),
            leases: BinaryHeap::new(),
            next_lease_id: 0,
            workers: Workers::default(),
            dirty: HashSet::new(),
            durable,
            journal: Vec::new(),
        };
        let declared: Vec<String> = state.config.topics.keys().cloned().collect();
        for topic in declared {
            state.topics.entry(topic).or_default();
        }
        state
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

    /// Whether the broker knows `topic` (declared in `bus.toml` or ever put to).
    pub fn knows_topic(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    /// Number of ready tasks in `topic`, `None` for an unknown topic.
    pub fn size(&self, topic: &str) -> Option<usize> {
        self.topics.get(topic).map(|q| q.n_ready)
    }

    /// Accepts a new task; an explicit guid that is already live is not queued twice.
    pub fn put(&mut self, new: NewTask) -> Result<String, ProtocolError> {
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
        let guid = new
            .guid
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(new_guid);
        if self.tasks.contains_key(guid.as_str()) {
            return Ok(guid);
        }
        let task = Task {
            guid,
            topic,
            body: new.body,
            attempt: 0,
            timeout: new.timeout,
            max_retry: new.max_retry,
        };
        let guid = task.guid.clone();
        self.insert_ready(task, None, None, now_ms());
        Ok(guid)
    }

    fn insert_ready(
        &mut self,
        task: Task,
        packed: Option<Vec<u8>>,
        last_error: Option<String>,
        created_at_ms: i64,
    ) {
        let guid: Arc<str> = Arc::from(task.guid.as_str());
        let topic = task.topic.clone();
        self.record(|| {
            let body = match &packed {
                Some(bytes) => Body::Packed(bytes.clone()),
                None => Body::Value(task.body.clone()),
            };
            StoreOp::Upsert(TaskRecord {
                guid: task.guid.clone(),
                topic: task.topic.clone(),
                body,
                attempt: task.attempt,
                state: StoredState::Ready,
                timeout: task.timeout,
                max_retry: task.max_retry,
                last_error: last_error.clone(),
                created_at_ms,
            })
        });
        self.tasks.insert(
            guid.clone(),
            Entry {
                task,
                packed,
                state: EntryState::Ready,
                last_error,
                created_at_ms,
            },
        );
        let queue = self.topics.entry(topic.clone()).or_default();
        queue.ready.push_back(guid);
        queue.n_ready += 1;
        self.dirty.insert(topic);
    }

    /// Restores a task from the store at start-up. A task that was leased when the
    /// broker stopped is ready again, its attempt counted.
    pub fn restore(&mut self, record: TaskRecord) {
        let (body, packed) = match record.body {
            Body::Value(value) => (value, None),
            Body::Packed(bytes) => (Value::Null, Some(bytes)),
        };
        let task = Task {
            guid: record.guid,
            topic: record.topic,
            body,
            attempt: record.attempt,
            timeout: record.timeout,
            max_retry: record.max_retry,
        };
        if record.state == StoredState::Dead {
            let guid: Arc<str> = Arc::from(task.guid.as_str());
            let queue = self.topics.entry(task.topic.clone()).or_default();
            queue.n_dead += 1;
            self.tasks.insert(
                guid,
                Entry {
                    task,
                    packed,
                    state: EntryState::Dead,
                    last_error: record.last_error,
                    created_at_ms: record.created_at_ms,
                },
            );
            return;
        }
        let durable = std::mem::replace(&mut self.durable, false);
        self.insert_ready(task, packed, record.last_error, record.created_at_ms);
        self.durable = durable;
    }

    /// Restores a history line at start-up.
    pub fn restore_history(&mut self, record: HistoryRecord) {
        let limit = self.config.store.history_per_topic;
        let queue = self.topics.entry(record.topic.clone()).or_default();
        queue.history.push_back(record);
        while queue.history.len() > limit {
            queue.history.pop_front();
        }
    }

    fn lease_timeout(&self, task: &Task) -> Duration {
        match task.timeout {
            Some(secs) => Duration::from_secs_f64(secs),
            None => self.config.lease_timeout(&task.topic),
        }
    }

    fn max_retry(&self, task: &Task) -> u32 {
        task.max_retry
            .unwrap_or_else(|| self.config.max_retry(&task.topic))
    }

    /// Leases the next ready task of `topic` to `holder`.
    pub fn lease_next(&mut self, topic: &str, holder: Holder, now: Instant) -> Option<Task> {
        loop {
            let guid = self.topics.get_mut(topic)?.ready.pop_front()?;
            let Some(entry) = self.tasks.get(&guid) else {
                continue;
            };
            if !matches!(entry.state, EntryState::Ready) {
                continue;
            }
            let deadline = now + self.lease_timeout(&entry.task);
            self.next_lease_id += 1;
            let lease_id = self.next_lease_id;
            let entry = self.tasks.get_mut(&guid).expect("entry checked above");
            if let Some(bytes) = entry.packed.take() {
                match Body::Packed(bytes).into_value() {
                    Ok(body) => entry.task.body = body,
                    Err(error) => {
                        self.bury_unreadable(&guid, topic, error);
                        continue;
                    }
                }
            }
            entry.task.attempt += 1;
            entry.state = EntryState::Leased {
                lease_id,
                holder: holder.clone(),
                deadline,
            };
            let task = entry.task.clone();
            let queue = self.topics.get_mut(topic).expect("topic checked above");
            queue.n_ready -= 1;
            queue.n_leased += 1;
            self.leases
                .push(Reverse((deadline, lease_id, guid.clone())));
            if let Holder::Worker(id) = &holder {
                if let Some(worker) = self.workers.get_mut(id) {
                    worker.in_flight.insert(guid);
                }
            }
            self.record(|| StoreOp::SetState {
                guid: task.guid.clone(),
                state: StoredState::Leased,
                attempt: task.attempt,
                last_error: None,
            });
            return Some(task);
        }
    }

    /// Dead-letters a ready task whose stored body cannot be read.
    fn bury_unreadable(&mut self, guid: &Arc<str>, topic: &str, error: String) {
        let entry = self.tasks.get_mut(guid).expect("caller found the entry");
        entry.state = EntryState::Dead;
        entry.last_error = Some(error.clone());
        let attempt = entry.task.attempt;
        let queue = self.topics.get_mut(topic).expect("topic of a live task");
        queue.n_ready -= 1;
        queue.n_dead += 1;
        log::error!(target: "scripts", "guid={guid} topic={topic} dead-lettered: {error}");
        self.record(|| StoreOp::SetState {
            guid: guid.to_string(),
            state: StoredState::Dead,
            attempt,
            last_error: Some(error),
        });
    }

    /// Takes the entry's lease away (from its worker's in-flight set too).
    fn end_lease(&mut self, guid: &Arc<str>) -> Option<Holder> {
        let entry = self.tasks.get_mut(guid)?;
        if !matches!(entry.state, EntryState::Leased { .. }) {
            return None;
        }
        let EntryState::Leased { holder, .. } =
            std::mem::replace(&mut entry.state, EntryState::Ready)
        else {
            unreachable!("state checked above");
        };
        if let Some(queue) = self.topics.get_mut(&entry.task.topic) {
            queue.n_leased -= 1;
        }
        if let Holder::Worker(id) = &holder {
            if let Some(worker) = self.workers.get_mut(id) {
                worker.in_flight.remove(guid);
            }
            self.dirty_worker_topics(id);
        }
        Some(holder)
    }

    fn dirty_worker_topics(&mut self, id: &Bytes) {
        if let Some(worker) = self.workers.get(id) {
            for topic in &worker.topics {
                self.dirty.insert(topic.clone());
            }
        }
    }

    /// Finishes a task (DONE or ack) and enqueues its next-stage envelopes. A task that
    /// is ready again (its lease expired) is finished too: the work was done.
    pub fn complete(
        &mut self,
        guid: &str,
        next: Vec<NewTask>,
        next_topic: Option<&str>,
    ) -> Result<usize, ProtocolError> {
        let Some((key, entry)) = self.tasks.get_key_value(guid) else {
            return Err(ProtocolError::new(
                code::NOT_FOUND,
                format!("no live task with guid \"{guid}\""),
            ));
        };
        if matches!(entry.state, EntryState::Dead) {
            return Err(ProtocolError::new(
                code::NOT_LEASED,
                format!("task \"{guid}\" is dead-lettered"),
            ));
        }
        let key = key.clone();
        let was_ready = self.end_lease(&key).is_none();
        let entry = self.tasks.remove(&key).expect("entry exists");
        let queue = self
            .topics
            .get_mut(&entry.task.topic)
            .expect("topic of a live task");
        if was_ready {
            queue.n_ready -= 1;
        }
        queue.n_done += 1;
        self.finish(&entry.task, "done", None);
        let mut created = 0;
        for (index, envelope) in next.into_iter().enumerate() {
            if self.enqueue_child(&entry.task, index, envelope, next_topic) {
                created += 1;
            }
        }
        Ok(created)
    }

    fn enqueue_child(
        &mut self,
        parent: &Task,
        index: usize,
        mut envelope: NewTask,
        next_topic: Option<&str>,
    ) -> bool {
        let topic = envelope
            .callback_topic()
            .map(str::to_owned)
            .or_else(|| next_topic.map(str::to_owned))
            .or_else(|| envelope.topic.clone())
            .filter(|t| !t.is_empty());
        let guid = match envelope.guid.take() {
            Some(g) if !g.is_empty() && g != parent.guid => g,
            _ => child_guid(&parent.guid, index),
        };
        let Some(topic) = topic else {
            log::error!(
                target: "scripts",
                "guid={} parent={} next-stage envelope names no topic (no callback.topic, next_topic or topic); dropped",
                guid, parent.guid
            );
            return false;
        };
        if self.tasks.contains_key(guid.as_str()) {
            return false;
        }
        if let Some(body) = envelope.body.as_object_mut() {
            // The seed's envelope carries its own topic and guid; keep them true.
            if body.contains_key("topic") {
                body.insert("topic".into(), Value::String(topic.clone()));
            }
        }
        let task = Task {
            guid,
            topic,
            body: envelope.body,
            attempt: 0,
            timeout: envelope.timeout,
            max_retry: envelope.max_retry,
        };
        self.insert_ready(task, None, None, now_ms());
        true
    }

    fn finish(&mut self, task: &Task, outcome: &str, error: Option<String>) {
        let record = HistoryRecord {
            guid: task.guid.clone(),
            topic: task.topic.clone(),
            outcome: outcome.to_owned(),
            attempt: task.attempt,
            finished_at_ms: now_ms(),
            error,
        };
        let limit = self.config.store.history_per_topic;
        let queue = self.topics.entry(task.topic.clone()).or_default();
        queue.history.push_back(record.clone());
        while queue.history.len() > limit {
            queue.history.pop_front();
        }
        self.record(|| StoreOp::Finish(record));
    }

    /// A failed attempt: back to ready while retries remain, else dead-lettered.
    /// Returns the state the task is in now.
    pub fn fail(
        &mut self,
        guid: &str,
        error: String,
        retryable: bool,
    ) -> Result<&'static str, ProtocolError> {
        let Some((key, entry)) = self.tasks.get_key_value(guid) else {
            return Err(ProtocolError::new(
                code::NOT_FOUND,
                format!("no live task with guid \"{guid}\""),
            ));
        };
        if !matches!(entry.state, EntryState::Leased { .. }) {
            return Err(ProtocolError::new(
                code::NOT_LEASED,
                format!("task \"{guid}\" is not leased"),
            ));
        }
        let key = key.clone();
        self.end_lease(&key);
        Ok(self.after_failed_attempt(&key, error, retryable))
    }

    fn after_failed_attempt(
        &mut self,
        key: &Arc<str>,
        error: String,
        retryable: bool,
    ) -> &'static str {
        let entry = self.tasks.get_mut(key).expect("caller checked the entry");
        let max_retry = entry
            .task
            .max_retry
            .unwrap_or_else(|| self.config.max_retry(&entry.task.topic));
        let exhausted = entry.task.attempt > max_retry;
        let topic = entry.task.topic.clone();
        entry.last_error = Some(error.clone());
        let queue = self.topics.get_mut(&topic).expect("topic of a live task");
        queue.n_failed += 1;
        let attempt = entry.task.attempt;
        if retryable && !exhausted {
            queue.ready.push_back(key.clone());
            queue.n_ready += 1;
            self.dirty.insert(topic);
            self.record(|| StoreOp::SetState {
                guid: key.to_string(),
                state: StoredState::Ready,
                attempt,
                last_error: Some(error),
            });
            "ready"
        } else {
            entry.state = EntryState::Dead;
            queue.n_dead += 1;
            log::error!(target: "scripts", "guid={} topic={} attempt={} dead-lettered: {}", key, topic, attempt, error);
            self.record(|| StoreOp::SetState {
                guid: key.to_string(),
                state: StoredState::Dead,
                attempt,
                last_error: Some(error),
            });
            "dead"
        }
    }

    /// Puts back every lease whose deadline has passed. Returns how many.
    pub fn expire_leases(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(Reverse((deadline, lease_id, _))) = self.leases.peek() {
            if *deadline > now {
                break;
            }
            let lease_id = *lease_id;
            let Reverse((_, _, guid)) = self.leases.pop().expect("peeked");
            let current = matches!(
                self.tasks.get(&guid).map(|e| &e.state),
                Some(EntryState::Leased { lease_id: id, .. }) if *id == lease_id
            );
            if current {
                self.end_lease(&guid);
                log::warn!("task={} lease expired", guid);
                self.after_failed_attempt(&guid, "lease expired".into(), true);
                expired += 1;
            }
        }
        expired
    }

    /// The earliest lease deadline, for the broker's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.leases
            .peek()
            .map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Registers (or re-registers) a worker. Leases of an earlier session go back.
    pub fn register_worker(&mut self, id: Bytes, mut entry: WorkerEntry) {
        self.remove_worker(&id, "re-registered");
        entry.in_flight.clear();
        for topic in &entry.topics {
            self.topics.entry(topic.clone()).or_default();
            self.dirty.insert(topic.clone());
        }
        self.workers.insert(id, entry);
    }

    /// Forgets a worker and puts its leases back. Returns how many were put back.
    pub fn remove_worker(&mut self, id: &Bytes, reason: &str) -> usize {
        let Some(worker) = self.workers.remove(id) else {
            return 0;
        };
        let mut returned = 0;
        for guid in worker.in_flight {
            let holder_is_worker = matches!(
                self.tasks.get(&guid).map(|e| &e.state),
                Some(EntryState::Leased { holder: Holder::Worker(h), .. }) if h == id
            );
            if holder_is_worker {
                self.end_lease(&guid);
                self.after_failed_attempt(
                    &guid,
                    format!("worker {} {reason}", peer_name(id)),
                    true,
                );
                returned += 1;
            }
        }
        returned
    }

    /// Pairs ready tasks with free credit, round-robin over each topic's workers.
    /// Returns one batch per worker.
    pub fn dispatch(&mut self, now: Instant) -> Vec<(Bytes, Vec<Task>)> {
        let mut batches: HashMap<Bytes, Vec<Task>> = HashMap::new();
        let dirty: Vec<String> = self.dirty.drain().collect();
        for topic in dirty {
            let ids: Vec<Bytes> = self.workers.for_topic(&topic).to_vec();
            if ids.is_empty() {
                continue;
            }
            let mut start = self.topics.get(&topic).map_or(0, |q| q.next_worker);
            loop {
                let mut gave = false;
                for offset in 0..ids.len() {
                    let id = &ids[(start + offset) % ids.len()];
                    if self.size(&topic).unwrap_or(0) == 0 {
                        break;
                    }
                    if self.workers.get(id).is_none_or(|w| w.credit() == 0) {
                        continue;
                    }
                    if let Some(task) = self.lease_next(&topic, Holder::Worker(id.clone()), now) {
                        batches.entry(id.clone()).or_default().push(task);
                        gave = true;
                    }
                }
                start = (start + 1) % ids.len();
                if !gave {
                    break;
                }
            }
            if let Some(queue) = self.topics.get_mut(&topic) {
                queue.next_worker = start;
            }
        }
        batches.into_iter().collect()
    }

    /// Per-topic counters.
    pub fn topic_stats(&self) -> BTreeMap<String, TopicStats> {
        self.topics
            .iter()
            .map(|(name, q)| {
                let stats = TopicStats {
                    ready: q.n_ready,
                    leased: q.n_leased,
                    done: q.n_done,
                    failed: q.n_failed,
                    dead: q.n_dead,
                };
                (name.clone(), stats)
            })
            .collect()
    }

    /// The status of one task, live or in the recent history.
    pub fn task_status(&self, guid: &str, now: Instant) -> Option<Value> {
        if let Some(entry) = self.tasks.get(guid) {
            return Some(self.describe(entry, now));
        }
        self.topics
            .values()
            .flat_map(|q| q.history.iter().rev())
            .find(|h| h.guid == guid)
            .map(|h| serde_json::to_value(h).expect("history serializes"))
    }

    fn describe(&self, entry: &Entry, now: Instant) -> Value {
        let (state, holder, expires_in_ms) = match &entry.state {
            EntryState::Ready => ("ready", None, None),
            EntryState::Dead => ("dead", None, None),
            EntryState::Leased {
                holder, deadline, ..
            } => {
                let holder = match holder {
                    Holder::Worker(id) => peer_name(id),
                    Holder::Client => "client".to_owned(),
                };
                let left = deadline.saturating_duration_since(now).as_millis() as u64;
                ("leased", Some(holder), Some(left))
            }
        };
        serde_json::json!({
            "guid": entry.task.guid,
            "topic": entry.task.topic,
            "state": state,
            "attempt": entry.task.attempt,
            "max_retry": self.max_retry(&entry.task),
            "holder": holder,
            "expires_in_ms": expires_in_ms,
            "last_error": entry.last_error,
            "created_at_ms": entry.created_at_ms,
        })
    }

    /// Live tasks matching a filter (topic, state), at most `limit`.
    pub fn list(
        &self,
        topic: Option<&str>,
        state: Option<&str>,
        limit: usize,
        now: Instant,
    ) -> Vec<Value> {
        let mut out: Vec<(&i64, &str, Value)> = self
            .tasks
            .values()
            .filter(|e| topic.is_none_or(|t| e.task.topic == t))
            .map(|e| (e, self.describe(e, now)))
            .filter(|(_, v)| state.is_none_or(|s| v["state"] == s))
            .map(|(e, v)| (&e.created_at_ms, e.task.guid.as_str(), v))
            .collect();
        out.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        out.into_iter().take(limit).map(|(_, _, v)| v).collect()
    }

    /// The guids of dead-lettered tasks, optionally of one topic.
    pub fn dead_guids(&self, topic: Option<&str>) -> Vec<String> {
        let mut guids: Vec<String> = self
            .tasks
            .values()
            .filter(|e| matches!(e.state, EntryState::Dead))
            .filter(|e| topic.is_none_or(|t| e.task.topic == t))
            .map(|e| e.task.guid.clone())
            .collect();
        guids.sort();
        guids
    }

    /// Puts a dead-lettered task back in its queue with a fresh retry budget.
    pub fn retry_dead(&mut self, guid: &str) -> bool {
        let Some((key, entry)) = self.tasks.get_key_value(guid) else {
            return false;
        };
        if !matches!(entry.state, EntryState::Dead) {
            return false;
        }
        let key = key.clone();
        let entry = self.tasks.remove(&key).expect("entry exists");
        if let Some(queue) = self.topics.get_mut(&entry.task.topic) {
            queue.n_dead -= 1;
        }
        let mut task = entry.task;
        task.attempt = 0;
        self.insert_ready(task, entry.packed, entry.last_error, entry.created_at_ms);
        true
    }

    /// Drops a dead-lettered task for good.
    pub fn purge_dead(&mut self, guid: &str) -> bool {
        let is_dead = matches!(
            self.tasks.get(guid).map(|e| &e.state),
            Some(EntryState::Dead)
        );
        if !is_dead {
            return false;
        }
        let entry = self.tasks.remove(guid).expect("entry exists");
        if let Some(queue) = self.topics.get_mut(&entry.task.topic) {
            queue.n_dead -= 1;
        }
        self.record(|| StoreOp::Delete {
            guid: guid.to_owned(),
        });
        true
    }

    /// Removes every live task whose root guid is `root` (a deleted total task's
    /// instances and their descendants). Returns the removed guids and, per worker,
    /// the guids it was holding.
    pub fn remove_lineage(
        &mut self,
        is_of_lineage: impl Fn(&str) -> bool,
    ) -> (Vec<String>, HashMap<Bytes, Vec<String>>) {
        let keys: Vec<Arc<str>> = self
            .tasks
            .keys()
            .filter(|g| is_of_lineage(g))
            .cloned()
            .collect();
        let mut held: HashMap<Bytes, Vec<String>> = HashMap::new();
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            let was_ready = matches!(self.tasks[&key].state, EntryState::Ready);
            if let Some(Holder::Worker(id)) = self.end_lease(&key) {
                held.entry(id).or_default().push(key.to_string());
            }
            let entry = self.tasks.remove(&key).expect("entry exists");
            let queue = self.topics.get_mut(&entry.task.topic).expect("topic");
            if was_ready {
                queue.n_ready -= 1;
            } else if matches!(entry.state, EntryState::Dead) {
                queue.n_dead -= 1;
            }
            self.finish(&entry.task, "deleted", Some("total task deleted".into()));
            removed.push(key.to_string());
        }
        (removed, held)
    }

    /// Number of live (not dead) tasks whose guid satisfies `f`.
    pub fn count_live(&self, f: impl Fn(&str) -> bool) -> usize {
        self.tasks
            .iter()
            .filter(|(g, e)| !matches!(e.state, EntryState::Dead) && f(g))
            .count()
    }

    /// All leased guids held by clients or workers (for shutdown accounting).
    pub fn n_leased(&self) -> usize {
        self.topics.values().map(|q| q.n_leased).sum()
    }
}
