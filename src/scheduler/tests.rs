//! Unit tests of total tasks: request validation, modify, and fire-time arithmetic
//! (interval, cron across DST, date, start/end), all at fixed instants.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn task(v: Value, now: &str) -> TotalTask {
    TotalTask::from_request(&v, Tz::UTC, utc(now)).unwrap()
}

/// The fire times after `from`, up to `n` of them.
fn fire_times(task: &TotalTask, from: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = utc(from);
    while let Some(next) = task.next_after(t).filter(|_| out.len() < n) {
        assert!(next > t, "next_after must move forward");
        out.push(next.to_rfc3339());
        t = next;
    }
    out
}

fn err(v: Value) -> String {
    TotalTask::from_request(&v, Tz::UTC, utc("2024-05-01T00:00:00Z"))
        .unwrap_err()
        .to_string()
}

#[test]
fn request_defaults() {
    let t = task(
        json!({"topic": "jm_crawl", "trigger": {"interval": 60}}),
        "2024-05-01T00:00:00Z",
    );
    assert_eq!(t.max_instances, 1);
    assert_eq!(t.misfire_grace_time, Some(DEFAULT_MISFIRE_GRACE_SECS));
    assert!(t.coalesce && !t.paused);
    assert_eq!(t.timezone, Tz::UTC);
    assert_eq!(t.body, json!({}));
    assert_eq!(t.created_at, utc("2024-05-01T00:00:00Z"));
    assert_eq!(
        t.next_fire_time,
        Some(utc("2024-05-01T00:01:00Z")),
        "creation + one interval"
    );
    assert!(
        uuid::Uuid::try_parse(&t.id).is_ok(),
        "a fresh uuid id: {}",
        t.id
    );
}

