//! The worker protocol on the worker endpoint (DEALER peers): READY, TASK, DONE,
//! FAIL, HEARTBEAT, DISCONNECT, CANCEL. One MessagePack map per message.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{code, fields, message_type, ProtocolError};
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
    },
    /// The task is finished; `next` are the envelopes for the next stage.
    Done {
        guid: String,
        #[serde(default)]
        next: Vec<NewTask>,
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

impl WorkerMessage {
    /// Reads a decoded body.
    pub fn parse(value: Value) -> Result<WorkerMessage, ProtocolError> {
        let kind = message_type(&value)?;
        if !matches!(kind, "ready" | "done" | "fail" | "heartbeat" | "disconnect") {
            return Err(ProtocolError::new(
                code::UNKNOWN_TYPE,
                format!(
                    "unknown worker message type \"{kind}\", expected one of ready, done, fail, heartbeat, disconnect"
                ),
            ));
        }
        let kind = kind.to_owned();
        let message: WorkerMessage = fields(&kind, value)?;
        if let WorkerMessage::Ready { capacity: 0, .. } = message {
            return Err(ProtocolError::new(
                code::BAD_REQUEST,
                "ready: capacity must be >= 1",
            ));
        }
        if let WorkerMessage::Ready { topics, .. } = &message {
            if topics.is_empty() {
                return Err(ProtocolError::new(
                    code::BAD_REQUEST,
                    "ready: topics must not be empty",
                ));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_value, encode, Format};
    use serde_json::json;

    fn round_trip(message: &WorkerMessage) -> WorkerMessage {
        let bytes = encode(Format::MsgPack, message);
        let (value, _) = decode_value(&bytes, 1 << 20).unwrap();
        WorkerMessage::parse(value).unwrap()
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
            },
            WorkerMessage::Done {
                guid: "g".into(),
                next: vec![NewTask::new("b", json!({"x": 1}))],
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
            body: json!({"urls": []}),
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
        }
    }

    #[test]
    fn python_style_maps_parse() {
        let v = json!({"type": "fail", "guid": "g", "error": "e"});
        assert_eq!(
            WorkerMessage::parse(v).unwrap(),
            WorkerMessage::Fail {
                guid: "g".into(),
                error: "e".into(),
                retryable: true
            }
        );
        let err = WorkerMessage::parse(
            json!({"type": "ready", "stage": "s", "topics": ["t"], "capacity": 0}),
        );
        assert_eq!(err.unwrap_err().code, code::BAD_REQUEST);
        let err = WorkerMessage::parse(json!({"type": "dance"})).unwrap_err();
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
