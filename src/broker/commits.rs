//! The commit pipeline: while one batch is being written, the next one gathers
//! (group commit). Replies wait for the batch that holds their changes; new tasks
//! wait for it too before they can be handed out.
//!
//! A failed batch is not lost: its operations are written again, first in a later
//! batch, once `hold` has passed; until a commit succeeds the broker refuses new work.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::handlers::Reply;
use crate::protocol::{code, ProtocolError};
use crate::store::sqlite::{FailedCommit, StoreWriter};
use crate::store::StoreOp;

/// How long the pipeline waits after a failed commit before it tries again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// A batch being written.
struct InFlight {
    batch: u64,
    replies: Vec<Reply>,
    /// The last round of new tasks the batch holds.
    round: Option<u64>,
}

/// What a finished commit means for the loop.
pub struct Finished {
    pub replies: Vec<Reply>,
    pub round: Option<u64>,
    /// `Some(why)` when the batch failed.
    pub failure: Option<String>,
}

pub struct Commits {
    pub writer: Option<StoreWriter>,
    next_batch: u64,
    in_flight: Option<InFlight>,
    staged_ops: Vec<StoreOp>,
    staged_replies: Vec<Reply>,
    staged_round: Option<u64>,
    /// No batch is started before this instant (after a failure).
    hold_until: Option<Instant>,
}

impl Commits {
    pub fn new(writer: Option<StoreWriter>) -> Commits {
        Commits {
            writer,
            next_batch: 0,
            in_flight: None,
            staged_ops: Vec::new(),
            staged_replies: Vec::new(),
            staged_round: None,
            hold_until: None,
        }
    }

    /// Adds a round's operations, replies and new-task round to the next batch.
    pub fn stage(&mut self, ops: Vec<StoreOp>, replies: Vec<Reply>, round: Option<u64>) {
        self.staged_ops.extend(ops);
        // Replies keep their order: while a commit is pending, every reply waits
        // behind it, even one that changed nothing.
        self.staged_replies.extend(replies);
        if round.is_some() {
            self.staged_round = round;
        }
    }

    /// Ends the batch in flight. When it failed, the replies that accepted work
    /// become `store_unavailable`, the tasks those puts brought are dropped by the
    /// caller (`dropped` filters their operations out), and every other operation is
    /// written again with the next batch.
    pub fn finish(
        &mut self,
        batch: u64,
        result: Result<(), FailedCommit>,
        now: Instant,
        refuse: impl FnOnce(Option<u64>) -> HashSet<Arc<str>>,
    ) -> Finished {
        let Some(in_flight) = self.in_flight.take() else {
            return Finished {
                replies: Vec::new(),
                round: None,
                failure: None,
            };
        };
        debug_assert_eq!(in_flight.batch, batch);
        let failed = match result {
            Ok(()) => {
                self.hold_until = None;
                return Finished {
                    replies: in_flight.replies,
                    round: in_flight.round,
                    failure: None,
                };
            }
            Err(failed) => failed,
        };
        let error = ProtocolError::new(
            code::STORE_UNAVAILABLE,
            format!("store commit failed: {}", failed.message),
        );
        let replies = in_flight
            .replies
            .into_iter()
            .map(|r| {
                if r.accepts_work {
                    r.into_error(&error)
                } else {
                    r
                }
            })
            .collect();
        let dropped = refuse(in_flight.round);
        let mut again: Vec<StoreOp> = failed
            .ops
            .into_iter()
            .filter(|op| !matches!(op, StoreOp::Probe))
            .filter(|op| !op_guid(op).is_some_and(|g| dropped.contains(g)))
            .collect();
        again.append(&mut self.staged_ops);
        self.staged_ops = again;
        self.hold_until = Some(now + RETRY_AFTER_FAILURE);
        Finished {
            replies,
            round: None,
            failure: Some(failed.message),
        }
    }

