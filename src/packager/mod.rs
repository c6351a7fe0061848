//! The APK channel packager (seed 001): tasks from the seed's Redis lists or from the
//! bus (topic `package`), the seed's status codes, retry queue, upload, finish notice
//! and UDP log lines.
//!
//! Codemap: `config` (settings), `status` (the seed's table), `task` (the task JSON),
//! `package` (one package), `upload` (targets), `notice` (the notifier), `udp` (log
//! lines), `queue` (loss-free Redis list moves), `intake` (the Redis workers), `bus`
//! (the bus handler), `stage` (the `package` worker stage), `flow` (what both intakes
//! do after packaging).

pub mod bus;
pub mod config;
mod flow;
mod handle;
pub mod intake;
mod lock;
pub mod notice;
pub mod package;
pub mod queue;
mod record;
pub mod stage;
pub mod status;
pub mod task;
pub mod udp;
pub mod upload;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use bus::{handle_bus_task, handle_bus_task_as};
pub use config::{NoticeFormat, PackagerConfig, RetryBounds, Secret, StorageTarget, TaskType};
pub use notice::{NoticeRecord, NoticeResult, Notifier};
pub use package::{package_one, PackageOutcome};
pub use status::PackageStatus;
pub use task::PackageTask;
pub use udp::{format_udp_line, UdpLevel, UdpLogger};
pub use upload::{UploadError, Uploader};

/// Something the packager did, for observers (tests, dashboards). Sending never blocks;
/// nobody has to listen.
#[derive(Debug, Clone, PartialEq)]
pub enum PackagerEvent {
    /// Temp files a killed run left were removed at start.
    Swept {
        /// The files removed.
        removed: Vec<PathBuf>,
    },
    /// An item that cannot be a task went to `<redis_key>:rejected`.
    Rejected {
        /// Why, as stored with it.
        reason: String,
        /// Whether a 401 notice was queued for it.
        noticed: bool,
    },
    /// Recording an outcome in Redis failed for a reason that may pass (the server
    /// away, a broken connection); it is tried again on a new connection.
    RedisRetry {
        /// What was being recorded.
        what: String,
        /// Failed attempts so far.
        attempt: u32,
        /// Why.
        error: String,
    },
    /// Items left in a processing list were put back at start.
    Resumed {
        /// The ready list they went back to.
        list: String,
        /// How many.
        count: usize,
    },
    /// A packaging attempt ended.
    Outcome {
        /// `filename=.. channel_id=..`.
        task: String,
        /// Its status.
        status: PackageStatus,
        /// The package, if any.
        path: Option<PathBuf>,
    },
    /// A failed task went to `redis_retry_key`.
    RetryQueued {
        /// `filename=.. channel_id=..`.
        task: String,
        /// `extend.error_key`.
        error_key: String,
        /// `extend.packet_timeout` (Unix seconds).
        packet_timeout: i64,
    },
    /// A task failed for good (no retry left, or not retryable).
    GaveUp {
        /// `filename=.. channel_id=..`.
        task: String,
        /// Its last status.
        status: PackageStatus,
    },
    /// A due-time list has nothing due before `due_ms`.
    Deferred {
        /// The list.
        list: String,
        /// Unix milliseconds.
        due_ms: i64,
    },
    /// A package reached every upload target.
    Uploaded {
        /// The package.
        path: PathBuf,
        /// Where it is now.
        locations: Vec<String>,
    },
    /// An upload attempt failed.
    UploadFailed {
        /// The package.
        path: PathBuf,
        /// Attempts so far.
        attempts: u32,
        /// Why.
        error: String,
    },
    /// A package was deleted after upload (`debug`).
    Deleted {
        /// The package.
        path: PathBuf,
    },
    /// A notice attempt ended.
    Notice {
        /// The notice URL.
        url: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// What it answered.
        result: NoticeResult,
    },
    /// A notice ran out of attempts.
    NoticeGaveUp {
        /// The notice URL.
        url: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// Why the packager could not do something. Messages carry their cause; no variant
/// also returns it as `source()`, so a printed chain names each reason once.
#[derive(Debug, thiserror::Error)]
pub enum PackagerError {
    /// The body is not a task.
    #[error(transparent)]
    BadTask(#[from] task::NotATask),
    /// Packaging ended with a failure status.
    #[error("{task} packaging failed: {status}: {detail}")]
    Package {
        /// `filename=.. channel_id=..`.
        task: String,
        /// The seed's status.
        status: PackageStatus,
        /// Why.
        detail: String,
    },
    /// An upload failed.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The UDP log target cannot be set up.
    #[error(transparent)]
    Udp(#[from] udp::UdpSetupError),
    /// The HTTP client cannot be built.
    #[error("http client: {0}")]
    Http(reqwest::Error),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
}

impl From<reqwest::Error> for PackagerError {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e)
    }
}

impl From<redis::RedisError> for PackagerError {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
}

impl PackagerError {
    /// Whether the same task may succeed later (the bus should redeliver it).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Package { status, .. } => status.is_retryable(),
            Self::Upload(UploadError::Setup { .. }) => false,
            Self::Upload(_) | Self::Redis(_) => true,
            Self::BadTask(_) | Self::Config(_) | Self::Udp(_) | Self::Http(_) => false,
        }
    }

