//! Scheduler behaviour at controlled instants: firing once per due time for every
//! trigger, misfire grace, coalescing, max_instances, restarts, pause/resume.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use taskbus::scheduler::{
    instance_body, instance_guid, total_task_id_of, Firing, Schedule, ScheduleError, TotalTask,
    MAX_RUNS_PER_CALL,
};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn add(schedule: &mut Schedule, v: Value, now: &str) -> TotalTask {
    let task = TotalTask::from_request(&v, Tz::UTC, utc(now)).unwrap();
    schedule.add(task).unwrap().clone()
}

fn none(_: &str) -> usize {
    0
}

/// Ticks `due` every `step` seconds over [from, to], as the broker's timer would.
fn tick(schedule: &mut Schedule, from: &str, to: &str, step: i64) -> Vec<Firing> {
    let mut out = Vec::new();
    let mut now = utc(from);
    while now <= utc(to) {
        out.extend(schedule.due(now, none));
        now += TimeDelta::seconds(step);
    }
    out
}

fn times(firings: &[Firing]) -> Vec<String> {
    firings
        .iter()
        .map(|f| f.scheduled_for.to_rfc3339())
        .collect()
}

#[test]
fn interval_fires_once_per_due_time() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "i", "topic": "t", "trigger": {"interval": 20}}),
        "2024-05-01T00:00:00Z",
    );
    // Ticks every 7 s do not line up with the 20 s interval; each due time fires once.
    let fired = tick(&mut s, "2024-05-01T00:00:00Z", "2024-05-01T00:01:10Z", 7);
    assert_eq!(
        times(&fired),
        [
            "2024-05-01T00:00:20+00:00",
            "2024-05-01T00:00:40+00:00",
            "2024-05-01T00:01:00+00:00"
        ]
    );
    for f in &fired {
        assert!(
            f.fire_time >= f.scheduled_for && f.fire_time - f.scheduled_for < TimeDelta::seconds(7)
        );
    }
    assert!(
        s.due(utc("2024-05-01T00:01:10Z"), none).is_empty(),
        "same instant again fires nothing"
    );
    assert_eq!(s.next_wakeup(), Some(utc("2024-05-01T00:01:20Z")));
}

#[test]
fn cron_fires_once_per_due_time_in_shanghai_and_across_dst() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "sh", "topic": "t", "trigger": {"cron": "0 8 * * *"},
                       "timezone": "Asia/Shanghai"}),
        "2024-03-09T00:00:00Z",
    );
    add(
        &mut s,
        json!({"id": "ny", "topic": "t", "trigger": {"cron": "30 2 * * *"},
                       "timezone": "America/New_York"}),
        "2024-03-09T00:00:00Z",
    );
    let fired = tick(&mut s, "2024-03-09T00:00:00Z", "2024-03-11T12:00:00Z", 60);
    let of = |id: &str| {
        times(
            &fired
                .iter()
                .filter(|f| f.task_id == id)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        of("sh"),
        [
            "2024-03-09T00:00:00+00:00",
            "2024-03-10T00:00:00+00:00",
            "2024-03-11T00:00:00+00:00"
        ],
        "08:00 in Shanghai; the first equals the creation instant, which counts as due"
    );
    assert_eq!(
        of("ny"),
        [
            "2024-03-09T07:30:00+00:00",
            "2024-03-10T07:00:00+00:00",
            "2024-03-11T06:30:00+00:00"
        ],
        "02:30 New York, once on the day 02:30 does not exist"
    );
}

#[test]
fn hourly_cron_through_fall_back_fires_each_real_hour_once() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "h", "topic": "t", "trigger": {"cron": "0 * * * *"},
                       "timezone": "America/New_York"}),
        "2024-11-03T03:30:00Z",
    );
    let fired = tick(&mut s, "2024-11-03T03:30:00Z", "2024-11-03T08:30:00Z", 30);
    assert_eq!(
        times(&fired),
        [
            "2024-11-03T04:00:00+00:00",
            "2024-11-03T05:00:00+00:00",
            "2024-11-03T06:00:00+00:00",
            "2024-11-03T07:00:00+00:00",
            "2024-11-03T08:00:00+00:00"
        ],
        "00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST"
    );
}

