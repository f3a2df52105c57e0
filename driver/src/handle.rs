//! The handle callers hold, the orders it sends, and the driver's side that answers them.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fedreq_protocol::researcher::Member;
use fedreq_protocol::{
    Collect, Command, ConnectionState, Event, Mail, NodeId, Outcome, RequestId, Researcher,
    ResearcherConfig, Submission, SubmitError, Transmit,
};

use crate::clock::Clock;

type Answer = flume::Sender<Result<Outcome, SubmitError>>;

/// One order from a handle to its driver, with the channel its answer goes back on. Boxed:
/// a loop's own input enum stays small beside it.
pub struct Order(Box<OrderKind>);

// Boxed whole, so its variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum OrderKind {
    Submit(Submission, Answer),
    Collect(Collect, Answer),
    TakeMail(Vec<Command>, flume::Sender<Vec<Mail>>),
    Roster(flume::Sender<Roster>),
}

/// Every node known by its presence, online or not.
pub type Roster = BTreeMap<NodeId, Member>;

impl std::fmt::Debug for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Order")
    }
}

/// What callers hold: a researcher core driven somewhere, by any transport. Cloning gives
/// another handle to the same driver, which stops when the last handle is dropped. Every
/// answer comes once on the returned receiver; one that disconnects means the driver stopped.
#[derive(Clone)]
pub struct ResearcherHandle {
    orders: flume::Sender<Order>,
    events: flume::Receiver<Event>,
    events_dropped: Arc<AtomicU64>,
    // Declared last, so dropped after `orders`: the loop sees every handle gone first.
    _transport: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for ResearcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResearcherHandle").finish_non_exhaustive()
    }
}

impl ResearcherHandle {
    /// Keeps `transport` (a thread to join, a runtime) alive as long as any handle is; it is
    /// dropped after the loop was told that every handle is gone.
    pub fn keeping(mut self, transport: impl Any + Send + Sync) -> Self {
        self._transport = Some(Arc::new(transport));
        self
    }

    /// Submits a request; the outcome comes when the core completes it.
    pub fn submit(&self, submission: Submission) -> flume::Receiver<Result<Outcome, SubmitError>> {
        self.ask(|answer| OrderKind::Submit(submission, answer))
    }

    /// Collects unmatched messages, as Fed-BioMed's `get_responses` reads its queue.
    pub fn collect(&self, collect: Collect) -> flume::Receiver<Result<Outcome, SubmitError>> {
        self.ask(|answer| OrderKind::Collect(collect, answer))
    }

    /// Takes the mailbox's messages of these commands (all when empty).
    pub fn take_mail(&self, commands: Vec<Command>) -> flume::Receiver<Vec<Mail>> {
        self.ask(|answer| OrderKind::TakeMail(commands, answer))
    }

    /// The nodes known by their presence, online or not, with when their status last changed.
    pub fn roster(&self) -> flume::Receiver<Roster> {
        self.ask(OrderKind::Roster)
    }

    /// Every event but completions: node logs, monitoring scalars, errors, unmatched and
    /// rejected messages, connection changes. Bounded: past [`EVENT_CAPACITY`] unread events,
    /// the oldest is dropped for each new one, and counted in
    /// [`events_dropped`](Self::events_dropped).
    pub fn events(&self) -> &flume::Receiver<Event> {
        &self.events
    }

    /// Events dropped because nobody read them in time.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped.load(Ordering::Relaxed)
    }

    /// A stopped driver drops the answer's sender: the caller's receiver reports it.
    fn ask<T>(&self, order: impl FnOnce(flume::Sender<T>) -> OrderKind) -> flume::Receiver<T> {
        let (answer, answered) = flume::bounded(1);
        let _ = self.orders.send(Order(Box::new(order(answer))));
        answered
    }
}

/// How many unread events the handles' channel holds; past it, the oldest go first.
pub const EVENT_CAPACITY: usize = 10_000;

/// What a transport's loop owns: the core, the callers waiting for an outcome, the clock.
#[derive(Debug)]
pub struct ResearcherDriver {
    core: Researcher,
    clock: Clock,
    orders: flume::Receiver<Order>,
    waiting: HashMap<RequestId, Answer>,
    events: Events,
}

/// The bounded event channel, seen from the driver: it drops the oldest to make room.
#[derive(Debug)]
struct Events {
    sender: flume::Sender<Event>,
    oldest: flume::Receiver<Event>,
    dropped: Arc<AtomicU64>,
}

impl Events {
    fn send(&self, mut event: Event) {
        loop {
            match self.sender.try_send(event) {
                Ok(()) | Err(flume::TrySendError::Disconnected(_)) => return,
                Err(flume::TrySendError::Full(back)) => {
                    if self.oldest.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    event = back;
                }
            }
        }
    }
}

