//! The researcher core: requests out, replies in, outcomes and events out.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::completion::Answer;
use crate::error::SubmitError;
use crate::event::{ConnectionState, Event, Mail, Unmatched};
use crate::inflight::{Active, Keyed, Kind, NodeSet};
use crate::message::{Command, ErrorMessage, Limits, NodeMessage, Request, Sequence};
use crate::outcome::{Completion, Outcome, RequestId};
use crate::policy::Policy;
use crate::presence::{self, Presence, Status};
use crate::time::Timestamp;
use crate::topic::{NodeId, Target};
use crate::version::Compatibility;

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
}

/// One MQTT publish for the adapter to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The topic.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// Core-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Unmatched messages dropped from a full mailbox, oldest first.
    pub mailbox_dropped: u64,
    /// Presence statuses refused by decoding.
    pub presence_refused: u64,
}

/// A node the researcher knows by its presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its latest run.
    pub incarnation: u64,
    /// Online or not.
    pub online: bool,
    /// When its status last changed, on the core's clock.
    pub since: Timestamp,
}

/// How many kept sequences of completed requests are remembered.
const KEPT_REMEMBERED: usize = 1024;

/// The Sans-IO researcher core.
///
/// - Getters: [`researcher_id`](Self::researcher_id), [`in_flight`](Self::in_flight),
///   [`stats`](Self::stats).
/// - Inputs: [`submit`](Self::submit) a request, [`handle_publish`](Self::handle_publish) for
///   every MQTT publish received on the researcher's topics, [`handle_timeout`](Self::handle_timeout)
///   when the clock reaches [`poll_timeout`](Self::poll_timeout),
///   [`handle_connection`](Self::handle_connection) when the connection goes up or down.
/// - Mutators: [`take_mail`](Self::take_mail) drains the mailbox of unmatched messages.
/// - Outputs: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   [`poll_timeout`](Self::poll_timeout).
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
    requests: BTreeMap<RequestId, Active>,
    by_sequence: HashMap<Sequence, RequestId, Keyed>,
    /// The one request in flight per command without a sequence.
    busy: BTreeMap<Command, RequestId>,
    /// Requests waiting for their command's turn, oldest first.
    waiting: BTreeMap<Command, VecDeque<RequestId>>,
    /// The last kept sequences of completed requests, to tell late from unknown.
    kept_finished: VecDeque<Sequence>,
    /// Commands without sequence that have completed at least once, to tell late from unknown.
    finished: BTreeSet<Command>,
    timers: BTreeSet<(Timestamp, RequestId)>,
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
    /// Nodes without presence that answered a broadcast lately: expected by the next ones.
    heard: BTreeSet<NodeId>,
    /// Whether a broadcast ever showed a node without presence, or none has settled yet: only
    /// then do broadcasts settle, so a federation that all announces pays no window.
    may_have_silent: bool,
}

