//! The worker endpoint's decoder (READY, DONE, FAIL ... in MessagePack) and the
//! worker's reader of the broker's messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskbus::protocol::decode::peek;
use taskbus::protocol::worker::{BrokerMessage, WorkerMessage};
use taskbus::protocol::Format;

fuzz_target!(|data: &[u8]| {
    if let Ok(typed) = peek(data, Format::MsgPack, 1 << 20) {
        let _ = WorkerMessage::parse(&typed);
    }
    let _ = BrokerMessage::parse(data, 1 << 20);
});
