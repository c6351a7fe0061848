//! `[packager]` settings: every seed setting that still has a meaning, plus retry bounds.
//!
//! Seed names and ours are mapped one to one in `docs/PACKAGER.md` ("Settings").

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The seed's alphabet for random strings (no `i`, `l`, `o`, `0`, `1`, `O`: easy to read).
pub use crate::apk::SEED_RANDOM_CHR;

/// Where packaging tasks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// The seed's Redis lists (`redis_key`, `redis_retry_key`, ...).
    Redis,
    /// The taskbus broker (topic `package`); Redis is not used.
    Bus,
}

/// The packager's section of `bus.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PackagerConfig {
    /// Packaging workers taking tasks from `redis_key` (seed `packet_count`).
    pub packet_count: usize,
    /// Workers retrying failed tasks from `redis_retry_key`.
    pub retry_packet_count: usize,
    /// Notifier workers retrying notices from `notice_key`.
    pub message_count: usize,
    /// Workers retrying uploads from `upload_file_schedule_key`.
    pub retry_upload_count: usize,
    /// Task source: `"redis"` (the seed's) or `"bus"`.
    pub task_type: TaskType,
    /// Redis host name or address.
    pub redis_host: String,
    /// Redis port.
    pub redis_port: u16,
    /// Redis database number.
    pub redis_db: i64,
    /// Redis password (seed `redis_redis_auth`); none when absent.
    pub redis_auth: Option<Secret>,
    /// List the seed's producers push tasks to (consumed from the left).
    pub redis_key: String,
    /// List of failed tasks waiting for `extend.packet_timeout`.
    pub redis_retry_key: String,
    /// Seconds a worker blocks on an empty list before looking again.
    pub redis_sleep_time: f64,
    /// Processing list: tasks being packaged right now (resumed on start).
    pub task_schedule_key: String,
    /// Built packages waiting for upload.
    pub upload_file_schedule_key: String,
    /// Notices waiting to be sent again (not in the seed, which kept it in memory).
    pub notice_key: String,
    /// Suffix that makes the processing lists this process's own; set a distinct value
    /// per process when several packagers share the same keys. Empty: the plain keys.
    /// Enforced in Redis mode: a process holds `<processing list>:lock` while it runs.
    pub instance: String,
    /// Seconds the instance lock lives without being renewed (renewed every third of
    /// it): how long a killed process's instance stays taken.
    pub instance_lock_secs: f64,
    /// Host that receives the UDP log lines; none disables them.
    pub udp_host: Option<String>,
    /// Port that receives the UDP log lines.
    pub udp_port: Option<u16>,
    /// Seconds a failed task waits in `redis_retry_key` before it is tried again.
    pub log_post_time: u64,
    /// Failed packaging attempts after the first before a task is given up.
    pub packet_retry_max: u32,
    /// Root of the mother APKs: `<sdk_game_path>/<filename>/<filename>.apk`.
    pub sdk_game_path: PathBuf,
    /// Root of the channel packages; none: next to the mother APK.
    pub subpackage_sdk_path: Option<PathBuf>,
    /// Scratch directory for the APK writer; none: the output directory.
    pub tempfile_dir: Option<PathBuf>,
    /// Alphabet of random strings (temporary file names).
    pub random_chr: String,
    /// Length of random strings.
    pub random_len: usize,
    /// Debug mode: after upload, delete the local package and do not notify.
    pub debug: bool,
    /// Names (keys of `storage_config`) of the upload targets, in order.
    pub storage_list: Vec<String>,
    /// Upload targets by name.
    pub storage_config: BTreeMap<String, StorageTarget>,
    /// Bounds of the notice retries.
    pub notice_retry: RetryBounds,
    /// Bounds of the upload retries.
    pub upload_retry: RetryBounds,
    /// Seconds one notice POST may take.
    pub notice_timeout: f64,
    /// Notice POSTs one notifier worker keeps in flight at once.
    pub notice_concurrency: usize,
    /// Body of the notice POST.
    pub notice_format: NoticeFormat,
    /// Also write the VasDolly channel ID next to the Walle one.
    pub vasdolly: bool,
    /// fsync each package (and its directory) before it is reported built. Off: about
    /// 15 times faster on small APKs, but a power cut may leave a truncated package
    /// under its final name after its notice went out.
    pub fsync: bool,
}

