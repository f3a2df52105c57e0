//! Presence: fedreq nodes say who is out there through MQTT itself.
//!
//! A node publishes its status, retained, on `fedreq/presence/<node_id>`, outside every topic a
//! Fed-BioMed v4.4 component reads: `online` on every (re)connection, `offline` on a clean stop,
//! and the broker publishes its last will (`offline`) when it dies. The incarnation tells runs
//! apart, so a retained status of an earlier run never counts for a new one. A clean stop
//! says `stopped`, so the researcher tells a node that left from one whose connection broke.
//!
//! A broker may keep retained statuses and still not deliver them on a wildcard subscription
//! (RabbitMQ's MQTT plugin), or keep them on one member of a cluster only. So a researcher,
//! each time it connects, publishes a **probe** on `fedreq/probe`, and every node that announces
//! itself answers with its status again, live (not retained), on `fedreq/probed/<node_id>`: live
//! publishes reach wildcard subscriptions on every broker, across members. The answers have
//! their own topic because a node's status on its presence topic also says that it has just
//! (re)connected, perhaps with a new session on another member, having lost what was queued
//! for it: the researcher then asks it again what is safe to repeat.
//!
//! A node that announces itself also says when a search found nothing, on `fedreq/no-match`:
//! where a v4.4 node stays silent, so that the researcher needs no fence behind a search to
//! nodes it knows announce themselves.

use crate::error::DecodeError;
use crate::message::{decode_body, encode_body, Command, Limits, NoMatchMessage, PresenceMessage};
use crate::topic::NodeId;

/// Where statuses travel: one topic per node below it.
pub const PREFIX: &str = "fedreq/presence/";

/// What the researcher subscribes to.
pub const SUBSCRIPTION: &str = "fedreq/presence/+";

/// Where a researcher asks every node that announces itself to say its status again. The
/// payload is not read: any publish there is a probe.
pub const PROBE: &str = "fedreq/probe";

/// Where nodes answer probes: one topic per node below it.
pub const PROBED: &str = "fedreq/probed/";

/// What the researcher subscribes to for the answers to probes.
pub const PROBED_SUBSCRIPTION: &str = "fedreq/probed/+";

/// Where nodes that announce themselves say a search found nothing.
pub const NO_MATCH: &str = "fedreq/no-match";

/// A node's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Connected and answering.
    Online,
    /// Crashed or cut off: its will. It may come back on its session.
    Offline,
    /// Stopped cleanly: it will not answer what it was sent.
    Stopped,
}

impl Status {
    /// Whether the node is connected and answering.
    pub fn is_online(self) -> bool {
        self == Status::Online
    }
}

/// One node's status, as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// The node.
    pub node_id: NodeId,
    /// Online or offline.
    pub status: Status,
    /// Which run of the node; a later run has a greater one.
    pub incarnation: u64,
}

/// The topic of `node_id`'s status.
pub fn topic(node_id: &str) -> String {
    format!("{PREFIX}{node_id}")
}

/// Where one node is probed (a node starting asks whether its id is taken), not every node.
pub fn probe_topic(node_id: &str) -> String {
    format!("{PROBE}/{node_id}")
}

/// The topic of `node_id`'s answers to probes.
pub fn probed_topic(node_id: &str) -> String {
    format!("{PROBED}{node_id}")
}

impl Presence {
    /// `node_id` in `status`, run `incarnation`.
    pub fn new(node_id: impl Into<NodeId>, status: Status, incarnation: u64) -> Self {
        Presence {
            node_id: node_id.into(),
            status,
            incarnation,
        }
    }

    /// The payload, with `command` and `protocol_version`.
    pub fn encode(&self) -> Vec<u8> {
        encode_body(&PresenceMessage {
            node_id: self.node_id.clone(),
            status: match self.status {
                Status::Online => "online",
                Status::Offline => "offline",
                Status::Stopped => "stopped",
            }
            .to_owned(),
            incarnation: self.incarnation,
        })
    }

    /// Decodes a status received on `topic`, as strictly as every other message: the schema,
    /// then the status's value, then the topic, which must be the node's own (its status's or
    /// its answers').
    pub fn decode(topic: &str, bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let message = decode_body::<PresenceMessage>(bytes, limits)?.message;
        let status = match message.status.as_str() {
            "online" => Status::Online,
            "offline" => Status::Offline,
            "stopped" => Status::Stopped,
            _ => {
                return Err(DecodeError::WrongValue {
                    command: Command::Presence,
                    field: "status",
                    expected: "`online`, `offline` or `stopped`",
                    found: message.status,
                })
            }
        };
        let node = topic
            .strip_prefix(PREFIX)
            .or_else(|| topic.strip_prefix(PROBED));
        if node != Some(message.node_id.as_str()) {
            return Err(DecodeError::WrongTopic {
                command: Command::Presence,
                node_id: message.node_id,
                topic: topic.to_owned(),
            });
        }
        Ok(Presence::new(message.node_id, status, message.incarnation))
    }
}

/// A node's word that a researcher's search found nothing on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoMatch {
    /// The researcher that searched.
    pub researcher_id: String,
    /// The node.
    pub node_id: NodeId,
    /// The tags searched for, as the search carried them.
    pub tags: Vec<String>,
}

impl NoMatch {
    /// The payload, with `command` and `protocol_version`.
    pub fn encode(&self) -> Vec<u8> {
        encode_body(&NoMatchMessage {
            researcher_id: self.researcher_id.clone(),
            node_id: self.node_id.clone(),
            tags: self.tags.clone(),
        })
    }

    /// Decodes one, as strictly as every other message.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let message = decode_body::<NoMatchMessage>(bytes, limits)?.message;
        Ok(NoMatch {
            researcher_id: message.researcher_id,
            node_id: message.node_id,
            tags: message.tags,
        })
    }
}
