//! The task body as the bus carries it: named MessagePack bytes, opaque to the broker.
//!
//! A body arrives as JSON or MessagePack and is converted once, at the edge, into
//! named MessagePack (the bytes Python's `msgpack` reads as a dict). The broker keeps,
//! stores and forwards those bytes as they are; it reads only what routing needs
//! (`topic` and `callback.topic`) with a visitor that builds no tree. Stages that need
//! the content decode it ([`Body::decode`], [`Body::to_value`]).

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// MessagePack `nil`: the body of a task that came without one.
const NIL: u8 = 0xc0;

/// A task body: one valid MessagePack value, shared (a clone is a reference count).
///
/// Invariant: the bytes are one whole MessagePack value (checked where they enter:
/// by the conversion from JSON or MessagePack, or by [`Body::check`] for bytes read
/// back from the store).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Body(Arc<[u8]>);

/// What routing reads from a body: the seed's `topic` and `callback.topic`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Routing {
    pub topic: Option<String>,
    pub callback_topic: Option<String>,
}

impl Default for Body {
    fn default() -> Self {
        Body(Arc::from(&[NIL][..]))
    }
}

impl Body {
    /// Wraps bytes that are already one MessagePack value (the store's own rows,
    /// checked with [`Body::check`] before they are handed out).
    pub fn from_packed_unchecked(bytes: Vec<u8>) -> Body {
        Body(Arc::from(bytes))
    }

    /// Takes MessagePack bytes after checking that they hold exactly one value.
    pub fn from_packed(bytes: Vec<u8>) -> Result<Body, String> {
        let body = Body::from_packed_unchecked(bytes);
        body.check()?;
        Ok(body)
    }

    /// Encodes a JSON value.
    pub fn from_value(value: &Value) -> Body {
        let bytes = rmp_serde::to_vec_named(value).expect("json values encode as msgpack");
        Body::from_packed_unchecked(bytes)
    }

    /// The body of any serializable value, as named MessagePack.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Body, String> {
        rmp_serde::to_vec_named(value)
            .map(Body::from_packed_unchecked)
            .map_err(|e| format!("body does not encode: {e}"))
    }

    /// The MessagePack bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Bytes of the body.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: the smallest body is one byte (`nil`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the body is MessagePack `nil` (a task sent without a body).
    pub fn is_nil(&self) -> bool {
        self.0[..] == [NIL]
    }

    /// Whether the bytes are exactly one MessagePack value. Walks them without
    /// allocating the values.
    pub fn check(&self) -> Result<(), String> {
        let mut cursor = std::io::Cursor::new(&self.0[..]);
        let mut deserializer = rmp_serde::Deserializer::new(&mut cursor);
        IgnoredAny::deserialize(&mut deserializer).map_err(|e| format!("unreadable body: {e}"))?;
        let used = cursor.position() as usize;
        if used != self.0.len() {
            return Err(format!(
                "unreadable body: {} bytes after the value",
                self.0.len() - used
            ));
        }
        Ok(())
    }

    /// Decodes the body into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, rmp_serde::decode::Error> {
        rmp_serde::from_slice(&self.0)
    }

    /// The body as a JSON value (for stages, tests and people; the broker never calls it).
    pub fn to_value(&self) -> Value {
        self.decode()
            .expect("a body holds one msgpack value by its invariant")
    }

    /// Reads `topic` and `callback.topic` without building the rest of the body. A body
    /// that is not a map, or whose fields are not strings, names no topic.
    pub fn routing(&self) -> Routing {
        let mut deserializer = rmp_serde::Deserializer::from_read_ref(&self.0[..]);
        deserializer
            .deserialize_any(RoutingVisitor { depth: 0 })
            .unwrap_or_default()
    }

    /// The same body with its top-level `topic` set to `topic` (the seed's envelope
    /// names its own topic; the broker keeps it true when it routes a child). Decodes
    /// the body, so the caller checks [`Body::routing`] first.
    pub fn with_topic(&self, topic: &str) -> Body {
        let mut value = self.to_value();
        if let Some(map) = value.as_object_mut() {
            map.insert("topic".into(), Value::String(topic.to_owned()));
        }
        Body::from_value(&value)
    }
}

impl From<Value> for Body {
    fn from(value: Value) -> Body {
        Body::from_value(&value)
    }
}

impl From<&Value> for Body {
    fn from(value: &Value) -> Body {
        Body::from_value(value)
    }
}

impl PartialEq<Value> for Body {
    fn eq(&self, other: &Value) -> bool {
        self.decode::<Value>().is_ok_and(|v| &v == other)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decode::<Value>() {
            Ok(value) => write!(f, "Body({value})"),
            Err(_) => write!(f, "Body(<{} unreadable bytes>)", self.0.len()),
        }
    }
}

/// Writes the body into any serializer (JSON for JSON clients) by transcoding, without
/// building a tree. The broker's MessagePack messages splice the bytes instead
/// (`protocol::tasks`).
impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut deserializer = rmp_serde::Deserializer::from_read_ref(&self.0[..]);
        serde_transcode::transcode(&mut deserializer, serializer)
            .map_err(|e| ser::Error::custom(format!("unreadable body: {e}")))
    }
}

