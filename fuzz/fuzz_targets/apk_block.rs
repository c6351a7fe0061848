//! The APK signing-block parser on the tail of a file, as if the tail started at
//! offset 0 and at a later offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskbus::apk::block::parse_tail;

fuzz_target!(|data: &[u8]| {
    let _ = parse_tail(0, data);
    let _ = parse_tail(1 << 20, data);
});
