//! The scheduler: its pure logic at controlled instants, then inside the broker.
//!
//! - `schedule`: firing once per due time for every trigger, misfire grace,
//!   coalescing, `max_instances`, restarts, pause/resume (`taskbus::scheduler`).
//! - `broker`: the broker's scheduler with a hand-moved clock, across a restart;
//!   `delete_task` drops instances, cancels work and is announced.

mod broker;
mod schedule;
