//! Typed errors of the apk module and their mapping to the seed's packager status codes.

use std::io;
use std::path::{Path, PathBuf};

/// What is wrong with the bytes of an APK (the pure layout layer knows no paths).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The path is a directory or another non-regular file.
    #[error("not a regular file")]
    NotAFile,
    /// No ZIP end-of-central-directory record could be found.
    #[error("not a zip archive (no end of central directory record)")]
    NotZip,
    /// The `zip` crate refused the archive (reason from the crate).
    #[error("invalid zip archive: {0}")]
    InvalidZip(String),
    /// A zip without `AndroidManifest.xml`.
    #[error("no AndroidManifest.xml entry")]
    NoManifest,
    /// ZIP64 archives cannot carry v2/v3 signatures.
    #[error("zip64 archives are not supported")]
    Zip64,
    /// Unsigned or v1-only (JAR-signed) APK: channel info needs a signing block.
    #[error("no apk signing block (unsigned or v1-only apk)")]
    NoSigningBlock,
    /// A signing block without a v2, v3 or v3.1 signature.
    #[error("apk signing block holds no v2/v3/v3.1 signature")]
    NoSignatureScheme,
    /// Structural damage: truncated file, bad lengths, inconsistent offsets.
    #[error("corrupt apk: {0}")]
    Corrupt(&'static str),
    /// The new central directory offset would not fit the 32-bit EOCD field.
    #[error("output would exceed the 4 GiB zip limit")]
    TooLarge,
}

