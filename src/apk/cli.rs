//! `taskbus apk ...` subcommands: write a channel into an APK, print an APK's channel.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use super::{channel_apk_name, read_channel, write_channel, ApkError, ChannelInfo, WriteOptions};

/// APK channel commands.
#[derive(Debug, Clone, Subcommand)]
pub enum ApkCommand {
    /// Write a channel into a copy of a v2/v3-signed mother APK; prints the output path,
    /// `<OUT>/<mother stem>_<channel>.apk`.
    Package {
        /// The signed mother APK.
        mother: PathBuf,
        /// Channel id, also used in the output file name.
        #[arg(long)]
        channel: String,
        /// Channel version stored next to the channel.
        #[arg(long, default_value = "")]
        channel_version: String,
        /// Output directory, created when missing (default: the mother's directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Also write VasDolly's channel pair (0x881155ff).
        #[arg(long)]
        vasdolly: bool,
    },
    /// Print an APK's channel info as JSON; fails when the APK has none.
    Channel {
        /// The APK to read.
        file: PathBuf,
    },
}

/// Runs one apk command, printing its result on stdout.
pub fn run(cmd: ApkCommand) -> anyhow::Result<()> {
    match cmd {
        ApkCommand::Package {
            mother,
            channel,
            channel_version,
            out,
            vasdolly,
        } => {
            let info = ChannelInfo::new(channel, channel_version);
            let path = package(&mother, &info, out.as_deref(), vasdolly)?;
            println!("{}", path.display());
        }
        ApkCommand::Channel { file } => {
            let info = read_channel(&file)
                .map_err(|e| with_status(e, &format!("reading channel of {}", file.display())))?
                .with_context(|| format!("no channel info in {}", file.display()))?;
            println!("{}", serde_json::to_string(&info)?);
        }
    }
    Ok(())
}

/// Writes `info` into `<out_dir>/<mother stem>_<channel>.apk` and returns that path.
pub fn package(
    mother: &Path,
    info: &ChannelInfo,
    out_dir: Option<&Path>,
    vasdolly: bool,
) -> anyhow::Result<PathBuf> {
    let name = channel_apk_name(mother, &info.channel).map_err(|e| with_status(e, "packaging"))?;
    let dir = match out_dir {
        Some(dir) => dir.to_path_buf(),
        None => mother
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let out = dir.join(name);
    let doing = || format!("packaging {} as {}", mother.display(), out.display());
    std::fs::create_dir_all(&dir).map_err(|e| with_status(ApkError::output(&dir, e), &doing()))?;
    let opts = WriteOptions {
        vasdolly,
        ..WriteOptions::default()
    };
    write_channel(mother, &out, info, &opts).map_err(|e| with_status(e, &doing()))?;
    Ok(out)
}

/// `404 WRONG_APK: <doing>: <why>`: the seed's status first, the reason once.
fn with_status(e: ApkError, doing: &str) -> anyhow::Error {
    anyhow::anyhow!("{} {}: {doing}: {e}", e.error_code(), e.seed_code())
}
