//! The storer stage on the bus: `parsing_data` rows into a table named after the task type.

use std::sync::Arc;

use crate::config::{Config, WorkerSpec};
use crate::worker::Stage;

/// Builds the `storer` stage.
pub async fn build(spec: &WorkerSpec, _config: &Config) -> anyhow::Result<Arc<dyn Stage>> {
    anyhow::bail!("stage \"{}\" is not wired to the bus yet", spec.stage)
}
