//! The researcher core: requests out, replies in, outcomes and events out.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::btree_map::Entry as Slot;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use crate::completion::Answer;
use crate::error::{DecodeError, SubmitError};
use crate::event::{ConnectionState, Event, Mail, Unmatched};
use crate::inflight::{Active, Answered, Kind, Sequences, Unknown};
use crate::message::{Command, Decoded, ErrorMessage, Limits, NodeMessage, Request, Sequence};
use crate::outcome::{Completion, Counters, Outcome, RequestId};
use crate::policy::Policy;
use crate::presence::{self, NoMatch, Presence, Status};
use crate::registry::{keyed, Keyed, NodeMap, NodeRef, Registry};
use crate::time::Timestamp;
use crate::topic::{NodeId, Target};
use crate::version::{Compatibility, ProtocolVersion};

/// How a researcher core is set up.
#[derive(Clone, Debug)]
pub struct ResearcherConfig {
    /// Put in every request; replies addressed to another id are not ours.
    pub researcher_id: String,
    /// The first sequence number. Adapters draw it at random, so that two instances
    /// sharing a researcher id on one broker do not take each other's replies.
    pub first_sequence: Sequence,
    /// Keys the core's hash tables, so peers cannot choose colliding node ids.
    pub hash_seed: u64,
    /// Limits on incoming payloads.
    pub limits: Limits,
    /// How many unmatched messages the mailbox keeps; the oldest are dropped past it.
    pub mailbox_capacity: usize,
    /// How many payload bytes the mailbox keeps; the oldest are dropped past it.
    pub mailbox_bytes: usize,
    /// Nodes without presence heard before (by an earlier process on the same broker, or
    /// named by the user), with how long each took to answer: broadcasts expect them from
    /// the start. `None` when nothing is known: the first broadcast is first contact.
    pub known: Option<Vec<(NodeId, Duration)>>,
}

impl ResearcherConfig {
    /// A configuration with defaults: sequences from 0, 1 MiB payloads, a mailbox of 10,000
    /// messages and 64 MiB.
    pub fn new(researcher_id: impl Into<String>) -> Self {
        ResearcherConfig {
            researcher_id: researcher_id.into(),
            first_sequence: 0,
            hash_seed: 0,
            limits: Limits::default(),
            mailbox_capacity: 10_000,
            mailbox_bytes: 64 << 20,
            known: None,
        }
    }
}

/// A request to submit: what, to whom, and how to collect the replies.
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    /// The message. Its researcher id is replaced by ours.
    pub request: Request,
    /// Who it goes to.
    pub target: Target,
    /// When it is complete.
    pub policy: Policy,
    /// Send the sequence the request carries instead of stamping the next one.
    pub keep_sequence: bool,
}

impl Submission {
    /// `request` to every node, with the default policy.
    pub fn broadcast(request: Request) -> Self {
        Submission {
            request,
            target: Target::All,
            policy: Policy::default(),
            keep_sequence: false,
        }
    }

    /// `request` to these nodes only, with the default policy.
    pub fn to_nodes(request: Request, nodes: Vec<NodeId>) -> Self {
        Submission {
            target: Target::Nodes(nodes),
            ..Submission::broadcast(request)
        }
    }

    /// The same, collected under `policy`.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
}

/// Collecting the unmatched messages of some commands, as Fed-BioMed's `get_responses` and
/// `get_messages` read their queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Collect {
    /// The commands to take; all when empty.
    pub commands: Vec<Command>,
    /// When it is complete: typically Fed-BioMed's rounds, or a deadline alone.
    pub policy: Policy,
    /// Takes only the mail that arrived since this request was submitted, so that replies
    /// to earlier requests are not counted in the answer to a later one.
    pub since: Option<RequestId>,
    /// The nodes expected to answer (those the messages were sent to): with early completion,
    /// it completes once each has sent one of the commands or an error.
    pub expect: Option<Vec<NodeId>>,
    /// The messages went to every node: without `expect`, it expects the nodes known, as a
    /// broadcast does.
    pub broadcast: bool,
}

/// One MQTT publish for the adapter to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The topic.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
    /// A reply to a request safe to ask again (a pong, a list or search reply): the adapter
    /// publishes it at most once (MQTT QoS 0), as Fed-BioMed v4.4 publishes everything. A
    /// researcher that lost it asks again.
    pub at_most_once: bool,
}

impl Transmit {
    /// A publish on `topic`, delivered at the adapter's QoS.
    pub fn new(topic: impl Into<String>, payload: Vec<u8>) -> Self {
        Transmit {
            topic: topic.into(),
            payload,
            at_most_once: false,
        }
    }
}

/// Core-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Unmatched messages dropped from a full mailbox, oldest first.
    pub mailbox_dropped: u64,
    /// Presence statuses refused by decoding.
    pub presence_refused: u64,
    /// Pongs to a fence of a completed request: ours, dropped.
    pub late_fences: u64,
}

/// A node the researcher knows by its presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its latest run.
    pub incarnation: u64,
    /// Its latest status.
    pub status: Status,
    /// When its status last changed, on the core's clock; `None` when the broker kept it
    /// from before we subscribed (a retained status), so when it changed is unknown.
    pub since: Option<Timestamp>,
}

impl Member {
    /// Whether it is online.
    pub fn online(&self) -> bool {
        self.status.is_online()
    }
}

/// A recently completed broadcast or fence: a late pong to it tells how slow its node is.
#[derive(Clone, Copy, Debug)]
struct Recent {
    sequence: Sequence,
    sent: Timestamp,
    broadcast: bool,
    fence: bool,
}

/// Which request in flight a reply belongs to.
enum Match {
    /// A reply to this request.
    Reply(RequestId),
    /// A pong to this request's fence.
    Fence(RequestId),
    /// A pong to this request's primer.
    Primer(RequestId),
}

/// How many kept sequences of completed requests are remembered.
const KEPT_REMEMBERED: usize = 1024;

/// The Sans-IO researcher core.
///
/// - Getters: [`researcher_id`](Self::researcher_id), [`in_flight`](Self::in_flight),
///   [`stats`](Self::stats), [`roster`](Self::roster), [`heard`](Self::heard).
/// - Inputs: [`submit`](Self::submit) a request, [`collect`](Self::collect) unmatched mail,
///   [`handle_publish`](Self::handle_publish) for every MQTT publish received on the
///   researcher's topics ([`handle_retained`](Self::handle_retained) for one the broker sent
///   from its retained store), [`handle_timeout`](Self::handle_timeout) when the clock reaches
///   [`poll_timeout`](Self::poll_timeout), [`handle_connection`](Self::handle_connection) when
///   the connection goes up or down.
/// - Mutators: [`take_mail`](Self::take_mail) drains the mailbox of unmatched messages;
///   [`cancel`](Self::cancel) gives up on a request.
/// - Outputs: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   [`poll_timeout`](Self::poll_timeout).
///
/// Who a request waits for: its targets, or for a broadcast the nodes known (online by
/// presence, heard without it, or [`ResearcherConfig::known`]); a search is fenced (a ping
/// after it: a node's pong with no reply before it means no match) and, where it may reach
/// nodes without presence, primed (a ping before it); nodes nobody knows are met by the
/// first-contact rule ([`FirstContact`](crate::policy::FirstContact)). docs/presence.md has
/// the whole story.
///
/// The run loop's one rule: after every input, publish every transmit, handle every event,
/// then sleep until `poll_timeout()` or the next input, whichever comes first. `now` is always
/// passed in, so the same inputs give the same outputs, byte for byte.
///
/// ```
/// use std::time::Duration;
/// use fedreq_protocol::{Researcher, ResearcherConfig, Request, Submission, Timestamp, Event};
///
/// let mut core = Researcher::new(ResearcherConfig::new("r1"));
/// let id = core.submit(Timestamp::ZERO, Submission::broadcast(Request::ping())).unwrap();
/// let out = core.poll_transmit().unwrap();
/// assert_eq!(out.topic, "general/nodes");
/// // Nobody answers: the quiet period (5 s) completes it.
/// let wake = core.poll_timeout().unwrap();
/// assert_eq!(wake, Timestamp::from_duration(Duration::from_secs(5)));
/// core.handle_timeout(wake);
/// match core.poll_event() {
///     Some(Event::Completed(outcome)) => assert_eq!((outcome.id, outcome.replies.len()), (id, 0)),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
pub struct Researcher {
    config: ResearcherConfig,
    next_id: u64,
    next_sequence: Sequence,
    /// Looked up on every reply: hashed, not ordered. Boxed, the table stays small and each
    /// request lies where it was made, next to the requests made with it.
    requests: HashMap<RequestId, Box<Active>, Keyed>,
    sequences: Sequences,
    /// The one request in flight per command without a sequence.
    busy: BTreeMap<Command, RequestId>,
    /// Requests waiting for their command's turn, oldest first.
    waiting: BTreeMap<Command, VecDeque<RequestId>>,
    /// The last kept sequences of completed requests, to tell late from unknown.
    kept_finished: VecDeque<Sequence>,
    /// The last completed broadcasts and fences, to learn from their late replies.
    recent: VecDeque<Recent>,
    /// The requests in flight to each targeted node, the broadcasts and the collects: an error
    /// or a status finds the requests it concerns without scanning every one.
    by_node: NodeMap<BTreeSet<RequestId>>,
    broadcasts: BTreeSet<RequestId>,
    collects: BTreeSet<RequestId>,
    /// Stray replies and refused payloads, counted per reply command (`None`: no command
    /// known); each request takes the difference between its sending and its completion.
    strays: BTreeMap<Option<Command>, Counters>,
    /// Commands without sequence that have completed at least once, to tell late from unknown.
    finished: BTreeSet<Command>,
    timers: Wakes,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    mailbox: VecDeque<Mail>,
    /// Payload bytes held in the mailbox.
    mailbox_bytes: usize,
    /// Size of the payload being handled, for the mailbox's byte budget.
    arriving: usize,
    stats: Stats,
    /// Nodes by presence, online or not (an offline one's incarnation refuses old statuses).
    roster: BTreeMap<NodeId, Member>,
    /// The members not online: the first forgotten when the roster is full.
    offline: BTreeSet<NodeId>,
    /// When each member last said `online` again, of the run we know: it connected again.
    reconnected: NodeMap<Timestamp>,
    /// Every node a request in flight has a standing with, every member of the roster, and
    /// those without presence that answered a broadcast lately, with how long they took:
    /// expected by the next ones.
    nodes: Registry,
    /// When our connection broke, while it is down.
    disconnected_at: Option<Timestamp>,
    /// Whether it knows who is out there: a broadcast made first contact, or an earlier
    /// process's file says who answered. Until then broadcasts settle, as nodes without
    /// presence nobody told it of may be out there; after, they expect the nodes known.
    knows_federation: bool,
}

