//! Instances of total tasks: the body each firing enqueues and its guid.
//!
//! An instance guid is `"<total_task_id>:<uuid v4>"`: fresh for every instance, yet
//! the total task it came from can be read back (the seed's `guid` field names the
//! server task a local task came from).

use serde_json::Value;
use uuid::Uuid;

use super::schedule::Firing;
use super::task::TotalTask;

/// The body of the instance `firing` enqueues: the task's body template, verbatim
/// (the crawl envelope's field names are exact, so nothing is added to it).
pub fn instance_body(task: &TotalTask, firing: &Firing) -> Value {
    debug_assert_eq!(task.id, firing.task_id, "firing of another task");
    task.body.clone()
}

/// A fresh guid for an instance of `task_id`: `"<task_id>:<uuid v4>"`.
pub fn instance_guid(task_id: &str) -> String {
    format!("{task_id}:{}", Uuid::new_v4())
}

/// The total task id inside an instance guid made by `instance_guid`; `None` for any
/// other guid (one without a `:<uuid>` suffix).
pub fn total_task_id_of(guid: &str) -> Option<&str> {
    let (task_id, suffix) = guid.rsplit_once(':')?;
    let is_uuid = suffix.len() == 36 && Uuid::try_parse(suffix).is_ok();
    (is_uuid && !task_id.is_empty()).then_some(task_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_is_fresh_and_keeps_the_task_id() {
        let a = instance_guid("daily:jd");
        let b = instance_guid("daily:jd");
        assert_ne!(a, b);
        assert_eq!(total_task_id_of(&a), Some("daily:jd"));
        assert_eq!(total_task_id_of(&b), Some("daily:jd"));
    }

    #[test]
    fn other_guids_have_no_total_task() {
        for guid in [
            "",
            "plain-guid",
            "a:b",
            ":0b4e4a7a-3f55-4f4e-9c59-2f3c2b7d1e10",
        ] {
            assert_eq!(total_task_id_of(guid), None, "{guid}");
        }
        let simple = Uuid::new_v4().simple().to_string();
        assert_eq!(
            total_task_id_of(&format!("t:{simple}")),
            None,
            "only hyphenated uuids"
        );
    }
}
