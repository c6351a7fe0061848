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
    /// Transport limits of the ZeroMQ endpoints, enforced while reading (with
    /// `max_message_bytes`; see docs/SECURITY.md).
    pub max_frames_per_message: usize,
    pub handshake_timeout_secs: f64,
    pub max_connections: usize,
    pub max_queued_per_peer: usize,
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
            max_frames_per_message: 1024,
            handshake_timeout_secs: 5.0,
            max_connections: 1024,
            max_queued_per_peer: 10_000,
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
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.handshake_timeout_secs)
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
        self.validate_transport()?;
        if !backoff(self.retry_backoff_secs) || !backoff(self.retry_backoff_max_secs) {
            return Err("broker.retry_backoff_secs/retry_backoff_max_secs: must be between 0 and 10^7 seconds".into());
        }
        Ok(())
    }
}

impl BrokerConfig {
    /// Checks the transport limits.
    fn validate_transport(&self) -> Result<(), String> {
        if self.max_message_bytes == 0 {
            return Err("broker.max_message_bytes: must be >= 1".into());
        }
        if self.max_frames_per_message == 0 {
            return Err("broker.max_frames_per_message: must be >= 1".into());
        }
        if !positive(self.handshake_timeout_secs) || self.handshake_timeout_secs > 3600.0 {
            return Err("broker.handshake_timeout_secs: must be > 0 and at most 3600".into());
        }
        if self.max_connections == 0 {
            return Err("broker.max_connections: must be >= 1".into());
        }
        if self.max_queued_per_peer == 0 {
            return Err("broker.max_queued_per_peer: must be >= 1".into());
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

#[cfg(test)]
mod tests {
    use super::BrokerConfig;

    /// Sets one limit of a config to zero.
    type Zero = (&'static str, fn(&mut BrokerConfig));

    #[test]
    fn the_transport_limits_have_their_documented_defaults_and_refuse_zero() {
        let config = BrokerConfig::default();
        assert_eq!(config.max_frames_per_message, 1024);
        assert_eq!(config.handshake_timeout_secs, 5.0);
        assert_eq!(config.max_connections, 1024);
        assert_eq!(config.max_queued_per_peer, 10_000);
        assert!(config.validate().is_ok());
        let zero: [Zero; 5] = [
            ("max_message_bytes", |c| c.max_message_bytes = 0),
            ("max_frames_per_message", |c| c.max_frames_per_message = 0),
            ("handshake_timeout_secs", |c| c.handshake_timeout_secs = 0.0),
            ("max_connections", |c| c.max_connections = 0),
            ("max_queued_per_peer", |c| c.max_queued_per_peer = 0),
        ];
        for (key, edit) in zero {
            let mut config = BrokerConfig::default();
            edit(&mut config);
            let error = config.validate().unwrap_err();
            assert!(error.contains(key), "{key}: {error}");
        }
    }
}
