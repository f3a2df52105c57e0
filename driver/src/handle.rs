//! The handle callers hold, the orders it sends, and the driver's side that answers them.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    Submit(Submission, Ticket, Answer),
    Collect(Collect, Ticket, Answer),
    Cancel(Ticket),
    TakeMail(Vec<Command>, flume::Sender<Vec<Mail>>),
    Roster(flume::Sender<Roster>),
    Known(flume::Sender<Known>),
}

/// Names a caller's wait, so that dropping it can cancel its request.
type Ticket = u64;

/// The nodes without presence heard lately, with how long each took to answer.
pub type Known = BTreeMap<NodeId, Duration>;

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
    tickets: Arc<AtomicU64>,
    events: flume::Receiver<Event>,
    events_sent: Arc<AtomicU64>,
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

    /// Submits a request; the outcome comes when the core completes it. Dropping the
    /// [`Pending`] before cancels the request.
    pub fn submit(&self, submission: Submission) -> Pending {
        self.pending(|ticket, answer| OrderKind::Submit(submission, ticket, answer))
    }

    /// Collects unmatched messages, as Fed-BioMed's `get_responses` reads its queue.
    pub fn collect(&self, collect: Collect) -> Pending {
        self.pending(|ticket, answer| OrderKind::Collect(collect, ticket, answer))
    }

    fn pending(&self, order: impl FnOnce(Ticket, Answer) -> OrderKind) -> Pending {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        Pending {
            answer: self.ask(|answer| order(ticket, answer)),
            cancel: Some((self.orders.clone(), ticket)),
        }
    }

    /// What the next process may start knowing ([`ResearcherConfig::known`], see
    /// [`Researcher::known`](fedreq_protocol::Researcher::known)).
    pub fn known(&self) -> flume::Receiver<Known> {
        self.ask(OrderKind::Known)
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
        self.events_dropped.load(Ordering::Acquire)
    }

    /// Events sent so far, dropped ones included. Read after an outcome arrives, it counts
    /// every event that came before that outcome: the driver sends them in the core's order.
    pub fn events_sent(&self) -> u64 {
        self.events_sent.load(Ordering::Acquire)
    }

    /// A stopped driver drops the answer's sender: the caller's receiver reports it.
    fn ask<T>(&self, order: impl FnOnce(flume::Sender<T>) -> OrderKind) -> flume::Receiver<T> {
        let (answer, answered) = flume::bounded(1);
        let _ = self.orders.send(Order(Box::new(order(answer))));
        answered
    }
}

/// The outcome of a submitted request, to come. Dropped before it came (a caller that gave
/// up: a dropped future, Ctrl-C), it cancels the request in the core, so the next request of
/// its command goes out at once.
#[derive(Debug)]
pub struct Pending {
    answer: flume::Receiver<Result<Outcome, SubmitError>>,
    cancel: Option<(flume::Sender<Order>, Ticket)>,
}

/// The driver stopped before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the messaging driver stopped")]
pub struct Stopped;

impl Pending {
    /// Blocks until the outcome comes.
    pub fn recv(mut self) -> Result<Result<Outcome, SubmitError>, Stopped> {
        let answer = self.answer.recv().map_err(|_| Stopped);
        self.cancel = None;
        answer
    }

    /// Blocks until the outcome comes, or `timeout` passed: then `None`, and the request is
    /// cancelled.
    pub fn recv_timeout(
        mut self,
        timeout: Duration,
    ) -> Option<Result<Result<Outcome, SubmitError>, Stopped>> {
        let answer = match self.answer.recv_timeout(timeout) {
            Ok(answer) => Ok(answer),
            Err(flume::RecvTimeoutError::Timeout) => return None,
            Err(flume::RecvTimeoutError::Disconnected) => Err(Stopped),
        };
        self.cancel = None;
        Some(answer)
    }

