//! The two directions: [`Request`] (researcher to nodes) and [`NodeMessage`] (nodes to
//! researcher), each decoded by the fast path first and the schema path when in doubt.

use serde_json::Value;

use crate::error::DecodeError;

use super::bodies::*;
use super::envelope::{encode, envelope, judge_version, take_command, to_value};
use super::fast::command_hint;
use super::schema::WireMessage;
use super::{Command, Decoded, Limits, Object, Sequence};

/// A variant's field: the message, or the message boxed.
macro_rules! field {
    ($ty:ty) => { $ty };
    ($ty:ty, boxed) => { Box<$ty> };
}

macro_rules! directions {
    ($(
        $(#[$doc:meta])*
        $enum:ident { $( $(#[$vdoc:meta])* $variant:ident($ty:ty $(, $boxed:ident)?), )* }
    )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $enum {
            $( $(#[$vdoc])* $variant(field!($ty $(, $boxed)?)), )*
        }

        impl $enum {
            /// Its `command`.
            pub fn command(&self) -> Command {
                match self { $( $enum::$variant(_) => <$ty>::COMMAND, )* }
            }

            /// Decodes and validates a payload, as Fed-BioMed does.
            pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded<Self>, DecodeError> {
                // Only an object can take the fast path: serde would read a struct from an array too.
                if bytes.len() <= limits.max_payload && bytes.trim_ascii_start().starts_with(b"{") {
                    if let Some(hint) = command_hint(bytes) {
                        $( if hint == <$ty>::COMMAND.as_str() {
                            if let Some(decoded) = <$ty>::decode_fast(bytes) {
                                return Ok(Decoded { message: $enum::$variant(decoded.message.into()), compatibility: decoded.compatibility });
                            }
                        } )*
                    }
                }
                Self::decode_schema(bytes, limits)
            }

            /// The schema path: every rule checked in turn, each with its own error.
            /// Decodes through the schema path alone, every rule in turn: what
            /// [`decode`](Self::decode) gives, more slowly. For tests and fuzzing.
            pub fn decode_schema(bytes: &[u8], limits: &Limits) -> Result<Decoded<Self>, DecodeError> {
                let (command_text, version, body) = envelope(bytes, limits)?;
                $( if command_text == <$ty>::COMMAND.as_str() {
                    let compatibility = judge_version(<$ty>::COMMAND, version)?;
                    let message = $enum::$variant(<$ty>::from_object(body)?.into());
                    return Ok(Decoded { message, compatibility });
                } )*
                Err(DecodeError::UnknownCommand(command_text))
            }

            /// Encodes it with `command` and `protocol_version`.
            pub fn encode(&self) -> Vec<u8> {
                match self { $( $enum::$variant(m) => encode::<$ty>(m), )* }
            }

            /// The JSON object that travels, with `command` and `protocol_version`.
            pub fn to_value(&self) -> Value {
                match self { $( $enum::$variant(m) => to_value::<$ty>(m), )* }
            }

            /// Builds the message from a JSON object (with `command`), as `send_message`
            /// takes it; `protocol_version` may be absent and is then ours.
            pub fn from_value(mut object: Object) -> Result<Self, DecodeError> {
                let command_text = take_command(&mut object)?;
                let version = object.remove("protocol_version");
                $( if command_text == <$ty>::COMMAND.as_str() {
                    if let Some(version) = version {
                        judge_version(<$ty>::COMMAND, Some(version))?;
                    }
                    return Ok($enum::$variant(<$ty>::from_object(object)?.into()));
                } )*
                Err(DecodeError::UnknownCommand(command_text))
            }
        }

        $( impl From<$ty> for $enum {
            fn from(message: $ty) -> Self { $enum::$variant(message.into()) }
        } )*
    )*};
}

directions! {
    /// A message from the researcher to nodes.
    // A request is built, encoded and dropped: its size costs little.
    #[allow(clippy::large_enum_variant)]
    Request {
        /// `ping`.
        Ping(PingRequest),
        /// `list`.
        List(ListRequest),
        /// `search`.
        Search(SearchRequest),
        /// `approval`.
        Approval(ApprovalRequest),
        /// `training-plan-status`.
        TrainingPlanStatus(TrainingPlanStatusRequest),
        /// `train`.
        Train(TrainRequest),
        /// `secagg`.
        Secagg(SecaggRequest),
        /// `secagg-delete`.
        SecaggDelete(SecaggDeleteRequest),
    }

    /// A message from a node to the researcher: a reply, a log, an error or a scalar. The
    /// rare large ones are boxed: a request keeps every reply, and moves each on the way in.
    NodeMessage {
        /// `pong`.
        Pong(PingReply),
        /// `list`.
        List(ListReply),
        /// `search`.
        Search(SearchReply),
        /// `approval`.
        Approval(ApprovalReply),
        /// `training-plan-status`.
        TrainingPlanStatus(TrainingPlanStatusReply, boxed),
        /// `train`.
        Train(TrainReply, boxed),
        /// `secagg`.
        Secagg(SecaggReply, boxed),
        /// `secagg-delete`.
        SecaggDelete(SecaggDeleteReply, boxed),
        /// `log`.
        Log(LogMessage),
        /// `error`.
        Error(ErrorMessage),
        /// `add_scalar`.
        AddScalar(AddScalarMessage, boxed),
    }
}

impl Request {
    /// A `ping`; the core fills in the researcher id and sequence.
    pub fn ping() -> Self {
        Request::Ping(PingRequest {
            researcher_id: String::new(),
            sequence: 0,
        })
    }

    /// A `list`; the core fills in the researcher id.
    pub fn list() -> Self {
        Request::List(ListRequest {
            researcher_id: String::new(),
        })
    }

    /// A `search` for datasets carrying every one of `tags`.
    pub fn search(tags: Vec<String>) -> Self {
        Request::Search(SearchRequest {
            researcher_id: String::new(),
            tags,
        })
    }

    /// An `approval` of the plan at `training_plan_url`.
    pub fn approval(description: impl Into<String>, training_plan_url: impl Into<String>) -> Self {
        Request::Approval(ApprovalRequest {
            researcher_id: String::new(),
            description: description.into(),
            sequence: 0,
            training_plan_url: training_plan_url.into(),
        })
    }

    /// The researcher id it carries.
    pub fn researcher_id(&self) -> &str {
        match self {
            Request::Ping(m) => &m.researcher_id,
            Request::List(m) => &m.researcher_id,
            Request::Search(m) => &m.researcher_id,
            Request::Approval(m) => &m.researcher_id,
            Request::TrainingPlanStatus(m) => &m.researcher_id,
            Request::Train(m) => &m.researcher_id,
            Request::Secagg(m) => &m.researcher_id,
            Request::SecaggDelete(m) => &m.researcher_id,
        }
    }

    /// Sets the researcher id it carries.
    pub fn set_researcher_id(&mut self, id: &str) {
        let slot = match self {
            Request::Ping(m) => &mut m.researcher_id,
            Request::List(m) => &mut m.researcher_id,
            Request::Search(m) => &mut m.researcher_id,
            Request::Approval(m) => &mut m.researcher_id,
            Request::TrainingPlanStatus(m) => &mut m.researcher_id,
            Request::Train(m) => &mut m.researcher_id,
            Request::Secagg(m) => &mut m.researcher_id,
            Request::SecaggDelete(m) => &mut m.researcher_id,
        };
        id.clone_into(slot);
    }

    /// The sequence field, for the commands that carry one.
    pub fn sequence_mut(&mut self) -> Option<&mut Sequence> {
        match self {
            Request::Ping(m) => Some(&mut m.sequence),
            Request::Approval(m) => Some(&mut m.sequence),
            Request::Secagg(m) => Some(&mut m.sequence),
            Request::SecaggDelete(m) => Some(&mut m.sequence),
            _ => None,
        }
    }

    /// The sequence, for the commands that carry one.
    pub fn sequence(&self) -> Option<Sequence> {
        match self {
            Request::Ping(m) => Some(m.sequence),
            Request::Approval(m) => Some(m.sequence),
            Request::Secagg(m) => Some(m.sequence),
            Request::SecaggDelete(m) => Some(m.sequence),
            _ => None,
        }
    }

    /// The job id, for the commands whose replies echo one instead of a sequence.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Request::TrainingPlanStatus(m) => Some(&m.job_id),
            Request::Train(m) => Some(&m.job_id),
            _ => None,
        }
    }
}

impl NodeMessage {
    /// The researcher id it is addressed to.
    pub fn researcher_id(&self) -> &str {
        match self {
            NodeMessage::Pong(m) => &m.researcher_id,
            NodeMessage::List(m) => &m.researcher_id,
            NodeMessage::Search(m) => &m.researcher_id,
            NodeMessage::Approval(m) => &m.researcher_id,
            NodeMessage::TrainingPlanStatus(m) => &m.researcher_id,
            NodeMessage::Train(m) => &m.researcher_id,
            NodeMessage::Secagg(m) => &m.researcher_id,
            NodeMessage::SecaggDelete(m) => &m.researcher_id,
            NodeMessage::Log(m) => &m.researcher_id,
            NodeMessage::Error(m) => &m.researcher_id,
            NodeMessage::AddScalar(m) => &m.researcher_id,
        }
    }

    /// The node that sent it.
    pub fn node_id(&self) -> &str {
        match self {
            NodeMessage::Pong(m) => &m.node_id,
            NodeMessage::List(m) => &m.node_id,
            NodeMessage::Search(m) => &m.node_id,
            NodeMessage::Approval(m) => &m.node_id,
            NodeMessage::TrainingPlanStatus(m) => &m.node_id,
            NodeMessage::Train(m) => &m.node_id,
            NodeMessage::Secagg(m) => &m.node_id,
            NodeMessage::SecaggDelete(m) => &m.node_id,
            NodeMessage::Log(m) => &m.node_id,
            NodeMessage::Error(m) => &m.node_id,
            NodeMessage::AddScalar(m) => &m.node_id,
        }
    }

    /// The echoed sequence, for the replies that carry one.
    pub fn sequence(&self) -> Option<Sequence> {
        match self {
            NodeMessage::Pong(m) => Some(m.sequence),
            NodeMessage::Approval(m) => Some(m.sequence),
            NodeMessage::Secagg(m) => Some(m.sequence),
            NodeMessage::SecaggDelete(m) => Some(m.sequence),
            _ => None,
        }
    }

    /// The echoed job id, for the replies that carry one instead of a sequence.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            NodeMessage::TrainingPlanStatus(m) => Some(&m.job_id),
            NodeMessage::Train(m) => Some(&m.job_id),
            _ => None,
        }
    }

    /// `success`, for replies; `None` for logs, errors and scalars.
    pub fn success(&self) -> Option<bool> {
        match self {
            NodeMessage::Pong(m) => Some(m.success),
            NodeMessage::List(m) => Some(m.success),
            NodeMessage::Search(m) => Some(m.success),
            NodeMessage::Approval(m) => Some(m.success),
            NodeMessage::TrainingPlanStatus(m) => Some(m.success),
            NodeMessage::Train(m) => Some(m.success),
            NodeMessage::Secagg(m) => Some(m.success),
            NodeMessage::SecaggDelete(m) => Some(m.success),
            NodeMessage::Log(_) | NodeMessage::Error(_) | NodeMessage::AddScalar(_) => None,
        }
    }

    /// Whether it answers a request (as opposed to a log, an error or a scalar).
    pub fn is_reply(&self) -> bool {
        self.success().is_some()
    }
}
