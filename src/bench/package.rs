//! Channel packaging benchmark: `write_channel` against a plain `std::fs::copy` of the same APK.
//!
//! Run with: `taskbus-bench package [--apk BIG.apk] [--count 9] [--small-count 1000] [--json out.json]`,
//! or `taskbus-bench package --redis ...` for the Redis intake end to end (`redis`).
//! Without `--apk`, Debian's framework-res.apk (46 MB) is zipaligned and signed into a temp
//! dir; the small APK is built with aapt like the test fixtures. Both need the Debian
//! packages apksigner, zipalign, aapt and android-framework-res.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::apk::{read_channel, write_channel, ChannelInfo, WriteOptions};

pub mod redis;

/// Debian's android-framework-res: a real 46 MB, 7 600-entry APK (unsigned).
pub const FRAMEWORK_RES: &str = "/usr/share/android-framework-res/framework-res.apk";

/// Flags of `taskbus-bench package`.
#[derive(Debug, Clone, clap::Args)]
pub struct PackageBenchArgs {
    /// Big v2/v3-signed APK (default: framework-res.apk aligned and signed into a temp dir).
    #[arg(long, value_name = "PATH")]
    pub apk: Option<PathBuf>,
    /// Repetitions on the big APK; medians are reported.
    #[arg(long, default_value_t = 9)]
    pub count: usize,
    /// Channel packages written from the small APK.
    #[arg(long, default_value_t = 1000)]
    pub small_count: usize,
    /// Small signed APK (default: an 8 KB APK built with aapt and signed).
    #[arg(long, value_name = "PATH")]
    pub small_apk: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Measure the Redis intake end to end instead (needs Redis): `--small-count`
    /// tasks pushed to `redis_key` until the last notice is received.
    #[arg(long)]
    pub redis: bool,
    /// Redis host (`--redis`).
    #[arg(long, default_value = "127.0.0.1")]
    pub redis_host: String,
    /// Redis port (`--redis`).
    #[arg(long, default_value_t = 6379)]
    pub redis_port: u16,
    /// Milliseconds the notice receiver takes to answer, one measurement each
    /// (`--redis`; comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100,0")]
    pub notice_delay_ms: Vec<u64>,
    /// Runs per notice delay (`--redis`).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Packaging workers (`--redis`; default: the packager's `packet_count`).
    #[arg(long)]
    pub packet_count: Option<usize>,
    /// `[packager] fsync = false` (`--redis`).
    #[arg(long)]
    pub no_fsync: bool,
}

/// Measured figures; times in seconds, medians over `repetitions`.
#[derive(Debug, Clone, Serialize)]
pub struct PackageBenchReport {
    pub apk: PathBuf,
    pub apk_bytes: u64,
    pub repetitions: usize,
    /// `std::fs::copy` of the big APK.
    pub copy_s: f64,
    /// `write_channel` of the big APK, fsync off (same durability as `copy_s`).
    pub write_s: f64,
    /// `write_s / copy_s`.
    pub ratio_vs_copy: f64,
    /// `std::fs::copy`, then fsync of the copy and of its directory.
    pub copy_fsync_s: f64,
    /// `write_channel` with fsync (the default options).
    pub write_fsync_s: f64,
    /// `write_fsync_s / copy_fsync_s`.
    pub ratio_vs_copy_fsync: f64,
    /// Big-APK channel packages per second with the default options (fsync on).
    pub packages_per_s: f64,
    pub small_apk: PathBuf,
    pub small_apk_bytes: u64,
    pub small_packages: usize,
    /// Wall time for `small_packages` packages, fsync off.
    pub small_total_s: f64,
    pub small_packages_per_s: f64,
    /// Wall time for `small_packages` packages with the default options (fsync on).
    pub small_fsync_total_s: f64,
    pub small_fsync_packages_per_s: f64,
}

/// Runs the benchmark, prints a summary and writes `--json` when given. Called on a
/// blocking thread of a tokio runtime (`--redis` runs its async part on it).
pub fn run(args: &PackageBenchArgs) -> anyhow::Result<()> {
    if args.redis {
        let work = tempfile::tempdir().context("creating the bench directory")?;
        let small = match &args.small_apk {
            Some(apk) => apk.clone(),
            None => build_small_apk(work.path())?,
        };
        let report = tokio::runtime::Handle::current().block_on(redis::run(args, &small))?;
        return write_report(args, &report);
    }
    run_files(args).map(|_| ())
}

