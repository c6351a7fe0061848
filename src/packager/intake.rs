//! The Redis intake (`task_type = "redis"`): packaging workers on `redis_key`, retry
//! workers on `redis_retry_key`, upload workers on `upload_file_schedule_key`, notifier
//! workers on `notice_key`, each a tokio task with a Redis connection of its own.
//!
//! Life of a task: `redis_key` -> processing list (`task_schedule_key`) -> built: upload
//! processing list -> `notice_key` (at its head: the notifiers take it at once) ->
//! notice processing list -> gone. Failed: `redis_retry_key` with
//! `extend.packet_timeout` and `extend.error_key`, taken again once due (only statuses
//! that can change). Unreadable: `<redis_key>:rejected` with the reason. Every move is
//! atomic (see `queue`) and recorded even across a Redis outage (see `record`), so a
//! crash at any point loses nothing.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::RedisResult;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handle::{notify, process_task, reject_record, upload_step};
use super::notice::NoticeRecord;
use super::package::sweep_temp;
use super::queue::{self, Back, DueWatcher};
use super::record::Link;
use super::task::PackageTask;
use super::{lock, now_ms, Packager, PackagerEvent};

pub use super::handle::RejectedRecord;

pub use super::handle::UploadRecord;

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

/// Connects, takes the instance lock, sweeps the temp files a killed run left, resumes
/// the processing lists, and spawns the workers on the returned (closed) tracker; they
/// stop at `shutdown`, each after the item it holds. Fails when Redis cannot be reached
/// at start or another process holds the instance.
pub(crate) async fn start_redis(
    p: Arc<Packager>,
    shutdown: CancellationToken,
) -> anyhow::Result<TaskTracker> {
    let cfg = &p.cfg;
    let where_ = format!(
        "redis {}:{} db {}",
        cfg.redis_host, cfg.redis_port, cfg.redis_db
    );
    // RedisError's message already holds its cause: a message, not a chain.
    let at = |e: redis::RedisError| anyhow::anyhow!("{where_}: {e}");
    let client = queue::redis_client(cfg).map_err(at)?;
    // Outcomes are recorded across outages, but not forever once a stop was asked for.
    let give_up = CancellationToken::new();
    tokio::spawn({
        let (shutdown, give_up) = (shutdown.clone(), give_up.clone());
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(RECORD_GRACE).await;
            give_up.cancel();
        }
    });
    let mut link = Link::connect(&client, cfg, &give_up).await.map_err(at)?;
    let lock = lock::acquire(link.conn.clone(), cfg, shutdown.clone()).await?;
    let swept = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || sweep_temp(&cfg, None)).await?
    };
    p.emit(PackagerEvent::Swept { removed: swept });
    resume(&p, &mut link).await.map_err(at)?;
    let roles = [
        (Role::Package, cfg.packet_count),
        (Role::RetryPackage, cfg.retry_packet_count),
        (Role::Upload, cfg.retry_upload_count),
        (Role::Notice, cfg.message_count),
    ];
    let workers = TaskTracker::new();
    for (role, count) in roles {
        for index in 0..count {
            let taker = Link::connect(&client, cfg, &give_up).await.map_err(at)?;
            let p = Arc::clone(&p);
            match role {
                Role::Notice => {
                    let ops = Link::connect(&client, cfg, &give_up).await.map_err(at)?;
                    workers.spawn(notice_worker(p, (taker, ops), index, shutdown.clone()))
                }
                _ => workers.spawn(worker(p, taker, role, index, shutdown.clone())),
            };
        }
    }
    workers.close();
    // Once every worker has finished its item, the processing lists hold only what a
    // pop cancelled by the shutdown moved: put it back now rather than at next start.
    let supervisor = TaskTracker::new();
    supervisor.spawn(async move {
        workers.wait().await;
        if let Err(e) = resume(&p, &mut link).await {
            log::warn!("packager: processing lists not swept at stop ({e}); resumed at next start");
        }
        lock.release().await;
    });
    supervisor.close();
    Ok(supervisor)
}

/// How long after a stop was asked for an outcome that Redis does not take is still
/// tried again; then the item stays in its processing list for the next start.
pub const RECORD_GRACE: Duration = Duration::from_secs(10);

