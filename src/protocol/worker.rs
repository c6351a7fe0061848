//! The worker protocol on the worker endpoint (DEALER peers): READY, TASK, DONE,
//! FAIL, HEARTBEAT, DISCONNECT, CANCEL. One MessagePack map per message.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::decode::Typed;
use super::{code, ProtocolError};
use crate::body::Body;
use crate::task::{NewTask, Task};

/// Protocol name a worker announces in READY.
pub const PROTOCOL: &str = "taskbus/1";

/// What a worker sends to the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// Registers the worker: its stage, the topics it takes, and how many tasks it
    /// may hold at once (its credit).
    Ready {
        #[serde(default)]
        protocol: Option<String>,
        #[serde(default)]
        worker_id: Option<String>,
        stage: String,
        topics: Vec<String>,
        capacity: u32,
        /// Where DONE envelopes go when they name no `body.callback.topic`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_topic: Option<String>,
        /// The worker secret or an API token, when the broker requires one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// The task is finished; `next` are the envelopes for the next stage.
    Done {
        guid: String,
        #[serde(default)]
        next: Vec<NewTask>,
        /// Where `next` envelopes go that name no `body.callback.topic`; carried in
        /// each DONE so routing never depends on the broker's memory of the session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_topic: Option<String>,
    },
    /// The task failed; a retryable failure puts it back until `max_retry`.
    Fail {
        guid: String,
        error: String,
        #[serde(default = "yes")]
        retryable: bool,
    },
    Heartbeat {},
    /// The worker is leaving; its leases go back at once.
    Disconnect {},
}

fn yes() -> bool {
    true
}

/// What the broker sends to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrokerMessage {
    /// Tasks to run, never more than the worker's free credit.
    Task {
        tasks: Vec<Task>,
    },
    Heartbeat {},
    /// The broker does not know this worker (or is going away): re-register with READY.
    Disconnect {
        reason: String,
    },
    /// Drop these tasks: their total task was deleted. No DONE or FAIL is expected.
    Cancel {
        guids: Vec<String>,
        reason: String,
    },
    /// The last message could not be read.
    Error {
        error: String,
        code: String,
    },
}