#[test]
fn date_fires_once_then_finishes() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "d", "topic": "t", "trigger": {"date": "2024-05-01 09:30:00"},
                       "timezone": "Asia/Shanghai"}),
        "2024-05-01T00:00:00Z",
    );
    let fired = tick(&mut s, "2024-05-01T00:00:00Z", "2024-05-01T03:00:00Z", 10);
    assert_eq!(times(&fired), ["2024-05-01T01:30:00+00:00"]);
    let d = s.get("d").unwrap();
    assert_eq!((d.status(), d.next_fire_time), ("finished", None));
    assert_eq!(d.last_fire_time, Some(utc("2024-05-01T01:30:00Z")));
    assert_eq!(s.next_wakeup(), None);
}

#[test]
fn start_and_end_bound_the_firings() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "b", "topic": "t", "trigger": {"cron": "*/10 * * * *"},
                       "start": "2024-05-01 00:15:00", "end": "2024-05-01 00:40:00"}),
        "2024-05-01T00:00:00Z",
    );
    let fired = tick(&mut s, "2024-05-01T00:00:00Z", "2024-05-01T01:30:00Z", 5);
    assert_eq!(
        times(&fired),
        [
            "2024-05-01T00:20:00+00:00",
            "2024-05-01T00:30:00+00:00",
            "2024-05-01T00:40:00+00:00"
        ]
    );
    assert_eq!(s.get("b").unwrap().status(), "finished");
}

#[test]
fn coalesced_catch_up_after_downtime_is_one_firing() {
    let mut s = Schedule::new();
    // A grace long enough that every missed run would still be allowed to start.
    add(
        &mut s,
        json!({"id": "c", "topic": "t", "trigger": {"interval": 60},
                       "misfire_grace_time": 3600, "max_instances": 100}),
        "2024-05-01T00:00:00Z",
    );
    // Down from before the first run until 00:10:30: ten due times were missed.
    let fired = s.due(utc("2024-05-01T00:10:30Z"), none);
    assert_eq!(
        times(&fired),
        ["2024-05-01T00:10:00+00:00"],
        "one run, for the latest due time"
    );
    assert_eq!(fired[0].next_fire_time, Some(utc("2024-05-01T00:11:00Z")));
    assert_eq!(
        s.get("c").unwrap().next_fire_time,
        Some(utc("2024-05-01T00:11:00Z"))
    );
}

#[test]
fn without_coalescing_each_missed_run_within_grace_fires() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "n", "topic": "t", "trigger": {"interval": 60}, "coalesce": false,
                       "misfire_grace_time": 180, "max_instances": 10}),
        "2024-05-01T00:00:00Z",
    );
    let fired = s.due(utc("2024-05-01T00:10:30Z"), none);
    // Due 00:01..00:10; within 180 s of 00:10:30 are 00:08, 00:09, 00:10.
    assert_eq!(
        times(&fired),
        [
            "2024-05-01T00:08:00+00:00",
            "2024-05-01T00:09:00+00:00",
            "2024-05-01T00:10:00+00:00"
        ]
    );
    let next: Vec<_> = fired
        .iter()
        .map(|f| f.next_fire_time.unwrap().to_rfc3339())
        .collect();
    assert_eq!(
        next,
        [
            "2024-05-01T00:09:00+00:00",
            "2024-05-01T00:10:00+00:00",
            "2024-05-01T00:11:00+00:00"
        ]
    );
    let task = s.get("n").unwrap();
    assert_eq!(task.last_fire_time, Some(utc("2024-05-01T00:10:00Z")));
    assert!(s.due(utc("2024-05-01T00:10:30Z"), none).is_empty());
}

#[test]
fn misfire_grace_skips_late_runs_and_none_runs_late() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "g", "topic": "t", "trigger": {"cron": "0 3 * * *"}}),
        "2024-05-01T00:00:00Z",
    );
    add(
        &mut s,
        json!({"id": "late", "topic": "t", "trigger": {"cron": "0 3 * * *"},
                       "misfire_grace_time": null}),
        "2024-05-01T00:00:00Z",
    );
    // The broker was down over 03:00 and is back 5 minutes later; grace is 60 s.
    let fired = s.due(utc("2024-05-01T03:05:00Z"), none);
    assert_eq!(
        fired.iter().map(|f| f.task_id.as_str()).collect::<Vec<_>>(),
        ["late"]
    );
    let g = s.get("g").unwrap();
    assert!(
        g.last_result
            .as_deref()
            .unwrap()
            .starts_with("missed run of 2024-05-01T03:00:00+00:00"),
        "{:?}",
        g.last_result
    );
    assert_eq!(g.last_fire_time, None);
    assert_eq!(
        g.next_fire_time,
        Some(utc("2024-05-02T03:00:00Z")),
        "the missed run is not retried"
    );
    // Just inside the grace still fires.
    let fired = s.due(utc("2024-05-02T03:01:00Z"), none);
    assert_eq!(fired.len(), 2);
}

