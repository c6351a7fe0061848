//! The finish notice: a POST to `finish_notice_url`, answered `success` (done), `miss`
//! (the package is not there: a `waring` UDP line, done) or anything else (retry with
//! exponential backoff, a bounded number of times, then recorded as failed).
//!
//! Body fields (form-encoded by default, JSON with `notice_format = "json"`):
//! `errorCode`, `error_key`, `message` (the seed's status table), `filename`,
//! `channel_id`, `channel_version`, `apk` (package file name), `path` (absolute local
//! path, whatever the worker's working directory),
//! `urls` (upload locations; comma-separated in a form).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{NoticeFormat, PackagerConfig, RetryBounds};
use super::package::PackageOutcome;
use super::task::PackageTask;
use super::udp::{UdpLevel, UdpLogger};
use super::{now_ms, PackagerEvent};

/// What the notice URL answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeResult {
    /// Body `success`.
    Delivered,
    /// Body `miss`: the receiver could not find the package.
    Missing,
    /// Anything else, or no answer.
    Failed(String),
}

/// A notice waiting to be sent (again); the JSON stored in `notice_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeRecord {
    /// Where to POST.
    pub url: String,
    /// The fields to send.
    pub payload: Map<String, Value>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (Unix milliseconds).
    pub due_ms: i64,
    /// `filename=.. channel_id=..`, for log lines.
    pub task: String,
}

/// What to do with a notice after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NoticeNext {
    /// Nothing more to do.
    Done,
    /// Try again at `record.due_ms`.
    Retry(NoticeRecord),
    /// Out of attempts; recorded as failed.
    GaveUp,
}

/// POSTs notices.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    format: NoticeFormat,
    bounds: RetryBounds,
}

impl Notifier {
    /// A notifier with the configured timeout, format and bounds.
    pub fn from_config(cfg: &PackagerConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.notice_timeout))
            .build()?;
        Ok(Self {
            client,
            format: cfg.notice_format,
            bounds: cfg.notice_retry,
        })
    }

    /// Sends one notice and reads the answer.
    pub async fn post(&self, url: &str, payload: &Map<String, Value>) -> NoticeResult {
        let request = self.client.post(url);
        let request = match self.format {
            NoticeFormat::Form => request.form(&form_fields(payload)),
            NoticeFormat::Json => request.json(payload),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return NoticeResult::Failed(e.to_string()),
        };
        let status = response.status();
        let body = match response.text().await {
            Ok(body) => body,
            Err(e) => return NoticeResult::Failed(format!("http {status}: {e}")),
        };
        match body.trim() {
            "success" if status.is_success() => NoticeResult::Delivered,
            "miss" if status.is_success() => NoticeResult::Missing,
            other => NoticeResult::Failed(format!("http {status}: {}", snippet(other))),
        }
    }

    /// Makes one attempt of `record` and says what comes next; logs the outcome, sends
    /// the `waring` UDP line on `miss`, and reports the event.
    pub async fn attempt(
        &self,
        mut record: NoticeRecord,
        udp: &UdpLogger,
        events: &tokio::sync::broadcast::Sender<PackagerEvent>,
    ) -> NoticeNext {
        let result = self.post(&record.url, &record.payload).await;
        record.attempts += 1;
        let _ = events.send(PackagerEvent::Notice {
            url: record.url.clone(),
            attempt: record.attempts,
            result: result.clone(),
        });
        match result {
            NoticeResult::Delivered => {
                log::info!(target: "scripts", "{} notice delivered to {}", record.task, record.url);
                NoticeNext::Done
            }
            NoticeResult::Missing => {
                let path = record.payload.get("path").and_then(Value::as_str);
                let info = format!(
                    "{} apk not found by notice receiver {} path={}",
                    record.task,
                    record.url,
                    path.unwrap_or("-")
                );
                udp.send(UdpLevel::Waring, &info).await;
                NoticeNext::Done
            }
            NoticeResult::Failed(why) if record.attempts >= self.bounds.max_attempts => {
                log::error!(target: "scripts",
                    "{} notice to {} failed after {} attempts: {why}",
                    record.task, record.url, record.attempts);
                let _ = events.send(PackagerEvent::NoticeGaveUp {
                    url: record.url.clone(),
                    attempts: record.attempts,
                });
                NoticeNext::GaveUp
            }
            NoticeResult::Failed(why) => {
                let delay = self.bounds.delay_ms(record.attempts);
                log::warn!(
                    "{} notice attempt {} to {} failed: {why}; again in {delay} ms",
                    record.task,
                    record.attempts,
                    record.url
                );
                record.due_ms = now_ms() + delay as i64;
                NoticeNext::Retry(record)
            }
        }
    }
}

/// The first notice of a task; none when the task has no `finish_notice_url`.
pub fn notice_record(
    task: &PackageTask,
    outcome: &PackageOutcome,
    urls: &[String],
) -> Option<NoticeRecord> {
    let url = task.finish_notice_url()?.to_string();
    let mut payload = Map::new();
    payload.insert("errorCode".into(), outcome.status.code().into());
    payload.insert("error_key".into(), outcome.status.key().into());
    payload.insert("message".into(), outcome.status.message().into());
    payload.insert(
        "filename".into(),
        task.filename().unwrap_or_default().into(),
    );
    payload.insert(
        "channel_id".into(),
        task.channel_id().unwrap_or_default().into(),
    );
    let version = task
        .extend()
        .and_then(|e| e.get("channel_version"))
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .unwrap_or_default();
    payload.insert("channel_version".into(), version.into());
    if let Some(path) = &outcome.path {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        payload.insert("apk".into(), name.as_ref().into());
        // A relative path means nothing to the receiver: it has another working
        // directory.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        payload.insert("path".into(), path.display().to_string().into());
    }
    payload.insert("urls".into(), urls.to_vec().into());
    Some(NoticeRecord {
        url,
        payload,
        attempts: 0,
        due_ms: 0,
        task: task.describe(),
    })
}

/// The notice of an item that is not a task at all, whose `finish_notice_url` could
/// still be read (`task::notice_url_in`): the status, and the reason as `detail`.
pub fn rejected_notice(url: &str, outcome: &PackageOutcome, raw: &str) -> NoticeRecord {
    let mut payload = Map::new();
    payload.insert("errorCode".into(), outcome.status.code().into());
    payload.insert("error_key".into(), outcome.status.key().into());
    payload.insert("message".into(), outcome.status.message().into());
    payload.insert("detail".into(), outcome.detail.clone().into());
    payload.insert("urls".into(), Vec::<String>::new().into());
    NoticeRecord {
        url: url.to_string(),
        payload,
        attempts: 0,
        due_ms: 0,
        task: format!("unreadable item {}", snippet(raw)),
    }
}

/// Form fields: scalars as text, arrays comma-joined.
fn form_fields(payload: &Map<String, Value>) -> Vec<(String, String)> {
    payload
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect()
}

fn snippet(body: &str) -> String {
    body.chars().take(120).collect()
}
