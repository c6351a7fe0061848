//! A bounded, expiring filter of seen URLs: two generations of 64-bit fingerprints.
//! A generation is retired when it holds half the capacity or is half the TTL old, so
//! the filter never holds more than `capacity` fingerprints and forgets a URL at most
//! `ttl` after it was first seen.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use super::config::DedupConfig;

/// Seen-URL filter; see the module docs for its bounds.
#[derive(Debug)]
pub struct DedupFilter {
    generation_capacity: usize,
    generation_age: Duration,
    current: HashSet<u64>,
    previous: HashSet<u64>,
    current_started: Instant,
    previous_started: Instant,
}

impl DedupFilter {
    /// A filter of at most `config.capacity` fingerprints, each kept at most
    /// `config.ttl_secs` seconds.
    pub fn new(config: &DedupConfig) -> Self {
        DedupFilter {
            generation_capacity: (config.capacity / 2).max(1),
            generation_age: Duration::from_secs(config.ttl_secs) / 2,
            current: HashSet::new(),
            previous: HashSet::new(),
            current_started: Instant::now(),
            previous_started: Instant::now(),
        }
    }

    /// Records `url`; true when it was not seen within the filter's memory.
    pub fn insert(&mut self, url: &str) -> bool {
        self.insert_at(url, Instant::now())
    }

    /// [`DedupFilter::insert`] at a given time (for tests of expiry).
    pub fn insert_at(&mut self, url: &str, now: Instant) -> bool {
        self.expire(now);
        let fingerprint = fingerprint(url);
        if self.current.contains(&fingerprint) || self.previous.contains(&fingerprint) {
            return false;
        }
        if self.current.len() >= self.generation_capacity {
            self.rotate(now);
        }
        self.current.insert(fingerprint);
        true
    }

    /// Retires the current generation when it is half the TTL old, and drops the
    /// previous one once a full TTL has passed since it started, so no fingerprint
    /// outlives the TTL even when nothing is inserted for a while.
    fn expire(&mut self, now: Instant) {
        if now.saturating_duration_since(self.current_started) >= self.generation_age {
            self.rotate(now);
        }
        if now.saturating_duration_since(self.previous_started) >= self.generation_age * 2 {
            self.previous.clear();
        }
    }

    fn rotate(&mut self, now: Instant) {
        self.previous = std::mem::take(&mut self.current);
        self.previous_started = self.current_started;
        self.current_started = now;
    }

    /// Fingerprints held now.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most fingerprints the filter can hold.
    pub fn capacity(&self) -> usize {
        self.generation_capacity * 2
    }
}

/// 64-bit fingerprint of a URL without its fragment. `DefaultHasher::new()` has fixed
/// keys, so fingerprints are stable within and across runs of one build.
pub fn fingerprint(url: &str) -> u64 {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    let mut hasher = DefaultHasher::new();
    without_fragment.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_expiring() {
        let mut filter = DedupFilter::new(&DedupConfig {
            capacity: 100,
            ttl_secs: 10,
        });
        let start = Instant::now();
        assert!(filter.insert_at("http://a/1#x", start));
        assert!(
            !filter.insert_at("http://a/1", start),
            "fragment is not part of the url"
        );
        for i in 0..10_000 {
            filter.insert_at(&format!("http://a/n{i}"), start);
            assert!(filter.len() <= filter.capacity());
        }
        let mut filter = DedupFilter::new(&DedupConfig {
            capacity: 100,
            ttl_secs: 10,
        });
        assert!(filter.insert_at("http://a/old", start));
        assert!(!filter.insert_at("http://a/old", start + Duration::from_secs(4)));
        filter.insert_at("http://a/tick", start + Duration::from_secs(6));
        assert!(!filter.insert_at("http://a/old", start + Duration::from_secs(7)));
        filter.insert_at("http://a/tick2", start + Duration::from_secs(12));
        assert!(
            filter.insert_at("http://a/old", start + Duration::from_secs(12)),
            "forgotten after the ttl"
        );
        let mut idle = DedupFilter::new(&DedupConfig {
            capacity: 100,
            ttl_secs: 10,
        });
        let start = Instant::now();
        assert!(idle.insert_at("http://a/x", start));
        assert!(
            idle.insert_at("http://a/x", start + Duration::from_secs(11)),
            "expired while idle"
        );
    }
}
