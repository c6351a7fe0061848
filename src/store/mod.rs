//! The broker's write-ahead record: every change to a queue is a [`StoreOp`]; a batch
//! of them is committed in one transaction before the replies that depend on it.
//!
//! `memory` keeps nothing; `sqlite` (the default) keeps the queues in a WAL-mode SQLite
//! file under `data_dir`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::body::Body;

/// How a task stands in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredState {
    Ready,
    Leased,
    Dead,
}

impl StoredState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoredState::Ready => "ready",
            StoredState::Leased => "leased",
            StoredState::Dead => "dead",
        }
    }
}

/// One task row as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub guid: String,
    pub topic: String,
    pub body: Body,
    pub attempt: u32,
    pub state: StoredState,
    pub timeout: Option<f64>,
    pub max_retry: Option<u32>,
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

pub use crate::protocol::client::HistoryRecord;

/// What a store's rows are restored into at start-up, one row at a time, so that a
/// restart never holds every row twice (read, and restored).
pub trait Restore {
    /// One task row, in arrival order.
    fn task(&mut self, record: TaskRecord);
    /// One history line, oldest first.
    fn history(&mut self, record: HistoryRecord);
}

/// One change to the broker's durable state.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Insert or replace a task row.
    Upsert(TaskRecord),
    /// Nothing to change: a write that proves the store takes commits again.
    Probe,
    /// Change a task's state (and attempt and last error) without rewriting its body.
    SetState {
        guid: String,
        state: StoredState,
        attempt: u32,
        last_error: Option<String>,
    },
    /// The task is finished: drop its row, remember it in the history.
    Finish(HistoryRecord),
    /// Drop a task row without history (dead-letter purge).
    Delete { guid: String },
    /// Insert or replace a scheduled total task (the scheduler's JSON).
    PutSchedule { id: String, spec: Value },
    /// Drop a scheduled total task and record its deletion.
    DropSchedule { id: String, record: Value },
}

pub mod sqlite;

/// Folds a batch so that each task is written once: a task put and finished in the
/// same batch only leaves its history line.
pub fn compact(ops: Vec<StoreOp>) -> Vec<StoreOp> {
    use std::collections::HashMap;
    let mut out: Vec<Option<StoreOp>> = Vec::with_capacity(ops.len());
    // Index of the pending Upsert of a guid in `out`.
    let mut upserts: HashMap<String, usize> = HashMap::new();
    for op in ops {
        match op {
            StoreOp::Upsert(record) => {
                if let Some(&i) = upserts.get(&record.guid) {
                    out[i] = None;
                }
                upserts.insert(record.guid.clone(), out.len());
                out.push(Some(StoreOp::Upsert(record)));
            }
            StoreOp::SetState {
                guid,
                state,
                attempt,
                last_error,
            } => match upserts.get(&guid) {
                Some(&i) => {
                    if let Some(StoreOp::Upsert(record)) = out[i].as_mut() {
                        record.state = state;
                        record.attempt = attempt;
                        if last_error.is_some() {
                            record.last_error = last_error;
                        }
                    }
                }
                None => out.push(Some(StoreOp::SetState {
                    guid,
                    state,
                    attempt,
                    last_error,
                })),
            },
            StoreOp::Finish(history) => {
                if let Some(i) = upserts.remove(&history.guid) {
                    // Never reached the disk as a task: only the history remains.
                    out[i] = None;
                    out.push(Some(StoreOp::Finish(history)));
                    continue;
                }
                out.push(Some(StoreOp::Finish(history)));
            }
            StoreOp::Delete { guid } => {
                if let Some(i) = upserts.remove(&guid) {
                    out[i] = None;
                }
                out.push(Some(StoreOp::Delete { guid }));
            }
            other => out.push(Some(other)),
        }
    }
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(guid: &str) -> TaskRecord {
        TaskRecord {
            guid: guid.into(),
            topic: "t".into(),
            body: Body::from_value(&json!({})),
            attempt: 0,
            state: StoredState::Ready,
            timeout: None,
            max_retry: None,
            last_error: None,
            created_at_ms: 1,
        }
    }

    fn history(guid: &str) -> HistoryRecord {
        HistoryRecord {
            guid: guid.into(),
            topic: "t".into(),
            outcome: "done".into(),
            attempt: 1,
            finished_at_ms: 2,
            error: None,
        }
    }

    #[test]
    fn a_task_put_and_finished_in_one_batch_leaves_only_history() {
        let ops = vec![
            StoreOp::Upsert(record("a")),
            StoreOp::SetState {
                guid: "a".into(),
                state: StoredState::Leased,
                attempt: 1,
                last_error: None,
            },
            StoreOp::Finish(history("a")),
        ];
        assert_eq!(compact(ops), vec![StoreOp::Finish(history("a"))]);
    }

    #[test]
    fn state_changes_fold_into_a_pending_upsert() {
        let ops = vec![
            StoreOp::Upsert(record("a")),
            StoreOp::SetState {
                guid: "a".into(),
                state: StoredState::Leased,
                attempt: 1,
                last_error: None,
            },
            StoreOp::SetState {
                guid: "b".into(),
                state: StoredState::Dead,
                attempt: 4,
                last_error: Some("x".into()),
            },
        ];
        let out = compact(ops);
        let StoreOp::Upsert(a) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!((a.state, a.attempt), (StoredState::Leased, 1));
        assert!(matches!(&out[1], StoreOp::SetState { guid, .. } if guid == "b"));
    }

    /// Records what a restore streams into it.
    #[derive(Default)]
    struct Restored {
        tasks: Vec<(String, StoredState, u32)>,
        history: Vec<String>,
    }

    impl Restore for Restored {
        fn task(&mut self, record: TaskRecord) {
            self.tasks.push((record.guid, record.state, record.attempt));
        }

        fn history(&mut self, record: HistoryRecord) {
            self.history.push(record.guid);
        }
    }

    #[test]
    fn a_restore_streams_every_row_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::store::StoreConfig {
            data_dir: dir.path().to_owned(),
            ..Default::default()
        };
        let mut store = sqlite::SqliteStore::open(&config).unwrap();
        let mut leased = record("b");
        leased.state = StoredState::Leased;
        leased.attempt = 2;
        let ops = [
            StoreOp::Upsert(record("a")),
            StoreOp::Upsert(leased),
            StoreOp::Upsert(record("c")),
            StoreOp::Finish(history("c")),
        ];
        store.commit(&ops).unwrap();
        let mut restored = Restored::default();
        let loaded = store.load_into(&mut restored).unwrap();
        assert_eq!((loaded.tasks, loaded.history), (2, 1));
        assert_eq!(
            restored.tasks,
            [
                ("a".to_string(), StoredState::Ready, 0),
                ("b".to_string(), StoredState::Leased, 2)
            ]
        );
        assert_eq!(restored.history, ["c"]);
    }
}
