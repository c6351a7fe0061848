//! What both intakes do around packaging: scripts.log lines, the `error` UDP line,
//! deletion in debug mode, and in-process notice retries (bus mode).

use std::path::Path;
use std::time::Duration;

use super::notice::{NoticeNext, NoticeRecord};
use super::package::PackageOutcome;
use super::task::PackageTask;
use super::udp::UdpLevel;
use super::{now_ms, Packager, PackagerEvent};

/// What happens to a task after a failed attempt, for its report line.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Then {
    /// Back in `redis_retry_key` until this time (Unix seconds).
    RetryAt(i64),
    /// The bus will deliver it again (a retryable FAIL).
    Redeliver,
    /// No further attempt.
    GiveUp,
}

impl Packager {
    /// Reports an attempt's outcome: scripts.log always; for a failure also the `error`
    /// UDP line. `retry_at` (Unix seconds) when the task will be tried again.
    pub(crate) async fn report(
        &self,
        task: &PackageTask,
        outcome: &PackageOutcome,
        retry_at: Option<i64>,
    ) {
        let then = retry_at.map_or(Then::GiveUp, Then::RetryAt);
        self.report_as(&task.describe(), outcome, then).await;
    }

    /// `report` for a task named `who` (bus tasks add their guid and topic).
    pub(crate) async fn report_as(&self, who: &str, outcome: &PackageOutcome, then: Then) {
        let path = outcome
            .path
            .as_ref()
            .map_or_else(|| "-".to_string(), |p| p.display().to_string());
        if outcome.status.is_final() {
            log::info!(target: "scripts", "{who} code={} error_key={} path={path} ok",
                outcome.status.code(), outcome.status.key());
            return;
        }
        let mut info = format!(
            "{who} code={} error_key={} message={} detail={}",
            outcome.status.code(),
            outcome.status.key(),
            outcome.status.message(),
            outcome.detail
        );
        match then {
            Then::RetryAt(at) => {
                info.push_str(&format!(" retry_at={at}"));
                log::warn!(target: "scripts", "{info}");
            }
            Then::Redeliver => {
                info.push_str(" retryable=true");
                log::warn!(target: "scripts", "{info}");
            }
            Then::GiveUp => log::error!(target: "scripts", "{info} given up"),
        }
        self.udp.send(UdpLevel::Error, &info).await;
    }

    /// `debug = true`: the package is deleted once uploaded, and nobody is told.
    pub(crate) async fn delete_package(&self, path: &Path) {
        match tokio::fs::remove_file(path).await {
            Ok(()) => {
                log::info!(target: "scripts", "package={} uploaded and deleted (debug)", path.display());
                self.emit(PackagerEvent::Deleted {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => log::error!("cannot delete {} (debug): {e}", path.display()),
        }
    }

    /// Hands the notice to a task of its own, which makes the first attempt at once
    /// and on failure keeps retrying in this process (bus mode has no Redis list to
    /// keep the notice in). The caller does not wait: a slow receiver must not hold up
    /// packaging. `close` waits for the attempt in flight.
    pub(crate) fn notify_in_process(&self, mut record: NoticeRecord) {
        let notifier = self.notifier.clone();
        let udp = self.udp.clone();
        let events = self.events.clone();
        let closing = self.closing.clone();
        self.retries.spawn(async move {
            loop {
                let wait = Duration::from_millis((record.due_ms - now_ms()).max(0) as u64);
                if record.attempts > 0 {
                    tokio::select! {
                    _ = closing.cancelled() => {
                        log::error!(target: "scripts",
                            "{} notice to {} dropped at shutdown after {} attempts",
                            record.task, record.url, record.attempts);
                        return;
                    }
                    _ = tokio::time::sleep(wait) => {}
                    }
                }
                match notifier.attempt(record, &udp, &events).await {
                    NoticeNext::Retry(next) => record = next,
                    NoticeNext::Done | NoticeNext::GaveUp => return,
                }
            }
        });
    }
}
