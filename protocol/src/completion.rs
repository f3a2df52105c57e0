//! Every completion rule of a request, in one place.
//!
//! A request's named [`Timer`]s are computed from its state ([`Active::timers`]), so no
//! change can leave one stale; its next wake is their minimum, and [`Active::expire`] says
//! which one fired and what that means. The rules that complete on arrival (every expected
//! node answered, an error under `stop_on_error`) are in [`Active::on_answer`]; who is
//! expected, and who is given up (offline, restarted, waited out), is decided by the
//! researcher core and recorded here through [`Active::give_up`].
//! [`Policy`](crate::policy::Policy) holds the settings; this module is what they do. Adding a
//! rule means a timer or a branch here.

use crate::message::NodeMessage;
use crate::outcome::Completion;
use crate::policy::{settle_window, Policy};
use crate::registry::Registry;
use crate::time::Timestamp;

use crate::inflight::{Active, Answered, Unknown};

/// The timers of a request. On a tie, the first in this order fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// `policy.deadline` after submission, even if still queued.
    Deadline,
    /// `grace` after the `min_replies`-th reply.
    Grace,
    /// The settle or first-contact window, once every expected node answered.
    Settle,
    /// `return_window` after an expected node went offline without answering.
    Return,
    /// The wait for an expected node without presence ([`FirstContact::wait_for`]).
    ///
    /// [`FirstContact::wait_for`]: crate::policy::FirstContact::wait_for
    Unsure,
    /// The end of a Fed-BioMed round.
    Round,
    /// `timeout` after the last reply, or after sending when none came.
    Quiet,
}

/// When each timer of one request fires; `None` for a timer that does not run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timers {
    deadline: Option<Timestamp>,
    grace: Option<Timestamp>,
    settle: Option<Timestamp>,
    back: Option<Timestamp>,
    unsure: Option<Timestamp>,
    round: Option<Timestamp>,
    quiet: Option<Timestamp>,
}

