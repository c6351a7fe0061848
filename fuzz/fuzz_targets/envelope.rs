//! The seed's crawl envelope (`local_task`) from JSON and from MessagePack, and the
//! accessors the stages call on what was read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskbus::crawl::envelope::LocalTask;

fn exercise(task: &LocalTask) {
    let _ = task.rows().count();
    let _ = task.callback_topic();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(task) = serde_json::from_slice::<LocalTask>(data) {
        exercise(&task);
    }
    if let Ok(task) = rmp_serde::from_slice::<LocalTask>(data) {
        exercise(&task);
    }
});
