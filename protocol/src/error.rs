//! Typed errors: why a payload or a submission was refused.

use crate::message::Command;
use crate::topic::TargetError;
use crate::version::VersionError;

/// Why an incoming payload was refused. Each names the rule broken and, once the
/// command is known, the command and the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Over the size cap; refused before parsing.
    #[error("payload of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The configured cap.
        limit: usize,
    },
    /// Not JSON at all: bad syntax, invalid UTF-8, truncated, nested too deep.
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("payload is not a JSON object: {0}")]
    NotAnObject(String),
    /// The same key twice in the object.
    #[error("key `{0}` appears twice")]
    DuplicateKey(String),
    /// No `command` field.
    #[error("message has no `command` field")]
    MissingCommand,
    /// A `command` that is not a string.
    #[error("`command` must be a string")]
    CommandNotString,
    /// A command this side of the protocol does not take.
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    /// A protocol version we cannot speak.
    #[error("`{command}`: protocol_version: {source}")]
    Version {
        /// The message's command.
        command: Command,
        /// How the version is off.
        source: VersionError,
    },
    /// A required field is absent.
    #[error("`{command}`: missing field `{field}`")]
    MissingField {
        /// The message's command.
        command: Command,
        /// The field.
        field: &'static str,
    },
    /// A field the message does not have.
    #[error("`{command}`: unexpected field `{field}`")]
    ExtraField {
        /// The message's command.
        command: Command,
        /// The field.
        field: String,
    },
    /// A field of the wrong JSON type.
    #[error("`{command}`: field `{field}` must be {expected}, not {found}")]
    WrongType {
        /// The message's command.
        command: Command,
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        found: &'static str,
    },
    /// A field whose value is not one the message allows.
    #[error("`{command}`: field `{field}` must be {expected}, not `{found}`")]
    WrongValue {
        /// The message's command.
        command: Command,
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        found: String,
    },
    /// A message on a topic that is not its own (a node's status on another node's topic).
    #[error("`{command}` for `{node_id}` on topic `{topic}`")]
    WrongTopic {
        /// The message's command.
        command: Command,
        /// The node it names.
        node_id: String,
        /// Where it came.
        topic: String,
    },
    /// `null` where the peer does not allow it.
    #[error("`{command}`: field `{field}` must not be null")]
    Null {
        /// The message's command.
        command: Command,
        /// The field.
        field: &'static str,
    },
}

impl DecodeError {
    /// The command of the refused message, when it was read.
    pub fn command(&self) -> Option<Command> {
        match self {
            DecodeError::Version { command, .. }
            | DecodeError::MissingField { command, .. }
            | DecodeError::ExtraField { command, .. }
            | DecodeError::WrongType { command, .. }
            | DecodeError::Null { command, .. }
            | DecodeError::WrongValue { command, .. }
            | DecodeError::WrongTopic { command, .. } => Some(*command),
            _ => None,
        }
    }
}

/// Why a request could not be submitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The target cannot be published to.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The encoded request is over the payload limit, which peers apply too.
    #[error("the request is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Its size encoded.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A kept sequence number that a request in flight already uses.
    #[error("sequence {0} is already used by a request in flight")]
    SequenceInUse(u64),
}
