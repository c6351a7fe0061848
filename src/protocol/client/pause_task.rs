//! `pause_task`: stops a total task from firing until it is resumed.

use super::{ClientRequest, TotalTaskId};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reads `pause_task`: the total task's `id`.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    Ok(ClientRequest::PauseTask {
        id: typed.fields::<TotalTaskId>()?.id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn pause_task_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::PauseTask { id: "daily".into() });
        reply_round_trip::<Value>(json!({"id": "daily", "paused": true}));
    }
}
