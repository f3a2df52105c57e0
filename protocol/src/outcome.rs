//! What a completed request reports, and typed views of it per command.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::message::{Command, ErrorMessage, NodeMessage, Sequence};
use crate::topic::NodeId;

/// Identifies a submitted request within one core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which rule completed the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Every expected node answered: a reply, an error, or for a request a node may leave
    /// unanswered (a search without a match), its fence passed.
    AllAnswered,
    /// Every expected node answered (or, without presence, was waited for as long as the
    /// first-contact rule says), then no reply came for the settle or first-contact window.
    Settled,
    /// Every expected node answered or went offline: those that went offline are `missing`.
    Offline,
    /// Every expected node answered but nodes without presence awaited as long as the
    /// first-contact rule says, that did not: they are `missing`.
    WaitedOut,
    /// No reply for a whole quiet period.
    QuietPeriod,
    /// Fed-BioMed rounds: a round brought nothing new (or only one round was asked for).
    Rounds,
    /// The grace period after the minimum number of replies ran out.
    MinReplies,
    /// A targeted node sent an error, with `stop_on_error`.
    Error,
    /// The overall deadline passed.
    Deadline,
    /// The caller gave up on it (a dropped wait, Ctrl-C).
    Cancelled,
}

/// Messages seen while the request was in flight that it did not keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// A second reply from a node that already replied.
    pub duplicates: u64,
    /// Replies of this command to an earlier request of ours that had completed.
    pub late: u64,
    /// Replies matching this request but addressed to another researcher id.
    pub foreign: u64,
    /// Replies of this command with a sequence (or job id) that is not ours.
    pub wrong_sequence: u64,
    /// Replies from a node this request did not target.
    pub not_targeted: u64,
    /// Payloads refused by decoding.
    pub malformed: u64,
    /// Replies with `success: false`, dropped under `only_successful`.
    pub unsuccessful: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    /// What was counted between two readings of the same counters.
    fn sub(self, earlier: Counters) -> Counters {
        Counters {
            duplicates: self.duplicates - earlier.duplicates,
            late: self.late - earlier.late,
            foreign: self.foreign - earlier.foreign,
            wrong_sequence: self.wrong_sequence - earlier.wrong_sequence,
            not_targeted: self.not_targeted - earlier.not_targeted,
            malformed: self.malformed - earlier.malformed,
            unsuccessful: self.unsuccessful - earlier.unsuccessful,
        }
    }
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, other: Counters) {
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.foreign += other.foreign;
        self.wrong_sequence += other.wrong_sequence;
        self.not_targeted += other.not_targeted;
        self.malformed += other.malformed;
        self.unsuccessful += other.unsuccessful;
    }
}

/// The result of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The request.
    pub id: RequestId,
    /// Its command; `None` for a collect, which sends nothing.
    pub command: Option<Command>,
    /// The sequence it was sent with, for commands that carry one.
    pub sequence: Option<Sequence>,
    /// The nodes it was sent to; `None` for a broadcast.
    pub targets: Option<Vec<NodeId>>,
    /// Replies kept, in arrival order, at most one per node.
    pub replies: Vec<NodeMessage>,
    /// `error` messages from targeted nodes while it was in flight.
    pub errors: Vec<ErrorMessage>,
    /// Expected nodes (targets, or roster) that sent neither reply nor error.
    pub missing: Vec<NodeId>,
    /// What else was seen.
    pub counters: Counters,
    /// From submission to completion.
    pub elapsed: Duration,
    /// The rule that completed it.
    pub completion: Completion,
}

impl Outcome {
    /// `ping`: the nodes that answered.
    pub fn online(&self) -> Vec<NodeId> {
        self.replies
            .iter()
            .map(|r| r.node_id().to_owned())
            .collect()
    }

    /// `list` and `search`: each answering node's datasets.
    pub fn datasets(&self) -> BTreeMap<NodeId, Vec<Value>> {
        self.replies
            .iter()
            .filter_map(|reply| match reply {
                NodeMessage::List(m) => Some((m.node_id.clone(), m.databases.clone())),
                NodeMessage::Search(m) => Some((m.node_id.clone(), m.databases.clone())),
                _ => None,
            })
            .collect()
    }

    /// `approval`: whether each node acknowledged. Every targeted node is present,
    /// `false` where it did not answer, failed or sent an error.
    pub fn approvals(&self) -> BTreeMap<NodeId, bool> {
        let mut result: BTreeMap<NodeId, bool> = self
            .targets
            .iter()
            .flatten()
            .chain(&self.missing)
            .map(|node| (node.clone(), false))
            .collect();
        for error in &self.errors {
            result.insert(error.node_id.clone(), false);
        }
        for reply in &self.replies {
            if let NodeMessage::Approval(m) = reply {
                result.insert(m.node_id.clone(), m.success);
            }
        }
        result
    }

    /// Every reply and error as the JSON object that travelled, like Fed-BioMed's `Responses`.
    pub fn responses(&self) -> Vec<Value> {
        let errors = self
            .errors
            .iter()
            .map(|e| NodeMessage::Error(e.clone()).to_value());
        self.replies
            .iter()
            .map(NodeMessage::to_value)
            .chain(errors)
            .collect()
    }
}
