//! The `echo` stage: hands its input on to the next topic unchanged (or finishes
//! it, when the worker has no next topic). For tests, the bench and smoke checks.

use futures::future::BoxFuture;

use super::{Stage, StageError};
use crate::task::{NewTask, Task};

/// Returns each task's body as one envelope for the next stage.
pub struct Echo {
    /// Whether there is a next stage to hand the body to.
    pub forward: bool,
}

impl Stage for Echo {
    fn handle(&self, task: Task) -> BoxFuture<'static, Result<Vec<NewTask>, StageError>> {
        let next = if self.forward {
            vec![NewTask {
                body: task.body,
                ..NewTask::default()
            }]
        } else {
            Vec::new()
        };
        Box::pin(async move { Ok(next) })
    }
}
