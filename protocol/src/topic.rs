//! MQTT topic names, and where a request goes.

use std::fmt;

/// Researcher -> every node.
pub const NODES: &str = "general/nodes";
/// Nodes -> researcher: replies and errors.
pub const RESEARCHER: &str = "general/researcher";
/// Nodes -> researcher: node logs.
pub const LOGGER: &str = "general/logger";
/// Nodes -> researcher: monitoring scalars (`add_scalar`).
pub const MONITORING: &str = "general/monitoring";
/// Prefix of every fedreq and Fed-BioMed topic.
const PREFIX: &str = "general/";

/// A node's identifier, as it appears in `node_id` fields and topics.
pub type NodeId = String;

/// The topic that reaches one node: `general/<node_id>`.
pub fn node(node_id: &str) -> String {
    format!("{PREFIX}{node_id}")
}

/// Topics a researcher subscribes to: Fed-BioMed's three, fedreq's node statuses and
/// searches that found nothing.
pub const RESEARCHER_SUBSCRIPTIONS: [&str; 6] = [
    RESEARCHER,
    LOGGER,
    MONITORING,
    crate::presence::SUBSCRIPTION,
    crate::presence::PROBED_SUBSCRIPTION,
    crate::presence::NO_MATCH,
];

/// Topics a node subscribes to: `general/nodes`, its own, and the presence probes of every
/// node and of its own (a node that announces nothing ignores them).
pub fn node_subscriptions(node_id: &str) -> [String; 4] {
    [
        NODES.to_owned(),
        node(node_id),
        crate::presence::PROBE.to_owned(),
        crate::presence::probe_topic(node_id),
    ]
}

/// Who a request is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every node listening: one publish on `general/nodes`.
    All,
    /// These nodes only: one publish per node on `general/<id>`.
    Nodes(Vec<NodeId>),
}

impl Target {
    /// The topics a request to this target is published on, after validating node ids.
    pub fn topics(&self) -> Result<Vec<String>, TargetError> {
        match self {
            Target::All => Ok(vec![NODES.to_owned()]),
            Target::Nodes(ids) if ids.is_empty() => Err(TargetError::Empty),
            Target::Nodes(ids) => ids
                .iter()
                .map(|id| validate_node_id(id).map(|()| node(id)))
                .collect(),
        }
    }

    /// The nodes targeted, or `None` for a broadcast.
    pub fn nodes(&self) -> Option<&[NodeId]> {
        match self {
            Target::All => None,
            Target::Nodes(ids) => Some(ids),
        }
    }
}

/// A target that cannot be published to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// `Target::Nodes` with no node in it.
    #[error("the list of nodes is empty")]
    Empty,
    /// A node id that is empty, or would change the topic it is put in.
    #[error("invalid node id {0:?}: it must be non-empty and contain no '/', '+', '#' or NUL")]
    InvalidNodeId(String),
}

/// Checks that `id` names exactly one topic level, `general/<id>`, that is not another topic.
pub fn validate_node_id(id: &str) -> Result<(), TargetError> {
    let bad = id.is_empty()
        || id.contains(['/', '+', '#', '\0'])
        || [NODES, RESEARCHER, LOGGER, MONITORING].contains(&node(id).as_str());
    if bad {
        Err(TargetError::InvalidNodeId(id.to_owned()))
    } else {
        Ok(())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all nodes"),
            Target::Nodes(ids) => f.write_str(&ids.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_goes_to_general_nodes() {
        assert_eq!(Target::All.topics().unwrap(), ["general/nodes"]);
    }

    #[test]
    fn targeted_request_is_one_topic_per_node() {
        let target = Target::Nodes(vec!["n1".into(), "node_2d0f".into()]);
        assert_eq!(
            target.topics().unwrap(),
            ["general/n1", "general/node_2d0f"]
        );
    }

    #[test]
    fn node_ids_that_would_escape_their_topic_are_refused() {
        for id in [
            "",
            "a/b",
            "+",
            "a#",
            "x\0",
            "nodes",
            "researcher",
            "logger",
            "monitoring",
        ] {
            let target = Target::Nodes(vec!["ok".into(), id.into()]);
            assert_eq!(
                target.topics(),
                Err(TargetError::InvalidNodeId(id.into())),
                "{id:?}"
            );
        }
        assert_eq!(Target::Nodes(vec![]).topics(), Err(TargetError::Empty));
    }
}
