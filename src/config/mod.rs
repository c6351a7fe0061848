//! Configuration: embedded defaults, then `bus.toml`, then `TASKBUS__SECTION__KEY`
//! environment variables, validated once into a typed [`Config`].
//!
//! Each section type is a leaf that imports nothing above it. The modules below
//! `config` own theirs (`crawl/config.rs`, `storer/config.rs`, `packager/config.rs`,
//! `scheduler/config.rs`, `worker/config.rs`); the sections of `run` (which stands
//! above `config`) and of the broker, store and log (while the broker still takes
//! the whole `Config`) are the leaves of this folder. This file assembles them into
//! the whole [`Config`]. Only the top (`stages`, `run`, `cli`, `bench`, the binaries)
//! and the broker take the whole `Config`; the modules below receive their sections.
//! Only [`load`] touches files and the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod broker;
pub mod log;
pub mod run;
pub mod store;

pub use broker::{BrokerConfig, TopicConfig};
pub use log::LogConfig;
pub use run::RunConfig;
pub use store::{StoreConfig, StoreKind, Synchronous};

use crate::auth::config::AuthConfig;
use crate::crawl::config::CrawlConfig;
use crate::http::config::HttpConfig;
use crate::packager::config::PackagerConfig;
use crate::scheduler::SchedulerConfig;
use crate::storer::StorerConfig;
pub use crate::worker::config::{WorkerConfig, WorkerSpec};

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
    pub scheduler: SchedulerConfig,
    pub crawl: CrawlConfig,
    pub storer: StorerConfig,
    pub packager: PackagerConfig,
    pub log: LogConfig,
    pub worker: WorkerConfig,
    /// The workers that `taskbus run` starts inside its own process.
    pub workers: Vec<WorkerSpec>,
    pub run: RunConfig,
    pub http: HttpConfig,
    /// Tokens on the ZeroMQ endpoints and protected mode.
    pub auth: AuthConfig,
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

    /// Makes the relative paths (data and log folders, SQLite file, feeds) relative
    /// to `folder`, the configuration file's folder, instead of the current one.
    pub fn resolve_paths(&mut self, folder: &Path) {
        if folder.as_os_str().is_empty() {
            return;
        }
        let under = |path: &mut PathBuf| {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = folder.join(&*path);
            }
        };
        under(&mut self.store.data_dir);
        under(&mut self.log.dir);
        under(&mut self.storer.sqlite_path);
        for feed in self.storer.feeds.values_mut() {
            under(&mut feed.path);
        }
    }

    /// A spider with a `feed` sends its rows there: `[storer.feeds]` gets an entry
    /// for its table, with its columns in order.
    pub fn wire_spider_feeds(&mut self) {
        for spider in &self.crawl.spiders {
            if spider.feed.is_empty() {
                continue;
            }
            let mut columns = vec!["url".to_string(), "final_url".to_string()];
            columns.extend(spider.fields.keys().cloned());
            self.storer.feeds.insert(
                spider.table().to_string(),
                crate::storer::FeedConfig {
                    path: PathBuf::from(&spider.feed),
                    columns,
                },
            );
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.broker.validate()?;
        for (name, topic) in &self.topics {
            topic.validate(name)?;
        }
        self.scheduler.validate().map_err(|e| e.to_string())?;
        self.crawl.validate().map_err(|e| format!("crawl: {e}"))?;
        self.storer.validate().map_err(|e| format!("storer: {e}"))?;
        self.packager
            .validate()
            .map_err(|e| format!("packager: {e}"))?;
        self.worker.validate()?;
        self.http.validate()?;
        self.auth.validate()?;
        for (index, spec) in self.workers.iter().enumerate() {
            spec.validate(index)?;
        }
        Ok(())
    }
}

/// The `[packager]` section, for what takes it or the whole config.
impl AsRef<PackagerConfig> for Config {
    fn as_ref(&self) -> &PackagerConfig {
        &self.packager
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
    let mut config = from_table(table, &origin)?;
    if let Some(folder) = path.and_then(Path::parent) {
        config.resolve_paths(folder);
    }
    Ok(config)
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
    let mut config = config;
    config.wire_spider_feeds();
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
