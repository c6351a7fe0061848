//! The stages a worker process can run, by name.

use std::sync::Arc;

use crate::config::{Config, WorkerSpec};
use crate::worker::{echo::Echo, Stage};

/// Names of the built-in stages.
pub const STAGES: &[&str] = &["echo"];

/// Builds the stage a `[[workers]]` entry names.
pub fn build(spec: &WorkerSpec, _config: &Config) -> anyhow::Result<Arc<dyn Stage>> {
    match spec.stage.as_str() {
        "echo" => Ok(Arc::new(Echo {
            forward: spec.next_topic.is_some(),
        })),
        other => anyhow::bail!(
            "unknown stage \"{other}\", expected one of {}",
            STAGES.join(", ")
        ),
    }
}