/// Reads a body from any deserializer (a JSON or MessagePack message) straight into
/// named MessagePack bytes.
impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Body, D::Error> {
        let mut bytes = Vec::new();
        let mut serializer = rmp_serde::Serializer::new(&mut bytes).with_struct_map();
        serde_transcode::transcode(deserializer, &mut serializer).map_err(de::Error::custom)?;
        Ok(Body::from_packed_unchecked(bytes))
    }
}

/// Visits the top-level map for `topic` and `callback`, then `callback` for `topic`.
struct RoutingVisitor {
    depth: u8,
}

impl<'de> Visitor<'de> for RoutingVisitor {
    type Value = Routing;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Routing, A::Error> {
        let mut routing = Routing::default();
        while let Some(key) = map.next_key::<LenientStr>()? {
            match (key.0.as_deref(), self.depth) {
                (Some("topic"), _) => routing.topic = map.next_value::<LenientStr>()?.0,
                (Some("callback"), 0) => {
                    let callback = map.next_value_seed(RoutingVisitor { depth: 1 })?;
                    routing.callback_topic = callback.topic;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        routing.topic = routing.topic.filter(|t| !t.is_empty());
        routing.callback_topic = routing.callback_topic.filter(|t| !t.is_empty());
        Ok(routing)
    }

    // Anything that is not a map names no topic.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Routing, E> {
        Ok(Routing::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Routing, E> {
        Ok(Routing::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Routing, E> {
        Ok(Routing::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Routing, E> {
        Ok(Routing::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Routing, E> {
        Ok(Routing::default())
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Routing, E> {
        Ok(Routing::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Routing, E> {
        Ok(Routing::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Routing, E> {
        Ok(Routing::default())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Routing, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Routing::default())
    }
}

impl<'de> de::DeserializeSeed<'de> for RoutingVisitor {
    type Value = Routing;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Routing, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A string, or `None` for any other value (which is skipped whole).
struct LenientStr(Option<String>);

impl<'de> Deserialize<'de> for LenientStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LenientStr, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LenientStr, E> {
                Ok(LenientStr(Some(s.to_owned())))
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<LenientStr, E> {
                Ok(LenientStr(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientStr, E> {
                Ok(LenientStr(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<LenientStr, E> {
                Ok(LenientStr(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<LenientStr, E> {
                Ok(LenientStr(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<LenientStr, E> {
                Ok(LenientStr(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientStr, E> {
                Ok(LenientStr(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientStr, E> {
                Ok(LenientStr(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<LenientStr, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientStr, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientStr(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_msgpack_bodies_become_the_same_bytes() {
        let value = json!({"page": 1, "urls": ["a", "b"], "x": {"y": null, "z": 1.5}});
        let from_json: Body = serde_json::from_slice(value.to_string().as_bytes()).unwrap();
        let packed = rmp_serde::to_vec_named(&value).unwrap();
        let from_msgpack: Body = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(from_json.as_bytes(), &packed[..]);
        assert_eq!(from_msgpack.as_bytes(), &packed[..]);
        assert_eq!(from_json, value);
    }

    #[test]
    fn a_body_writes_itself_as_json_and_msgpack() {
        let value = json!({"a": [1, "two", {"three": false}]});
        let body = Body::from_value(&value);
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        let packed = rmp_serde::to_vec_named(&body).unwrap();
        assert_eq!(&packed[..], body.as_bytes());
    }

    #[test]
    fn routing_reads_topic_and_callback_topic_only() {
        let body = Body::from_value(&json!({
            "topic": "jm_crawl",
            "body": {"callback": {"topic": "deep, not the envelope's"}},
            "callback": {"topic": "parsing", "other": [1, 2]},
        }));
        assert_eq!(
            body.routing(),
            Routing {
                topic: Some("jm_crawl".into()),
                callback_topic: Some("parsing".into())
            }
        );
        for odd in [
            json!([1, 2]),
            json!("text"),
            json!(null),
            json!({"topic": 5, "callback": "x"}),
            json!({"callback": {"topic": ""}}),
        ] {
            assert_eq!(
                Body::from_value(&odd).routing(),
                Routing::default(),
                "{odd}"
            );
        }
    }

    #[test]
    fn with_topic_rewrites_only_the_top_level_topic() {
        let body = Body::from_value(&json!({"topic": "a", "n": 1}));
        assert_eq!(body.with_topic("b"), json!({"topic": "b", "n": 1}));
    }

    #[test]
    fn check_refuses_truncated_and_trailing_bytes() {
        let packed = rmp_serde::to_vec_named(&json!({"a": "bcd"})).unwrap();
        assert!(Body::from_packed(packed.clone()).is_ok());
        assert!(Body::from_packed(packed[..packed.len() - 1].to_vec()).is_err());
        let mut trailing = packed;
        trailing.push(0x01);
        assert!(Body::from_packed(trailing).is_err());
        assert!(Body::from_packed(vec![0xc1]).is_err());
    }

    #[test]
    fn a_missing_body_is_nil() {
        assert!(Body::default().is_nil());
        assert_eq!(Body::default(), Value::Null);
    }
}
