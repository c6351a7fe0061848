//! Leases and the workers that hold them: handing out, failing and expiring tasks,
//! retry backoff, dispatch against credit, and workers coming and going.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::queue::{self, Holder, Leased, Slot, TopicId};
use super::{now_ms, peer_name, State, StoredState};
use crate::broker::workers::WorkerEntry;
use crate::protocol::worker::Delivery;
use crate::protocol::{code, ProtocolError};
use crate::store::StoreOp;

impl State {
    /// Leases the next ready task of `topic` to `holder`.
    pub fn lease_next(&mut self, topic: &str, holder: Holder, now: Instant) -> Option<Delivery> {
        let topic_id = *self.topic_ids.get(topic)?;
        loop {
            let mut slot = self.queue(topic_id).ready.pop_front()?;
            if self.tombstones.remove(&slot.guid) {
                continue;
            }
            if std::mem::take(&mut slot.unchecked) {
                if let Err(error) = slot.body.check() {
                    self.queue(topic_id).n_ready -= 1;
                    self.bury(topic_id, slot, error);
                    continue;
                }
            }
            self.requeued.remove(&slot.guid);
            slot.attempt += 1;
            let settings = self.topics[topic_id as usize].settings;
            let lease_timeout = slot
                .timeout()
                .map_or(settings.lease_timeout, Duration::from_secs_f64);
            let deadline = now + lease_timeout;
            self.next_lease_id += 1;
            let lease_id = self.next_lease_id;
            let queue = self.queue(topic_id);
            queue.n_ready -= 1;
            queue.n_leased += 1;
            let delivery = Delivery {
                guid: slot.guid.clone(),
                topic: queue.name.clone(),
                body: slot.body.clone(),
                attempt: slot.attempt,
                timeout: lease_timeout.as_secs_f64(),
                max_retry: slot.max_retry().unwrap_or(settings.max_retry),
            };
            self.lease_deadlines
                .push(Reverse((deadline, lease_id, slot.guid.clone())));
            if let Holder::Worker(id) = &holder {
                if let Some(worker) = self.workers.get_mut(id) {
                    worker.in_flight.insert(slot.guid.clone(), slot.attempt);
                }
            }
            let (guid, attempt) = (slot.guid.clone(), slot.attempt);
            self.record(|| StoreOp::SetState {
                guid: guid.to_string(),
                state: StoredState::Leased,
                attempt,
                last_error: None,
            });
            self.leased.insert(
                guid,
                Leased {
                    topic: topic_id,
                    slot,
                    lease_id,
                    holder: holder.clone(),
                    deadline,
                },
            );
            return Some(delivery);
        }
    }
    /// Dead-letters a task (an unreadable stored body, or no attempts left).
    pub(super) fn bury(&mut self, topic: TopicId, mut slot: Slot, error: String) {
        let name = self.topics[topic as usize].name.clone();
        log::error!(target: "scripts", "guid={} topic={name} attempt={} dead-lettered: {error}", slot.guid, slot.attempt);
        let (guid, attempt) = (slot.guid.clone(), slot.attempt);
        slot.set_last_error(error.clone());
        self.queue(topic).n_dead += 1;
        self.dead.insert(guid.clone(), (topic, slot));
        self.record(|| StoreOp::SetState {
            guid: guid.to_string(),
            state: StoredState::Dead,
            attempt,
            last_error: Some(error),
        });
    }
    /// The holder was told to drop `guid` (its task was deleted): the worker's slots
    /// for it are free, as no answer will come.
    pub(super) fn release_holder(&mut self, holder: &Holder, guid: &Arc<str>) {
        if let Holder::Worker(id) = holder {
            if let Some(worker) = self.workers.get_mut(id) {
                worker.in_flight.forget(guid);
            }
            self.dirty_worker_topics(id);
        }
    }
    /// A worker answered (DONE or FAIL) for `guid`: whatever became of the lease, one
    /// of the worker's slots for it (its oldest attempt) is free. Only answers (and
    /// cancels, and the worker's end) free a worker's slot: a task finished or failed
    /// some other way is still running there until the worker says so.
    pub fn answered(&mut self, id: &Bytes, guid: &str) {
        if let Some(worker) = self.workers.get_mut(id) {
            if worker.in_flight.answer(guid) {
                self.dirty_worker_topics(id);
            }
        }
    }
    pub(super) fn dirty_worker_topics(&mut self, id: &Bytes) {
        let Some(worker) = self.workers.get(id) else {
            return;
        };
        let topics: Vec<TopicId> = worker
            .topics
            .iter()
            .filter_map(|t| self.topic_ids.get(t.as_str()).copied())
            .collect();
        self.dirty.extend(topics);
    }
    /// A failed attempt: back to waiting (after its backoff) while retries remain,
    /// else dead-lettered. Returns the state the task is in now.
    pub fn fail(
        &mut self,
        guid: &str,
        error: String,
        retryable: bool,
        now: Instant,
    ) -> Result<&'static str, ProtocolError> {
        let Some(leased) = self.leased.remove(guid) else {
            let code = if self.dead.contains_key(guid) {
                code::NOT_LEASED
            } else {
                code::NOT_FOUND
            };
            return Err(ProtocolError::new(
                code,
                format!("task \"{guid}\" is not leased"),
            ));
        };
        self.queue(leased.topic).n_leased -= 1;
        Ok(self.after_failed_attempt(leased.topic, leased.slot, error, retryable, now))
    }
    pub(super) fn after_failed_attempt(
        &mut self,
        topic: TopicId,
        mut slot: Slot,
        error: String,
        retryable: bool,
        now: Instant,
    ) -> &'static str {
        let settings = self.topics[topic as usize].settings;
        let max_retry = slot.max_retry().unwrap_or(settings.max_retry);
        self.queue(topic).n_failed += 1;
        if !retryable || slot.attempt > max_retry {
            let elapsed = Duration::from_millis((now_ms() - slot.created_at_ms).max(0) as u64);
            let why = format!(
                "{error} (after {} attempt{} over {})",
                slot.attempt,
                if slot.attempt == 1 { "" } else { "s" },
                humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
            );
            self.bury(topic, slot, why);
            return "dead";
        }
        let (guid, attempt) = (slot.guid.to_string(), slot.attempt);
        slot.set_last_error(error.clone());
        self.record(|| StoreOp::SetState {
            guid: guid.clone(),
            state: StoredState::Ready,
            attempt,
            last_error: Some(error),
        });
        let delay = settings
            .backoff
            .delay(attempt, queue::guid_seed(&guid, attempt));
        if delay.is_zero() {
            self.push_ready(topic, slot);
        } else {
            self.next_delay_seq += 1;
            self.queue(topic).n_delayed += 1;
            self.delayed
                .insert((now + delay, self.next_delay_seq), (topic, slot));
        }
        "ready"
    }
    /// Puts back every lease whose deadline has passed and makes every task whose
    /// backoff is over ready. Returns how many leases expired.
    pub fn on_timer(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(Reverse((deadline, lease_id, _))) = self.lease_deadlines.peek() {
            if *deadline > now {
                break;
            }
            let lease_id = *lease_id;
            let Reverse((_, _, guid)) = self.lease_deadlines.pop().expect("peeked");
            let current = self
                .leased
                .get(&guid)
                .is_some_and(|l| l.lease_id == lease_id);
            if current {
                let leased = self.leased.remove(&guid).expect("checked above");
                self.queue(leased.topic).n_leased -= 1;
                // The worker's slot stays taken until it answers or dies.
                log::warn!("task={guid} lease expired");
                self.requeued.insert(guid);
                self.after_failed_attempt(
                    leased.topic,
                    leased.slot,
                    "lease expired".into(),
                    true,
                    now,
                );
                expired += 1;
            }
        }
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (topic, slot) = entry.remove();
            self.queue(topic).n_delayed -= 1;
            self.push_ready(topic, slot);
        }
        expired
    }
    /// The earliest lease deadline or end of a backoff, for the broker's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lease = self.lease_deadlines.peek().map(|Reverse((d, _, _))| *d);
        let delay = self.delayed.keys().next().map(|(at, _)| *at);
        match (lease, delay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    /// Registers (or re-registers) a worker. Leases of an earlier session go back.
    pub fn register_worker(&mut self, id: Bytes, mut entry: WorkerEntry, now: Instant) {
        self.remove_worker(&id, "re-registered", now);
        entry.in_flight.clear();
        for topic in &entry.topics {
            let topic = self.topic_id(topic);
            self.dirty.insert(topic);
        }
        self.workers.insert(id, entry);
    }
    /// Forgets a worker and puts its leases back. Returns how many were put back.
    pub fn remove_worker(&mut self, id: &Bytes, reason: &str, now: Instant) -> usize {
        let Some(worker) = self.workers.remove(id) else {
            return 0;
        };
        let mut returned = 0;
        for guid in worker.in_flight.guids() {
            let held = self.leased.get(guid).is_some_and(|l| {
                matches!(&l.holder, Holder::Worker(h) if h == id)
                    && worker.in_flight.holds(guid, l.slot.attempt)
            });
            if held {
                let leased = self.leased.remove(guid).expect("checked above");
                self.queue(leased.topic).n_leased -= 1;
                let why = format!("worker {} {reason}", peer_name(id));
                self.after_failed_attempt(leased.topic, leased.slot, why, true, now);
                returned += 1;
            }
        }
        returned
    }
    /// Pairs ready tasks with free credit, round-robin over each topic's workers.
    /// Returns one batch per worker.
    pub fn dispatch(&mut self, now: Instant) -> Vec<(Bytes, Vec<Delivery>)> {
        let mut batches: HashMap<Bytes, Vec<Delivery>> = HashMap::new();
        let dirty: Vec<TopicId> = self.dirty.drain().collect();
        for topic_id in dirty {
            let name = self.topics[topic_id as usize].name.clone();
            let ids: Vec<Bytes> = self.workers.for_topic(&name).to_vec();
            if ids.is_empty() {
                continue;
            }
            let mut start = self.topics[topic_id as usize].next_worker;
            loop {
                let mut gave = false;
                for offset in 0..ids.len() {
                    if self.topics[topic_id as usize].n_ready == 0 {
                        break;
                    }
                    let id = &ids[(start + offset) % ids.len()];
                    if self.workers.get(id).is_none_or(|w| w.credit() == 0) {
                        continue;
                    }
                    if let Some(task) = self.lease_next(&name, Holder::Worker(id.clone()), now) {
                        batches.entry(id.clone()).or_default().push(task);
                        gave = true;
                    }
                }
                start = (start + 1) % ids.len();
                if !gave {
                    break;
                }
            }
            self.queue(topic_id).next_worker = start;
        }
        batches.into_iter().collect()
    }
}
