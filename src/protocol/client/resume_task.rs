//! `resume_task`: lets a paused total task fire again.

use super::{ClientRequest, TotalTaskId};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reads `resume_task`: the total task's `id`.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    Ok(ClientRequest::ResumeTask {
        id: typed.fields::<TotalTaskId>()?.id,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn resume_task_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::ResumeTask { id: "daily".into() });
        reply_round_trip::<Value>(json!({"id": "daily", "paused": false}));
    }
}
