//! Client requests on the client endpoint (REQ or DEALER peers): the seed's
//! `get_task`/`get_size` and the admin verbs, with their replies.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode::Typed;
use super::{code, ProtocolError};
use crate::task::NewTask;

/// The frames of one client request as the ROUTER delivers them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrames {
    pub peer: Bytes,
    /// REQ peers (and DEALERs that imitate them) send an empty delimiter frame;
    /// the reply must carry it back.
    pub delimited: bool,
    pub body: Bytes,
}

impl ClientFrames {
    /// Splits `[peer, "", body]` or `[peer, body]`.
    pub fn parse(frames: Vec<Bytes>) -> Result<ClientFrames, (Option<Bytes>, bool, ProtocolError)> {
        let mut frames = frames.into_iter();
        let Some(peer) = frames.next() else {
            return Err((
                None,
                false,
                ProtocolError::new(code::BAD_FRAMES, "empty message"),
            ));
        };
        let rest: Vec<Bytes> = frames.collect();
        let delimited = rest.first().is_some_and(Bytes::is_empty);
        let body_frames = if delimited { &rest[1..] } else { &rest[..] };
        match body_frames {
            [body] => Ok(ClientFrames {
                peer,
                delimited,
                body: body.clone(),
            }),
            other => Err((
                Some(peer),
                delimited,
                ProtocolError::new(
                    code::BAD_FRAMES,
                    format!("expected one body frame, got {}", other.len()),
                ),
            )),
        }
    }

    /// The frames of a reply to this request.
    pub fn reply(peer: Bytes, delimited: bool, body: Bytes) -> Vec<Bytes> {
        if delimited {
            vec![peer, Bytes::new(), body]
        } else {
            vec![peer, body]
        }
    }
}

