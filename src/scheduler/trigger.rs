//! Triggers of total tasks (`interval`, `cron`, `date`) and their fire-time arithmetic.
//!
//! Start/end bounds are the task's business (see `task.rs`); this file only answers
//! "when does the pattern match next / last" in the task's time zone.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{invalid, ScheduleError};
use super::timefmt::parse_wall_time;

/// When a total task fires, exactly as on the wire: `{"interval": 30}`,
/// `{"cron": "0 3 * * *"}` or `{"date": "2024-05-01 08:00:00"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Every this many seconds (> 0), counted from the task's `start`, or from its
    /// creation plus one interval when it has no `start` (APScheduler's rule).
    Interval(u64),
    /// A standard 5-field cron expression `minute hour day-of-month month day-of-week`
    /// (0 or 7 = Sunday; names, ranges, steps, `@daily`-style nicknames), matched
    /// against wall-clock time in the task's time zone.
    Cron(String),
    /// One run at this wall time: `YYYY-MM-DD HH:MM:SS` in the task's time zone, or an
    /// RFC 3339 timestamp whose own offset wins.
    Date(String),
}

const TRIGGER_KINDS: &str = "expected one of interval, cron, date";

impl Trigger {
    /// Reads and checks a trigger from its wire form; `tz` resolves a naive date.
    pub fn from_value(v: &Value, tz: Tz) -> Result<Trigger, ScheduleError> {
        let (kind, arg) = match v.as_object() {
            Some(map) if map.len() == 1 => map.iter().next().expect("one entry"),
            _ => return Err(invalid("trigger", TRIGGER_KINDS)),
        };
        let trigger = match kind.as_str() {
            "interval" => Trigger::Interval(interval_seconds(arg)?),
            "cron" => {
                let expr = arg
                    .as_str()
                    .ok_or_else(|| invalid("trigger.cron", "expected a string"))?;
                compile_cron(expr)?;
                Trigger::Cron(expr.trim().to_string())
            }
            "date" => {
                let s = arg
                    .as_str()
                    .ok_or_else(|| invalid("trigger.date", "expected a string"))?;
                Trigger::Date(s.trim().to_string())
            }
            _ => return Err(invalid("trigger", TRIGGER_KINDS)),
        };
        trigger.check(tz)?;
        Ok(trigger)
    }

    /// Checks the parts that depend on the time zone (a date must exist in it).
    pub(crate) fn check(&self, tz: Tz) -> Result<(), ScheduleError> {
        match self {
            Trigger::Interval(0) => Err(invalid("trigger.interval", "must be > 0 seconds")),
            Trigger::Interval(secs) if self.interval().is_none() => Err(invalid(
                "trigger.interval",
                format!("{secs} seconds is too large"),
            )),
            Trigger::Interval(_) => Ok(()),
            Trigger::Cron(expr) => compile_cron(expr).map(drop),
            Trigger::Date(s) => parse_wall_time("trigger.date", s, tz).map(drop),
        }
    }

    /// The one instant of a `date` trigger, resolved in `tz`.
    pub(crate) fn date_instant(&self, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Date(s) => parse_wall_time("trigger.date", s, tz).ok(),
            _ => None,
        }
    }

    /// The interval as a positive time delta, if this is a usable interval trigger
    /// (a stored zero or out-of-range value yields `None`, never a panic).
    pub(crate) fn interval(&self) -> Option<TimeDelta> {
        match self {
            Trigger::Interval(secs) if *secs > 0 => {
                TimeDelta::try_seconds(i64::try_from(*secs).ok()?)
            }
            _ => None,
        }
    }
}

/// Accepts a positive whole number of seconds (`30` or `30.0`).
fn interval_seconds(v: &Value) -> Result<u64, ScheduleError> {
    let secs = v
        .as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
                .map(|f| f as u64)
        })
        .ok_or_else(|| {
            invalid(
                "trigger.interval",
                format!("expected a whole number of seconds > 0, got {v}"),
            )
        })?;
    if secs == 0 {
        return Err(invalid("trigger.interval", "must be > 0 seconds"));
    }
    Ok(secs)
}