impl Researcher {
    /// A core with nothing in flight.
    pub fn new(config: ResearcherConfig) -> Self {
        let keyed = Keyed(config.hash_seed);
        Researcher {
            next_id: 0,
            next_sequence: config.first_sequence,
            requests: BTreeMap::new(),
            by_sequence: HashMap::with_hasher(keyed),
            busy: BTreeMap::new(),
            waiting: BTreeMap::new(),
            finished: BTreeSet::new(),
            kept_finished: VecDeque::new(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            mailbox: VecDeque::new(),
            mailbox_bytes: 0,
            arriving: 0,
            stats: Stats::default(),
            roster: BTreeMap::new(),
            heard: BTreeSet::new(),
            may_have_silent: true,
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

    /// The nodes a broadcast by presence expects: those online, then those without presence
    /// heard lately.
    pub fn expected_by_broadcast(&self) -> Vec<NodeId> {
        let online = self.roster.iter().filter(|(_, m)| m.online);
        online
            .map(|(node, _)| node.clone())
            .chain(self.heard.iter().cloned())
            .collect()
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
                if self.by_sequence.contains_key(slot) {
                    return Err(SubmitError::SequenceInUse(*slot));
                }
                Some(*slot)
            }
            Some(slot) => {
                // Skips the numbers a kept sequence holds, or held lately.
                while self.by_sequence.contains_key(&self.next_sequence)
                    || self.kept_finished.contains(&self.next_sequence)
                {
                    self.next_sequence = self.next_sequence.wrapping_add(1);
                }
                *slot = self.next_sequence;
                self.next_sequence = self.next_sequence.wrapping_add(1);
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

        let keyed = Keyed(self.config.hash_seed);
        let targets = target.nodes().map(dedup);
        // A targeted request expects its targets; a broadcast, the roster.
        // A targeted request expects its targets; a broadcast, the caller's roster, else the
        // nodes online by presence (and then settles for the others).
        let by_presence = targets.is_none() && policy.roster.is_none() && policy.expect_online;
        let settles = by_presence && self.may_have_silent;
        let expected = match (&targets, &policy.roster) {
            (Some(targets), _) => targets.clone(),
            (None, Some(roster)) => dedup(roster),
            (None, None) if by_presence => self.expected_by_broadcast(),
            (None, None) => Vec::new(),
        };
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let kind = Kind::Sent {
            command,
            request: Box::new(request),
            payload,
        };
        let active = Active {
            sequence,
            targeted: targets.as_ref().map(|t| set_of(t, keyed)),
            targets,
            expected_set: set_of(&expected, keyed),
            expected,
            settles,
            ..Active::new(kind, policy, now, keyed)
        };
        self.requests.insert(id, active);
        if let Some(sequence) = sequence {
            self.by_sequence.insert(sequence, id);
            self.send(id, now);
        } else if let Entry::Vacant(slot) = self.busy.entry(command) {
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
        let keyed = Keyed(self.config.hash_seed);
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let expected = collect.expect.as_deref().map(dedup).unwrap_or_default();
        let mut active = Active {
            expected_set: set_of(&expected, keyed),
            expected,
            ..Active::new(Kind::Collect(collect.commands), collect.policy, now, keyed)
        };
        active.start(now);
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
            active.keep(now, mail.message);
        }
        // What waited in the mailbox is news of the first round; the quiet period starts now.
        active.last_reply = now;
        let done = active.on_answer(now, Answer::Reply);
        self.requests.insert(id, active);
        match done {
            Some(completion) => self.complete(id, now, completion),
            None => self.reschedule(id),
        }
        id
    }

    /// Takes one MQTT publish received on `general/researcher`, `general/logger` or
    /// `general/monitoring`. Nothing in the payload can make it fail or panic.
    pub fn handle_publish(&mut self, now: Timestamp, topic: &str, payload: &[u8]) {
        // A reply can only count for requests still in flight at its arrival.
        self.handle_timeout(now);
        if topic.starts_with(presence::PREFIX) {
            return self.on_presence(now, topic, payload);
        }
        self.arriving = payload.len();
        let decoded = match NodeMessage::decode(payload, &self.config.limits) {
            Ok(decoded) => decoded,
            Err(error) => {
                let command = error.command();
                for active in self.requests.values_mut().filter(|a| a.sent.is_some()) {
                    if command.is_none() || command == active.reply_command() {
                        active.counters.malformed += 1;
                    }
                }
                self.events.push_back(Event::Rejected {
                    topic: topic.to_owned(),
                    error,
                });
                return;
            }
        };
        if let Compatibility::Older(version) = decoded.compatibility {
            self.events.push_back(Event::OlderVersion {
                node_id: decoded.message.node_id().to_owned(),
                version,
            });
        }
        match decoded.message {
            NodeMessage::Log(log) => self.events.push_back(Event::Log(log.into())),
            NodeMessage::AddScalar(scalar) if scalar.researcher_id == self.config.researcher_id => {
                self.events.push_back(Event::Monitoring(scalar))
            }
            NodeMessage::Error(error) if error.is_for(&self.config.researcher_id) => {
                self.on_error(now, error)
            }
            message if message.researcher_id() != self.config.researcher_id => {
                if let Some(id) = self.candidate(&message) {
                    self.active(id).counters.foreign += 1;
                }
                self.post(now, Unmatched::Foreign, message);
            }
            message => self.on_reply(now, message),
        }
    }

    /// Takes a change of the adapter's connection state, reported as an event. Requests in
    /// flight go on under their timers; only the return windows of nodes that went offline
    /// wait while the connection is down.
    pub fn handle_connection(&mut self, now: Timestamp, state: ConnectionState) {
        self.handle_timeout(now);
        self.on_own_connection(now, state == ConnectionState::Connected);
        self.events.push_back(Event::Connection(state));
    }

    /// Fires every timer due at `now`. Call it when the clock reaches [`poll_timeout`](Self::poll_timeout);
    /// calling it at other times is harmless.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            // Judged at the timer's own instant, so a late call changes no outcome.
            let active = self.active(id);
            active.wake = None;
            match active.expire(at) {
                Some(completion) => self.complete(id, at, completion),
                None => self.reschedule(id),
            }
        }
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
        self.timers.first().map(|&(at, _)| at)
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

    /// The request in flight a reply would belong to, judging by command and sequence only.
    fn candidate(&self, reply: &NodeMessage) -> Option<RequestId> {
        let command = reply.command();
        let id = match reply.sequence() {
            Some(sequence) => *self.by_sequence.get(&sequence)?,
            None => *self.busy.get(&request_of(command))?,
        };
        let active = &self.requests[&id];
        let Kind::Sent { request, .. } = &active.kind else {
            return None;
        };
        let same_job = request
            .job_id()
            .is_none_or(|job| reply.job_id() == Some(job));
        (active.reply_command() == Some(command) && same_job && answers_search(request, reply))
            .then_some(id)
    }

    fn on_reply(&mut self, now: Timestamp, reply: NodeMessage) {
        let Some(id) = self.candidate(&reply) else {
            return self.on_stray_reply(now, reply);
        };
        let node = reply.node_id();
        let active = self.requests.get_mut(&id).expect("candidate is in flight");
        if !active.targets(node) {
            active.counters.not_targeted += 1;
            return self.post(now, Unmatched::NotTargeted, reply);
        }
        if active.replied.contains(node) {
            active.counters.duplicates += 1;
            return;
        }
        if active.by_presence() && !active.expected_set.contains(node) {
            self.hear(node);
        }
        let active = self.requests.get_mut(&id).expect("candidate is in flight");
        if !active.errored.contains(node) {
            active.mark_answered(node);
        }
        active.replied.insert(node.to_owned());
        active.keep_reply(now, reply);
        match active.on_answer(now, Answer::Reply) {
            Some(completion) => self.complete(id, now, completion),
            None => self.reschedule(id),
        }
    }

    /// A reply for us that no request in flight takes: late or unknown, counted by the
    /// requests in flight of the same command, and kept in the mailbox.
    fn on_stray_reply(&mut self, now: Timestamp, reply: NodeMessage) {
        let command = reply.command();
        let late = match reply.sequence() {
            Some(sequence) => self.issued(sequence),
            None => self.finished.contains(&request_of(command)),
        };
        for active in self.requests.values_mut() {
            if active.sent.is_some() && active.reply_command() == Some(command) {
                if late {
                    active.counters.late += 1;
                } else {
                    active.counters.wrong_sequence += 1;
                }
            }
        }
        let reason = if late {
            // A node without presence, slower than the settle window: the next broadcasts
            // expect it.
            if reply.sequence().is_some() && !self.roster.contains_key(reply.node_id()) {
                self.hear(reply.node_id());
            }
            Unmatched::Late
        } else {
            Unmatched::Unknown
        };
        self.post(now, reason, reply);
    }

    /// An `error` from a node counts for every request in flight that targets it and has no
    /// reply from it yet: errors carry no sequence, so which request caused it is unknown. One
    /// about a message the node could not read answers none (someone sent it junk).
    fn on_error(&mut self, now: Timestamp, error: ErrorMessage) {
        self.events.push_back(Event::NodeError(error.clone()));
        if error.is_about_an_unreadable_message() {
            return self.post(now, Unmatched::Unknown, NodeMessage::Error(error));
        }
        let node = error.node_id.as_str();
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, a)| {
                a.sent.is_some()
                    && a.reply_command().is_some()
                    && a.targets(node)
                    && !a.replied.contains(node)
            })
            .map(|(&id, _)| id)
            .collect();
        if ids.is_empty() {
            return self.post(now, Unmatched::Unknown, NodeMessage::Error(error));
        }
        for id in ids {
            let active = self.active(id);
            // One error per node per request: a node repeating itself keeps nothing open.
            if !active.errored.insert(node.to_owned()) {
                active.counters.duplicates += 1;
                continue;
            }
            active.mark_answered(node);
            active.errors.push(error.clone());
            active.note_activity(now);
            match active.on_answer(now, Answer::Error) {
                Some(completion) => self.complete(id, now, completion),
                None => self.reschedule(id),
            }
        }
    }

