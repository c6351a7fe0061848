//! Reading a request or message straight from its bytes, in two passes and without a
//! tree: the first pass checks the syntax and reads only `"type"`, the second
//! deserializes the fields of that type. Task bodies inside go from the wire to
//! MessagePack bytes ([`crate::body::Body`]) without ever being a `Value`.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{code, Format, ProtocolError};

/// A body checked for size and syntax, with its `type`.
#[derive(Debug)]
pub struct Typed<'a> {
    pub kind: String,
    pub format: Format,
    body: &'a [u8],
}

impl Typed<'_> {
    /// Deserializes the fields of this request (the `type` field is ignored).
    pub fn fields<T: DeserializeOwned>(&self) -> Result<T, ProtocolError> {
        let kind = &self.kind;
        match self.format {
            Format::Json => serde_json::from_slice(self.body)
                .map_err(|e| ProtocolError::new(code::BAD_REQUEST, format!("{kind}: {e}"))),
            Format::MsgPack => rmp_serde::from_slice(self.body)
                .map_err(|e| ProtocolError::new(code::BAD_REQUEST, format!("{kind}: {e}"))),
        }
    }
}

/// Checks `body` (size, syntax, one map with a string `type`) and returns its type.
pub fn peek(body: &[u8], format: Format, max_bytes: usize) -> Result<Typed<'_>, ProtocolError> {
    if body.len() > max_bytes {
        return Err(ProtocolError::new(
            code::TOO_LARGE,
            format!(
                "body of {} bytes is over max_message_bytes ({max_bytes})",
                body.len()
            ),
        ));
    }
    let peeked = match format {
        Format::Json => {
            let mut deserializer = serde_json::Deserializer::from_slice(body);
            let peeked = deserializer
                .deserialize_any(TypeVisitor)
                .map_err(|e| malformed("json", e))?;
            deserializer.end().map_err(|e| malformed("json", e))?;
            peeked
        }
        Format::MsgPack => {
            let mut cursor = std::io::Cursor::new(body);
            let mut deserializer = rmp_serde::Deserializer::new(&mut cursor);
            let peeked = (&mut deserializer)
                .deserialize_any(TypeVisitor)
                .map_err(|e| malformed("msgpack", e))?;
            let used = cursor.position() as usize;
            if used != body.len() {
                return Err(ProtocolError::new(
                    code::MALFORMED,
                    format!(
                        "invalid msgpack: {} bytes after the message",
                        body.len() - used
                    ),
                ));
            }
            peeked
        }
    };
    let kind = match peeked {
        Peeked::NotAMap(what) => {
            return Err(ProtocolError::new(
                code::BAD_REQUEST,
                format!("expected a map with a \"type\" field, got {what}"),
            ))
        }
        Peeked::Map(None) => {
            return Err(ProtocolError::new(
                code::BAD_REQUEST,
                "missing field \"type\"",
            ))
        }
        Peeked::Map(Some(Err(what))) => {
            return Err(ProtocolError::new(
                code::UNKNOWN_TYPE,
                format!("\"type\" must be a string, got {what}"),
            ))
        }
        Peeked::Map(Some(Ok(kind))) => kind,
    };
    Ok(Typed { kind, format, body })
}

fn malformed(format: &str, error: impl fmt::Display) -> ProtocolError {
    ProtocolError::new(code::MALFORMED, format!("invalid {format}: {error}"))
}

