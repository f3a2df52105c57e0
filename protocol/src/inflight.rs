//! A request in flight: what it was sent as, and what it has received. The rules that
//! complete it are in [`completion`](crate::completion).

use std::time::Duration;

use hashbrown::HashMap;

use crate::message::{Command, ErrorMessage, NodeMessage, Request, Sequence};
use crate::outcome::Counters;
use crate::policy::Policy;
use crate::time::Timestamp;
use crate::topic::NodeId;

/// Hashes keyed by the configured seed. Node ids come from the network: without the seed,
/// colliding ids cannot be chosen; foldhash's quality variant costs a fraction of SipHash on
/// short keys.
pub(crate) type Keyed = foldhash::quality::FixedState;

/// A map keyed by node id: hashbrown's, whose `entry_ref` hashes an id once and copies it only
/// when it is new.
pub(crate) type NodeMap<V> = HashMap<NodeId, V, Keyed>;

/// The hasher of a core configured with `seed`.
pub(crate) fn keyed(seed: u64) -> Keyed {
    foldhash::quality::FixedState::with_seed(seed)
}

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
    /// The core knows who is out there: it expects the nodes online and those heard without
    /// presence, and waits the first-contact gap only when it met a node it did not expect.
    Known,
    /// The core knows nothing yet, and nodes without presence may be out there: once every
    /// expected node answered, it settles a moment (the first-contact gap when it met a node
    /// it did not expect, or expected nobody).
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
    /// The nodes it expects, in the order they are reported missing.
    pub(crate) expected: Vec<NodeId>,
    /// Where it stands with each node it expects or heard from.
    pub(crate) nodes: NodeMap<Standing>,
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
    /// Expected nodes that answered or were given up.
    pub(crate) expected_answered: usize,
    /// Nodes that answered, expected or not.
    pub(crate) answered: usize,
    /// Expected nodes that went offline before answering, and since when (`None` while our own
    /// connection is down): awaited `return_window` more.
    pub(crate) leaving: Vec<(NodeId, Option<Timestamp>)>,
    /// Expected nodes given up because they went offline, and because they were waited out.
    pub(crate) went_offline: usize,
    pub(crate) waited_out: usize,
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
    pub(crate) fn new(
        kind: Kind,
        policy: Policy,
        now: Timestamp,
        expected: Vec<NodeId>,
        keyed: Keyed,
    ) -> Self {
        let mut nodes = HashMap::with_capacity_and_hasher(expected.len(), keyed);
        let standing = Standing {
            expected: true,
            ..Standing::default()
        };
        nodes.extend(expected.iter().map(|node| (node.clone(), standing)));
        // Room for every expected reply: growing a vector of them copies them all.
        let replies = Vec::with_capacity(expected.len());
        Active {
            kind,
            sequence: None,
            fence: None,
            primer: None,
            targets: None,
            expected,
            nodes,
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
            expected_answered: 0,
            answered: 0,
            leaving: Vec::new(),
            went_offline: 0,
            waited_out: 0,
            settle_at: None,
            first_probe: None,
            replies,
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

    /// Whether it went to `node`: a targeted request expects exactly its targets.
    pub(crate) fn targets(&self, node: &str) -> bool {
        self.targets.is_none() || self.standing(node).expected
    }

    /// Where it stands with `node` (nowhere, for a node it neither expects nor heard from).
    pub(crate) fn standing(&self, node: &str) -> Standing {
        self.nodes.get(node).copied().unwrap_or_default()
    }

    pub(crate) fn has_answered(&self, node: &str) -> bool {
        self.standing(node).answered()
    }

    /// Expects `node` too, told of it after sending (a primer's pong), unless it does already.
    pub(crate) fn expect(&mut self, node: &str) {
        let standing = self.nodes.entry_ref(node).or_default();
        if standing.expected {
            return;
        }
        standing.expected = true;
        // Its answer overtook the news of it (a broker that reordered).
        self.expected_answered += usize::from(standing.answered());
        self.expected.push(node.to_owned());
    }

    /// Records how `node` answered. A node given up that answers after all is counted once;
    /// one it did not expect is first contact. Returns its standing before, or `None` for
    /// a second reply (a duplicate), which changes nothing.
    #[inline]
    pub(crate) fn record(&mut self, node: &str, answer: Answered) -> Option<Standing> {
        let standing = self.nodes.entry_ref(node).or_default();
        let before = *standing;
        match answer {
            Answered::Replied if before.replied => return None,
            // A reply after its node passed the fence (a broker that reordered, a redelivery).
            Answered::Replied => (standing.replied, standing.passed) = (true, false),
            Answered::Errored => standing.errored = true,
            Answered::Passed => standing.passed = true,
        }
        if before.answered() {
            return Some(before);
        }
        self.answered += 1;
        match before.gone {
            Some(offline) => {
                standing.gone = None;
                self.count_gone(offline, false);
            }
            None if before.expected => self.expected_answered += 1,
            None => self.met_unexpected = true,
        }
        Some(before)
    }

    /// Awaits `node` no more: it will be reported missing. `offline` when it went offline,
    /// rather than being waited out.
    pub(crate) fn give_up(&mut self, node: &str, offline: bool) {
        if !self.leaving.is_empty() {
            self.leaving.retain(|(n, _)| n != node);
        }
        let Some(standing) = self.nodes.get_mut(node) else {
            return;
        };
        if !standing.expected || standing.answered() || standing.gone.is_some() {
            return;
        }
        standing.gone = Some(offline);
        self.expected_answered += 1;
        self.count_gone(offline, true);
    }

    /// Counts a node given up (`given`) or back, by why it was given up.
    fn count_gone(&mut self, offline: bool, given: bool) {
        let count = match offline {
            true => &mut self.went_offline,
            false => &mut self.waited_out,
        };
        match given {
            true => *count += 1,
            false => *count -= 1,
        }
    }

    /// Awaits `node` again, given up too soon (it is back): the reverse of [`give_up`](Self::give_up).
    pub(crate) fn await_again(&mut self, node: &str) {
        let Some(standing) = self.nodes.get_mut(node) else {
            return;
        };
        if let Some(offline) = standing.gone.take() {
            self.expected_answered -= 1;
            self.count_gone(offline, false);
        }
    }

    /// Whether it still awaits an answer from `node`.
    pub(crate) fn awaits(&self, node: &str) -> bool {
        let standing = self.standing(node);
        self.sent.is_some() && standing.expected && !standing.answered() && standing.gone.is_none()
    }

    /// Whether it awaits `node`, which just went offline, and does not know it yet.
    pub(crate) fn awaits_unwarned(&self, node: &str) -> bool {
        self.awaits(node) && !self.leaving.iter().any(|(n, _)| n == node)
    }
}

/// How a node answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answered {
    /// With a reply of the request's command.
    Replied,
    /// With an error.
    Errored,
    /// By passing the fence without a reply: it has none.
    Passed,
}

/// Where a request stands with one node.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Standing {
    pub(crate) expected: bool,
    pub(crate) replied: bool,
    pub(crate) errored: bool,
    /// It passed the fence without a reply.
    pub(crate) passed: bool,
    /// Awaited no more, it will be reported missing: `Some(true)` when it went offline,
    /// `Some(false)` when it was waited out.
    pub(crate) gone: Option<bool>,
}

impl Standing {
    pub(crate) fn answered(&self) -> bool {
        self.replied || self.errored || self.passed
    }
}
