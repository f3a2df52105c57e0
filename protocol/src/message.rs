//! The wire messages of Fed-BioMed v4.4 (messaging protocol "1"), typed and strictly validated.
//!
//! A payload is checked in this order, each step with its own [`DecodeError`]: size cap,
//! JSON object (no duplicate keys), `command`, `protocol_version`, then every field: present,
//! not extra, of its wire type, null only where the peer allows it.

use std::fmt;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::DecodeError;
use crate::version::{Compatibility, ProtocolVersion, PROTOCOL_VERSION};

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

/// Every `command` of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Command {
    /// `ping` (request).
    Ping,
    /// `pong` (reply to `ping`).
    Pong,
    /// `list` (request and reply).
    List,
    /// `search` (request and reply).
    Search,
    /// `approval` (request and reply).
    Approval,
    /// `training-plan-status` (request and reply).
    TrainingPlanStatus,
    /// `train` (request and reply).
    Train,
    /// `secagg` (request and reply).
    Secagg,
    /// `secagg-delete` (request and reply).
    SecaggDelete,
    /// `log` (node -> researcher).
    Log,
    /// `error` (node -> researcher).
    Error,
    /// `add_scalar` (node -> researcher, monitoring).
    AddScalar,
}

impl Command {
    /// Every command, requests first.
    pub const ALL: [Command; 12] = [
        Command::Ping,
        Command::List,
        Command::Search,
        Command::Approval,
        Command::TrainingPlanStatus,
        Command::Train,
        Command::Secagg,
        Command::SecaggDelete,
        Command::Pong,
        Command::Log,
        Command::Error,
        Command::AddScalar,
    ];

    /// The command as it travels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Pong => "pong",
            Command::List => "list",
            Command::Search => "search",
            Command::Approval => "approval",
            Command::TrainingPlanStatus => "training-plan-status",
            Command::Train => "train",
            Command::Secagg => "secagg",
            Command::SecaggDelete => "secagg-delete",
            Command::Log => "log",
            Command::Error => "error",
            Command::AddScalar => "add_scalar",
        }
    }

    /// The command named `text`, if any.
    pub fn parse(text: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The command of the reply to this request: `pong` for `ping`, else the same.
    pub const fn reply(self) -> Command {
        match self {
            Command::Ping => Command::Pong,
            other => other,
        }
    }

    /// Whether requests and replies of this command carry a `sequence`.
    pub const fn has_sequence(self) -> bool {
        matches!(
            self,
            Command::Ping
                | Command::Pong
                | Command::Approval
                | Command::Secagg
                | Command::SecaggDelete
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

fn describe_value(value: &Value) -> &'static str {
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
trait WireType {
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

            fn decode_fast(bytes: &[u8]) -> Option<Decoded<Self>> {
                // Every field required (nullable ones too), nothing else allowed: what this
                // accepts, the schema accepts.
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Whole {
                    $( #[serde(deserialize_with = "required")] $field: $ty, )*
                    command: String,
                    protocol_version: Option<String>,
                }
                let whole: Whole = serde_json::from_slice(bytes).ok()?;
                if whole.command != Command::$command.as_str() {
                    return None;
                }
                let compatibility = ProtocolVersion::OURS.judge(whole.protocol_version.as_deref()).ok()?;
                let message = $name { $( $field: whole.$field, )* };
                Some(Decoded { message, compatibility })
            }
        }
    )*};
}

/// A field that must be present even when it may be null (serde lets a missing `Option`
/// default to `None` unless the field has its own deserializer).
fn required<'de, D: de::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    T::deserialize(deserializer)
}

