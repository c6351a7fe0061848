//! What the Redis intake does with an item it holds: package a task and move it on
//! (retry list, upload, notice, rejected list), one upload attempt, one notice attempt.
//! Every move records the outcome through `record::Link`, so it survives an outage.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::notice::{self, notice_record, NoticeNext, NoticeRecord};
use super::package::{package_one, PackageOutcome};
use super::queue::Back;
use super::record::{Link, Record};
use super::status::PackageStatus;
use super::task::{self, PackageTask};
use super::udp::UdpLevel;
use super::{now_ms, Packager, PackagerEvent};
use redis::RedisResult;

/// A built package waiting for upload; the JSON kept in `upload_file_schedule_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The task, as it came.
    pub task: PackageTask,
    /// The package.
    pub path: PathBuf,
    /// Failed upload attempts so far.
    pub attempts: u32,
    /// Not before this time (Unix milliseconds).
    pub due_ms: i64,
    /// Targets that already have the package.
    pub done: Vec<String>,
}

/// Packages one task taken into the processing list and moves it on.
pub(crate) async fn process_task(p: &Packager, link: &mut Link, raw: &str) -> RedisResult<()> {
    let cfg = &p.cfg;
    let processing = cfg.processing_key();
    let task = match PackageTask::parse(raw) {
        Ok(task) => task,
        Err(e) => {
            let url = task::notice_url_in(raw);
            let outcome = PackageOutcome::failed(PackageStatus::ArgMiss, e.to_string());
            let notice = url.map(|url| notice::rejected_notice(&url, &outcome, raw));
            return reject(p, link, (&processing, raw), &outcome, notice, Log::Here).await;
        }
    };
    let outcome = package_one(cfg, &task).await;
    p.emit(PackagerEvent::Outcome {
        task: task.describe(),
        status: outcome.status,
        path: outcome.path.clone(),
    });
    match outcome.status {
        PackageStatus::Complete => built(p, link, raw, &task, &outcome).await,
        PackageStatus::HavenSub => {
            p.report(&task, &outcome, None).await;
            finish_with_notice(p, link, (&processing, raw), &task, &outcome, &[]).await
        }
        PackageStatus::ArgMiss => {
            p.report(&task, &outcome, None).await;
            p.emit(PackagerEvent::GaveUp {
                task: task.describe(),
                status: outcome.status,
            });
            let notice = notice_record(&task, &outcome, &[]);
            reject(p, link, (&processing, raw), &outcome, notice, Log::Reported).await
        }
        status if status.is_retryable() && task.retry_count() < cfg.packet_retry_max => {
            let packet_timeout = now_ms() / 1000 + cfg.log_post_time as i64;
            let next = task.with_failure(packet_timeout, status.key()).to_json();
            let to = vec![(Back::Tail(cfg.redis_retry_key.as_str()), next.as_str())];
            link.record(
                p,
                Record::Move {
                    from: &processing,
                    item: raw,
                    to,
                },
            )
            .await?;
            p.report(&task, &outcome, Some(packet_timeout)).await;
            p.emit(PackagerEvent::RetryQueued {
                task: task.describe(),
                error_key: status.key().to_string(),
                packet_timeout,
            });
            Ok(())
        }
        status => {
            p.report(&task, &outcome, None).await;
            p.emit(PackagerEvent::GaveUp {
                task: task.describe(),
                status,
            });
            finish_with_notice(p, link, (&processing, raw), &task, &outcome, &[]).await
        }
    }
}

/// What `<redis_key>:rejected` holds for one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// The item exactly as it was pushed.
    pub item: String,
    /// Why it cannot be a task: `401 ARG_MISS: ...`.
    pub reason: String,
    /// The list it was taken from.
    pub list: String,
    /// When (Unix seconds).
    pub rejected_at: i64,
}

/// Moves an item that can never be a task from `from` to `<redis_key>:rejected` with
/// its reason and, when its notice URL could be read, queues its 401 notice: in one
/// step, so the item is in exactly one place throughout.
/// Whether `reject` writes the scripts.log and UDP lines itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Log {
    /// Yes: nothing was reported yet.
    Here,
    /// No: `Packager::report` already did, with the task's own fields.
    Reported,
}

async fn reject(
    p: &Packager,
    link: &mut Link,
    from: (&str, &str),
    outcome: &PackageOutcome,
    notice: Option<NoticeRecord>,
    log: Log,
) -> RedisResult<()> {
    let reason = format!(
        "{} {}: {}",
        outcome.status.code(),
        outcome.status.key(),
        outcome.detail
    );
    let record = to_json(&RejectedRecord {
        item: from.1.to_string(),
        reason: reason.clone(),
        list: from.0.to_string(),
        rejected_at: now_ms() / 1000,
    });
    if log == Log::Here {
        let snippet: String = from.1.chars().take(200).collect();
        log::error!(target: "scripts", "rejected item from {}: {reason}: {snippet}", from.0);
        let line = format!("rejected item: {reason}: {snippet}");
        p.udp.send(UdpLevel::Error, &line).await;
    }
    let rejected = p.cfg.rejected_key();
    let notice = notice.map(|record| to_json(&record));
    let mut to = vec![(Back::Tail(rejected.as_str()), record.as_str())];
    if let Some(notice) = &notice {
        to.push((Back::Head(p.cfg.notice_key.as_str()), notice.as_str()));
    }
    link.record(
        p,
        Record::Move {
            from: from.0,
            item: from.1,
            to,
        },
    )
    .await?;
    p.emit(PackagerEvent::Rejected {
        reason,
        noticed: notice.is_some(),
    });
    Ok(())
}

