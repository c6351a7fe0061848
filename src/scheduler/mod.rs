//! Scheduler of recurring "total tasks" (APScheduler's role): triggers, validation of
//! requests, and the decision of which runs fire. Pure logic: no I/O, no clock reads;
//! the broker passes `now` and persists what changes.
//!
//! The broker owns one `Schedule` in its event loop, calls `Schedule::due` when
//! `Schedule::next_wakeup` comes (at least every `tick_interval_ms`), enqueues one
//! instance per `Firing` (guid from `instance_guid`, body from `instance_body`) and
//! writes `last_fire_time = scheduled_for` and the firing's `next_fire_time` in the
//! same transaction, then the rows from `Schedule::take_changed`.
//!
//! **Invariant:** a task's `next_fire_time` only moves forward, past every run it
//! decided (fired or skipped), and a run at or before `last_fire_time` never fires.

mod config;
mod error;
mod instance;
mod schedule;
mod task;
mod timefmt;
mod trigger;

pub use config::{SchedulerConfig, DEFAULT_MISFIRE_GRACE_SECS};
pub use error::ScheduleError;
pub use instance::{instance_body, instance_guid, total_task_id_of};
pub use schedule::{Firing, Schedule, MAX_RUNS_PER_CALL};
pub use task::TotalTask;
pub use trigger::Trigger;

#[cfg(test)]
mod tests;