fn write_report(args: &PackageBenchArgs, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(report)?;
        fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The file benchmark: `write_channel` against a copy; prints its summary and writes
/// `--json`.
pub fn run_files(args: &PackageBenchArgs) -> anyhow::Result<PackageBenchReport> {
    ensure!(args.count > 0, "--count must be at least 1");
    let work = tempfile::tempdir().context("creating the bench directory")?;
    let big = match &args.apk {
        Some(apk) => apk.clone(),
        None => build_big_apk(work.path())?,
    };
    let small = match &args.small_apk {
        Some(apk) => apk.clone(),
        None => build_small_apk(work.path())?,
    };
    let out_dir = work.path().join("out");
    fs::create_dir(&out_dir)?;
    let mut report = measure_big(&big, &out_dir, args.count)?;
    measure_small(&small, &out_dir, args.small_count, &mut report)?;
    print_summary(&report);
    write_report(args, &report)?;
    Ok(report)
}

fn measure_big(apk: &Path, out_dir: &Path, count: usize) -> anyhow::Result<PackageBenchReport> {
    let apk_bytes = fs::metadata(apk)
        .with_context(|| format!("reading {}", apk.display()))?
        .len();
    let (cp, out) = (out_dir.join("copy.apk"), out_dir.join("channel.apk"));
    fs::copy(apk, &cp).context("warm-up copy")?;
    // Each side writes a fresh file (as the packager does): replacing an existing one
    // adds the old file's deallocation to whichever side meets it.
    let fresh = |path: &Path| match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    let mut samples = [vec![], vec![], vec![], vec![]];
    for i in 0..count {
        let info = ChannelInfo::new(format!("big{i}"), "1.0");
        // Alternate which side goes first so drift and writeback hit both alike.
        for step in [i % 2, 1 - i % 2] {
            for fsync in [false, true] {
                fresh(if step == 0 { &cp } else { &out })?;
                let seconds = if step == 0 {
                    timed(|| copy_file(apk, &cp, fsync))?
                } else {
                    let opts = WriteOptions {
                        fsync,
                        ..WriteOptions::default()
                    };
                    timed(|| write_channel(apk, &out, &info, &opts).map(drop))?
                };
                samples[step + 2 * usize::from(fsync)].push(seconds);
            }
        }
        ensure!(
            read_channel(&out)? == Some(info.clone()),
            "channel did not read back"
        );
    }
    fs::remove_file(&cp)?;
    fs::remove_file(&out)?;
    let [copy_s, write_s, copy_fsync_s, write_fsync_s] = samples.map(median);
    Ok(PackageBenchReport {
        apk: apk.to_path_buf(),
        apk_bytes,
        repetitions: count,
        copy_s,
        write_s,
        ratio_vs_copy: write_s / copy_s,
        copy_fsync_s,
        write_fsync_s,
        ratio_vs_copy_fsync: write_fsync_s / copy_fsync_s,
        packages_per_s: 1.0 / write_fsync_s,
        small_apk: PathBuf::new(),
        small_apk_bytes: 0,
        small_packages: 0,
        small_total_s: 0.0,
        small_packages_per_s: 0.0,
        small_fsync_total_s: 0.0,
        small_fsync_packages_per_s: 0.0,
    })
}

fn measure_small(
    apk: &Path,
    out_dir: &Path,
    count: usize,
    report: &mut PackageBenchReport,
) -> anyhow::Result<()> {
    report.small_apk = apk.to_path_buf();
    report.small_apk_bytes = fs::metadata(apk)
        .with_context(|| format!("reading {}", apk.display()))?
        .len();
    report.small_packages = count;
    for fsync in [false, true] {
        let dir = out_dir.join(if fsync { "small-fsync" } else { "small" });
        fs::create_dir(&dir)?;
        let opts = WriteOptions {
            fsync,
            ..WriteOptions::default()
        };
        let bar = ProgressBar::new(count as u64).with_style(ProgressStyle::with_template(
            "{msg} {bar:40} {pos}/{len} {per_sec}",
        )?);
        bar.set_message(if fsync { "small, fsync" } else { "small" });
        let started = Instant::now();
        for i in 0..count {
            let info = ChannelInfo::new(format!("ch{i}"), "1.0");
            write_channel(apk, &dir.join(format!("ch{i}.apk")), &info, &opts)?;
            bar.inc(1);
        }
        let total = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if fsync {
            report.small_fsync_total_s = total;
            report.small_fsync_packages_per_s = count as f64 / total;
        } else {
            report.small_total_s = total;
            report.small_packages_per_s = count as f64 / total;
        }
        fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// The baseline: `std::fs::copy`, with `fsync` also syncing the copy and its directory
/// (the durability `write_channel` gives with fsync on).
fn copy_file(from: &Path, to: &Path, fsync: bool) -> std::io::Result<()> {
    fs::copy(from, to)?;
    if fsync {
        File::open(to)?.sync_all()?;
        File::open(to.parent().unwrap_or(Path::new(".")))?.sync_all()?;
    }
    Ok(())
}

fn timed<E>(f: impl FnOnce() -> Result<(), E>) -> anyhow::Result<f64>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len().is_multiple_of(2) {
        (samples[mid - 1] + samples[mid]) / 2.0
    } else {
        samples[mid]
    }
}

fn print_summary(r: &PackageBenchReport) {
    let mb = r.apk_bytes as f64 / 1e6;
    println!(
        "big apk {} ({mb:.1} MB), median of {}:",
        r.apk.display(),
        r.repetitions
    );
    println!(
        "  copy {:.1} ms, write_channel {:.1} ms: ratio {:.2}",
        r.copy_s * 1e3,
        r.write_s * 1e3,
        r.ratio_vs_copy
    );
    println!(
        "  with fsync: copy {:.1} ms, write_channel {:.1} ms: ratio {:.2}, {:.1} packages/s",
        r.copy_fsync_s * 1e3,
        r.write_fsync_s * 1e3,
        r.ratio_vs_copy_fsync,
        r.packages_per_s
    );
    println!(
        "small apk ({} bytes): {} packages in {:.3} s ({:.0}/s); with fsync {:.3} s ({:.0}/s)",
        r.small_apk_bytes,
        r.small_packages,
        r.small_total_s,
        r.small_packages_per_s,
        r.small_fsync_total_s,
        r.small_fsync_packages_per_s
    );
}

/// Aligns and signs framework-res.apk (v3: its minSdk is 29) with the bench keystore.
fn build_big_apk(dir: &Path) -> anyhow::Result<PathBuf> {
    require_tools(&["keytool", "zipalign", "apksigner"])?;
    let keystore = keystore(dir)?;
    let aligned = dir.join("framework-res-aligned.apk");
    tool(
        "zipalign",
        &["-f", "-p", "4", FRAMEWORK_RES, path_str(&aligned)?],
    )?;
    sign(&keystore, &aligned, &dir.join("framework-res-signed.apk"))
}

/// Builds the fixture-style 8 KB APK (manifest + one string, v1+v2+v3 signed).
fn build_small_apk(dir: &Path) -> anyhow::Result<PathBuf> {
    require_tools(&["keytool", "zipalign", "apksigner", "aapt"])?;
    let keystore = keystore(dir)?;
    let src = dir.join("small-src");
    fs::create_dir_all(src.join("res/values"))?;
    fs::write(src.join("AndroidManifest.xml"), SMALL_MANIFEST)?;
    fs::write(
        src.join("res/values/strings.xml"),
        r#"<resources><string name="app_name">Mother</string></resources>"#,
    )?;
    let (unaligned, aligned) = (
        dir.join("small-unaligned.apk"),
        dir.join("small-aligned.apk"),
    );
    let manifest = src.join("AndroidManifest.xml");
    tool(
        "aapt",
        &[
            "package",
            "-f",
            "-M",
            path_str(&manifest)?,
            "-S",
            path_str(&src.join("res"))?,
            "-I",
            FRAMEWORK_RES,
            "-F",
            path_str(&unaligned)?,
        ],
    )?;
    tool(
        "zipalign",
        &["-f", "-p", "4", path_str(&unaligned)?, path_str(&aligned)?],
    )?;
    sign(&keystore, &aligned, &dir.join("small-signed.apk"))
}

const SMALL_MANIFEST: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<manifest xmlns:android="http://schemas.android.com/apk/res/android"
    package="com.example.mother" android:versionCode="1" android:versionName="1.0">
    <uses-sdk android:minSdkVersion="21" android:targetSdkVersion="33" />
    <application android:label="@string/app_name" android:hasCode="false" />
</manifest>
"#;

/// The test fixtures' keystore parameters (store and key password `android`).
fn keystore(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("bench.jks");
    if !path.exists() {
        tool(
            "keytool",
            &[
                "-genkeypair",
                "-keystore",
                path_str(&path)?,
                "-storepass",
                "android",
                "-keypass",
                "android",
                "-alias",
                "test",
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-validity",
                "10000",
                "-dname",
                "CN=test",
            ],
        )?;
    }
    Ok(path)
}

fn sign(keystore: &Path, input: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    tool(
        "apksigner",
        &[
            "sign",
            "--ks",
            path_str(keystore)?,
            "--ks-pass",
            "pass:android",
            "--key-pass",
            "pass:android",
            "--out",
            path_str(out)?,
            path_str(input)?,
        ],
    )?;
    Ok(out.to_path_buf())
}

fn require_tools(tools: &[&str]) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    if !Path::new(FRAMEWORK_RES).is_file() {
        missing.push(FRAMEWORK_RES);
    }
    if !missing.is_empty() {
        bail!(
            "cannot build the default bench apks (missing: {}): install the Debian packages \
             apksigner zipalign aapt android-framework-res, or pass --apk and --small-apk",
            missing.join(", ")
        );
    }
    Ok(())
}

fn tool(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("non-utf-8 path {}", path.display()))
}
