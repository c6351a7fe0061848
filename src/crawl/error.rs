//! Errors of the crawl stages' setup and of the executor. Fetch and parse failures
//! of single pages are not errors here: they travel in the task (`sucess: false`,
//! parser `errors`), so no url is lost.

/// What can go wrong building the crawl stages or a task's urls.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    /// No executor is registered under the task's `body.crawl` name and version.
    #[error("executor not found: name={name} version={version}")]
    UnknownExecutor {
        /// `body.crawl.name`.
        name: String,
        /// `body.crawl.version`.
        version: String,
    },
    /// Two executors share a name and version.
    #[error("executor registered twice: name={name} version={version}")]
    DuplicateExecutor {
        /// Executor name.
        name: String,
        /// Executor version.
        version: String,
    },
    /// A template could not be filled from the task.
    #[error("executor {executor}: {reason}")]
    Template {
        /// `name@version` of the executor.
        executor: String,
        /// What was missing or wrong.
        reason: String,
    },
    /// A `[crawl]` setting is invalid.
    #[error("invalid crawl config: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}
