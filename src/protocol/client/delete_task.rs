//! `delete_task`: removes a total task (`by` names who, for the log).

use super::{ClientRequest, TotalTaskId};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reads `delete_task`: `id`, and optionally `by`.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    let r: TotalTaskId = typed.fields()?;
    Ok(ClientRequest::DeleteTask { id: r.id, by: r.by })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn delete_task_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::DeleteTask {
            id: "daily".into(),
            by: Some("ops".into()),
        });
        reply_round_trip::<Value>(json!({"id": "daily", "deleted": true}));
    }
}
