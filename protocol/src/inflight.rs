//! A request in flight: its state, and the completion rules of [`Policy`] applied to it.

use std::collections::HashSet;
use std::hash::{BuildHasher, DefaultHasher, Hasher};

use crate::message::{Command, ErrorMessage, NodeMessage, Request, Sequence};
use crate::outcome::{Completion, Counters};
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

/// A request between submission and completion.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) kind: Kind,
    pub(crate) sequence: Option<Sequence>,
    pub(crate) targets: Option<Vec<NodeId>>,
    pub(crate) targeted: Option<NodeSet>,
    pub(crate) expected: Vec<NodeId>,
    pub(crate) expected_set: NodeSet,
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
    pub(crate) expected_answered: usize,
    pub(crate) replies: Vec<NodeMessage>,
    pub(crate) errors: Vec<ErrorMessage>,
    pub(crate) counters: Counters,
    pub(crate) wake: Option<Timestamp>,
}

impl Active {
    /// A request submitted at `now`, not yet sent, expecting no one.
    pub(crate) fn new(kind: Kind, policy: Policy, now: Timestamp, keyed: Keyed) -> Self {
        Active {
            kind,
            sequence: None,
            targets: None,
            targeted: None,
            expected: Vec::new(),
            expected_set: NodeSet::with_hasher(keyed),
            policy,
            submitted: now,
            sent: None,
            last_reply: now,
            round_end: now,
            new_in_round: 0,
            min_reached: None,
            replied: NodeSet::with_hasher(keyed),
            errored: NodeSet::with_hasher(keyed),
            expected_answered: 0,
            replies: Vec::new(),
            errors: Vec::new(),
            counters: Counters::default(),
            wake: None,
        }
    }

    /// The command of the replies it collects, for a sent request.
    pub(crate) fn reply_command(&self) -> Option<Command> {
        match &self.kind {
            Kind::Sent { command, .. } => Some(command.reply()),
            Kind::Collect(_) => None,
        }
    }

    /// Whether it is a collect that takes `command`.
    pub(crate) fn collects(&self, command: Command) -> bool {
        matches!(&self.kind, Kind::Collect(commands) if commands.is_empty() || commands.contains(&command))
    }

    /// Keeps a message for a collect (errors apart), unless `only_successful` drops it.
    pub(crate) fn keep(&mut self, now: Timestamp, message: NodeMessage) {
        match message {
            NodeMessage::Error(error) => self.errors.push(error),
            _ if self.policy.only_successful && message.success() == Some(false) => {
                self.counters.unsuccessful += 1;
                return;
            }
            message => self.replies.push(message),
        }
        self.note_activity(now);
    }

    /// Counts a kept reply or error: activity for the quiet period, rounds and minimum.
    pub(crate) fn note_activity(&mut self, now: Timestamp) {
        self.last_reply = now;
        self.new_in_round += 1;
        let reached = self
            .policy
            .min_replies
            .is_some_and(|m| self.replies.len() >= m.count);
        if reached && self.min_reached.is_none() {
            self.min_reached = Some(now);
        }
    }

    pub(crate) fn targets(&self, node: &str) -> bool {
        self.targeted.as_ref().is_none_or(|t| t.contains(node))
    }

    pub(crate) fn answered(&self, node: &str) -> bool {
        self.replied.contains(node) || self.errored.contains(node)
    }

    pub(crate) fn all_expected_answered(&self) -> bool {
        self.policy.early
            && !self.expected.is_empty()
            && self.expected_answered == self.expected_set.len()
    }

    /// Marks `node` as having answered, for early completion.
    pub(crate) fn mark_answered(&mut self, node: &str) {
        if self.expected_set.contains(node) {
            self.expected_answered += 1;
        }
    }

    /// The next instant a timer rule may complete it.
    pub(crate) fn next_wake(&self) -> Option<Timestamp> {
        let deadline = self.policy.deadline.map(|d| self.submitted + d);
        let Some(_) = self.sent else { return deadline };
        let period = if self.policy.rounds.is_some() {
            self.round_end
        } else {
            self.last_reply + self.policy.timeout
        };
        let grace = self
            .min_reached
            .zip(self.policy.min_replies)
            .map(|(at, min)| at + min.grace);
        [deadline, Some(period), grace].into_iter().flatten().min()
    }

    /// The timer rule that is due at `now`, if any.
    pub(crate) fn due(&mut self, now: Timestamp) -> Option<Completion> {
        if self
            .policy
            .deadline
            .is_some_and(|d| self.submitted + d <= now)
        {
            return Some(Completion::Deadline);
        }
        self.sent?;
        let grace_over = self
            .min_reached
            .zip(self.policy.min_replies)
            .is_some_and(|(at, min)| at + min.grace <= now);
        if grace_over {
            return Some(Completion::MinReplies);
        }
        match self.policy.rounds {
            Some(rounds) if self.round_end <= now => {
                if self.new_in_round == 0 || !rounds.while_responses {
                    return Some(Completion::Rounds);
                }
                self.round_end = self.round_end + self.policy.timeout;
                self.new_in_round = 0;
                None
            }
            Some(_) => None,
            None if self.last_reply + self.policy.timeout <= now => Some(Completion::QuietPeriod),
            None => None,
        }
    }
}