impl Researcher {
    /// A core with nothing in flight.
    pub fn new(config: ResearcherConfig) -> Self {
        let keyed = keyed(config.hash_seed);
        let known = config.known.clone();
        // Every map keyed by what the network sends takes the configured seed.
        let mut nodes = Registry::new(keyed.clone());
        let capacity = config.mailbox_capacity;
        for (node, took) in known.iter().flatten() {
            let number = nodes.enter(node);
            nodes.hear(number, *took, true, capacity);
        }
        Researcher {
            next_id: 0,
            next_sequence: config.first_sequence,
            requests: HashMap::with_hasher(keyed.clone()),
            sequences: Sequences::new(keyed.clone()),
            busy: BTreeMap::new(),
            waiting: BTreeMap::new(),
            finished: BTreeSet::new(),
            kept_finished: VecDeque::new(),
            recent: VecDeque::new(),
            by_node: NodeMap::with_hasher(keyed.clone()),
            reconnected: NodeMap::with_hasher(keyed),
            broadcasts: BTreeSet::new(),
            collects: BTreeSet::new(),
            strays: BTreeMap::new(),
            timers: Wakes::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            mailbox: VecDeque::new(),
            mailbox_bytes: 0,
            arriving: 0,
            stats: Stats::default(),
            roster: BTreeMap::new(),
            offline: BTreeSet::new(),
            disconnected_at: None,
            // Known nodes without presence, or nothing known at all: broadcasts settle.
            knows_federation: known.is_some(),
            nodes,
            config,
        }
    }

    /// Our researcher id.
    pub fn researcher_id(&self) -> &str {
        &self.config.researcher_id
    }

    /// Requests submitted and not yet completed (including those waiting their turn).
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Core-wide counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Every node known by its presence, online or not.
    pub fn roster(&self) -> &BTreeMap<NodeId, Member> {
        &self.roster
    }

    /// The nodes without presence heard lately, with how long each took to answer.
    pub fn heard(&self) -> BTreeMap<NodeId, Duration> {
        self.nodes
            .heard()
            .map(|(_, node, took)| (node.to_owned(), took))
            .collect()
    }

    /// What an adapter keeps for the next process ([`ResearcherConfig::known`]): the nodes
    /// heard without presence, with how long each took, and those online by presence (no
    /// time: a broker may not give the next process their statuses, as RabbitMQ's does not
    /// on a wildcard subscription; where it does, each status takes over).
    pub fn known(&self) -> BTreeMap<NodeId, Duration> {
        let online = self.roster.iter().filter(|(_, m)| m.online());
        let online = online.map(|(node, _)| (node.clone(), Duration::ZERO));
        online.chain(self.heard()).collect()
    }

    /// The nodes a broadcast by presence expects: those online, then those without presence
    /// heard lately.
    pub fn expected_by_broadcast(&self) -> Vec<NodeId> {
        let online = self.roster.iter().filter(|(_, m)| m.online());
        let heard = self.heard_by_id().into_iter().map(|(_, node, _)| node);
        let online = online.map(|(node, _)| node.as_str());
        online.chain(heard).map(str::to_owned).collect()
    }

    /// The nodes heard, with their numbers and how long each took, in the order of their ids.
    fn heard_by_id(&self) -> Vec<(NodeRef, &str, Duration)> {
        let mut heard: Vec<_> = self.nodes.heard().collect();
        heard.sort_unstable_by_key(|&(_, node, _)| node);
        heard
    }

    /// Who a request to `targets` (every node when `None`) expects under `policy`, by their
    /// numbers (given now to those without), and how it treats nodes nobody told it about.
    fn expectations(
        &mut self,
        targets: Option<&[NodeId]>,
        policy: &Policy,
    ) -> (Vec<NodeRef>, Vec<(NodeId, Duration)>, Unknown) {
        let nodes = &mut self.nodes;
        let mut enter = |ids: &[NodeId]| ids.iter().map(|node| nodes.enter(node)).collect();
        match (targets, &policy.roster) {
            (Some(targets), _) => (enter(targets), Vec::new(), Unknown::Ignored),
            (None, Some(roster)) => (enter(&dedup(roster)), Vec::new(), Unknown::Ignored),
            (None, None) if !policy.expect_online => (Vec::new(), Vec::new(), Unknown::Ignored),
            (None, None) => {
                // As `expected_by_broadcast`: those online, then those heard.
                let online = self.roster.iter().filter(|(_, m)| m.online());
                let mut expected: Vec<NodeRef> =
                    online.map(|(node, _)| self.nodes.enter(node)).collect();
                let heard = self.heard_by_id();
                expected.extend(heard.iter().map(|&(number, ..)| number));
                let wait = |took| policy.first_contact.wait_for(took, policy.timeout);
                let unsure = heard
                    .iter()
                    .map(|&(_, node, took)| (node.to_owned(), wait(took)));
                let mut unsure: Vec<(NodeId, Duration)> = unsure.collect();
                unsure.sort_by_key(|&(_, wait)| wait);
                let unknown = match self.knows_federation {
                    true => Unknown::Known,
                    false => Unknown::Settles,
                };
                (expected, unsure, unknown)
            }
        }
    }