/// Puts what the processing lists hold back into the ready lists: at start (what a
/// previous run left), and after the workers stopped (what a pop cancelled at shutdown
/// moved). A task not due yet (`extend.packet_timeout` in the future: taken by a retry
/// worker) goes back to `redis_retry_key`, so it never runs early. A failure that may
/// pass (the server away) is tried again, on a new connection.
async fn resume(p: &Packager, link: &mut Link) -> RedisResult<()> {
    let mut attempt = 0;
    loop {
        match resume_once(p, &mut link.conn).await {
            Ok(()) => return Ok(()),
            Err(e) if queue::is_transient(&e) && !link.gives_up() => {
                attempt += 1;
                link.pause_after(p, "sweep of the processing lists", attempt, &e)
                    .await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn resume_once(p: &Packager, conn: &mut ConnectionManager) -> RedisResult<()> {
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
    mut link: Link,
    role: Role,
    index: usize,
    shutdown: CancellationToken,
) {
    log::debug!("packager worker={role:?}#{index} started");
    while !shutdown.is_cancelled() {
        if let Err(e) = step(&p, &mut link, role, &shutdown).await {
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
    link: &mut Link,
    role: Role,
    shutdown: &CancellationToken,
) -> RedisResult<()> {
    let cfg = &p.cfg;
    let sleep = cfg.redis_sleep_time;
    let conn = &mut link.conn;
    match role {
        Role::Package => {
            let processing = cfg.processing_key();
            let taken = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                taken = queue::take(conn, &cfg.redis_key, &processing, sleep) => taken?,
            };
            if let Some(raw) = taken {
                process_task(p, link, &raw).await?;
            }
        }
        Role::RetryPackage => {
            let processing = cfg.processing_key();
            let lists = (cfg.redis_retry_key.as_str(), processing.as_str());
            if let Some(raw) = queue::take_due(conn, lists, retry_due, sleep, shutdown, p).await? {
                process_task(p, link, &raw).await?;
            }
        }
        Role::Upload => {
            let processing = cfg.upload_processing_key();
            let lists = (cfg.upload_file_schedule_key.as_str(), processing.as_str());
            if let Some(raw) = queue::take_due(conn, lists, upload_due, sleep, shutdown, p).await? {
                match serde_json::from_str::<UploadRecord>(&raw) {
                    Ok(record) => upload_step(p, link, raw, record).await?,
                    Err(e) => reject_record(p, link, &processing, &raw, &e.to_string()).await?,
                }
            }
        }
        Role::Notice => unreachable!("notices have their own worker"),
    }
    Ok(())
}

/// A notifier: takes due notices and keeps up to `notice_concurrency` POSTs in flight,
/// so a slow receiver delays notices, never packaging. `taker` blocks on the list;
/// the POSTs record their outcomes on `ops`.
async fn notice_worker(
    p: Arc<Packager>,
    (mut taker, ops): (Link, Link),
    index: usize,
    shutdown: CancellationToken,
) {
    log::debug!("packager worker=Notice#{index} started");
    let cfg = &p.cfg;
    let processing = cfg.notice_processing_key();
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.notice_concurrency));
    let in_flight = TaskTracker::new();
    while !shutdown.is_cancelled() {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
        };
        let lists = (cfg.notice_key.as_str(), processing.as_str());
        let sleep = cfg.redis_sleep_time;
        match queue::take_due(&mut taker.conn, lists, notice_due, sleep, &shutdown, &*p).await {
            Ok(Some(raw)) => {
                let (p, mut link) = (Arc::clone(&p), ops.clone());
                in_flight.spawn(async move {
                    let _permit = permit;
                    if let Err(e) = handle_notice(&p, &mut link, raw).await {
                        log::error!("packager notice not recorded: {e}");
                    }
                });
            }
            Ok(None) => {}
            Err(e) => {
                log::error!("packager worker=Notice#{index} redis: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    in_flight.close();
    in_flight.wait().await;
    log::debug!("packager worker=Notice#{index} stopped");
}

async fn handle_notice(p: &Packager, link: &mut Link, raw: String) -> RedisResult<()> {
    let processing = p.cfg.notice_processing_key();
    match serde_json::from_str::<NoticeRecord>(&raw) {
        Ok(record) => notify(p, link, raw, record).await,
        Err(e) => reject_record(p, link, &processing, &raw, &e.to_string()).await,
    }
}

fn retry_due(raw: &str) -> i64 {
    PackageTask::parse(raw)
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
