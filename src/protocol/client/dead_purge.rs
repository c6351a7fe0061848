//! `dead_purge`: deletes dead tasks for good; the given guids, or every dead task (of `topic`).

use serde::{Deserialize, Serialize};

use super::{ClientRequest, Guids};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reply to `dead_purge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadPurgeReply {
    pub purged: usize,
}

/// Reads `dead_purge`: `guid` and/or `guids`, or none for all (of `topic`).
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    let r: Guids = typed.fields()?;
    let topic = r.topic.clone();
    let guids = r
        .guid
        .into_iter()
        .chain(r.guids.unwrap_or_default())
        .collect();
    Ok(ClientRequest::DeadPurge { topic, guids })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn dead_purge_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::DeadPurge {
            topic: Some("t".into()),
            guids: vec!["g".into()],
        });
        request_round_trip(ClientRequest::DeadPurge {
            topic: None,
            guids: Vec::new(),
        });
        reply_round_trip(DeadPurgeReply { purged: 2 });
    }

    #[test]
    fn dead_purge_joins_guid_and_guids() {
        assert_eq!(
            parse(json!({"type": "dead_purge", "guid": "a", "guids": ["b"]})).unwrap(),
            ClientRequest::DeadPurge {
                topic: None,
                guids: vec!["a".into(), "b".into()]
            }
        );
    }
}
