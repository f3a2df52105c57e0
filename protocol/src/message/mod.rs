//! The wire messages of Fed-BioMed v4.4 (messaging protocol "1"), typed and strictly validated.
//!
//! A payload is checked in this order, each step with its own [`DecodeError`](crate::DecodeError): size cap,
//! JSON object (no duplicate keys), `command`, `protocol_version`, then every field: present,
//! not extra, of its wire type, null only where the peer allows it.
//!
//! One job a file: [`command`](Command) is the catalogue of commands, `schema` the field
//! types and rules, `bodies` every message's fields, `direction` the two enums (requests,
//! node messages) with their decoding, `envelope` the `command` and `protocol_version` beside
//! a body, `strict` the duplicate-key parser, `fast` the byte scanner of the fast path.

use serde_json::{Map, Value};

use crate::version::Compatibility;

mod bodies;
mod command;
mod direction;
mod envelope;
mod fast;
mod schema;
mod strict;
#[cfg(test)]
mod tests;

pub use bodies::*;
pub use command::Command;
pub use direction::{NodeMessage, Request};
pub(crate) use envelope::{decode_body, encode_body};
pub use schema::{Field, Kind, WireMessage};
pub use strict::parse_object;

/// A JSON object, as the free-form fields (`metric`, `training_args`...) carry.
pub type Object = Map<String, Value>;

/// A sequence number, echoed by the replies to the commands that carry one.
pub type Sequence = u64;

/// Limits on incoming payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Payloads longer than this many bytes are refused before parsing.
    pub max_payload: usize,
}

impl Default for Limits {
    /// 1 MiB.
    fn default() -> Self {
        Limits {
            max_payload: 1 << 20,
        }
    }
}

/// A decoded message and how its protocol version compares with ours.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded<T> {
    /// The message.
    pub message: T,
    /// `Older` when the peer speaks an older compatible version: worth a warning.
    pub compatibility: Compatibility,
}
