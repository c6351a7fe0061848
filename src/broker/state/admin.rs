//! The state's answers to people and admin verbs: counters, one task's status,
//! listings, dead letters, and removing a deleted total task's lineage. These walk
//! the queues; they are not on the hot path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::queue::{Holder, Slot, TopicId};
use super::{State, StoredState};
use crate::protocol::client::{TaskInfo, TaskLookup, TopicStats};
use crate::store::StoreOp;

/// Bodies up to this size come whole in `task_status`; larger ones only by size.
const BODY_PREVIEW_BYTES: usize = 64 * 1024;

impl State {
    /// New tasks waiting for their commit.
    fn all_pending(&self) -> impl Iterator<Item = &super::Pending> {
        self.pending
            .iter()
            .chain(self.sealed.iter().flat_map(|(_, tasks)| tasks.iter()))
    }

    /// Per-topic counters.
    pub fn topic_stats(&self) -> BTreeMap<String, TopicStats> {
        let mut pending = vec![0usize; self.topics.len()];
        for p in self.all_pending() {
            pending[p.topic as usize] += 1;
        }
        self.topics
            .iter()
            .zip(pending)
            .map(|(q, pending)| {
                let stats = TopicStats {
                    pending,
                    ready: q.n_ready,
                    delayed: q.n_delayed,
                    leased: q.n_leased,
                    done: q.n_done,
                    failed: q.n_failed,
                    dead: q.n_dead,
                };
                (q.name.to_string(), stats)
            })
            .collect()
    }