#[test]
fn max_instances_skips_and_records_it() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "m", "topic": "t", "trigger": {"interval": 60}}),
        "2024-05-01T00:00:00Z",
    );
    let busy = |id: &str| usize::from(id == "m");
    assert!(s.due(utc("2024-05-01T00:01:00Z"), busy).is_empty());
    let m = s.get("m").unwrap();
    assert!(
        m.last_result
            .as_deref()
            .unwrap()
            .contains("max_instances 1 reached"),
        "{:?}",
        m.last_result
    );
    assert_eq!(
        m.next_fire_time,
        Some(utc("2024-05-01T00:02:00Z")),
        "the skipped run is not retried"
    );
    assert_eq!(
        times(&s.due(utc("2024-05-01T00:02:00Z"), none)),
        ["2024-05-01T00:02:00+00:00"]
    );

    // Runs fired in one call count as outstanding for the next run of that call.
    add(
        &mut s,
        json!({"id": "two", "topic": "t", "trigger": {"interval": 60}, "coalesce": false,
                       "max_instances": 2, "misfire_grace_time": 600}),
        "2024-05-01T00:00:00Z",
    );
    let fired = s.due(utc("2024-05-01T00:03:00Z"), |id| usize::from(id == "m"));
    let two: Vec<_> = fired.iter().filter(|f| f.task_id == "two").collect();
    assert_eq!(two.len(), 2, "00:01 and 00:02 fire, 00:03 is skipped");
    assert!(s
        .get("two")
        .unwrap()
        .last_result
        .as_deref()
        .unwrap()
        .starts_with("skipped run of 2024-05-01T00:03:00"));
}

#[test]
fn restart_from_json_never_fires_twice() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "r", "topic": "t", "trigger": {"interval": 60},
                       "misfire_grace_time": null}),
        "2024-05-01T00:00:00Z",
    );
    add(
        &mut s,
        json!({"id": "once", "topic": "t", "trigger": {"date": "2024-05-01 00:02:00"}}),
        "2024-05-01T00:00:00Z",
    );
    let first = tick(&mut s, "2024-05-01T00:00:00Z", "2024-05-01T00:02:00Z", 1);
    assert_eq!(first.len(), 3);

    // Restart at the same instant: nothing new is due.
    let saved = serde_json::to_string(&s).unwrap();
    let mut back: Schedule = serde_json::from_str(&saved).unwrap();
    assert_eq!(back.len(), 2);
    assert!(back.due(utc("2024-05-01T00:02:00Z"), none).is_empty());

    // Restart after an hour of downtime: one coalesced run, the date never again.
    let mut back: Schedule = serde_json::from_str(&saved).unwrap();
    let fired = back.due(utc("2024-05-01T01:00:20Z"), none);
    assert_eq!(times(&fired), ["2024-05-01T01:00:00+00:00"]);
    assert_eq!(fired[0].task_id, "r");

    // A row saved with a stale next_fire_time (at or before the last run that fired)
    // must not fire that run again.
    let mut rows: Vec<TotalTask> = serde_json::from_str(&saved).unwrap();
    assert_eq!(
        rows.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["once", "r"]
    );
    for row in &mut rows {
        assert!(row.last_fire_time.is_some());
        row.next_fire_time = row.last_fire_time;
    }
    let mut stale = Schedule::from_tasks(rows);
    assert!(stale.due(utc("2024-05-01T00:02:30Z"), none).is_empty());
    assert_eq!(
        times(&stale.due(utc("2024-05-01T00:03:00Z"), none)),
        ["2024-05-01T00:03:00+00:00"]
    );
}

#[test]
fn crash_after_one_of_several_firings_resumes_where_it_stopped() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "k", "topic": "t", "trigger": {"interval": 60}, "coalesce": false,
                       "max_instances": 5, "misfire_grace_time": 3600}),
        "2024-05-01T00:00:00Z",
    );
    let saved: Vec<TotalTask> = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    let fired = s.due(utc("2024-05-01T00:03:10Z"), none);
    assert_eq!(fired.len(), 3);
    // Only the first firing's transaction committed before the crash.
    let mut row = saved[0].clone();
    row.last_fire_time = Some(fired[0].scheduled_for);
    row.next_fire_time = fired[0].next_fire_time;
    let mut back = Schedule::from_tasks([row]);
    let again = back.due(utc("2024-05-01T00:03:20Z"), none);
    assert_eq!(
        times(&again),
        ["2024-05-01T00:02:00+00:00", "2024-05-01T00:03:00+00:00"]
    );
}

