//! Read-only validation of a mother APK with the `zip` crate (never used to write),
//! remembered per unchanged mother.

use std::fs::{File, Metadata};
use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use super::error::{ApkError, FormatError};

/// How many validated mothers are remembered.
const REMEMBERED: usize = 64;

/// Mothers that passed, by identity and change stamps. A packager writes many channels
/// from one mother, and the zip check of a 7 600-entry APK costs ~3 ms (a tenth of its
/// copy); the ctime in the key changes on any write, and cannot be set back.
static VALIDATED: Mutex<Vec<MotherId>> = Mutex::new(Vec::new());

/// A mother file's identity and change stamps, plus where its central directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MotherId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    cd_offset: u64,
}

impl MotherId {
    pub(crate) fn of(meta: &Metadata, cd_offset: u64) -> Self {
        MotherId {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            cd_offset,
        }
    }

    /// Already validated in this process, and unchanged since.
    pub(crate) fn is_known(&self) -> bool {
        lock().contains(self)
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<MotherId>> {
    // The list holds plain values: a panic elsewhere cannot leave it half-updated.
    VALIDATED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks that the mother opens as a zip whose central directory is where the signing
/// block parser found it, with no duplicate names and an `AndroidManifest.xml`; then
/// remembers `id`.
///
/// Opens its own handle (the crate seeks; the caller may be copying from its handle)
/// and requires it to be the same file as `id`. A compressed or unaligned
/// `resources.arsc` is only warned about: such an APK does not install with
/// targetSdk >= 30, but channel insertion does not change that.
pub(crate) fn validate_zip(path: &Path, id: &MotherId) -> Result<(), ApkError> {
    let invalid = |source| ApkError::format(path, source);
    let file = File::open(path).map_err(|e| ApkError::from_input_io(path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| ApkError::from_input_io(path, e))?;
    if MotherId::of(&meta, id.cd_offset) != *id {
        return Err(invalid(FormatError::Corrupt(
            "mother apk changed while being read",
        )));
    }
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(|e| match e {
        ZipError::Io(io) => ApkError::from_input_io(path, io),
        other => invalid(FormatError::InvalidZip(other.to_string())),
    })?;
    if archive.offset() != 0 || archive.central_directory_start() != id.cd_offset {
        return Err(invalid(FormatError::InvalidZip(
            "central directory is not where the eocd says".into(),
        )));
    }
    if archive.has_duplicate_names() {
        return Err(invalid(FormatError::InvalidZip(
            "duplicate entry names".into(),
        )));
    }
    if archive.index_for_name("AndroidManifest.xml").is_none() {
        return Err(invalid(FormatError::NoManifest));
    }
    if let Some(index) = archive.index_for_name("resources.arsc") {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| invalid(FormatError::InvalidZip(e.to_string())))?;
        let stored = entry.compression() == CompressionMethod::Stored;
        let aligned = entry.data_start().is_some_and(|start| start % 4 == 0);
        if !(stored && aligned) {
            log::warn!(
                "apk={} resources.arsc stored={} aligned={}: will not install with targetSdk >= 30",
                path.display(),
                stored,
                aligned
            );
        }
    }
    let mut known = lock();
    if known.len() >= REMEMBERED {
        known.remove(0);
    }
    known.push(id.clone());
    Ok(())
}
