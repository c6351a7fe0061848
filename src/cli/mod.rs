//! What the binaries share: loading the configuration, setting up logs, waiting for
//! a shutdown signal, and the client commands of `taskbus`.

pub mod accounts;
pub mod commands;
pub mod crawl;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::config::{self, Config};

/// Flags every binary takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The configuration file (every key has a default; see bus.toml).
    #[arg(long, short = 'c', env = "TASKBUS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Level of the log lines on stderr (off, error, warn, info, debug, trace).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
}

/// The shipped `bus.toml`, compiled in: the configuration of a binary started where
/// there is no `bus.toml` and given no `--config` (after `cargo install`, say), so that
/// `taskbus run` does there what the README promises.
pub const BUILTIN_CONFIG: &str = include_str!("../../bus.toml");

/// How [`BUILTIN_CONFIG`] is named in messages.
pub const BUILTIN_ORIGIN: &str = "built-in bus.toml";

impl CommonArgs {
    /// Loads the configuration: `--config`, else `./bus.toml`, else the built-in copy of
    /// the shipped `bus.toml`; then `TASKBUS__*` variables.
    pub fn load_config(&self) -> anyhow::Result<Arc<Config>> {
        let path = self.config.clone().or_else(|| {
            let default = PathBuf::from("bus.toml");
            default.exists().then_some(default)
        });
        let config = match path {
            Some(path) => config::load(Some(&path), std::env::vars())?,
            None => config::load_text(BUILTIN_CONFIG, BUILTIN_ORIGIN, std::env::vars())?,
        };
        Ok(Arc::new(config))
    }

    /// Loads the configuration and installs the logger.
    pub fn setup(&self) -> anyhow::Result<Arc<Config>> {
        let config = self.load_config()?;
        crate::logging::init(&config.log, self.log_level.as_deref())?;
        Ok(config)
    }
}

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    /// SIGHUP: the seed's packager announces it (a `notice` UDP line) and exits
    /// gracefully.
    Hangup,
}

/// Resolves when the process gets Ctrl-C, SIGTERM or SIGHUP.
pub async fn shutdown_signal() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let wait = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        _ = wait(SignalKind::terminate()) => Signal::Terminate,
        _ = wait(SignalKind::hangup()) => Signal::Hangup,
    };
    log::info!("{signal:?} received, shutting down");
    signal
}

/// What a binary does on a stop signal before it stops: on SIGHUP, the packager's
/// `notice` line.
pub async fn on_signal(signal: Signal, config: &Config) {
    if signal == Signal::Hangup {
        crate::packager::stage::on_hangup(&config.packager).await;
    }
}

/// `taskbus packager`: the Redis intake alone, until `stop`. Refuses a configuration
/// whose `[packager] task_type` is not `"redis"` (there would be nothing to serve).
pub async fn serve_packager(
    config: &Config,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let cfg = &config.packager;
    anyhow::ensure!(
        cfg.task_type == crate::packager::TaskType::Redis,
        "taskbus packager serves the seed's redis lists: set [packager] task_type = \"redis\" \
         (or TASKBUS__PACKAGER__TASK_TYPE=redis)"
    );
    eprintln!(
        "taskbus packager: redis {}:{} db {} key {} (Ctrl-C stops)",
        cfg.redis_host, cfg.redis_port, cfg.redis_db, cfg.redis_key
    );
    crate::packager::run(cfg.clone(), stop).await
}

/// Prints an error as one line and exits non-zero.
pub fn exit_with(error: anyhow::Error) -> ! {
    // One line, whatever line breaks the messages inside carry.
    let one_line = |m: String| {
        m.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let chain: Vec<String> = error.chain().map(|e| one_line(e.to_string())).collect();
    eprintln!("error: {}", chain.join(": "));
    std::process::exit(1)
}