    /// Every live task (with its state), in no particular order.
    fn each_task(&self, now: Instant) -> impl Iterator<Item = (&Slot, TaskInfo)> + '_ {
        let ready = self.topics.iter().enumerate().flat_map(move |(id, q)| {
            q.ready
                .iter()
                .filter(|s| !self.tombstones.contains(&s.guid))
                .map(move |s| (s, self.info(id as TopicId, s, "ready", None, None)))
        });
        let pending = self
            .all_pending()
            .map(|p| (&p.slot, self.info(p.topic, &p.slot, "pending", None, None)));
        let delayed = self.delayed.iter().map(move |((at, _), (topic, slot))| {
            let left = at.saturating_duration_since(now).as_millis() as u64;
            (slot, self.info(*topic, slot, "delayed", None, Some(left)))
        });
        let leased = self.leased.values().map(move |l| {
            let holder = match &l.holder {
                Holder::Worker(id) => super::peer_name(id),
                Holder::Client => "client".to_owned(),
            };
            let left = l.deadline.saturating_duration_since(now).as_millis() as u64;
            (
                &l.slot,
                self.info(l.topic, &l.slot, "leased", Some(holder), Some(left)),
            )
        });
        let dead = self
            .dead
            .values()
            .map(|(topic, slot)| (slot, self.info(*topic, slot, "dead", None, None)));
        ready
            .chain(pending)
            .chain(delayed)
            .chain(leased)
            .chain(dead)
    }

    fn info(
        &self,
        topic: TopicId,
        slot: &Slot,
        state: &'static str,
        holder: Option<String>,
        expires_in_ms: Option<u64>,
    ) -> TaskInfo {
        let queue = &self.topics[topic as usize];
        TaskInfo {
            guid: slot.guid.to_string(),
            topic: queue.name.to_string(),
            state: state.to_owned(),
            attempt: slot.attempt,
            max_retry: slot.max_retry().unwrap_or(queue.settings.max_retry),
            holder,
            expires_in_ms,
            last_error: slot.last_error().map(str::to_owned),
            created_at_ms: slot.created_at_ms,
            body_bytes: None,
            body: None,
        }
    }

    /// The status of one task, live or in the recent history.
    pub fn task_status(&self, guid: &str, now: Instant) -> Option<TaskLookup> {
        if let Some((slot, mut info)) = self.each_task(now).find(|(s, _)| &*s.guid == guid) {
            info.body_bytes = Some(slot.body.len() as u64);
            if slot.body.len() <= BODY_PREVIEW_BYTES {
                info.body = Some(slot.body.to_value());
            }
            return Some(TaskLookup::Live(info));
        }
        self.topics
            .iter()
            .flat_map(|q| q.history.iter().rev())
            .find(|h| h.guid == guid)
            .map(|h| TaskLookup::Finished(h.clone()))
    }

    /// Live tasks matching a filter (topic, state), oldest first, at most `limit`.
    pub fn list(
        &self,
        topic: Option<&str>,
        state: Option<&str>,
        limit: usize,
        now: Instant,
    ) -> Vec<TaskInfo> {
        let mut out: Vec<TaskInfo> = self
            .each_task(now)
            .map(|(_, info)| info)
            .filter(|t| topic.is_none_or(|name| t.topic == name))
            .filter(|t| state.is_none_or(|s| t.state == s))
            .collect();
        out.sort_by(|a, b| (a.created_at_ms, &a.guid).cmp(&(b.created_at_ms, &b.guid)));
        out.truncate(limit);
        out
    }

    /// The guids of dead-lettered tasks, optionally of one topic, sorted.
    pub fn dead_guids(&self, topic: Option<&str>) -> Vec<String> {
        let mut guids: Vec<String> = self
            .dead
            .iter()
            .filter(|(_, (t, _))| topic.is_none_or(|name| &*self.topics[*t as usize].name == name))
            .map(|(guid, _)| guid.to_string())
            .collect();
        guids.sort();
        guids
    }

    /// Puts a dead-lettered task back in its queue with a fresh retry budget
    /// (`attempt` starts again at 0; its last error is kept).
    pub fn retry_dead(&mut self, guid: &str) -> bool {
        let Some((topic, mut slot)) = self.dead.remove(guid) else {
            return false;
        };
        self.queue(topic).n_dead -= 1;
        slot.attempt = 0;
        let (guid, last_error) = (slot.guid.to_string(), slot.last_error().map(str::to_owned));
        self.record(|| StoreOp::SetState {
            guid,
            state: StoredState::Ready,
            attempt: 0,
            last_error,
        });
        self.push_ready(topic, slot);
        true
    }

    /// Drops a dead-lettered task for good.
    pub fn purge_dead(&mut self, guid: &str) -> bool {
        let Some((topic, slot)) = self.dead.remove(guid) else {
            return false;
        };
        self.queue(topic).n_dead -= 1;
        self.explicit.remove(&slot.guid);
        self.record(|| StoreOp::Delete {
            guid: slot.guid.to_string(),
        });
        true
    }

    /// Removes every live task whose guid `is_of_lineage` (a deleted total task's
    /// instances and their descendants). Returns the removed guids and, per worker,
    /// the guids it was holding.
    pub fn remove_lineage(
        &mut self,
        is_of_lineage: impl Fn(&str) -> bool,
    ) -> (Vec<String>, HashMap<Bytes, Vec<String>>) {
        let mut removed: Vec<(TopicId, Slot)> = Vec::new();
        let mut held: HashMap<Bytes, Vec<String>> = HashMap::new();
        for (id, queue) in self.topics.iter_mut().enumerate() {
            let tombstones = &self.tombstones;
            queue.ready.retain(|slot| {
                let gone = is_of_lineage(&slot.guid);
                if gone && !tombstones.contains(&slot.guid) {
                    removed.push((id as TopicId, slot.clone()));
                }
                !gone
            });
        }
        for (topic, _) in &removed {
            self.topics[*topic as usize].n_ready -= 1;
        }
        let leased: Vec<Arc<str>> = self
            .leased
            .keys()
            .filter(|g| is_of_lineage(g))
            .cloned()
            .collect();
        for guid in leased {
            let lease = self.leased.remove(&guid).expect("key listed above");
            self.queue(lease.topic).n_leased -= 1;
            if let Holder::Worker(id) = &lease.holder {
                held.entry(id.clone()).or_default().push(guid.to_string());
            }
            self.release_holder(&lease.holder, &guid);
            removed.push((lease.topic, lease.slot));
        }
        let delayed: Vec<(Instant, u64)> = self
            .delayed
            .iter()
            .filter(|(_, (_, slot))| is_of_lineage(&slot.guid))
            .map(|(key, _)| *key)
            .collect();
        for key in delayed {
            let (topic, slot) = self.delayed.remove(&key).expect("key listed above");
            self.queue(topic).n_delayed -= 1;
            removed.push((topic, slot));
        }
        let dead: Vec<Arc<str>> = self
            .dead
            .keys()
            .filter(|g| is_of_lineage(g))
            .cloned()
            .collect();
        for guid in dead {
            let (topic, slot) = self.dead.remove(&guid).expect("key listed above");
            self.queue(topic).n_dead -= 1;
            removed.push((topic, slot));
        }
        for pending in std::mem::take(&mut self.pending) {
            if is_of_lineage(&pending.slot.guid) {
                removed.push((pending.topic, pending.slot));
            } else {
                self.pending.push(pending);
            }
        }
        for (_, tasks) in self.sealed.iter_mut() {
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(tasks)
                .into_iter()
                .partition(|p| is_of_lineage(&p.slot.guid));
            *tasks = kept;
            removed.extend(gone.into_iter().map(|p| (p.topic, p.slot)));
        }
        let mut guids = Vec::with_capacity(removed.len());
        for (topic, slot) in removed {
            self.requeued.remove(&slot.guid);
            self.finish(topic, &slot, "deleted", Some("total task deleted".into()));
            guids.push(slot.guid.to_string());
        }
        (guids, held)
    }

    /// Number of live (not dead) tasks whose guid satisfies `f`.
    pub fn count_live(&self, f: impl Fn(&str) -> bool) -> usize {
        let ready = self
            .topics
            .iter()
            .flat_map(|q| q.ready.iter())
            .filter(|s| !self.tombstones.contains(&s.guid) && f(&s.guid))
            .count();
        let pending = self.all_pending().filter(|p| f(&p.slot.guid)).count();
        let leased = self.leased.keys().filter(|g| f(g)).count();
        let delayed = self.delayed.values().filter(|(_, s)| f(&s.guid)).count();
        ready + pending + leased + delayed
    }
}