    /// Queues a request: stamps our researcher id and, where the command has one, the next
    /// sequence number. A command without sequence waits until the previous request of the
    /// same command completes.
    pub fn submit(
        &mut self,
        now: Timestamp,
        submission: Submission,
    ) -> Result<RequestId, SubmitError> {
        self.handle_timeout(now);
        let Submission {
            mut request,
            target,
            policy,
            keep_sequence,
        } = submission;
        target.topics()?;
        let command = request.command();
        request.set_researcher_id(&self.config.researcher_id);
        let sequence = match request.sequence_mut() {
            Some(slot) if keep_sequence => {
                if self.sequences.contains(*slot) {
                    return Err(SubmitError::SequenceInUse(*slot));
                }
                Some(*slot)
            }
            Some(slot) => {
                *slot = self.next_sequence();
                Some(*slot)
            }
            None => None,
        };
        // What the peer would refuse unparsed, we do not send.
        let payload = request.encode();
        if payload.len() > self.config.limits.max_payload {
            return Err(SubmitError::TooLarge {
                size: payload.len(),
                limit: self.config.limits.max_payload,
            });
        }

        let targets = target.nodes().map(dedup);
        // A targeted request expects its targets; a broadcast, the caller's roster, else the
        // nodes known (online by presence, heard without it), and settles for the others.
        let (expected, unsure, unknown) = self.expectations(targets.as_deref(), &policy);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let kind = Kind::Sent {
            command,
            request: Box::new(request),
            payload,
        };
        let active = Active {
            sequence,
            targets,
            unsure,
            unknown,
            ..Active::new(kind, policy, now, expected, &mut self.nodes)
        };
        self.index(id, &active);
        self.requests.insert(id, Box::new(active));
        if let Some(sequence) = sequence {
            self.sequences.insert(sequence, id);
            self.send(id, now);
        } else if let Slot::Vacant(slot) = self.busy.entry(command) {
            slot.insert(id);
            self.send(id, now);
        } else {
            self.waiting.entry(command).or_default().push_back(id);
            self.reschedule(id);
        }
        Ok(id)
    }

    /// Starts collecting, under `collect.policy`, the messages of `collect.commands` that no
    /// request takes (as Fed-BioMed's `get_responses` reads its queue): first those waiting in
    /// the mailbox, then those that arrive. Completes like any request, with no target.
    pub fn collect(&mut self, now: Timestamp, collect: Collect) -> RequestId {
        self.handle_timeout(now);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let targets = collect.expect.as_deref().map(dedup);
        let (expected, unsure, unknown) = match (targets, collect.broadcast) {
            (None, true) => self.expectations(None, &collect.policy),
            (targets, _) => {
                let targets = targets.unwrap_or_default();
                self.expectations(Some(&targets), &collect.policy)
            }
        };
        let kind = Kind::Collect(collect.commands);
        let mut active = Active {
            unsure,
            unknown,
            ..Active::new(kind, collect.policy, now, expected, &mut self.nodes)
        };
        active.start(now);
        self.collects.insert(id);
        // Collecting what a node may leave unanswered (a search's replies): a fence now still
        // follows the request on each node's way, and tells who has no match.
        let fenced = active.policy.early
            && (active.by_presence() || !active.expected.is_empty())
            && matches!(&active.kind, Kind::Collect(c) if c.iter().any(|c| c.may_go_unanswered()));
        if fenced {
            let sequence = self.probe(id);
            active.fence = Some(sequence);
            let topics = match active.by_presence() {
                true => Target::All.topics(),
                false => {
                    let expected = active.expected.iter().map(|&n| self.nodes.id(n).to_owned());
                    Target::Nodes(expected.collect()).topics()
                }
            };
            let ping = self.ping(sequence);
            for topic in topics.unwrap_or_default() {
                self.transmits.push_back(Transmit::new(topic, ping.clone()));
            }
        }
        let since = collect.since.map_or(0, |id| id.0 + 1);
        let (taken, kept): (VecDeque<Mail>, VecDeque<Mail>) = std::mem::take(&mut self.mailbox)
            .into_iter()
            .partition(|m| {
                m.reason != Unmatched::Foreign
                    && m.after >= since
                    && active.collects(m.message.command())
            });
        self.mailbox = kept;
        self.mailbox_bytes -= taken.iter().map(|m| m.size).sum::<usize>();
        for mail in taken {
            active.keep(now, mail.message, &mut self.nodes);
        }
        // What waited in the mailbox is news of the first round; the quiet period starts now.
        active.last_reply = now;
        let done = active.on_answer(now, Answer::Reply);
        self.requests.insert(id, Box::new(active));
        match done {
            Some(completion) => self.complete(id, now, completion),
            None => self.reschedule(id),
        }
        id
    }

    /// Takes one MQTT publish received on `general/researcher`, `general/logger`,
    /// `general/monitoring` or the presence topics. Nothing in the payload can make it fail
    /// or panic.
    pub fn handle_publish(&mut self, now: Timestamp, topic: &str, payload: &[u8]) {
        self.receive(now, topic, payload, false);
    }

    /// The same, for a publish the broker sent from its store of retained messages (MQTT's
    /// retain flag on delivery): a status received so changed before we subscribed, at a
    /// time nobody knows.
    pub fn handle_retained(&mut self, now: Timestamp, topic: &str, payload: &[u8]) {
        self.receive(now, topic, payload, true);
    }

    fn receive(&mut self, now: Timestamp, topic: &str, payload: &[u8], retained: bool) {
        // A reply can only count for requests still in flight at its arrival.
        self.handle_timeout(now);
        if topic.starts_with(presence::PREFIX) || topic.starts_with(presence::PROBED) {
            return self.on_presence(now, topic, payload, retained);
        }
        if topic == presence::NO_MATCH {
            return self.on_no_match(now, topic, payload);
        }
        self.arriving = payload.len();
        // Taken apart as it leaves the result: moving the whole `Decoded` first copied its
        // 136 bytes through a call to memcpy on every reply.
        let (message, compatibility) = match NodeMessage::decode(payload, &self.config.limits) {
            Ok(Decoded {
                message,
                compatibility,
            }) => (message, compatibility),
            Err(error) => return self.on_malformed(topic, error),
        };
        if let Compatibility::Older(version) = compatibility {
            self.on_older(&message, version);
        }
        match message {
            message @ (NodeMessage::Log(_) | NodeMessage::AddScalar(_) | NodeMessage::Error(_)) => {
                self.on_notice(now, message)
            }
            message if message.researcher_id() != self.config.researcher_id => {
                self.on_foreign(now, message)
            }
            message => self.on_reply(now, message),
        }
    }

    // What is not a reply to us is kept out of line: the code a reply runs stays compact.

    #[cold]
    fn on_malformed(&mut self, topic: &str, error: DecodeError) {
        self.strays.entry(error.command()).or_default().malformed += 1;
        let topic = topic.to_owned();
        self.events.push_back(Event::Rejected { topic, error });
    }

    #[cold]
    fn on_older(&mut self, message: &NodeMessage, version: ProtocolVersion) {
        self.events.push_back(Event::OlderVersion {
            node_id: message.node_id().to_owned(),
            version,
        });
    }

    /// A log, a monitoring scalar or an error: the last two for us or for another researcher.
    #[inline(never)]
    fn on_notice(&mut self, now: Timestamp, message: NodeMessage) {
        match message {
            NodeMessage::Log(log) => self.events.push_back(Event::Log(log.into())),
            NodeMessage::AddScalar(scalar) if scalar.researcher_id == self.config.researcher_id => {
                self.events.push_back(Event::Monitoring(*scalar))
            }
            NodeMessage::Error(error) if error.is_for(&self.config.researcher_id) => {
                self.on_error(now, error)
            }
            message => self.on_foreign(now, message),
        }
    }

    /// A message for another researcher, counted by the request it would have matched.
    #[inline(never)]
    fn on_foreign(&mut self, now: Timestamp, message: NodeMessage) {
        let found = candidate(
            &mut self.requests,
            &mut self.sequences,
            &self.busy,
            &message,
        );
        if let Some((Match::Reply(_), active)) = found {
            active.counters.foreign += 1;
        }
        self.post(now, Unmatched::Foreign, message);
    }

    /// Takes a change of the adapter's connection state, reported as an event. Requests in
    /// flight go on under their timers; only the return windows of nodes that went offline
    /// wait while the connection is down.
    pub fn handle_connection(&mut self, now: Timestamp, state: ConnectionState) {
        self.handle_timeout(now);
        let up = state == ConnectionState::Connected;
        if up {
            self.probe_presence();
        }
        self.on_own_connection(now, up);
        self.events.push_back(Event::Connection(state));
    }

    /// Asks every node that announces itself to say its status again, live: where the broker
    /// does not deliver retained statuses on our wildcard subscription (RabbitMQ), or kept
    /// them on another member of its cluster, the answers make the roster. Call it once
    /// subscribed, as [`handle_connection`](Self::handle_connection) does on each connection.
    pub fn probe_presence(&mut self) {
        // Who asked, for whoever watches the broker; nodes do not read it.
        let probe = serde_json::json!({ "researcher_id": self.config.researcher_id });
        self.transmits.push_back(Transmit {
            at_most_once: true,
            ..Transmit::new(presence::PROBE, probe.to_string().into_bytes())
        });
    }

