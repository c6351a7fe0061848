//! File layer: read an APK's tail, and write a channel APK (copy, patch the tail, check, rename).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tempfile::NamedTempFile;

use super::block::{self, Pair, SigningTail, TailParse};
use super::error::{ApkError, FormatError};
use super::validate::{self, MotherId};
use super::{ChannelInfo, WriteOptions, WriteReport};

/// APKs at least this big are validated on a second thread during the copy.
const PARALLEL_VALIDATION_MIN: u64 = 4 << 20;

/// Temp copies are `<TEMP_PREFIX><tag>.<random>.tmp` (see [`temp_file_name`]).
pub const TEMP_PREFIX: &str = ".taskbus-apk.";

/// What older versions named their temp copies: `.taskbus-apk-XXXXXX.tmp`.
const LEGACY_TEMP_PREFIX: &str = ".taskbus-apk-";

const TEMP_SUFFIX: &str = ".tmp";

/// Reads and parses the signing block, central directory and EOCD at the end of `file`.
///
/// Reads the last [`block::EOCD_WINDOW`] bytes, then further back only as far as the
/// block start: memory is O(block + central directory), never the whole APK.
pub(crate) fn read_tail(file: &File, path: &Path) -> Result<SigningTail, ApkError> {
    let meta = file
        .metadata()
        .map_err(|e| ApkError::from_input_io(path, e))?;
    if !meta.is_file() {
        return Err(ApkError::format(path, FormatError::NotAFile));
    }
    let file_len = meta.len();
    let mut base = file_len.saturating_sub(block::EOCD_WINDOW);
    let mut buf = read_range(file, base, file_len, path)?;
    // After the EOCD window: the block footer, then the block start.
    for _ in 0..3 {
        match block::parse_tail(base, &buf).map_err(|e| ApkError::format(path, e))? {
            TailParse::Parsed(tail) => return Ok(tail),
            TailParse::NeedFrom(from) => {
                let mut more = read_range(file, from, base, path)?;
                more.extend_from_slice(&buf);
                (buf, base) = (more, from);
            }
        }
    }
    Err(ApkError::format(
        path,
        FormatError::Corrupt("signing block cannot be located"),
    ))
}

fn read_range(file: &File, from: u64, to: u64, path: &Path) -> Result<Vec<u8>, ApkError> {
    let mut buf = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut buf, from)
        .map_err(|e| ApkError::from_input_io(path, e))?;
    Ok(buf)
}

