//! The broker's registry of DEALER workers: stage, topics, credit, liveness.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

pub use crate::protocol::client::WorkerStats;

/// One registered worker.
#[derive(Debug)]
pub struct WorkerEntry {
    pub name: String,
    pub stage: String,
    pub topics: Vec<String>,
    pub capacity: u32,
    pub next_topic: Option<String>,
    pub in_flight: InFlight,
    pub last_seen: Instant,
}

impl WorkerEntry {
    /// How many more tasks the worker may be sent.
    pub fn credit(&self) -> usize {
        (self.capacity as usize).saturating_sub(self.in_flight.len())
    }
}

/// The tasks a worker runs, by guid and attempt: a task whose lease expired and that
/// came back to the same worker is held twice (the late attempt and the new one), and
/// each counts against the worker's capacity until the worker answers it.
#[derive(Debug, Default)]
pub struct InFlight {
    by_guid: HashMap<Arc<str>, Vec<u32>>,
    len: usize,
}

impl InFlight {
    /// How many attempts the worker runs.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The worker was sent `attempt` of `guid`.
    pub fn insert(&mut self, guid: Arc<str>, attempt: u32) {
        self.by_guid.entry(guid).or_default().push(attempt);
        self.len += 1;
    }

    /// The worker answered for `guid`: frees the slot of its oldest attempt, since a
    /// DONE or FAIL does not say which attempt it ends. Returns whether one was held.
    pub fn answer(&mut self, guid: &str) -> bool {
        let Some(attempts) = self.by_guid.get_mut(guid) else {
            return false;
        };
        if let Some(oldest) = (0..attempts.len()).min_by_key(|&i| attempts[i]) {
            attempts.swap_remove(oldest);
            self.len -= 1;
        }
        if attempts.is_empty() {
            self.by_guid.remove(guid);
        }
        true
    }

    /// Forgets every attempt of `guid` (the worker was told to drop it). Returns how
    /// many were held.
    pub fn forget(&mut self, guid: &str) -> usize {
        let n = self
            .by_guid
            .remove(guid)
            .map_or(0, |attempts| attempts.len());
        self.len -= n;
        n
    }

    /// Whether the worker runs `attempt` of `guid`.
    pub fn holds(&self, guid: &str, attempt: u32) -> bool {
        self.by_guid
            .get(guid)
            .is_some_and(|attempts| attempts.contains(&attempt))
    }

    pub fn clear(&mut self) {
        self.by_guid.clear();
        self.len = 0;
    }

    /// The guids the worker runs (each once, however many attempts).
    pub fn guids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_guid.keys()
    }
}

/// All registered workers, keyed by their ZeroMQ routing identity.
#[derive(Debug, Default)]
pub struct Workers {
    entries: HashMap<Bytes, WorkerEntry>,
    /// Workers per topic, in registration order; dispatch rotates through them.
    by_topic: HashMap<String, Vec<Bytes>>,
}

impl Workers {
    pub fn get(&self, id: &Bytes) -> Option<&WorkerEntry> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: &Bytes) -> Option<&mut WorkerEntry> {
        self.entries.get_mut(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a worker. The caller has removed any earlier session of the same id.
    pub fn insert(&mut self, id: Bytes, entry: WorkerEntry) {
        for topic in &entry.topics {
            self.by_topic
                .entry(topic.clone())
                .or_default()
                .push(id.clone());
        }
        self.entries.insert(id, entry);
    }

    /// Removes a worker and returns it (with the guids it was holding).
    pub fn remove(&mut self, id: &Bytes) -> Option<WorkerEntry> {
        let entry = self.entries.remove(id)?;
        for topic in &entry.topics {
            if let Some(ids) = self.by_topic.get_mut(topic) {
                ids.retain(|other| other != id);
                if ids.is_empty() {
                    self.by_topic.remove(topic);
                }
            }
        }
        Some(entry)
    }

    /// Workers subscribed to `topic`.
    pub fn for_topic(&self, topic: &str) -> &[Bytes] {
        self.by_topic.get(topic).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Topics that at least one worker takes.
    pub fn topics(&self) -> impl Iterator<Item = &String> {
        self.by_topic.keys()
    }

    /// Ids of workers silent since before `cutoff`.
    pub fn silent_since(&self, cutoff: Instant) -> Vec<Bytes> {
        self.entries
            .iter()
            .filter(|(_, w)| w.last_seen < cutoff)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn ids(&self) -> Vec<Bytes> {
        self.entries.keys().cloned().collect()
    }

    /// The workers as `stats` reports them, sorted by id.
    pub fn stats(&self, now: Instant) -> Vec<WorkerStats> {
        let mut out: Vec<WorkerStats> = self
            .entries
            .values()
            .map(|w| WorkerStats {
                id: w.name.clone(),
                stage: w.stage.clone(),
                topics: w.topics.clone(),
                capacity: w.capacity,
                in_flight: w.in_flight.len(),
                last_heartbeat_ms: now.saturating_duration_since(w.last_seen).as_millis() as u64,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// A routing identity as text for logs and stats.
pub fn peer_name(id: &[u8]) -> String {
    match std::str::from_utf8(id) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_owned(),
        _ => id.iter().map(|b| format!("{b:02x}")).collect(),
    }
}
