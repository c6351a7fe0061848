//! The client endpoint's decoder on MessagePack bodies: size and syntax check, the verb's
//! fields, and the token read by `[auth]`. Any input must give a value or a typed
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskbus::protocol::client::ClientRequest;
use taskbus::protocol::decode::peek;
use taskbus::protocol::Format;

fuzz_target!(|data: &[u8]| {
    if let Ok(typed) = peek(data, Format::MsgPack, 1 << 20) {
        let _ = ClientRequest::parse(&typed, 1000);
    }
    let _ = taskbus::auth::carried_token(data, Format::MsgPack);
});