    /// Fires every timer due at `now`. Call it when the clock reaches [`poll_timeout`](Self::poll_timeout);
    /// calling it at other times is harmless.
    #[inline]
    pub fn handle_timeout(&mut self, now: Timestamp) {
        // Every message asks first; a timer is rarely due.
        if self.timers.earliest().is_some_and(|at| at <= now) {
            self.fire_due(now);
        }
    }

    fn fire_due(&mut self, now: Timestamp) {
        while let Some((at, id)) = self
            .timers
            .pop_due(now, |at, id| holds(&self.requests, at, id))
        {
            // Judged at the timer's own instant, so a late call changes no outcome.
            let active = self
                .requests
                .get_mut(&id)
                .expect("timers name requests in flight");
            active.wake = None;
            match active.expire(at, &self.nodes) {
                Some(completion) => self.complete(id, at, completion),
                None => self.reschedule(id),
            }
        }
    }

    /// Gives up on a request in flight (its caller stopped waiting): it completes now as
    /// [`Completion::Cancelled`], and the next request of its command goes out. Returns
    /// whether it was in flight.
    pub fn cancel(&mut self, now: Timestamp, id: RequestId) -> bool {
        self.handle_timeout(now);
        let in_flight = self.requests.contains_key(&id);
        if in_flight {
            self.complete(id, now, Completion::Cancelled);
        }
        in_flight
    }

