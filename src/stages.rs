//! The stages a worker process can run, by name.

use std::sync::Arc;

use crate::config::{Config, WorkerSpec};
use crate::worker::{echo::Echo, Stage};

/// Names of the built-in stages.
pub const STAGES: &[&str] = &["echo", "executor", "fetcher", "parser", "storer", "package"];

/// Builds the stage a `[[workers]]` entry names (opening what it needs: HTTP
/// clients, database connections).
pub async fn build(spec: &WorkerSpec, config: &Config) -> anyhow::Result<Arc<dyn Stage>> {
    match spec.stage.as_str() {
        "echo" => Ok(Arc::new(Echo {
            forward: spec.next_topic.is_some(),
        })),
        "executor" | "fetcher" | "parser" => crate::crawl::stage::build(spec, config).await,
        "storer" => crate::storer::stage::build(spec, config).await,
        "package" => crate::packager::stage::build(spec, config).await,
        other => anyhow::bail!(
            "unknown stage \"{other}\", expected one of {}",
            STAGES.join(", ")
        ),
    }
}