/// What the first pass saw.
enum Peeked {
    NotAMap(&'static str),
    /// The map's `type`: absent, not a string (what it was), or the string.
    Map(Option<Result<String, &'static str>>),
}

struct TypeVisitor;

impl<'de> Visitor<'de> for TypeVisitor {
    type Value = Peeked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map with a \"type\" field")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Peeked, A::Error> {
        let mut kind = None;
        while let Some(key) = map.next_key::<Key>()? {
            if key.0 && kind.is_none() {
                kind = Some(map.next_value::<TypeValue>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Peeked::Map(kind))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Peeked, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Peeked::NotAMap("a list"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Peeked, E> {
        Ok(Peeked::NotAMap("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Peeked, E> {
        Ok(Peeked::NotAMap("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Peeked, E> {
        Ok(Peeked::NotAMap("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Peeked, E> {
        Ok(Peeked::NotAMap("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Peeked, E> {
        Ok(Peeked::NotAMap("a string"))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Peeked, E> {
        Ok(Peeked::NotAMap("binary data"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Peeked, E> {
        Ok(Peeked::NotAMap("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Peeked, E> {
        Ok(Peeked::NotAMap("null"))
    }
}

/// A map key: whether it is the string `"type"` (other keys are skipped whole).
struct Key(bool);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        deserializer
            .deserialize_any(ValueKind)
            .map(|kind| Key(matches!(kind, Ok(s) if s == "type")))
    }
}

/// The `type` value: its string, or what it was instead.
struct TypeValue(Result<String, &'static str>);

impl<'de> de::Deserialize<'de> for TypeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TypeValue, D::Error> {
        deserializer.deserialize_any(ValueKind).map(TypeValue)
    }
}

/// Reads any value: a string is kept, anything else is skipped and named.
struct ValueKind;

impl<'de> Visitor<'de> for ValueKind {
    type Value = Result<String, &'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Ok(s.to_owned()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(Err("binary data"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err("null"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Err("a map"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;
    use serde_json::json;

    fn peek_both(value: &serde_json::Value) -> Vec<Result<String, ProtocolError>> {
        [Format::Json, Format::MsgPack]
            .into_iter()
            .map(|format| {
                let bytes = encode(format, value);
                peek(&bytes, format, 1 << 20).map(|t| t.kind)
            })
            .collect()
    }

    #[test]
    fn the_type_is_read_wherever_it_stands() {
        for result in
            peek_both(&json!({"topic": "t", "body": {"type": "inner"}, "type": "put_task"}))
        {
            assert_eq!(result.unwrap(), "put_task");
        }
    }

    #[test]
    fn a_missing_or_odd_type_is_named() {
        for result in peek_both(&json!({"topic": "t"})) {
            assert_eq!(result.unwrap_err().code, code::BAD_REQUEST);
        }
        for result in peek_both(&json!({"type": 5})) {
            let error = result.unwrap_err();
            assert_eq!(error.code, code::UNKNOWN_TYPE);
            assert!(error.message.contains("a number"), "{}", error.message);
        }
        for result in peek_both(&json!([1, 2])) {
            let error = result.unwrap_err();
            assert_eq!(error.code, code::BAD_REQUEST);
            assert!(error.message.contains("a list"), "{}", error.message);
        }
    }

    #[test]
    fn syntax_errors_size_and_trailing_bytes_are_malformed_or_too_large() {
        assert_eq!(
            peek(b"{\"type\": ", Format::Json, 100).unwrap_err().code,
            code::MALFORMED
        );
        assert_eq!(
            peek(b"{\"type\": \"x\"} x", Format::Json, 100)
                .unwrap_err()
                .code,
            code::MALFORMED
        );
        let mut packed = encode(Format::MsgPack, &json!({"type": "x"})).to_vec();
        packed.push(0);
        assert_eq!(
            peek(&packed, Format::MsgPack, 100).unwrap_err().code,
            code::MALFORMED
        );
        assert_eq!(
            peek(&[0xc1], Format::MsgPack, 100).unwrap_err().code,
            code::MALFORMED
        );
        assert_eq!(
            peek(b"{\"type\": \"x\"}", Format::Json, 4)
                .unwrap_err()
                .code,
            code::TOO_LARGE
        );
    }
}

/// A `T` read only from a map (an object): serde's derived structs also take a
/// sequence of their fields in order, which no client means when it sends a list.
#[derive(Debug, Clone, PartialEq)]
pub struct FromMap<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for FromMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = FromMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FromMap<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(FromMap)
            }
        }
        deserializer.deserialize_map(Fields(std::marker::PhantomData))
    }
}
