//! The collection of total tasks the broker owns, and `due`: which runs fire now.
//!
//! Semantics are APScheduler's: misfire grace, coalescing, max_instances. Every run
//! is decided once: `next_fire_time` only moves forward, past every run it decided,
//! and `last_fire_time` (the last run that fired) is never fired again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ScheduleError;
use super::task::TotalTask;

/// Most runs one task yields in one `due` call when it does not coalesce; the rest
/// stay due (its `next_fire_time` stays in the past) and come in the next call.
pub const MAX_RUNS_PER_CALL: usize = 100;

/// One run to enqueue: an instance of `task_id` for its due time `scheduled_for`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    /// The total task that fired.
    pub task_id: String,
    /// The due time this run is for (the trigger's time, not the clock's).
    pub scheduled_for: DateTime<Utc>,
    /// When it was fired (the `now` given to `due`).
    pub fire_time: DateTime<Utc>,
    /// The task's `next_fire_time` once this run is recorded. Persist it, with
    /// `last_fire_time = scheduled_for`, in the transaction that stores the instance.
    pub next_fire_time: Option<DateTime<Utc>>,
}

/// The broker's total tasks, keyed by id. Serializes as a JSON list of tasks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<TotalTask>", into = "Vec<TotalTask>")]
pub struct Schedule {
    tasks: BTreeMap<String, TotalTask>,
    /// Ids whose stored row is out of date (see `take_changed`).
    changed: BTreeSet<String>,
}

impl From<Vec<TotalTask>> for Schedule {
    fn from(tasks: Vec<TotalTask>) -> Self {
        Schedule::from_tasks(tasks)
    }
}

impl From<Schedule> for Vec<TotalTask> {
    fn from(schedule: Schedule) -> Self {
        schedule.tasks.into_values().collect()
    }
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Schedule {
        Schedule::default()
    }

    /// A schedule of tasks loaded from the store, as they were saved: a past
    /// `next_fire_time` fires at the next `due` call (once, when coalescing).
    pub fn from_tasks(tasks: impl IntoIterator<Item = TotalTask>) -> Schedule {
        let mut schedule = Schedule::new();
        for task in tasks {
            if let Some(old) = schedule.tasks.insert(task.id.clone(), task) {
                log::warn!("total_task={} loaded twice, keeping the later row", old.id);
            }
        }
        schedule
    }

    /// Adds a task built by `TotalTask::from_request`.
    pub fn add(&mut self, task: TotalTask) -> Result<&TotalTask, ScheduleError> {
        if self.tasks.contains_key(&task.id) {
            return Err(ScheduleError::AlreadyExists(task.id));
        }
        log::info!(
            "total_task={} topic={} added next_fire_time={:?}",
            task.id,
            task.topic,
            task.next_fire_time
        );
        let id = task.id.clone();
        self.changed.insert(id.clone());
        Ok(self.tasks.entry(id).or_insert(task))
    }

    /// The task with this id.
    pub fn get(&self, id: &str) -> Option<&TotalTask> {
        self.tasks.get(id)
    }

    /// All tasks, ordered by id.
    pub fn list(&self) -> impl Iterator<Item = &TotalTask> + '_ {
        self.tasks.values()
    }

    /// How many tasks there are.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Applies a patch (see `TotalTask::modify`); nothing changes on error.
    pub fn modify(
        &mut self,
        id: &str,
        patch: &Value,
        now: DateTime<Utc>,
    ) -> Result<&TotalTask, ScheduleError> {
        let task = self.entry(id)?;
        task.modify(patch, now)?;
        log::info!(
            "total_task={} modified next_fire_time={:?}",
            id,
            task.next_fire_time
        );
        self.mark(id)
    }

    /// Pauses a task: it keeps its state but has no `next_fire_time` and never fires.
    pub fn pause(&mut self, id: &str) -> Result<&TotalTask, ScheduleError> {
        let task = self.entry(id)?;
        task.paused = true;
        task.next_fire_time = None;
        log::info!("total_task={} paused", id);
        self.mark(id)
    }

    /// Resumes a paused task; its next fire time counts from `now`, so the due times
    /// it slept through never fire. A running task is left as it is.
    pub fn resume(&mut self, id: &str, now: DateTime<Utc>) -> Result<&TotalTask, ScheduleError> {
        let task = self.entry(id)?;
        if task.paused {
            task.paused = false;
            task.next_fire_time = task.first_due(now);
            log::info!(
                "total_task={} resumed next_fire_time={:?}",
                id,
                task.next_fire_time
            );
        }
        self.mark(id)
    }

    /// Removes a task and returns it, so the broker can record and announce it.
    pub fn delete(&mut self, id: &str) -> Result<TotalTask, ScheduleError> {
        self.changed.remove(id);
        let task = self
            .tasks
            .remove(id)
            .ok_or_else(|| ScheduleError::NotFound(id.to_string()))?;
        log::info!("total_task={} topic={} deleted", id, task.topic);
        Ok(task)
    }

    /// Records what an instance ended with (e.g. `"ok"`, `"failed: timeout"`) as the
    /// task's `last_result`; `None` if the task is gone.
    pub fn record_result(&mut self, id: &str, result: impl Into<String>) -> Option<&TotalTask> {
        self.tasks.get_mut(id)?.last_result = Some(result.into());
        self.mark(id).ok()
    }

    /// Decides every run due at `now` and advances `next_fire_time`/`last_fire_time`
    /// in the same step. `outstanding(task_id)` is how many instances of the task are
    /// queued or leased. Firings come ordered by due time, then task id.
    pub fn due(&mut self, now: DateTime<Utc>, outstanding: impl Fn(&str) -> usize) -> Vec<Firing> {
        let mut firings = Vec::new();
        for task in self.tasks.values_mut() {
            let before = (task.next_fire_time, task.last_result.clone());
            if is_due(task, now) {
                let n_outstanding = outstanding(&task.id);
                firings.extend(decide_runs(task, now, n_outstanding));
            }
            if before != (task.next_fire_time, task.last_result.clone()) {
                self.changed.insert(task.id.clone());
            }
        }
        firings.sort_by(|a, b| (a.scheduled_for, &a.task_id).cmp(&(b.scheduled_for, &b.task_id)));
        firings
    }

    /// Earliest `next_fire_time` of any task: when the broker should call `due` next
    /// (in the past when runs are still pending).
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        self.tasks
            .values()
            .filter(|t| !t.paused)
            .filter_map(|t| t.next_fire_time)
            .min()
    }

    /// The tasks changed since the last call (by `due`, `add`, `modify`, `pause`,
    /// `resume`, `record_result`): the rows the broker must write back.
    pub fn take_changed(&mut self) -> Vec<TotalTask> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .filter_map(|id| self.tasks.get(&id).cloned())
            .collect()
    }

    fn entry(&mut self, id: &str) -> Result<&mut TotalTask, ScheduleError> {
        self.tasks
            .get_mut(id)
            .ok_or_else(|| ScheduleError::NotFound(id.to_string()))
    }

    fn mark(&mut self, id: &str) -> Result<&TotalTask, ScheduleError> {
        self.changed.insert(id.to_string());
        self.tasks
            .get(id)
            .ok_or_else(|| ScheduleError::NotFound(id.to_string()))
    }
}

