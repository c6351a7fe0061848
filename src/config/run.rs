//! `[run]` of bus.toml: what `taskbus run` (`crate::run`) does besides serving (the
//! demo). A leaf: it imports only the task type. It lives here, not beside `run`,
//! because `run` stands above `config` (it takes the whole `Config` apart).

use serde::Deserialize;

use crate::task::NewTask;

/// `[run]`: what `taskbus run` does besides serving.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Serve the example site here (`127.0.0.1:8089`; port 0 = any free port).
    /// Empty: no site.
    pub example_site: String,
    /// Tasks put once everything is started (`[[run.tasks]]`: `topic`, optional
    /// `guid`, `body`, `timeout`, `max_retry`). `{example_site}` in body strings
    /// becomes the site's base URL.
    pub tasks: Vec<NewTask>,
    /// Stop, print the summary and exit once no queue holds a ready or leased task.
    /// False: serve until Ctrl-C.
    pub exit_when_idle: bool,
    /// With `exit_when_idle`, give up (exit non-zero) after this many seconds.
    /// 0: no limit.
    pub max_secs: f64,
    /// Seconds between progress lines. 0: none.
    pub progress_secs: f64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            example_site: String::new(),
            tasks: Vec::new(),
            exit_when_idle: false,
            max_secs: 0.0,
            progress_secs: 1.0,
        }
    }
}
