//! The strict JSON parser: one top-level object, and a key seen twice is an error.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::error::DecodeError;

use super::{Limits, Object};

/// Parses a payload into a JSON object, refusing duplicate keys.
pub fn parse_object(bytes: &[u8], limits: &Limits) -> Result<Object, DecodeError> {
    if bytes.len() > limits.max_payload {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: limits.max_payload,
        });
    }
    let parsed: StrictObject = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => DecodeError::NotAnObject(e.to_string()),
        _ => DecodeError::NotJson(e.to_string()),
    })?;
    match parsed.duplicate {
        Some(key) => Err(DecodeError::DuplicateKey(key)),
        None => Ok(parsed.object),
    }
}

/// A top-level JSON object that remembers the first key it saw twice.
struct StrictObject {
    object: Object,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictObject, A::Error> {
                let mut object = Object::new();
                let mut duplicate = None;
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if object.contains_key(&key) {
                        duplicate.get_or_insert(key);
                    } else {
                        object.insert(key, value);
                    }
                }
                Ok(StrictObject { object, duplicate })
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}
