//! Wall-clock parsing in a task's time zone, and the time zone's wire form (its IANA name).

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::error::{invalid, ScheduleError};

/// Naive forms a request may use for a wall time in the task's zone.
const NAIVE_FORMATS: [&str; 4] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

/// Parses an IANA time zone name for `field`.
pub(crate) fn parse_tz(field: &str, name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| invalid(field, format!("unknown time zone {name:?}")))
}

/// Parses `s` as RFC 3339 (its own offset wins) or as `YYYY-MM-DD HH:MM:SS` in `tz`.
pub(crate) fn parse_wall_time(
    field: &str,
    s: &str,
    tz: Tz,
) -> Result<DateTime<Utc>, ScheduleError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = NAIVE_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .ok_or_else(|| {
            invalid(
                field,
                format!("invalid time {s:?}: expected \"YYYY-MM-DD HH:MM:SS\" or RFC 3339"),
            )
        })?;
    resolve_local(naive, tz).map_err(|reason| invalid(field, reason))
}

/// Resolves a wall time in `tz`: a repeated wall time (clocks going back) takes its
/// earlier instant, as cron does; a skipped one (clocks going forward) is refused,
/// because any instant chosen for it would be a guess.
pub(crate) fn resolve_local(naive: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, String> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Ok(earlier.with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "{naive} does not exist in {} (clocks skip it)",
            tz.name()
        )),
    }
}

/// Serde for a `Tz` as its IANA name, so stored tasks read like requests.
pub(crate) mod tz_name {
    use chrono_tz::Tz;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Writes the zone's IANA name.
    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    /// Reads an IANA name, refusing unknown ones by name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<Tz>()
            .map_err(|_| D::Error::custom(format!("unknown time zone {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_time_is_read_in_the_zone() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let t = parse_wall_time("start", "2024-05-01 08:00:00", tz).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T00:00:00+00:00");
    }

    #[test]
    fn rfc3339_keeps_its_own_offset() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let t = parse_wall_time("start", "2024-05-01T08:00:00-04:00", tz).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:00:00+00:00");
    }

    #[test]
    fn skipped_wall_time_is_refused_and_repeated_takes_the_earlier() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let err = parse_wall_time("trigger.date", "2024-03-10 02:30:00", ny).unwrap_err();
        assert_eq!(err.field(), Some("trigger.date"));
        let t = parse_wall_time("start", "2024-11-03 01:30:00", ny).unwrap();
        assert_eq!(
            t.to_rfc3339(),
            "2024-11-03T05:30:00+00:00",
            "EDT instant first"
        );
    }

    #[test]
    fn garbage_and_unknown_zone_name_the_field() {
        let err = parse_wall_time("end", "tomorrow", Tz::UTC).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("end: invalid time \"tomorrow\""),
            "{err}"
        );
        let err = parse_tz("timezone", "Mars/Base").unwrap_err();
        assert_eq!(err.to_string(), "timezone: unknown time zone \"Mars/Base\"");
    }
}
