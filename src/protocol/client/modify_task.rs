//! `modify_task`: changes fields of a total task; the reply describes it after.

use super::{without_keys, ClientRequest, TotalTaskId};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reads `modify_task`: `id` and the fields to change.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    let id = typed.fields::<TotalTaskId>()?.id;
    Ok(ClientRequest::ModifyTask {
        id,
        patch: without_keys(typed.fields()?, &["type", "id"]),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn modify_task_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::ModifyTask {
            id: "daily".into(),
            patch: json!({"trigger": {"cron": "0 * * * *"}}),
        });
        reply_round_trip::<Value>(json!({"id": "daily", "trigger": {"cron": "0 * * * *"}}));
    }
}
