//! The broker's scheduler (APScheduler's role): total tasks whose triggers put one
//! instance into their topic per due time. The schedule lives in the broker's loop;
//! each firing and the total task's new fire times go to the store in one batch, so
//! a due time fires once across crashes and restarts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::outbox::Outbox;
use super::state::{Origin, State};
use crate::protocol::client::ClientRequest;
use crate::protocol::worker::BrokerMessage;
use crate::protocol::{code, ProtocolError};
use crate::scheduler::{
    instance_body, instance_guid, total_task_id_of, Schedule, ScheduleError, SchedulerConfig,
    TotalTask,
};
use crate::store::StoreOp;
use crate::task::{root_guid, NewTask};

/// Where the scheduler reads the time: the system clock, or a test's hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told (tests).
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(start)))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = t;
    }
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// The schedule and what it needs, owned by the broker's loop.
pub struct Scheduling {
    schedule: Schedule,
    config: SchedulerConfig,
    clock: Arc<dyn Clock>,
    /// Checks done so far (shown by `stats`, so a client can tell one has happened).
    ticks: u64,
}

/// Whether `guid` is an instance of total task `id`, or descends from one.
fn of_total_task(guid: &str, id: &str) -> bool {
    total_task_id_of(root_guid(guid)) == Some(id)
}

impl Scheduling {
    /// A schedule restored from the store's saved total tasks.
    pub fn new(config: SchedulerConfig, clock: Arc<dyn Clock>, saved: Vec<Value>) -> Scheduling {
        let tasks =
            saved
                .into_iter()
                .filter_map(|spec| match serde_json::from_value::<TotalTask>(spec) {
                    Ok(task) => Some(task),
                    Err(error) => {
                        log::error!(
                            "scheduler: a saved total task cannot be read and is skipped: {error}"
                        );
                        None
                    }
                });
        Scheduling {
            schedule: Schedule::from_tasks(tasks),
            config,
            clock,
            ticks: 0,
        }
    }

    /// How long the loop may sleep before the next check.
    pub fn next_check_in(&self) -> Duration {
        let tick = Duration::from_millis(self.config.tick_interval_ms);
        match self.schedule.next_wakeup() {
            Some(at) => (at - self.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(tick),
            None => tick,
        }
    }

    /// Fires what is due: one instance per firing, queued with the total task's new
    /// fire times in the same store batch.
    pub fn tick(&mut self, state: &mut State) {
        self.ticks += 1;
        let now = self.clock.now();
        loop {
            let firings = self.schedule.due(now, |id| {
                state.count_live(|guid| !guid.contains('/') && total_task_id_of(guid) == Some(id))
            });
            for firing in &firings {
                let Some(task) = self.schedule.get(&firing.task_id) else {
                    continue;
                };
                let mut instance = NewTask::new(task.topic.clone(), instance_body(task, firing));
                instance.guid = Some(instance_guid(&task.id));
                match state.put(instance, Origin::Derived) {
                    Ok(guid) => log::info!(
                        target: "scripts",
                        "guid={guid} topic={} total_task={} fired for {}", task.topic, task.id, firing.scheduled_for
                    ),
                    Err(error) => {
                        log::error!("total_task={} instance refused: {error}", task.id);
                        let id = task.id.clone();
                        self.schedule
                            .record_result(&id, format!("instance refused: {}", error.message));
                    }
                }
            }
            self.save_changed(state);
            let more = self.schedule.next_wakeup().is_some_and(|at| at <= now);
            if firings.is_empty() || !more {
                break;
            }
        }
    }

    /// The scheduler's line in `stats`.
    pub fn stats(&self) -> Value {
        json!({
            "total_tasks": self.schedule.len(),
            "ticks": self.ticks,
            "next_wakeup": self.schedule.next_wakeup().map(|t| t.to_rfc3339()),
        })
    }

    fn save_changed(&mut self, state: &mut State) {
        for task in self.schedule.take_changed() {
            let spec = serde_json::to_value(&task).expect("total tasks serialize");
            state.journal_op(StoreOp::PutSchedule {
                id: task.id.clone(),
                spec,
            });
        }
    }

    fn delete(
        &mut self,
        state: &mut State,
        id: &str,
        by: Option<String>,
        out: &mut Outbox,
    ) -> Result<Value, ProtocolError> {
        let task = self.schedule.delete(id).map_err(schedule_error)?;
        let (dropped, held) = state.remove_lineage(|guid| of_total_task(guid, id));
        for (worker, guids) in held {
            out.to_worker(
                worker,
                &BrokerMessage::Cancel {
                    guids,
                    reason: format!("total task {id} deleted"),
                },
            );
        }
        let record = json!({
            "id": id,
            "topic": task.topic,
            "by": by.unwrap_or_else(|| "client".into()),
            "at": self.clock.now().to_rfc3339(),
            "dropped": dropped.len(),
            "guids": dropped,
        });
        log::info!(target: "scripts", "total_task={id} deleted by {}, {} instances dropped", record["by"], dropped.len());
        state.journal_op(StoreOp::DropSchedule {
            id: id.to_owned(),
            record: record.clone(),
        });
        out.events.push(("task_deleted".into(), record.clone()));
        Ok(record)
    }
}

impl Scheduling {
    /// Answers a scheduler verb (`add_task`, `modify_task`, `pause_task`,
    /// `resume_task`, `delete_task`, and the scheduled half of `list_tasks`).
    pub fn handle(
        &mut self,
        state: &mut State,
        request: ClientRequest,
        out: &mut Outbox,
    ) -> Result<Value, ProtocolError> {
        let now = self.clock.now();
        let reply = match request {
            ClientRequest::AddTask { spec } => {
                let task = TotalTask::from_request_with(&spec, &self.config, now)
                    .map_err(schedule_error)?;
                let task = self.schedule.add(task).map_err(schedule_error)?;
                log::info!("total_task={} added on topic {}", task.id, task.topic);
                describe(task)
            }
            ClientRequest::ModifyTask { id, mut patch } => {
                if let Some(map) = patch.as_object_mut() {
                    map.remove("type");
                    map.remove("id");
                }
                let task = self
                    .schedule
                    .modify(&id, &patch, now)
                    .map_err(schedule_error)?;
                describe(task)
            }
            ClientRequest::PauseTask { id } => {
                let task = self.schedule.pause(&id).map_err(schedule_error)?;
                describe(task)
            }
            ClientRequest::ResumeTask { id } => {
                let task = self.schedule.resume(&id, now).map_err(schedule_error)?;
                describe(task)
            }
            ClientRequest::DeleteTask { id, by } => self.delete(state, &id, by, out)?,
            ClientRequest::ListTasks(_) => {
                Value::Array(self.schedule.list().map(describe).collect())
            }
            other => unreachable!("not a scheduler verb: {other:?}"),
        };
        self.save_changed(state);
        Ok(reply)
    }
}

/// A total task as replies show it: its fields plus `status`.
fn describe(task: &TotalTask) -> Value {
    let mut value = serde_json::to_value(task).expect("total tasks serialize");
    value["status"] = json!(task.status());
    value
}

fn schedule_error(error: ScheduleError) -> ProtocolError {
    let code = match error {
        ScheduleError::NotFound(_) => code::NOT_FOUND,
        _ => code::BAD_REQUEST,
    };
    ProtocolError::new(code, error.to_string())
}
