//! Configuration: embedded defaults, then `bus.toml`, then `TASKBUS__SECTION__KEY`
//! environment variables, validated once into a typed [`Config`].
//!
//! Library code receives `&Config`; only [`load`] touches files and the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Prefix of environment variables that override `bus.toml`:
/// `TASKBUS__BROKER__CLIENT_ENDPOINT=tcp://0.0.0.0:5555`.
pub const ENV_PREFIX: &str = "TASKBUS__";

/// A configuration that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path} is not valid toml: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: {path}: {message}")]
    Invalid {
        origin: String,
        path: String,
        message: String,
    },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
}

/// The whole validated configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub broker: BrokerConfig,
    /// Per-topic settings; a topic named here is known to the broker from the start.
    pub topics: BTreeMap<String, TopicConfig>,
    pub store: StoreConfig,
    pub scheduler: crate::scheduler::SchedulerConfig,
    pub crawl: crate::crawl::CrawlConfig,
    pub storer: crate::storer::StorerConfig,
    pub packager: crate::packager::PackagerConfig,
    pub log: LogConfig,
    pub worker: WorkerConfig,
    /// The workers that `taskbus run` starts inside its own process.
    pub workers: Vec<WorkerSpec>,
    pub run: crate::run::RunConfig,
}

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
}

/// `[store]`: where the broker keeps its queues.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub data_dir: PathBuf,
    pub synchronous: Synchronous,
    pub commit_window_ms: u64,
    pub history_per_topic: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            data_dir: PathBuf::from("data"),
            synchronous: Synchronous::Normal,
            commit_window_ms: 2,
            history_per_topic: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Sqlite,
}

/// SQLite's `synchronous` pragma for the broker's store.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

/// `[log]`: where the three log files go.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub level: String,
    pub stderr_level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            dir: PathBuf::from("log"),
            level: "info".into(),
            stderr_level: "info".into(),
        }
    }
}

/// `[worker]`: how a worker process reaches the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// The broker's worker endpoint; empty means `[broker] worker_endpoint`.
    pub broker_endpoint: String,
    /// The broker's events endpoint; empty means `[broker] events_endpoint`.
    pub events_endpoint: String,
    pub reconnect_min_secs: f64,
    pub reconnect_max_secs: f64,
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

/// `[[workers]]`: one group of identical workers that `taskbus run` starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSpec {
    pub stage: String,
    pub topics: Vec<String>,
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    #[serde(default = "default_count")]
    pub count: u32,
    #[serde(default)]
    pub next_topic: Option<String>,
}

/// A duration in seconds must be a finite number above zero.
fn positive(secs: f64) -> bool {
    secs.is_finite() && secs > 0.0
}

fn default_capacity() -> u32 {
    16
}
fn default_count() -> u32 {
    1
}

impl Config {
    /// The endpoint a worker connects to.
    pub fn worker_connect_endpoint(&self) -> &str {
        if self.worker.broker_endpoint.is_empty() {
            &self.broker.worker_endpoint
        } else {
            &self.worker.broker_endpoint
        }
    }

    /// The endpoint a worker subscribes to for broker events.
    pub fn events_connect_endpoint(&self) -> &str {
        if self.worker.events_endpoint.is_empty() {
            &self.broker.events_endpoint
        } else {
            &self.worker.events_endpoint
        }
    }

    /// Lease timeout of `topic`, from `[topics.NAME]` or `[broker]`.
    pub fn lease_timeout(&self, topic: &str) -> Duration {
        let secs = self
            .topics
            .get(topic)
            .and_then(|t| t.lease_timeout_secs)
            .unwrap_or(self.broker.lease_timeout_secs);
        Duration::from_secs_f64(secs)
    }

    /// Retry limit of `topic`, from `[topics.NAME]` or `[broker]`.
    pub fn max_retry(&self, topic: &str) -> u32 {
        self.topics
            .get(topic)
            .and_then(|t| t.max_retry)
            .unwrap_or(self.broker.max_retry)
    }

