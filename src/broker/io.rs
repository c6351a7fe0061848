//! The broker's sending side: the sockets' send halves and the commit pipeline. One
//! `flush` per round dispatches, stages the round's store operations and sends what
//! may go now.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;
use zeromq::prelude::*;
use zeromq::{PubSocket, RouterSendHalf, ZmqMessage};

use super::commits::{Commits, Finished};
use super::handlers::{Core, Outbox, Reply};
use super::workers;
use crate::config::Config;
use crate::protocol::worker::task_message;
use crate::protocol::{encode, Format};
use crate::store::sqlite::FailedCommit;

pub struct Io {
    pub config: Arc<Config>,
    pub client: RouterSendHalf,
    pub worker: RouterSendHalf,
    pub events: PubSocket,
    pub commits: Commits,
    /// Replies whose batch has committed, to be sent before anything staged later.
    pub released: Vec<Reply>,
}

impl Io {
    /// A batch was written (or not).
    pub fn on_committed(
        &mut self,
        core: &mut Core,
        batch: u64,
        result: Result<(), FailedCommit>,
        now: Instant,
    ) {
        let state = &mut core.state;
        let Finished {
            replies,
            round,
            failure,
        } = self
            .commits
            .finish(batch, result, now, |round| match round {
                Some(round) => state.refuse(round),
                None => Default::default(),
            });
        if let Some(round) = round {
            core.state.release(round);
        }
        match failure {
            Some(message) => {
                if core.store_error.is_none() {
                    log::error!("store commit of batch {batch} failed, refusing new work until it takes commits again: {message}");
                }
                core.store_error = Some(message);
            }
            None => {
                if core.store_error.take().is_some() {
                    log::warn!("store takes commits again (batch {batch}); accepting work");
                }
            }
        }
        // Sent first in flush: they precede every reply staged since.
        self.released.extend(replies);
    }

    /// Dispatches, stages the round's changes and sends everything that may go now.
    pub async fn flush(&mut self, core: &mut Core, out: Outbox) {
        let now = Instant::now();
        let Outbox {
            replies,
            mut to_workers,
            events,
        } = out;
        for (id, tasks) in core.state.dispatch(now) {
            to_workers.push((id, task_message(&tasks)));
        }
        for reply in std::mem::take(&mut self.released) {
            self.send_client(reply).await;
        }
        let round = core.state.seal_round();
        self.commits
            .stage(core.state.take_journal(), replies, round);
        let (ready, unstored_round) = self.commits.submit(now, core.store_error.is_some());
        if let Some(round) = unstored_round {
            core.state.release(round);
        }
        for reply in ready {
            self.send_client(reply).await;
        }
        for (id, message) in to_workers {
            self.send_worker(core, id, message).await;
        }
        for (name, body) in events {
            let frames = vec![Bytes::from(name.clone()), encode(Format::MsgPack, &body)];
            let message = ZmqMessage::try_from(frames).expect("two frames");
            if let Err(error) = self.events.send(message).await {
                log::warn!("event {name} not published: {error}");
            }
        }
    }

    async fn send_client(&mut self, reply: Reply) {
        let Reply {
            mut frames, answer, ..
        } = reply;
        if let Some(answer) = answer {
            // The caller may have given up (its HTTP client went away): nothing to do.
            let _ = answer.send(frames.pop().unwrap_or_default());
            return;
        }
        let peer = workers::peer_name(&frames[0]);
        let message = ZmqMessage::try_from(frames).expect("reply frames are not empty");
        match tokio::time::timeout(self.config.broker.send_timeout(), self.client.send(message))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => log::debug!("client={peer} reply not sent: {error}"),
            Err(_) => log::warn!("client={peer} reply dropped: peer is not reading"),
        }
    }

    async fn send_worker(&mut self, core: &mut Core, id: Bytes, body: Bytes) {
        let message = ZmqMessage::try_from(vec![id.clone(), body]).expect("two frames");
        let now = Instant::now();
        match tokio::time::timeout(self.config.broker.send_timeout(), self.worker.send(message))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                core.on_unreachable_worker(&id, &format!("unreachable ({error})"), now)
            }
            Err(_) => core.on_unreachable_worker(&id, "not reading", now),
        }
    }
}
