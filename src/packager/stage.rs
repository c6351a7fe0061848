//! The packager stage on the bus (topic `package`).

use std::sync::Arc;

use crate::config::{Config, WorkerSpec};
use crate::worker::Stage;

/// Builds the `package` stage.
pub async fn build(spec: &WorkerSpec, _config: &Config) -> anyhow::Result<Arc<dyn Stage>> {
    anyhow::bail!("stage \"{}\" is not wired to the bus yet", spec.stage)
}

/// Called by the binaries on SIGHUP, before they stop: the seed's `notice` UDP line.
pub async fn on_hangup(_config: &Config) {}
