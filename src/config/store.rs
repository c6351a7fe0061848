//! `[store]` of bus.toml: where and how the broker keeps its queues. A leaf, read by
//! `store/sqlite.rs`.

use std::path::PathBuf;

use serde::Deserialize;

/// `[store]`: where the broker keeps its queues.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `memory` (nothing survives a restart) or `sqlite`.
    pub kind: StoreKind,
    /// The folder of the SQLite file.
    pub data_dir: PathBuf,
    pub synchronous: Synchronous,
    pub commit_window_ms: u64,
    /// Finished tasks kept in each topic's history.
    pub history_per_topic: usize,
    /// Largest size of the store file in MiB (0: no limit but the disk's). A commit
    /// that would pass it fails like one on a full disk: new work is refused until
    /// finished tasks make room.
    pub max_size_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            data_dir: PathBuf::from("data"),
            synchronous: Synchronous::Normal,
            commit_window_ms: 2,
            history_per_topic: 1000,
            max_size_mb: 0,
        }
    }
}

/// Which store the broker writes its record to.
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