/// Errors of [`write_channel`](super::write_channel) and [`read_channel`](super::read_channel).
///
/// Each message already says its cause (`wrong apk X: no apk signing block ...`), so the
/// cause is a plain field (`cause`), not an error `source()`: a chain printer such as
/// the CLI's or anyhow's `{:#}` shows every reason once.
///
/// [`ApkError::seed_code`] gives the seed's `packageInfo` key for the packager's status.
#[derive(Debug, thiserror::Error)]
pub enum ApkError {
    /// The mother APK does not exist (`NO_APK`, 402).
    #[error("mother apk not found: {}", path.display())]
    NotFound { path: PathBuf },
    /// The mother APK cannot be read for lack of permission (`PERM_ERROR`, 406).
    #[error("permission denied reading apk: {}", path.display())]
    PermissionDenied {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not a usable APK (`WRONG_APK`, 404).
    #[error("wrong apk {}: {cause}", path.display())]
    Format { path: PathBuf, cause: FormatError },
    /// The output (temp file, copy, rename) cannot be created (`COPY_APK_ERROR`, 405).
    #[error("cannot create output {}: {cause}", path.display())]
    CannotCreateOutput { path: PathBuf, cause: io::Error },
    /// The written file did not read back as written (`COPY_APK_ERROR`, 405).
    #[error("self-check failed on {}: {reason}", path.display())]
    SelfCheck { path: PathBuf, reason: &'static str },
    /// The channel info cannot be written (empty channel, reserved key, too large)
    /// (`ARG_MISS`, 401).
    #[error("invalid channel info: {0}")]
    InvalidChannel(String),
    /// Any other i/o failure (`UNKNOWN_ERROR`, 501).
    #[error("i/o error on {}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
}

impl ApkError {
    /// The seed's `packageInfo` key: `NO_APK`, `WRONG_APK`, `COPY_APK_ERROR`,
    /// `PERM_ERROR`, `ARG_MISS` or `UNKNOWN_ERROR`.
    pub fn seed_code(&self) -> &'static str {
        match self {
            ApkError::NotFound { .. } => "NO_APK",
            ApkError::PermissionDenied { .. } => "PERM_ERROR",
            ApkError::Format { .. } => "WRONG_APK",
            ApkError::CannotCreateOutput { .. } | ApkError::SelfCheck { .. } => "COPY_APK_ERROR",
            ApkError::InvalidChannel(_) => "ARG_MISS",
            ApkError::Io { .. } => "UNKNOWN_ERROR",
        }
    }

    /// The seed's numeric `errorCode` matching [`ApkError::seed_code`].
    pub fn error_code(&self) -> u16 {
        match self.seed_code() {
            "NO_APK" => 402,
            "PERM_ERROR" => 406,
            "WRONG_APK" => 404,
            "COPY_APK_ERROR" => 405,
            "ARG_MISS" => 401,
            _ => 501,
        }
    }

    /// The format error, when this is a `WRONG_APK` error.
    pub fn format_error(&self) -> Option<&FormatError> {
        match self {
            ApkError::Format { cause, .. } => Some(cause),
            _ => None,
        }
    }

    pub(crate) fn format(path: &Path, cause: FormatError) -> Self {
        ApkError::Format {
            path: path.to_path_buf(),
            cause,
        }
    }

    pub(crate) fn io(path: &Path, cause: io::Error) -> Self {
        ApkError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }

    pub(crate) fn output(path: &Path, cause: io::Error) -> Self {
        ApkError::CannotCreateOutput {
            path: path.to_path_buf(),
            cause,
        }
    }

    /// Classifies an error met while opening or reading an input APK.
    pub(crate) fn from_input_io(path: &Path, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::NotFound => ApkError::NotFound {
                path: path.to_path_buf(),
            },
            io::ErrorKind::PermissionDenied => ApkError::PermissionDenied {
                path: path.to_path_buf(),
                source,
            },
            // A directory given as the APK, or the file shrinking under us.
            io::ErrorKind::IsADirectory => ApkError::format(path, FormatError::NotAFile),
            io::ErrorKind::UnexpectedEof => {
                ApkError::format(path, FormatError::Corrupt("file shorter than its records"))
            }
            _ => ApkError::io(path, source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_io_errors_map_to_seed_codes() {
        let p = Path::new("/x/y.apk");
        let code = |kind| ApkError::from_input_io(p, io::Error::from(kind)).seed_code();
        assert_eq!(code(io::ErrorKind::NotFound), "NO_APK");
        assert_eq!(code(io::ErrorKind::PermissionDenied), "PERM_ERROR");
        assert_eq!(code(io::ErrorKind::IsADirectory), "WRONG_APK");
        assert_eq!(code(io::ErrorKind::UnexpectedEof), "WRONG_APK");
        assert_eq!(code(io::ErrorKind::Interrupted), "UNKNOWN_ERROR");
        let perm = ApkError::from_input_io(p, io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(perm.error_code(), 406);
        assert_eq!(
            ApkError::format(p, FormatError::NoSigningBlock).error_code(),
            404
        );
        assert_eq!(
            ApkError::output(p, io::Error::from(io::ErrorKind::StorageFull)).seed_code(),
            "COPY_APK_ERROR"
        );
        assert_eq!(ApkError::InvalidChannel("x".into()).error_code(), 401);
    }

    #[test]
    fn messages_name_the_path() {
        let e = ApkError::NotFound {
            path: "/x/y.apk".into(),
        };
        assert_eq!(e.to_string(), "mother apk not found: /x/y.apk");
        let e = ApkError::format(Path::new("/a.apk"), FormatError::Zip64);
        assert_eq!(
            e.to_string(),
            "wrong apk /a.apk: zip64 archives are not supported"
        );
    }

    /// Issue 12: a chain printer showed the reason twice (`...: no apk signing block
    /// (unsigned or v1-only apk): no apk signing block (unsigned or v1-only apk)`).
    #[test]
    fn no_message_repeats_its_cause_as_a_source() {
        use std::error::Error;
        let p = Path::new("/a.apk");
        let io = |kind| io::Error::new(kind, "the disk said no");
        for e in [
            ApkError::format(p, FormatError::NoSigningBlock),
            ApkError::output(p, io(io::ErrorKind::StorageFull)),
            ApkError::io(p, io(io::ErrorKind::Other)),
            ApkError::from_input_io(p, io(io::ErrorKind::PermissionDenied)),
        ] {
            let mut printed = vec![e.to_string()];
            let mut next = e.source();
            while let Some(source) = next {
                printed.push(source.to_string());
                next = source.source();
            }
            for (i, later) in printed.iter().enumerate().skip(1) {
                assert!(
                    !printed[i - 1].contains(later.as_str()),
                    "{printed:?} repeats {later:?}"
                );
            }
        }
    }
}
