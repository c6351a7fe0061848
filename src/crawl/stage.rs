//! The crawl stages on the bus: executor, fetcher and parser as worker stages.

use std::sync::Arc;

use crate::config::{Config, WorkerSpec};
use crate::worker::Stage;

/// Builds the `executor`, `fetcher` or `parser` stage.
pub async fn build(spec: &WorkerSpec, _config: &Config) -> anyhow::Result<Arc<dyn Stage>> {
    anyhow::bail!("stage \"{}\" is not wired to the bus yet", spec.stage)
}