    fn validate(&self) -> Result<(), String> {
        let b = &self.broker;
        if !positive(b.heartbeat_interval_secs) {
            return Err("broker.heartbeat_interval_secs: must be > 0".into());
        }
        if b.heartbeat_liveness == 0 {
            return Err("broker.heartbeat_liveness: must be >= 1".into());
        }
        if !positive(b.lease_timeout_secs) {
            return Err("broker.lease_timeout_secs: must be > 0".into());
        }
        if !positive(b.send_timeout_secs) {
            return Err("broker.send_timeout_secs: must be > 0".into());
        }
        if b.max_get_count == 0 {
            return Err("broker.max_get_count: must be >= 1".into());
        }
        for (name, topic) in &self.topics {
            if topic.lease_timeout_secs.is_some_and(|s| !positive(s)) {
                return Err(format!("topics.{name}.lease_timeout_secs: must be > 0"));
            }
        }
        self.scheduler.validate().map_err(|e| e.to_string())?;
        self.storer.validate().map_err(|e| format!("storer: {e}"))?;
        self.packager
            .validate()
            .map_err(|e| format!("packager: {e}"))?;
        let w = &self.worker;
        if !positive(w.reconnect_min_secs) || w.reconnect_max_secs < w.reconnect_min_secs {
            return Err("worker.reconnect_min_secs/reconnect_max_secs: need 0 < min <= max".into());
        }
        for (i, spec) in self.workers.iter().enumerate() {
            if spec.topics.is_empty() {
                return Err(format!("workers[{i}].topics: must name at least one topic"));
            }
            if spec.capacity == 0 {
                return Err(format!("workers[{i}].capacity: must be >= 1"));
            }
        }
        Ok(())
    }
}

/// Reads `path` (or only the embedded defaults when `None`), applies the
/// environment overrides in `env` and validates the result.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let (mut table, origin) = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
                path: path.to_owned(),
                cause,
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        path: path.to_owned(),
                        message: e.message().to_owned(),
                    })?;
            (table, path.display().to_string())
        }
        None => (toml::Table::new(), "defaults".to_owned()),
    };
    apply_env(&mut table, env)?;
    from_table(table, &origin)
}

/// [`load`] from a configuration's text instead of a file (the binaries' built-in
/// `bus.toml`); `origin` names it in messages.
pub fn load_text(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: PathBuf::from(origin),
            message: e.message().to_owned(),
        })?;
    apply_env(&mut table, env)?;
    from_table(table, origin)
}

/// Validates a TOML table (already merged) into a [`Config`].
pub fn from_table(table: toml::Table, origin: &str) -> Result<Config, ConfigError> {
    let config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            ConfigError::Invalid {
                origin: origin.to_owned(),
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            }
        })?;
    config.validate().map_err(|message| ConfigError::Invalid {
        origin: origin.to_owned(),
        path: "value".into(),
        message,
    })?;
    Ok(config)
}

/// Parses a TOML string into a [`Config`] (tests and embedded examples).
pub fn from_str(text: &str) -> Result<Config, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: PathBuf::from("<string>"),
            message: e.message().to_owned(),
        })?;
    from_table(table, "<string>")
}

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                name,
                message: "empty key segment".into(),
            });
        }
        // A value that reads as TOML keeps its type (numbers, booleans, arrays); anything
        // else is a plain string, so `tcp://...` needs no quoting.
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        let mut node = &mut *table;
        for key in &keys[..keys.len() - 1] {
            let entry = node
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                name: name.clone(),
                message: format!("{key} is not a table"),
            })?;
        }
        node.insert(keys[keys.len() - 1].clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = load(None, Vec::new()).unwrap();
        assert_eq!(config.broker.client_endpoint, "tcp://127.0.0.1:5555");
        assert_eq!(config.store.kind, StoreKind::Sqlite);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = from_str("[broker]\nclinet_endpoint = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("clinet_endpoint"), "{text}");
        assert!(text.contains("broker"), "{text}");
        let err = from_str("[brokr]\n").unwrap_err().to_string();
        assert!(err.contains("brokr"), "{err}");
    }

    #[test]
    fn environment_overrides_file_values_with_types() {
        let env = vec![
            (
                "TASKBUS__BROKER__CLIENT_ENDPOINT".to_owned(),
                "tcp://0.0.0.0:7000".to_owned(),
            ),
            ("TASKBUS__BROKER__MAX_RETRY".to_owned(), "7".to_owned()),
            (
                "TASKBUS__TOPICS__CRAWL__MAX_RETRY".to_owned(),
                "1".to_owned(),
            ),
            ("UNRELATED".to_owned(), "1".to_owned()),
        ];
        let config = load(None, env).unwrap();
        assert_eq!(config.broker.client_endpoint, "tcp://0.0.0.0:7000");
        assert_eq!(config.max_retry("other"), 7);
        assert_eq!(config.max_retry("crawl"), 1);
    }

    #[test]
    fn wrong_type_is_reported_with_its_path() {
        let err = from_str("[broker]\nmax_retry = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("broker.max_retry"), "{err}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        let err = from_str("[broker]\nheartbeat_interval_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("heartbeat_interval_secs"), "{err}");
    }
}
