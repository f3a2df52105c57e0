//! A request in flight: what it was sent as, and what it has received. The rules that
//! complete it are in [`completion`](crate::completion).

use std::collections::HashMap;
use std::time::Duration;

use crate::completion::SettleFrom;
use crate::message::{Command, ErrorMessage, NodeMessage, Request, Sequence};
use crate::outcome::{Counters, RequestId};
use crate::policy::Policy;
use crate::registry::{Keyed, NodeRef, Registry};
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
    /// The nodes it expects, in the order they are reported missing, by their numbers (held
    /// by its ledger).
    pub(crate) expected: Vec<NodeRef>,
    /// Where it stands with each node it expects or heard from.
    pub(crate) nodes: Ledger,
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
    /// A request submitted at `now`, not yet sent, expecting the nodes numbered `expected` in
    /// `registry` (it holds their numbers from now on).
    pub(crate) fn new(
        kind: Kind,
        policy: Policy,
        now: Timestamp,
        expected: Vec<NodeRef>,
        registry: &mut Registry,
    ) -> Self {
        let mut nodes = Ledger::default();
        for &number in &expected {
            nodes.line(registry, number).0.set(EXPECTED, true);
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

    /// Whether it went to the node numbered `node` (`None`: a node without a number): a
    /// targeted request expects exactly its targets.
    pub(crate) fn targets(&self, node: Option<NodeRef>) -> bool {
        self.targets.is_none() || self.standing(node).expected()
    }

    /// `node`'s number if the request went to it, given now if it has none.
    pub(crate) fn reaches(&self, registry: &mut Registry, node: &str) -> Option<NodeRef> {
        match self.targets {
            // Its targets have numbers, held by its lines.
            Some(_) => registry.find(node).filter(|&n| self.targets(Some(n))),
            None => Some(registry.enter(node)),
        }
    }

    /// Where it stands with `node` (nowhere, for a node it neither expects nor heard from).
    pub(crate) fn standing(&self, node: Option<NodeRef>) -> Standing {
        node.map_or(Standing::NONE, |node| self.nodes.get(node))
    }

    /// Room for `nodes` answers in all, once the first comes: a broadcast submitted before
    /// the core knew whom to expect still knows how many answer, and most of them have
    /// numbers below `registry`'s count already.
    pub(crate) fn reserve(&mut self, nodes: usize, registry: &Registry) {
        self.replies
            .reserve(nodes.saturating_sub(self.replies.len()));
        let standings = &mut self.nodes.0;
        standings.reserve((registry.count() + nodes).saturating_sub(standings.len()));
    }

    /// Expects `node` too, told of it after sending (a primer's pong), unless it does already.
    pub(crate) fn expect(&mut self, registry: &mut Registry, number: NodeRef) {
        let (standing, before) = self.nodes.line(registry, number);
        standing.set(EXPECTED, true);
        if before.expected() {
            return;
        }
        // Its answer overtook the news of it (a broker that reordered).
        self.expected_answered += usize::from(before.answered());
        self.expected.push(number);
    }

    /// Records how `node` answered. A node given up that answers after all is counted once;
    /// one it did not expect is first contact. Returns its standing before, or `None` for
    /// a second reply (a duplicate), which changes nothing.
    #[inline]
    pub(crate) fn record(
        &mut self,
        registry: &mut Registry,
        node: NodeRef,
        answer: Answered,
    ) -> Option<Standing> {
        let (standing, before) = self.nodes.line(registry, node);
        if matches!(answer, Answered::Replied { .. }) && before.replied() {
            return None;
        }
        let first = !before.answered();
        match answer {
            // A reply after its node passed the fence (a broker that reordered, a redelivery).
            Answered::Replied { .. } => {
                standing.set(REPLIED, true);
                standing.set(PASSED, false);
            }
            Answered::Errored => standing.set(ERRORED, true),
            Answered::Passed => standing.set(PASSED, true),
        };
        if first {
            standing.set_gone(None);
        }
        if !first {
            return Some(before);
        }
        self.answered += 1;
        match before.gone() {
            Some(offline) => self.count_gone(offline, false),
            None if before.expected() => self.expected_answered += 1,
            None => self.met_unexpected = true,
        }
        Some(before)
    }

    /// Awaits `node` no more: it will be reported missing. `offline` when it went offline,
    /// rather than being waited out.
    pub(crate) fn give_up(&mut self, number: Option<NodeRef>, node: &str, offline: bool) {
        if !self.leaving.is_empty() {
            self.leaving.retain(|(n, _)| n != node);
        }
        let Some(standing) = self.nodes.get_mut(number) else {
            return;
        };
        if !standing.expected() || standing.answered() || standing.gone().is_some() {
            return;
        }
        standing.set_gone(Some(offline));
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
    pub(crate) fn await_again(&mut self, node: Option<NodeRef>) {
        let Some(standing) = self.nodes.get_mut(node) else {
            return;
        };
        if let Some(offline) = standing.gone() {
            standing.set_gone(None);
            self.expected_answered -= 1;
            self.count_gone(offline, false);
        }
    }

    /// Whether it still awaits an answer from `node`.
    pub(crate) fn awaits(&self, node: Option<NodeRef>) -> bool {
        let standing = self.standing(node);
        self.sent.is_some()
            && standing.expected()
            && !standing.answered()
            && standing.gone().is_none()
    }

    /// Whether it awaits `node`, which just went offline, and does not know it yet.
    pub(crate) fn awaits_unwarned(&self, number: Option<NodeRef>, node: &str) -> bool {
        self.awaits(number) && !self.leaving.iter().any(|(n, _)| n == node)
    }

    /// Its expected nodes that did not answer, in order.
    pub(crate) fn missing(&self, registry: &Registry) -> Vec<NodeId> {
        let expected = self.expected.iter().copied();
        let missing = expected.filter(|&node| !self.nodes.get(node).answered());
        missing.map(|node| registry.id(node).to_owned()).collect()
    }
}

/// Our sequences in flight, each with the request whose replies carry it. The replies to a
/// request come together, so the last sequence found is remembered: most replies skip the
/// table, and the dependent reads of a lookup.
#[derive(Debug)]
pub(crate) struct Sequences {
    table: HashMap<Sequence, RequestId, Keyed>,
    last: Option<(Sequence, RequestId)>,
}

impl Sequences {
    pub(crate) fn new(keyed: Keyed) -> Self {
        Sequences {
            table: HashMap::with_hasher(keyed),
            last: None,
        }
    }

    /// The request `sequence` belongs to.
    #[inline]
    pub(crate) fn get(&mut self, sequence: Sequence) -> Option<RequestId> {
        match self.last {
            Some((last, id)) if last == sequence => Some(id),
            _ => {
                let id = *self.table.get(&sequence)?;
                self.last = Some((sequence, id));
                Some(id)
            }
        }
    }

    pub(crate) fn contains(&self, sequence: Sequence) -> bool {
        self.table.contains_key(&sequence)
    }

    pub(crate) fn insert(&mut self, sequence: Sequence, id: RequestId) {
        self.forget_last(sequence);
        self.table.insert(sequence, id);
    }

    pub(crate) fn remove(&mut self, sequence: Sequence) {
        self.forget_last(sequence);
        self.table.remove(&sequence);
    }

    fn forget_last(&mut self, sequence: Sequence) {
        if self.last.is_some_and(|(last, _)| last == sequence) {
            self.last = None;
        }
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

/// Where a request stands with each node, by the node's number in the core's [`Registry`]: a
/// byte per node, where a table of its own would cost every node met an insertion. The
/// request holds the number of every node it has a standing with.
#[derive(Debug, Default)]
pub(crate) struct Ledger(Vec<Standing>);

impl Ledger {
    fn get(&self, node: NodeRef) -> Standing {
        self.0.get(node.index()).copied().unwrap_or(Standing::NONE)
    }

    /// Its standing with `node`, if it has one.
    fn get_mut(&mut self, node: Option<NodeRef>) -> Option<&mut Standing> {
        let standing = self.0.get_mut(node?.index())?;
        (*standing != Standing::NONE).then_some(standing)
    }

    /// Its standing with `node` to change, and that standing before. The request holds the
    /// node's number from now on: the caller records something.
    #[inline]
    fn line(&mut self, registry: &mut Registry, node: NodeRef) -> (&mut Standing, Standing) {
        let at = node.index();
        if at >= self.0.len() {
            self.0.resize(at + 1, Standing::NONE);
        }
        let standing = &mut self.0[at];
        if *standing == Standing::NONE {
            registry.hold(node);
        }
        let before = *standing;
        (standing, before)
    }

    /// Lets go of every number it holds: the request is over.
    pub(crate) fn release(&self, registry: &mut Registry) {
        for (at, standing) in self.0.iter().enumerate() {
            if *standing != Standing::NONE {
                registry.release(NodeRef::from_index(at));
            }
        }
    }
}

/// Where a request stands with one node, a bit for each fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Standing(u8);

const EXPECTED: u8 = 1;
const REPLIED: u8 = 1 << 1;
const ERRORED: u8 = 1 << 2;
/// It passed the fence without a reply.
const PASSED: u8 = 1 << 3;
/// Awaited no more, it will be reported missing...
const GONE: u8 = 1 << 4;
/// ...because it went offline, rather than being waited out.
const OFFLINE: u8 = 1 << 5;

impl Standing {
    const NONE: Standing = Standing(0);

    fn set(&mut self, bit: u8, on: bool) {
        match on {
            true => self.0 |= bit,
            false => self.0 &= !bit,
        }
    }

    fn is(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    pub(crate) fn expected(self) -> bool {
        self.is(EXPECTED)
    }

    pub(crate) fn replied(self) -> bool {
        self.is(REPLIED)
    }

    pub(crate) fn answered(self) -> bool {
        self.is(REPLIED | ERRORED | PASSED)
    }

    /// `Some(true)` when it was given up as offline, `Some(false)` when waited out.
    pub(crate) fn gone(self) -> Option<bool> {
        self.is(GONE).then_some(self.is(OFFLINE))
    }

    fn set_gone(&mut self, gone: Option<bool>) {
        self.set(GONE, gone.is_some());
        self.set(OFFLINE, gone == Some(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::PingReply;
    use crate::registry::keyed;

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
    fn answered(registry: &mut Registry, expected: &[&str], repliers: &[String]) -> Active {
        let policy = Policy {
            only_successful: true,
            ..Policy::default()
        };
        let expected = expected.iter().map(|n| registry.enter(n)).collect();
        let kind = Kind::Collect(vec![]);
        let mut active = Active::new(kind, policy, Timestamp::ZERO, expected, registry);
        for (i, node) in repliers.iter().enumerate() {
            let reply = pong(node, i % 3 != 0);
            let kept = active.keeps(&reply);
            let number = registry.enter(node);
            let recorded = active.record(registry, number, Answered::Replied { kept });
            assert!(recorded.is_some(), "{node} answered once");
            active.keep_reply(Timestamp::ZERO, reply, kept);
        }
        active
    }

    #[test]
    fn the_ledger_finds_each_node_and_lets_go_of_them_at_the_end() {
        let mut registry = Registry::new(keyed(3));
        let repliers: Vec<String> = (0..500).map(|i| format!("node-{i}")).collect();
        let mut active = answered(&mut registry, &["node-0", "node-1", "absent"], &repliers);
        assert_eq!(
            active.replies.len(),
            500 - 167,
            "the unsuccessful ones dropped"
        );
        assert_eq!((active.answered, active.expected_answered), (500, 2));
        fn standing(active: &Active, registry: &Registry, node: &str) -> Standing {
            active.standing(registry.find(node))
        }
        for node in &repliers {
            assert!(standing(&active, &registry, node).replied(), "{node}");
            assert_eq!(
                standing(&active, &registry, node).expected(),
                node == "node-0" || node == "node-1"
            );
        }
        let number = registry.find("node-9").unwrap();
        let again = active.record(&mut registry, number, Answered::Replied { kept: true });
        assert!(again.is_none(), "a second reply is a duplicate");
        assert!(
            standing(&active, &registry, "absent").expected()
                && !standing(&active, &registry, "absent").answered()
        );
        assert_eq!(standing(&active, &registry, "node-500"), Standing::NONE);
        assert_eq!(active.missing(&registry), ["absent"]);
        // Told of a node after its reply came: expected, and answered already.
        let number = registry.find("node-7").unwrap();
        active.expect(&mut registry, number);
        assert!(standing(&active, &registry, "node-7").expected());
        assert_eq!(active.expected_answered, 3);
        // Over, it holds no number: every node is forgotten.
        active.nodes.release(&mut registry);
        assert_eq!(registry.find("node-7"), None);
        assert_eq!(registry.find("absent"), None);
    }

    #[test]
    fn a_node_expected_twice_has_one_standing_and_one_hold() {
        let mut registry = Registry::new(keyed(3));
        let active = answered(&mut registry, &["a", "b", "a"], &["a".to_owned()]);
        assert!(active.standing(registry.find("a")).replied());
        assert_eq!((active.answered, active.expected_answered), (1, 1));
        let other = answered(&mut registry, &["a"], &[]);
        active.nodes.release(&mut registry);
        assert!(registry.find("a").is_some(), "the other request holds it");
        other.nodes.release(&mut registry);
        assert_eq!(registry.find("a"), None);
    }

    #[test]
    fn a_sequence_remembered_goes_with_its_request() {
        let mut sequences = Sequences::new(keyed(5));
        sequences.insert(7, RequestId(1));
        sequences.insert(8, RequestId(2));
        assert_eq!(sequences.get(7), Some(RequestId(1)));
        assert_eq!(sequences.get(7), Some(RequestId(1)), "remembered");
        assert_eq!(sequences.get(9), None);
        assert_eq!(
            sequences.get(7),
            Some(RequestId(1)),
            "a miss forgets nothing"
        );
        // Completed, its sequence is no one's; given again, it is the new request's.
        sequences.remove(7);
        assert_eq!(sequences.get(7), None);
        assert!(!sequences.contains(7) && sequences.contains(8));
        sequences.insert(7, RequestId(3));
        assert_eq!(sequences.get(7), Some(RequestId(3)));
        assert_eq!(sequences.get(8), Some(RequestId(2)));
    }

    #[test]
    fn a_standing_keeps_each_fact_apart() {
        let mut standing = Standing::NONE;
        standing.set(EXPECTED, true);
        standing.set(PASSED, true);
        assert!(standing.expected() && standing.answered() && !standing.replied());
        standing.set_gone(Some(false));
        assert_eq!(standing.gone(), Some(false));
        standing.set_gone(Some(true));
        assert_eq!(standing.gone(), Some(true));
        standing.set_gone(None);
        assert_eq!(standing.gone(), None);
        standing.set(PASSED, false);
        assert!(standing.expected() && !standing.answered());
    }
}
