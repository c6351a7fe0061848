//! The seed's task JSON, kept as a JSON object so unknown keys survive a push back.
//!
//! ```text
//! { "filename": "fuhaoniuniu", "channel_id": 11,
//!   "extend": { "channel_version": "1.0", "enforcement": true,
//!               "packet_timeout": 1700000000, "error_key": "NO_APK" },   // the last two on retry
//!   "finish_notice_url": "http://xxxx.xxx.com/xxxx.php" }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One packaging task exactly as the producer wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PackageTask(pub Map<String, Value>);

/// The fields of a usable task, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFields {
    /// Mother APK name: `<sdk_game_path>/<filename>/<filename>.apk`.
    pub filename: String,
    /// Channel id, as text (the seed sends an integer or a string).
    pub channel_id: String,
    /// `extend.channel_version`.
    pub channel_version: String,
    /// `extend.enforcement`: rebuild a package that already exists (default true).
    pub enforcement: bool,
    /// Where the outcome is POSTed; none: nobody is told.
    pub finish_notice_url: Option<String>,
}

/// A task that is not a JSON object at all.
#[derive(Debug, thiserror::Error)]
#[error("task is not a json object: {0}")]
pub struct NotATask(pub String);

/// `extend.retry_count`: packaging attempts that failed so far (our addition).
pub const RETRY_COUNT_KEY: &str = "retry_count";

impl PackageTask {
    /// Parses a task from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, NotATask> {
        let value: Value = serde_json::from_str(text).map_err(|e| NotATask(e.to_string()))?;
        Self::from_value(value)
    }

    /// Takes a task from a JSON value, which must be an object.
    pub fn from_value(value: Value) -> Result<Self, NotATask> {
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => Err(NotATask(truncate(&other.to_string(), 200))),
        }
    }

    /// The task as JSON text.
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// `filename`, if it is a string.
    pub fn filename(&self) -> Option<&str> {
        self.0.get("filename").and_then(Value::as_str)
    }

    /// `channel_id` as text, if it is a string or a number.
    pub fn channel_id(&self) -> Option<String> {
        self.0.get("channel_id").and_then(scalar_text)
    }

    /// `finish_notice_url`, if it is a non-empty string.
    pub fn finish_notice_url(&self) -> Option<&str> {
        self.0
            .get("finish_notice_url")
            .and_then(Value::as_str)
            .filter(|url| !url.is_empty())
    }

    /// The `extend` object, if any.
    pub fn extend(&self) -> Option<&Map<String, Value>> {
        self.0.get("extend").and_then(Value::as_object)
    }

    /// `extend.packet_timeout` in Unix seconds (number or numeric string).
    pub fn packet_timeout(&self) -> Option<f64> {
        let value = self.extend()?.get("packet_timeout")?;
        value
            .as_f64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
    }

    /// `extend.error_key`, if any.
    pub fn error_key(&self) -> Option<&str> {
        self.extend()?.get("error_key").and_then(Value::as_str)
    }

    /// Failed packaging attempts so far (`extend.retry_count`, 0 when absent).
    pub fn retry_count(&self) -> u32 {
        self.extend()
            .and_then(|e| e.get(RETRY_COUNT_KEY))
            .and_then(Value::as_u64)
            .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32)
    }

    /// The task as pushed to `redis_retry_key` after a failure: the seed's
    /// `extend.packet_timeout` (Unix seconds) and `extend.error_key`, and our
    /// `extend.retry_count`. Every other key is kept as it was.
    pub fn with_failure(&self, packet_timeout: i64, error_key: &str) -> Self {
        let mut task = self.clone();
        let retry_count = self.retry_count().saturating_add(1);
        let extend = task
            .0
            .entry("extend")
            .or_insert_with(|| Value::Object(Map::new()));
        if !extend.is_object() {
            *extend = Value::Object(Map::new());
        }
        if let Value::Object(extend) = extend {
            extend.insert("packet_timeout".into(), packet_timeout.into());
            extend.insert("error_key".into(), error_key.into());
            extend.insert(RETRY_COUNT_KEY.into(), retry_count.into());
        }
        task
    }

    /// Checks the fields; the error lists what is missing or unusable.
    pub fn fields(&self) -> Result<TaskFields, String> {
        let mut problems = Vec::new();
        let filename = self.filename().map(str::to_string);
        match &filename {
            None => problems.push("filename".to_string()),
            Some(name) if !is_safe_name(name) => problems.push(format!("filename {name:?}")),
            Some(_) => {}
        }
        let channel_id = self.channel_id();
        match &channel_id {
            None => problems.push("channel_id".to_string()),
            Some(id) if !is_safe_name(id) => problems.push(format!("channel_id {id:?}")),
            Some(_) => {}
        }
        let channel_version = self
            .extend()
            .and_then(|e| e.get("channel_version"))
            .and_then(scalar_text);
        if channel_version.is_none() {
            problems.push("extend.channel_version".to_string());
        }
        if !problems.is_empty() {
            return Err(problems.join(", "));
        }
        Ok(TaskFields {
            filename: filename.unwrap_or_default(),
            channel_id: channel_id.unwrap_or_default(),
            channel_version: channel_version.unwrap_or_default(),
            enforcement: self.enforcement(),
            finish_notice_url: self.finish_notice_url().map(str::to_string),
        })
    }

    /// `extend.enforcement`; Python producers may send `False` as text or 0.
    fn enforcement(&self) -> bool {
        match self.extend().and_then(|e| e.get("enforcement")) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::String(s)) => !matches!(s.trim(), "False" | "false" | "0" | ""),
            _ => true,
        }
    }

    /// Short description for log lines.
    pub fn describe(&self) -> String {
        format!(
            "filename={} channel_id={}",
            self.filename().unwrap_or("-"),
            self.channel_id().as_deref().unwrap_or("-")
        )
    }
}

