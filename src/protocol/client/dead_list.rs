//! `dead_list`: the dead-lettered tasks, of one topic or all.

use serde::{Deserialize, Serialize};

use super::{default_limit, ClientRequest, TaskLookup};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reply to `dead_list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadListReply {
    pub total: usize,
    pub tasks: Vec<TaskLookup>,
}

#[derive(Deserialize)]
struct DeadList {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

/// Reads `dead_list`; `limit` defaults to 100.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    let r: DeadList = typed.fields()?;
    Ok(ClientRequest::DeadList {
        topic: r.topic,
        limit: r.limit,
    })
}

#[cfg(test)]
mod tests {
    use super::super::task_status::tests::info;
    use super::super::testing::{reply_round_trip, request_round_trip};
    use super::*;

    #[test]
    fn dead_list_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::DeadList {
            topic: None,
            limit: 3,
        });
        let mut dead = info();
        dead.state = "dead".into();
        dead.holder = None;
        dead.expires_in_ms = None;
        dead.last_error = Some("boom".into());
        reply_round_trip(DeadListReply {
            total: 1,
            tasks: vec![TaskLookup::Live(dead)],
        });
    }
}
