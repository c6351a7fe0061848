//! The scheduler's typed errors: bad requests name the field, lookups name the task.

use thiserror::Error;

/// What went wrong with a scheduler request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// A request field is missing, malformed or out of range; `field` is its dotted
    /// path on the wire (`trigger.cron`, `timezone`, `max_instances`).
    #[error("{field}: {reason}")]
    Invalid {
        /// Dotted path of the offending field.
        field: String,
        /// Why it was refused, lowercase, naming the value.
        reason: String,
    },
    /// No total task has this id.
    #[error("total task not found: {0}")]
    NotFound(String),
    /// A total task with this id already exists.
    #[error("total task already exists: {0}")]
    AlreadyExists(String),
}

impl ScheduleError {
    /// The wire field a validation error is about, if it is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ScheduleError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Shorthand for a validation error about `field`.
pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ScheduleError {
    ScheduleError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}
