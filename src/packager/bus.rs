//! The bus intake (topic `package`): one task in, package + upload + first notice, the
//! outcome out. Retries belong to the bus: a retryable error asks it to redeliver.
//!
//! Notices are retried in this process (`notice_retry` bounds) and dropped, with a
//! scripts.log error, if the process stops first. A task the bus gives up on after its
//! own `max_retry` is not notified (its dead-letter entry carries the last error).

use serde_json::Value;

use super::flow::Then;
use super::notice::notice_record;
use super::package::{package_one, PackageOutcome};
use super::status::PackageStatus;
use super::task::PackageTask;
use super::{Packager, PackagerError, PackagerEvent};

/// Handles one bus task: `{"code","error_key","message","path","detail","bytes","urls"}`
/// on `COMPLETE` or `HAVEN_SUB`; an error otherwise, saying whether to retry.
pub async fn handle_bus_task(ctx: &Packager, body: Value) -> Result<Value, PackagerError> {
    handle_bus_task_as(ctx, "", body).await
}

/// `handle_bus_task` whose scripts.log line starts with `origin` (e.g. `guid=.. topic=..`).
pub async fn handle_bus_task_as(
    ctx: &Packager,
    origin: &str,
    body: Value,
) -> Result<Value, PackagerError> {
    let task = PackageTask::from_value(body)?;
    let who = format!("{origin} {}", task.describe()).trim().to_string();
    let outcome = package_one(&ctx.cfg, &task).await;
    ctx.emit(PackagerEvent::Outcome {
        task: task.describe(),
        status: outcome.status,
        path: outcome.path.clone(),
    });
    match outcome.status {
        PackageStatus::Complete => {
            let urls = upload_and_notify(ctx, &who, &task, &outcome).await?;
            let mut json = outcome.to_json();
            json["urls"] = urls.into();
            Ok(json)
        }
        PackageStatus::HavenSub => {
            ctx.report_as(&who, &outcome, Then::GiveUp).await;
            notify(ctx, &task, &outcome, &[]).await;
            Ok(outcome.to_json())
        }
        status => {
            if status.is_retryable() {
                ctx.report_as(&who, &outcome, Then::Redeliver).await;
            } else {
                ctx.report_as(&who, &outcome, Then::GiveUp).await;
                notify(ctx, &task, &outcome, &[]).await;
            }
            Err(PackagerError::Package {
                task: task.describe(),
                status,
                detail: outcome.detail,
            })
        }
    }
}

async fn upload_and_notify(
    ctx: &Packager,
    who: &str,
    task: &PackageTask,
    outcome: &PackageOutcome,
) -> Result<Vec<String>, PackagerError> {
    let path = outcome.path.clone().unwrap_or_default();
    let mut urls = Vec::new();
    if !ctx.uploader.is_empty() {
        let game = task.filename().unwrap_or_default();
        match ctx.uploader.upload(&path, game, &mut Vec::new()).await {
            Ok(locations) => urls = locations,
            Err(e) => {
                let code = PackageStatus::UnknownError;
                log::warn!(target: "scripts", "{who} code={} error_key={} upload failed: {e} retryable={}",
                    code.code(), code.key(), !matches!(e, super::UploadError::Setup { .. }));
                ctx.emit(PackagerEvent::UploadFailed {
                    path,
                    attempts: 1,
                    error: e.to_string(),
                });
                return Err(e.into());
            }
        }
        ctx.emit(PackagerEvent::Uploaded {
            path: path.clone(),
            locations: urls.clone(),
        });
    }
    ctx.report_as(who, outcome, Then::GiveUp).await;
    if ctx.cfg.debug {
        // Debug: no notice; the local copy goes only once it is uploaded somewhere.
        if !ctx.uploader.is_empty() {
            ctx.delete_package(&path).await;
        }
        return Ok(urls);
    }
    notify(ctx, task, outcome, &urls).await;
    Ok(urls)
}

async fn notify(ctx: &Packager, task: &PackageTask, outcome: &PackageOutcome, urls: &[String]) {
    if let Some(record) = notice_record(task, outcome, urls) {
        ctx.notify_in_process(record);
    }
}
