//! The wire, pure: frames in, typed messages out, and back. No I/O, no clock.
//!
//! Bodies are MessagePack maps (named, so Python's `msgpack` reads dicts) or, on the
//! client endpoint, JSON: a body whose first non-blank byte is `{` or `[` is JSON and
//! is answered in JSON. `docs/PROTOCOL.md` is the reference for other languages.

pub mod client;
pub mod decode;
pub mod worker;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    MsgPack,
}

impl Format {
    /// JSON when the first non-blank byte is `{` or `[`, else MessagePack.
    pub fn detect(body: &[u8]) -> Format {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => Format::Json,
            _ => Format::MsgPack,
        }
    }
}

/// A request or message that cannot be served. `code` is stable and meant for
/// programs; `message` names what was wrong, for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub code: &'static str,
    pub message: String,
}

/// Stable error codes of error replies.
pub mod code {
    /// The body is not valid JSON or MessagePack.
    pub const MALFORMED: &str = "malformed";
    /// The frames around the body are not as the protocol says.
    pub const BAD_FRAMES: &str = "bad_frames";
    /// The body is larger than `max_message_bytes`.
    pub const TOO_LARGE: &str = "too_large";
    /// The `type` field is missing, not a string, or names no request.
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    /// A field is missing, has the wrong type, or a value is out of range.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The topic is not known to the broker (with `strict_topics`).
    pub const UNKNOWN_TOPIC: &str = "unknown_topic";
    /// No task has that guid.
    pub const NOT_FOUND: &str = "not_found";
    /// The task exists but is not leased, so it cannot be acked or nacked.
    pub const NOT_LEASED: &str = "not_leased";
    /// The broker's store refused the change; nothing was accepted.
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
    /// The broker is shutting down and takes no new work.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// A DONE's next-stage envelope names no topic; the task was not finished.
    pub const UNROUTABLE: &str = "unroutable";
}

impl ProtocolError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }

    /// The error reply body: `{"error": message, "code": code}`.
    pub fn to_value(&self) -> Value {
        serde_json::json!({ "error": self.message, "code": self.code })
    }
}

/// Decodes a body into a generic value, refusing bodies over `max_bytes`.
pub fn decode_value(body: &[u8], max_bytes: usize) -> Result<(Value, Format), ProtocolError> {
    let format = Format::detect(body);
    if body.len() > max_bytes {
        return Err(ProtocolError::new(
            code::TOO_LARGE,
            format!(
                "body of {} bytes is over max_message_bytes ({max_bytes})",
                body.len()
            ),
        ));
    }
    let value = match format {
        Format::Json => serde_json::from_slice(body)
            .map_err(|e| ProtocolError::new(code::MALFORMED, format!("invalid json: {e}")))?,
        Format::MsgPack => rmp_serde::from_slice(body)
            .map_err(|e| ProtocolError::new(code::MALFORMED, format!("invalid msgpack: {e}")))?,
    };
    Ok((value, format))
}

/// Encodes a reply that holds task bodies: a body whose map keys are not strings
/// cannot be written as JSON, and that is an error reply, not a panic.
pub fn try_encode<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
) -> Result<Bytes, ProtocolError> {
    let bytes = match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| {
            ProtocolError::new(
                code::MALFORMED,
                format!("reply cannot be written as JSON ({e}); ask in MessagePack"),
            )
        })?,
        Format::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| {
            ProtocolError::new(code::MALFORMED, format!("reply cannot be encoded: {e}"))
        })?,
    };
    Ok(Bytes::from(bytes))
}

/// Encodes `value` in `format` (named MessagePack maps).
pub fn encode<T: Serialize + ?Sized>(format: Format, value: &T) -> Bytes {
    let bytes = match format {
        Format::Json => serde_json::to_vec(value).expect("json encoding of a serializable value"),
        Format::MsgPack => {
            rmp_serde::to_vec_named(value).expect("msgpack encoding of a serializable value")
        }
    };
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_is_detected_from_the_first_non_blank_byte() {
        assert_eq!(Format::detect(b"  {\"a\":1}"), Format::Json);
        assert_eq!(Format::detect(b"\n[1]"), Format::Json);
        let packed = rmp_serde::to_vec_named(&json!({"a": 1})).unwrap();
        assert_eq!(Format::detect(&packed), Format::MsgPack);
    }

    #[test]
    fn values_round_trip_in_both_formats() {
        let value = json!({"type": "get_task", "topic": "t", "count": 3, "x": [1.5, null, true]});
        for format in [Format::Json, Format::MsgPack] {
            let bytes = encode(format, &value);
            let (back, detected) = decode_value(&bytes, 1 << 20).unwrap();
            assert_eq!(back, value);
            assert_eq!(detected, format);
        }
    }

    #[test]
    fn oversize_and_garbage_bodies_are_typed_errors() {
        let err = decode_value(b"{\"a\": 1}", 4).unwrap_err();
        assert_eq!(err.code, code::TOO_LARGE);
        assert_eq!(
            decode_value(b"{oops", 100).unwrap_err().code,
            code::MALFORMED
        );
        assert_eq!(
            decode_value(&[0xc1], 100).unwrap_err().code,
            code::MALFORMED
        );
    }
}
