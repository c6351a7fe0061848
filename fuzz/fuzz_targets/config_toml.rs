//! The configuration loader on a `bus.toml` text: parse, defaults, validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = taskbus::config::from_str(text);
    }
});