    /// The next publish to make.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next; `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.earliest()
    }

    /// Takes the unmatched messages of these commands (all when `commands` is empty),
    /// oldest first, leaving the others in the mailbox.
    pub fn take_mail(&mut self, commands: &[Command]) -> Vec<Mail> {
        let (taken, kept): (VecDeque<Mail>, VecDeque<Mail>) = std::mem::take(&mut self.mailbox)
            .into_iter()
            .partition(|m| commands.is_empty() || commands.contains(&m.message.command()));
        self.mailbox = kept;
        self.mailbox_bytes -= taken.iter().map(|m| m.size).sum::<usize>();
        taken.into()
    }

    fn active(&mut self, id: RequestId) -> &mut Active {
        self.requests
            .get_mut(&id)
            .expect("timers and indexes only name requests in flight")
    }

    fn on_reply(&mut self, now: Timestamp, reply: NodeMessage) {
        let found = candidate(&mut self.requests, &mut self.sequences, &self.busy, &reply);
        let (id, active) = match found {
            Some((Match::Reply(id), active)) => (id, active),
            Some((Match::Fence(id), _)) => return self.on_fence(now, id, reply.node_id()),
            Some((Match::Primer(id), _)) => return self.on_primer(now, id, reply.node_id()),
            None => return self.on_stray_reply(now, reply),
        };
        let node = reply.node_id();
        let Some(number) = active.reaches(&mut self.nodes, node) else {
            active.counters.not_targeted += 1;
            return self.post(now, Unmatched::NotTargeted, reply);
        };
        if active.answered == 0 && active.by_presence() {
            let online = self.roster.len() - self.offline.len();
            active.reserve(self.nodes.heard_len() + online, &self.nodes);
        }
        // A reply after its node passed the fence (a broker that reordered, a redelivery)
        // is kept: the node has answered already.
        let kept = active.keeps(&reply);
        let Some(before) = active.record(&mut self.nodes, number, Answered::Replied { kept })
        else {
            active.counters.duplicates += 1;
            return;
        };
        // How long a node without presence took: a node expected is online or known already.
        if active.by_presence() {
            let took = now - active.sent.unwrap_or(now);
            let (roster, capacity) = (&self.roster, self.config.mailbox_capacity);
            let meet = !before.expected();
            hear(
                &mut self.nodes,
                roster,
                capacity,
                (number, node),
                took,
                meet,
            );
        }
        active.keep_reply(now, reply, kept);
        let completion = active.on_answer(now, Answer::Reply);
        let wake_holds = completion.is_none() && active.wake_holds_after_reply();
        match completion {
            Some(completion) => self.complete(id, now, completion),
            None if wake_holds => {}
            None => self.reschedule(id),
        }
    }

    /// `node` passed the fence of request `id`, or said it has nothing for it: whatever it had
    /// for the request came before.
    fn on_fence(&mut self, now: Timestamp, id: RequestId, node: &str) {
        let active = self
            .requests
            .get_mut(&id)
            .expect("fences name requests in flight");
        let Some(number) = active.reaches(&mut self.nodes, node) else {
            return;
        };
        // Its reply came first: the fence tells nothing new.
        if active.standing(Some(number)).answered() {
            return self.nodes.forget_if_unused(number);
        }
        active.first_probe.get_or_insert(now);
        active.record(&mut self.nodes, number, Answered::Passed);
        active.last_reply = now;
        let learn = active
            .by_presence()
            .then(|| now - active.sent.unwrap_or(now));
        if let Some(took) = learn {
            self.hear(number, node, took);
        }
        match self.active(id).on_answer(now, Answer::Reply) {
            Some(completion) => self.complete(id, now, completion),
            None => self.reschedule(id),
        }
    }

    /// A node said our search found nothing on it: it answered, as one that passed the
    /// fence. The word is for the search in flight with the same tags (searches carry no
    /// sequence; any search of those tags has the same answer).
    #[inline(never)]
    fn on_no_match(&mut self, now: Timestamp, topic: &str, payload: &[u8]) {
        let no_match = match NoMatch::decode(payload, &self.config.limits) {
            Ok(no_match) => no_match,
            Err(error) => {
                self.strays
                    .entry(Some(Command::Search))
                    .or_default()
                    .malformed += 1;
                let topic = topic.to_owned();
                return self.events.push_back(Event::Rejected { topic, error });
            }
        };
        if no_match.researcher_id != self.config.researcher_id {
            return;
        }
        let searching = self.busy.get(&Command::Search).copied().filter(|id| {
            let active = &self.requests[id];
            let tags = match &active.kind {
                Kind::Sent { request, .. } => match request.as_ref() {
                    Request::Search(search) => Some(&search.tags),
                    _ => None,
                },
                Kind::Collect(_) => None,
            };
            active.sent.is_some() && tags == Some(&no_match.tags)
        });
        match searching {
            Some(id) => self.on_fence(now, id, &no_match.node_id),
            None => self.strays.entry(Some(Command::Search)).or_default().late += 1,
        }
    }

    /// `node` answered the primer of request `id`: it is out there, and a broadcast awaits its
    /// answer (a reply, or its fence passed) for the first-contact window's longest wait after
    /// its pong (a search may take the node a while), so a forged pong costs no more than that.
    #[inline(never)]
    fn on_primer(&mut self, now: Timestamp, id: RequestId, node: &str) {
        let capacity = self.config.mailbox_capacity;
        let active = self
            .requests
            .get_mut(&id)
            .expect("primers name requests in flight");
        let Some(number) = active.reaches(&mut self.nodes, node) else {
            return;
        };
        active.first_probe.get_or_insert(now);
        let newcomer = active.by_presence()
            && active.expected.len() < capacity
            && !active.standing(Some(number)).expected();
        if !newcomer {
            return self.nodes.forget_if_unused(number);
        }
        active.met_unexpected = true;
        active.expect(&mut self.nodes, number);
        let took = now - active.sent.unwrap_or(now);
        let wait = (took + active.policy.first_contact.max).min(active.policy.timeout);
        let at = active.unsure.partition_point(|&(_, w)| w <= wait);
        active.unsure.insert(at, (node.to_owned(), wait));
        self.hear(number, node, took);
        self.reschedule(id);
    }

    /// A reply for us that no request in flight takes: late or unknown, counted by the
    /// requests in flight of the same command, and kept in the mailbox. A late reply to a
    /// recent broadcast makes its node known; a late pong to a fence is ours, and dropped.
    #[inline(never)]
    fn on_stray_reply(&mut self, now: Timestamp, reply: NodeMessage) {
        let command = reply.command();
        let late = match reply.sequence() {
            Some(sequence) => self.issued(sequence),
            None => self.finished.contains(&request_of(command)),
        };
        let counters = self.strays.entry(Some(command)).or_default();
        match late {
            true => counters.late += 1,
            false => counters.wrong_sequence += 1,
        }
        if !late {
            return self.post(now, Unmatched::Unknown, reply);
        }
        let recent = reply
            .sequence()
            .and_then(|s| self.recent.iter().find(|r| r.sequence == s).copied());
        if let Some(recent) = recent {
            // A node without presence, slower than the broadcast waited: the next ones expect it.
            if recent.broadcast {
                let node = reply.node_id();
                let number = self.nodes.enter(node);
                self.hear(number, node, now - recent.sent);
            }
            if recent.fence {
                self.stats.late_fences += 1;
                return;
            }
        }
        self.post(now, Unmatched::Late, reply);
    }

    /// A node's `error` answers one request: the oldest in flight to that node that it has not
    /// answered (errors carry no sequence). One meant for nobody in particular, or about a
    /// message the node could not read, answers none: someone else may have caused it.
    fn on_error(&mut self, now: Timestamp, error: ErrorMessage) {
        self.events.push_back(Event::NodeError(error.clone()));
        let node = error.node_id.as_str();
        let number = self.nodes.find(node);
        let to_node = self.by_node.get(node).into_iter().flatten();
        let about = match error.is_for_anyone() {
            true => None,
            false => merged(to_node, &self.broadcasts).find(|id| {
                let active = &self.requests[id];
                active.sent.is_some()
                    && active.targets(number)
                    && !active.standing(number).answered()
            }),
        };
        let Some(id) = about else {
            return self.post(now, Unmatched::Unknown, NodeMessage::Error(error));
        };
        let number = self.nodes.enter(node);
        let active = self.requests.get_mut(&id).expect("found in flight");
        active.record(&mut self.nodes, number, Answered::Errored);
        active.errors.push(error);
        active.note_activity(now);
        match active.on_answer(now, Answer::Error) {
            Some(completion) => self.complete(id, now, completion),
            None => self.reschedule(id),
        }
    }

    /// A node's status. A newer run replaces what was known; within a run, each change
    /// counts: its will says `offline` whenever its connection breaks (a broker restart fires
    /// every will), and it says `online` again on its next session. A node that goes offline is
    /// awaited by the requests in flight for their return window; one that stopped, or came
    /// back as a new run, is awaited no more.
    #[inline(never)]
    fn on_presence(&mut self, now: Timestamp, topic: &str, payload: &[u8], retained: bool) {
        let presence = match Presence::decode(topic, payload, &self.config.limits) {
            Ok(presence) => presence,
            Err(error) => {
                self.stats.presence_refused += 1;
                return self.events.push_back(Event::Rejected {
                    topic: topic.to_owned(),
                    error,
                });
            }
        };
        let node = presence.node_id.as_str();
        let known = self.roster.get(node);
        let restarted = known.is_some_and(|known| presence.incarnation > known.incarnation);
        let newer = known.is_none_or(|known| {
            restarted
                || (presence.incarnation == known.incarnation && known.status != presence.status)
        });
        if !newer {
            // Said again as it was published, not to answer a probe: it connected again,
            // perhaps on a new session (another member of a cluster) without what was queued.
            let said_again = !retained && topic.starts_with(presence::PREFIX);
            if said_again && presence.status.is_online() {
                // What was sent since it last said so: a status repeated (anyone may publish
                // one) asks each request again once at most.
                let last = self.reconnected.insert(node.to_owned(), now);
                self.resend_to(now, node, last, now, false);
            }
            return;
        }
        // Bounded: past the mailbox's capacity, offline members are forgotten first; a roster
        // full of online members takes no newcomer.
        if self.roster.len() >= self.config.mailbox_capacity && !self.roster.contains_key(node) {
            match self.offline.pop_first() {
                Some(node) => {
                    self.roster.remove(&node);
                    self.reconnected.remove(&node);
                    if let Some(number) = self.nodes.find(&node) {
                        self.nodes.release(number);
                    }
                }
                None => return,
            }
        }
        match presence.status.is_online() {
            true => _ = self.offline.remove(node),
            false => _ = self.offline.insert(node.to_owned()),
        }
        let member = Member {
            incarnation: presence.incarnation,
            status: presence.status,
            since: (!retained).then_some(now),
        };
        // Online, it is expected by presence; gone, by nobody. A retained offline status
        // may be older than what an earlier process heard of the node: that still counts,
        // unless that process knew it only by presence (no time), which this status follows.
        let only_by_presence = self.nodes.heard_took(node).is_some_and(|t| t.is_zero());
        if !retained || presence.status.is_online() || only_by_presence {
            self.nodes.unhear(node);
        }
        let before = self.roster.insert(presence.node_id.clone(), member);
        if before.is_none() {
            // A member keeps its number: each broadcast finds it rather than meeting it again.
            let number = self.nodes.enter(node);
            self.nodes.hold(number);
        }
        self.events.push_back(Event::Presence(presence.clone()));
        let node = presence.node_id.as_str();
        match presence.status {
            Status::Online if restarted => self.on_restart(now, node, presence.incarnation),
            Status::Online => self.on_back(node),
            Status::Offline => self.on_gone(now, node),
            Status::Stopped => self.give_up_on(now, node),
        }
    }

    /// The requests in flight that may await `node`: those targeting it, and the broadcasts.
    fn concerning(&self, node: &str) -> Vec<RequestId> {
        let to_node = self.by_node.get(node).into_iter().flatten();
        merged(to_node, &self.broadcasts)
            .chain(self.collects.iter().copied())
            .collect()
    }

    /// Every request in flight awaiting `node`, which went offline, awaits it `return_window`
    /// more: its connection may only have broken.
    fn on_gone(&mut self, now: Timestamp, node: &str) {
        let number = self.nodes.find(node);
        for id in self.concerning(node) {
            let active = self.active(id);
            if active.awaits_unwarned(number, node) {
                active.leaving.push((node.to_owned(), Some(now)));
                self.reschedule(id);
            }
        }
    }

    /// `node` is online again: the requests awaiting its return await it as before.
    fn on_back(&mut self, node: &str) {
        for id in self.concerning(node) {
            self.active(id).leaving.retain(|(n, _)| n != node);
        }
    }

    /// `node` is back as a new run, started at `incarnation` (nanoseconds since the Unix
    /// epoch, as our clock). What was sent before that went to the old run and is lost with
    /// it (a new run ends the session of a dead one): a request safe to repeat is sent to the
    /// new run, another reports the node missing now. What was sent since, the new run got: it
    /// is awaited, even if given up already (its status said `stopped` when the request left).
    fn on_restart(&mut self, now: Timestamp, node: &str, incarnation: u64) {
        let started = Timestamp::from_duration(Duration::from_nanos(incarnation));
        self.reconnected.remove(node);
        self.resend_to(now, node, None, started, true);
    }

    /// `node` may have lost what it was sent before `since` (it restarted, or took a new
    /// session): every request awaiting it from before (and after `after`, when given) asks
    /// it again what is safe to repeat; the rest waits its timeout, unless `lost` (a new run:
    /// it never ran them), which reports the node missing at once.
    fn resend_to(
        &mut self,
        now: Timestamp,
        node: &str,
        after: Option<Timestamp>,
        since: Timestamp,
        lost: bool,
    ) {
        for id in self.concerning(node) {
            // Completing one may send the next of its command, which may end at once.
            let Some(active) = self.requests.get_mut(&id) else {
                continue;
            };
            let number = self.nodes.find(node);
            let standing = active.standing(number);
            let unanswered = active.sent.is_some() && standing.expected() && !standing.answered();
            let asked_again = active
                .sent
                .zip(after)
                .is_some_and(|(sent, after)| sent <= after);
            if !unanswered || asked_again {
                continue;
            }
            active.leaving.retain(|(n, _)| n != node);
            if active.sent.is_some_and(|sent| sent > since) {
                active.await_again(number);
            } else if active.command().is_some_and(Command::is_safe_to_repeat) {
                active.await_again(number);
                let topics = Target::Nodes(vec![node.to_owned()]).topics();
                self.transmit(id, topics.unwrap_or_default());
            } else if lost {
                active.give_up(number, node, true);
                if let Some(completion) = active.on_answer(now, Answer::Gone) {
                    self.complete(id, now, completion);
                    continue;
                }
            }
            self.reschedule(id);
        }
    }

    /// `node` stopped: what it was asked is lost, so every request awaiting it reports it
    /// missing now.
    fn give_up_on(&mut self, now: Timestamp, node: &str) {
        for id in self.concerning(node) {
            // Completing one may send the next of its command, which may end at once.
            let Some(active) = self.requests.get_mut(&id) else {
                continue;
            };
            let number = self.nodes.find(node);
            if !active.awaits(number) {
                continue;
            }
            active.give_up(number, node, true);
            match active.on_answer(now, Answer::Gone) {
                Some(completion) => self.complete(id, now, completion),
                None => self.reschedule(id),
            }
        }
    }

    /// A request to nodes the roster shows offline: one that stopped, or whose status dates
    /// from before we subscribed, is missing at once; one that went offline while we listened
    /// is awaited until its return window, counted from then, ends.
    fn await_offline_targets(&mut self, id: RequestId) {
        let active = &self.requests[&id];
        let Some(targets) = &active.targets else {
            return;
        };
        let offline: Vec<(NodeId, Option<Timestamp>)> = targets
            .iter()
            .filter_map(|node| {
                let member = self.roster.get(node).filter(|m| !m.online())?;
                let since = member.since.filter(|_| member.status == Status::Offline);
                Some((node.clone(), since))
            })
            .collect();
        let active = self.requests.get_mut(&id).expect("sent in flight");
        for (node, since) in offline {
            match since {
                Some(since) => active.leaving.push((node, Some(since))),
                None => active.give_up(self.nodes.find(&node), &node, true),
            }
        }
    }

    /// Our connection went down (`false`) or came back: the return windows of the nodes that
    /// went offline stop, or start again from `now`, as they are counted while we can hear them.
    /// Back, a request safe to repeat that went out before the break is sent again to whom has
    /// not answered: replies published at most once (pongs) while we were away are lost.
    fn on_own_connection(&mut self, now: Timestamp, up: bool) {
        let broke_at = self.disconnected_at.take();
        if !up {
            self.disconnected_at = Some(broke_at.unwrap_or(now));
        }
        let mut ids: Vec<RequestId> = self.requests.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let active = self.requests.get_mut(&id).expect("listed in flight");
            for (_, since) in &mut active.leaving {
                *since = up.then_some(now);
            }
            let before_break = broke_at.is_some_and(|at| active.sent.is_some_and(|s| s <= at));
            if up && before_break && active.command().is_some_and(Command::is_safe_to_repeat) {
                let topics = match &active.targets {
                    None => Target::All.topics(),
                    Some(targets) => {
                        let awaits = |n: &&NodeId| active.awaits(self.nodes.find(n));
                        let unanswered = targets.iter().filter(awaits).cloned();
                        Target::Nodes(unanswered.collect()).topics()
                    }
                };
                self.transmit(id, topics.unwrap_or_default());
            }
            self.reschedule(id);
        }
    }

    /// Remembers a node without presence that answered a broadcast `took` after it was sent,
    /// bounded like the mailbox: from now on broadcasts expect it.
    fn hear(&mut self, number: NodeRef, node: &str, took: Duration) {
        let (roster, capacity) = (&self.roster, self.config.mailbox_capacity);
        hear(
            &mut self.nodes,
            roster,
            capacity,
            (number, node),
            took,
            true,
        );
    }

    /// Whether `sequence` was sent by this core on an earlier request: stamped by it, or one
    /// of the last kept sequences.
    fn issued(&self, sequence: Sequence) -> bool {
        self.stamped(sequence) || self.kept_finished.contains(&sequence)
    }

    fn stamped(&self, sequence: Sequence) -> bool {
        let first = self.config.first_sequence;
        sequence.wrapping_sub(first) < self.next_sequence.wrapping_sub(first)
    }

    /// The next sequence number of ours, skipping those a kept sequence holds, or held lately.
    fn next_sequence(&mut self) -> Sequence {
        while self.sequences.contains(self.next_sequence)
            || self.kept_finished.contains(&self.next_sequence)
        {
            self.next_sequence = self.next_sequence.wrapping_add(1);
        }
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        sequence
    }

    /// A message no request takes: to the oldest collect that wants it, else to the mailbox.
    fn post(&mut self, now: Timestamp, reason: Unmatched, message: NodeMessage) {
        if reason != Unmatched::Foreign {
            let collect = self
                .collects
                .iter()
                .find(|id| self.requests[id].collects(message.command()))
                .copied();
            if let Some(id) = collect {
                let active = self.requests.get_mut(&id).expect("collects are in flight");
                active.keep(now, message, &mut self.nodes);
                return match active.on_answer(now, Answer::Reply) {
                    Some(completion) => self.complete(id, now, completion),
                    None => self.reschedule(id),
                };
            }
        }
        self.events.push_back(Event::Unmatched {
            reason,
            command: message.command(),
            node_id: message.node_id().to_owned(),
        });
        let size = self.arriving;
        self.mailbox_bytes += size;
        self.mailbox.push_back(Mail {
            reason,
            message,
            at: now,
            after: self.next_id,
            size,
        });
        while self.mailbox.len() > self.config.mailbox_capacity
            || self.mailbox_bytes > self.config.mailbox_bytes
        {
            let Some(dropped) = self.mailbox.pop_front() else {
                break;
            };
            self.mailbox_bytes -= dropped.size;
            self.stats.mailbox_dropped += 1;
        }
    }

    /// The stray counters a request of `reply` command shares: its own, and the refused
    /// payloads whose command nobody could tell.
    fn strays_of(&self, reply: Option<Command>) -> Counters {
        let mut counters = self.strays.get(&reply).copied().unwrap_or_default();
        if reply.is_some() {
            counters.malformed += self.strays.get(&None).map_or(0, |c| c.malformed);
        }
        counters
    }

    /// Publishes a request, and its fence when a node may leave it unanswered; starts its
    /// timers.
    fn send(&mut self, id: RequestId, now: Timestamp) {
        let strays = self.strays_of(self.requests[&id].reply_command());
        let fenced = {
            let active = &self.requests[&id];
            active.policy.early && active.command().is_some_and(Command::may_go_unanswered)
        };
        // Nodes that announce themselves say when they have nothing: only nodes that may be
        // v4.4's need the fence, and its primer.
        let fenced = fenced && self.may_meet_v44(&self.requests[&id]);
        let fence = fenced.then(|| self.probe(id));
        let primer = fenced.then(|| self.probe(id));
        let active = self.active(id);
        active.start(now);
        active.strays_at_send = strays;
        active.fence = fence;
        active.primer = primer;
        let topics = match &active.targets {
            None => Target::All.topics(),
            Some(nodes) => Target::Nodes(nodes.clone()).topics(),
        };
        // Validated at submission.
        self.transmit(id, topics.unwrap_or_default());
        self.await_offline_targets(id);
        match self.active(id).on_answer(now, Answer::Gone) {
            Some(completion) => self.complete(id, now, completion),
            None => self.reschedule(id),
        }
    }

    /// Whether a fenced request may reach nodes that announce nothing (Fed-BioMed v4.4's):
    /// a broadcast while one may be out there, a roster given, or a target not online.
    fn may_meet_v44(&self, active: &Active) -> bool {
        let without_presence = |node: &str| !self.roster.get(node).is_some_and(Member::online);
        match (&active.targets, active.unknown) {
            (Some(targets), _) => targets.iter().any(|node| without_presence(node)),
            (None, Unknown::Ignored | Unknown::Known) => {
                let mut expected = active.expected.iter();
                expected.any(|&node| without_presence(self.nodes.id(node)))
            }
            (None, Unknown::Settles) => true,
        }
    }

    /// Publishes request `id` on `topics`, each preceded by its primer and followed by its
    /// fence if it has them.
    ///
    /// Why a primer: a broker without `TCP_NODELAY` (mosquitto's default) holds a small
    /// write to a node until the node acknowledged the one before, and a node that sends
    /// nothing back (a v4.4 node without a match) acknowledges only when its delayed-ACK
    /// timer fires, 40 ms later. Behind the primer, whose pong carries that acknowledgement
    /// at once, the request and its fence leave the broker together.
    fn transmit(&mut self, id: RequestId, topics: Vec<String>) {
        let active = &self.requests[&id];
        let Kind::Sent { payload, .. } = &active.kind else {
            return;
        };
        let (primer, fence) = (
            active.primer.map(|s| self.ping(s)),
            active.fence.map(|s| self.ping(s)),
        );
        for topic in topics {
            if let Some(primer) = &primer {
                self.transmits
                    .push_back(Transmit::new(topic.clone(), primer.clone()));
            }
            self.transmits
                .push_back(Transmit::new(topic.clone(), payload.clone()));
            if let Some(fence) = &fence {
                self.transmits
                    .push_back(Transmit::new(topic, fence.clone()));
            }
        }
    }

    /// A sequence of ours for a ping that request `id` sends (a fence, a primer): its pongs
    /// are the request's.
    fn probe(&mut self, id: RequestId) -> Sequence {
        let sequence = self.next_sequence();
        self.sequences.insert(sequence, id);
        sequence
    }

    /// Our ping with `sequence`, as it travels.
    fn ping(&self, sequence: Sequence) -> Vec<u8> {
        let mut ping = Request::ping();
        ping.set_researcher_id(&self.config.researcher_id);
        if let Some(slot) = ping.sequence_mut() {
            *slot = sequence;
        }
        ping.encode()
    }

    /// Records a new request in the indexes an error or a status looks it up by.
    fn index(&mut self, id: RequestId, active: &Active) {
        match &active.targets {
            Some(targets) => {
                for node in targets {
                    self.by_node.entry(node.clone()).or_default().insert(id);
                }
            }
            None => {
                self.broadcasts.insert(id);
            }
        }
    }

    /// Registers request `id`'s next wake. One that moved later stays where it was: it fires
    /// early, finds nothing due and is registered again, where moving it would leave an entry
    /// behind on every reply (each one moves the quiet period).
    fn reschedule(&mut self, id: RequestId) {
        let active = self.active(id);
        let new = active.timers().earliest();
        let old = active.wake;
        if old.is_some_and(|old| new.is_none_or(|new| old <= new)) {
            return;
        }
        active.wake = new;
        if let Some(at) = new {
            self.timers.insert(at, id);
        }
        if old.is_some() {
            self.timers.leave(|at, id| holds(&self.requests, at, id));
        }
    }

    fn complete(&mut self, id: RequestId, now: Timestamp, completion: Completion) {
        let Some(mut active) = self.requests.remove(&id) else {
            return;
        };
        if active.wake.is_some() {
            self.timers.leave(|at, id| holds(&self.requests, at, id));
        }
        self.collects.remove(&id);
        self.broadcasts.remove(&id);
        for node in active.targets.iter().flatten() {
            if let Some(ids) = self.by_node.get_mut(node) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_node.remove(node);
                }
            }
        }
        if active.sent.is_some() {
            active.counters += self.strays_of(active.reply_command()) - active.strays_at_send;
        }
        let sent = active.sent.unwrap_or(now);
        let broadcast = active.by_presence();
        if let Some(sequence) = active.sequence {
            self.sequences.remove(sequence);
            if !self.stamped(sequence) {
                self.kept_finished.push_back(sequence);
                if self.kept_finished.len() > KEPT_REMEMBERED {
                    self.kept_finished.pop_front();
                }
            }
            if broadcast && active.sent.is_some() {
                self.remember(Recent {
                    sequence,
                    sent,
                    broadcast,
                    fence: false,
                });
            }
        }
        for sequence in active.fence.into_iter().chain(active.primer) {
            self.sequences.remove(sequence);
            self.remember(Recent {
                sequence,
                sent,
                broadcast,
                fence: true,
            });
        }
        let command = active.command();
        if let (Some(command), None) = (command, active.sequence) {
            if active.sent.is_some() {
                self.finished.insert(command);
                self.busy.remove(&command);
                if let Some(next) = self.waiting.get_mut(&command).and_then(VecDeque::pop_front) {
                    self.busy.insert(command, next);
                    self.send(next, now);
                }
            } else if let Some(queue) = self.waiting.get_mut(&command) {
                queue.retain(|&waiting| waiting != id);
            }
        }
        let missing = active.missing(&self.nodes);
        active.nodes.release(&mut self.nodes);
        if broadcast && matches!(active.kind, Kind::Sent { .. }) && active.sent.is_some() {
            for node in &missing {
                self.nodes.unhear(node);
            }
            // First contact made: the next ones expect whom it found.
            if active.unknown == Unknown::Settles && completion != Completion::Cancelled {
                self.knows_federation = true;
            }
        }
        self.events.push_back(Event::Completed(Outcome {
            id,
            command,
            sequence: active.sequence,
            targets: active.targets,
            replies: active.replies,
            errors: active.errors,
            missing,
            counters: active.counters,
            elapsed: now - active.submitted,
            completion,
        }));
    }

    /// Remembers a completed broadcast or fence, the last [`KEPT_REMEMBERED`] of them.
    fn remember(&mut self, recent: Recent) {
        self.recent.push_back(recent);
        if self.recent.len() > KEPT_REMEMBERED {
            self.recent.pop_front();
        }
    }
}