/// One client request: what the broker parses ([`ClientRequest::parse`]) and what
/// every client sends (it serializes to the wire form, `{"type": ..., fields}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientRequest {
    GetTask {
        topic: String,
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
        limit: usize,
    },
    DeadRetry {
        topic: Option<String>,
        guids: Vec<String>,
    },
    DeadPurge {
        topic: Option<String>,
        guids: Vec<String>,
    },
    /// The total task's fields (see the scheduler verbs in PROTOCOL.md).
    AddTask {
        #[serde(flatten)]
        spec: Value,
    },
    /// The fields to change.
    ModifyTask {
        id: String,
        #[serde(flatten)]
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

/// Filters of `list_tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListFilter {
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    100
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

#[derive(Deserialize)]
struct GetTask {
    topic: String,
    #[serde(default)]
    count: Option<i64>,
}

#[derive(Deserialize)]
struct TopicOnly {
    topic: String,
}

#[derive(Deserialize)]
struct PutTask {
    #[serde(default)]
    task: Option<NewTask>,
    #[serde(default)]
    tasks: Option<Vec<NewTask>>,
}

#[derive(Deserialize)]
struct Guids {
    #[serde(default)]
    guid: Option<String>,
    #[serde(default)]
    guids: Option<Vec<String>>,
    #[serde(default)]
    topic: Option<String>,
}

#[derive(Deserialize)]
struct Nack {
    guid: String,
    #[serde(default = "yes")]
    retryable: bool,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct DeadList {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

#[derive(Deserialize)]
struct TotalTaskId {
    id: String,
    #[serde(default)]
    by: Option<String>,
}

fn yes() -> bool {
    true
}

impl ClientRequest {
    /// Reads a checked body. `max_count` bounds `get_task`'s `count`.
    pub fn parse(typed: &Typed<'_>, max_count: usize) -> Result<ClientRequest, ProtocolError> {
        let kind = typed.kind.clone();
        let request = match kind.as_str() {
            "get_task" => {
                let r: GetTask = typed.fields()?;
                let count = r.count.unwrap_or(1);
                if count <= 0 || count as u64 > max_count as u64 {
                    return Err(ProtocolError::new(
                        code::BAD_REQUEST,
                        format!("get_task: count must be between 1 and {max_count}, got {count}"),
                    ));
                }
                ClientRequest::GetTask {
                    topic: r.topic,
                    count: count as usize,
                }
            }
            "get_size" => ClientRequest::GetSize {
                topic: typed.fields::<TopicOnly>()?.topic,
            },
            "put_task" => {
                let r: PutTask = typed.fields()?;
                let tasks =
                    match (r.task, r.tasks) {
                        (Some(task), None) => vec![task],
                        (None, Some(tasks)) if !tasks.is_empty() => tasks,
                        _ => return Err(ProtocolError::new(
                            code::BAD_REQUEST,
                            "put_task: give either \"task\" (one) or \"tasks\" (a non-empty list)",
                        )),
                    };
                ClientRequest::PutTask { tasks }
            }
            "ack" => ClientRequest::Ack {
                guids: guid_list(&kind, typed.fields()?)?,
            },
            "nack" => {
                let r: Nack = typed.fields()?;
                ClientRequest::Nack {
                    guid: r.guid,
                    retryable: r.retryable,
                    error: r.error,
                }
            }
            "list_tasks" => ClientRequest::ListTasks(typed.fields()?),
            "task_status" => {
                let r: Guids = typed.fields()?;
                let guid = r.guid.ok_or_else(|| missing(&kind, "guid"))?;
                ClientRequest::TaskStatus { guid }
            }
            "stats" => ClientRequest::Stats,
            "dead_list" => {
                let r: DeadList = typed.fields()?;
                ClientRequest::DeadList {
                    topic: r.topic,
                    limit: r.limit,
                }
            }
            "dead_retry" | "dead_purge" => {
                let r: Guids = typed.fields()?;
                let topic = r.topic.clone();
                let guids = r
                    .guid
                    .into_iter()
                    .chain(r.guids.unwrap_or_default())
                    .collect();
                if kind == "dead_retry" {
                    ClientRequest::DeadRetry { topic, guids }
                } else {
                    ClientRequest::DeadPurge { topic, guids }
                }
            }
            "add_task" => ClientRequest::AddTask {
                spec: without_keys(typed.fields()?, &["type"]),
            },
            "modify_task" => {
                let id = typed.fields::<TotalTaskId>()?.id;
                ClientRequest::ModifyTask {
                    id,
                    patch: without_keys(typed.fields()?, &["type", "id"]),
                }
            }
            "pause_task" => ClientRequest::PauseTask {
                id: typed.fields::<TotalTaskId>()?.id,
            },
            "resume_task" => ClientRequest::ResumeTask {
                id: typed.fields::<TotalTaskId>()?.id,
            },
            "delete_task" => {
                let r: TotalTaskId = typed.fields()?;
                ClientRequest::DeleteTask { id: r.id, by: r.by }
            }
            other => {
                return Err(ProtocolError::new(
                    code::UNKNOWN_TYPE,
                    format!(
                        "unknown request type \"{other}\", expected one of {}",
                        REQUEST_TYPES.join(", ")
                    ),
                ))
            }
        };
        Ok(request)
    }
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

fn guid_list(kind: &str, r: Guids) -> Result<Vec<String>, ProtocolError> {
    let guids: Vec<String> = r
        .guid
        .into_iter()
        .chain(r.guids.unwrap_or_default())
        .collect();
    if guids.is_empty() {
        return Err(missing(kind, "guid"));
    }
    Ok(guids)
}

fn missing(kind: &str, field: &str) -> ProtocolError {
    ProtocolError::new(
        code::BAD_REQUEST,
        format!("{kind}: missing field `{field}`"),
    )
}

/// `get_size`'s answer for a topic the broker does not know (the seed's exact string).
pub const INVALID_QUEUE: &str = "invalid queue";

/// Reply to `put_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutReply {
    pub guids: Vec<String>,
}

/// One finished task kept for `task_status` and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub guid: String,
    pub topic: String,
    /// `done` or `deleted`.
    pub outcome: String,
    pub attempt: u32,
    pub finished_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One topic's counters, as `stats` reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicStats {
    /// New tasks whose store commit is on the way; ready once it is done.
    pub pending: usize,
    /// Tasks that may be handed out now.
    pub ready: usize,
    /// Tasks waiting out the retry backoff after a failed attempt.
    pub delayed: usize,
    pub leased: usize,
    pub done: u64,
    pub failed: u64,
    pub dead: usize,
}

/// A live task as `task_status`, `list_tasks` and `dead_list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub guid: String,
    pub topic: String,
    /// `pending` (its commit is on the way), `ready`, `delayed` (retry backoff),
    /// `leased` or `dead`.
    pub state: String,
    pub attempt: u32,
    /// The effective retry limit (the task's own, else its topic's).
    pub max_retry: u32,
    /// The worker's id, or `"client"` for a task taken with `get_task`.
    pub holder: Option<String>,
    /// Milliseconds until the lease ends (leased) or the backoff ends (delayed).
    pub expires_in_ms: Option<u64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
}

/// What `task_status` finds: a live task, or a finished one in the recent history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskLookup {
    Live(TaskInfo),
    Finished(HistoryRecord),
}

/// Reply to `nack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NackReply {
    pub guid: String,
    /// `ready` (it will run again) or `dead`.
    pub state: String,
}

/// Reply to `dead_list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadListReply {
    pub total: usize,
    pub tasks: Vec<TaskLookup>,
}

