//! `put_task`: new tasks, one (`task`) or many (`tasks`); the reply names their guids.

use serde::{Deserialize, Serialize};

use super::ClientRequest;
use crate::protocol::decode::{FromMap, Typed};
use crate::protocol::{code, ProtocolError};
use crate::task::NewTask;

/// Reply to `put_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutReply {
    pub guids: Vec<String>,
}

#[derive(Deserialize)]
struct PutTask {
    #[serde(default)]
    task: Option<FromMap<NewTask>>,
    #[serde(default)]
    tasks: Option<Vec<FromMap<NewTask>>>,
}

/// Reads `put_task`: exactly one of `task` and a non-empty `tasks`.
pub(super) fn parse(typed: &Typed<'_>) -> Result<ClientRequest, ProtocolError> {
    let r: PutTask = typed.fields()?;
    let tasks = match (r.task, r.tasks) {
        (Some(task), None) => vec![task.0],
        (None, Some(tasks)) if !tasks.is_empty() => tasks.into_iter().map(|t| t.0).collect(),
        _ => {
            return Err(ProtocolError::new(
                code::BAD_REQUEST,
                "put_task: give either \"task\" (one) or \"tasks\" (a non-empty list)",
            ))
        }
    };
    Ok(ClientRequest::PutTask { tasks })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{parse, reply_round_trip, request_round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn put_task_round_trips_in_json_and_msgpack() {
        request_round_trip(ClientRequest::PutTask {
            tasks: vec![NewTask::new("t", json!({"a": [1, "x"]}))],
        });
        reply_round_trip(PutReply {
            guids: vec!["a".into(), "b".into()],
        });
    }

    #[test]
    fn put_task_takes_one_or_many() {
        let one =
            parse(json!({"type": "put_task", "task": {"topic": "t", "body": {"a": 1}}})).unwrap();
        let ClientRequest::PutTask { tasks } = one else {
            panic!()
        };
        assert_eq!(tasks.len(), 1);
        let many =
            parse(json!({"type": "put_task", "tasks": [{"topic": "t"}, {"topic": "u"}]})).unwrap();
        let ClientRequest::PutTask { tasks } = many else {
            panic!()
        };
        assert_eq!(tasks.len(), 2);
        assert!(parse(json!({"type": "put_task", "tasks": []})).is_err());
    }
}