    /// Waits for the outcome, from any executor.
    pub async fn recv_async(mut self) -> Result<Result<Outcome, SubmitError>, Stopped> {
        let answer = self.answer.recv_async().await.map_err(|_| Stopped);
        self.cancel = None;
        answer
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((orders, ticket)) = self.cancel.take() {
            let _ = orders.send(Order(Box::new(OrderKind::Cancel(ticket))));
        }
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
    waiting: HashMap<RequestId, (Ticket, Answer)>,
    tickets: HashMap<Ticket, RequestId>,
    events: Events,
}

/// The bounded event channel, seen from the driver: it drops the oldest to make room.
#[derive(Debug)]
struct Events {
    sender: flume::Sender<Event>,
    oldest: flume::Receiver<Event>,
    sent: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl Events {
    fn send(&self, mut event: Event) {
        loop {
            match self.sender.try_send(event) {
                Ok(()) => {
                    self.sent.fetch_add(1, Ordering::Release);
                    return;
                }
                Err(flume::TrySendError::Disconnected(_)) => return,
                Err(flume::TrySendError::Full(back)) => {
                    if self.oldest.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Release);
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
        let (sent, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let driver = ResearcherDriver {
            core: Researcher::new(config),
            clock: Clock::start(),
            orders,
            waiting: HashMap::new(),
            tickets: HashMap::new(),
            events: Events {
                sender,
                oldest: events_rx.clone(),
                sent: Arc::clone(&sent),
                dropped: Arc::clone(&dropped),
            },
        };
        let handle = ResearcherHandle {
            orders: orders_tx,
            tickets: Arc::default(),
            events: events_rx,
            events_sent: sent,
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
            OrderKind::Submit(submission, ticket, answer) => {
                match self.core.submit(now, submission) {
                    Ok(id) => self.wait(id, ticket, answer),
                    Err(error) => {
                        let _ = answer.send(Err(error));
                    }
                }
            }
            OrderKind::Collect(collect, ticket, answer) => {
                let id = self.core.collect(now, collect);
                self.wait(id, ticket, answer);
            }
            OrderKind::Cancel(ticket) => {
                if let Some(id) = self.tickets.remove(&ticket) {
                    self.waiting.remove(&id);
                    self.core.cancel(now, id);
                }
            }
            OrderKind::Known(answer) => {
                let _ = answer.send(self.core.known());
            }
            OrderKind::TakeMail(commands, answer) => {
                let _ = answer.send(self.core.take_mail(&commands));
            }
            OrderKind::Roster(answer) => {
                let _ = answer.send(self.core.roster().clone());
            }
        }
    }

    /// Remembers who waits for request `id`, unless it completed already.
    fn wait(&mut self, id: RequestId, ticket: Ticket, answer: Answer) {
        self.waiting.insert(id, (ticket, answer));
        self.tickets.insert(ticket, id);
    }

    /// Takes one publish received on the researcher's topics.
    pub fn handle_publish(&mut self, topic: &str, payload: &[u8]) {
        self.core.handle_publish(self.clock.now(), topic, payload);
    }

    /// Takes one publish the broker sent from its retained store (see
    /// [`Researcher::handle_retained`]).
    pub fn handle_retained(&mut self, topic: &str, payload: &[u8]) {
        self.core.handle_retained(self.clock.now(), topic, payload);
    }

    /// Takes a change of the connection.
    pub fn handle_connection(&mut self, state: ConnectionState) {
        self.core.handle_connection(self.clock.now(), state);
    }

    /// Asks the nodes that announce themselves for their statuses (see
    /// [`Researcher::probe_presence`]): once subscribed on the first session; the core asks
    /// again on each reconnection.
    pub fn probe_presence(&mut self) {
        self.core.probe_presence();
    }

    /// The clock reached [`next_wake`](Self::next_wake).
    pub fn handle_timeout(&mut self) {
        self.core.handle_timeout(self.clock.now());
    }

    /// The run loop's one rule, after every input: hands each transmit to `publish`, each
    /// outcome to the caller waiting for it, every other event to the handles' channel.
    pub fn drain(&mut self, publish: impl FnMut(Transmit)) {
        let (waiting, tickets, events) = (&mut self.waiting, &mut self.tickets, &self.events);
        drain(
            &mut self.core,
            publish,
            |outcome| {
                if let Some((ticket, answer)) = waiting.remove(&outcome.id) {
                    tickets.remove(&ticket);
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
        assert_eq!(handle.events_sent(), 50);
    }
}