/// The ids of both sets in increasing order (oldest first), each once.
fn merged<'a>(
    a: impl Iterator<Item = &'a RequestId> + 'a,
    b: &'a BTreeSet<RequestId>,
) -> impl Iterator<Item = RequestId> + 'a {
    let mut a = a.copied().peekable();
    let mut b = b.iter().copied().peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x <= y => {
            let x = *x;
            a.next();
            if b.peek() == Some(&x) {
                b.next();
            }
            Some(x)
        }
        (_, Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, None) => None,
    })
}

/// Whether `reply` can answer `request`: a search reply is only for a search whose tags all
/// its datasets carry (searches carry no sequence, so a late reply would otherwise count).
fn answers_search(request: &Request, reply: &NodeMessage) -> bool {
    let (Request::Search(search), NodeMessage::Search(found)) = (request, reply) else {
        return true;
    };
    found.databases.iter().all(|dataset| {
        let tags = dataset.get("tags").and_then(serde_json::Value::as_array);
        search
            .tags
            .iter()
            .all(|t| tags.is_some_and(|tags| tags.iter().any(|have| have == t)))
    })
}

/// The request command a reply answers.
fn request_of(reply: Command) -> Command {
    match reply {
        Command::Pong => Command::Ping,
        other => other,
    }
}

