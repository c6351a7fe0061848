//! Politeness: a global limit on requests in flight, a per-host limit, and a minimum
//! delay between request starts to one host. Hosts live in a bounded map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The fetcher's limits, shared by every task it runs.
pub(crate) struct Limits {
    global: Arc<Semaphore>,
    hosts: Mutex<HashMap<String, Arc<HostSlot>>>,
    per_host: usize,
    delay: Duration,
    max_hosts: usize,
}

struct HostSlot {
    permits: Arc<Semaphore>,
    /// When the next request to this host may start.
    next_start: Mutex<Instant>,
}

/// Held while one request is in flight; dropping it frees the host and global slots.
pub(crate) struct Permit {
    _global: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
    _slot: Arc<HostSlot>,
}

impl Limits {
    /// Limits of `global` requests in flight, `per_host` per host, `delay` between
    /// starts to one host, remembering at most `max_hosts` idle hosts.
    pub(crate) fn new(global: usize, per_host: usize, delay: Duration, max_hosts: usize) -> Self {
        Limits {
            global: Arc::new(Semaphore::new(global.max(1))),
            hosts: Mutex::new(HashMap::new()),
            per_host: per_host.max(1),
            delay,
            max_hosts: max_hosts.max(1),
        }
    }

    /// Waits for a host slot, then a global slot, then the host's delay. The host slot
    /// comes first so that a request waiting on a busy host holds no global slot.
    /// `floor` raises the delay for this host (a robots.txt Crawl-delay).
    pub(crate) async fn acquire(&self, host: &str, floor: Option<Duration>) -> Permit {
        let delay = floor.map_or(self.delay, |floor| floor.max(self.delay));
        let slot = self.slot(host);
        let host_permit = Arc::clone(&slot.permits)
            .acquire_owned()
            .await
            .expect("host semaphore is never closed");
        let global_permit = Arc::clone(&self.global)
            .acquire_owned()
            .await
            .expect("global semaphore is never closed");
        if !delay.is_zero() {
            let start = {
                let mut next = slot.next_start.lock().expect("host slot lock");
                let start = (*next).max(Instant::now());
                *next = start + delay;
                start
            };
            tokio::time::sleep_until(start).await;
        }
        Permit {
            _global: global_permit,
            _host: host_permit,
            _slot: slot,
        }
    }

    /// Hosts currently remembered.
    pub(crate) fn hosts_len(&self) -> usize {
        self.hosts.lock().expect("hosts lock").len()
    }

    /// The host's slot. When the map is full, idle hosts (no request holds or waits
    /// on their slot) are forgotten first; hosts in use are never dropped, so the map
    /// holds at most `max_hosts` plus the requests in flight or waiting.
    fn slot(&self, host: &str) -> Arc<HostSlot> {
        let mut hosts = self.hosts.lock().expect("hosts lock");
        if let Some(slot) = hosts.get(host) {
            return Arc::clone(slot);
        }
        if hosts.len() >= self.max_hosts {
            hosts.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        let slot = Arc::new(HostSlot {
            permits: Arc::new(Semaphore::new(self.per_host)),
            next_start: Mutex::new(Instant::now()),
        });
        hosts.insert(host.to_string(), Arc::clone(&slot));
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_hosts_are_forgotten_when_full() {
        let limits = Limits::new(4, 2, Duration::ZERO, 3);
        for i in 0..10 {
            drop(limits.acquire(&format!("h{i}"), None).await);
        }
        assert!(limits.hosts_len() <= 3, "{}", limits.hosts_len());
        let held = limits.acquire("busy", None).await;
        for i in 10..20 {
            drop(limits.acquire(&format!("h{i}"), None).await);
        }
        assert!(limits.hosts.lock().unwrap().contains_key("busy"));
        drop(held);
    }

    #[tokio::test]
    async fn delay_spaces_starts_to_one_host() {
        let limits = Limits::new(8, 8, Duration::from_millis(60), 10);
        let begin = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..3 {
            let _permit = limits.acquire("a", None).await;
            starts.push(begin.elapsed());
        }
        let other_host = Instant::now();
        drop(limits.acquire("b", None).await);
        assert!(
            other_host.elapsed() < Duration::from_millis(60),
            "hosts are paced apart"
        );
        assert!(starts[0] < Duration::from_millis(60), "{starts:?}");
        assert!(
            starts[1] >= Duration::from_millis(60) && starts[2] >= Duration::from_millis(120),
            "{starts:?}"
        );
    }
}
