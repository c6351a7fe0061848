//! What one round of handlers wants sent: replies to clients (after the commit that
//! holds their changes), messages to workers, and events.

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::protocol::worker::{encode_broker_message, BrokerMessage};
use crate::protocol::{encode, Format, ProtocolError};

/// A reply to a client: its ROUTER frames (or, for a call from another transport,
/// the body alone) and the encoding of the request.
#[derive(Debug)]
pub struct Reply {
    pub frames: Vec<Bytes>,
    /// Where a call from another transport (HTTP) waits for the body; `None` for the
    /// ZeroMQ client endpoint, whose frames name the peer.
    pub answer: Option<oneshot::Sender<Bytes>>,
    pub format: Format,
    /// Whether the reply accepts work (a put, a new total task): when the commit
    /// holding it fails, the reply becomes `store_unavailable`.
    pub accepts_work: bool,
}

impl Reply {
    /// The same reply with its body replaced by `error`.
    pub fn into_error(mut self, error: &ProtocolError) -> Reply {
        if let Some(body) = self.frames.last_mut() {
            *body = encode(self.format, &error.to_value());
        }
        self
    }
}

/// Messages the handlers want sent.
#[derive(Default)]
pub struct Outbox {
    /// Replies to clients. Sent once the store has committed what the round changed.
    pub replies: Vec<Reply>,
    /// Encoded messages to workers, sent at once.
    pub to_workers: Vec<(Bytes, Bytes)>,
    /// Events for the PUB socket: (event name, body).
    pub events: Vec<(String, Value)>,
}

impl Outbox {
    /// Queues `message` for worker `id`.
    pub fn to_worker(&mut self, id: Bytes, message: &BrokerMessage) {
        self.to_workers.push((id, encode_broker_message(message)));
    }
}
