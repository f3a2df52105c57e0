//! What the researcher core tells its user besides transmissions: completed requests, node
//! logs, monitoring scalars, unmatched and refused messages, connection changes.

use crate::error::DecodeError;
use crate::message::{AddScalarMessage, Command, ErrorMessage, LogMessage, NodeMessage};
use crate::outcome::Outcome;
use crate::presence::Presence;
use crate::time::Timestamp;
use crate::topic::NodeId;
use crate::version::ProtocolVersion;

/// A node's log record, with the text taken out of its inner JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLog {
    /// The node logging.
    pub node_id: NodeId,
    /// `INFO`, `ERROR`...
    pub level: String,
    /// The inner JSON's `message`, or the raw `msg` when it is not such JSON.
    pub text: String,
}

impl From<LogMessage> for NodeLog {
    fn from(log: LogMessage) -> Self {
        let inner: Option<String> = serde_json::from_str::<serde_json::Value>(&log.msg)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned));
        NodeLog {
            node_id: log.node_id,
            level: log.level,
            text: inner.unwrap_or(log.msg),
        }
    }
}

/// Why a message matched no request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    /// A reply to a request of ours that had already completed.
    Late,
    /// Addressed to another researcher id.
    Foreign,
    /// From a node the matching request did not target.
    NotTargeted,
    /// Matches nothing we sent.
    Unknown,
}

/// A message kept in the mailbox because it matched no request.
#[derive(Clone, Debug, PartialEq)]
pub struct Mail {
    /// Why it is here.
    pub reason: Unmatched,
    /// The message.
    pub message: NodeMessage,
    /// When it arrived.
    pub at: Timestamp,
    /// How many requests had been submitted when it arrived, for [`Collect::since`](crate::Collect::since).
    pub after: u64,
    /// Its payload's size, counted against the mailbox's byte budget.
    pub size: usize,
}

/// What the core tells its user.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A request completed: exactly once per submitted request.
    Completed(Outcome),
    /// A node's log record.
    Log(NodeLog),
    /// A monitoring scalar addressed to us.
    Monitoring(AddScalarMessage),
    /// A node's `error` for us, or for nobody in particular (see
    /// [`ErrorMessage::is_for`]); it also counts for the requests in flight to that node.
    NodeError(ErrorMessage),
    /// A message went to the mailbox.
    Unmatched {
        /// Why.
        reason: Unmatched,
        /// Its command.
        command: Command,
        /// Its node.
        node_id: NodeId,
    },
    /// A payload was refused.
    Rejected {
        /// The topic it came on.
        topic: String,
        /// Why.
        error: DecodeError,
    },
    /// A node's status changed (presence); the roster is [`Researcher::roster`](crate::Researcher::roster).
    Presence(Presence),
    /// The adapter's connection to the broker went up or down.
    Connection(ConnectionState),
    /// A node speaks an older protocol version than ours; its message was accepted.
    OlderVersion {
        /// The node.
        node_id: NodeId,
        /// Its version.
        version: ProtocolVersion,
    },
}

/// The adapter's connection to the broker, as it reports it through
/// [`Researcher::handle_connection`](crate::Researcher::handle_connection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// A session started (first or again); the adapter has subscribed.
    Connected,
    /// The connection was lost, and why; the adapter reconnects. Requests in flight go on
    /// under their own timers.
    Disconnected(String),
}
