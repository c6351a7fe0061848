//! The seed's `packageInfo` status table: key, `errorCode` and message, verbatim.

use std::fmt;

/// A packaging status, exactly the seed's `packageInfo` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageStatus {
    /// 101: packaging has not started.
    NoReady,
    /// 201: the package is built.
    Complete,
    /// 401: the task misses a field (or a field is unusable).
    ArgMiss,
    /// 402: the mother APK does not exist.
    NoApk,
    /// 403: the package exists and the task did not ask to rebuild it.
    HavenSub,
    /// 404: the mother APK cannot be read as an APK.
    WrongApk,
    /// 405: the package file cannot be created.
    CopyApkError,
    /// 406: no permission to read the mother APK.
    PermError,
    /// 501: anything else.
    UnknownError,
}

impl PackageStatus {
    /// Every status, in the seed's order.
    pub const ALL: [PackageStatus; 9] = [
        Self::NoReady,
        Self::Complete,
        Self::ArgMiss,
        Self::NoApk,
        Self::HavenSub,
        Self::WrongApk,
        Self::CopyApkError,
        Self::PermError,
        Self::UnknownError,
    ];

    /// The seed's `errorCode`.
    pub fn code(self) -> u16 {
        match self {
            Self::NoReady => 101,
            Self::Complete => 201,
            Self::ArgMiss => 401,
            Self::NoApk => 402,
            Self::HavenSub => 403,
            Self::WrongApk => 404,
            Self::CopyApkError => 405,
            Self::PermError => 406,
            Self::UnknownError => 501,
        }
    }

    /// The seed's message, verbatim.
    pub fn message(self) -> &'static str {
        match self {
            Self::NoReady => "打包未开始",
            Self::Complete => "打包已完成",
            Self::ArgMiss => "参数不完整，请检查",
            Self::NoApk => "游戏母包不存在",
            Self::HavenSub => "游戏已分包，请勿重复操作",
            Self::WrongApk => "apk文件不能正常读取",
            Self::CopyApkError => "无法创建文件,打包失败,请联系管理员",
            Self::PermError => "无法读取游戏母包, 请设置好访问权限",
            Self::UnknownError => "UNKNOWN_ERROR",
        }
    }

    /// The seed's key (`NO_APK`), also used as `extend.error_key`.
    pub fn key(self) -> &'static str {
        match self {
            Self::NoReady => "NO_READY",
            Self::Complete => "COMPLETE",
            Self::ArgMiss => "ARG_MISS",
            Self::NoApk => "NO_APK",
            Self::HavenSub => "HAVEN_SUB",
            Self::WrongApk => "WRONG_APK",
            Self::CopyApkError => "COPY_APK_ERROR",
            Self::PermError => "PERM_ERROR",
            Self::UnknownError => "UNKNOWN_ERROR",
        }
    }

    /// The status with this key; unknown keys are `UnknownError`.
    pub fn from_key(key: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .unwrap_or(Self::UnknownError)
    }

    /// The status with this `errorCode`.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether the task ended (well or not) rather than failed.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Complete | Self::HavenSub)
    }

    /// Whether trying the same task again later can succeed: a mother APK may still be
    /// on its way (`NO_APK`), a disk may be freed (`COPY_APK_ERROR`), an unexpected i/o
    /// failure may pass (`UNKNOWN_ERROR`). A task with missing fields (`ARG_MISS`), an
    /// APK that is not a signed APK (`WRONG_APK`) and a mother the packager may not read
    /// (`PERM_ERROR`) stay as they are: retrying them only tells the user
    /// `packet_retry_max * log_post_time` later.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::NoApk | Self::CopyApkError | Self::UnknownError)
    }
}

impl fmt::Display for PackageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.key(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::PackageStatus;

    /// Issue 12: hopeless tasks were retried 3 times, `log_post_time` apart.
    #[test]
    fn only_what_can_change_is_retried() {
        let retried: Vec<&str> = PackageStatus::ALL
            .into_iter()
            .filter(|s| s.is_retryable())
            .map(PackageStatus::key)
            .collect();
        assert_eq!(retried, ["NO_APK", "COPY_APK_ERROR", "UNKNOWN_ERROR"]);
    }
}
