//! Client requests on the client endpoint (REQ or DEALER peers): the seed's
//! `get_task`/`get_size` and the admin verbs, with their replies. One module per
//! verb holds its request fields, parse, reply type and round-trip test; this one
//! keeps [`ClientRequest`], the dispatch on `type`, and re-exports every type.

mod ack;
mod add_task;
mod dead_list;
mod dead_purge;
mod dead_retry;
mod delete_task;
mod frames;
mod get_size;
mod get_task;
mod list_tasks;
mod modify_task;
mod nack;
mod pause_task;
mod put_task;
mod resume_task;
mod stats;
mod task_status;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode::Typed;
use super::{code, ProtocolError};
use crate::task::NewTask;

pub use ack::AckReply;
pub use dead_list::DeadListReply;
pub use dead_purge::DeadPurgeReply;
pub use dead_retry::DeadRetryReply;
pub use frames::{ClientFrames, FramesError};
pub use get_size::INVALID_QUEUE;
pub use get_task::GetTaskReply;
pub use list_tasks::{ListFilter, ListTasksReply};
pub use nack::NackReply;
pub use put_task::PutReply;
pub use stats::{StatsReply, StoreStats, TopicStats, WorkerStats};
pub use task_status::{HistoryRecord, TaskInfo, TaskLookup};

/// One client request: what the broker parses ([`ClientRequest::parse`]) and what
/// every client sends (it serializes to the wire form, `{"type": ..., fields}`).
///
/// Its OpenAPI schema (for `POST /api`) is derived from this type.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientRequest {
    GetTask {
        topic: String,
        /// 1 when absent or null.
        #[schema(value_type = Option<u64>, minimum = 1)]
        count: usize,
    },
    GetSize {
        topic: String,
    },
    PutTask {
        tasks: Vec<NewTask>,
    },
    Ack {
        guids: Vec<String>,
    },
    Nack {
        guid: String,
        /// true when absent.
        #[schema(required = false)]
        retryable: bool,
        error: Option<String>,
    },
    ListTasks(ListFilter),
    TaskStatus {
        guid: String,
    },
    Stats,
    DeadList {
        topic: Option<String>,
        /// 100 when absent.
        #[schema(required = false)]
        limit: usize,
    },
    /// The dead letters of `topic`, and those named in `guids`.
    DeadRetry {
        topic: Option<String>,
        #[schema(value_type = Option<Vec<String>>)]
        guids: Vec<String>,
    },
    /// The dead letters of `topic`, and those named in `guids`.
    DeadPurge {
        topic: Option<String>,
        #[schema(value_type = Option<Vec<String>>)]
        guids: Vec<String>,
    },
    /// The total task's fields (see the scheduler verbs in PROTOCOL.md).
    AddTask {
        #[serde(flatten)]
        #[schema(value_type = Object)]
        spec: Value,
    },
    /// The fields to change.
    ModifyTask {
        id: String,
        #[serde(flatten)]
        #[schema(value_type = Object)]
        patch: Value,
    },
    PauseTask {
        id: String,
    },
    ResumeTask {
        id: String,
    },
    DeleteTask {
        id: String,
        by: Option<String>,
    },
}

/// Every request type, for error messages and docs.
pub const REQUEST_TYPES: &[&str] = &[
    "get_task",
    "get_size",
    "put_task",
    "ack",
    "nack",
    "list_tasks",
    "task_status",
    "stats",
    "dead_list",
    "dead_retry",
    "dead_purge",
    "add_task",
    "modify_task",
    "pause_task",
    "resume_task",
    "delete_task",
];

impl ClientRequest {
    /// Reads a checked body. `max_count` bounds `get_task`'s `count`.
    pub fn parse(typed: &Typed<'_>, max_count: usize) -> Result<ClientRequest, ProtocolError> {
        match typed.kind.as_str() {
            "get_task" => get_task::parse(typed, max_count),
            "get_size" => get_size::parse(typed),
            "put_task" => put_task::parse(typed),
            "ack" => ack::parse(typed),
            "nack" => nack::parse(typed),
            "list_tasks" => list_tasks::parse(typed),
            "task_status" => task_status::parse(typed),
            "stats" => stats::parse(),
            "dead_list" => dead_list::parse(typed),
            "dead_retry" => dead_retry::parse(typed),
            "dead_purge" => dead_purge::parse(typed),
            "add_task" => add_task::parse(typed),
            "modify_task" => modify_task::parse(typed),
            "pause_task" => pause_task::parse(typed),
            "resume_task" => resume_task::parse(typed),
            "delete_task" => delete_task::parse(typed),
            other => Err(ProtocolError::new(
                code::UNKNOWN_TYPE,
                format!(
                    "unknown request type \"{other}\", expected one of {}",
                    REQUEST_TYPES.join(", ")
                ),
            )),
        }
    }
}

