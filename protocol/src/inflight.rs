//! A request in flight: what it was sent as, and what it has received. The rules that
//! complete it are in [`completion`](crate::completion).

use std::collections::HashSet;
use std::hash::{BuildHasher, DefaultHasher, Hasher};
use std::time::Duration;

use crate::message::{Command, ErrorMessage, NodeMessage, Request, Sequence};
use crate::outcome::Counters;
use crate::policy::Policy;
use crate::time::Timestamp;
use crate::topic::NodeId;

/// A hasher keyed by the configured seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keyed(pub(crate) u64);

impl BuildHasher for Keyed {
    type Hasher = DefaultHasher;
    fn build_hasher(&self) -> DefaultHasher {
        let mut hasher = DefaultHasher::new();
        hasher.write_u64(self.0);
        hasher
    }
}

pub(crate) type NodeSet = HashSet<NodeId, Keyed>;

/// What an active request is.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A request sent to nodes, collecting its replies.
    Sent {
        command: Command,
        request: Box<Request>,
        /// The request as it travels, encoded once.
        payload: Vec<u8>,
    },
    /// No request: collects the unmatched messages of these commands (all when empty).
    Collect(Vec<Command>),
}

/// How a request waits for nodes nobody told it about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// It does not: it expects exactly its targets or roster.
    Ignored,
    /// Every node out there announces itself: it expects those online, and no one else.
    Announced,
    /// Nodes without presence may be out there: once every expected node answered, it
    /// settles a moment, or waits the first-contact gap when it met a node it did not expect.
    Settles,
}

/// A request between submission and completion.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) kind: Kind,
    pub(crate) sequence: Option<Sequence>,
    /// The sequence of the ping sent right after it, when a node may leave it unanswered: a
    /// node answers in order, so its pong without a reply before it means it has none.
    pub(crate) fence: Option<Sequence>,
    /// The sequence of the ping sent right before a fenced request to nodes that may be
    /// Fed-BioMed v4.4's: its pong says who is out there, and carries the TCP acknowledgement
    /// that lets request and fence travel together (see `Researcher`).
    pub(crate) primer: Option<Sequence>,
    pub(crate) targets: Option<Vec<NodeId>>,
    pub(crate) targeted: Option<NodeSet>,
    pub(crate) expected: Vec<NodeId>,
    pub(crate) expected_set: NodeSet,
    /// Expected nodes without presence and how long after sending each is awaited: they may
    /// have left without a word.
    pub(crate) unsure: Vec<(NodeId, Duration)>,
    pub(crate) unknown: Unknown,
    /// A node it did not expect answered: the roster is incomplete, first contact applies.
    pub(crate) met_unexpected: bool,
    pub(crate) policy: Policy,
    pub(crate) submitted: Timestamp,
    /// When it was published; `None` while it waits for its command's turn.
    pub(crate) sent: Option<Timestamp>,
    pub(crate) last_reply: Timestamp,
    pub(crate) round_end: Timestamp,
    pub(crate) new_in_round: usize,
    pub(crate) min_reached: Option<Timestamp>,
    pub(crate) replied: NodeSet,
    pub(crate) errored: NodeSet,
    /// Nodes that passed the fence without a reply.
    pub(crate) passed: NodeSet,
    pub(crate) expected_answered: usize,
    /// Expected nodes that went offline before answering, and since when (`None` while our own
    /// connection is down): awaited `return_window` more.
    pub(crate) leaving: Vec<(NodeId, Option<Timestamp>)>,
    /// Expected nodes awaited no more (offline, or unsure and waited out): reported missing.
    pub(crate) gone: NodeSet,
    /// Those of `gone` that went offline (rather than being waited out).
    pub(crate) went_offline: NodeSet,
    /// When the settle (or first-contact) window ends, once every expected node answered.
    pub(crate) settle_at: Option<Timestamp>,
    /// When the first answer that tells who is out there came: a primer's or fence's pong for
    /// a fenced request (every node sends them), else a reply. The first-contact gap grows with the
    /// spread of the answers since, not with a delay they all share.
    pub(crate) first_probe: Option<Timestamp>,
    pub(crate) replies: Vec<NodeMessage>,
    pub(crate) errors: Vec<ErrorMessage>,
    pub(crate) counters: Counters,
    /// The core-wide counters of stray messages of its command when it was sent: what they
    /// counted since is its own share, added at completion.
    pub(crate) strays_at_send: Counters,
    /// The wake registered in the core's timer set.
    pub(crate) wake: Option<Timestamp>,
}