/// Exponential backoff: `initial_ms * 2^(n-1)`, capped at `max_ms`, at most `max_attempts`
/// attempts in all (the first, inline, attempt included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBounds {
    /// Delay before the second attempt, in milliseconds.
    pub initial_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub max_ms: u64,
    /// Attempts in all before the item is recorded as failed.
    pub max_attempts: u32,
}

/// How the notice POST carries its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeFormat {
    /// `application/x-www-form-urlencoded` (what a PHP `$_POST` reads).
    Form,
    /// `application/json`.
    Json,
}

/// One upload target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageTarget {
    /// A local or mounted directory.
    Local {
        /// Directory the packages are copied under (created when missing).
        path: PathBuf,
        /// Sub-path inside `path`.
        #[serde(default)]
        prefix: String,
    },
    /// S3-compatible object storage.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Endpoint URL for non-AWS services (MinIO, Ceph, OSS ...); none: AWS.
        #[serde(default)]
        endpoint: Option<String>,
        /// Region.
        #[serde(default = "default_region")]
        region: String,
        /// Access key; none: the instance's credentials.
        #[serde(default)]
        access_key_id: Option<String>,
        /// Secret key.
        #[serde(default)]
        secret_access_key: Option<Secret>,
        /// Key prefix inside the bucket.
        #[serde(default)]
        prefix: String,
        /// Allow a plain `http://` endpoint.
        #[serde(default)]
        allow_http: bool,
        /// Address the bucket as `<bucket>.<endpoint>` instead of `<endpoint>/<bucket>`.
        #[serde(default)]
        virtual_hosted: bool,
    },
}

/// A password or key: printed as `******` by `Debug`, so settings can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"******\"")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

fn default_region() -> String {
    "us-east-1".to_string()
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A name in `storage_list` has no entry in `storage_config`.
    #[error("storage_list names \"{0}\" but storage_config has no such target")]
    UnknownStorage(String),
    /// `random_chr` is empty.
    #[error("random_chr is empty")]
    EmptyAlphabet,
    /// Only one of `udp_host` and `udp_port` is set.
    #[error("udp_host and udp_port must be set together")]
    HalfUdp,
    /// A value out of range.
    #[error("{0} must be a finite number greater than zero")]
    Zero(&'static str),
    /// A name that becomes part of file names holds a character it cannot.
    #[error("{0} must not contain '/', '\\', control characters (nor '.' in random_chr)")]
    BadChars(&'static str),
}

impl Default for PackagerConfig {
    fn default() -> Self {
        Self {
            packet_count: 3,
            retry_packet_count: 1,
            message_count: 1,
            retry_upload_count: 1,
            task_type: TaskType::Bus,
            redis_host: "127.0.0.1".to_string(),
            redis_port: 6379,
            redis_db: 0,
            redis_auth: None,
            redis_key: "6y:apk:subpackage:task".to_string(),
            redis_retry_key: "6y:apk:subpackage:task:retry".to_string(),
            redis_sleep_time: 10.0,
            task_schedule_key: "6y:apk:subpackage:task:schedule:task".to_string(),
            upload_file_schedule_key: "6y:apk:subpackage:task:schedule:uploadfile".to_string(),
            notice_key: "6y:apk:subpackage:task:schedule:notice".to_string(),
            instance: String::new(),
            instance_lock_secs: 10.0,
            udp_host: None,
            udp_port: None,
            log_post_time: 60,
            packet_retry_max: 3,
            sdk_game_path: PathBuf::from("sdkgame"),
            subpackage_sdk_path: None,
            tempfile_dir: None,
            random_chr: SEED_RANDOM_CHR.to_string(),
            random_len: 8,
            debug: false,
            storage_list: Vec::new(),
            storage_config: BTreeMap::new(),
            notice_retry: RetryBounds::default(),
            upload_retry: RetryBounds::default(),
            notice_timeout: 10.0,
            notice_concurrency: 64,
            notice_format: NoticeFormat::Form,
            vasdolly: false,
            fsync: true,
        }
    }
}

impl Default for RetryBounds {
    fn default() -> Self {
        Self {
            initial_ms: 5_000,
            max_ms: 600_000,
            max_attempts: 8,
        }
    }
}

impl RetryBounds {
    /// Delay after failed attempt number `attempt` (1-based) before the next one.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(32);
        self.initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_ms)
    }
}

