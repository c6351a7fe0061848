//! `nack`: a client gives a task back, to run again (`retryable`) or to dead-letter.

use serde::{Deserialize, Serialize};

use super::ClientRequest;
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// Reply to `nack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NackReply {
    pub guid: String,
    /// `ready` (it will run again) or `dead`.
    pub state: String,
}

#[derive(Deserialize)]
struct Nack {
    guid: String,
    #[serde(default = "yes")]
    retryable: bool,
    #[serde(default)]
    error: Option<String>,
}

fn yes() -> bool {
    true
}

/// Reads `nack`; `retryable` defaults to true.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    let r: Nack = typed.fields()?;
    Ok(ClientRequest::Nack {
        guid: r.guid,
        retryable: r.retryable,
        error: r.error,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn nack_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::Nack {
            guid: "a".into(),
            retryable: false,
            error: Some("why".into()),
        });
        reply_round_trip(NackReply {
            guid: "a".into(),
            state: "dead".into(),
        });
    }

    #[test]
    fn nack_is_retryable_unless_told() {
        assert_eq!(
            parse(json!({"type": "nack", "guid": "a"})).unwrap(),
            ClientRequest::Nack {
                guid: "a".into(),
                retryable: true,
                error: None
            }
        );
    }
}