/// One of our own records (upload, notice) that does not read back.
pub(crate) async fn reject_record(
    p: &Packager,
    link: &mut Link,
    processing: &str,
    raw: &str,
    why: &str,
) -> RedisResult<()> {
    let outcome = PackageOutcome::failed(
        PackageStatus::UnknownError,
        format!("unusable record: {why}"),
    );
    reject(p, link, (processing, raw), &outcome, None, Log::Here).await
}

/// A package was built: upload it (when there are targets), then notify.
async fn built(
    p: &Packager,
    link: &mut Link,
    raw: &str,
    task: &PackageTask,
    outcome: &PackageOutcome,
) -> RedisResult<()> {
    let processing = p.cfg.processing_key();
    if p.uploader.is_empty() {
        p.report(task, outcome, None).await;
        if p.cfg.debug {
            link.record(
                p,
                Record::Ack {
                    list: &processing,
                    item: raw,
                },
            )
            .await?;
            return Ok(());
        }
        return finish_with_notice(p, link, (&processing, raw), task, outcome, &[]).await;
    }
    let record = UploadRecord {
        task: task.clone(),
        path: outcome.path.clone().unwrap_or_default(),
        attempts: 0,
        due_ms: 0,
        done: Vec::new(),
    };
    let record_raw = to_json(&record);
    let upload_processing = p.cfg.upload_processing_key();
    let to = vec![(Back::Tail(upload_processing.as_str()), record_raw.as_str())];
    if link
        .record(
            p,
            Record::Move {
                from: &processing,
                item: raw,
                to,
            },
        )
        .await?
    {
        upload_step(p, link, record_raw, record).await?;
    }
    Ok(())
}

/// One upload attempt of a record in the upload processing list.
pub(crate) async fn upload_step(
    p: &Packager,
    link: &mut Link,
    raw: String,
    mut record: UploadRecord,
) -> RedisResult<()> {
    let cfg = &p.cfg;
    let processing = cfg.upload_processing_key();
    let game = record.task.filename().unwrap_or_default().to_string();
    let from = (processing.as_str(), raw.as_str());
    match p
        .uploader
        .upload(&record.path, &game, &mut record.done)
        .await
    {
        Ok(urls) => {
            p.emit(PackagerEvent::Uploaded {
                path: record.path.clone(),
                locations: urls.clone(),
            });
            let outcome = built_outcome(&record, PackageStatus::Complete, String::new());
            p.report(&record.task, &outcome, None).await;
            if cfg.debug {
                p.delete_package(&record.path).await;
                link.record(
                    p,
                    Record::Ack {
                        list: from.0,
                        item: from.1,
                    },
                )
                .await?;
                return Ok(());
            }
            finish_with_notice(p, link, from, &record.task, &outcome, &urls).await
        }
        Err(e) => {
            record.attempts += 1;
            p.emit(PackagerEvent::UploadFailed {
                path: record.path.clone(),
                attempts: record.attempts,
                error: e.to_string(),
            });
            if record.attempts >= cfg.upload_retry.max_attempts {
                let detail = format!("upload failed {} times: {e}", record.attempts);
                let outcome = built_outcome(&record, PackageStatus::UnknownError, detail);
                p.report(&record.task, &outcome, None).await;
                return finish_with_notice(p, link, from, &record.task, &outcome, &[]).await;
            }
            let delay = cfg.upload_retry.delay_ms(record.attempts);
            log::warn!(target: "scripts", "{} upload attempt {} failed: {e}; again in {delay} ms",
                record.task.describe(), record.attempts);
            record.due_ms = now_ms() + delay as i64;
            let next = to_json(&record);
            let to = vec![(
                Back::Tail(cfg.upload_file_schedule_key.as_str()),
                next.as_str(),
            )];
            link.record(
                p,
                Record::Move {
                    from: from.0,
                    item: from.1,
                    to,
                },
            )
            .await?;
            Ok(())
        }
    }
}

fn built_outcome(record: &UploadRecord, status: PackageStatus, detail: String) -> PackageOutcome {
    PackageOutcome {
        status,
        path: Some(record.path.clone()),
        detail,
        bytes: None,
    }
}

/// Replaces the item `from` by the task's notice at the head of `notice_key`, where
/// the notifiers take it at once; without a notice URL the item is simply done.
async fn finish_with_notice(
    p: &Packager,
    link: &mut Link,
    from: (&str, &str),
    task: &PackageTask,
    outcome: &PackageOutcome,
    urls: &[String],
) -> RedisResult<()> {
    let Some(record) = notice_record(task, outcome, urls) else {
        link.record(
            p,
            Record::Ack {
                list: from.0,
                item: from.1,
            },
        )
        .await?;
        return Ok(());
    };
    let raw = to_json(&record);
    let to = vec![(Back::Head(p.cfg.notice_key.as_str()), raw.as_str())];
    link.record(
        p,
        Record::Move {
            from: from.0,
            item: from.1,
            to,
        },
    )
    .await?;
    Ok(())
}

/// One notice attempt of a record in the notice processing list.
pub(crate) async fn notify(
    p: &Packager,
    link: &mut Link,
    raw: String,
    record: NoticeRecord,
) -> RedisResult<()> {
    let processing = p.cfg.notice_processing_key();
    match p.notifier.attempt(record, &p.udp, &p.events).await {
        NoticeNext::Done | NoticeNext::GaveUp => {
            link.record(
                p,
                Record::Ack {
                    list: &processing,
                    item: &raw,
                },
            )
            .await?;
        }
        NoticeNext::Retry(next) => {
            let next = to_json(&next);
            let to = vec![(Back::Tail(p.cfg.notice_key.as_str()), next.as_str())];
            link.record(
                p,
                Record::Move {
                    from: &processing,
                    item: &raw,
                    to,
                },
            )
            .await?;
        }
    }
    Ok(())
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialize")
}
