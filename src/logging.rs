//! Log set-up for the binaries (library code only uses the `log` facade): `all.log`
//! (everything), `scripts.log` (one line per task success or failure, the records
//! with target `scripts`), `error.log` (errors), all under `[log] dir`, plus stderr.

use std::path::Path;
use std::str::FromStr;

use log::LevelFilter;

use crate::config::LogConfig;

/// Target of the records that go to `scripts.log`.
pub const SCRIPTS: &str = "scripts";

/// Installs the global logger. `stderr_level` overrides the config's (a CLI flag).
pub fn init(config: &LogConfig, stderr_level: Option<&str>) -> anyhow::Result<()> {
    let file_level = parse_level(&config.level)?;
    let stderr_level = parse_level(stderr_level.unwrap_or(&config.stderr_level))?;
    std::fs::create_dir_all(&config.dir)
        .map_err(|e| anyhow::anyhow!("cannot create log dir {}: {e}", config.dir.display()))?;
    let file = |name: &str| -> anyhow::Result<std::fs::File> {
        let path = config.dir.join(name);
        fern::log_file(&path)
            .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))
    };
    let format =
        |out: fern::FormatCallback, message: &std::fmt::Arguments, record: &log::Record| {
            out.finish(format_args!(
                "{} {:<5} {} {}",
                chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f"),
                record.level(),
                record.target(),
                message
            ))
        };
    // Chatty dependencies stay at warn unless asked for.
    let quiet = |d: fern::Dispatch| {
        d.level_for("zeromq", LevelFilter::Warn)
            .level_for("hyper", LevelFilter::Warn)
            .level_for("hyper_util", LevelFilter::Warn)
            .level_for("reqwest", LevelFilter::Warn)
            .level_for("mysql_async", LevelFilter::Warn)
            .level_for("html5ever", LevelFilter::Warn)
            .level_for("selectors", LevelFilter::Warn)
    };
    quiet(
        fern::Dispatch::new()
            .format(format)
            .level(file_level.max(stderr_level)),
    )
    .chain(
        fern::Dispatch::new()
            .level(stderr_level)
            .chain(std::io::stderr()),
    )
    .chain(
        fern::Dispatch::new()
            .level(file_level)
            .chain(file("all.log")?),
    )
    .chain(
        fern::Dispatch::new()
            .filter(|m| m.target() == SCRIPTS)
            .chain(file("scripts.log")?),
    )
    .chain(
        fern::Dispatch::new()
            .level(LevelFilter::Error)
            .chain(file("error.log")?),
    )
    .apply()
    .map_err(|e| anyhow::anyhow!("logger already set: {e}"))
}

fn parse_level(text: &str) -> anyhow::Result<LevelFilter> {
    LevelFilter::from_str(text).map_err(|_| {
        anyhow::anyhow!(
            "unknown log level \"{text}\", expected off, error, warn, info, debug or trace"
        )
    })
}

/// Whether `dir` holds the three log files (for `run`'s summary).
pub fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    ["all.log", "scripts.log", "error.log"]
        .iter()
        .map(|n| dir.join(n))
        .collect()
}
