//! The task as it travels on the wire: the seed's `local_task` envelope
//! (`topic`, `guid`, `body`) plus the broker's delivery fields.

use serde::{Deserialize, Serialize};

use crate::body::Body;

/// A task handed to a worker or returned by `get_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub guid: String,
    pub topic: String,
    #[serde(default)]
    pub body: Body,
    /// 1 for the first delivery, 2 for the first retry, and so on.
    #[serde(default)]
    pub attempt: u32,
    /// Lease length in seconds. A task handed out carries the effective value (its
    /// own, else its topic's), so the holder knows when its lease ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Retry limit. A task handed out carries the effective value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry: Option<u32>,
}

/// A task as a producer or a worker's DONE offers it: the broker assigns what is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// Any JSON value (or MessagePack on the ZeroMQ endpoints), passed on as it came.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub body: Body,
    /// Seconds a lease lasts (the topic's or the broker's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Int64, maximum = 4294967295_u64)]
    pub max_retry: Option<u32>,
}

impl NewTask {
    /// A task for `topic` with `body` and nothing else set.
    pub fn new(topic: impl Into<String>, body: impl Into<Body>) -> Self {
        NewTask {
            topic: Some(topic.into()),
            body: body.into(),
            ..NewTask::default()
        }
    }
}

/// A fresh random guid for a task that came without one.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether `guid` has the shape of one [`new_guid`] makes (32 lowercase hex digits).
/// Any other guid was chosen by a producer or derived from a parent, and the broker
/// keeps such a task from being queued twice.
pub fn is_generated(guid: &str) -> bool {
    guid.len() == 32 && guid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The guid of the `index`-th task produced by `parent`. Deterministic, so that a
/// redelivered task that produces the same output does not enqueue it twice.
pub fn child_guid(parent: &str, index: usize) -> String {
    format!("{parent}/{index}")
}

/// The guid a derived guid descends from (the part before the first `/`).
pub fn root_guid(guid: &str) -> &str {
    guid.split('/').next().unwrap_or(guid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn child_guids_are_deterministic_and_keep_their_root() {
        let child = child_guid(&child_guid("abc", 0), 3);
        assert_eq!(child, "abc/0/3");
        assert_eq!(root_guid(&child), "abc");
    }

    #[test]
    fn new_task_rejects_unknown_keys() {
        let err = serde_json::from_value::<NewTask>(json!({"topic": "t", "bdy": {}})).unwrap_err();
        assert!(err.to_string().contains("bdy"));
    }
}
