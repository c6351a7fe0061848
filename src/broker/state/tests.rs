//! Unit tests of the state with time passed in: leases, backoff, credit, commits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::broker::workers::WorkerEntry;
use crate::config::Config;
use crate::protocol::client::TaskLookup;

fn state(durable: bool, edit: impl FnOnce(&mut Config)) -> State {
    let mut config = Config::default();
    config.broker.lease_timeout_secs = 10.0;
    config.broker.max_retry = 2;
    config.broker.retry_backoff_secs = 0.0;
    edit(&mut config);
    State::new(Arc::new(config), durable)
}

fn worker(state: &mut State, name: &str, topic: &str, capacity: u32, now: Instant) -> Bytes {
    let id = Bytes::from(name.to_owned());
    let entry = WorkerEntry {
        name: name.into(),
        stage: "test".into(),
        topics: vec![topic.into()],
        capacity,
        next_topic: None,
        in_flight: Default::default(),
        last_seen: now,
    };
    state.register_worker(id.clone(), entry, now);
    id
}

fn put(state: &mut State, topic: &str, guid: Option<&str>) -> String {
    let mut task = NewTask::new(topic, json!({"n": 1}));
    task.guid = guid.map(str::to_owned);
    state.put(task, Origin::Put).unwrap()
}

/// The guids dispatch hands to each worker now.
fn dispatched(state: &mut State, now: Instant) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = state
        .dispatch(now)
        .into_iter()
        .map(|(id, tasks)| {
            let name = String::from_utf8_lossy(&id).into_owned();
            (name, tasks.iter().map(|t| t.guid.to_string()).collect())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn an_expired_lease_keeps_counting_against_a_live_worker_until_it_answers() {
    let now = Instant::now();
    let mut state = state(false, |_| {});
    let w = worker(&mut state, "w", "t", 1, now);
    let guid = put(&mut state, "t", None);
    assert_eq!(
        dispatched(&mut state, now),
        [("w".into(), vec![guid.clone()])]
    );

    state.on_timer(now + Duration::from_secs(11));
    assert_eq!(state.size("t"), Some(1), "the expired task waits again");
    assert!(
        dispatched(&mut state, now + Duration::from_secs(11)).is_empty(),
        "the worker still runs it: its one slot is taken"
    );
    state.answered(&w, &guid);
    let later = now + Duration::from_secs(12);
    assert_eq!(dispatched(&mut state, later), [("w".into(), vec![guid])]);
}

#[test]
fn a_retryable_failure_waits_out_its_backoff() {
    let now = Instant::now();
    let mut state = state(false, |c| {
        c.broker.retry_backoff_secs = 2.0;
        c.broker.retry_jitter = false;
    });
    let guid = put(&mut state, "t", None);
    state.lease_next("t", Holder::Client, now).unwrap();
    assert_eq!(state.fail(&guid, "db down".into(), true, now), Ok("ready"));
    assert_eq!(state.size("t"), Some(0), "not ready during the backoff");
    assert_eq!(state.topic_stats()["t"].delayed, 1);
    assert_eq!(state.next_deadline(), Some(now + Duration::from_secs(2)));
    state.on_timer(now + Duration::from_millis(1999));
    assert_eq!(state.size("t"), Some(0));
    state.on_timer(now + Duration::from_secs(2));
    assert_eq!(state.size("t"), Some(1));

    // The second failure waits twice as long.
    let again = now + Duration::from_secs(3);
    state.lease_next("t", Holder::Client, again).unwrap();
    state.fail(&guid, "db down".into(), true, again).unwrap();
    assert_eq!(state.next_deadline(), Some(again + Duration::from_secs(4)));
}

#[test]
fn a_task_out_of_attempts_is_dead_with_its_count() {
    let now = Instant::now();
    let mut state = state(false, |c| c.broker.max_retry = 1);
    let guid = put(&mut state, "t", None);
    for expected in ["ready", "dead"] {
        state.lease_next("t", Holder::Client, now).unwrap();
        assert_eq!(state.fail(&guid, "boom".into(), true, now), Ok(expected));
    }
    let Some(TaskLookup::Live(info)) = state.task_status(&guid, now) else {
        panic!("dead tasks stay visible");
    };
    assert_eq!(info.state, "dead");
    assert!(
        info.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("boom (after 2 attempts over")),
        "{:?}",
        info.last_error
    );
}

#[test]
fn new_tasks_wait_for_their_commit_and_a_refused_put_never_runs() {
    let now = Instant::now();
    let mut state = state(true, |_| {});
    worker(&mut state, "w", "t", 10, now);
    let refused = put(&mut state, "t", None);
    assert_eq!(state.size("t"), Some(0));
    assert!(
        dispatched(&mut state, now).is_empty(),
        "not before the commit"
    );
    let round = state.seal_round().expect("a round with new tasks");
    let dropped = state.refuse(round);
    assert_eq!(dropped, HashSet::from([Arc::from(refused.as_str())]));
    assert!(
        state.seal_round().is_none(),
        "nothing left of the refused put"
    );
    assert!(dispatched(&mut state, now).is_empty());

    let accepted = put(&mut state, "t", None);
    let round = state.seal_round().unwrap();
    state.release(round);
    assert_eq!(dispatched(&mut state, now), [("w".into(), vec![accepted])]);
}

#[test]
fn a_failed_commit_keeps_derived_tasks_for_the_next_one() {
    let now = Instant::now();
    let mut state = state(true, |_| {});
    let parent = put(&mut state, "a", None);
    let round = state.seal_round().unwrap();
    state.release(round);
    state.lease_next("a", Holder::Client, now).unwrap();
    let child = NewTask::new("b", json!({"x": 1}));
    assert_eq!(state.complete(&parent, vec![child], None), Ok(1));
    let round = state.seal_round().unwrap();
    assert!(state.refuse(round).is_empty(), "a DONE's children are kept");
    assert_eq!(state.topic_stats()["b"].pending, 1);
    let again = state
        .seal_round()
        .expect("written again with the next commit");
    state.release(again);
    assert_eq!(state.size("b"), Some(1));
}

#[test]
fn a_done_whose_output_cannot_be_routed_does_not_finish_the_task() {
    let now = Instant::now();
    let mut state = state(false, |_| {});
    let guid = put(&mut state, "a", None);
    state.lease_next("a", Holder::Client, now).unwrap();
    let nowhere = NewTask {
        body: json!({"no": "topic"}).into(),
        ..NewTask::default()
    };
    let error = state
        .complete(&guid, vec![nowhere.clone()], None)
        .unwrap_err();
    assert_eq!(error.code, code::UNROUTABLE);
    assert!(error.message.contains("next[0]"), "{}", error.message);
    assert_eq!(state.topic_stats()["a"].leased, 1, "still leased");
    assert_eq!(state.complete(&guid, vec![nowhere], Some("b")), Ok(1));
    assert_eq!(state.size("b"), Some(1));
}

#[test]
fn routing_prefers_callback_topic_then_next_topic_then_the_envelope() {
    let now = Instant::now();
    let mut state = state(false, |_| {});
    let guid = put(&mut state, "a", None);
    state.lease_next("a", Holder::Client, now).unwrap();
    let next = vec![
        NewTask::new("own", json!({"callback": {"topic": "cb"}})),
        NewTask::new("own", json!({"topic": "stale"})),
        NewTask {
            body: json!({}).into(),
            ..NewTask::default()
        },
    ];
    assert_eq!(state.complete(&guid, next, Some("nt")), Ok(3));
    assert_eq!(state.size("cb"), Some(1));
    assert_eq!(state.size("nt"), Some(2));
    let moved = state.lease_next("nt", Holder::Client, now).unwrap();
    assert_eq!(
        moved.body,
        json!({"topic": "nt"}),
        "the envelope's own topic is kept true"
    );
}

#[test]
fn a_late_done_finishes_a_task_that_waits_again() {
    let now = Instant::now();
    let mut state = state(false, |_| {});
    let w = worker(&mut state, "w", "t", 1, now);
    let guid = put(&mut state, "t", None);
    dispatched(&mut state, now);
    state.on_timer(now + Duration::from_secs(11));
    assert_eq!(state.size("t"), Some(1));
    state.answered(&w, &guid);
    assert_eq!(state.complete(&guid, Vec::new(), None), Ok(0));
    assert_eq!(state.size("t"), Some(0));
    assert_eq!(state.topic_stats()["t"].done, 1);
    assert!(
        state.lease_next("t", Holder::Client, now).is_none(),
        "the finished slot is skipped"
    );
}

#[test]
fn explicit_guids_are_not_queued_twice_while_live() {
    let now = Instant::now();
    let mut state = state(false, |_| {});
    put(&mut state, "t", Some("job-1"));
    put(&mut state, "t", Some("job-1"));
    assert_eq!(state.size("t"), Some(1));
    state.lease_next("t", Holder::Client, now).unwrap();
    state.complete("job-1", Vec::new(), None).unwrap();
    put(&mut state, "t", Some("job-1"));
    assert_eq!(state.size("t"), Some(1), "finished, so it may come again");
}

#[test]
fn a_dead_worker_returns_only_what_it_still_holds() {
    let now = Instant::now();
    let mut state = state(false, |_| {});
    let w = worker(&mut state, "w", "t", 2, now);
    let first = put(&mut state, "t", None);
    put(&mut state, "t", None);
    dispatched(&mut state, now);
    state.complete(&first, Vec::new(), None).unwrap();
    assert_eq!(state.remove_worker(&w, "missed heartbeats", now), 1);
    assert_eq!(state.size("t"), Some(1));
}

#[test]
fn an_expired_lease_back_at_the_same_worker_never_exceeds_its_capacity() {
    let now = Instant::now();
    let later = now + Duration::from_secs(11);
    let mut state = state(false, |_| {});
    let w = worker(&mut state, "w", "t", 2, now);
    let a = put(&mut state, "t", Some("a"));
    assert_eq!(dispatched(&mut state, now), [("w".into(), vec![a.clone()])]);
    state.on_timer(later);
    let b = put(&mut state, "t", Some("b"));
    assert_eq!(
        dispatched(&mut state, later),
        [("w".into(), vec![a.clone()])],
        "attempt 2 of a goes to w, which still runs attempt 1"
    );
    let in_flight = |state: &State| state.workers.stats(later)[0].in_flight;
    assert_eq!(in_flight(&state), 2);
    assert!(dispatched(&mut state, later).is_empty(), "w is full");

    // The late DONE of attempt 1 frees its own slot, not the one of attempt 2.
    state.answered(&w, &a);
    assert_eq!(state.complete(&a, Vec::new(), None), Ok(0));
    assert_eq!(in_flight(&state), 1);
    assert_eq!(dispatched(&mut state, later), [("w".into(), vec![b])]);
    assert!(dispatched(&mut state, later).is_empty(), "w runs a and b");

    state.answered(&w, &a);
    assert_eq!(in_flight(&state), 1, "only b is left");
}