    /// Whether a batch is being written or waits to be.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some() || !self.staged_ops.is_empty()
    }

    /// Whether a batch is being written now.
    pub fn writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// When the pipeline may start again after a failure.
    pub fn held_until(&self) -> Option<Instant> {
        self.hold_until.filter(|_| self.in_flight.is_none())
    }

    /// Starts writing the staged batch if none is being written. Returns replies that
    /// need no wait, and the round of new tasks that needs none either (no store).
    /// With `probe`, an empty batch is written to learn whether the store is back.
    pub fn submit(&mut self, now: Instant, probe: bool) -> (Vec<Reply>, Option<u64>) {
        if self.in_flight.is_some() {
            return (Vec::new(), None);
        }
        let Some(writer) = &self.writer else {
            return (
                std::mem::take(&mut self.staged_replies),
                self.staged_round.take(),
            );
        };
        if self.hold_until.is_some_and(|until| now < until) {
            return (Vec::new(), None);
        }
        if self.staged_ops.is_empty() && probe {
            self.staged_ops.push(StoreOp::Probe);
        }
        if self.staged_ops.is_empty() {
            return (
                std::mem::take(&mut self.staged_replies),
                self.staged_round.take(),
            );
        }
        self.next_batch += 1;
        let ops = std::mem::take(&mut self.staged_ops);
        writer.submit(self.next_batch, ops);
        self.in_flight = Some(InFlight {
            batch: self.next_batch,
            replies: std::mem::take(&mut self.staged_replies),
            round: self.staged_round.take(),
        });
        (Vec::new(), None)
    }
}

/// The task an operation writes, if it writes one.
fn op_guid(op: &StoreOp) -> Option<&str> {
    match op {
        StoreOp::Upsert(record) => Some(&record.guid),
        StoreOp::SetState { guid, .. } | StoreOp::Delete { guid } => Some(guid),
        StoreOp::Finish(history) => Some(&history.guid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;
    use crate::protocol::{encode, Format};
    use crate::store::{StoredState, TaskRecord};
    use bytes::Bytes;
    use serde_json::{json, Value};

    fn reply(format: Format, body: &Value, accepts_work: bool) -> Reply {
        Reply {
            frames: vec![Bytes::from("peer"), Bytes::new(), encode(format, body)],
            answer: None,
            format,
            accepts_work,
        }
    }

    fn upsert(guid: &str) -> StoreOp {
        StoreOp::Upsert(TaskRecord {
            guid: guid.into(),
            topic: "t".into(),
            body: Body::default(),
            attempt: 0,
            state: StoredState::Ready,
            timeout: None,
            max_retry: None,
            last_error: None,
            created_at_ms: 1,
        })
    }

    fn in_flight(commits: &mut Commits, replies: Vec<Reply>, round: Option<u64>) {
        commits.in_flight = Some(InFlight {
            batch: 7,
            replies,
            round,
        });
    }

    #[test]
    fn a_failed_commit_refuses_its_puts_in_their_own_encoding_and_keeps_the_rest() {
        let mut commits = Commits::new(None);
        in_flight(
            &mut commits,
            vec![
                reply(Format::Json, &json!(3), false),
                reply(Format::MsgPack, &json!({"guids": ["a"]}), true),
            ],
            Some(4),
        );
        let now = Instant::now();
        let failed = FailedCommit {
            message: "disk full".into(),
            ops: vec![upsert("put-by-client"), upsert("child"), StoreOp::Probe],
        };
        let mut refused_round = None;
        let finished = commits.finish(7, Err(failed), now, |round| {
            refused_round = round;
            HashSet::from([Arc::from("put-by-client")])
        });
        assert_eq!(refused_round, Some(4));
        assert_eq!(finished.failure.as_deref(), Some("disk full"));
        let json_body: Value =
            serde_json::from_slice(finished.replies[0].frames.last().unwrap()).unwrap();
        assert_eq!(json_body, json!(3), "a read stays as it was");
        let packed: Value =
            rmp_serde::from_slice(finished.replies[1].frames.last().unwrap()).unwrap();
        assert_eq!(packed["code"], code::STORE_UNAVAILABLE);
        assert!(packed["error"].as_str().unwrap().contains("disk full"));
        assert_eq!(commits.staged_ops, vec![upsert("child")], "written again");
        assert_eq!(commits.held_until(), Some(now + RETRY_AFTER_FAILURE));
    }

    #[test]
    fn a_committed_batch_releases_its_replies_and_round() {
        let mut commits = Commits::new(None);
        let sent = reply(Format::Json, &json!({"guids": ["a"]}), true);
        let sent_frames = sent.frames.clone();
        in_flight(&mut commits, vec![sent], Some(2));
        let finished = commits.finish(7, Ok(()), Instant::now(), |_| unreachable!());
        assert!(finished.failure.is_none());
        assert_eq!(finished.round, Some(2));
        assert_eq!(finished.replies[0].frames, sent_frames);
        assert!(!commits.busy());
    }
}
