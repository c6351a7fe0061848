//! The `[scheduler]` section of `bus.toml`.

use chrono_tz::Tz;
use serde::Deserialize;

use super::error::{invalid, ScheduleError};
use super::timefmt::tz_name;

/// Default seconds a run may start late before it counts as missed.
pub const DEFAULT_MISFIRE_GRACE_SECS: u64 = 60;

/// Scheduler settings; defaults are documented in `bus.toml.fragment`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Time zone of total tasks that name none (IANA name, default `UTC`).
    #[serde(with = "tz_name")]
    pub timezone: Tz,
    /// Longest the broker sleeps between two `Schedule::due` calls, in milliseconds,
    /// even when `next_wakeup` is further away (bounds lateness after a clock jump).
    pub tick_interval_ms: u64,
    /// Default `misfire_grace_time` of total tasks that name none, in seconds.
    pub misfire_grace_time: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            timezone: Tz::UTC,
            tick_interval_ms: 1000,
            misfire_grace_time: DEFAULT_MISFIRE_GRACE_SECS,
        }
    }
}

impl SchedulerConfig {
    /// Refuses values that parse but make no sense (zero tick or grace).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.tick_interval_ms == 0 {
            return Err(invalid("scheduler.tick_interval_ms", "must be > 0"));
        }
        if self.misfire_grace_time == 0 {
            return Err(invalid("scheduler.misfire_grace_time", "must be > 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c: SchedulerConfig = toml::from_str("").unwrap();
        assert_eq!(c, SchedulerConfig::default());
        let c: SchedulerConfig = toml::from_str("timezone = \"Asia/Shanghai\"").unwrap();
        assert_eq!(c.timezone, chrono_tz::Asia::Shanghai);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_key_and_zone_are_named() {
        let err = toml::from_str::<SchedulerConfig>("tick = 5").unwrap_err();
        assert!(err.to_string().contains("unknown field `tick`"), "{err}");
        let err = toml::from_str::<SchedulerConfig>("timezone = \"Mars/Base\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown time zone \"Mars/Base\""),
            "{err}"
        );
        let zero = SchedulerConfig {
            tick_interval_ms: 0,
            ..SchedulerConfig::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().field(),
            Some("scheduler.tick_interval_ms")
        );
    }

    /// The documented `[scheduler]` section (the fragment in a scratch crate, the
    /// merged `bus.toml` in the main one) parses, and the fragment shows the defaults.
    #[test]
    fn documented_section_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (name, text) = ["bus.toml.fragment", "bus.toml"]
            .iter()
            .find_map(|name| Some((*name, std::fs::read_to_string(root.join(name)).ok()?)))
            .expect("bus.toml.fragment or bus.toml at the crate root");
        let table: toml::Table = toml::from_str(&text).unwrap();
        let section = table
            .get("scheduler")
            .expect("a [scheduler] section")
            .clone();
        let c: SchedulerConfig = section.try_into().unwrap();
        c.validate().unwrap();
        if name == "bus.toml.fragment" {
            assert_eq!(c, SchedulerConfig::default());
        }
    }
}
