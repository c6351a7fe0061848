//! A total task: a recurring task template with its trigger, and the wire-facing
//! validation of `add`/`modify` requests.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::config::{SchedulerConfig, DEFAULT_MISFIRE_GRACE_SECS};
use super::error::{invalid, ScheduleError};
use super::timefmt::{parse_tz, parse_wall_time, tz_name};
use super::trigger::{compile_cron, cron_next, cron_prev, interval_next, interval_prev, Trigger};

/// Keys a request may carry; `type` (the request verb) is ignored so the broker can
/// pass the whole request map.
const REQUEST_FIELDS: [&str; 12] = [
    "type",
    "id",
    "topic",
    "body",
    "trigger",
    "timezone",
    "start",
    "end",
    "max_instances",
    "misfire_grace_time",
    "coalesce",
    "paused",
];

/// Longest accepted total task id, in characters.
const MAX_ID_CHARS: usize = 128;

/// A recurring ("total") task: each firing enqueues one instance of `body` on `topic`.
/// All instants are UTC (RFC 3339 on the wire); wall-clock meaning comes from `timezone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalTask {
    /// Unique id, given by the client or a fresh UUID.
    pub id: String,
    /// Queue each instance is put on.
    pub topic: String,
    /// Template of each instance's body.
    #[serde(default = "empty_body")]
    pub body: Value,
    /// When it fires.
    pub trigger: Trigger,
    /// IANA zone the trigger is read in (the request's, else the configured default).
    #[serde(with = "tz_name")]
    pub timezone: Tz,
    /// No firing before this instant.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// No firing after this instant.
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    /// How many instances may be outstanding at once; a run beyond it is skipped.
    #[serde(default = "one")]
    pub max_instances: u32,
    /// Seconds a run may start late before it is skipped; `None` always runs late.
    #[serde(default = "default_grace")]
    pub misfire_grace_time: Option<u64>,
    /// After downtime, run once for all missed due times (true) or once per due time.
    #[serde(default = "yes")]
    pub coalesce: bool,
    /// A paused task never fires and has no `next_fire_time`.
    #[serde(default)]
    pub paused: bool,
    /// Next due time; `None` when paused or when the trigger has no more fire times.
    #[serde(default)]
    pub next_fire_time: Option<DateTime<Utc>>,
    /// Scheduled time of the last run that fired; never fired again.
    #[serde(default)]
    pub last_fire_time: Option<DateTime<Utc>>,
    /// What happened last: fired, skipped and why, or a result the broker recorded.
    #[serde(default)]
    pub last_result: Option<String>,
    /// When the task was added; anchors interval triggers without `start`.
    pub created_at: DateTime<Utc>,
}

fn empty_body() -> Value {
    json!({})
}
fn one() -> u32 {
    1
}
fn default_grace() -> Option<u64> {
    Some(DEFAULT_MISFIRE_GRACE_SECS)
}
fn yes() -> bool {
    true
}

impl TotalTask {
    /// Builds a total task from an `add` request, with the default grace of 60 s.
    pub fn from_request(
        v: &Value,
        default_tz: Tz,
        now: DateTime<Utc>,
    ) -> Result<TotalTask, ScheduleError> {
        let config = SchedulerConfig {
            timezone: default_tz,
            ..SchedulerConfig::default()
        };
        Self::from_request_with(v, &config, now)
    }

    /// Builds a total task from an `add` request, defaults taken from `config`.
    /// Refuses a task that would never fire from `now` on.
    pub fn from_request_with(
        v: &Value,
        config: &SchedulerConfig,
        now: DateTime<Utc>,
    ) -> Result<TotalTask, ScheduleError> {
        let obj = request_object(v)?;
        let timezone = match obj.get("timezone") {
            None | Some(Value::Null) => config.timezone,
            Some(tz) => timezone_field(tz)?,
        };
        let id = match obj.get("id") {
            None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
            Some(id) => id_field(id)?,
        };
        if !obj.contains_key("topic") {
            return Err(invalid("topic", "missing"));
        }
        let trigger = obj
            .get("trigger")
            .ok_or_else(|| invalid("trigger", "missing (expected one of interval, cron, date)"))?;
        let mut task = TotalTask {
            id,
            topic: String::new(),
            body: empty_body(),
            trigger: Trigger::from_value(trigger, timezone)?,
            timezone,
            start: None,
            end: None,
            max_instances: 1,
            misfire_grace_time: Some(config.misfire_grace_time),
            coalesce: true,
            paused: false,
            next_fire_time: None,
            last_fire_time: None,
            last_result: None,
            created_at: now,
        };
        for (key, value) in obj {
            if !matches!(key.as_str(), "type" | "id" | "timezone" | "trigger") {
                task.apply_field(key, value)?;
            }
        }
        task.check_bounds()?;
        if !task.paused {
            task.next_fire_time = task.first_due(now);
            if task.next_fire_time.is_none() {
                return Err(task.never_fires());
            }
        }
        Ok(task)
    }

