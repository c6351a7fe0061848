//! `add_task`: a total task for the scheduler (its fields are the scheduler's; see
//! the scheduler verbs in PROTOCOL.md). The reply describes the total task.

use super::{without_keys, ClientRequest};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reads `add_task`: every field but `type` is the total task's.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    Ok(ClientRequest::AddTask {
        spec: without_keys(typed.fields()?, &["type"]),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn add_task_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::AddTask {
            spec: json!({"id": "daily", "topic": "t", "trigger": {"interval": 60}}),
        });
        reply_round_trip::<Value>(json!({"id": "daily", "topic": "t", "paused": false}));
    }
}
