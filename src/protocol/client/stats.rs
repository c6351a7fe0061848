//! `stats`: counters per topic, the workers, the scheduler and the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ClientRequest;
use crate::protocol::ProtocolError;

/// One topic's counters, as `stats` reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicStats {
    /// New tasks whose store commit is on the way; ready once it is done.
    pub pending: usize,
    /// Tasks that may be handed out now.
    pub ready: usize,
    /// Tasks waiting out the retry backoff after a failed attempt.
    pub delayed: usize,
    pub leased: usize,
    pub done: u64,
    pub failed: u64,
    pub dead: usize,
}

/// A worker as `stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub id: String,
    pub stage: String,
    pub topics: Vec<String>,
    pub capacity: u32,
    pub in_flight: usize,
    /// Milliseconds since the broker last heard from the worker.
    pub last_heartbeat_ms: u64,
}

/// The broker's store in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// `memory` or `sqlite`.
    pub kind: String,
    /// `ok`, or `refusing_work` after a failed commit until one succeeds again.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reply to `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    pub topics: BTreeMap<String, TopicStats>,
    pub workers: Vec<WorkerStats>,
    /// The scheduler's line: `total_tasks`, `ticks`, `next_wakeup`.
    pub scheduler: Option<Value>,
    pub store: StoreStats,
}

/// Reads `stats` (no fields).
pub(super) fn parse() -> Result<ClientRequest, ProtocolError> {
    Ok(ClientRequest::Stats)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::Stats);
        let topic = TopicStats {
            pending: 1,
            ready: 2,
            delayed: 3,
            leased: 4,
            done: 5,
            failed: 6,
            dead: 7,
        };
        reply_round_trip(StatsReply {
            topics: BTreeMap::from([("t".to_string(), topic)]),
            workers: vec![WorkerStats {
                id: "w".into(),
                stage: "fetcher".into(),
                topics: vec!["t".into()],
                capacity: 4,
                in_flight: 1,
                last_heartbeat_ms: 20,
            }],
            scheduler: Some(json!({"total_tasks": 1, "ticks": 2})),
            store: StoreStats {
                kind: "sqlite".into(),
                state: "refusing_work".into(),
                error: Some("disk full".into()),
            },
        });
    }
}
