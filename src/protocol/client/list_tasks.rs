//! `list_tasks`: the queued tasks (and, with a scheduler, the total tasks) that
//! match a filter.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{default_limit, ClientRequest, TaskInfo};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Filters of `list_tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ListFilter {
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

/// Reply to `list_tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListTasksReply {
    pub queued: Vec<TaskInfo>,
    /// The scheduler's total tasks, when the broker runs a scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<Value>,
}

/// Reads `list_tasks`; every filter is optional, `limit` defaults to 100.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    Ok(ClientRequest::ListTasks(typed.fields()?))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn list_tasks_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::ListTasks(ListFilter {
            topic: Some("t".into()),
            state: Some("dead".into()),
            limit: 7,
        }));
        reply_round_trip(ListTasksReply {
            queued: vec![super::super::task_status::tests::info()],
            scheduled: Some(json!([{"id": "daily"}])),
        });
    }

    #[test]
    fn list_tasks_filters_are_optional() {
        assert_eq!(
            parse(json!({"type": "list_tasks"})).unwrap(),
            ClientRequest::ListTasks(ListFilter {
                topic: None,
                state: None,
                limit: 100
            })
        );
    }
}