#[test]
fn pause_and_resume() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "p", "topic": "t", "trigger": {"interval": 60}}),
        "2024-05-01T00:00:00Z",
    );
    let paused = s.pause("p").unwrap();
    assert_eq!((paused.status(), paused.next_fire_time), ("paused", None));
    assert!(tick(&mut s, "2024-05-01T00:00:00Z", "2024-05-01T00:10:00Z", 10).is_empty());
    assert_eq!(s.next_wakeup(), None);
    let resumed = s.resume("p", utc("2024-05-01T00:10:30Z")).unwrap();
    assert_eq!(
        resumed.next_fire_time,
        Some(utc("2024-05-01T00:11:00Z")),
        "from now, none of the slept-through runs"
    );
    assert_eq!(
        times(&tick(
            &mut s,
            "2024-05-01T00:10:30Z",
            "2024-05-01T00:11:30Z",
            10
        )),
        ["2024-05-01T00:11:00+00:00"]
    );
    // Pausing via modify behaves the same.
    s.modify("p", &json!({"paused": true}), utc("2024-05-01T00:11:30Z"))
        .unwrap();
    assert!(s.due(utc("2024-05-01T00:20:00Z"), none).is_empty());
}

#[test]
fn registry_operations_and_changed_rows() {
    let mut s = Schedule::new();
    let t = add(
        &mut s,
        json!({"id": "a", "topic": "t", "trigger": {"interval": 60}}),
        "2024-05-01T00:00:00Z",
    );
    assert_eq!(
        s.add(t).unwrap_err(),
        ScheduleError::AlreadyExists("a".into())
    );
    assert_eq!(
        s.pause("zz").unwrap_err().to_string(),
        "total task not found: zz"
    );
    assert_eq!(s.take_changed().len(), 1);
    assert!(s.take_changed().is_empty());
    s.due(utc("2024-05-01T00:01:00Z"), none);
    let rows = s.take_changed();
    assert_eq!(rows[0].last_fire_time, Some(utc("2024-05-01T00:01:00Z")));
    s.record_result("a", "ok");
    assert_eq!(s.take_changed()[0].last_result.as_deref(), Some("ok"));
    let gone = s.delete("a").unwrap();
    assert_eq!(gone.id, "a");
    assert!(s.is_empty() && s.take_changed().is_empty());
    assert!(matches!(s.delete("a"), Err(ScheduleError::NotFound(_))));
}

#[test]
fn bursts_without_grace_are_capped_per_call() {
    let mut s = Schedule::new();
    add(
        &mut s,
        json!({"id": "b", "topic": "t", "trigger": {"interval": 1}, "coalesce": false,
                       "misfire_grace_time": null, "max_instances": 100000}),
        "2024-05-01T00:00:00Z",
    );
    let now = utc("2024-05-01T00:05:00Z");
    let first = s.due(now, none);
    assert_eq!(first.len(), MAX_RUNS_PER_CALL);
    assert!(s.next_wakeup().unwrap() <= now, "the rest is still due");
    let mut all = first;
    while s.next_wakeup().is_some_and(|w| w <= now) {
        all.extend(s.due(now, none));
    }
    assert_eq!(all.len(), 300, "00:00:01 ..= 00:05:00, each once");
    assert!(all
        .windows(2)
        .all(|w| w[0].scheduled_for < w[1].scheduled_for));
}

#[test]
fn instances_carry_the_body_and_a_guid_naming_the_task() {
    let mut s = Schedule::new();
    let body = json!({"crawl": {"name": "jd", "version": "1"}, "urls": []});
    add(
        &mut s,
        json!({"id": "jd", "topic": "jm_crawl", "trigger": {"interval": 60}, "body": body}),
        "2024-05-01T00:00:00Z",
    );
    let fired = s.due(utc("2024-05-01T00:01:00Z"), none);
    let task = s.get("jd").unwrap();
    assert_eq!(instance_body(task, &fired[0]), body);
    let guid = instance_guid(&fired[0].task_id);
    assert_ne!(guid, instance_guid("jd"));
    assert_eq!(total_task_id_of(&guid), Some("jd"));
}
