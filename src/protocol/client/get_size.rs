//! `get_size`: how many tasks of a topic are ready. The reply is a bare number, or
//! [`INVALID_QUEUE`] for a topic the broker does not know.

use serde::Deserialize;

use super::ClientRequest;
use crate::protocol::decode::Typed;
use crate::protocol::ProtocolError;

/// `get_size`'s answer for a topic the broker does not know (the seed's exact string).
pub const INVALID_QUEUE: &str = "invalid queue";

#[derive(Deserialize)]
struct GetSize {
    topic: String,
}

/// Reads `get_size` (the seed also sends `count`; it is ignored).
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    Ok(ClientRequest::GetSize {
        topic: typed.fields::<GetSize>()?.topic,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn get_size_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::GetSize { topic: "jd".into() });
        reply_round_trip::<usize>(42);
        reply_round_trip::<String>(INVALID_QUEUE.into());
    }

    #[test]
    fn seed_get_size_ignores_count() {
        assert_eq!(
            parse(json!({"type": "get_size", "topic": "jd", "count": 5})).unwrap(),
            ClientRequest::GetSize { topic: "jd".into() }
        );
    }
}
