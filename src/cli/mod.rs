//! What the binaries share: loading the configuration, setting up logs, waiting for
//! a shutdown signal, and the client commands of `taskbus`.

pub mod commands;

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

impl CommonArgs {
    /// Loads the configuration: defaults, then the file, then `TASKBUS__*` variables.
    pub fn load_config(&self) -> anyhow::Result<Arc<Config>> {
        let path = self.config.clone().or_else(|| {
            let default = PathBuf::from("bus.toml");
            default.exists().then_some(default)
        });
        Ok(Arc::new(config::load(path.as_deref(), std::env::vars())?))
    }

    /// Loads the configuration and installs the logger.
    pub fn setup(&self) -> anyhow::Result<Arc<Config>> {
        let config = self.load_config()?;
        crate::logging::init(&config.log, self.log_level.as_deref())?;
        Ok(config)
    }
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => log::info!("interrupt received, shutting down"),
        _ = terminate => log::info!("SIGTERM received, shutting down"),
    }
}

/// Prints an error as one line and exits non-zero.
pub fn exit_with(error: anyhow::Error) -> ! {
    let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
    eprintln!("error: {}", chain.join(": "));
    std::process::exit(1)
}