    /// A node's status. A newer run replaces what was known; within a run, each change
    /// counts: its will says `offline` whenever its connection breaks (a broker restart fires
    /// every will), and it says `online` again on its next session. A node that goes offline is
    /// awaited by the requests in flight for their return window.
    fn on_presence(&mut self, now: Timestamp, topic: &str, payload: &[u8]) {
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
        let online = presence.status == Status::Online;
        let restarted = self
            .roster
            .get(&presence.node_id)
            .is_some_and(|known| presence.incarnation > known.incarnation);
        let newer = self.roster.get(&presence.node_id).is_none_or(|known| {
            presence.incarnation > known.incarnation
                || (presence.incarnation == known.incarnation && known.online != online)
        });
        if !newer {
            return;
        }
        // Bounded: past the mailbox's capacity, offline members are forgotten first.
        if self.roster.len() >= self.config.mailbox_capacity {
            let offline = self
                .roster
                .iter()
                .find(|(_, m)| !m.online)
                .map(|(n, _)| n.clone());
            match offline {
                Some(node) => {
                    self.roster.remove(&node);
                }
                None if !self.roster.contains_key(&presence.node_id) => return,
                None => {}
            }
        }
        let member = Member {
            incarnation: presence.incarnation,
            online,
            since: now,
        };
        self.heard.remove(&presence.node_id);
        self.roster.insert(presence.node_id.clone(), member);
        self.events.push_back(Event::Presence(presence.clone()));
        match (online, restarted) {
            (true, false) => self.on_back(&presence.node_id),
            (true, true) => self.on_restart(now, &presence.node_id),
            (false, _) => self.on_gone(now, &presence.node_id),
        }
    }