/// The wake of each request in flight, earliest first. A wake only moves earlier, or goes
/// with its request: the entry it leaves behind stays until it comes up or is swept, so a move
/// costs one insertion and no removal. Between calls, the earliest entry is one still held.
#[derive(Debug, Default)]
struct Wakes {
    heap: BinaryHeap<Reverse<(Timestamp, RequestId)>>,
    /// Entries left behind.
    stale: usize,
}

impl Wakes {
    fn earliest(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    fn insert(&mut self, at: Timestamp, id: RequestId) {
        self.heap.push(Reverse((at, id)));
    }

    /// A wake moved, or went with its request: its entry is left behind. `held` tells the
    /// entries still held.
    fn leave(&mut self, held: impl Fn(Timestamp, RequestId) -> bool) {
        self.stale += 1;
        self.tidy(held);
    }

    /// The earliest wake, if it is due at `now`, taken out. Called until it gives `None`:
    /// firing a wake may leave an entry of its request on top (one left at the same instant
    /// by an earlier move), dropped here first.
    fn pop_due(
        &mut self,
        now: Timestamp,
        held: impl Fn(Timestamp, RequestId) -> bool,
    ) -> Option<(Timestamp, RequestId)> {
        self.tidy(held);
        let top = self.heap.peek_mut().filter(|top| top.0 .0 <= now)?;
        Some(PeekMut::pop(top).0)
    }

    /// Drops the entries left behind from the top, and sweeps them all once they are half
    /// the heap: it stays within twice the wakes held.
    fn tidy(&mut self, held: impl Fn(Timestamp, RequestId) -> bool) {
        if self.stale > self.heap.len() / 2 {
            self.heap.retain(|&Reverse((at, id))| held(at, id));
            self.stale = 0;
        }
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if held(at, id) {
                break;
            }
            self.heap.pop();
            self.stale = self.stale.saturating_sub(1);
        }
    }
}

/// Whether request `id` is in flight with its wake at `at`.
fn holds(requests: &HashMap<RequestId, Box<Active>, Keyed>, at: Timestamp, id: RequestId) -> bool {
    requests
        .get(&id)
        .is_some_and(|active| active.wake == Some(at))
}

/// The request in flight a reply would belong to, judging by command and sequence only, and
/// how: found once, for the caller to go on with.
fn candidate<'a>(
    requests: &'a mut HashMap<RequestId, Box<Active>, Keyed>,
    sequences: &mut Sequences,
    busy: &BTreeMap<Command, RequestId>,
    reply: &NodeMessage,
) -> Option<(Match, &'a mut Active)> {
    let command = reply.command();
    let id = match reply.sequence() {
        Some(sequence) => sequences.get(sequence)?,
        None => *busy.get(&request_of(command))?,
    };
    let active = requests.get_mut(&id)?;
    if command == Command::Pong && active.fence.is_some() {
        if active.fence == reply.sequence() {
            return Some((Match::Fence(id), active));
        }
        if active.primer == reply.sequence() {
            return Some((Match::Primer(id), active));
        }
    }
    let Kind::Sent { request, .. } = &active.kind else {
        return None;
    };
    if active.reply_command() != Some(command) {
        return None;
    }
    // The request itself (boxed, cold when its first reply comes) is read only where a
    // reply of its command may disagree with it: on the job, which both sides of those
    // commands carry, and on a search's tags.
    let agrees = match reply.job_id() {
        Some(job) => request.job_id() == Some(job),
        None => command != Command::Search || answers_search(request, reply),
    };
    agrees.then_some((Match::Reply(id), active))
}