impl Timers {
    /// When the earliest running timer fires.
    #[inline]
    pub(crate) fn earliest(&self) -> Option<Timestamp> {
        [
            self.deadline,
            self.grace,
            self.settle,
            self.back,
            self.unsure,
            self.round,
            self.quiet,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The earliest running timer.
    #[inline]
    pub(crate) fn next(&self) -> Option<(Timestamp, Timer)> {
        [
            (self.deadline, Timer::Deadline),
            (self.grace, Timer::Grace),
            (self.settle, Timer::Settle),
            (self.back, Timer::Return),
            (self.unsure, Timer::Unsure),
            (self.round, Timer::Round),
            (self.quiet, Timer::Quiet),
        ]
        .into_iter()
        .filter_map(|(at, timer)| Some((at?, timer)))
        .min()
    }
}

/// What a node's answer was, for the rules that complete on arrival.
pub(crate) enum Answer {
    /// A reply of the request's command, or its fence passed.
    Reply,
    /// An `error` from the node.
    Error,
    /// An expected node is awaited no more.
    Gone,
}

impl Active {
    /// Every timer, from the policy and what the request has seen so far.
    #[inline]
    pub(crate) fn timers(&self) -> Timers {
        let policy = &self.policy;
        let sent = self.sent;
        Timers {
            deadline: policy.deadline.map(|d| self.submitted + d),
            grace: sent.and(self.grace_at()),
            settle: self.settle_at,
            back: self.return_at(),
            // Sorted by wait: the first is the next to end (it may have answered: harmless).
            unsure: sent
                .zip(self.unsure.first())
                .map(|(at, (_, wait))| at + *wait),
            round: sent
                .filter(|_| policy.rounds.is_some())
                .map(|_| self.round_end),
            quiet: sent
                .filter(|_| policy.rounds.is_none())
                .map(|_| self.last_reply + policy.timeout),
        }
    }

    /// Whether the registered wake still comes first after a reply: a reply moves only the
    /// settle and grace timers earlier (the quiet period moves later), so the other timers
    /// need not be worked out again on every reply.
    #[inline]
    pub(crate) fn wake_holds_after_reply(&self) -> bool {
        let Some(wake) = self.wake else {
            return false;
        };
        [self.settle_at, self.grace_at()]
            .into_iter()
            .flatten()
            .all(|at| wake <= at)
    }

    /// When the stragglers' grace ends, once the minimum of replies is reached.
    fn grace_at(&self) -> Option<Timestamp> {
        let reached = self.min_reached.zip(self.policy.min_replies);
        reached.map(|(at, min)| at + min.grace)
    }

    /// When the first node that went offline has been awaited long enough.
    fn return_at(&self) -> Option<Timestamp> {
        let first = self.leaving.iter().filter_map(|&(_, since)| since).min()?;
        Some(first + self.policy.return_window)
    }

    /// Starts the quiet period and the first round at `now`, when the request goes out.
    pub(crate) fn start(&mut self, now: Timestamp) {
        self.sent = Some(now);
        self.last_reply = now;
        self.round_end = now + self.policy.timeout;
    }

    /// The timer due at `at`, if any, applied: the completion it means, or `None` when the
    /// request goes on (a Fed-BioMed round that brought news starts the next one).
    pub(crate) fn expire(&mut self, at: Timestamp, registry: &Registry) -> Option<Completion> {
        let (_, timer) = self.timers().next().filter(|&(when, _)| when <= at)?;
        let completion = match timer {
            Timer::Deadline => Completion::Deadline,
            Timer::Grace => Completion::MinReplies,
            Timer::Settle => {
                self.work_out_settle();
                if self.settle_at.is_some_and(|end| end > at) {
                    return None;
                }
                self.all_in(Completion::Settled)
            }
            Timer::Return => {
                let window = self.policy.return_window;
                let due: Vec<_> = self
                    .leaving
                    .iter()
                    .filter(|(_, since)| since.is_some_and(|since| since + window <= at))
                    .map(|(node, _)| node.clone())
                    .collect();
                for node in due {
                    self.give_up(registry.find(&node), &node, true);
                }
                return self.on_answer(at, Answer::Gone);
            }
            Timer::Unsure => {
                let sent = self.sent.unwrap_or(self.submitted);
                let due = self
                    .unsure
                    .iter()
                    .take_while(|(_, wait)| sent + *wait <= at)
                    .count();
                for (node, _) in self.unsure.drain(..due).collect::<Vec<_>>() {
                    self.give_up(registry.find(&node), &node, false);
                }
                return self.on_answer(at, Answer::Gone);
            }
            Timer::Quiet => Completion::QuietPeriod,
            Timer::Round => {
                let while_responses = self.policy.rounds.is_some_and(|r| r.while_responses);
                if self.new_in_round > 0 && while_responses {
                    self.round_end = self.round_end + self.policy.timeout;
                    self.new_in_round = 0;
                    return None;
                }
                Completion::Rounds
            }
        };
        Some(completion)
    }

    /// `reason`, unless an expected node went offline or was waited out: then that is why
    /// the request ended.
    fn all_in(&self, reason: Completion) -> Completion {
        match (self.went_offline, self.waited_out) {
            (0, 0) => reason,
            (0, _) => Completion::WaitedOut,
            _ => Completion::Offline,
        }
    }

    /// Keeps a message for a collect (errors apart), unless `only_successful` drops it; its
    /// node has answered either way.
    pub(crate) fn keep(&mut self, now: Timestamp, message: NodeMessage, registry: &mut Registry) {
        let node = registry.enter(message.node_id());
        match message {
            NodeMessage::Error(error) => {
                self.record(registry, node, Answered::Errored);
                self.errors.push(error);
                self.note_activity(now);
            }
            message => {
                let kept = self.keeps(&message);
                self.record(registry, node, Answered::Replied { kept });
                self.keep_reply(now, message, kept);
            }
        }
    }

    /// Keeps `node`'s reply when [`keeps`](Self::keeps) said so (as recorded), or counts it
    /// as unsuccessful under `only_successful`.
    #[inline]
    pub(crate) fn keep_reply(&mut self, now: Timestamp, reply: NodeMessage, kept: bool) {
        if kept {
            self.replies.push(reply);
            self.note_activity(now);
        } else {
            self.counters.unsuccessful += 1;
        }
    }

    /// Whether it keeps `reply`: not an unsuccessful one under `only_successful`.
    #[inline]
    pub(crate) fn keeps(&self, reply: &NodeMessage) -> bool {
        !(self.policy.only_successful && reply.success() == Some(false))
    }

    /// Counts a kept reply or error: activity for the quiet period, rounds and minimum.
    #[inline]
    pub(crate) fn note_activity(&mut self, now: Timestamp) {
        if self.fence.is_none() {
            self.first_probe.get_or_insert(now);
        }
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

    /// The rule an answer just counted completes, if any. Once every expected node answered,
    /// a request that may meet nodes nobody knows of waits its settle window instead (the
    /// first-contact gap when it met one, or expected nobody), from its latest answer.
    #[inline]
    pub(crate) fn on_answer(&mut self, now: Timestamp, answer: Answer) -> Option<Completion> {
        if matches!(answer, Answer::Error) && self.policy.stop_on_error {
            return Some(Completion::Error);
        }
        if !self.policy.early || self.expected_answered < self.expected.len() {
            return None;
        }
        let heard_any = self.answered > 0 || !self.replies.is_empty();
        if self.expected.is_empty() && !heard_any {
            return None;
        }
        // A node nobody expected answered: the roster is not the whole federation after all.
        let settles = match self.unknown {
            Unknown::Ignored => {
                return (!self.expected.is_empty()).then(|| self.all_in(Completion::AllAnswered))
            }
            Unknown::Known => self.met_unexpected,
            Unknown::Settles => true,
        };
        if !settles {
            return Some(self.all_in(Completion::AllAnswered));
        }
        let sent = self.sent.unwrap_or(self.submitted);
        // The window runs from the last answer: a node given up is no news.
        let last = match answer {
            Answer::Gone => self.last_reply.max(sent),
            Answer::Reply | Answer::Error => now,
        };
        let first_contact = self.met_unexpected || self.expected.is_empty();
        let origin = match first_contact {
            true => self.first_probe.unwrap_or(sent),
            false => sent,
        };
        let from = SettleFrom {
            last,
            origin,
            first_contact,
        };
        if self
            .settle_from
            .is_some_and(|pending| !pending.alike(&from))
        {
            self.work_out_settle();
        }
        self.settle_from = Some(from);
        // The first window sets the wake; a node given up may leave it past `now`.
        if self.settle_at.is_none() || matches!(answer, Answer::Gone) {
            self.work_out_settle();
            self.settle_at = self.settle_at.map(|end| end.max(now));
        }
        None
    }

    /// Works the pending answer's window out into `settle_at`.
    fn work_out_settle(&mut self) {
        if let Some(from) = self.settle_from.take() {
            let end = from.end(&self.policy);
            self.settle_at = Some(self.settle_at.map_or(end, |at| at.max(end)));
        }
    }
}

/// An answer's settle window, to be worked out: after `last`, the first-contact gap grows with
/// the spread since `origin` (the first probe's answer), the settle window with the time since
/// sending (`origin`). Either ends later for a later `last`, the rest alike.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SettleFrom {
    last: Timestamp,
    origin: Timestamp,
    first_contact: bool,
}

impl SettleFrom {
    /// Whether `later`, alike but for a `last` no earlier, makes this one's window moot.
    fn alike(&self, later: &SettleFrom) -> bool {
        (self.origin, self.first_contact) == (later.origin, later.first_contact)
            && self.last <= later.last
    }

    fn end(&self, policy: &Policy) -> Timestamp {
        let (after, timeout) = (self.last - self.origin, policy.timeout);
        let window = match self.first_contact {
            true => policy.first_contact.gap(after, timeout),
            false => settle_window(after, timeout),
        };
        self.last + window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_wake_is_the_earliest_timer_and_a_tie_goes_to_the_deadline() {
        let at = Timestamp::from_millis;
        let mut timers = Timers {
            quiet: Some(at(5)),
            round: Some(at(9)),
            ..Timers::default()
        };
        assert_eq!(timers.next(), Some((at(5), Timer::Quiet)));
        timers.deadline = Some(at(5));
        assert_eq!(timers.next(), Some((at(5), Timer::Deadline)));
        assert_eq!(Timers::default().next(), None);
    }
}
