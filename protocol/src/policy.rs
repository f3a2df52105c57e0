//! When a request is complete: the collection policy it carries. What each setting does is
//! written once, in the private `completion` module; in short, the first rule met completes it:
//! - every expected node has answered (a reply or an error) and `early` is on -> now;
//! - the quiet period: `timeout` after the last reply, or after sending when none came;
//!   or, in Fed-BioMed's `rounds`, at the end of the first `timeout` round without a new reply;
//! - `min_replies`: `grace` after the `count`-th reply;
//! - `stop_on_error`: the first `error` from a targeted node;
//! - `deadline`: that long after submission, even if still queued (by default ten timeouts,
//!   none in Fed-BioMed's rounds).
//!
//! The expected nodes are the targeted nodes, or for a broadcast the `roster` when one is
//! given, else the nodes known (online by presence, or heard without it): see
//! [`FirstContact`] for the nodes nobody knows of yet.

use std::time::Duration;

use crate::topic::NodeId;

/// How a request collects its replies and when it completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The quiet period, or the round length with `rounds`. Fed-BioMed's `TIMEOUT`.
    pub timeout: Duration,
    /// Fed-BioMed's round semantics instead of the quiet period, for exact compatibility.
    pub rounds: Option<Rounds>,
    /// Complete as soon as every expected node has answered.
    pub early: bool,
    /// The nodes expected to answer a broadcast, given by the caller.
    pub roster: Option<Vec<NodeId>>,
    /// Without `roster`, a broadcast expects the nodes online by presence and the nodes without
    /// presence heard lately; once all answered it settles a moment for others
    /// ([`settle_window`]), then completes.
    pub expect_online: bool,
    /// Complete `grace` after this many replies.
    pub min_replies: Option<MinReplies>,
    /// Keep only replies with `success: true` (the others are counted, not kept).
    pub only_successful: bool,
    /// Complete at the first `error` message from a targeted node.
    pub stop_on_error: bool,
    /// Complete this long after submission whatever else happens.
    pub deadline: Option<Duration>,
    /// How long an expected node that went offline before answering is still awaited, counted
    /// while our own connection is up: a will also fires when only the connection broke (a
    /// broker restart fires every will), and the node, back on its session, answers. Past it,
    /// the node is reported missing.
    pub return_window: Duration,
    /// How a broadcast waits for nodes without presence: those known, and those nobody knows of.
    pub first_contact: FirstContact,
}

/// How long a broadcast waits for nodes that announce nothing (Fed-BioMed v4.4's), derived from
/// the reply times it sees.
///
/// - Nobody known: after each answer, `factor` times the spread of the answers so far (the
///   time since the first; a fenced request counts its fence's pongs, which every node sends),
///   at least `min`, at most `max`; no answer at all: the quiet period. A delay every answer
///   shares (a broker's, a network's) does not lengthen the gap.
/// - A node heard before: until its last reply time plus that gap after sending, at most `max`.
///
/// A node slower than that is missed on first contact; its late reply makes it known, so the
/// next broadcasts wait for it. `factor: 0` with `min: max` makes it a fixed window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstContact {
    /// The gap after a reply, as a multiple of that reply's time since sending.
    pub factor: u32,
    /// The shortest gap: covers the jitter between nodes in one room.
    pub min: Duration,
    /// The longest wait after sending for a node without presence; never past `timeout`.
    pub max: Duration,
}

impl Default for FirstContact {
    /// A gap of twice the last reply's time, from 50 ms to 1 s: chosen with the simulator
    /// (`cargo run --release -p fedreq-mem --example first_contact -- --candidates`; the
    /// figures are in docs/presence.md). Below 50 ms, busy nodes are missed.
    fn default() -> Self {
        FirstContact {
            factor: 2,
            min: Duration::from_millis(50),
            max: Duration::from_secs(1),
        }
    }
}

impl FirstContact {
    /// The quiet gap after a reply that came `after` sending, never past `timeout`.
    pub fn gap(&self, after: Duration, timeout: Duration) -> Duration {
        (after * self.factor)
            .clamp(self.min, self.max.max(self.min))
            .min(timeout)
    }