/// Text of a string or number value (a float keeps its `.0`: `1.0` stays `"1.0"`).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A name usable as one path component: no separators, no `..`, no hidden files.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 200
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_task_parses_with_int_or_string_channel() {
        for channel in [json!(11), json!("11")] {
            let task = PackageTask::from_value(json!({
                "filename": "fuhaoniuniu", "channel_id": channel,
                "extend": {"channel_version": "1.0"},
                "finish_notice_url": "http://x/y.php"}))
            .unwrap();
            let f = task.fields().unwrap();
            assert_eq!((f.channel_id.as_str(), f.enforcement), ("11", true));
        }
    }

    #[test]
    fn failure_keeps_unknown_keys_and_counts() {
        let task = PackageTask::from_value(json!({
            "filename": "g", "channel_id": 1, "mine": [1, 2],
            "extend": {"channel_version": "1", "x": "y"}}))
        .unwrap();
        let again = task
            .with_failure(100, "NO_APK")
            .with_failure(200, "WRONG_APK");
        assert_eq!(again.0["mine"], json!([1, 2]));
        assert_eq!(again.0["extend"]["x"], json!("y"));
        assert_eq!(again.packet_timeout(), Some(200.0));
        assert_eq!(again.error_key(), Some("WRONG_APK"));
        assert_eq!(again.retry_count(), 2);
    }

    #[test]
    fn enforcement_false_in_python_spellings() {
        for value in [json!(false), json!("False"), json!(0)] {
            let task = PackageTask::from_value(json!({"filename": "g", "channel_id": 1,
                "extend": {"channel_version": "1", "enforcement": value}}))
            .unwrap();
            assert!(!task.fields().unwrap().enforcement);
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        let task = PackageTask::from_value(json!({"filename": "../etc", "channel_id": "a/b",
            "extend": {}}))
        .unwrap();
        let err = task.fields().unwrap_err();
        assert!(
            err.contains("filename") && err.contains("channel_id"),
            "{err}"
        );
        assert!(err.contains("extend.channel_version"), "{err}");
    }
}
