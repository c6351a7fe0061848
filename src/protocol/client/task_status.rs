//! `task_status`: one task by guid, live or recently finished.

use serde::{Deserialize, Serialize};

use super::{ClientRequest, Guids};
use crate::protocol::decode::Typed;
use crate::protocol::{code, ProtocolError};

/// A live task as `task_status`, `list_tasks` and `dead_list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub guid: String,
    pub topic: String,
    /// `pending` (its commit is on the way), `ready`, `delayed` (retry backoff),
    /// `leased` or `dead`.
    pub state: String,
    pub attempt: u32,
    /// The effective retry limit (the task's own, else its topic's).
    pub max_retry: u32,
    /// The worker's id, or `"client"` for a task taken with `get_task`.
    pub holder: Option<String>,
    /// Milliseconds until the lease ends (leased) or the backoff ends (delayed).
    pub expires_in_ms: Option<u64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    /// The body's size in bytes (MessagePack), in `task_status` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    /// The body itself, in `task_status` only, when it is at most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// One finished task kept for `task_status` and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub guid: String,
    pub topic: String,
    /// `done` or `deleted`.
    pub outcome: String,
    pub attempt: u32,
    pub finished_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `task_status` finds: a live task, or a finished one in the recent history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskLookup {
    Live(TaskInfo),
    Finished(HistoryRecord),
}

/// Reads `task_status`: one `guid`.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    let r: Guids = typed.fields()?;
    let guid = r.guid.ok_or_else(|| {
        ProtocolError::new(code::BAD_REQUEST, "task_status: missing field `guid`")
    })?;
    Ok(ClientRequest::TaskStatus { guid })
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::testing::{parse, reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::json;

    /// A leased task as the broker shows it.
    pub fn info() -> TaskInfo {
        TaskInfo {
            guid: "g".into(),
            topic: "t".into(),
            state: "leased".into(),
            attempt: 1,
            max_retry: 3,
            holder: Some("client".into()),
            expires_in_ms: Some(900),
            last_error: None,
            created_at_ms: 1_700_000_000_000,
            body_bytes: Some(12),
            body: Some(serde_json::json!({"url": "https://a.test/"})),
        }
    }

    #[test]
    fn task_status_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::TaskStatus { guid: "g".into() });
        reply_round_trip(TaskLookup::Live(info()));
        reply_round_trip(TaskLookup::Finished(HistoryRecord {
            guid: "g".into(),
            topic: "t".into(),
            outcome: "done".into(),
            attempt: 2,
            finished_at_ms: 1_700_000_000_001,
            error: None,
        }));
    }

    #[test]
    fn task_status_needs_a_guid() {
        let err = parse(json!({"type": "task_status"})).unwrap_err();
        assert_eq!(err.code, code::BAD_REQUEST);
        assert!(err.message.contains("guid"), "{}", err.message);
    }
}
