//! APK channel packaging: channel info as an ID-value pair in the APK Signing Block.
//!
//! The channel goes into the APK Signing Block (Walle's pair `0x71777777`, UTF-8 JSON
//! `{"channel": .., "channel_version": ..}`; optionally VasDolly's `0x881155ff`, the raw
//! channel string). The block is not covered by the v2/v3 digests, so the channel APK
//! keeps the mother's signatures without re-signing. Only the tail of a copy is
//! rewritten; the `zip` crate is used to validate the mother, never to write.
//!
//! **Invariant:** entries, central directory and EOCD (but its CD offset) of a channel
//! APK are byte-identical to the mother's; the block keeps its start offset and, when it
//! was a multiple of 4096 bytes, stays one.
//!
//! The channel survives installation but not re-signing (Google Play App Signing,
//! hardening tools): harden, align and sign first, then write the channel.

pub mod block;
pub mod cli;
pub mod error;
mod file;
mod validate;

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::{ApkError, FormatError};
pub use file::{sweep_temp_files, temp_file_name, write_channel, TEMP_PREFIX};

/// The seed's alphabet of random strings (`random_chr`): no `i`, `l`, `o`, `0`, `1`,
/// `O`, so names read well.
pub const SEED_RANDOM_CHR: &str = "abcdefghjkmnpqrstuvwxyz23456789QWERTYUIPASDFGHJKLMNBVCXZ";

/// Largest channel JSON payload accepted, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Channel info as Walle stores it; `extra` holds any further keys (values should be
/// strings for Walle's Java reader).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelInfo {
    pub channel: String,
    #[serde(default)]
    pub channel_version: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ChannelInfo {
    /// Channel info without extra keys.
    pub fn new(channel: impl Into<String>, channel_version: impl Into<String>) -> Self {
        ChannelInfo {
            channel: channel.into(),
            channel_version: channel_version.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// The Walle pair's value: compact UTF-8 JSON.
    pub fn to_walle_payload(&self) -> Result<Vec<u8>, ApkError> {
        if self.channel.is_empty() {
            return Err(ApkError::InvalidChannel("empty channel".into()));
        }
        if let Some(key) = ["channel", "channel_version"]
            .iter()
            .find(|k| self.extra.contains_key(**k))
        {
            return Err(ApkError::InvalidChannel(format!(
                "extra key {key:?} clashes with a field"
            )));
        }
        let payload = serde_json::to_vec(self)
            .map_err(|e| ApkError::InvalidChannel(format!("cannot encode: {e}")))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(ApkError::InvalidChannel(format!(
                "channel info is {} bytes, limit {MAX_PAYLOAD}",
                payload.len()
            )));
        }
        Ok(payload)
    }
}

/// How [`write_channel`] works; also the `[packager.apk]` section of `bus.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteOptions {
    /// Where the temp copy is made; `None` = the output's directory (keeps the final
    /// rename atomic; another filesystem costs one extra copy).
    pub temp_dir: Option<PathBuf>,
    /// Also write VasDolly's pair; when false an old VasDolly pair is dropped so no
    /// reader sees a stale channel.
    pub vasdolly: bool,
    /// fsync the output (and its directory) before reporting success. Costs two disk
    /// flushes per package (~10 ms on a VM disk); without it a power cut may leave a
    /// truncated APK under the final name.
    pub fsync: bool,
    /// Check the mother with the `zip` crate (opens, CD where the EOCD says, no
    /// duplicate names, `AndroidManifest.xml` present); remembered per unchanged file.
    pub validate_zip: bool,
    /// Names the temp copy `.taskbus-apk.<temp_tag>.<random>.tmp`, so that the process
    /// owning this tag (the packager's `instance`) can sweep what a kill left behind.
    pub temp_tag: String,
    /// Alphabet of the random part (the packager's `random_chr`); must hold no `.`.
    pub temp_alphabet: String,
    /// Length of the random part (the packager's `random_len`).
    pub temp_random_len: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            temp_dir: None,
            vasdolly: false,
            fsync: true,
            validate_zip: true,
            temp_tag: String::new(),
            temp_alphabet: SEED_RANDOM_CHR.to_string(),
            temp_random_len: 8,
        }
    }
}

/// What [`write_channel`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteReport {
    pub out: PathBuf,
    /// Size of the channel APK.
    pub apk_bytes: u64,
    pub block_offset: u64,
    pub old_block_len: u64,
    pub new_block_len: u64,
    /// The block was, and stays, a multiple of 4096 bytes.
    pub page_aligned: bool,
    /// A channel pair was already present and has been replaced.
    pub replaced: bool,
    /// Signature schemes found in the block (`v2`, `v3`, `v3.1`).
    pub schemes: Vec<&'static str>,
    pub elapsed_s: f64,
}

/// One pair of the signing block, for [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairSummary {
    pub id: u32,
    pub len: usize,
}

/// Layout of a signed APK's tail, for logs and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockSummary {
    pub file_len: u64,
    pub block_offset: u64,
    pub block_len: u64,
    pub cd_offset: u64,
    pub cd_size: u64,
    pub pairs: Vec<PairSummary>,
}

/// Reads the channel: Walle's pair first, else VasDolly's (channel only).
///
/// `Ok(None)` when the APK is signed but carries no channel; a file without a signing
/// block is a `WRONG_APK` error.
pub fn read_channel(path: &Path) -> Result<Option<ChannelInfo>, ApkError> {
    let tail = read_tail_of(path)?;
    if let Some(json) = tail.value(block::WALLE_ID) {
        let info = serde_json::from_slice(json).map_err(|_| {
            ApkError::format(path, FormatError::Corrupt("walle pair is not channel json"))
        })?;
        return Ok(Some(info));
    }
    if let Some(raw) = tail.value(block::VASDOLLY_ID) {
        let channel = String::from_utf8(raw.to_vec()).map_err(|_| {
            ApkError::format(path, FormatError::Corrupt("vasdolly pair is not utf-8"))
        })?;
        return Ok(Some(ChannelInfo::new(channel, "")));
    }
    Ok(None)
}

/// Describes the signing block and central directory of a signed APK.
pub fn inspect(path: &Path) -> Result<BlockSummary, ApkError> {
    let tail = read_tail_of(path)?;
    Ok(BlockSummary {
        file_len: tail.file_len,
        block_offset: tail.block_offset,
        block_len: tail.block_len(),
        cd_offset: tail.eocd.cd_offset,
        cd_size: tail.eocd.cd_size,
        pairs: tail
            .pairs
            .iter()
            .map(|p| PairSummary {
                id: p.id,
                len: p.value.len(),
            })
            .collect(),
    })
}

/// File name of a channel APK: `<mother stem>_<channel>.apk`.
///
/// The channel must be usable as a file-name part: non-empty, at most 128 bytes, no
/// path separators, no NUL, not starting with a dot.
pub fn channel_apk_name(mother: &Path, channel: &str) -> Result<String, ApkError> {
    if channel.is_empty()
        || channel.len() > 128
        || channel.starts_with('.')
        || channel
            .chars()
            .any(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return Err(ApkError::InvalidChannel(format!(
            "channel {channel:?} cannot be part of a file name"
        )));
    }
    let stem = mother
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| ApkError::InvalidChannel(format!("no file stem in {}", mother.display())))?;
    Ok(format!("{stem}_{channel}.apk"))
}

fn read_tail_of(path: &Path) -> Result<block::SigningTail, ApkError> {
    let file = File::open(path).map_err(|e| ApkError::from_input_io(path, e))?;
    file::read_tail(&file, path)
}

#[cfg(test)]
mod tests;
