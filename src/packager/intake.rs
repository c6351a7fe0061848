//! The Redis intake (`task_type = "redis"`): packaging workers on `redis_key`, retry
//! workers on `redis_retry_key`, upload workers on `upload_file_schedule_key`, notifier
//! workers on `notice_key`, each a tokio task with a Redis connection of its own.
//!
//! Life of a task: `redis_key` -> processing list (`task_schedule_key`) -> built: upload
//! processing list -> notice processing list -> gone. Failed: `redis_retry_key` with
//! `extend.packet_timeout` and `extend.error_key`, taken again once due. Every move is
//! atomic (see `queue`), so a crash at any point loses nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;
use redis::RedisResult;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::notice::{notice_record, NoticeNext, NoticeRecord};
use super::package::{package_one, PackageOutcome};
use super::queue::{self, Back, DueWatcher};
use super::status::PackageStatus;
use super::task::PackageTask;
use super::{now_ms, Packager, PackagerEvent};

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

#[derive(Debug, Clone, Copy)]
enum Role {
    Package,
    RetryPackage,
    Upload,
    Notice,
}

impl DueWatcher for Packager {
    fn deferred(&self, ready: &str, due_ms: i64) {
        self.emit(PackagerEvent::Deferred {
            list: ready.to_string(),
            due_ms,
        });
    }
}

/// Resumes what a previous run left in the processing lists, then runs the workers
/// until `shutdown`.
pub(crate) async fn run_redis(p: Arc<Packager>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let workers = start_redis(p, shutdown).await?;
    workers.wait().await;
    log::info!("packager redis workers stopped");
    Ok(())
}

/// Connects, resumes the processing lists, and spawns the workers on the returned
/// (closed) tracker; they stop at `shutdown`, each after the item it holds. Fails when
/// Redis cannot be reached at start.
pub(crate) async fn start_redis(
    p: Arc<Packager>,
    shutdown: CancellationToken,
) -> anyhow::Result<TaskTracker> {
    let cfg = &p.cfg;
    let where_ = || {
        format!(
            "redis {}:{} db {}",
            cfg.redis_host, cfg.redis_port, cfg.redis_db
        )
    };
    let client = queue::redis_client(cfg).with_context(where_)?;
    let mut conn = queue::connect(&client, cfg).await.with_context(where_)?;
    resume(&p, &mut conn).await.with_context(where_)?;
    let roles = [
        (Role::Package, cfg.packet_count),
        (Role::RetryPackage, cfg.retry_packet_count),
        (Role::Upload, cfg.retry_upload_count),
        (Role::Notice, cfg.message_count),
    ];
    let workers = TaskTracker::new();
    for (role, count) in roles {
        for index in 0..count {
            let conn = queue::connect(&client, cfg).await.with_context(where_)?;
            workers.spawn(worker(Arc::clone(&p), conn, role, index, shutdown.clone()));
        }
    }
    workers.close();
    // Once every worker has finished its item, the processing lists hold only what a
    // pop cancelled by the shutdown moved: put it back now rather than at next start.
    let supervisor = TaskTracker::new();
    supervisor.spawn(async move {
        workers.wait().await;
        if let Err(e) = resume(&p, &mut conn).await {
            log::warn!("packager: processing lists not swept at stop ({e}); resumed at next start");
        }
    });
    supervisor.close();
    Ok(supervisor)
}

/// Puts what the processing lists hold back into the ready lists: at start (what a
/// previous run left), and after the workers stopped (what a pop cancelled at shutdown
/// moved). A task not due yet (`extend.packet_timeout` in the future: taken by a retry
/// worker) goes back to `redis_retry_key`, so it never runs early.
async fn resume(p: &Packager, conn: &mut ConnectionManager) -> RedisResult<()> {
    let cfg = &p.cfg;
    let now = now_ms();
    let processing = cfg.processing_key();
    let counts = queue::requeue_routed(conn, &processing, |raw| {
        if retry_due(raw) > now {
            Back::Tail(&cfg.redis_retry_key)
        } else {
            Back::Head(&cfg.redis_key)
        }
    })
    .await?;
    let count_of = |list: &str| {
        counts
            .iter()
            .find(|(name, _)| name == list)
            .map_or(0, |(_, n)| *n)
    };
    for ready in [&cfg.redis_key, &cfg.redis_retry_key] {
        report_resumed(p, &processing, ready, count_of(ready));
    }
    let pairs = [
        (
            cfg.upload_processing_key(),
            cfg.upload_file_schedule_key.clone(),
        ),
        (cfg.notice_processing_key(), cfg.notice_key.clone()),
    ];
    for (processing, ready) in pairs {
        let count = queue::requeue_all(conn, &processing, &ready).await?;
        report_resumed(p, &processing, &ready, count);
    }
    Ok(())
}

