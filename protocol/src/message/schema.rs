//! The schema of a message body: the JSON type of each field, the rules every field is
//! checked against, and the macro that writes a body's type, schema and fast path at once.

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::DecodeError;

use super::{Command, Decoded, Object};

/// The JSON type a field must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    String,
    /// `true` or `false`.
    Bool,
    /// A whole number that fits an `i64`.
    Integer,
    /// A whole number from 0 to 2^64-1.
    Unsigned,
    /// Any number.
    Number,
    /// A list of anything.
    List,
    /// A list of strings.
    StringList,
    /// An object.
    Object,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Bool => "a boolean",
            Kind::Integer => "an integer",
            Kind::Unsigned => "a non-negative integer below 2^64",
            Kind::Number => "a number",
            Kind::List => "a list",
            Kind::StringList => "a list of strings",
            Kind::Object => "an object",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            Kind::String => value.is_string(),
            Kind::Bool => value.is_boolean(),
            Kind::Integer => value.is_i64(),
            Kind::Unsigned => value.is_u64(),
            Kind::Number => value.is_number(),
            Kind::List => value.is_array(),
            Kind::StringList => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Kind::Object => value.is_object(),
        }
    }
}

pub(super) fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional or out-of-range number",
        Value::Number(n) if n.as_i64().is_some_and(|i| i < 0) => "a negative integer",
        Value::Number(n) if !n.is_i64() => "an integer above 2^63-1",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// One field of a message's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its name on the wire.
    pub name: &'static str,
    /// Its JSON type.
    pub kind: Kind,
    /// Whether the peer allows `null`.
    pub nullable: bool,
}

/// The wire type of a Rust field type.
pub(super) trait WireType {
    const KIND: Kind;
    const NULLABLE: bool = false;
}

macro_rules! wire_types {
    ($($ty:ty => $kind:ident),* $(,)?) => {
        $(impl WireType for $ty { const KIND: Kind = Kind::$kind; })*
    };
}
wire_types! {
    String => String, bool => Bool, i64 => Integer, u64 => Unsigned, f64 => Number,
    Vec<Value> => List, Vec<String> => StringList, Object => Object,
}

impl<T: WireType> WireType for Option<T> {
    const KIND: Kind = T::KIND;
    const NULLABLE: bool = true;
}

/// A message body: its command and its schema. `command` and `protocol_version`
/// travel beside the fields and are not part of them.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// The `command` it travels with.
    const COMMAND: Command;
    /// Every field, each required.
    const FIELDS: &'static [Field];

    /// The fast path: the whole payload straight into the type, `None` on any doubt; the
    /// schema path then gives the precise error.
    fn decode_fast(bytes: &[u8]) -> Option<Decoded<Self>>;

    /// Builds the message from an object whose `command` and `protocol_version`
    /// were already taken out, checking every field against [`Self::FIELDS`].
    fn from_object(body: Object) -> Result<Self, DecodeError> {
        let command = Self::COMMAND;
        for field in Self::FIELDS {
            match body.get(field.name) {
                None => {
                    return Err(DecodeError::MissingField {
                        command,
                        field: field.name,
                    })
                }
                Some(Value::Null) if field.nullable => {}
                Some(Value::Null) => {
                    return Err(DecodeError::Null {
                        command,
                        field: field.name,
                    })
                }
                Some(value) if !field.kind.accepts(value) => {
                    return Err(DecodeError::WrongType {
                        command,
                        field: field.name,
                        expected: field.kind.describe(),
                        found: describe_value(value),
                    })
                }
                Some(_) => {}
            }
        }
        if body.len() != Self::FIELDS.len() {
            let extra = body
                .keys()
                .find(|key| !Self::FIELDS.iter().any(|f| f.name == key.as_str()));
            if let Some(extra) = extra {
                return Err(DecodeError::ExtraField {
                    command,
                    field: extra.clone(),
                });
            }
        }
        serde_json::from_value(Value::Object(body)).map_err(|e| {
            // Unreachable once the schema matched; kept as an error, not a panic.
            DecodeError::NotAnObject(format!("{command}: {e}"))
        })
    }
}

macro_rules! messages {
    ($(
        $(#[$doc:meta])*
        $name:ident = $command:ident {
            $( $(#[$fdoc:meta])* $field:ident : $ty:ty, )*
        }
    )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $( $(#[$fdoc])* pub $field: $ty, )*
        }

        impl WireMessage for $name {
            const COMMAND: Command = Command::$command;
            const FIELDS: &'static [Field] = &[$(Field {
                name: stringify!($field),
                kind: <$ty as WireType>::KIND,
                nullable: <$ty as WireType>::NULLABLE,
            }),*];

            #[inline]
            fn decode_fast(bytes: &[u8]) -> Option<Decoded<Self>> {
                // Every field required (nullable ones too), nothing else allowed: what this
                // accepts, the schema accepts. The command and version, only compared, are
                // borrowed rather than allocated.
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Whole<'a> {
                    $( #[serde(deserialize_with = "crate::message::schema::required")] $field: $ty, )*
                    #[serde(borrow)]
                    command: std::borrow::Cow<'a, str>,
                    #[serde(borrow)]
                    protocol_version: Option<crate::message::schema::Text<'a>>,
                }
                let whole: Whole = serde_json::from_slice(bytes).ok()?;
                if whole.command != Command::$command.as_str() {
                    return None;
                }
                let compatibility = ProtocolVersion::OURS.judge(whole.protocol_version.as_ref().map(|v| v.0.as_ref())).ok()?;
                let message = $name { $( $field: whole.$field, )* };
                Some(Decoded { message, compatibility })
            }
        }
    )*};
}
pub(super) use messages;

/// Text borrowed from the payload unless it carries escapes. Serde borrows a `Cow` field
/// only when it is the field's whole type: inside an `Option`, it would allocate.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub(crate) std::borrow::Cow<'a, str>);

/// A field that must be present even when it may be null (serde lets a missing `Option`
/// default to `None` unless the field has its own deserializer).
pub(super) fn required<'de, D: de::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    T::deserialize(deserializer)
}