/// How long `node`, without presence, took to answer a broadcast: updated if it is heard
/// already, remembered if it is met (`meet`), unless it is online by presence, and fewer
/// than `capacity` are heard. [`Researcher::hear`] on the fields it needs, so that a
/// request in flight may stay borrowed meanwhile.
fn hear(
    nodes: &mut Registry,
    roster: &BTreeMap<NodeId, Member>,
    capacity: usize,
    (number, node): (NodeRef, &str),
    took: Duration,
    meet: bool,
) {
    // Never zero, which stands for a node never timed (known by presence).
    let took = took.max(Duration::from_nanos(1));
    // Without presence the roster is empty: not searching it saves 26 instructions a reply.
    let meet = meet && (roster.is_empty() || !roster.get(node).is_some_and(Member::online));
    nodes.hear(number, took, meet, capacity);
}

/// The nodes in first-seen order, each once.
fn dedup(nodes: &[NodeId]) -> Vec<NodeId> {
    let mut seen = BTreeSet::new();
    nodes
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::PingReply;

    #[test]
    fn a_wake_left_behind_is_never_the_earliest_and_is_swept() {
        let at = Timestamp::from_millis;
        let mut held: BTreeMap<RequestId, Timestamp> = BTreeMap::new();
        let mut wakes = Wakes::default();
        let wake = |wakes: &mut Wakes, held: &mut BTreeMap<_, _>, id, ms| {
            let moved = held.insert(RequestId(id), at(ms)).is_some();
            wakes.insert(at(ms), RequestId(id));
            if moved {
                wakes.leave(|at, id| held.get(&id) == Some(&at));
            }
        };
        wake(&mut wakes, &mut held, 1, 30);
        wake(&mut wakes, &mut held, 2, 20);
        wake(&mut wakes, &mut held, 2, 10);
        assert_eq!(wakes.earliest(), Some(at(10)));
        // Request 2 completes: its wake goes with it.
        held.remove(&RequestId(2));
        wakes.leave(|at, id| held.get(&id) == Some(&at));
        assert_eq!(wakes.earliest(), Some(at(30)));
        assert_eq!(
            wakes.pop_due(at(29), |at, id| held.get(&id) == Some(&at)),
            None
        );
        // A thousand moves of one wake leave a heap of a few entries, not a thousand.
        for ms in (100..1100).rev() {
            wake(&mut wakes, &mut held, 3, ms);
        }
        assert!(
            wakes.heap.len() <= 2 * held.len() + 1,
            "{}",
            wakes.heap.len()
        );
        assert_eq!(wakes.earliest(), Some(at(30)));
        let due =
            |wakes: &mut Wakes, now| wakes.pop_due(at(now), |at, id| held.get(&id) == Some(&at));
        assert_eq!(due(&mut wakes, 500), Some((at(30), RequestId(1))));
        assert_eq!(due(&mut wakes, 500), Some((at(100), RequestId(3))));
        assert_eq!(due(&mut wakes, 5000), None);
    }

    #[test]
    fn a_wake_set_again_where_it_was_left_fires_once() {
        let at = Timestamp::from_millis;
        let mut held: BTreeMap<RequestId, Timestamp> = BTreeMap::new();
        let mut wakes = Wakes::default();
        // Others in flight, one before its deadline: the entry left behind is not on top
        // when its wake fires, and the heap is not swept meanwhile.
        for (other, ms) in [(1, 20), (2, 1000), (3, 1000), (4, 1000)] {
            held.insert(RequestId(other), at(ms));
            wakes.insert(at(ms), RequestId(other));
        }
        let id = RequestId(7);
        // Its deadline at 30, moved to a settle window at 10: the entry at 30 is left behind.
        held.insert(id, at(30));
        wakes.insert(at(30), id);
        held.insert(id, at(10));
        wakes.insert(at(10), id);
        wakes.leave(|at, id| held.get(&id) == Some(&at));
        let due = |wakes: &mut Wakes, held: &BTreeMap<_, _>, now| {
            wakes.pop_due(at(now), |at, id| held.get(&id) == Some(&at))
        };
        assert_eq!(due(&mut wakes, &held, 10), Some((at(10), id)));
        // Fired, it waits for its deadline again: a second entry at 30.
        held.insert(id, at(30));
        wakes.insert(at(30), id);
        assert_eq!(due(&mut wakes, &held, 20), Some((at(20), RequestId(1))));
        held.remove(&RequestId(1));
        assert_eq!(due(&mut wakes, &held, 30), Some((at(30), id)));
        // Fired at its deadline, it completes: the entry left at 30 is not its wake.
        held.remove(&id);
        assert_eq!(due(&mut wakes, &held, 30), None);
        assert_eq!(wakes.earliest(), Some(at(1000)));
    }

    /// A core of researcher `me` whose mailbox, roster and nodes heard hold `capacity` each.
    fn with_mailbox(capacity: usize) -> Researcher {
        Researcher::new(ResearcherConfig {
            mailbox_capacity: capacity,
            ..ResearcherConfig::new("me")
        })
    }

    fn completed(core: &mut Researcher) -> usize {
        std::iter::from_fn(|| core.poll_event())
            .filter(|e| matches!(e, Event::Completed(_)))
            .count()
    }

    #[test]
    fn the_ids_a_request_met_are_forgotten_when_it_ends_but_those_heard() {
        let mut core = with_mailbox(10);
        let policy = Policy::quiet(Duration::from_millis(100));
        let ping = Submission::broadcast(Request::ping()).with_policy(policy.clone());
        core.submit(Timestamp::ZERO, ping).unwrap();
        // A thousand ids nobody knows answer it (forged, or a federation met for the first
        // time), and errors from others; a targeted request to ids never heard of ends too.
        for i in 0..1000 {
            let pong = PingReply {
                researcher_id: "me".into(),
                node_id: format!("forged-{i}"),
                success: true,
                sequence: 0,
            };
            core.on_reply(Timestamp::ZERO, NodeMessage::Pong(pong));
        }
        let targets = vec!["ghost-1".to_owned(), "ghost-2".to_owned()];
        let ping = Submission::to_nodes(Request::ping(), targets).with_policy(policy);
        core.submit(Timestamp::ZERO, ping).unwrap();
        assert_eq!(core.nodes.live(), 1002);
        core.handle_timeout(Timestamp::from_duration(Duration::from_secs(60)));
        assert_eq!(completed(&mut core), 2);
        // Only those heard stay, as many as the mailbox holds.
        assert_eq!(core.nodes.heard_len(), 10);
        assert_eq!(core.nodes.live(), 10);
        assert_eq!(core.heard().len(), 10);
    }

    #[test]
    fn a_member_of_the_roster_keeps_its_number_until_it_is_forgotten() {
        let mut core = with_mailbox(2);
        let say = |core: &mut Researcher, node: &str, status| {
            let presence = Presence::new(node, status, 1);
            core.handle_publish(Timestamp::ZERO, &presence::topic(node), &presence.encode());
        };
        say(&mut core, "a", Status::Online);
        say(&mut core, "b", Status::Offline);
        let number = core.nodes.find("a");
        assert!(number.is_some() && core.nodes.find("b").is_some());
        let ping = Submission::broadcast(Request::ping());
        core.submit(
            Timestamp::ZERO,
            ping.with_policy(Policy::quiet(Duration::from_secs(1))),
        )
        .unwrap();
        core.handle_timeout(Timestamp::from_duration(Duration::from_secs(60)));
        assert_eq!(completed(&mut core), 1);
        assert_eq!(
            core.nodes.find("a"),
            number,
            "the request let go, the roster did not"
        );
        // A full roster forgets its offline member for a newcomer, and so does the registry.
        say(&mut core, "c", Status::Online);
        assert_eq!(core.nodes.find("b"), None);
        assert_eq!(core.nodes.live(), 2);
    }
}