impl PackagerConfig {
    /// Checks what serde cannot: cross references and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = self
            .storage_list
            .iter()
            .find(|name| !self.storage_config.contains_key(*name))
        {
            return Err(ConfigError::UnknownStorage(name.clone()));
        }
        if self.random_chr.is_empty() {
            return Err(ConfigError::EmptyAlphabet);
        }
        if self.udp_host.is_some() != self.udp_port.is_some() {
            return Err(ConfigError::HalfUdp);
        }
        if self.random_len == 0 {
            return Err(ConfigError::Zero("random_len"));
        }
        if self.notice_concurrency == 0 {
            return Err(ConfigError::Zero("notice_concurrency"));
        }
        // Both go into temp-file names: `.taskbus-apk.<instance>.<random>.tmp`.
        // The random part ends at the first '.', so only it must be free of dots.
        let unusable = |c: char| matches!(c, '/' | '\\') || c.is_control();
        if self.random_chr.contains(|c| c == '.' || unusable(c)) {
            return Err(ConfigError::BadChars("random_chr"));
        }
        if self.instance.contains(unusable) {
            return Err(ConfigError::BadChars("instance"));
        }
        if self.notice_retry.max_attempts == 0 {
            return Err(ConfigError::Zero("notice_retry.max_attempts"));
        }
        if self.upload_retry.max_attempts == 0 {
            return Err(ConfigError::Zero("upload_retry.max_attempts"));
        }
        for (name, seconds) in [
            ("redis_sleep_time", self.redis_sleep_time),
            ("notice_timeout", self.notice_timeout),
            ("instance_lock_secs", self.instance_lock_secs),
        ] {
            // Also refuses NaN and infinity, which `Duration` cannot hold.
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// The processing list of this process (seed `task_schedule_key`).
    pub fn processing_key(&self) -> String {
        with_instance(&self.task_schedule_key, &self.instance)
    }

    /// The list of uploads this process is running right now.
    pub fn upload_processing_key(&self) -> String {
        with_instance(
            &format!("{}:processing", self.upload_file_schedule_key),
            &self.instance,
        )
    }

    /// Items that cannot be tasks (not JSON or a Python dict, fields missing), each
    /// with its reason: `<redis_key>:rejected`.
    pub fn rejected_key(&self) -> String {
        format!("{}:rejected", self.redis_key)
    }

    /// The key a running process holds for its `instance`.
    pub fn instance_lock_key(&self) -> String {
        format!("{}:lock", self.processing_key())
    }

    /// The list of notices this process is sending right now.
    pub fn notice_processing_key(&self) -> String {
        with_instance(&format!("{}:processing", self.notice_key), &self.instance)
    }
}

fn with_instance(key: &str, instance: &str) -> String {
    if instance.is_empty() {
        key.to_string()
    } else {
        format!("{key}:{instance}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = RetryBounds {
            initial_ms: 100,
            max_ms: 500,
            max_attempts: 5,
        };
        let delays: Vec<u64> = (1..=5).map(|n| b.delay_ms(n)).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
    }

    #[test]
    fn storage_targets_parse_and_reject_unknown_keys() {
        let cfg: PackagerConfig = toml::from_str(
            r#"
            storage_list = ["disk", "oss"]
            [storage_config.disk]
            type = "local"
            path = "/srv/apk"
            [storage_config.oss]
            type = "s3"
            bucket = "apk"
            endpoint = "http://127.0.0.1:9000"
            allow_http = true
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert!(matches!(
            cfg.storage_config["oss"],
            StorageTarget::S3 { .. }
        ));
        let bad = toml::from_str::<PackagerConfig>(
            "[storage_config.disk]\ntype = \"local\"\npath = \"/x\"\nbukcet = \"y\"\n",
        );
        assert!(bad.unwrap_err().to_string().contains("bukcet"));
    }

    #[test]
    fn secrets_are_not_printed() {
        let cfg: PackagerConfig = toml::from_str("redis_auth = \"hunter2\"").unwrap();
        assert_eq!(cfg.redis_auth, Some(Secret::from("hunter2")));
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn nan_timeouts_are_refused() {
        let cfg = PackagerConfig {
            notice_timeout: f64::NAN,
            ..PackagerConfig::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::Zero("notice_timeout")));
    }

    #[test]
    fn unknown_storage_name_is_an_error() {
        let cfg = PackagerConfig {
            storage_list: vec!["nas".into()],
            ..PackagerConfig::default()
        };
        assert_eq!(
            cfg.validate(),
            Err(ConfigError::UnknownStorage("nas".into()))
        );
    }
}