    /// Applies a `modify` patch (any request field but `id`) all or nothing. A change
    /// of trigger, time zone, bounds or pause state reschedules from `now`, never
    /// before `last_fire_time`; a new trigger that would never fire is refused.
    pub fn modify(&mut self, patch: &Value, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        let obj = request_object(patch)?;
        let mut next = self.clone();
        // The zone goes first so a naive date or start in the same patch is read in it.
        if let Some(tz) = obj.get("timezone") {
            next.timezone = timezone_field(tz)?;
        }
        for (key, value) in obj {
            match key.as_str() {
                "type" | "timezone" => {}
                "id" if value.as_str() == Some(self.id.as_str()) => {}
                "id" => return Err(invalid("id", "cannot be changed")),
                _ => next.apply_field(key, value)?,
            }
        }
        next.trigger.check(next.timezone)?;
        next.check_bounds()?;
        let reschedule = next.trigger != self.trigger
            || next.timezone != self.timezone
            || next.start != self.start
            || next.end != self.end
            || next.paused != self.paused;
        if reschedule {
            next.next_fire_time = if next.paused {
                None
            } else {
                next.first_due(now)
            };
            if next.next_fire_time.is_none() && !next.paused && next.trigger != self.trigger {
                return Err(next.never_fires());
            }
        }
        *self = next;
        Ok(())
    }

    /// First fire time strictly after `t`, within `start`/`end`; `None` when the
    /// trigger has no more (a one-shot date that passed, an `end` reached).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Searching from just before `start` lets a fire time equal to `start` count.
        let from = match self.start {
            Some(start) if start > t => start - TimeDelta::nanoseconds(1),
            _ => t,
        };
        let next = match &self.trigger {
            Trigger::Interval(_) => {
                interval_next(self.interval_anchor()?, self.trigger.interval()?, from)
            }
            Trigger::Cron(expr) => cron_next(&compile_cron(expr).ok()?, self.timezone, from),
            Trigger::Date(_) => self
                .trigger
                .date_instant(self.timezone)
                .filter(|d| *d > from),
        }?;
        self.end.is_none_or(|end| next <= end).then_some(next)
    }

    /// Last fire time at or before `t`, within `start`/`end`.
    pub fn last_due_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let until = match self.end {
            Some(end) if end < t => end,
            _ => t,
        };
        let prev = match &self.trigger {
            Trigger::Interval(_) => {
                interval_prev(self.interval_anchor()?, self.trigger.interval()?, until)
            }
            Trigger::Cron(expr) => cron_prev(&compile_cron(expr).ok()?, self.timezone, until),
            Trigger::Date(_) => self
                .trigger
                .date_instant(self.timezone)
                .filter(|d| *d <= until),
        }?;
        self.start.is_none_or(|start| prev >= start).then_some(prev)
    }

    /// `t` on this task's wall clock, for display.
    pub fn local_time(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        t.with_timezone(&self.timezone).fixed_offset()
    }

    /// `"paused"`, `"finished"` (no more fire times) or `"scheduled"`.
    pub fn status(&self) -> &'static str {
        match (self.paused, self.next_fire_time) {
            (true, _) => "paused",
            (false, None) => "finished",
            (false, Some(_)) => "scheduled",
        }
    }

    /// Whether a run scheduled for `scheduled_for` may still start at `now`.
    pub fn within_grace(&self, scheduled_for: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.grace()
            .is_none_or(|grace| now - scheduled_for <= grace)
    }

    /// The misfire grace as a duration; `None` when unlimited (or beyond any range).
    pub(crate) fn grace(&self) -> Option<TimeDelta> {
        TimeDelta::try_seconds(i64::try_from(self.misfire_grace_time?).ok()?)
    }

    /// Next due time counting from `now` (inclusive) and after `last_fire_time`; a
    /// one-shot date that passed no longer ago than the grace still runs (APScheduler's
    /// rule), so an `add` sent just late is not refused.
    pub(crate) fn first_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = now - TimeDelta::nanoseconds(1);
        let from = self.last_fire_time.map_or(from, |last| last.max(from));
        if let Some(next) = self.next_after(from) {
            return Some(next);
        }
        let date = self.trigger.date_instant(self.timezone)?;
        let fresh = self.last_fire_time.is_none_or(|last| date > last);
        let in_bounds = self.start.is_none_or(|s| date >= s) && self.end.is_none_or(|e| date <= e);
        (fresh && in_bounds && self.within_grace(date, now)).then_some(date)
    }

    /// Interval fire times are `anchor + k * interval`, k >= 0.
    fn interval_anchor(&self) -> Option<DateTime<Utc>> {
        match self.start {
            Some(start) => Some(start),
            None => self.created_at.checked_add_signed(self.trigger.interval()?),
        }
    }

    fn apply_field(&mut self, key: &str, v: &Value) -> Result<(), ScheduleError> {
        match key {
            "topic" => self.topic = topic_field(v)?,
            "body" => self.body = v.clone(),
            "trigger" => self.trigger = Trigger::from_value(v, self.timezone)?,
            "start" => self.start = time_field(key, v, self.timezone)?,
            "end" => self.end = time_field(key, v, self.timezone)?,
            "max_instances" => self.max_instances = max_instances_field(v)?,
            "misfire_grace_time" => self.misfire_grace_time = grace_field(v)?,
            "coalesce" => self.coalesce = bool_field(key, v)?,
            "paused" => self.paused = bool_field(key, v)?,
            _ => return Err(invalid(key, "unknown field")),
        }
        Ok(())
    }

    fn check_bounds(&self) -> Result<(), ScheduleError> {
        match (self.start, self.end) {
            (Some(start), Some(end)) if end < start => Err(invalid(
                "end",
                format!(
                    "{} is before start {}",
                    end.to_rfc3339(),
                    start.to_rfc3339()
                ),
            )),
            _ => Ok(()),
        }
    }

    fn never_fires(&self) -> ScheduleError {
        let reason = match self.end {
            Some(end) => format!("never fires between now and end {}", end.to_rfc3339()),
            None => "never fires from now on".to_string(),
        };
        invalid("trigger", reason)
    }
}

