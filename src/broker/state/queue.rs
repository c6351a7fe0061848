//! The parts of the broker's state: a task at rest ([`Slot`]), a leased task, a topic's
//! queue and its settings, and the retry backoff.
//!
//! Sized for queues of millions: a waiting task is one [`Slot`] (56 bytes) in its
//! topic's ready queue plus its guid and body on the heap, and nothing else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::body::Body;
use crate::store::HistoryRecord;

/// Index of a topic in the state's topic table.
pub type TopicId = u32;

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    Worker(Bytes),
    /// A client that took the task with `get_task`; only its ack or the timeout ends it.
    Client,
}

/// What a task rarely carries, kept out of line so a plain task costs nothing for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    pub timeout: Option<f64>,
    pub max_retry: Option<u32>,
    pub last_error: Option<String>,
}

/// A task at rest: waiting, delayed, pending its commit, or dead-lettered.
#[derive(Debug, Clone)]
pub struct Slot {
    pub guid: Arc<str>,
    pub body: Body,
    /// Deliveries so far: 1 after the first lease.
    pub attempt: u32,
    /// Whether the body was read back from the store and not yet checked.
    pub unchecked: bool,
    pub created_at_ms: i64,
    pub extra: Option<Box<Extra>>,
}

impl Slot {
    pub fn timeout(&self) -> Option<f64> {
        self.extra.as_ref().and_then(|e| e.timeout)
    }
    pub fn max_retry(&self) -> Option<u32> {
        self.extra.as_ref().and_then(|e| e.max_retry)
    }
    pub fn last_error(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.last_error.as_deref())
    }
    pub fn set_last_error(&mut self, error: String) {
        self.extra.get_or_insert_with(Default::default).last_error = Some(error);
    }
}

/// A task out with a holder.
#[derive(Debug)]
pub struct Leased {
    pub topic: TopicId,
    pub slot: Slot,
    pub lease_id: u64,
    pub holder: Holder,
    pub deadline: Instant,
}

/// How long a retryable failure waits before its task is ready again: `base` doubled
/// per attempt up to `max`; with `jitter`, a random point in the upper half of that
/// ("equal jitter"), so a burst of failures does not come back as a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub jitter: bool,
}

impl Backoff {
    /// The wait before the attempt after `attempt` (1 = the first delivery failed).
    /// `seed` picks the jitter (a hash of the guid, so it is reproducible).
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        let doublings = attempt.saturating_sub(1).min(30);
        let full = self
            .base
            .saturating_mul(1u32 << doublings)
            .min(self.max.max(self.base));
        if !self.jitter {
            return full;
        }
        let fraction = (seed % 1_000_000) as f64 / 1_000_000.0;
        full.mul_f64(0.5 + fraction / 2.0)
    }
}

/// The settings that apply to one topic's tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicSettings {
    pub lease_timeout: Duration,
    pub max_retry: u32,
    pub backoff: Backoff,
}

/// One topic: its ready queue and counters.
#[derive(Debug)]
pub struct TopicQueue {
    pub name: Arc<str>,
    pub settings: TopicSettings,
    /// Ready tasks in arrival order. Slots whose guid is in the state's tombstones
    /// (finished by a late DONE while waiting) are skipped when popped.
    pub ready: VecDeque<Slot>,
    /// Ready tasks, not counting tombstoned slots.
    pub n_ready: usize,
    pub n_leased: usize,
    pub n_delayed: usize,
    pub n_dead: usize,
    pub n_done: u64,
    pub n_failed: u64,
    pub history: VecDeque<HistoryRecord>,
    /// Index into the topic's workers where the next dispatch round starts.
    pub next_worker: usize,
}

impl TopicQueue {
    pub fn new(name: Arc<str>, settings: TopicSettings) -> TopicQueue {
        TopicQueue {
            name,
            settings,
            ready: VecDeque::new(),
            n_ready: 0,
            n_leased: 0,
            n_delayed: 0,
            n_dead: 0,
            n_done: 0,
            n_failed: 0,
            history: VecDeque::new(),
            next_worker: 0,
        }
    }

    /// Keeps the newest `limit` history lines.
    pub fn remember(&mut self, record: HistoryRecord, limit: usize) {
        self.history.push_back(record);
        while self.history.len() > limit {
            self.history.pop_front();
        }
    }
}

/// A stable 64-bit hash of a guid (jitter seeds).
pub fn guid_seed(guid: &str, attempt: u32) -> u64 {
    // FNV-1a: stable across runs and builds, unlike the std hasher's random keys.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in guid.bytes().chain(attempt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_stays_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 56,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_max_and_jitters_in_the_upper_half() {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
            jitter: false,
        };
        let delays: Vec<u64> = (1..=5).map(|a| backoff.delay(a, 0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        let jittered = Backoff {
            jitter: true,
            ..backoff
        };
        for seed in [0, 1, 499_999, 999_999, u64::MAX] {
            let d = jittered.delay(3, seed);
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
                "{d:?}"
            );
        }
        let off = Backoff {
            base: Duration::ZERO,
            ..backoff
        };
        assert_eq!(off.delay(7, 3), Duration::ZERO);
    }
}