fn default_limit() -> usize {
    100
}

/// The guid fields shared by `ack`, `task_status`, `dead_retry` and `dead_purge`.
#[derive(Deserialize)]
struct Guids {
    #[serde(default)]
    guid: Option<String>,
    #[serde(default)]
    guids: Option<Vec<String>>,
    #[serde(default)]
    topic: Option<String>,
}

/// The id fields shared by the scheduler verbs.
#[derive(Deserialize)]
struct TotalTaskId {
    id: String,
    #[serde(default)]
    by: Option<String>,
}

/// `value` without the request's own keys.
fn without_keys(mut value: Value, keys: &[&str]) -> Value {
    if let Some(map) = value.as_object_mut() {
        for key in keys {
            map.remove(*key);
        }
    }
    value
}

/// `guid` and `guids` joined; at least one.
fn guid_list(kind: &str, r: Guids) -> Result<Vec<String>, ProtocolError> {
    let guids: Vec<String> = r
        .guid
        .into_iter()
        .chain(r.guids.unwrap_or_default())
        .collect();
    if guids.is_empty() {
        return Err(ProtocolError::new(
            code::BAD_REQUEST,
            format!("{kind}: missing field `guid`"),
        ));
    }
    Ok(guids)
}

/// What every verb's round-trip test uses.
#[cfg(test)]
mod testing {
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::Value;

    use super::{ClientRequest, ProtocolError};
    use crate::protocol::decode::peek;
    use crate::protocol::{encode, Format};

    /// Parses `v` sent as JSON and as MessagePack; both must agree.
    pub fn parse(v: Value) -> Result<ClientRequest, ProtocolError> {
        let mut results = [Format::Json, Format::MsgPack].map(|format| {
            let bytes = encode(format, &v);
            peek(&bytes, format, 1 << 20).and_then(|typed| ClientRequest::parse(&typed, 1000))
        });
        let [json, msgpack] = &mut results;
        match (json, msgpack) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{v}"),
            (Err(a), Err(b)) => assert_eq!(a.code, b.code, "{v}: {a} / {b}"),
            (a, b) => panic!("{v}: json {a:?}, msgpack {b:?}"),
        }
        let [json, _] = results;
        json
    }

    /// `request` encoded in each format parses back to itself.
    pub fn request_round_trip(request: ClientRequest) {
        for format in [Format::Json, Format::MsgPack] {
            let bytes = encode(format, &request);
            let typed = peek(&bytes, format, 1 << 20).unwrap();
            assert_eq!(
                ClientRequest::parse(&typed, 1000).unwrap(),
                request,
                "{format:?}"
            );
        }
    }

    /// `reply` encoded in each format decodes back to itself.
    pub fn reply_round_trip<T>(reply: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json: T = serde_json::from_slice(&encode(Format::Json, &reply)).unwrap();
        assert_eq!(json, reply, "json");
        let msgpack: T = rmp_serde::from_slice(&encode(Format::MsgPack, &reply)).unwrap();
        assert_eq!(msgpack, reply, "msgpack");
    }
}

#[cfg(test)]
mod tests {
    use super::testing::parse;
    use super::*;
    use serde_json::json;

    #[test]
    fn every_request_type_is_dispatched() {
        for kind in REQUEST_TYPES {
            let err = parse(json!({ "type": kind, "unlikely": [] }));
            if let Err(err) = err {
                assert_ne!(err.code, code::UNKNOWN_TYPE, "{kind}: {err}");
            }
        }
    }

    #[test]
    fn unknown_types_are_named() {
        let err = parse(json!({"type": "get_taks", "topic": "t"})).unwrap_err();
        assert_eq!(err.code, code::UNKNOWN_TYPE);
        assert!(err.message.contains("get_taks"));
    }
}