    /// How long after sending a known node without presence is awaited, given how long it
    /// took last time: as long as first contact would have waited for it. A node known only
    /// by its presence was never timed (`took` is zero): it is awaited the longest wait, as its
    /// status, which would make it expected, may come no sooner than its reply.
    pub fn wait_for(&self, took: Duration, timeout: Duration) -> Duration {
        match took.is_zero() {
            true => self.max.min(timeout),
            false => (took + self.gap(took, timeout)).min(self.max).min(timeout),
        }
    }
}

/// Fed-BioMed v4's `get_responses` loop: wait a whole `timeout`, take what came; stop after
/// a round with nothing new, or after the first round unless `while_responses`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounds {
    /// Keep going while each round brings new replies.
    pub while_responses: bool,
}

/// Complete `grace` after `count` replies were kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinReplies {
    /// Replies needed.
    pub count: usize,
    /// Extra wait once they are in, for stragglers.
    pub grace: Duration,
}

/// Fed-BioMed's default `TIMEOUT`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default [`Policy::return_window`]: rumqttc's longest reconnection delay, so a node
/// reconnecting after a broker restart is back within it.
pub const RETURN_WINDOW: Duration = Duration::from_secs(5);

/// The quiet period's overall deadline, in timeouts: replies that keep coming (a flood of
/// node ids, say) cannot keep a request open for ever.
pub const DEADLINE_IN_TIMEOUTS: u32 = 10;

impl Default for Policy {
    /// Quiet period of 5 s, early completion on.
    fn default() -> Self {
        Policy::quiet(DEFAULT_TIMEOUT)
    }
}

impl Policy {
    /// Complete `timeout` after the last reply, or as soon as every expected node answered,
    /// and at the latest [`DEADLINE_IN_TIMEOUTS`] timeouts after submission.
    pub fn quiet(timeout: Duration) -> Self {
        Policy {
            timeout,
            rounds: None,
            early: true,
            roster: None,
            expect_online: true,
            min_replies: None,
            only_successful: false,
            stop_on_error: false,
            deadline: Some(timeout.saturating_mul(DEADLINE_IN_TIMEOUTS)),
            return_window: RETURN_WINDOW,
            first_contact: FirstContact::default(),
        }
    }

    /// Exactly Fed-BioMed v4.4's `get_responses(timeout, only_successful=True,
    /// while_responses=True)`: at least two timeouts, even when everyone answered at once.
    pub fn fedbiomed(timeout: Duration) -> Self {
        Policy {
            rounds: Some(Rounds {
                while_responses: true,
            }),
            early: false,
            expect_online: false,
            only_successful: true,
            deadline: None,
            ..Policy::quiet(timeout)
        }
    }

    /// With these nodes expected to answer a broadcast.
    pub fn with_roster(mut self, nodes: Vec<NodeId>) -> Self {
        self.roster = Some(nodes);
        self
    }

    /// Completing `grace` after `count` replies.
    pub fn with_min_replies(mut self, count: usize, grace: Duration) -> Self {
        self.min_replies = Some(MinReplies { count, grace });
        self
    }

    /// Completing at the first error from a targeted node.
    pub fn with_stop_on_error(mut self) -> Self {
        self.stop_on_error = true;
        self
    }

    /// Completing at the latest `deadline` after submission.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Awaiting a node that went offline `window` more before reporting it missing.
    pub fn with_return_window(mut self, window: Duration) -> Self {
        self.return_window = window;
        self
    }

    /// Keeping only successful replies.
    pub fn with_only_successful(mut self) -> Self {
        self.only_successful = true;
        self
    }
}

/// How long a broadcast by presence waits, once every expected node answered, for nodes that
/// announce nothing (Fed-BioMed v4.4 nodes): a quarter of the time its last expected reply
/// took, from 0.2 ms to 5 ms, never past `timeout`. Replies from the same machine room come
/// within that; a node that answers later is expected by the next broadcasts, until it misses one.
/// Only while such a node may be out there: a core's first broadcast, and every one after a node
/// without presence was heard.
pub fn settle_window(last_expected_after: Duration, timeout: Duration) -> Duration {
    (last_expected_after / 4)
        .clamp(Duration::from_micros(200), Duration::from_millis(5))
        .min(timeout)
}