/// Reply to `dead_retry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadRetryReply {
    pub retried: usize,
}

/// Reply to `dead_purge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadPurgeReply {
    pub purged: usize,
}

/// A worker as `stats` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub id: String,
    pub stage: String,
    pub topics: Vec<String>,
    pub capacity: u32,
    pub in_flight: usize,
    /// Milliseconds since the broker last heard from the worker.
    pub last_heartbeat_ms: u64,
}

/// The broker's store in `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// `memory` or `sqlite`.
    pub kind: String,
    /// `ok`, or `refusing_work` after a failed commit until one succeeds again.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reply to `stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    pub topics: std::collections::BTreeMap<String, TopicStats>,
    pub workers: Vec<WorkerStats>,
    /// The scheduler's line: `total_tasks`, `ticks`, `next_wakeup`.
    pub scheduler: Option<Value>,
    pub store: StoreStats,
}

/// Reply to `ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckReply {
    pub acked: usize,
    /// Guids that were not leased (already acked, expired and re-queued, or unknown).
    pub missing: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::decode::peek;
    use crate::protocol::{encode, Format};
    use serde_json::json;

    /// Parses `v` sent as JSON and as MessagePack; both must agree.
    fn parse(v: Value) -> Result<ClientRequest, ProtocolError> {
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

    #[test]
    fn every_request_round_trips_in_json_and_msgpack() {
        let requests = [
            ClientRequest::GetTask {
                topic: "jd".into(),
                count: 5,
            },
            ClientRequest::GetSize { topic: "jd".into() },
            ClientRequest::PutTask {
                tasks: vec![NewTask::new("t", json!({"a": [1, "x"]}))],
            },
            ClientRequest::Ack {
                guids: vec!["a".into(), "b".into()],
            },
            ClientRequest::Nack {
                guid: "a".into(),
                retryable: false,
                error: Some("why".into()),
            },
            ClientRequest::ListTasks(ListFilter {
                topic: Some("t".into()),
                state: Some("dead".into()),
                limit: 7,
            }),
            ClientRequest::TaskStatus { guid: "g".into() },
            ClientRequest::Stats,
            ClientRequest::DeadList {
                topic: None,
                limit: 3,
            },
            ClientRequest::DeadRetry {
                topic: Some("t".into()),
                guids: vec!["g".into()],
            },
            ClientRequest::DeadPurge {
                topic: None,
                guids: Vec::new(),
            },
            ClientRequest::AddTask {
                spec: json!({"id": "daily", "topic": "t", "trigger": {"interval": 60}}),
            },
            ClientRequest::ModifyTask {
                id: "daily".into(),
                patch: json!({"trigger": {"cron": "0 * * * *"}}),
            },
            ClientRequest::PauseTask { id: "daily".into() },
            ClientRequest::ResumeTask { id: "daily".into() },
            ClientRequest::DeleteTask {
                id: "daily".into(),
                by: Some("ops".into()),
            },
        ];
        assert_eq!(requests.len(), REQUEST_TYPES.len(), "one per verb");
        for request in requests {
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
    }

    #[test]
    fn seed_requests_parse_exactly() {
        assert_eq!(
            parse(json!({"type": "get_task", "topic": "jd", "count": 5})).unwrap(),
            ClientRequest::GetTask {
                topic: "jd".into(),
                count: 5
            }
        );
        // The seed sends `count` with get_size too; it is ignored.
        assert_eq!(
            parse(json!({"type": "get_size", "topic": "jd", "count": 5})).unwrap(),
            ClientRequest::GetSize { topic: "jd".into() }
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
    fn missing_fields_and_unknown_types_are_named() {
        let err = parse(json!({"type": "get_task"})).unwrap_err();
        assert!(err.message.contains("topic"), "{}", err.message);
        let err = parse(json!({"type": "get_taks", "topic": "t"})).unwrap_err();
        assert_eq!(err.code, code::UNKNOWN_TYPE);
        assert!(err.message.contains("get_taks"));
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

    #[test]
    fn frames_keep_the_req_delimiter() {
        let f =
            ClientFrames::parse(vec![Bytes::from("id"), Bytes::new(), Bytes::from("b")]).unwrap();
        assert!(f.delimited);
        assert_eq!(ClientFrames::reply(f.peer, true, Bytes::from("r")).len(), 3);
        let f = ClientFrames::parse(vec![Bytes::from("id"), Bytes::from("b")]).unwrap();
        assert!(!f.delimited);
        let err = ClientFrames::parse(vec![Bytes::from("id"), Bytes::from("a"), Bytes::from("b")]);
        assert!(err.is_err());
    }
}