/// Writes `info` into a copy of the signed `mother` APK and renames it onto `out`.
///
/// The entries (everything before the signing block) are copied in the kernel
/// (copy_file_range, a reflink where the filesystem can) into a temp file in
/// `opts.temp_dir`; the new tail (signing block + central directory + EOCD) is written
/// after them. The mother is validated with the `zip` crate (once per unchanged mother
/// file in this process) during the copy. The result is read back and compared before
/// the atomic rename, so `out`
/// is either the complete channel APK or left as it was. An existing Walle (and
/// VasDolly) pair is replaced, never duplicated. Memory use is O(block + central
/// directory), whatever the APK's size.
pub fn write_channel(
    mother: &Path,
    out: &Path,
    info: &ChannelInfo,
    opts: &WriteOptions,
) -> Result<WriteReport, ApkError> {
    let started = Instant::now();
    let add = channel_pairs(info, opts.vasdolly)?;
    let mother_file = File::open(mother).map_err(|e| ApkError::from_input_io(mother, e))?;
    let (tail, id) = read_mother(&mother_file, mother)?;
    let new_tail = tail
        .rebuild(&[block::WALLE_ID, block::VASDOLLY_ID], &add)
        .map_err(|e| ApkError::format(mother, e))?;

    let out_dir = parent_dir(out);
    let tmp = temp_file(opts.temp_dir.as_deref().unwrap_or(&out_dir), opts)?;
    let validate_zip = opts.validate_zip && !id.is_known();
    copy_validated(
        &mother_file,
        mother,
        &id,
        &tail,
        tmp.as_file(),
        validate_zip,
    )
    .map_err(|e| e.unwrap_or_else(|io| ApkError::output(tmp.path(), io)))?;
    // A mother changed in place mid-copy would get a tail that is not its own.
    if mother_id(&mother_file, mother, &tail)? != id {
        return Err(ApkError::format(
            mother,
            FormatError::Corrupt("mother apk changed while being copied"),
        ));
    }
    drop(mother_file);
    tmp.as_file()
        .write_all_at(&new_tail, tail.block_offset)
        .map_err(|e| ApkError::output(tmp.path(), e))?;
    self_check(tmp.as_file(), tmp.path(), &tail, &new_tail, &add)?;
    if opts.fsync {
        tmp.as_file()
            .sync_all()
            .map_err(|e| ApkError::output(tmp.path(), e))?;
    }
    persist(tmp, out, &out_dir, opts)?;

    let report = WriteReport {
        out: out.to_path_buf(),
        apk_bytes: tail.block_offset + new_tail.len() as u64,
        block_offset: tail.block_offset,
        old_block_len: tail.block_len(),
        new_block_len: new_tail.len() as u64 - tail.after_block().len() as u64,
        page_aligned: tail.page_aligned(),
        replaced: [block::WALLE_ID, block::VASDOLLY_ID]
            .iter()
            .any(|id| tail.value(*id).is_some()),
        schemes: tail.schemes(),
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    log::debug!(
        "apk={} out={} channel={} block {}->{} bytes",
        mother.display(),
        out.display(),
        info.channel,
        report.old_block_len,
        report.new_block_len
    );
    Ok(report)
}

/// The Walle pair, plus VasDolly's when asked.
fn channel_pairs(info: &ChannelInfo, vasdolly: bool) -> Result<Vec<Pair>, ApkError> {
    let mut pairs = vec![Pair {
        id: block::WALLE_ID,
        value: info.to_walle_payload()?,
    }];
    if vasdolly {
        pairs.push(Pair {
            id: block::VASDOLLY_ID,
            value: info.channel.as_bytes().to_vec(),
        });
    }
    Ok(pairs)
}

/// Parses the mother's tail and requires a v2/v3/v3.1 signature in its block.
fn read_mother(file: &File, path: &Path) -> Result<(SigningTail, MotherId), ApkError> {
    let tail = read_tail(file, path)?;
    if tail.schemes().is_empty() {
        return Err(ApkError::format(path, FormatError::NoSignatureScheme));
    }
    let id = mother_id(file, path, &tail)?;
    Ok((tail, id))
}

fn mother_id(file: &File, path: &Path, tail: &SigningTail) -> Result<MotherId, ApkError> {
    let meta = file
        .metadata()
        .map_err(|e| ApkError::from_input_io(path, e))?;
    Ok(MotherId::of(&meta, tail.eocd.cd_offset))
}

/// A fresh temp-file name: `.taskbus-apk.<temp_tag>.<random>.tmp`, the random part
/// drawn from `opts.temp_alphabet` (the seed's `random_chr`).
pub fn temp_file_name(opts: &WriteOptions) -> String {
    use rand::Rng;
    let alphabet: Vec<char> = opts.temp_alphabet.chars().collect();
    let mut rng = rand::thread_rng();
    let random: String = if alphabet.is_empty() {
        String::new()
    } else {
        (0..opts.temp_random_len.max(1))
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect()
    };
    format!("{TEMP_PREFIX}{}.{random}{TEMP_SUFFIX}", opts.temp_tag)
}

/// Creates the temp copy (never an existing file: a name taken is drawn again). Removed
/// when dropped unless persisted.
fn temp_file(dir: &Path, opts: &WriteOptions) -> Result<NamedTempFile, ApkError> {
    let mut last = None;
    for _ in 0..16 {
        match tempfile::Builder::new()
            .prefix(&temp_file_name(opts))
            .rand_bytes(0)
            .tempfile_in(dir)
        {
            Ok(file) => return Ok(file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(ApkError::output(dir, e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(ApkError::output(dir, e))
}

/// Removes the temp copies that a killed writer with this `tag` left in `dir` (and those
/// of older versions, `.taskbus-apk-XXXXXX.tmp`); returns what it removed. Only the
/// process that owns `tag` may call it while others write: their copies have other
/// tags. `older_than`: keep files modified more recently (for callers that cannot be
/// sure no live writer shares the tag).
pub fn sweep_temp_files(
    dir: &Path,
    tag: &str,
    older_than: Option<std::time::Duration>,
) -> io::Result<Vec<PathBuf>> {
    let own = format!("{TEMP_PREFIX}{tag}.");
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_suffix(TEMP_SUFFIX) else {
            continue;
        };
        let ours = rest
            .strip_prefix(&own)
            .is_some_and(|random| !random.is_empty() && !random.contains('.'));
        let legacy = rest.strip_prefix(LEGACY_TEMP_PREFIX).is_some_and(|random| {
            random.len() == 6 && random.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !(ours || legacy) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        if let Some(age) = older_than {
            let modified = meta.modified()?;
            if modified.elapsed().unwrap_or_default() < age {
                continue;
            }
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed.push(entry.path()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Copies the entries (`[0, block_offset)`) into `to` while the `zip` crate validates the
/// mother, on another thread for big APKs, where it then costs no wall time.
///
/// `Err(Ok(_))` is a mother error, `Err(Err(_))` an error writing `to`.
fn copy_validated(
    mother_file: &File,
    mother: &Path,
    id: &MotherId,
    tail: &SigningTail,
    to: &File,
    validate_zip: bool,
) -> Result<(), Result<ApkError, io::Error>> {
    let validate = || validate::validate_zip(mother, id).map_err(Ok);
    let copy = || copy_range(mother_file, mother, tail.block_offset, to);
    if !validate_zip {
        return copy();
    }
    if tail.file_len < PARALLEL_VALIDATION_MIN {
        validate()?;
        return copy();
    }
    std::thread::scope(|scope| {
        let validation = scope.spawn(validate);
        let copied = copy();
        validation
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        copied
    })
}

/// Copies the first `len` bytes of `from` (read from offset 0) to the empty file `to`
/// with `io::copy`, which on Linux runs copy_file_range in the kernel, and gives `to`
/// the permissions of `from`.
///
/// Not `fs::copy`: it reopens the already created temp file with `O_TRUNC`, after which
/// ext4 flushes the whole file on close (auto_da_alloc), ~20 ms for a 46 MB APK.
fn copy_range(
    from: &File,
    from_path: &Path,
    len: u64,
    to: &File,
) -> Result<(), Result<ApkError, io::Error>> {
    let perms = from
        .metadata()
        .map_err(|e| Ok(ApkError::from_input_io(from_path, e)))?
        .permissions();
    let mut writer = to;
    let copied = io::copy(&mut Read::take(from, len), &mut writer).map_err(Err)?;
    if copied != len {
        return Err(Ok(ApkError::format(
            from_path,
            FormatError::Corrupt("mother apk shrank while being copied"),
        )));
    }
    to.set_permissions(perms).map_err(Err)
}

/// Reads the written copy back: same tail bytes, and the channel pairs as intended.
fn self_check(
    file: &File,
    path: &Path,
    tail: &SigningTail,
    new_tail: &[u8],
    added: &[Pair],
) -> Result<(), ApkError> {
    let fail = |reason| ApkError::SelfCheck {
        path: path.to_path_buf(),
        reason,
    };
    // One read from the block start; the parse still finds the EOCD from the file's end
    // as any reader would.
    let file_len = file
        .metadata()
        .map_err(|e| ApkError::output(path, e))?
        .len();
    if file_len != tail.block_offset + new_tail.len() as u64 {
        return Err(fail("written apk has the wrong length"));
    }
    let bytes = read_range(file, tail.block_offset, file_len, path)?;
    let written = match block::parse_tail(tail.block_offset, &bytes) {
        Ok(TailParse::Parsed(written)) => written,
        _ => return Err(fail("written apk does not parse")),
    };
    if written.block_offset != tail.block_offset || written.bytes() != new_tail {
        return Err(fail("written tail differs from the intended bytes"));
    }
    if added
        .iter()
        .any(|p| written.value(p.id) != Some(p.value.as_slice()))
    {
        return Err(fail("channel pair does not read back"));
    }
    if tail.page_aligned() && !written.block_len().is_multiple_of(block::BLOCK_ALIGN) {
        return Err(fail("signing block lost its 4096-byte alignment"));
    }
    Ok(())
}

/// Renames the finished temp file onto `out`; across filesystems, copies it next to
/// `out` first so the final step is still a rename.
fn persist(
    tmp: NamedTempFile,
    out: &Path,
    out_dir: &Path,
    opts: &WriteOptions,
) -> Result<(), ApkError> {
    let fsync = opts.fsync;
    let tmp = match tmp.persist(out) {
        Ok(_) => {
            sync_dir(out_dir, fsync);
            return Ok(());
        }
        Err(e) if e.error.kind() == io::ErrorKind::CrossesDevices => e.file,
        Err(e) => return Err(ApkError::output(out, e.error)),
    };
    let near = temp_file(out_dir, opts)?;
    // A fresh handle: the copy into `tmp` moved its offset.
    let from = File::open(tmp.path()).map_err(|e| ApkError::output(tmp.path(), e))?;
    let len = from
        .metadata()
        .map_err(|e| ApkError::output(tmp.path(), e))?
        .len();
    copy_range(&from, tmp.path(), len, near.as_file())
        .map_err(|e| e.unwrap_or_else(|io| ApkError::output(near.path(), io)))?;
    if fsync {
        near.as_file()
            .sync_all()
            .map_err(|e| ApkError::output(near.path(), e))?;
    }
    near.persist(out)
        .map_err(|e| ApkError::output(out, e.error))?;
    sync_dir(out_dir, fsync);
    Ok(())
}

/// Makes the rename durable. The output is already in place, so a failure here is
/// logged, not returned.
fn sync_dir(dir: &Path, fsync: bool) {
    if fsync {
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            log::warn!("dir={} fsync failed: {}", dir.display(), e);
        }
    }
}

fn parent_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