/// Parses a standard 5-field cron expression (seconds and years are refused, so a
/// 6-field Quartz pattern cannot be misread as a 5-field one).
pub(crate) fn compile_cron(expr: &str) -> Result<Cron, ScheduleError> {
    let expr = expr.trim();
    let fields = expr.split_whitespace().count();
    if !expr.starts_with('@') && fields != 5 {
        return Err(invalid(
            "trigger.cron",
            format!(
                "invalid expression {expr:?}: expected 5 fields \
                 (minute hour day-of-month month day-of-week), got {fields}"
            ),
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| {
            let detail = e.to_string();
            let detail = detail.trim_end_matches('.');
            invalid(
                "trigger.cron",
                format!("invalid expression {expr:?}: {detail}"),
            )
        })
}

/// First cron match strictly after `t`, in `tz`. Croner applies cron's daylight-saving
/// rules: a fixed-time job whose wall time is skipped runs at the first instant after
/// the gap; in a repeated hour it runs once (the earlier instant); wildcard/step jobs
/// follow real elapsed time.
pub(crate) fn cron_next(cron: &Cron, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = t.with_timezone(&tz);
    match cron.find_next_occurrence(&local, false) {
        Ok(next) => Some(next.with_timezone(&Utc)).filter(|n| *n > t),
        Err(e) => {
            log::debug!(
                "cron={} after={} no next occurrence: {}",
                cron.pattern,
                t,
                e
            );
            None
        }
    }
}

/// Last cron match at or before `t`, in `tz`.
pub(crate) fn cron_prev(cron: &Cron, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = t.with_timezone(&tz);
    match cron.find_previous_occurrence(&local, true) {
        Ok(prev) => Some(prev.with_timezone(&Utc)).filter(|p| *p <= t),
        Err(e) => {
            log::debug!(
                "cron={} before={} no previous occurrence: {}",
                cron.pattern,
                t,
                e
            );
            None
        }
    }
}

/// First `anchor + k * every` (k >= 0) strictly after `t`.
pub(crate) fn interval_next(
    anchor: DateTime<Utc>,
    every: TimeDelta,
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if t < anchor {
        return Some(anchor);
    }
    // Whole seconds suffice: `every` is whole seconds, so a fraction of a second
    // past a multiple never reaches the next one.
    let k = (t - anchor).num_seconds() / every.num_seconds() + 1;
    nth_interval(anchor, every, k)
}

/// Last `anchor + k * every` (k >= 0) at or before `t`.
pub(crate) fn interval_prev(
    anchor: DateTime<Utc>,
    every: TimeDelta,
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if t < anchor {
        return None;
    }
    let k = (t - anchor).num_seconds() / every.num_seconds();
    nth_interval(anchor, every, k)
}

/// `anchor + k * every`, or `None` past the representable range.
fn nth_interval(anchor: DateTime<Utc>, every: TimeDelta, k: i64) -> Option<DateTime<Utc>> {
    let secs = every.num_seconds().checked_mul(k)?;
    anchor.checked_add_signed(TimeDelta::try_seconds(secs)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn wire_form_round_trips_externally_tagged() {
        for v in [
            json!({"interval": 30}),
            json!({"cron": "*/5 * * * *"}),
            json!({"date": "2024-05-01 08:00:00"}),
        ] {
            let t: Trigger = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(&t).unwrap(), v);
            assert_eq!(Trigger::from_value(&v, Tz::UTC).unwrap(), t);
        }
    }

    #[test]
    fn bad_triggers_name_the_field() {
        let cases = [
            (
                json!({"every": 3}),
                "trigger: expected one of interval, cron, date",
            ),
            (
                json!({"interval": 1, "cron": "* * * * *"}),
                "trigger: expected one of",
            ),
            (json!("interval"), "trigger: expected one of"),
            (json!({"interval": 0}), "trigger.interval: must be > 0"),
            (
                json!({"interval": -5}),
                "trigger.interval: expected a whole number",
            ),
            (
                json!({"interval": u64::MAX}),
                "trigger.interval: 18446744073709551615 seconds is too large",
            ),
            (
                json!({"interval": 1.5}),
                "trigger.interval: expected a whole number",
            ),
            (
                json!({"cron": "61 * * * *"}),
                "trigger.cron: invalid expression \"61 * * * *\"",
            ),
            (
                json!({"cron": "0 0 * * * *"}),
                "trigger.cron: invalid expression",
            ),
            (json!({"cron": 5}), "trigger.cron: expected a string"),
            (
                json!({"date": "someday"}),
                "trigger.date: invalid time \"someday\"",
            ),
        ];
        for (v, want) in cases {
            let err = Trigger::from_value(&v, Tz::UTC).unwrap_err().to_string();
            assert!(err.starts_with(want), "{v}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn five_field_cron_maps_minute_hour_dom_month_dow() {
        // 09:30 on Mondays in UTC; 2024-05-01 is a Wednesday.
        let cron = compile_cron("30 9 * * 1").unwrap();
        let next = cron_next(&cron, Tz::UTC, utc("2024-05-01T00:00:00Z")).unwrap();
        assert_eq!(next, utc("2024-05-06T09:30:00Z"));
        // 7 and 0 are both Sunday; dom and dow restricted together means either (cron's OR).
        let sun = compile_cron("0 0 * * 7").unwrap();
        assert_eq!(
            cron_next(&sun, Tz::UTC, utc("2024-05-01T00:00:00Z")).unwrap(),
            utc("2024-05-05T00:00:00Z")
        );
        let either = compile_cron("0 0 10 * 5").unwrap();
        assert_eq!(
            cron_next(&either, Tz::UTC, utc("2024-05-01T00:00:00Z")).unwrap(),
            utc("2024-05-03T00:00:00Z"),
            "friday the 3rd comes before the 10th"
        );
    }

    #[test]
    fn cron_next_is_strict_even_inside_a_second() {
        let cron = compile_cron("* * * * *").unwrap();
        let t = utc("2024-05-01T00:00:00.500Z");
        assert_eq!(
            cron_next(&cron, Tz::UTC, t).unwrap(),
            utc("2024-05-01T00:01:00Z")
        );
        assert_eq!(
            cron_prev(&cron, Tz::UTC, t).unwrap(),
            utc("2024-05-01T00:00:00Z")
        );
    }

    #[test]
    fn interval_arithmetic() {
        let a = utc("2024-05-01T00:00:00Z");
        let every = TimeDelta::seconds(30);
        assert_eq!(interval_next(a, every, a - TimeDelta::seconds(5)), Some(a));
        assert_eq!(interval_next(a, every, a), Some(a + every));
        let t = a + TimeDelta::milliseconds(59_999);
        assert_eq!(interval_next(a, every, t), Some(a + every * 2));
        assert_eq!(interval_prev(a, every, t), Some(a + every));
        assert_eq!(interval_prev(a, every, a - TimeDelta::seconds(1)), None);
    }
}
