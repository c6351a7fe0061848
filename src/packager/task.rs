//! The seed's task, kept as a JSON object so unknown keys survive a push back. It comes
//! as JSON or in the seed documents' own notation, a Python dict literal (single
//! quotes, `True`/`False`/`None`), read with the `py_literal` crate.
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

/// A task that is neither a JSON object nor a Python dict.
#[derive(Debug, thiserror::Error)]
#[error("task is not a json object or python dict: {0}")]
pub struct NotATask(pub String);

/// `extend.retry_count`: packaging attempts that failed so far (our addition).
pub const RETRY_COUNT_KEY: &str = "retry_count";

impl PackageTask {
    /// Parses a task from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, NotATask> {
        let value: Value = serde_json::from_str(text).map_err(|e| NotATask(e.to_string()))?;
        Self::from_value(value)
    }

    /// Parses a task as the seed's producers write it: JSON, or a Python dict literal
    /// (`{'filename': 'g', 'channel_id': 11, 'extend': {'enforcement': False}}`).
    pub fn parse(text: &str) -> Result<Self, NotATask> {
        let json_error = match serde_json::from_str::<Value>(text) {
            Ok(value) => return Self::from_value(value),
            Err(e) => e,
        };
        let python = match text.trim().parse::<py_literal::Value>() {
            Ok(python) => python,
            Err(py_error) => {
                return Err(NotATask(format!(
                    "not json ({json_error}) and not a python literal ({})",
                    one_line(&py_error.to_string())
                )))
            }
        };
        Self::from_value(python_to_json(python).map_err(NotATask)?)
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

/// The `finish_notice_url` of an item that does not parse, if it can still be read:
/// the key (in either quotes), a colon, and an `http(s)://` URL in either quotes.
pub fn notice_url_in(text: &str) -> Option<String> {
    let at = text.find("finish_notice_url")? + "finish_notice_url".len();
    let rest = text[at..].trim_start_matches(['\'', '"']).trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let quote = rest.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let body = &rest[1..];
    let url = &body[..body.find(quote)?];
    let usable = (url.starts_with("http://") || url.starts_with("https://"))
        && !url.contains(char::is_whitespace);
    usable.then(|| url.to_string())
}

/// A Python literal as JSON: dicts with string (or number, bool, None) keys, lists,
/// tuples and sets as arrays, `True`/`False`/`None`, ints that fit 64 bits, floats.
fn python_to_json(value: py_literal::Value) -> Result<Value, String> {
    use py_literal::Value as Py;
    Ok(match value {
        Py::String(s) => Value::String(s),
        Py::Bytes(b) => {
            Value::String(String::from_utf8(b).map_err(|_| "bytes that are not utf-8")?)
        }
        Py::Integer(n) => {
            let text = n.to_string();
            let number = text
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| text.parse::<u64>().map(Value::from));
            number.map_err(|_| format!("integer {text} does not fit 64 bits"))?
        }
        Py::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("float {f} has no json form"))?,
        Py::Complex(_) => return Err("complex numbers have no json form".into()),
        Py::Tuple(items) | Py::List(items) | Py::Set(items) => Value::Array(
            items
                .into_iter()
                .map(python_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Py::Dict(pairs) => {
            let mut map = Map::new();
            for (key, value) in pairs {
                let key = match python_to_json(key)? {
                    Value::String(s) => s,
                    Value::Array(_) | Value::Object(_) => {
                        return Err("a dict key is a container".into())
                    }
                    other => other.to_string(),
                };
                map.insert(key, python_to_json(value)?);
            }
            Value::Object(map)
        }
        Py::Boolean(b) => Value::Bool(b),
        Py::None => Value::Null,
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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

    /// Issue 12: the seed documents' notation, pushed as it is written there.
    #[test]
    fn python_dict_of_the_seed_documents_parses() {
        let text =
            "{'filename': 'fuhaoniuniu', 'channel_id': 11, 'extend': {'channel_version': '1.0', \
                    'enforcement': False, 'note': None, 'tags': ('a', \"b\\'c\")}, \
                    'finish_notice_url': 'http://x/y.php', 'ratio': 0.5, 'on': True}";
        let task = PackageTask::parse(text).unwrap();
        let f = task.fields().unwrap();
        assert_eq!(f.filename, "fuhaoniuniu");
        assert_eq!(f.channel_id, "11");
        assert_eq!(f.channel_version, "1.0");
        assert!(!f.enforcement);
        assert_eq!(f.finish_notice_url.as_deref(), Some("http://x/y.php"));
        assert_eq!(task.0["channel_id"], json!(11));
        assert_eq!(task.0["extend"]["note"], Value::Null);
        assert_eq!(task.0["extend"]["tags"], json!(["a", "b'c"]));
        assert_eq!(
            (task.0["ratio"].clone(), task.0["on"].clone()),
            (json!(0.5), json!(true))
        );
        // JSON still parses as JSON, and the re-encoded task is JSON.
        let again = PackageTask::parse(&task.to_json()).unwrap();
        assert_eq!(again, task);
    }

    #[test]
    fn unreadable_text_says_why_in_both_notations() {
        let err = PackageTask::parse("{'filename': 'g', 'channel_id': }").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("not json") && text.contains("python literal"),
            "{text}"
        );
        let err = PackageTask::parse("['a', 'list']").unwrap_err();
        assert!(err.to_string().contains("[\"a\",\"list\"]"), "{err}");
    }

    #[test]
    fn notice_url_is_read_from_a_broken_item() {
        let broken = "{'filename': 'g', 'finish_notice_url': 'http://x/n.php', 'channel_id': }";
        assert_eq!(notice_url_in(broken).as_deref(), Some("http://x/n.php"));
        let json = r#"{"finish_notice_url" : "https://x/n", "extend": ["#;
        assert_eq!(notice_url_in(json).as_deref(), Some("https://x/n"));
        assert_eq!(notice_url_in("{'finish_notice_url': 'ftp://x'}"), None);
        assert_eq!(notice_url_in("{'finish_notice_url': 'http://x"), None);
        assert_eq!(notice_url_in("garbage"), None);
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