impl ResearcherDriver {
    /// A driver for a new core, and the first handle to it.
    pub fn new(config: ResearcherConfig) -> (ResearcherDriver, ResearcherHandle) {
        Self::with_event_capacity(config, EVENT_CAPACITY)
    }

    /// The same, holding at most `capacity` unread events.
    pub fn with_event_capacity(
        config: ResearcherConfig,
        capacity: usize,
    ) -> (ResearcherDriver, ResearcherHandle) {
        let (orders_tx, orders) = flume::unbounded();
        let (sender, events_rx) = flume::bounded(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let driver = ResearcherDriver {
            core: Researcher::new(config),
            clock: Clock::start(),
            orders,
            waiting: HashMap::new(),
            events: Events {
                sender,
                oldest: events_rx.clone(),
                dropped: Arc::clone(&dropped),
            },
        };
        let handle = ResearcherHandle {
            orders: orders_tx,
            events: events_rx,
            events_dropped: dropped,
            _transport: None,
        };
        (driver, handle)
    }

    /// The orders to wait on; disconnected once every handle is gone.
    pub fn orders(&self) -> &flume::Receiver<Order> {
        &self.orders
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None` for never.
    pub fn next_wake(&self) -> Option<Instant> {
        self.core
            .poll_timeout()
            .and_then(|at| self.clock.instant(at))
    }

    /// The core, for its getters.
    pub fn core(&self) -> &Researcher {
        &self.core
    }

    /// Carries out one order.
    pub fn handle_order(&mut self, order: Order) {
        let now = self.clock.now();
        match *order.0 {
            OrderKind::Submit(submission, answer) => match self.core.submit(now, submission) {
                Ok(id) => {
                    self.waiting.insert(id, answer);
                }
                Err(error) => {
                    let _ = answer.send(Err(error));
                }
            },
            OrderKind::Collect(collect, answer) => {
                self.waiting.insert(self.core.collect(now, collect), answer);
            }
            OrderKind::TakeMail(commands, answer) => {
                let _ = answer.send(self.core.take_mail(&commands));
            }
            OrderKind::Roster(answer) => {
                let _ = answer.send(self.core.roster().clone());
            }
        }
    }

    /// Takes one publish received on the researcher's topics.
    pub fn handle_publish(&mut self, topic: &str, payload: &[u8]) {
        self.core.handle_publish(self.clock.now(), topic, payload);
    }

    /// Takes a change of the connection.
    pub fn handle_connection(&mut self, state: ConnectionState) {
        self.core.handle_connection(self.clock.now(), state);
    }

    /// The clock reached [`next_wake`](Self::next_wake).
    pub fn handle_timeout(&mut self) {
        self.core.handle_timeout(self.clock.now());
    }

    /// The run loop's one rule, after every input: hands each transmit to `publish`, each
    /// outcome to the caller waiting for it, every other event to the handles' channel.
    pub fn drain(&mut self, publish: impl FnMut(Transmit)) {
        let (waiting, events) = (&mut self.waiting, &self.events);
        drain(
            &mut self.core,
            publish,
            |outcome| {
                if let Some(answer) = waiting.remove(&outcome.id) {
                    let _ = answer.send(Ok(outcome));
                }
            },
            |event| events.send(event),
        );
    }
}

/// Drains every output of `core`: transmits to `publish`, completed requests to `complete`,
/// other events to `event`. Every driver of a researcher core, simulated or real, drains this way.
pub fn drain(
    core: &mut Researcher,
    mut publish: impl FnMut(Transmit),
    mut complete: impl FnMut(Outcome),
    mut event: impl FnMut(Event),
) {
    while let Some(transmit) = core.poll_transmit() {
        publish(transmit);
    }
    while let Some(next) = core.poll_event() {
        match next {
            Event::Completed(outcome) => complete(outcome),
            other => event(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_events_are_bounded_the_oldest_dropped_and_counted() {
        let (mut driver, handle) =
            ResearcherDriver::with_event_capacity(ResearcherConfig::new("r"), 10);
        for i in 0..50 {
            let log = format!(
                r#"{{"researcher_id": "<unknown>", "node_id": "n", "level": "INFO", "msg": "log {i}", "command": "log", "protocol_version": "1"}}"#
            );
            driver.handle_publish("general/logger", log.as_bytes());
            driver.drain(|_| {});
        }
        let kept: Vec<String> = handle
            .events()
            .try_iter()
            .map(|event| match event {
                Event::Log(log) => log.text,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kept.len(), 10);
        assert_eq!(
            (kept[0].as_str(), kept[9].as_str()),
            ("log 40", "log 49"),
            "the newest"
        );
        assert_eq!(handle.events_dropped(), 40);
    }
}
