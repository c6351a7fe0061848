//! The `package` stage on the bus: a task body is the seed's JSON task; the stage
//! packages, uploads and sends the first notice (`handle_bus_task_as`), and answers
//! DONE or FAIL with the seed's status code.
//!
//! - DONE: `COMPLETE` (201) and `HAVEN_SUB` (403). When the task names
//!   `callback.topic` or the worker has a `next_topic`, one envelope follows: the task
//!   as it came plus `result` = `{"code","error_key","message","path","detail",
//!   "bytes","urls"}`. Otherwise the DONE carries nothing.
//! - FAIL: the error reads `<code> <KEY>: <detail>`; retryable per
//!   `PackagerError::is_retryable` (`NO_APK`, `COPY_APK_ERROR`, `UNKNOWN_ERROR`; upload
//!   failures but a broken target setting). A final FAIL is notified at once.
//! - scripts.log: one line per attempt, `guid=.. topic=.. filename=.. channel_id=..
//!   code=.. error_key=..`.
//!
//! With `[packager] task_type = "redis"`, building the stage also starts the seed's
//! Redis intake in the same process (once per processing list: a second `package`
//! stage on the same keys shares it). It runs until the last stage built on it is
//! dropped, which happens when the process's workers stop: its waits are cancelled and
//! the drop waits (up to `[worker] shutdown_grace_secs`) for the items in hand. An item
//! cut short anyway (a kill, a crash) stays in its processing list and is resumed at
//! the next start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{PackagerConfig, TaskType};
use super::udp::{UdpLevel, UdpLogger};
use super::{handle_bus_task_as, Packager, PackagerError};
use crate::task::{NewTask, Task};
use crate::worker::config::WorkerSpec;
use crate::worker::{Stage, StageError};

/// The UDP `notice` line the seed sends on SIGHUP.
pub const HANGUP_NOTICE: &str = "SIGHUP seen, exiting";

/// The `package` stage.
pub struct PackageStage {
    packager: Arc<Packager>,
    forward: bool,
    /// Keeps the Redis intake running (`task_type = "redis"`).
    intake: Option<Arc<IntakeGuard>>,
}

/// Stops the Redis intake when the last stage holding it is dropped.
struct IntakeGuard {
    key: String,
    shutdown: CancellationToken,
    workers: TaskTracker,
    grace: Duration,
}

impl Drop for IntakeGuard {
    /// Cancels the waits, then (on a multi-thread runtime, where blocking one thread
    /// leaves the others running) waits up to `grace` for the items being handled, so
    /// that a graceful stop of the process finishes them. Elsewhere the items left are
    /// resumed at the next start.
    fn drop(&mut self) {
        log::info!("packager redis intake on {} stopping", self.key);
        self.shutdown.cancel();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let (workers, grace) = (self.workers.clone(), self.grace);
        let finished = tokio::task::block_in_place(|| {
            runtime.block_on(tokio::time::timeout(grace, workers.wait()))
        });
        if finished.is_err() {
            log::warn!(
                "packager redis intake on {}: items still in hand after {grace:?}; resumed at the next start",
                self.key
            );
        }
    }
}

/// Running intakes by processing list, so one process never runs two on the same keys.
fn intakes() -> &'static Mutex<HashMap<String, Weak<IntakeGuard>>> {
    static INTAKES: std::sync::OnceLock<Mutex<HashMap<String, Weak<IntakeGuard>>>> =
        std::sync::OnceLock::new();
    INTAKES.get_or_init(Default::default)
}

/// Builds the `package` stage (and starts the Redis intake when configured); `grace`
/// is `[worker] shutdown_grace_secs`.
pub async fn build(
    spec: &WorkerSpec,
    packager: &PackagerConfig,
    grace: Duration,
) -> anyhow::Result<Arc<dyn Stage>> {
    let stage = PackageStage::new(packager, spec.next_topic.is_some(), grace).await?;
    Ok(Arc::new(stage))
}

impl PackageStage {
    /// A stage with these settings; `forward`: the worker has a `next_topic`, so results
    /// always go on; `grace`: how long dropping the last stage waits for the Redis
    /// intake's items in hand.
    pub async fn new(cfg: &PackagerConfig, forward: bool, grace: Duration) -> anyhow::Result<Self> {
        let packager = Arc::new(
            Packager::new(cfg.clone())
                .await
                .context("packager settings")?,
        );
        let intake = match cfg.task_type {
            // The intake sweeps once it holds its instance lock.
            TaskType::Redis => Some(start_intake(&packager, grace).await?),
            TaskType::Bus => {
                sweep_stale_temp(&packager).await;
                None
            }
        };
        Ok(Self {
            packager,
            forward,
            intake,
        })
    }

