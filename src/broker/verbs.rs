//! The client verbs: one handler per request type, each turning a typed request into
//! its typed reply. The transports (the ZeroMQ client endpoint today) call
//! [`Core::answer`]; none has a handler of its own.

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use super::handlers::{Core, Outbox};
use super::schedule::Scheduling;
use super::state::{Holder, Origin};
use crate::protocol::client::{
    AckReply, ClientRequest, DeadListReply, DeadPurgeReply, DeadRetryReply, ListFilter, NackReply,
    PutReply, StatsReply, StoreStats, INVALID_QUEUE,
};
use crate::protocol::worker::{write_task_list, Delivery};
use crate::protocol::{code, try_encode, Format, ProtocolError};
use crate::task::NewTask;

impl ClientRequest {
    /// Whether the reply accepts new work (and must wait for, and depends on, the
    /// commit that keeps it).
    pub fn accepts_work(&self) -> bool {
        matches!(
            self,
            ClientRequest::PutTask { .. } | ClientRequest::AddTask { .. }
        )
    }
}

impl Core {
    /// Answers one request with the encoded reply body.
    pub fn answer(
        &mut self,
        request: ClientRequest,
        format: Format,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<Bytes, ProtocolError> {
        match request {
            ClientRequest::GetTask { topic, count } => self.get_task(&topic, count, format, now),
            ClientRequest::GetSize { topic } => match self.state.size(&topic) {
                Some(n) => try_encode(format, &n),
                None => try_encode(format, INVALID_QUEUE),
            },
            ClientRequest::PutTask { tasks } => self.put_task(tasks, format),
            ClientRequest::Ack { guids } => self.ack(guids, format),
            ClientRequest::Nack {
                guid,
                retryable,
                error,
            } => {
                let error = error.unwrap_or_else(|| "nacked by client".into());
                let state = self.state.fail(&guid, error, retryable, now)?.to_owned();
                try_encode(format, &NackReply { guid, state })
            }
            ClientRequest::ListTasks(filter) => self.list_tasks(filter, format, now, out),
            ClientRequest::TaskStatus { guid } => match self.state.task_status(&guid, now) {
                Some(found) => try_encode(format, &found),
                None => Err(ProtocolError::new(
                    code::NOT_FOUND,
                    format!("no task with guid \"{guid}\""),
                )),
            },
            ClientRequest::Stats => self.stats(format, now),
            ClientRequest::DeadList { topic, limit } => {
                let guids = self.state.dead_guids(topic.as_deref());
                let tasks: Vec<_> = guids
                    .iter()
                    .take(limit)
                    .filter_map(|g| self.state.task_status(g, now))
                    .collect();
                let total = guids.len();
                try_encode(format, &DeadListReply { total, tasks })
            }
            ClientRequest::DeadRetry { topic, guids } => {
                let guids = self.dead_selection(topic.as_deref(), guids);
                let retried = guids.iter().filter(|g| self.state.retry_dead(g)).count();
                try_encode(format, &DeadRetryReply { retried })
            }
            ClientRequest::DeadPurge { topic, guids } => {
                let guids = self.dead_selection(topic.as_deref(), guids);
                let purged = guids.iter().filter(|g| self.state.purge_dead(g)).count();
                try_encode(format, &DeadPurgeReply { purged })
            }
            scheduled @ (ClientRequest::AddTask { .. }
            | ClientRequest::ModifyTask { .. }
            | ClientRequest::PauseTask { .. }
            | ClientRequest::ResumeTask { .. }
            | ClientRequest::DeleteTask { .. }) => {
                if scheduled.accepts_work() {
                    if let Some(error) = self.work_refusal() {
                        return Err(error);
                    }
                }
                let Some(schedule) = self.schedule.as_mut() else {
                    return Err(ProtocolError::new(
                        code::UNKNOWN_TYPE,
                        "this broker runs no scheduler",
                    ));
                };
                let reply = schedule.handle(&mut self.state, scheduled, out)?;
                try_encode(format, &reply)
            }
        }
    }

    /// The seed's `get_task`: up to `count` tasks of `topic`, leased to the client.
    fn get_task(
        &mut self,
        topic: &str,
        count: usize,
        format: Format,
        now: Instant,
    ) -> Result<Bytes, ProtocolError> {
        let tasks: Vec<Delivery> = (0..count)
            .map_while(|_| self.state.lease_next(topic, Holder::Client, now))
            .collect();
        match format {
            Format::MsgPack => {
                let mut out = Vec::with_capacity(tasks.iter().map(|t| t.body.len() + 96).sum());
                write_task_list(&mut out, &tasks);
                Ok(Bytes::from(out))
            }
            Format::Json => {
                let tasks: Vec<_> = tasks.iter().map(Delivery::to_task).collect();
                try_encode(format, &tasks)
            }
        }
    }

    fn put_task(&mut self, tasks: Vec<NewTask>, format: Format) -> Result<Bytes, ProtocolError> {
        if let Some(error) = self.work_refusal() {
            return Err(error);
        }
        // Validate all first, so that a bad task in a batch accepts none.
        for (i, task) in tasks.iter().enumerate() {
            if task.topic.as_deref().is_none_or(str::is_empty) {
                return Err(ProtocolError::new(
                    code::BAD_REQUEST,
                    format!("tasks[{i}]: missing field `topic`"),
                ));
            }
        }
        let guids = tasks
            .into_iter()
            .map(|task| self.state.put(task, Origin::Put))
            .collect::<Result<Vec<_>, _>>()?;
        try_encode(format, &PutReply { guids })
    }

    fn ack(&mut self, guids: Vec<String>, format: Format) -> Result<Bytes, ProtocolError> {
        let mut acked = 0;
        let mut missing = Vec::new();
        for guid in guids {
            match self.state.complete(&guid, Vec::new(), None) {
                Ok(_) => acked += 1,
                Err(_) => missing.push(guid),
            }
        }
        try_encode(format, &AckReply { acked, missing })
    }

    fn list_tasks(
        &mut self,
        filter: ListFilter,
        format: Format,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<Bytes, ProtocolError> {
        let queued = self.state.list(
            filter.topic.as_deref(),
            filter.state.as_deref(),
            filter.limit,
            now,
        );
        let scheduled = match self.schedule.as_mut() {
            Some(schedule) => {
                Some(schedule.handle(&mut self.state, ClientRequest::ListTasks(filter), out)?)
            }
            None => None,
        };
        #[derive(Serialize)]
        struct Listing<T, S> {
            queued: T,
            #[serde(skip_serializing_if = "Option::is_none")]
            scheduled: Option<S>,
        }
        try_encode(format, &Listing { queued, scheduled })
    }

    fn stats(&self, format: Format, now: Instant) -> Result<Bytes, ProtocolError> {
        let kind = if self.state.is_durable() {
            "sqlite"
        } else {
            "memory"
        };
        let store = StoreStats {
            kind: kind.into(),
            state: if self.store_error.is_some() {
                "refusing_work"
            } else {
                "ok"
            }
            .into(),
            error: self.store_error.clone(),
        };
        let reply = StatsReply {
            topics: self.state.topic_stats(),
            workers: self.state.workers.stats(now),
            scheduler: self.schedule.as_ref().map(Scheduling::stats),
            store,
        };
        try_encode(format, &reply)
    }

    fn dead_selection(&self, topic: Option<&str>, guids: Vec<String>) -> Vec<String> {
        if guids.is_empty() {
            self.state.dead_guids(topic)
        } else {
            guids
        }
    }
}