fn report_resumed(p: &Packager, processing: &str, ready: &str, count: usize) {
    if count > 0 {
        log::info!("resumed {count} items from {processing} into {ready}");
    }
    p.emit(PackagerEvent::Resumed {
        list: ready.to_string(),
        count,
    });
}

async fn worker(
    p: Arc<Packager>,
    mut conn: ConnectionManager,
    role: Role,
    index: usize,
    shutdown: CancellationToken,
) {
    log::debug!("packager worker={role:?}#{index} started");
    while !shutdown.is_cancelled() {
        if let Err(e) = step(&p, &mut conn, role, &shutdown).await {
            log::error!("packager worker={role:?}#{index} redis: {e}");
            // The connection reconnects by itself; pause so a dead server is not hammered.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    log::debug!("packager worker={role:?}#{index} stopped");
}

/// Takes one item (or times out) and handles it to the end; cancellation only
/// interrupts the wait, never the handling.
async fn step(
    p: &Packager,
    conn: &mut ConnectionManager,
    role: Role,
    shutdown: &CancellationToken,
) -> RedisResult<()> {
    let cfg = &p.cfg;
    let sleep = cfg.redis_sleep_time;
    match role {
        Role::Package => {
            let processing = cfg.processing_key();
            let taken = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                taken = queue::take(conn, &cfg.redis_key, &processing, sleep) => taken?,
            };
            if let Some(raw) = taken {
                process_task(p, conn, &raw).await?;
            }
        }
        Role::RetryPackage => {
            let processing = cfg.processing_key();
            let lists = (cfg.redis_retry_key.as_str(), processing.as_str());
            if let Some(raw) = queue::take_due(conn, lists, retry_due, sleep, shutdown, p).await? {
                process_task(p, conn, &raw).await?;
            }
        }
        Role::Upload => {
            let processing = cfg.upload_processing_key();
            let lists = (cfg.upload_file_schedule_key.as_str(), processing.as_str());
            if let Some(raw) = queue::take_due(conn, lists, upload_due, sleep, shutdown, p).await? {
                match serde_json::from_str::<UploadRecord>(&raw) {
                    Ok(record) => upload_step(p, conn, raw, record).await?,
                    Err(e) => drop_unusable(p, conn, &processing, &raw, &e.to_string()).await?,
                }
            }
        }
        Role::Notice => {
            let processing = cfg.notice_processing_key();
            let lists = (cfg.notice_key.as_str(), processing.as_str());
            if let Some(raw) = queue::take_due(conn, lists, notice_due, sleep, shutdown, p).await? {
                match serde_json::from_str::<NoticeRecord>(&raw) {
                    Ok(record) => notify(p, conn, raw, record).await?,
                    Err(e) => drop_unusable(p, conn, &processing, &raw, &e.to_string()).await?,
                }
            }
        }
    }
    Ok(())
}

fn retry_due(raw: &str) -> i64 {
    PackageTask::from_json(raw)
        .ok()
        .and_then(|task| task.packet_timeout())
        .map_or(0, |seconds| (seconds * 1000.0) as i64)
}

fn upload_due(raw: &str) -> i64 {
    serde_json::from_str::<UploadRecord>(raw).map_or(0, |r| r.due_ms)
}

fn notice_due(raw: &str) -> i64 {
    serde_json::from_str::<NoticeRecord>(raw).map_or(0, |r| r.due_ms)
}

async fn drop_unusable(
    p: &Packager,
    conn: &mut ConnectionManager,
    processing: &str,
    raw: &str,
    why: &str,
) -> RedisResult<()> {
    let snippet: String = raw.chars().take(200).collect();
    log::error!(target: "scripts", "unusable item dropped from {processing}: {why}: {snippet}");
    p.udp
        .send(
            super::UdpLevel::Error,
            &format!("unusable item dropped: {why}: {snippet}"),
        )
        .await;
    queue::ack(conn, processing, raw).await
}

/// Packages one task taken into the processing list and moves it on.
async fn process_task(p: &Packager, conn: &mut ConnectionManager, raw: &str) -> RedisResult<()> {
    let cfg = &p.cfg;
    let processing = cfg.processing_key();
    let task = match PackageTask::from_json(raw) {
        Ok(task) => task,
        Err(e) => return drop_unusable(p, conn, &processing, raw, &e.to_string()).await,
    };
    let outcome = package_one(cfg, &task).await;
    p.emit(PackagerEvent::Outcome {
        task: task.describe(),
        status: outcome.status,
        path: outcome.path.clone(),
    });
    match outcome.status {
        PackageStatus::Complete => built(p, conn, raw, &task, &outcome).await,
        PackageStatus::HavenSub => {
            p.report(&task, &outcome, None).await;
            finish_with_notice(p, conn, (&processing, raw), &task, &outcome, &[]).await
        }
        status if status.is_retryable() && task.retry_count() < cfg.packet_retry_max => {
            let packet_timeout = now_ms() / 1000 + cfg.log_post_time as i64;
            let next = task.with_failure(packet_timeout, status.key());
            queue::hand_off(
                conn,
                &processing,
                raw,
                &cfg.redis_retry_key,
                &next.to_json(),
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
            finish_with_notice(p, conn, (&processing, raw), &task, &outcome, &[]).await
        }
    }
}

/// A package was built: upload it (when there are targets), then notify.
async fn built(
    p: &Packager,
    conn: &mut ConnectionManager,
    raw: &str,
    task: &PackageTask,
    outcome: &PackageOutcome,
) -> RedisResult<()> {
    let processing = p.cfg.processing_key();
    if p.uploader.is_empty() {
        p.report(task, outcome, None).await;
        if p.cfg.debug {
            return queue::ack(conn, &processing, raw).await;
        }
        return finish_with_notice(p, conn, (&processing, raw), task, outcome, &[]).await;
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
    if queue::hand_off(conn, &processing, raw, &upload_processing, &record_raw).await? {
        upload_step(p, conn, record_raw, record).await?;
    }
    Ok(())
}

/// One upload attempt of a record in the upload processing list.
async fn upload_step(
    p: &Packager,
    conn: &mut ConnectionManager,
    raw: String,
    mut record: UploadRecord,
) -> RedisResult<()> {
    let cfg = &p.cfg;
    let processing = cfg.upload_processing_key();
    let game = record.task.filename().unwrap_or_default().to_string();
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
                return queue::ack(conn, &processing, &raw).await;
            }
            finish_with_notice(p, conn, (&processing, &raw), &record.task, &outcome, &urls).await
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
                return finish_with_notice(
                    p,
                    conn,
                    (&processing, &raw),
                    &record.task,
                    &outcome,
                    &[],
                )
                .await;
            }
            let delay = cfg.upload_retry.delay_ms(record.attempts);
            log::warn!(target: "scripts", "{} upload attempt {} failed: {e}; again in {delay} ms",
                record.task.describe(), record.attempts);
            record.due_ms = now_ms() + delay as i64;
            let next = to_json(&record);
            queue::hand_off(
                conn,
                &processing,
                &raw,
                &cfg.upload_file_schedule_key,
                &next,
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

/// Replaces the item `from` by the task's notice and makes the first attempt; without a
/// notice URL the item is simply done.
async fn finish_with_notice(
    p: &Packager,
    conn: &mut ConnectionManager,
    from: (&str, &str),
    task: &PackageTask,
    outcome: &PackageOutcome,
    urls: &[String],
) -> RedisResult<()> {
    let Some(record) = notice_record(task, outcome, urls) else {
        return queue::ack(conn, from.0, from.1).await;
    };
    let raw = to_json(&record);
    if queue::hand_off(conn, from.0, from.1, &p.cfg.notice_processing_key(), &raw).await? {
        notify(p, conn, raw, record).await?;
    }
    Ok(())
}

/// One notice attempt of a record in the notice processing list.
async fn notify(
    p: &Packager,
    conn: &mut ConnectionManager,
    raw: String,
    record: NoticeRecord,
) -> RedisResult<()> {
    let processing = p.cfg.notice_processing_key();
    match p.notifier.attempt(record, &p.udp, &p.events).await {
        NoticeNext::Done | NoticeNext::GaveUp => queue::ack(conn, &processing, &raw).await,
        NoticeNext::Retry(next) => {
            let next = to_json(&next);
            queue::hand_off(conn, &processing, &raw, &p.cfg.notice_key, &next).await?;
            Ok(())
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialize")
}