    /// Every request in flight awaiting `node`, which went offline, awaits it `return_window`
    /// more: its connection may only have broken.
    fn on_gone(&mut self, now: Timestamp, node: &str) {
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, a)| a.awaits(node))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.active(id).leaving.push((node.to_owned(), Some(now)));
            self.reschedule(id);
        }
    }

    /// `node` is online again: the requests awaiting its return await it as before.
    fn on_back(&mut self, node: &str) {
        for active in self.requests.values_mut() {
            active.leaving.retain(|(n, _)| n != node);
        }
    }

    /// `node` is back as a new run: what the old one was asked is lost with it, so the
    /// requests awaiting its return report it missing now.
    fn on_restart(&mut self, now: Timestamp, node: &str) {
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, a)| a.leaving.iter().any(|(n, _)| n == node))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            let active = self.active(id);
            active.give_up(node);
            match active.on_answer(now, Answer::Gone) {
                Some(completion) => self.complete(id, now, completion),
                None => self.reschedule(id),
            }
        }
    }

    /// Our connection went down (`false`) or came back: the return windows of the nodes that
    /// went offline stop, or start again from `now`, as they are counted while we can hear them.
    fn on_own_connection(&mut self, now: Timestamp, up: bool) {
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, a)| !a.leaving.is_empty())
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            for (_, since) in &mut self.active(id).leaving {
                *since = up.then_some(now);
            }
            self.reschedule(id);
        }
    }

    /// Remembers a node without presence that answered, bounded like the mailbox: from now
    /// on broadcasts expect it, and settle for others like it.
    fn hear(&mut self, node: &str) {
        if !self.roster.contains_key(node) && self.heard.len() < self.config.mailbox_capacity {
            self.heard.insert(node.to_owned());
            self.may_have_silent = true;
        }
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

    /// A message no request takes: to the oldest collect that wants it, else to the mailbox.
    fn post(&mut self, now: Timestamp, reason: Unmatched, message: NodeMessage) {
        if reason != Unmatched::Foreign {
            let collect = self
                .requests
                .iter()
                .find(|(_, a)| a.collects(message.command()))
                .map(|(&id, _)| id);
            if let Some(id) = collect {
                let active = self.active(id);
                active.keep(now, message);
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

    /// Publishes a request and starts its timers.
    fn send(&mut self, id: RequestId, now: Timestamp) {
        let active = self.active(id);
        active.start(now);
        let Kind::Sent { payload, .. } = &active.kind else {
            return;
        };
        let payload = payload.clone();
        let topics = match &active.targets {
            None => Target::All.topics(),
            Some(nodes) => Target::Nodes(nodes.clone()).topics(),
        };
        // Validated at submission.
        for topic in topics.unwrap_or_default() {
            self.transmits.push_back(Transmit {
                topic,
                payload: payload.clone(),
            });
        }
        self.reschedule(id);
    }

    fn reschedule(&mut self, id: RequestId) {
        let active = self.active(id);
        let old = active.wake.take();
        let new = active.timers().next().map(|(at, _)| at);
        active.wake = new;
        if let Some(at) = old {
            self.timers.remove(&(at, id));
        }
        if let Some(at) = new {
            self.timers.insert((at, id));
        }
    }

    fn complete(&mut self, id: RequestId, now: Timestamp, completion: Completion) {
        let Some(active) = self.requests.remove(&id) else {
            return;
        };
        if let Some(at) = active.wake {
            self.timers.remove(&(at, id));
        }
        if let Some(sequence) = active.sequence {
            self.by_sequence.remove(&sequence);
            if !self.stamped(sequence) {
                self.kept_finished.push_back(sequence);
                if self.kept_finished.len() > KEPT_REMEMBERED {
                    self.kept_finished.pop_front();
                }
            }
        }
        let command = match active.kind {
            Kind::Sent { command, .. } => Some(command),
            Kind::Collect(_) => None,
        };
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
        let missing: Vec<NodeId> = active
            .expected
            .iter()
            .filter(|node| !active.has_answered(node))
            .cloned()
            .collect();
        if active.by_presence() {
            for node in &missing {
                self.heard.remove(node);
            }
            // Settled, and nobody without presence heard so far: the next ones need not.
            self.may_have_silent = !self.heard.is_empty();
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

/// The nodes in first-seen order, each once.
fn dedup(nodes: &[NodeId]) -> Vec<NodeId> {
    let mut seen = BTreeSet::new();
    nodes
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect()
}

fn set_of(nodes: &[NodeId], keyed: Keyed) -> NodeSet {
    let mut set = NodeSet::with_hasher(keyed);
    set.extend(nodes.iter().cloned());
    set
}