    /// The packager (its events show what the stage and the Redis intake do).
    pub fn packager(&self) -> &Arc<Packager> {
        &self.packager
    }

    /// Whether this stage keeps a Redis intake running.
    pub fn runs_redis_intake(&self) -> bool {
        self.intake.is_some()
    }
}

/// Bus mode: no lock proves that no live process shares the instance, so only temp
/// files untouched for [`BUS_SWEEP_AGE`] go (a live write touches its file every few
/// milliseconds).
async fn sweep_stale_temp(packager: &Arc<Packager>) {
    let cfg = packager.config().clone();
    let swept =
        tokio::task::spawn_blocking(move || super::package::sweep_temp(&cfg, Some(BUS_SWEEP_AGE)))
            .await
            .unwrap_or_default();
    packager.emit(super::PackagerEvent::Swept { removed: swept });
}

/// Age after which a bus-mode process takes a temp file for a killed writer's.
pub const BUS_SWEEP_AGE: Duration = Duration::from_secs(600);

async fn start_intake(
    packager: &Arc<Packager>,
    grace: Duration,
) -> anyhow::Result<Arc<IntakeGuard>> {
    let cfg = packager.config();
    let key = format!(
        "redis://{}:{}/{} {}",
        cfg.redis_host,
        cfg.redis_port,
        cfg.redis_db,
        cfg.processing_key()
    );
    if let Some(running) = intakes()
        .lock()
        .expect("intake registry")
        .get(&key)
        .and_then(Weak::upgrade)
    {
        log::info!("packager redis intake on {key} already running in this process");
        return Ok(running);
    }
    let shutdown = CancellationToken::new();
    let workers = match super::intake::start_redis(Arc::clone(packager), shutdown.clone()).await {
        Ok(workers) => workers,
        Err(e) => {
            // Stops the workers started before the failure.
            shutdown.cancel();
            return Err(e.context("packager redis intake"));
        }
    };
    let guard = Arc::new(IntakeGuard {
        key: key.clone(),
        shutdown,
        workers: workers.clone(),
        grace,
    });
    intakes()
        .lock()
        .expect("intake registry")
        .insert(key.clone(), Arc::downgrade(&guard));
    log::info!("packager redis intake on {key} started");
    let packager = Arc::clone(packager);
    tokio::spawn(async move {
        workers.wait().await;
        packager.close().await;
        log::info!("packager redis intake on {key} stopped");
    });
    Ok(guard)
}

impl Stage for PackageStage {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let packager = Arc::clone(&self.packager);
        let forward = self.forward;
        Box::pin(async move {
            let origin = format!("guid={} topic={}", task.guid, task.topic);
            let body = task.body.to_value();
            match handle_bus_task_as(&packager, &origin, body.clone()).await {
                Ok(result) => Ok(result_envelope(body, result, forward)),
                Err(e) => Err(stage_error(&origin, &e)),
            }
        })
    }
}

/// The envelope that carries a result on, when anyone is to get it.
fn result_envelope(body: Value, result: Value, forward: bool) -> Vec<NewTask> {
    let Value::Object(mut next) = body else {
        return Vec::new();
    };
    let has_callback = next
        .get("callback")
        .and_then(|c| c.get("topic"))
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !(forward || has_callback) {
        return Vec::new();
    }
    next.insert("result".into(), result);
    vec![NewTask {
        body: Value::Object(next).into(),
        ..NewTask::default()
    }]
}

/// A FAIL naming the seed's code; errors that are not packaging statuses (a body that
/// is not an object, an upload) get their scripts.log line here.
fn stage_error(origin: &str, e: &PackagerError) -> StageError {
    let status = e.status();
    let message = format!("{} {}: {e}", status.code(), status.key());
    if matches!(e, PackagerError::BadTask(_)) {
        log::error!(target: "scripts", "{origin} code={} error_key={} {e}",
            status.code(), status.key());
    }
    StageError {
        message,
        retryable: e.is_retryable(),
    }
}

impl AsRef<PackagerConfig> for PackagerConfig {
    fn as_ref(&self) -> &PackagerConfig {
        self
    }
}

/// Called by the binaries on SIGHUP, before they stop: the seed's `notice` UDP line
/// (`SIGHUP seen, exiting`) when `[packager] udp_host`/`udp_port` are set.
/// Takes the `[packager]` section, or anything that holds it (the whole config).
pub async fn on_hangup(packager: impl AsRef<PackagerConfig>) {
    let cfg = packager.as_ref();
    if cfg.udp_host.is_none() {
        return;
    }
    match UdpLogger::from_config(cfg).await {
        Ok(udp) => udp.send(UdpLevel::Notice, HANGUP_NOTICE).await,
        Err(e) => log::error!("cannot send the SIGHUP notice: {e}"),
    }
}