    /// The seed's status for this error: a body that is not a task misses every
    /// argument (`ARG_MISS`); failures outside packaging are `UNKNOWN_ERROR`.
    pub fn status(&self) -> PackageStatus {
        match self {
            Self::Package { status, .. } => *status,
            Self::BadTask(_) => PackageStatus::ArgMiss,
            _ => PackageStatus::UnknownError,
        }
    }
}

/// The packager's shared parts: settings, upload targets, notifier, UDP log, events.
#[derive(Debug)]
pub struct Packager {
    cfg: PackagerConfig,
    uploader: Uploader,
    notifier: Notifier,
    udp: UdpLogger,
    events: broadcast::Sender<PackagerEvent>,
    /// In-process notice retries (bus mode), stopped by `close`.
    retries: TaskTracker,
    closing: CancellationToken,
}

impl Packager {
    /// Checks the settings and builds the upload targets, HTTP client and UDP socket.
    pub async fn new(cfg: PackagerConfig) -> Result<Self, PackagerError> {
        cfg.validate()?;
        let uploader = Uploader::from_config(&cfg)?;
        let notifier = Notifier::from_config(&cfg)?;
        let udp = UdpLogger::from_config(&cfg).await?;
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            cfg,
            uploader,
            notifier,
            udp,
            events,
            retries: TaskTracker::new(),
            closing: CancellationToken::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &PackagerConfig {
        &self.cfg
    }

    /// The UDP logger (the binary sends the `notice` line on SIGHUP through it).
    pub fn udp(&self) -> &UdpLogger {
        &self.udp
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PackagerEvent> {
        self.events.subscribe()
    }

    /// Stops in-process notice retries (each logs that it was dropped) and waits for them.
    pub async fn close(&self) {
        self.closing.cancel();
        self.retries.close();
        self.retries.wait().await;
    }

    fn emit(&self, event: PackagerEvent) {
        // An error only means nobody listens.
        let _ = self.events.send(event);
    }
}

/// Runs the Redis intake, retry, upload and notifier workers until `shutdown`
/// (`task_type = "bus"`: nothing to run; waits). In-flight work finishes; items in the
/// processing lists stay there and are resumed by the next start.
pub async fn run(cfg: PackagerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let packager = Arc::new(Packager::new(cfg).await?);
    run_with(packager, shutdown).await
}

/// `run` with a packager built by the caller (to subscribe to its events first).
pub async fn run_with(packager: Arc<Packager>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let result = match packager.cfg.task_type {
        TaskType::Redis => intake::run_redis(Arc::clone(&packager), shutdown).await,
        TaskType::Bus => {
            shutdown.cancelled().await;
            Ok(())
        }
    };
    packager.close().await;
    result
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
