//! `[broker]` and `[topics.NAME]` of bus.toml: the broker's sockets, heartbeats and
//! task defaults. A leaf. It lives here, not in `broker/`, while the broker still
//! takes the whole `Config`.

use std::time::Duration;

use serde::Deserialize;

/// `[broker]`: sockets, heartbeats and task defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub client_endpoint: String,
    pub worker_endpoint: String,
    pub events_endpoint: String,
    pub heartbeat_interval_secs: f64,
    pub heartbeat_liveness: u32,
    pub lease_timeout_secs: f64,
    pub max_retry: u32,
    pub max_message_bytes: usize,
    pub max_get_count: usize,
    pub send_timeout_secs: f64,
    pub strict_topics: bool,
    /// Wait before a retryable failure is ready again: doubled per attempt.
    pub retry_backoff_secs: f64,
    pub retry_backoff_max_secs: f64,
    pub retry_jitter: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            client_endpoint: "tcp://127.0.0.1:5555".into(),
            worker_endpoint: "tcp://127.0.0.1:5556".into(),
            events_endpoint: "tcp://127.0.0.1:5557".into(),
            heartbeat_interval_secs: 1.0,
            heartbeat_liveness: 3,
            lease_timeout_secs: 30.0,
            max_retry: 3,
            max_message_bytes: 16 * 1024 * 1024,
            max_get_count: 10_000,
            send_timeout_secs: 1.0,
            strict_topics: false,
            retry_backoff_secs: 1.0,
            retry_backoff_max_secs: 60.0,
            retry_jitter: true,
        }
    }
}

impl BrokerConfig {
    /// Binds every endpoint to a free loopback port (benches and tests; the real
    /// endpoints come from `Broker::endpoints`).
    pub fn use_ephemeral_loopback(&mut self) {
        for endpoint in [
            &mut self.client_endpoint,
            &mut self.worker_endpoint,
            &mut self.events_endpoint,
        ] {
            *endpoint = "tcp://127.0.0.1:0".into();
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_interval_secs)
    }
    /// How long a peer may stay silent before it is declared dead.
    pub fn peer_expiry(&self) -> Duration {
        self.heartbeat_interval() * self.heartbeat_liveness
    }
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.send_timeout_secs)
    }
}

/// `[topics.NAME]`: overrides of the broker's task defaults for one topic.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    pub lease_timeout_secs: Option<f64>,
    pub max_retry: Option<u32>,
    pub retry_backoff_secs: Option<f64>,
    pub retry_backoff_max_secs: Option<f64>,
    pub retry_jitter: Option<bool>,
}

impl BrokerConfig {
    /// Checks the durations and limits.
    pub fn validate(&self) -> Result<(), String> {
        if !positive(self.heartbeat_interval_secs) {
            return Err("broker.heartbeat_interval_secs: must be > 0".into());
        }
        if self.heartbeat_liveness == 0 {
            return Err("broker.heartbeat_liveness: must be >= 1".into());
        }
        if !positive(self.lease_timeout_secs) {
            return Err("broker.lease_timeout_secs: must be > 0".into());
        }
        if !positive(self.send_timeout_secs) {
            return Err("broker.send_timeout_secs: must be > 0".into());
        }
        if self.max_get_count == 0 {
            return Err("broker.max_get_count: must be >= 1".into());
        }
        if !backoff(self.retry_backoff_secs) || !backoff(self.retry_backoff_max_secs) {
            return Err("broker.retry_backoff_secs/retry_backoff_max_secs: must be between 0 and 10^7 seconds".into());
        }
        Ok(())
    }
}

impl TopicConfig {
    /// Checks the overrides of topic `name`.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        if self.lease_timeout_secs.is_some_and(|s| !positive(s)) {
            return Err(format!("topics.{name}.lease_timeout_secs: must be > 0"));
        }
        for secs in [self.retry_backoff_secs, self.retry_backoff_max_secs] {
            if secs.is_some_and(|s| !backoff(s)) {
                return Err(format!("topics.{name}.retry_backoff_secs/retry_backoff_max_secs: must be between 0 and 10^7 seconds"));
            }
        }
        Ok(())
    }
}

/// A backoff in seconds: zero (no wait) up to about four months.
fn backoff(secs: f64) -> bool {
    secs.is_finite() && (0.0..1e7).contains(&secs)
}

/// A duration in seconds must be a finite number above zero.
fn positive(secs: f64) -> bool {
    secs.is_finite() && secs > 0.0
}
