//! A request in flight: what it was sent as, and what it has received. The rules that
//! complete it are in [`completion`](crate::completion).

use std::time::Duration;

use hashbrown::hash_table::{Entry, HashTable};

use crate::completion::SettleFrom;
use crate::message::{Command, ErrorMessage, NodeMessage, Request, Sequence};
use crate::node_table::{Keyed, NodeHash};
use crate::outcome::Counters;
use crate::policy::Policy;
use crate::time::Timestamp;
use crate::topic::NodeId;

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
    pub(crate) nodes: Ledger,
    pub(crate) keyed: Keyed,
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
    /// When the settle (or first-contact) window ends, once every expected node answered, as
    /// of the answers worked out so far: the request's wake, never later than the true end.
    pub(crate) settle_at: Option<Timestamp>,
    /// The latest answer whose window is not worked out into `settle_at` yet. Windows end
    /// later as answers come later, so of answers alike only the latest counts: it is worked
    /// out when its timer fires or an answer unlike it comes, not on every reply.
    pub(crate) settle_from: Option<SettleFrom>,
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
        let mut nodes = Ledger::with_capacity(expected.len());
        let standing = Standing {
            expected: true,
            ..Standing::default()
        };
        for (at, node) in expected.iter().enumerate() {
            let hash = NodeHash::of(&keyed, node).0;
            let is = |line: &Line| line.is(node, &expected, &[]);
            let id = Id::Expected(at);
            nodes.entry(hash, is, || Line { id, standing });
        }
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
            keyed,
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
            settle_from: None,
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
    pub(crate) fn targets(&self, hash: NodeHash, node: &str) -> bool {
        self.targets.is_none() || self.standing_hashed(hash, node).expected
    }

    /// Where it stands with `node` (nowhere, for a node it neither expects nor heard from).
    pub(crate) fn standing(&self, node: &str) -> Standing {
        self.standing_hashed(self.hash(node), node)
    }

    fn standing_hashed(&self, hash: NodeHash, node: &str) -> Standing {
        let (expected, replies) = (&self.expected, &self.replies);
        let found = self
            .nodes
            .get(hash.0, |line| line.is(node, expected, replies));
        found.map(|line| line.standing).unwrap_or_default()
    }

    /// `node`'s hash, for the methods that take one.
    pub(crate) fn hash(&self, node: &str) -> NodeHash {
        NodeHash::of(&self.keyed, node)
    }

    /// Its standing with `node`, a line made with `id` when it has none.
    fn entry(&mut self, hash: NodeHash, node: &str, id: impl FnOnce() -> Id) -> &mut Standing {
        let (expected, replies) = (&self.expected, &self.replies);
        let is = |line: &Line| line.is(node, expected, replies);
        let new = || Line {
            id: id(),
            standing: Standing::default(),
        };
        &mut self.nodes.entry(hash.0, is, new).standing
    }

    fn entry_if_any(&mut self, node: &str) -> Option<&mut Standing> {
        let hash = self.hash(node).0;
        let (expected, replies) = (&self.expected, &self.replies);
        let found = self
            .nodes
            .get_mut(hash, |line| line.is(node, expected, replies));
        found.map(|line| &mut line.standing)
    }

    /// Room for `nodes` answers in all, once the first comes: a broadcast submitted before
    /// the core knew whom to expect still knows how many answer.
    pub(crate) fn reserve(&mut self, nodes: usize) {
        self.replies
            .reserve(nodes.saturating_sub(self.replies.len()));
        self.nodes.reserve(nodes.saturating_sub(self.nodes.len()));
    }

    pub(crate) fn has_answered(&self, hash: NodeHash, node: &str) -> bool {
        self.standing_hashed(hash, node).answered()
    }

    /// Expects `node` too, told of it after sending (a primer's pong), unless it does already.
    pub(crate) fn expect(&mut self, node: &str) {
        let at = self.expected.len();
        let standing = self.entry(self.hash(node), node, || Id::Expected(at));
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
    pub(crate) fn record(
        &mut self,
        hash: NodeHash,
        node: &str,
        answer: Answered,
    ) -> Option<Standing> {
        // A reply about to be kept names its node: its id is not copied.
        let at = self.replies.len();
        let standing = self.entry(hash, node, || match answer {
            Answered::Replied { kept: true } => Id::Reply(at),
            _ => Id::Own(node.into()),
        });
        let before = *standing;
        match answer {
            Answered::Replied { .. } if before.replied => return None,
            // A reply after its node passed the fence (a broker that reordered, a redelivery).
            Answered::Replied { .. } => (standing.replied, standing.passed) = (true, false),
            Answered::Errored => standing.errored = true,
            Answered::Passed => standing.passed = true,
        }
        if before.answered() {
            return Some(before);
        }
        standing.gone = None;
        self.answered += 1;
        match before.gone {
            Some(offline) => self.count_gone(offline, false),
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
        let Some(standing) = self.entry_if_any(node) else {
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
        let Some(standing) = self.entry_if_any(node) else {
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
    /// With a reply of the request's command, kept or not (see [`Active::keeps`]).
    Replied { kept: bool },
    /// With an error.
    Errored,
    /// By passing the fence without a reply: it has none.
    Passed,
}

/// Where a request stands with each node: one line per node, in the order they came, found
/// through a table of hashes and positions. The table's slots are half a line: a broadcast
/// to thousands of nodes keeps it in cache, and meeting a node appends a line.
#[derive(Debug)]
pub(crate) struct Ledger {
    lines: Vec<Line>,
    index: HashTable<(u64, usize)>,
}

impl Ledger {
    fn with_capacity(lines: usize) -> Self {
        Ledger {
            lines: Vec::with_capacity(lines),
            index: HashTable::with_capacity(lines),
        }
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    fn reserve(&mut self, more: usize) {
        self.lines.reserve(more);
        self.index.reserve(more, |&(hash, _)| hash);
    }

    fn position(&self, hash: u64, is: impl Fn(&Line) -> bool) -> Option<usize> {
        let lines = &self.lines;
        let found = self
            .index
            .find(hash, |&(h, at)| h == hash && is(&lines[at]));
        found.map(|&(_, at)| at)
    }

    fn get(&self, hash: u64, is: impl Fn(&Line) -> bool) -> Option<&Line> {
        Some(&self.lines[self.position(hash, is)?])
    }

    fn get_mut(&mut self, hash: u64, is: impl Fn(&Line) -> bool) -> Option<&mut Line> {
        let at = self.position(hash, is)?;
        Some(&mut self.lines[at])
    }

    /// The line `is` finds, appended as `new` makes it when there is none.
    fn entry(
        &mut self,
        hash: u64,
        is: impl Fn(&Line) -> bool,
        new: impl FnOnce() -> Line,
    ) -> &mut Line {
        let lines = &self.lines;
        let eq = |&(h, at): &(u64, usize)| h == hash && is(&lines[at]);
        let at = match self.index.entry(hash, eq, |&(hash, _)| hash) {
            Entry::Occupied(found) => found.get().1,
            Entry::Vacant(vacant) => {
                let at = self.lines.len();
                self.lines.push(new());
                vacant.insert((hash, at));
                at
            }
        };
        &mut self.lines[at]
    }
}

/// One node's line in a request's ledger.
#[derive(Debug)]
pub(crate) struct Line {
    id: Id,
    standing: Standing,
}

/// Where a ledger line's node id is.
#[derive(Debug)]
enum Id {
    /// In the request's expected nodes, at this index.
    Expected(usize),
    /// In its kept replies, at this index: replies are only ever pushed while it is in flight.
    Reply(usize),
    /// Nowhere else: copied.
    Own(Box<str>),
}

impl Line {
    fn is(&self, node: &str, expected: &[NodeId], replies: &[NodeMessage]) -> bool {
        match &self.id {
            Id::Expected(at) => expected[*at] == node,
            Id::Reply(at) => replies[*at].node_id() == node,
            Id::Own(id) => **id == *node,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::PingReply;
    use crate::node_table::keyed;

    fn pong(node: &str, success: bool) -> NodeMessage {
        NodeMessage::Pong(PingReply {
            researcher_id: "r".into(),
            node_id: node.into(),
            success,
            sequence: 1,
        })
    }

    /// A request expecting `expected`, taking replies from `repliers` (every third one
    /// unsuccessful) as the core does: recorded, then kept unless unsuccessful.
    fn answered(expected: &[&str], repliers: &[String]) -> Active {
        let policy = Policy {
            only_successful: true,
            ..Policy::default()
        };
        let expected = expected.iter().map(|n| n.to_string()).collect();
        let mut active = Active::new(
            Kind::Collect(vec![]),
            policy,
            Timestamp::ZERO,
            expected,
            keyed(3),
        );
        for (i, node) in repliers.iter().enumerate() {
            let reply = pong(node, i % 3 != 0);
            let kept = active.keeps(&reply);
            let recorded = active.record(active.hash(node), node, Answered::Replied { kept });
            assert!(recorded.is_some(), "{node} answered once");
            active.keep_reply(Timestamp::ZERO, reply, kept);
        }
        active
    }

    #[test]
    fn the_ledger_finds_each_node_wherever_its_id_is_kept() {
        // Expected ids, ids in kept replies, and copied ids (unsuccessful replies, dropped),
        // across the table's growth.
        let repliers: Vec<String> = (0..500).map(|i| format!("node-{i}")).collect();
        let mut active = answered(&["node-0", "node-1", "absent"], &repliers);
        assert_eq!(
            active.replies.len(),
            500 - 167,
            "the unsuccessful ones dropped"
        );
        assert_eq!((active.answered, active.expected_answered), (500, 2));
        for node in &repliers {
            let standing = active.standing(node);
            assert!(standing.replied, "{node}");
            assert_eq!(standing.expected, node == "node-0" || node == "node-1");
            let again = active.record(active.hash(node), node, Answered::Replied { kept: true });
            assert!(again.is_none(), "a second reply from {node} is a duplicate");
        }
        assert!(
            active.standing("absent").expected
                && !active.has_answered(active.hash("absent"), "absent")
        );
        assert!(
            !active.standing("node-500").expected
                && !active.has_answered(active.hash("node-500"), "node-500")
        );
        // Told of a node after its reply came: expected, and answered already.
        active.expect("node-7");
        assert!(active.standing("node-7").expected);
        assert_eq!(active.expected_answered, 3);
    }

    #[test]
    fn a_node_expected_twice_has_one_line() {
        let active = answered(&["a", "b", "a"], &["a".to_owned()]);
        assert_eq!(active.nodes.len(), 2);
        assert!(active.standing("a").replied && active.standing("b").expected);
        assert_eq!((active.answered, active.expected_answered), (1, 1));
    }
}
