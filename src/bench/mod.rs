//! `taskbus-bench`: measured runs of example pipelines. Each mode starts what it
//! needs in-process over loopback TCP and reports figures (and `--json PATH`).

pub mod crawl;
pub mod hop;
pub mod http;
pub mod memory;
pub mod package;
pub mod restart;

/// Writes `report` as JSON to `path`.
pub fn write_json<T: serde::Serialize>(path: &std::path::Path, report: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n")
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
