//! The worker sections of bus.toml: `[worker]` (how a worker process reaches the
//! broker) and `[[workers]]` (the worker groups a process starts). A leaf: it imports
//! nothing of the crate.

use serde::Deserialize;

/// `[worker]`: how a worker process reaches the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// The broker's worker endpoint; empty means `[broker] worker_endpoint`.
    pub broker_endpoint: String,
    /// The broker's events endpoint; empty means `[broker] events_endpoint`.
    pub events_endpoint: String,
    /// First reconnect delay, seconds; doubles up to `reconnect_max_secs`.
    pub reconnect_min_secs: f64,
    /// Largest reconnect delay, seconds.
    pub reconnect_max_secs: f64,
    /// How long a stopping worker waits for its tasks in flight, seconds.
    pub shutdown_grace_secs: f64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            broker_endpoint: String::new(),
            events_endpoint: String::new(),
            reconnect_min_secs: 1.0,
            reconnect_max_secs: 32.0,
            shutdown_grace_secs: 10.0,
        }
    }
}

impl WorkerConfig {
    /// Checks the reconnect bounds.
    pub fn validate(&self) -> Result<(), String> {
        let min_ok = self.reconnect_min_secs.is_finite() && self.reconnect_min_secs > 0.0;
        if !min_ok || self.reconnect_max_secs < self.reconnect_min_secs {
            return Err("worker.reconnect_min_secs/reconnect_max_secs: need 0 < min <= max".into());
        }
        Ok(())
    }
}

/// `[[workers]]`: one group of identical workers that `taskbus run` starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSpec {
    /// The stage's name (`crate::stages::STAGES`).
    pub stage: String,
    /// The topics the workers take tasks from.
    pub topics: Vec<String>,
    /// Tasks one worker holds at once.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Workers of this group.
    #[serde(default = "default_count")]
    pub count: u32,
    /// Where a finished task's results go when its body names no callback topic.
    #[serde(default)]
    pub next_topic: Option<String>,
}

impl WorkerSpec {
    /// Checks the entry; `index` is its position in `[[workers]]`.
    pub fn validate(&self, index: usize) -> Result<(), String> {
        if self.topics.is_empty() {
            return Err(format!(
                "workers[{index}].topics: must name at least one topic"
            ));
        }
        if self.capacity == 0 {
            return Err(format!("workers[{index}].capacity: must be >= 1"));
        }
        Ok(())
    }
}

fn default_capacity() -> u32 {
    16
}

fn default_count() -> u32 {
    1
}