/// Whether the task has a run due by `now`. A `next_fire_time` at or before
/// `last_fire_time` (an old row, a restored backup) is first moved past it, so a run
/// that fired is never fired again.
fn is_due(task: &mut TotalTask, now: DateTime<Utc>) -> bool {
    if task.paused {
        return false;
    }
    let (Some(next), Some(last)) = (task.next_fire_time, task.last_fire_time) else {
        return task.next_fire_time.is_some_and(|next| next <= now);
    };
    if next <= last {
        log::warn!(
            "total_task={} next_fire_time={} not after last_fire_time={}, moved on",
            task.id,
            next,
            last
        );
        task.next_fire_time = task.next_after(last);
    }
    task.next_fire_time.is_some_and(|next| next <= now)
}

/// Decides the runs of one due task: fire, skip as missed (older than the grace), or
/// skip at max_instances; then moves `next_fire_time` past them.
fn decide_runs(task: &mut TotalTask, now: DateTime<Utc>, outstanding: usize) -> Vec<Firing> {
    let Some(first) = task.next_fire_time else {
        return Vec::new();
    };
    let (runs, next) = if task.coalesce {
        coalesced_run(task, first, now)
    } else {
        each_run(task, first, now)
    };
    let mut n_outstanding = outstanding;
    let mut firings = Vec::new();
    for (i, &run) in runs.iter().enumerate() {
        if !task.within_grace(run, now) {
            let late = (now - run).num_seconds();
            let grace = task.misfire_grace_time.unwrap_or_default();
            log::warn!(
                "total_task={} scheduled_for={} missed: {}s late, grace {}s",
                task.id,
                run,
                late,
                grace
            );
            task.last_result = Some(format!(
                "missed run of {}: {late}s late, misfire_grace_time {grace}s",
                run.to_rfc3339()
            ));
        } else if n_outstanding >= task.max_instances as usize {
            log::warn!(
                "total_task={} scheduled_for={} skipped: {} outstanding",
                task.id,
                run,
                n_outstanding
            );
            task.last_result = Some(format!(
                "skipped run of {}: max_instances {} reached ({n_outstanding} outstanding)",
                run.to_rfc3339(),
                task.max_instances
            ));
        } else {
            n_outstanding += 1;
            task.last_fire_time = Some(run);
            task.last_result = Some(format!("fired run of {}", run.to_rfc3339()));
            log::info!(
                "total_task={} topic={} scheduled_for={} fired",
                task.id,
                task.topic,
                run
            );
            firings.push(Firing {
                task_id: task.id.clone(),
                scheduled_for: run,
                fire_time: now,
                next_fire_time: runs.get(i + 1).copied().or(next),
            });
        }
    }
    task.next_fire_time = next;
    firings
}

/// Coalescing: one run, for the latest due time at or before `now`.
fn coalesced_run(
    task: &TotalTask,
    first: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let latest = task
        .last_due_at_or_before(now)
        .filter(|latest| *latest >= first)
        .unwrap_or(first);
    (vec![latest], task.next_after(now.max(latest)))
}

/// No coalescing: every due time from `first` to `now`. Runs older than the grace
/// are all missed, so only the first of them is listed (to be recorded as missed)
/// and the search jumps to the oldest run still within the grace.
fn each_run(
    task: &TotalTask,
    first: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let mut runs = Vec::new();
    let mut cursor = Some(first);
    if let Some(oldest) = task.grace().and_then(|grace| now.checked_sub_signed(grace)) {
        if first < oldest {
            runs.push(first);
            cursor = task.next_after(oldest - TimeDelta::nanoseconds(1));
        }
    }
    while let Some(run) = cursor {
        if run > now || runs.len() >= MAX_RUNS_PER_CALL {
            break;
        }
        runs.push(run);
        cursor = task.next_after(run);
    }
    (runs, cursor)
}
