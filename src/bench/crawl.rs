//! `taskbus-bench crawl`: a link-following crawl through executor -> fetcher ->
//! parser -> storer on the bus, like `scrapy bench`.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

/// Flags of `taskbus-bench crawl`.
#[derive(Debug, Clone, Args)]
pub struct CrawlArgs {
    /// Seconds to crawl.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct CrawlReport {
    pub pages_per_s: f64,
    pub rows_per_s: f64,
    pub seconds: f64,
}

/// Runs the bench and returns its figures.
pub async fn run(_args: &CrawlArgs) -> anyhow::Result<CrawlReport> {
    anyhow::bail!("the crawl bench is not built yet")
}
