//! The envelope: `command` and `protocol_version` beside a body, and the version rule
//! applied to what arrives.

use serde::Serialize;
use serde_json::Value;

use crate::error::DecodeError;
use crate::version::{Compatibility, ProtocolVersion, PROTOCOL_VERSION};

use super::schema::{describe_value, WireMessage};
use super::strict::parse_object;
use super::{Command, Limits, Object};

/// The body with the envelope fields beside it.
#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(flatten)]
    body: &'a T,
    command: &'static str,
    protocol_version: &'static str,
}

pub(super) fn encode<T: WireMessage>(message: &T) -> Vec<u8> {
    let envelope = Envelope {
        body: message,
        command: T::COMMAND.as_str(),
        protocol_version: PROTOCOL_VERSION,
    };
    // Cannot fail: every field is a string-keyed struct, map or plain value.
    serde_json::to_vec(&envelope).expect("wire messages always serialize")
}

pub(super) fn to_value<T: WireMessage>(message: &T) -> Value {
    let envelope = Envelope {
        body: message,
        command: T::COMMAND.as_str(),
        protocol_version: PROTOCOL_VERSION,
    };
    serde_json::to_value(envelope).expect("wire messages always serialize")
}

pub(super) fn judge_version(
    command: Command,
    version: Option<Value>,
) -> Result<Compatibility, DecodeError> {
    let text = match &version {
        None => None,
        Some(Value::String(text)) => Some(text.as_str()),
        Some(Value::Null) => {
            return Err(DecodeError::Null {
                command,
                field: "protocol_version",
            })
        }
        Some(other) => {
            return Err(DecodeError::WrongType {
                command,
                field: "protocol_version",
                expected: "a string",
                found: describe_value(other),
            })
        }
    };
    ProtocolVersion::OURS
        .judge(text)
        .map_err(|source| DecodeError::Version { command, source })
}

pub(super) fn take_command(object: &mut Object) -> Result<String, DecodeError> {
    match object.remove("command") {
        None => Err(DecodeError::MissingCommand),
        Some(Value::String(command)) => Ok(command),
        Some(_) => Err(DecodeError::CommandNotString),
    }
}

/// Size cap, strict JSON object, then the envelope fields taken out of it.
pub(super) fn envelope(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(String, Option<Value>, Object), DecodeError> {
    let mut object = parse_object(bytes, limits)?;
    let command = take_command(&mut object)?;
    let version = object.remove("protocol_version");
    Ok((command, version, object))
}

/// Decodes a payload as the one body `T`, by the schema path.
pub(crate) fn decode_body<T: WireMessage>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<super::Decoded<T>, DecodeError> {
    let (command, version, body) = envelope(bytes, limits)?;
    if command != T::COMMAND.as_str() {
        return Err(DecodeError::UnknownCommand(command));
    }
    let compatibility = judge_version(T::COMMAND, version)?;
    Ok(super::Decoded {
        message: T::from_object(body)?,
        compatibility,
    })
}

/// Encodes a body with its envelope.
pub(crate) fn encode_body<T: WireMessage>(message: &T) -> Vec<u8> {
    encode(message)
}