/// The value of the first `"command"` key, when it is a plain string: a hint of the message's
/// type for the fast path, which checks it again.
fn command_hint(bytes: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"command\"";
    let at = bytes.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &bytes[at..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start()
        .strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"')
        .then(|| std::str::from_utf8(&rest[..end]).ok())
        .flatten()
}

messages! {
    /// `ping`: is anyone there?
    PingRequest = Ping {
        /// The researcher asking.
        researcher_id: String,
        /// Echoed by the `pong`.
        sequence: Sequence,
    }
    /// `list`: every dataset of the node.
    ListRequest = List {
        /// The researcher asking.
        researcher_id: String,
    }
    /// `search`: the datasets that carry every one of these tags.
    SearchRequest = Search {
        /// The researcher asking.
        researcher_id: String,
        /// Tags a dataset must all carry.
        tags: Vec<String>,
    }
    /// `approval`: download this training plan and register it for approval.
    ApprovalRequest = Approval {
        /// The researcher asking.
        researcher_id: String,
        /// Shown to the node's operator.
        description: String,
        /// Echoed by the reply.
        sequence: Sequence,
        /// Where the node downloads the plan.
        training_plan_url: String,
    }
    /// `training-plan-status`: is this plan approved on the node?
    TrainingPlanStatusRequest = TrainingPlanStatus {
        /// The researcher asking.
        researcher_id: String,
        /// The job it is asked for.
        job_id: String,
        /// Where the node downloads the plan.
        training_plan_url: String,
    }
    /// `train`: run one round of training.
    TrainRequest = Train {
        /// The researcher asking.
        researcher_id: String,
        /// The job.
        job_id: String,
        /// Where the node downloads the parameters.
        params_url: String,
        /// Training arguments.
        training_args: Object,
        /// The dataset to train on.
        dataset_id: String,
        /// Whether to train (or only test).
        training: bool,
        /// Model arguments.
        model_args: Object,
        /// Where the node downloads the plan.
        training_plan_url: String,
        /// The plan's class name.
        training_plan_class: String,
        /// Secure aggregation: server key context.
        secagg_servkey_id: Option<String>,
        /// Secure aggregation: biprime context.
        secagg_biprime_id: Option<String>,
        /// Secure aggregation: random value.
        secagg_random: Option<f64>,
        /// Secure aggregation: clipping range.
        secagg_clipping_range: Option<i64>,
        /// The round number.
        round: i64,
        /// Aggregator arguments.
        aggregator_args: Object,
    }
    /// `secagg`: set up a secure aggregation context.
    SecaggRequest = Secagg {
        /// The researcher asking.
        researcher_id: String,
        /// The context.
        secagg_id: String,
        /// Echoed by the reply.
        sequence: Sequence,
        /// Which element to set up.
        element: i64,
        /// The job, if any.
        job_id: Option<String>,
        /// The parties of the context.
        parties: Vec<Value>,
    }
    /// `secagg-delete`: remove a secure aggregation context.
    SecaggDeleteRequest = SecaggDelete {
        /// The researcher asking.
        researcher_id: String,
        /// The context.
        secagg_id: String,
        /// Echoed by the reply.
        sequence: Sequence,
        /// Which element to delete.
        element: i64,
        /// The job, if any.
        job_id: Option<String>,
    }

    /// `pong`: reply to `ping`.
    PingReply = Pong {
        /// The researcher that asked.
        researcher_id: String,
        /// The node answering.
        node_id: String,
        /// Always true from a live node.
        success: bool,
        /// The `ping`'s sequence.
        sequence: Sequence,
    }
    /// `list` reply: the node's datasets.
    ListReply = List {
        /// The researcher that asked.
        researcher_id: String,
        /// Whether listing worked.
        success: bool,
        /// One object per dataset (`path` removed).
        databases: Vec<Value>,
        /// The node answering.
        node_id: String,
        /// How many datasets.
        count: i64,
    }
    /// `search` reply: the node's datasets that matched. No match, no reply.
    SearchReply = Search {
        /// The researcher that asked.
        researcher_id: String,
        /// Whether searching worked.
        success: bool,
        /// One object per dataset (`path` removed).
        databases: Vec<Value>,
        /// The node answering.
        node_id: String,
        /// How many datasets.
        count: i64,
    }
    /// `approval` reply: whether the node downloaded and registered the plan.
    ApprovalReply = Approval {
        /// The researcher that asked.
        researcher_id: String,
        /// The node answering.
        node_id: String,
        /// The request's sequence.
        sequence: Sequence,
        /// HTTP status of the download (0 when it failed).
        status: i64,
        /// Whether the plan was registered.
        success: bool,
    }
    /// `training-plan-status` reply.
    TrainingPlanStatusReply = TrainingPlanStatus {
        /// The researcher that asked.
        researcher_id: String,
        /// The node answering.
        node_id: String,
        /// The job it was asked for.
        job_id: String,
        /// Whether the status could be read.
        success: bool,
        /// Whether the node requires approval.
        approval_obligation: bool,
        /// `Approved`, `Pending`, `Rejected`, `Not Registered` or `Error`.
        status: String,
        /// A sentence for the researcher.
        msg: String,
        /// The plan's URL.
        training_plan_url: String,
    }
    /// `train` reply.
    TrainReply = Train {
        /// The researcher that asked.
        researcher_id: String,
        /// The job.
        job_id: String,
        /// Whether training worked.
        success: bool,
        /// The node answering.
        node_id: String,
        /// The dataset trained on.
        dataset_id: String,
        /// Where the researcher downloads the new parameters.
        params_url: String,
        /// Timings.
        timing: Object,
        /// Samples used, if known.
        sample_size: Option<i64>,
        /// A message.
        msg: String,
    }
    /// `secagg` reply.
    SecaggReply = Secagg {
        /// The researcher that asked.
        researcher_id: String,
        /// The context.
        secagg_id: String,
        /// The request's sequence.
        sequence: Sequence,
        /// Whether it worked.
        success: bool,
        /// The node answering.
        node_id: String,
        /// A message.
        msg: String,
    }
    /// `secagg-delete` reply.
    SecaggDeleteReply = SecaggDelete {
        /// The researcher that asked.
        researcher_id: String,
        /// The context.
        secagg_id: String,
        /// The request's sequence.
        sequence: Sequence,
        /// Whether it worked.
        success: bool,
        /// The node answering.
        node_id: String,
        /// A message.
        msg: String,
    }
    /// `log`: a node's log record, on `general/logger`.
    LogMessage = Log {
        /// `<unknown>` from Fed-BioMed nodes.
        researcher_id: String,
        /// The node logging.
        node_id: String,
        /// `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
        level: String,
        /// A JSON string whose `message` field is the text.
        msg: String,
    }
    /// `error`: a node could not handle a message.
    ErrorMessage = Error {
        /// The researcher whose message failed.
        researcher_id: String,
        /// The node reporting.
        node_id: String,
        /// Like `FB301: Protocol error`.
        errnum: String,
        /// Details.
        extra_msg: String,
    }
    /// `add_scalar`: a training metric, on `general/monitoring`.
    AddScalarMessage = AddScalar {
        /// The researcher of the job.
        researcher_id: String,
        /// The node training.
        node_id: String,
        /// The job.
        job_id: String,
        /// Measured while training.
        train: bool,
        /// Measured while testing.
        test: bool,
        /// Test on local updates.
        test_on_local_updates: bool,
        /// Test on global updates.
        test_on_global_updates: bool,
        /// Metric name -> value.
        metric: Object,
        /// The epoch, if any.
        epoch: Option<i64>,
        /// Samples in the dataset.
        total_samples: i64,
        /// Samples in the batch.
        batch_samples: i64,
        /// Batches in the epoch.
        num_batches: i64,
        /// Samples trained on so far, if known.
        num_samples_trained: Option<i64>,
        /// The iteration.
        iteration: i64,
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

macro_rules! directions {
    ($(
        $(#[$doc:meta])*
        $enum:ident { $( $(#[$vdoc:meta])* $variant:ident($ty:ty), )* }
    )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $enum {
            $( $(#[$vdoc])* $variant($ty), )*
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
                                return Ok(Decoded { message: $enum::$variant(decoded.message), compatibility: decoded.compatibility });
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
                    let message = $enum::$variant(<$ty>::from_object(body)?);
                    return Ok(Decoded { message, compatibility });
                } )*
                Err(DecodeError::UnknownCommand(command_text))
            }

            /// Encodes it with `command` and `protocol_version`.
            pub fn encode(&self) -> Vec<u8> {
                match self { $( $enum::$variant(m) => encode(m), )* }
            }

            /// The JSON object that travels, with `command` and `protocol_version`.
            pub fn to_value(&self) -> Value {
                match self { $( $enum::$variant(m) => to_value(m), )* }
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
                    return Ok($enum::$variant(<$ty>::from_object(object)?));
                } )*
                Err(DecodeError::UnknownCommand(command_text))
            }
        }

        $( impl From<$ty> for $enum {
            fn from(message: $ty) -> Self { $enum::$variant(message) }
        } )*
    )*};
}

directions! {
    /// A message from the researcher to nodes.
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

    /// A message from a node to the researcher: a reply, a log, an error or a scalar.
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
        TrainingPlanStatus(TrainingPlanStatusReply),
        /// `train`.
        Train(TrainReply),
        /// `secagg`.
        Secagg(SecaggReply),
        /// `secagg-delete`.
        SecaggDelete(SecaggDeleteReply),
        /// `log`.
        Log(LogMessage),
        /// `error`.
        Error(ErrorMessage),
        /// `add_scalar`.
        AddScalar(AddScalarMessage),
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

/// The body with the envelope fields beside it.
#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(flatten)]
    body: &'a T,
    command: &'static str,
    protocol_version: &'static str,
}

fn encode<T: WireMessage>(message: &T) -> Vec<u8> {
    let envelope = Envelope {
        body: message,
        command: T::COMMAND.as_str(),
        protocol_version: PROTOCOL_VERSION,
    };
    // Cannot fail: every field is a string-keyed struct, map or plain value.
    serde_json::to_vec(&envelope).expect("wire messages always serialize")
}

fn to_value<T: WireMessage>(message: &T) -> Value {
    let envelope = Envelope {
        body: message,
        command: T::COMMAND.as_str(),
        protocol_version: PROTOCOL_VERSION,
    };
    serde_json::to_value(envelope).expect("wire messages always serialize")
}

fn judge_version(command: Command, version: Option<Value>) -> Result<Compatibility, DecodeError> {
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

fn take_command(object: &mut Object) -> Result<String, DecodeError> {
    match object.remove("command") {
        None => Err(DecodeError::MissingCommand),
        Some(Value::String(command)) => Ok(command),
        Some(_) => Err(DecodeError::CommandNotString),
    }
}

/// Size cap, strict JSON object, then the envelope fields taken out of it.
fn envelope(bytes: &[u8], limits: &Limits) -> Result<(String, Option<Value>, Object), DecodeError> {
    let mut object = parse_object(bytes, limits)?;
    let command = take_command(&mut object)?;
    let version = object.remove("protocol_version");
    Ok((command, version, object))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode_reply(value: Value) -> Result<NodeMessage, DecodeError> {
        NodeMessage::decode(value.to_string().as_bytes(), &Limits::default()).map(|d| d.message)
    }

    fn pong() -> Value {
        json!({"researcher_id": "r", "node_id": "n", "success": true, "sequence": 3,
               "command": "pong", "protocol_version": "1"})
    }

    #[test]
    fn pong_decodes_and_reencodes_equal() {
        let message = decode_reply(pong()).unwrap();
        assert_eq!(message.command(), Command::Pong);
        assert_eq!(message.sequence(), Some(3));
        let again: Value = serde_json::from_slice(&message.encode()).unwrap();
        assert_eq!(again, pong());
    }

    #[test]
    fn each_field_rule_has_its_error_naming_command_and_field() {
        let mut missing = pong();
        missing.as_object_mut().unwrap().remove("sequence");
        assert_eq!(
            decode_reply(missing),
            Err(DecodeError::MissingField {
                command: Command::Pong,
                field: "sequence"
            })
        );

        let mut extra = pong();
        extra["colour"] = json!("blue");
        assert_eq!(
            decode_reply(extra),
            Err(DecodeError::ExtraField {
                command: Command::Pong,
                field: "colour".into()
            })
        );

        let mut wrong = pong();
        wrong["success"] = json!("yes");
        let err = decode_reply(wrong).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::WrongType {
                command: Command::Pong,
                field: "success",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "`pong`: field `success` must be a boolean, not a string"
        );

        let mut null = pong();
        null["node_id"] = Value::Null;
        assert_eq!(
            decode_reply(null),
            Err(DecodeError::Null {
                command: Command::Pong,
                field: "node_id"
            })
        );
    }

    #[test]
    fn nullable_fields_take_null_but_must_be_present() {
        let scalar = json!({"researcher_id": "r", "node_id": "n", "job_id": "j", "train": true,
            "test": false, "test_on_local_updates": false, "test_on_global_updates": false,
            "metric": {"Loss": 0.5}, "epoch": null, "total_samples": 1, "batch_samples": 1,
            "num_batches": 1, "num_samples_trained": null, "iteration": 1,
            "command": "add_scalar", "protocol_version": "1"});
        assert_eq!(
            decode_reply(scalar.clone()).unwrap().command(),
            Command::AddScalar
        );
        let mut missing = scalar;
        missing.as_object_mut().unwrap().remove("epoch");
        assert_eq!(
            decode_reply(missing),
            Err(DecodeError::MissingField {
                command: Command::AddScalar,
                field: "epoch"
            })
        );
    }

    #[test]
    fn envelope_errors() {
        let limits = Limits { max_payload: 10 };
        assert_eq!(
            NodeMessage::decode(&[b' '; 11], &limits),
            Err(DecodeError::TooLarge {
                size: 11,
                limit: 10
            })
        );
        type Check = fn(&DecodeError) -> bool;
        let cases: [(&[u8], Check); 7] = [
            (b"{\"command\": ", |e| matches!(e, DecodeError::NotJson(_))),
            (b"\xff\xfe", |e| matches!(e, DecodeError::NotJson(_))),
            (b"[1, 2]", |e| matches!(e, DecodeError::NotAnObject(_))),
            (b"{\"a\": 1, \"a\": 2}", |e| {
                *e == DecodeError::DuplicateKey("a".into())
            }),
            (b"{\"a\": 1}", |e| *e == DecodeError::MissingCommand),
            (b"{\"command\": 7}", |e| *e == DecodeError::CommandNotString),
            (b"{\"command\": \"ping\"}", |e| {
                *e == DecodeError::UnknownCommand("ping".into())
            }),
        ];
        for (bytes, expected) in cases {
            let err = NodeMessage::decode(bytes, &Limits::default()).unwrap_err();
            assert!(
                expected(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn version_is_judged_after_the_command_is_known() {
        for (version, ok) in [
            (json!("1"), true),
            (json!("2"), false),
            (json!("1.9"), false),
            (json!("x"), false),
        ] {
            let mut message = pong();
            message["protocol_version"] = version.clone();
            let result = decode_reply(message);
            assert_eq!(result.is_ok(), ok, "{version}");
            if !ok {
                let err = result.unwrap_err();
                assert!(matches!(
                    err,
                    DecodeError::Version {
                        command: Command::Pong,
                        ..
                    }
                ));
                assert!(err.to_string().contains("1.0.0"), "{err}");
            }
        }
        let mut missing = pong();
        missing.as_object_mut().unwrap().remove("protocol_version");
        let err = decode_reply(missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`pong`: protocol_version: version 0.0.0 is incompatible with ours, 1.0.0"
        );
    }

    #[test]
    fn numbers_are_checked_for_range_and_sign() {
        for bad in [
            json!(-1),
            json!(1.5),
            json!(18446744073709551616u128 as f64),
            json!(true),
        ] {
            let mut message = pong();
            message["sequence"] = bad.clone();
            let err = decode_reply(message).unwrap_err();
            assert!(
                matches!(
                    err,
                    DecodeError::WrongType {
                        field: "sequence",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
        }
        let mut max = pong();
        max["sequence"] = json!(u64::MAX);
        assert_eq!(decode_reply(max).unwrap().sequence(), Some(u64::MAX));
    }

    #[test]
    fn requests_and_replies_share_names_but_not_schemas() {
        let request = json!({"researcher_id": "r", "command": "list", "protocol_version": "1"});
        let bytes = request.to_string();
        assert!(Request::decode(bytes.as_bytes(), &Limits::default()).is_ok());
        assert_eq!(
            NodeMessage::decode(bytes.as_bytes(), &Limits::default()),
            Err(DecodeError::MissingField {
                command: Command::List,
                field: "success"
            })
        );
    }

    proptest::proptest! {
        /// Whatever the fast path accepts, the schema path accepts as the same message.
        #[test]
        fn the_fast_path_never_accepts_what_the_schema_refuses(
            field in 0usize..8,
            change in 0u8..6,
            base in 0usize..3,
        ) {
            let bases = [
                pong(),
                json!({"researcher_id": "r", "node_id": "n", "job_id": "j", "train": true, "test": false,
                       "test_on_local_updates": false, "test_on_global_updates": false, "metric": {"Loss": 0.5},
                       "epoch": null, "total_samples": 1, "batch_samples": 1, "num_batches": 1,
                       "num_samples_trained": 3, "iteration": 1, "command": "add_scalar", "protocol_version": "1"}),
                json!({"researcher_id": "r", "node_id": "n", "success": true, "count": 1,
                       "databases": [{"name": "d"}], "command": "list", "protocol_version": "1"}),
            ];
            let mut value = bases[base].clone();
            if change == 5 {
                // The same fields as a list, with a `command` nested where a value may be any.
                let fields: Vec<Value> = value.as_object().unwrap().values().cloned().collect();
                value = json!([fields, {"command": value["command"]}]);
            }
            if let Some(object) = value.as_object_mut() {
            let key = object.keys().nth(field % object.len()).unwrap().clone();
            match change {
                0 => { object.remove(&key); }
                1 => { object.insert(key, Value::Null); }
                2 => { object.insert(key, json!("text")); }
                3 => { object.insert(key, json!(-1.5)); }
                4 => { object.insert("extra".into(), json!(1)); }
                _ => {}
            }
            }
            let bytes = value.to_string().into_bytes();
            let limits = Limits::default();
            let fast = NodeMessage::decode(&bytes, &limits);
            let schema = NodeMessage::decode_schema(&bytes, &limits);
            proptest::prop_assert_eq!(fast, schema);
        }
    }

    #[test]
    fn an_array_is_not_a_message_even_when_its_fields_would_fit() {
        let list = br#"["me", true, [{"command": "list"}], "n1", 1, "list", "1"]"#;
        assert!(matches!(
            NodeMessage::decode(list, &Limits::default()),
            Err(DecodeError::NotAnObject(_))
        ));
    }

    #[test]
    fn command_hints_are_plain_strings_only() {
        assert_eq!(
            command_hint(br#"{"a": 1, "command" : "pong"}"#),
            Some("pong")
        );
        assert_eq!(command_hint(br#"{"command": "po\u006eg"}"#), None);
        assert_eq!(command_hint(br#"{"command": 3}"#), None);
        assert_eq!(command_hint(br#"{"x": "command"}"#), None);
    }

    #[test]
    fn from_value_adds_our_version_when_absent() {
        let object = json!({"researcher_id": "r", "tags": ["a"], "command": "search"});
        let request = Request::from_value(object.as_object().unwrap().clone()).unwrap();
        assert_eq!(request.to_value()["protocol_version"], "1");
    }
}
