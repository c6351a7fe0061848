//! The packager's task parser: JSON, or the seed's Python dict literals.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskbus::packager::task::PackageTask;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PackageTask::parse(text);
    }
});
