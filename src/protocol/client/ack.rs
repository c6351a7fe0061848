//! `ack`: a client finishes tasks it took with `get_task` (`guid` and/or `guids`).

use serde::{Deserialize, Serialize};

use super::{guid_list, ClientRequest, Guids};
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reply to `ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckReply {
    pub acked: usize,
    /// Guids that were not leased (already acked, expired and re-queued, or unknown).
    pub missing: Vec<String>,
}

/// Reads `ack`: at least one guid.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    let guids = guid_list(&typed.kind, typed.fields::<Guids>()?)?;
    Ok(ClientRequest::Ack { guids })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn ack_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::Ack {
            guids: vec!["a".into(), "b".into()],
        });
        reply_round_trip(AckReply {
            acked: 1,
            missing: vec!["b".into()],
        });
    }

    #[test]
    fn ack_takes_guid_or_guids() {
        let r = parse(json!({"type": "ack", "guid": "a", "guids": ["b"]})).unwrap();
        assert_eq!(
            r,
            ClientRequest::Ack {
                guids: vec!["a".into(), "b".into()]
            }
        );
        assert!(parse(json!({"type": "ack"})).is_err());
    }
}