#[test]
fn request_fields_are_taken() {
    let t = task(
        json!({"type": "add_total_task", "id": "jd-daily", "topic": "jm_crawl",
               "body": {"crawl": {"name": "jd"}}, "trigger": {"cron": "0 8 * * *"},
               "timezone": "Asia/Shanghai", "start": "2024-06-01 00:00:00",
               "end": "2024-07-01T00:00:00Z", "max_instances": 3,
               "misfire_grace_time": null, "coalesce": false, "paused": true}),
        "2024-05-01T00:00:00Z",
    );
    assert_eq!(t.id, "jd-daily");
    assert_eq!(t.body, json!({"crawl": {"name": "jd"}}));
    assert_eq!(t.timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(
        t.start,
        Some(utc("2024-05-31T16:00:00Z")),
        "naive start read in the task's zone"
    );
    assert_eq!(t.end, Some(utc("2024-07-01T00:00:00Z")));
    assert_eq!(
        (t.max_instances, t.misfire_grace_time, t.coalesce),
        (3, None, false)
    );
    assert_eq!(
        (t.paused, t.next_fire_time, t.status()),
        (true, None, "paused")
    );
}

#[test]
fn config_defaults_apply() {
    let config = SchedulerConfig {
        timezone: chrono_tz::Asia::Shanghai,
        misfire_grace_time: 5,
        ..SchedulerConfig::default()
    };
    let v = json!({"topic": "t", "trigger": {"date": "2024-05-01 09:00:00"}});
    let t = TotalTask::from_request_with(&v, &config, utc("2024-05-01T00:00:00Z")).unwrap();
    assert_eq!(t.misfire_grace_time, Some(5));
    assert_eq!(t.next_fire_time, Some(utc("2024-05-01T01:00:00Z")));
}

#[test]
fn invalid_requests_name_the_field() {
    let base = |extra: Value| {
        let mut v = json!({"topic": "t", "trigger": {"interval": 10}});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        err(v)
    };
    assert_eq!(
        err(json!({"topic": "t", "trigger": {"cron": "0 25 * * *"}}))
            .split(':')
            .next(),
        Some("trigger.cron")
    );
    assert!(err(json!({"topic": "t", "trigger": {"cron": "bad"}}))
        .starts_with("trigger.cron: invalid expression \"bad\""));
    assert_eq!(
        base(json!({"timezone": "Mars/Base"})),
        "timezone: unknown time zone \"Mars/Base\""
    );
    assert_eq!(
        err(json!({"topic": "t", "trigger": {"weekly": 1}})),
        "trigger: expected one of interval, cron, date"
    );
    assert!(err(json!({"topic": "t"})).starts_with("trigger: missing"));
    assert_eq!(err(json!({"trigger": {"interval": 1}})), "topic: missing");
    assert!(base(json!({"topic": ""})).starts_with("topic: expected a non-empty string"));
    assert!(base(json!({"id": "has space"})).starts_with("id: expected"));
    assert!(base(json!({"max_instances": 0})).starts_with("max_instances: expected"));
    assert!(base(json!({"misfire_grace_time": -1})).starts_with("misfire_grace_time: expected"));
    assert!(base(json!({"coalesce": "yes"})).starts_with("coalesce: expected true or false"));
    assert!(base(json!({"start": "soon"})).starts_with("start: invalid time \"soon\""));
    assert!(
        base(json!({"start": "2024-06-02 00:00:00", "end": "2024-06-01 00:00:00"}))
            .starts_with("end: ")
    );
    assert_eq!(
        base(json!({"triger": {"interval": 1}})),
        "triger: unknown field"
    );
    assert!(err(json!([1])).starts_with("request: expected a JSON object"));
}

#[test]
fn tasks_that_never_fire_are_refused() {
    // A one-shot in the past (beyond the grace) and an end already behind us.
    assert!(
        err(json!({"topic": "t", "trigger": {"date": "2024-04-30 00:00:00"}}))
            .starts_with("trigger: never fires")
    );
    assert!(
        err(json!({"topic": "t", "trigger": {"interval": 5}, "end": "2024-04-01 00:00:00"}))
            .starts_with("trigger: never fires")
    );
    // Clocks skip 02:30 on this day in New York.
    let v = json!({"topic": "t", "trigger": {"date": "2025-03-09 02:30:00"},
                   "timezone": "America/New_York"});
    let e = TotalTask::from_request(&v, Tz::UTC, utc("2024-05-01T00:00:00Z")).unwrap_err();
    assert_eq!(e.field(), Some("trigger.date"), "{e}");
}

#[test]
fn a_date_just_passed_still_runs_within_grace() {
    let v = json!({"topic": "t", "trigger": {"date": "2024-05-01 00:00:00"}});
    let t = task(v, "2024-05-01T00:00:30Z");
    assert_eq!(t.next_fire_time, Some(utc("2024-05-01T00:00:00Z")));
}

#[test]
fn interval_respects_start_and_end() {
    let t = task(
        json!({"topic": "t", "trigger": {"interval": 600},
               "start": "2024-05-01 10:00:00", "end": "2024-05-01 10:25:00"}),
        "2024-05-01T00:00:00Z",
    );
    assert_eq!(
        t.next_fire_time,
        Some(utc("2024-05-01T10:00:00Z")),
        "first run at start"
    );
    assert_eq!(
        fire_times(&t, "2024-05-01T00:00:00Z", 10),
        [
            "2024-05-01T10:00:00+00:00",
            "2024-05-01T10:10:00+00:00",
            "2024-05-01T10:20:00+00:00"
        ]
    );
    assert_eq!(
        t.last_due_at_or_before(utc("2024-05-02T00:00:00Z")),
        Some(utc("2024-05-01T10:20:00Z"))
    );
    assert_eq!(t.last_due_at_or_before(utc("2024-05-01T09:59:59Z")), None);
}

#[test]
fn cron_respects_start_and_end() {
    let t = task(
        json!({"topic": "t", "trigger": {"cron": "0 */6 * * *"},
               "start": "2024-05-01T06:00:00Z", "end": "2024-05-01T18:00:00Z"}),
        "2024-05-01T00:00:00Z",
    );
    assert_eq!(
        fire_times(&t, "2024-04-30T00:00:00Z", 10),
        [
            "2024-05-01T06:00:00+00:00",
            "2024-05-01T12:00:00+00:00",
            "2024-05-01T18:00:00+00:00"
        ]
    );
}

#[test]
fn cron_in_asia_shanghai() {
    let v = json!({"topic": "t", "trigger": {"cron": "0 8 * * 1-5"}, "timezone": "Asia/Shanghai"});
    let t = task(v, "2024-05-03T00:00:00Z");
    // Friday 08:00 in Shanghai is 00:00Z, and "now" counts as due.
    assert_eq!(
        fire_times(&t, "2024-05-02T23:00:00Z", 3),
        [
            "2024-05-03T00:00:00+00:00",
            "2024-05-06T00:00:00+00:00",
            "2024-05-07T00:00:00+00:00"
        ]
    );
    assert_eq!(t.next_fire_time, Some(utc("2024-05-03T00:00:00Z")));
    assert_eq!(
        t.local_time(utc("2024-05-03T00:00:00Z")).to_rfc3339(),
        "2024-05-03T08:00:00+08:00"
    );
}

#[test]
fn cron_across_new_york_spring_forward() {
    // 2024-03-10: 02:00 EST jumps to 03:00 EDT (07:00Z).
    let ny = json!({"topic": "t", "timezone": "America/New_York"});
    let with = |cron: &str| {
        let mut v = ny.clone();
        v["trigger"] = json!({"cron": cron});
        task(v, "2024-03-01T00:00:00Z")
    };
    // A fixed 02:30 job still runs once that day, at the first instant after the gap.
    assert_eq!(
        fire_times(&with("30 2 * * *"), "2024-03-09T00:00:00Z", 3),
        [
            "2024-03-09T07:30:00+00:00",
            "2024-03-10T07:00:00+00:00",
            "2024-03-11T06:30:00+00:00"
        ]
    );
    // An hourly job follows real hours: no 02:00 that night.
    assert_eq!(
        fire_times(&with("0 * * * *"), "2024-03-10T05:30:00Z", 3),
        [
            "2024-03-10T06:00:00+00:00",
            "2024-03-10T07:00:00+00:00",
            "2024-03-10T08:00:00+00:00"
        ]
    );
    // Daily 09:00 local moves from 14:00Z to 13:00Z.
    assert_eq!(
        fire_times(&with("0 9 * * *"), "2024-03-09T00:00:00Z", 2),
        ["2024-03-09T14:00:00+00:00", "2024-03-10T13:00:00+00:00"]
    );
}

#[test]
fn cron_across_new_york_fall_back() {
    // 2024-11-03: 02:00 EDT falls back to 01:00 EST (06:00Z); 01:xx happens twice.
    let with = |cron: &str| {
        let v = json!({"topic": "t", "timezone": "America/New_York", "trigger": {"cron": cron}});
        task(v, "2024-10-01T00:00:00Z")
    };
    let fixed = with("30 1 * * *");
    assert_eq!(
        fire_times(&fixed, "2024-11-02T00:00:00Z", 3),
        [
            "2024-11-02T05:30:00+00:00",
            "2024-11-03T05:30:00+00:00",
            "2024-11-04T06:30:00+00:00"
        ],
        "a fixed-time job runs once in the repeated hour"
    );
    assert_eq!(
        fixed.last_due_at_or_before(utc("2024-11-03T06:45:00Z")),
        Some(utc("2024-11-03T05:30:00Z")),
        "looking back from the second 01:45 finds the run that happened"
    );
    assert_eq!(
        fire_times(&with("*/30 * * * *"), "2024-11-03T04:45:00Z", 5),
        [
            "2024-11-03T05:00:00+00:00",
            "2024-11-03T05:30:00+00:00",
            "2024-11-03T06:00:00+00:00",
            "2024-11-03T06:30:00+00:00",
            "2024-11-03T07:00:00+00:00"
        ],
        "a stepped job follows real time through the repeated hour"
    );
}

#[test]
fn date_fires_once() {
    let v = json!({"topic": "t", "trigger": {"date": "2024-05-01 12:00:00"}, "timezone": "Asia/Shanghai"});
    let t = task(v, "2024-05-01T00:00:00Z");
    assert_eq!(
        fire_times(&t, "2024-04-01T00:00:00Z", 5),
        ["2024-05-01T04:00:00+00:00"]
    );
    assert_eq!(t.next_after(utc("2024-05-01T04:00:00Z")), None);
}

#[test]
fn modify_is_validated_all_or_nothing() {
    let now = utc("2024-05-01T00:00:00Z");
    let mut t = task(
        json!({"id": "a", "topic": "t", "trigger": {"interval": 60}}),
        "2024-05-01T00:00:00Z",
    );
    let before = t.clone();
    let e = t
        .modify(&json!({"topic": "u", "trigger": {"cron": "nope"}}), now)
        .unwrap_err();
    assert_eq!(e.field(), Some("trigger.cron"));
    assert_eq!(t, before, "a refused patch changes nothing");
    assert_eq!(
        t.modify(&json!({"id": "b"}), now).unwrap_err().field(),
        Some("id")
    );
    assert_eq!(
        t.modify(&json!({"colour": 1}), now)
            .unwrap_err()
            .to_string(),
        "colour: unknown field"
    );

    // A new trigger and zone reschedule from now.
    let later = now + TimeDelta::minutes(30);
    t.modify(
        &json!({"id": "a", "trigger": {"cron": "0 9 * * *"}, "timezone": "Asia/Shanghai",
                     "max_instances": 2}),
        later,
    )
    .unwrap();
    assert_eq!(
        t.next_fire_time,
        Some(utc("2024-05-01T01:00:00Z")),
        "09:00 in Shanghai"
    );
    assert_eq!((t.topic.as_str(), t.max_instances), ("t", 2));

    // Fields that do not affect timing leave next_fire_time alone.
    let pending = t.next_fire_time;
    t.modify(&json!({"body": {"x": 1}, "coalesce": false}), later)
        .unwrap();
    assert_eq!(t.next_fire_time, pending);
    assert_eq!(t.body, json!({"x": 1}));

    // An end before the next run finishes the task; a trigger that never fires is refused.
    t.modify(&json!({"end": "2024-05-01T00:45:00Z"}), later)
        .unwrap();
    assert_eq!(t.status(), "finished");
    let e = t
        .modify(&json!({"trigger": {"date": "2024-04-01 00:00:00"}}), later)
        .unwrap_err();
    assert!(e.to_string().starts_with("trigger: never fires"), "{e}");
}

#[test]
fn stored_form_round_trips() {
    let v = json!({"id": "x", "topic": "t", "trigger": {"cron": "*/5 * * * *"},
                   "timezone": "America/New_York", "misfire_grace_time": null});
    let t = task(v, "2024-05-01T00:00:00Z");
    let text = serde_json::to_string(&t).unwrap();
    assert!(text.contains("\"timezone\":\"America/New_York\""), "{text}");
    assert!(
        text.contains("\"next_fire_time\":\"2024-05-01T00:00:00Z\""),
        "{text}"
    );
    let back: TotalTask = serde_json::from_str(&text).unwrap();
    assert_eq!(back, t);
}

#[test]
fn coalesced_cron_catch_up_picks_the_latest_due_time_across_fall_back() {
    let mut s = Schedule::new();
    let v = json!({"id": "ny", "topic": "t", "trigger": {"cron": "30 1 * * *"},
                   "timezone": "America/New_York", "misfire_grace_time": null});
    s.add(task(v, "2024-11-01T12:00:00Z")).unwrap();
    let v = json!({"id": "five", "topic": "t", "trigger": {"cron": "*/5 * * * *"},
                   "misfire_grace_time": null});
    s.add(task(v, "2024-11-01T12:00:00Z")).unwrap();
    // Down from before the first run of either until the second 01:47 (EST) of the
    // fall-back night: two daily runs and hundreds of five-minute runs were missed.
    let fired = s.due(utc("2024-11-03T06:47:00Z"), |_| 0);
    let got: Vec<_> = fired
        .iter()
        .map(|f| (f.task_id.as_str(), f.scheduled_for.to_rfc3339()))
        .collect();
    assert_eq!(
        got,
        [
            ("ny", "2024-11-03T05:30:00+00:00".to_string()),
            ("five", "2024-11-03T06:45:00+00:00".to_string())
        ]
    );
    assert_eq!(
        s.get("ny").unwrap().next_fire_time,
        Some(utc("2024-11-04T06:30:00Z"))
    );
    assert_eq!(
        s.get("five").unwrap().next_fire_time,
        Some(utc("2024-11-03T06:50:00Z"))
    );
}
