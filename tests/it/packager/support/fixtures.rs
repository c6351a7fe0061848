//! Real signed APK fixtures, built once per test binary by `make-apk-fixtures.sh`, and
//! the checks every produced package goes through (`apksigner verify`, `zipalign -c 4`,
//! the channel read back). Needs the Debian packages apksigner, zipalign, aapt and
//! android-framework-res. Shared by the `packager::apk` tests and the other packager
//! tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SCRIPT: &str = "make-apk-fixtures.sh";

/// The signed variants the script builds, with the `--min-sdk-version` that
/// `apksigner verify` needs for each.
pub const SIGNED: [(&str, Option<&str>); 3] = [
    ("mother-v123.apk", None),
    ("mother-v12.apk", None),
    ("mother-v3only.apk", Some("28")),
];

/// Inputs without a signing block (v1-only, unsigned): `WRONG_APK`.
pub const UNSIGNED: [&str; 2] = ["mother-v1.apk", "mother-unsigned.apk"];

/// Directory of the fixture APKs, or `None` (after printing `skipped: <why>`) when the
/// tools are missing; under `CI=true` a panic instead.
pub fn fixtures() -> Option<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(build_fixtures) {
        Ok(dir) => Some(dir),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("{why}"),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

fn build_fixtures() -> Result<PathBuf, String> {
    if Command::new("apksigner").arg("--version").output().is_err() {
        return Err("apksigner not installed (apt-get install apksigner zipalign aapt android-framework-res)".into());
    }
    let script = script_path().ok_or(format!("{SCRIPT} not found (set APK_FIXTURE_SCRIPT)"))?;
    // One directory per test binary: the binaries of one `cargo test` run in turn, but
    // two cargo invocations may run at once.
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".into());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("apk-fixtures")
        .join(format!("{binary}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir)
}

/// The fixture script: `$APK_FIXTURE_SCRIPT`, else `tools/` in this repository.
fn script_path() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("APK_FIXTURE_SCRIPT") {
        return Some(PathBuf::from(path));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Some(root.join("tools").join(SCRIPT)).filter(|p| p.is_file())
}

/// Runs a tool and panics with its output when it fails.
pub fn run_tool(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `apksigner verify -Werr` (with `--min-sdk-version` when given) and `zipalign -c 4`.
pub fn verify(apk: &Path, min_sdk: Option<&str>) {
    let mut args = vec!["verify", "-Werr"];
    if let Some(sdk) = min_sdk {
        args.extend(["--min-sdk-version", sdk]);
    }
    let path = apk.to_str().unwrap();
    args.push(path);
    run_tool("apksigner", &args);
    run_tool("zipalign", &["-c", "4", path]);
}

/// The `--min-sdk-version` that `apksigner verify` needs for a package of `variant`.
pub fn min_sdk_of(variant: &str) -> Option<&'static str> {
    SIGNED
        .iter()
        .find(|(name, _)| *name == variant)
        .and_then(|(_, sdk)| *sdk)
}

/// Checks a package built from `variant`: it verifies, is aligned, and carries this
/// channel and version.
pub fn verify_package(apk: &Path, variant: &str, channel: &str, channel_version: &str) {
    verify(apk, min_sdk_of(variant));
    let info = taskbus::apk::read_channel(apk)
        .unwrap_or_else(|e| panic!("{}: {e}", apk.display()))
        .unwrap_or_else(|| panic!("no channel in {}", apk.display()));
    assert_eq!(
        (info.channel.as_str(), info.channel_version.as_str()),
        (channel, channel_version),
        "{}",
        apk.display()
    );
}