impl Active {
    /// A request submitted at `now`, not yet sent, expecting no one.
    pub(crate) fn new(kind: Kind, policy: Policy, now: Timestamp, keyed: Keyed) -> Self {
        Active {
            kind,
            sequence: None,
            fence: None,
            primer: None,
            targets: None,
            targeted: None,
            expected: Vec::new(),
            expected_set: NodeSet::with_hasher(keyed),
            unsure: Vec::new(),
            unknown: Unknown::Ignored,
            met_unexpected: false,
            policy,
            submitted: now,
            sent: None,
            last_reply: now,
            round_end: now,
            new_in_round: 0,
            min_reached: None,
            replied: NodeSet::with_hasher(keyed),
            errored: NodeSet::with_hasher(keyed),
            passed: NodeSet::with_hasher(keyed),
            expected_answered: 0,
            leaving: Vec::new(),
            gone: NodeSet::with_hasher(keyed),
            went_offline: NodeSet::with_hasher(keyed),
            settle_at: None,
            first_probe: None,
            replies: Vec::new(),
            errors: Vec::new(),
            counters: Counters::default(),
            strays_at_send: Counters::default(),
            wake: None,
        }
    }

    /// The command it was sent with, for a sent request.
    pub(crate) fn command(&self) -> Option<Command> {
        match &self.kind {
            Kind::Sent { command, .. } => Some(*command),
            Kind::Collect(_) => None,
        }
    }

    /// The command of the replies it collects, for a sent request.
    pub(crate) fn reply_command(&self) -> Option<Command> {
        self.command().map(Command::reply)
    }

    /// Whether it is a collect that takes `command`.
    pub(crate) fn collects(&self, command: Command) -> bool {
        matches!(&self.kind, Kind::Collect(commands) if commands.is_empty() || commands.contains(&command))
    }

    /// Whether it expects the nodes known to the core (a broadcast without a given roster).
    pub(crate) fn by_presence(&self) -> bool {
        !matches!(self.unknown, Unknown::Ignored)
    }

    pub(crate) fn targets(&self, node: &str) -> bool {
        self.targeted.as_ref().is_none_or(|t| t.contains(node))
    }

    pub(crate) fn has_answered(&self, node: &str) -> bool {
        self.replied.contains(node) || self.errored.contains(node) || self.passed.contains(node)
    }

    /// Marks `node` as having answered, for early completion: a node counted as gone that
    /// answers after all is counted once. A node it did not expect is first contact. Returns
    /// whether it was expected.
    #[inline]
    pub(crate) fn mark_answered(&mut self, node: &str) -> bool {
        // Both are empty but for nodes that went offline: no hashing on the hot path.
        if !self.leaving.is_empty() {
            self.leaving.retain(|(n, _)| n != node);
        }
        let was_gone = !self.gone.is_empty() && self.gone.remove(node);
        if was_gone {
            self.went_offline.remove(node);
            return true;
        }
        let expected = self.expected_set.contains(node);
        match expected {
            true => self.expected_answered += 1,
            false => self.met_unexpected = true,
        }
        expected
    }

    /// Awaits `node` no more: it will be reported missing. `offline` when it went offline,
    /// rather than being waited out.
    pub(crate) fn give_up(&mut self, node: &str, offline: bool) {
        self.leaving.retain(|(n, _)| n != node);
        if self.has_answered(node) || !self.expected_set.contains(node) {
            return;
        }
        if self.gone.insert(node.to_owned()) {
            self.expected_answered += 1;
            if offline {
                self.went_offline.insert(node.to_owned());
            }
        }
    }

    /// Awaits `node` again, given up too soon (it is back): the reverse of [`give_up`](Self::give_up).
    pub(crate) fn await_again(&mut self, node: &str) {
        if self.gone.remove(node) {
            self.went_offline.remove(node);
            self.expected_answered -= 1;
        }
    }

    /// Whether it still awaits an answer from `node`.
    pub(crate) fn awaits(&self, node: &str) -> bool {
        self.sent.is_some()
            && self.expected_set.contains(node)
            && !self.has_answered(node)
            && !self.gone.contains(node)
    }

    /// Whether it awaits `node`, which just went offline, and does not know it yet.
    pub(crate) fn awaits_unwarned(&self, node: &str) -> bool {
        self.awaits(node) && !self.leaving.iter().any(|(n, _)| n == node)
    }
}
