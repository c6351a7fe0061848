//! `[log]` of bus.toml: where the binaries' three log files go. A leaf, read by
//! `logging.rs`.

use std::path::PathBuf;

use serde::Deserialize;

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
