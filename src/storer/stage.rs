//! The storer stage on the bus: `parsing_data` rows into a table named after the task
//! type (`body.task_type`, see `crawl::stage`).
//!
//! Outcomes, as the broker sees them:
//! - every row stored: DONE (the pipeline ends here);
//! - some rows refused by the database: the other rows are stored first, each refusal
//!   is logged on the `scripts` target with its reason, then the task FAILs
//!   **permanently** with the refusals in its error, so it waits in the dead letters
//!   (`taskbus dead list`) until someone fixes the table and runs `dead retry`
//!   (writes are upserts: the rows already stored are not duplicated);
//! - the database is down (or the writer stopped): a retryable FAIL;
//! - no task type, or one that cannot be a table name: a permanent FAIL.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Feeds, Row, Storer, StorerConfig};
use crate::crawl::stage::{local_task, CrawlMetrics, StageKind, TASK_TYPE_KEY};
use crate::crawl::LocalTask;
use crate::task::{NewTask, Task};
use crate::worker::config::WorkerSpec;
use crate::worker::{Stage, StageError};

/// Most refusals quoted in a FAIL's error (all are in scripts.log).
const QUOTED_REFUSALS: usize = 5;

/// Builds the `storer` stage with counters of its own.
pub async fn build(spec: &WorkerSpec, storer: &StorerConfig) -> anyhow::Result<Arc<dyn Stage>> {
    build_with(spec, storer, Arc::new(CrawlMetrics::default())).await
}

/// Builds the `storer` stage (opening the database), counting into `metrics`.
pub async fn build_with(
    _spec: &WorkerSpec,
    storer: &StorerConfig,
    metrics: Arc<CrawlMetrics>,
) -> anyhow::Result<Arc<dyn Stage>> {
    let feeds = Feeds::new(storer.feeds.clone());
    let storer = Storer::open(storer).await?;
    Ok(Arc::new(StorerStage {
        storer: Arc::new(storer),
        feeds: Arc::new(feeds),
        metrics,
    }))
}

/// The rows of a parsed task, ready for [`Storer::store`]: each row's `url` field
/// becomes the `url` column, `_guid` is the server task's guid, and the index is
/// the row's position on its page mixed with [`request_id`], so the same item of a redelivered task (at any
/// stage) gets the same `_key` and is updated, not duplicated.
pub fn task_rows(local: &LocalTask) -> Vec<Row> {
    let mut rows = Vec::new();
    for (page, entry) in local.body.parsing_data.iter().enumerate() {
        let request = local
            .body
            .urls
            .get(page)
            .map_or(0, |item| request_id(&item.url));
        let page_rows: Vec<&serde_json::Map<String, Value>> = match entry {
            Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
            Value::Object(row) => vec![row],
            _ => Vec::new(),
        };
        for (index, row) in page_rows.into_iter().enumerate() {
            let mut fields = row.clone();
            let url = match fields.remove("url") {
                Some(Value::String(url)) => url,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            rows.push(Row {
                guid: local.guid.clone(),
                url,
                index: request | index,
                fields,
            });
        }
    }
    rows
}

/// Bits of a row index that hold the item's position on its page.
const ITEM_BITS: u32 = 24;

/// What tells apart requests of one URL (a POST API answering page after page): 0
/// for a plain GET, else 32 bits of sha256 of the method, data and page, shifted
/// above the item position. Part of the row index, hence of the row's hash key.
fn request_id(entry: &crate::crawl::UrlEntry) -> usize {
    if entry.data.is_null() && entry.page.is_null() && entry.method.eq_ignore_ascii_case("GET") {
        return 0;
    }
    let text = format!(
        "{}|{}|{}",
        entry.method.to_ascii_uppercase(),
        entry.data,
        entry.page
    );
    let digest = Sha256::digest(text.as_bytes());
    let high = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    (high as usize) << ITEM_BITS
}

/// Appends the rows to the task type's feed (buffered appends, flushed per task).
fn write_feed(
    feeds: &Feeds,
    metrics: &CrawlMetrics,
    task_type: &str,
    rows: Vec<Row>,
) -> Result<Vec<NewTask>, StageError> {
    let n_rows = rows.len() as u64;
    match feeds.write(task_type, &rows) {
        Ok(()) => {
            CrawlMetrics::add(&metrics.rows_stored, n_rows);
            Ok(Vec::new())
        }
        Err(error) => {
            CrawlMetrics::add(&metrics.store_errors, 1);
            Err(StageError::retryable(error))
        }
    }
}

struct StorerStage {
    storer: Arc<Storer>,
    feeds: Arc<Feeds>,
    metrics: Arc<CrawlMetrics>,
}

impl Stage for StorerStage {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let storer = Arc::clone(&self.storer);
        let feeds = Arc::clone(&self.feeds);
        let metrics = Arc::clone(&self.metrics);
        self.metrics.timed(
            StageKind::Storer,
            Box::pin(async move { store(&storer, &feeds, &metrics, task).await }),
        )
    }
}

async fn store(
    storer: &Storer,
    feeds: &Feeds,
    metrics: &CrawlMetrics,
    mut task: Task,
) -> Result<Vec<NewTask>, StageError> {
    let local = local_task(&mut task)?;
    if !matches!(local.body.extra.get(TASK_TYPE_KEY), Some(Value::String(t)) if !t.is_empty()) {
        return Err(StageError::permanent(format!(
            "guid={} has no body.{TASK_TYPE_KEY}: no table to store its rows in",
            task.guid
        )));
    }
    let rows = task_rows(&local);
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let n_rows = rows.len();
    if feeds.has(&local.topic) {
        return write_feed(feeds, metrics, &local.topic, rows);
    }
    let report = match storer.store(&local.topic, rows).await {
        Ok(report) => report,
        Err(error) => {
            CrawlMetrics::add(&metrics.store_errors, 1);
            return Err(StageError {
                message: format!("storing {n_rows} rows of {}: {error}", local.topic),
                retryable: error.is_retryable(),
            });
        }
    };
    CrawlMetrics::add(&metrics.rows_stored, report.stored as u64);
    CrawlMetrics::add(&metrics.rows_refused, report.refused.len() as u64);
    if report.refused.is_empty() {
        log::debug!(
            "guid={} table={} stored rows={}",
            task.guid,
            report.table,
            report.stored
        );
        return Ok(Vec::new());
    }
    let quoted: Vec<String> = report
        .refused
        .iter()
        .take(QUOTED_REFUSALS)
        .map(|(position, why)| format!("row {position}: {why}"))
        .collect();
    Err(StageError::permanent(format!(
        "table {}: stored {} rows, refused {}: {}",
        report.table,
        report.stored,
        report.refused.len(),
        quoted.join("; ")
    )))
}
