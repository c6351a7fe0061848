//! Building one channel package: checks, paths, the blocking APK write, the status.
//!
//! Naming (the seed does not specify it): the package is
//! `<out_root>/<filename>/<filename>_<channel_id>.apk`, where `out_root` is
//! `subpackage_sdk_path`, or `sdk_game_path` (next to the mother APK) when it is unset.
//! It is first written as `.taskbus-apk.<instance>.<random>.tmp` in `tempfile_dir` or
//! the same directory (random chars from `random_chr`) and renamed, so a package that
//! exists is always whole, and two workers building the same package never share a
//! file. What a kill leaves of such files is swept at the next start (`sweep_temp`).

use std::io;
use std::path::{Path, PathBuf};

use rand::Rng;
use serde_json::{json, Value};

use super::config::PackagerConfig;
use super::status::PackageStatus;
use super::task::{PackageTask, TaskFields};
use crate::apk::{self, ChannelInfo, WriteOptions};

/// What became of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageOutcome {
    /// The seed's status.
    pub status: PackageStatus,
    /// The package (when built, or already there for `HAVEN_SUB`).
    pub path: Option<PathBuf>,
    /// Why, in words (empty when the status says it all).
    pub detail: String,
    /// Size of the package in bytes, when built.
    pub bytes: Option<u64>,
}

impl PackageOutcome {
    fn new(status: PackageStatus, path: Option<PathBuf>, detail: impl Into<String>) -> Self {
        Self {
            status,
            path,
            detail: detail.into(),
            bytes: None,
        }
    }

    /// A failure with no package.
    pub fn failed(status: PackageStatus, detail: impl Into<String>) -> Self {
        Self::new(status, None, detail)
    }

    /// `{"code":201,"error_key":"COMPLETE","message":"打包已完成","path":..,"detail":..}`.
    pub fn to_json(&self) -> Value {
        json!({
            "code": self.status.code(),
            "error_key": self.status.key(),
            "message": self.status.message(),
            "path": self.path.as_ref().map(|p| p.display().to_string()),
            "detail": self.detail,
            "bytes": self.bytes,
        })
    }
}

/// The mother APK of a task: `<sdk_game_path>/<filename>/<filename>.apk`.
pub fn mother_path(cfg: &PackagerConfig, fields: &TaskFields) -> PathBuf {
    cfg.sdk_game_path
        .join(&fields.filename)
        .join(format!("{}.apk", fields.filename))
}

/// The package of a task (see the module doc for the naming).
pub fn output_path(cfg: &PackagerConfig, fields: &TaskFields) -> PathBuf {
    let root = cfg
        .subpackage_sdk_path
        .as_deref()
        .unwrap_or(&cfg.sdk_game_path);
    root.join(&fields.filename)
        .join(format!("{}_{}.apk", fields.filename, fields.channel_id))
}

/// A random string of `cfg.random_len` characters from `cfg.random_chr`.
pub fn random_string(cfg: &PackagerConfig) -> String {
    let alphabet: Vec<char> = cfg.random_chr.chars().collect();
    let mut rng = rand::thread_rng();
    (0..cfg.random_len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
        .collect()
}

/// Builds the channel package of `task`. Never panics; every failure is a status.
pub async fn package_one(cfg: &PackagerConfig, task: &PackageTask) -> PackageOutcome {
    let fields = match task.fields() {
        Ok(fields) => fields,
        Err(missing) => {
            return PackageOutcome::new(PackageStatus::ArgMiss, None, format!("bad {missing}"))
        }
    };
    let mother = mother_path(cfg, &fields);
    let out = output_path(cfg, &fields);
    // An existing package answers the task even if its mother is gone meanwhile.
    if !fields.enforcement && tokio::fs::try_exists(&out).await.unwrap_or(false) {
        return PackageOutcome::new(PackageStatus::HavenSub, Some(out), "");
    }
    if let Err(outcome) = check_mother(&mother).await {
        return outcome;
    }
    write_package(cfg, &fields, mother, out).await
}

async fn check_mother(mother: &Path) -> Result<(), PackageOutcome> {
    let detail = |what: &str| format!("{what}: {}", mother.display());
    match tokio::fs::metadata(mother).await {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(PackageOutcome::new(
            PackageStatus::NoApk,
            None,
            detail("mother apk is not a file"),
        )),
        Err(e) => Err(PackageOutcome::new(
            io_status(&e, PackageStatus::NoApk),
            None,
            format!("{}: {e}", detail("mother apk")),
        )),
    }
}

fn io_status(e: &io::Error, not_found: PackageStatus) -> PackageStatus {
    match e.kind() {
        io::ErrorKind::NotFound => not_found,
        io::ErrorKind::PermissionDenied => PackageStatus::PermError,
        _ => PackageStatus::UnknownError,
    }
}

async fn write_package(
    cfg: &PackagerConfig,
    fields: &TaskFields,
    mother: PathBuf,
    out: PathBuf,
) -> PackageOutcome {
    let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        let detail = format!("cannot create {}: {e}", dir.display());
        return PackageOutcome::new(PackageStatus::CopyApkError, None, detail);
    }
    let info = ChannelInfo {
        channel: fields.channel_id.clone(),
        channel_version: fields.channel_version.clone(),
        extra: serde_json::Map::new(),
    };
    let opts = WriteOptions {
        temp_dir: Some(cfg.tempfile_dir.clone().unwrap_or_else(|| dir.clone())),
        vasdolly: cfg.vasdolly,
        fsync: cfg.fsync,
        temp_tag: cfg.instance.clone(),
        temp_alphabet: cfg.random_chr.clone(),
        temp_random_len: cfg.random_len,
        ..WriteOptions::default()
    };
    let out_for_write = out.clone();
    let written = tokio::task::spawn_blocking(move || {
        apk::write_channel(&mother, &out_for_write, &info, &opts)
    })
    .await;
    // The writer's temp copy is removed by the writer on failure (and on a panic, as
    // the unwinding drops it).
    let report = match written {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            let status = PackageStatus::from_key(e.seed_code());
            return PackageOutcome::new(status, None, e.to_string());
        }
        Err(join) => {
            let detail = format!("apk writer panicked: {join}");
            return PackageOutcome::new(PackageStatus::UnknownError, None, detail);
        }
    };
    PackageOutcome {
        bytes: Some(report.apk_bytes),
        ..PackageOutcome::new(PackageStatus::Complete, Some(out), "")
    }
}

/// Removes the temp copies a killed process of this `instance` left: in `tempfile_dir`
/// and in every `<out_root>/<filename>/` directory. `older_than`: only files untouched
/// that long (bus mode, where no lock proves that no live process shares the
/// instance). Returns what it removed; a directory it cannot read is logged and skipped.
pub fn sweep_temp(cfg: &PackagerConfig, older_than: Option<std::time::Duration>) -> Vec<PathBuf> {
    let root = cfg
        .subpackage_sdk_path
        .as_deref()
        .unwrap_or(&cfg.sdk_game_path);
    let mut dirs: Vec<PathBuf> = cfg.tempfile_dir.iter().cloned().collect();
    match std::fs::read_dir(root) {
        Ok(entries) => dirs.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("temp-file sweep: cannot list {}: {e}", root.display()),
    }
    let mut removed = Vec::new();
    for dir in dirs {
        match apk::sweep_temp_files(&dir, &cfg.instance, older_than) {
            Ok(files) => removed.extend(files),
            Err(e) => log::warn!("temp-file sweep: {}: {e}", dir.display()),
        }
    }
    for file in &removed {
        log::info!(
            "removed temp file {} left by an earlier run",
            file.display()
        );
    }
    removed
}