/// The fields of READY, read apart from the enum so that the body is read in one pass
/// without buffering (serde's internally tagged enums buffer the whole message).
#[derive(Deserialize)]
struct ReadyFields {
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    worker_id: Option<String>,
    stage: String,
    topics: Vec<String>,
    capacity: u32,
    #[serde(default)]
    next_topic: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
struct DoneFields {
    guid: String,
    #[serde(default)]
    next: Vec<NewTask>,
    #[serde(default)]
    next_topic: Option<String>,
}

#[derive(Deserialize)]
struct FailFields {
    guid: String,
    error: String,
    #[serde(default = "yes")]
    retryable: bool,
}

impl WorkerMessage {
    /// Reads a checked body (MessagePack; see [`Typed`]).
    pub fn parse(typed: &Typed<'_>) -> Result<WorkerMessage, ProtocolError> {
        let message = match typed.kind.as_str() {
            "ready" => {
                let r: ReadyFields = typed.fields()?;
                if r.capacity == 0 {
                    return Err(ProtocolError::new(
                        code::BAD_REQUEST,
                        "ready: capacity must be >= 1",
                    ));
                }
                if r.topics.is_empty() {
                    return Err(ProtocolError::new(
                        code::BAD_REQUEST,
                        "ready: topics must not be empty",
                    ));
                }
                WorkerMessage::Ready {
                    protocol: r.protocol,
                    worker_id: r.worker_id,
                    stage: r.stage,
                    topics: r.topics,
                    capacity: r.capacity,
                    next_topic: r.next_topic,
                    token: r.token,
                }
            }
            "done" => {
                let r: DoneFields = typed.fields()?;
                WorkerMessage::Done {
                    guid: r.guid,
                    next: r.next,
                    next_topic: r.next_topic,
                }
            }
            "fail" => {
                let r: FailFields = typed.fields()?;
                WorkerMessage::Fail {
                    guid: r.guid,
                    error: r.error,
                    retryable: r.retryable,
                }
            }
            "heartbeat" => WorkerMessage::Heartbeat {},
            "disconnect" => WorkerMessage::Disconnect {},
            kind => {
                return Err(ProtocolError::new(
                    code::UNKNOWN_TYPE,
                    format!(
                        "unknown worker message type \"{kind}\", expected one of ready, done, fail, heartbeat, disconnect"
                    ),
                ))
            }
        };
        Ok(message)
    }
}

/// Splits a worker's frames `[peer, body]` or `[peer, "", body]`.
pub fn split_frames(frames: Vec<Bytes>) -> Result<(Bytes, Bytes), (Option<Bytes>, ProtocolError)> {
    let mut iter = frames.into_iter();
    let Some(peer) = iter.next() else {
        return Err((None, ProtocolError::new(code::BAD_FRAMES, "empty message")));
    };
    let rest: Vec<Bytes> = iter.filter(|f| !f.is_empty()).collect();
    match <[Bytes; 1]>::try_from(rest) {
        Ok([body]) => Ok((peer, body)),
        Err(rest) => Err((
            Some(peer),
            ProtocolError::new(
                code::BAD_FRAMES,
                format!("expected one body frame, got {}", rest.len()),
            ),
        )),
    }
}

#[derive(Deserialize)]
struct TaskFields {
    tasks: Vec<Task>,
}

#[derive(Deserialize)]
struct ReasonFields {
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct CancelFields {
    guids: Vec<String>,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct ErrorFields {
    error: String,
    code: String,
}

impl BrokerMessage {
    /// Reads a message from the broker in two passes, without buffering the tasks'
    /// bodies (as a worker runtime does for every TASK).
    pub fn parse(body: &[u8], max_bytes: usize) -> Result<BrokerMessage, ProtocolError> {
        let typed = super::decode::peek(body, super::Format::MsgPack, max_bytes)?;
        Ok(match typed.kind.as_str() {
            "task" => BrokerMessage::Task {
                tasks: typed.fields::<TaskFields>()?.tasks,
            },
            "heartbeat" => BrokerMessage::Heartbeat {},
            "disconnect" => BrokerMessage::Disconnect {
                reason: typed.fields::<ReasonFields>()?.reason,
            },
            "cancel" => {
                let c: CancelFields = typed.fields()?;
                BrokerMessage::Cancel {
                    guids: c.guids,
                    reason: c.reason,
                }
            }
            "error" => {
                let e: ErrorFields = typed.fields()?;
                BrokerMessage::Error {
                    error: e.error,
                    code: e.code,
                }
            }
            other => {
                return Err(ProtocolError::new(
                    code::UNKNOWN_TYPE,
                    format!("unknown broker message type \"{other}\""),
                ))
            }
        })
    }
}

/// A task as the broker hands it out: the wire shape of [`Task`], built from shared
/// parts so that handing out a task copies no body. `timeout` and `max_retry` are the
/// effective values (the task's own, else its topic's).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub guid: Arc<str>,
    pub topic: Arc<str>,
    pub body: Body,
    pub attempt: u32,
    pub timeout: f64,
    pub max_retry: u32,
}

impl Delivery {
    /// The same task as the owned [`Task`] (JSON replies, tests).
    pub fn to_task(&self) -> Task {
        Task {
            guid: self.guid.to_string(),
            topic: self.topic.to_string(),
            body: self.body.clone(),
            attempt: self.attempt,
            timeout: Some(self.timeout),
            max_retry: Some(self.max_retry),
        }
    }
}

/// Writes `deliveries` as a MessagePack list of task maps, splicing each body's
/// bytes in as they are: the same bytes `rmp_serde::to_vec_named(&[Task])` writes.
pub fn write_task_list(out: &mut Vec<u8>, deliveries: &[Delivery]) {
    use rmp::encode::{write_array_len, write_f64, write_map_len, write_str, write_uint};
    // Writing into a Vec cannot fail.
    let _ = write_array_len(out, deliveries.len() as u32);
    for d in deliveries {
        let _ = write_map_len(out, 6);
        let _ = write_str(out, "guid");
        let _ = write_str(out, &d.guid);
        let _ = write_str(out, "topic");
        let _ = write_str(out, &d.topic);
        let _ = write_str(out, "body");
        out.extend_from_slice(d.body.as_bytes());
        let _ = write_str(out, "attempt");
        let _ = write_uint(out, u64::from(d.attempt));
        let _ = write_str(out, "timeout");
        let _ = write_f64(out, d.timeout);
        let _ = write_str(out, "max_retry");
        let _ = write_uint(out, u64::from(d.max_retry));
    }
}

/// The TASK message `{"type": "task", "tasks": [...]}` for `deliveries`.
pub fn task_message(deliveries: &[Delivery]) -> Bytes {
    use rmp::encode::{write_map_len, write_str};
    let size: usize = deliveries
        .iter()
        .map(|d| d.body.len() + d.guid.len() + 64)
        .sum();
    let mut out = Vec::with_capacity(size + 24);
    let _ = write_map_len(&mut out, 2);
    let _ = write_str(&mut out, "type");
    let _ = write_str(&mut out, "task");
    let _ = write_str(&mut out, "tasks");
    write_task_list(&mut out, deliveries);
    Bytes::from(out)
}

/// Encodes a broker message; TASK goes through [`task_message`] instead.
pub fn encode_broker_message(message: &BrokerMessage) -> Bytes {
    super::encode(super::Format::MsgPack, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::decode::peek;
    use crate::protocol::{encode, Format};
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<WorkerMessage, ProtocolError> {
        let bytes = encode(Format::MsgPack, &value);
        WorkerMessage::parse(&peek(&bytes, Format::MsgPack, 1 << 20)?)
    }

    fn round_trip(message: &WorkerMessage) -> WorkerMessage {
        let bytes = encode(Format::MsgPack, message);
        WorkerMessage::parse(&peek(&bytes, Format::MsgPack, 1 << 20).unwrap()).unwrap()
    }

    #[test]
    fn every_worker_message_round_trips() {
        let messages = [
            WorkerMessage::Ready {
                protocol: Some(PROTOCOL.into()),
                worker_id: Some("w1".into()),
                stage: "echo".into(),
                topics: vec!["a".into()],
                capacity: 4,
                next_topic: Some("b".into()),
                token: Some("tbk_x".into()),
            },
            WorkerMessage::Done {
                guid: "g".into(),
                next: vec![NewTask::new("b", json!({"x": 1}))],
                next_topic: Some("c".into()),
            },
            WorkerMessage::Fail {
                guid: "g".into(),
                error: "boom".into(),
                retryable: false,
            },
            WorkerMessage::Heartbeat {},
            WorkerMessage::Disconnect {},
        ];
        for message in &messages {
            assert_eq!(&round_trip(message), message);
        }
    }

    #[test]
    fn every_broker_message_round_trips() {
        let task = Task {
            guid: "g".into(),
            topic: "t".into(),
            body: json!({"urls": []}).into(),
            attempt: 1,
            timeout: Some(2.5),
            max_retry: None,
        };
        let messages = [
            BrokerMessage::Task { tasks: vec![task] },
            BrokerMessage::Heartbeat {},
            BrokerMessage::Disconnect {
                reason: "unknown worker".into(),
            },
            BrokerMessage::Cancel {
                guids: vec!["g".into()],
                reason: "deleted".into(),
            },
            BrokerMessage::Error {
                error: "bad".into(),
                code: "malformed".into(),
            },
        ];
        for message in &messages {
            let bytes = encode(Format::MsgPack, message);
            let back: BrokerMessage = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(&back, message);
            assert_eq!(&BrokerMessage::parse(&bytes, 1 << 20).unwrap(), message);
        }
    }

    #[test]
    fn a_spliced_task_message_is_what_serde_writes_and_reads() {
        let deliveries = vec![
            Delivery {
                guid: Arc::from("g1"),
                topic: Arc::from("t"),
                body: Body::from_value(&json!({"page": 1, "html": "<p>x</p>"})),
                attempt: 2,
                timeout: 30.0,
                max_retry: 3,
            },
            Delivery {
                guid: Arc::from("g2"),
                topic: Arc::from("t"),
                body: Body::default(),
                attempt: 1,
                timeout: 0.5,
                max_retry: 0,
            },
        ];
        let tasks: Vec<Task> = deliveries.iter().map(Delivery::to_task).collect();
        let spliced = task_message(&deliveries);
        let by_serde = encode(
            Format::MsgPack,
            &BrokerMessage::Task {
                tasks: tasks.clone(),
            },
        );
        assert_eq!(spliced, by_serde);
        let back: BrokerMessage = rmp_serde::from_slice(&spliced).unwrap();
        assert_eq!(back, BrokerMessage::Task { tasks });
    }

    #[test]
    fn python_style_maps_parse() {
        let v = json!({"type": "fail", "guid": "g", "error": "e"});
        assert_eq!(
            parse(v).unwrap(),
            WorkerMessage::Fail {
                guid: "g".into(),
                error: "e".into(),
                retryable: true
            }
        );
        let err = parse(json!({"type": "ready", "stage": "s", "topics": ["t"], "capacity": 0}));
        assert_eq!(err.unwrap_err().code, code::BAD_REQUEST);
        let err = parse(json!({"type": "dance"})).unwrap_err();
        assert_eq!(err.code, code::UNKNOWN_TYPE);
    }

    #[test]
    fn frames_with_or_without_delimiter() {
        let (peer, body) =
            split_frames(vec![Bytes::from("w"), Bytes::new(), Bytes::from("b")]).unwrap();
        assert_eq!((peer.as_ref(), body.as_ref()), (&b"w"[..], &b"b"[..]));
        assert!(split_frames(vec![Bytes::from("w")]).is_err());
    }
}
