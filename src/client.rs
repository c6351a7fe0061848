//! A client of the broker's client endpoint, used by the CLI, the bench and tests.
//!
//! It speaks like a REQ socket (empty delimiter frame) from a DEALER, so that a
//! request that gets no answer in time can be abandoned: the socket is then rebuilt
//! (the "lazy pirate" pattern), since zmq.rs does not reconnect by itself.

use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use zeromq::prelude::*;
use zeromq::{DealerSocket, SocketOptions, ZmqMessage};

use crate::protocol::client::{AckReply, ClientRequest, PutReply, StatsReply};
use crate::protocol::{encode, Format};
use crate::task::{NewTask, Task};

/// A request that did not get a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error("no reply from {endpoint} within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("socket error: {0}")]
    Socket(String),
    #[error("unreadable reply: {0}")]
    Decode(String),
    /// The broker answered with an error reply.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
}

/// One connection to the client endpoint.
pub struct Client {
    endpoint: String,
    format: Format,
    timeout: Duration,
    socket: Option<DealerSocket>,
    /// Sent as `"token"` with every request (`[auth]` on the broker).
    token: Option<String>,
}

impl Client {
    /// Connects to `endpoint`, speaking MessagePack.
    pub async fn connect(endpoint: &str) -> Result<Client, ClientError> {
        let mut client = Client {
            endpoint: endpoint.to_owned(),
            format: Format::MsgPack,
            timeout: Duration::from_secs(10),
            socket: None,
            token: None,
        };
        client.socket = Some(client.open().await?);
        Ok(client)
    }

    /// Speaks JSON instead of MessagePack.
    pub fn with_format(mut self, format: Format) -> Client {
        self.format = format;
        self
    }

    /// How long to wait for each reply.
    /// Sends `token` with every request (a broker with `[auth] required`).
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    async fn open(&self) -> Result<DealerSocket, ClientError> {
        let mut options = SocketOptions::default();
        options.connect_timeout(self.timeout);
        let mut socket = DealerSocket::with_options(options);
        socket
            .connect(&self.endpoint)
            .await
            .map_err(|e| ClientError::Connect {
                endpoint: self.endpoint.clone(),
                message: e.to_string(),
            })?;
        Ok(socket)
    }

    /// Sends raw body bytes and returns the raw reply body.
    pub async fn request_raw(&mut self, body: Bytes) -> Result<Bytes, ClientError> {
        let socket = match self.socket.as_mut() {
            Some(socket) => socket,
            None => self.socket.insert(self.open().await?),
        };
        let message = ZmqMessage::try_from(vec![Bytes::new(), body]).expect("two frames");
        let exchange = async {
            socket
                .send(message)
                .await
                .map_err(|e| ClientError::Socket(e.to_string()))?;
            let reply = socket
                .recv()
                .await
                .map_err(|e| ClientError::Socket(e.to_string()))?;
            reply
                .into_vec()
                .into_iter()
                .rfind(|f| !f.is_empty())
                .ok_or_else(|| ClientError::Decode("empty reply".into()))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => {
                self.socket = None;
                Err(error)
            }
            Err(_) => {
                // The reply may still come on this socket; a fresh one cannot get it.
                self.socket = None;
                Err(ClientError::Timeout {
                    endpoint: self.endpoint.clone(),
                    timeout: self.timeout,
                })
            }
        }
    }

    /// Sends one request and returns its reply; an error reply becomes
    /// [`ClientError::Refused`]. `request` is a [`ClientRequest`]; anything else that
    /// serializes is sent as it is (tests of bad input).
    pub async fn request<R: Serialize + ?Sized>(
        &mut self,
        request: &R,
    ) -> Result<Value, ClientError> {
        let body = match &self.token {
            Some(token) => encode(self.format, &with_token(request, token)?),
            None => encode(self.format, request),
        };
        let reply = self.request_raw(body).await?;
        // The broker answers in the request's encoding.
        let value: Value = match self.format {
            Format::Json => {
                serde_json::from_slice(&reply).map_err(|e| ClientError::Decode(e.to_string()))?
            }
            Format::MsgPack => {
                rmp_serde::from_slice(&reply).map_err(|e| ClientError::Decode(e.to_string()))?
            }
        };
        if let (Some(message), Some(code)) = (value.get("error"), value.get("code")) {
            return Err(ClientError::Refused {
                code: code.as_str().unwrap_or_default().to_owned(),
                message: message.as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(value)
    }

    /// Sends `request` and reads its reply as `T`.
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        request: &ClientRequest,
    ) -> Result<T, ClientError> {
        let reply = self.request(request).await?;
        serde_json::from_value(reply).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Puts tasks; returns their guids once the broker has them on disk.
    pub async fn put(&mut self, tasks: &[NewTask]) -> Result<Vec<String>, ClientError> {
        let request = ClientRequest::PutTask {
            tasks: tasks.to_vec(),
        };
        let reply: PutReply = self.call(&request).await?;
        Ok(reply.guids)
    }

    /// The seed's `get_task`: up to `count` tasks, leased until acked.
    pub async fn get_task(&mut self, topic: &str, count: usize) -> Result<Vec<Task>, ClientError> {
        let request = ClientRequest::GetTask {
            topic: topic.to_owned(),
            count,
        };
        self.call(&request).await
    }

    /// The seed's `get_size`: the number of ready tasks, or `None` for an unknown topic.
    pub async fn get_size(&mut self, topic: &str) -> Result<Option<u64>, ClientError> {
        let request = ClientRequest::GetSize {
            topic: topic.to_owned(),
        };
        Ok(self.request(&request).await?.as_u64())
    }

    /// Ends leases taken with `get_task`.
    pub async fn ack(&mut self, guids: &[String]) -> Result<AckReply, ClientError> {
        let request = ClientRequest::Ack {
            guids: guids.to_vec(),
        };
        self.call(&request).await
    }

    /// Per-topic and per-worker counters, as JSON (for people and tests).
    pub async fn stats(&mut self) -> Result<Value, ClientError> {
        self.request(&ClientRequest::Stats).await
    }

    /// Per-topic and per-worker counters.
    pub async fn stats_reply(&mut self) -> Result<StatsReply, ClientError> {
        self.call(&ClientRequest::Stats).await
    }
}

/// `request` with `"token"` beside its `type`.
fn with_token<R: Serialize + ?Sized>(request: &R, token: &str) -> Result<Value, ClientError> {
    let mut value =
        serde_json::to_value(request).map_err(|e| ClientError::Decode(e.to_string()))?;
    match value.as_object_mut() {
        Some(fields) => {
            fields.insert("token".into(), Value::String(token.to_owned()));
            Ok(value)
        }
        None => Err(ClientError::Decode(
            "a request with a token must be an object".into(),
        )),
    }
}