/// The request as an object whose keys are all known.
fn request_object(v: &Value) -> Result<&Map<String, Value>, ScheduleError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("request", "expected a JSON object"))?;
    match obj.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        Some(unknown) => Err(invalid(unknown.as_str(), "unknown field")),
        None => Ok(obj),
    }
}

fn id_field(v: &Value) -> Result<String, ScheduleError> {
    let id = v.as_str().unwrap_or_default();
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && !id.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(invalid(
            "id",
            format!("expected a non-empty string of at most {MAX_ID_CHARS} characters without spaces, got {v}"),
        ));
    }
    Ok(id.to_string())
}

fn topic_field(v: &Value) -> Result<String, ScheduleError> {
    match v.as_str().map(str::trim) {
        Some(topic) if !topic.is_empty() => Ok(topic.to_string()),
        _ => Err(invalid(
            "topic",
            format!("expected a non-empty string, got {v}"),
        )),
    }
}

fn timezone_field(v: &Value) -> Result<Tz, ScheduleError> {
    let name = v.as_str().ok_or_else(|| {
        invalid(
            "timezone",
            format!("expected an IANA time zone name, got {v}"),
        )
    })?;
    parse_tz("timezone", name)
}

fn time_field(key: &str, v: &Value, tz: Tz) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => parse_wall_time(key, s, tz).map(Some),
        _ => Err(invalid(
            key,
            format!("expected a time string or null, got {v}"),
        )),
    }
}

fn max_instances_field(v: &Value) -> Result<u32, ScheduleError> {
    v.as_u64()
        .filter(|n| *n >= 1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            invalid(
                "max_instances",
                format!("expected a whole number >= 1, got {v}"),
            )
        })
}

fn grace_field(v: &Value) -> Result<Option<u64>, ScheduleError> {
    if v.is_null() {
        return Ok(None);
    }
    v.as_u64()
        .filter(|n| *n >= 1 && *n <= i64::MAX as u64 / 1000)
        .map(Some)
        .ok_or_else(|| {
            invalid(
                "misfire_grace_time",
                format!("expected whole seconds >= 1 or null, got {v}"),
            )
        })
}

fn bool_field(key: &str, v: &Value) -> Result<bool, ScheduleError> {
    v.as_bool()
        .ok_or_else(|| invalid(key, format!("expected true or false, got {v}")))
}
