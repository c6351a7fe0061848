//! Typed errors of the storer: what a caller must act on (retry the task, or give up).

/// Errors of the storer. A row the database refuses is NOT an error: it is reported in
/// [`StoreReport::refused`](super::StoreReport::refused) while the rest is stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StorerError {
    /// The task type cannot be a table name (the message names it and says why).
    #[error("invalid table name {name:?}: {why}")]
    InvalidTable { name: String, why: String },
    /// The `[storer]` configuration cannot be used.
    #[error("invalid storer config: {0}")]
    Config(String),
    /// The database failed as a whole (unreachable, disk full, lost connection, a DDL
    /// statement refused); no row of the affected request was stored.
    #[error("{backend} error on {target}: {message}")]
    Database {
        /// `mysql` or `sqlite`.
        backend: &'static str,
        /// Where: `host:port/db` (never the password) or the SQLite file path.
        target: String,
        /// The database's own message.
        message: String,
        /// True when trying the same rows again later may succeed.
        retryable: bool,
    },
    /// The storer was closed (or its writer died) before the request was answered.
    #[error("storer is closed")]
    Closed,
}

impl StorerError {
    /// True when the same request may succeed later (the task should go back to its
    /// queue rather than to the dead letters).
    pub fn is_retryable(&self) -> bool {
        match self {
            StorerError::Database { retryable, .. } => *retryable,
            StorerError::Closed => true,
            StorerError::InvalidTable { .. } | StorerError::Config(_) => false,
        }
    }
}

/// Result alias of the storer.
pub type Result<T, E = StorerError> = std::result::Result<T, E>;
