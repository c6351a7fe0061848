//! `get_task`: the seed's pull, up to `count` tasks of a topic leased to the client.
//! The reply is a list of tasks (see [`crate::protocol::worker::write_task_list`]).

use serde::Deserialize;

use super::ClientRequest;
use crate::protocol::decode::Typed;
use crate::protocol::{code, ProtocolError};

/// The reply: the tasks handed out, possibly none.
pub type GetTaskReply = Vec<crate::task::Task>;

#[derive(Deserialize)]
struct GetTask {
    topic: String,
    #[serde(default)]
    count: Option<i64>,
}

/// Reads `get_task`; `count` defaults to 1 and must lie in `1..=max_count`.
pub(super) fn parse(typed: &Typed<'_>, max_count: usize) -> Result<ClientRequest, ProtocolError> {
    let r: GetTask = typed.fields()?;
    let count = r.count.unwrap_or(1);
    if count <= 0 || count as u64 > max_count as u64 {
        return Err(ProtocolError::new(
            code::BAD_REQUEST,
            format!("get_task: count must be between 1 and {max_count}, got {count}"),
        ));
    }
    Ok(ClientRequest::GetTask {
        topic: r.topic,
        count: count as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, reply_round_trip, request_round_trip};
    use super::*;
    use crate::task::Task;
    use serde_json::json;

    #[test]
    fn get_task_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::GetTask {
            topic: "jd".into(),
            count: 5,
        });
        reply_round_trip::<GetTaskReply>(vec![Task {
            guid: "g".into(),
            topic: "jd".into(),
            body: json!({"a": [1, "x"]}).into(),
            attempt: 2,
            timeout: Some(30.0),
            max_retry: Some(3),
        }]);
    }

    #[test]
    fn seed_get_task_parses_exactly() {
        assert_eq!(
            parse(json!({"type": "get_task", "topic": "jd", "count": 5})).unwrap(),
            ClientRequest::GetTask {
                topic: "jd".into(),
                count: 5
            }
        );
    }

    #[test]
    fn bad_counts_are_refused() {
        for count in [json!(0), json!(-3), json!(1001)] {
            let err = parse(json!({"type": "get_task", "topic": "t", "count": count})).unwrap_err();
            assert_eq!(err.code, code::BAD_REQUEST);
            assert!(err.message.contains("count"), "{}", err.message);
        }
        let err = parse(json!({"type": "get_task", "topic": "t", "count": "ten"})).unwrap_err();
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn a_missing_topic_is_named() {
        let err = parse(json!({"type": "get_task"})).unwrap_err();
        assert!(err.message.contains("topic"), "{}", err.message);
    }
}
