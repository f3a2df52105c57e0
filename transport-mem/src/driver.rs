//! Cores driven in real time over the in-memory [`Broker`]: each driver owns a thread, and
//! answers come back on flume receivers (`recv()` to block, `recv_async().await` from any
//! executor).

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fedreq_protocol::event::{Event, Mail};
use fedreq_protocol::node::FetchResult;
use fedreq_protocol::topic::TargetError;
use fedreq_protocol::{
    topic, Collect, Command, Node, NodeConfig, Outcome, Researcher, ResearcherConfig, Submission,
    SubmitError, Timestamp,
};

use crate::broker::{Broker, Client, Publish};

// Orders are moved once, from a handle to the driver: their size does not matter.
#[allow(clippy::large_enum_variant)]
enum Order {
    Submit(Submission, flume::Sender<Result<Outcome, SubmitError>>),
    Collect(Collect, flume::Sender<Result<Outcome, SubmitError>>),
    TakeMail(Vec<Command>, flume::Sender<Vec<Mail>>),
}

/// A researcher core on the in-memory broker. Dropping it stops its thread.
#[derive(Debug)]
pub struct MemResearcher {
    orders: Option<flume::Sender<Order>>,
    events: flume::Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl MemResearcher {
    /// Connects a researcher core to `broker`, subscribed to the researcher's topics.
    pub fn start(broker: &Broker, config: ResearcherConfig) -> Self {
        let client = broker.connect();
        for filter in topic::RESEARCHER_SUBSCRIPTIONS {
            client.subscribe(filter).expect("valid filter");
        }
        let (orders_tx, orders) = flume::unbounded();
        let (events_tx, events) = flume::unbounded();
        let thread = std::thread::Builder::new()
            .name("fedreq-mem-researcher".into())
            .spawn(move || run_researcher(Researcher::new(config), client, orders, events_tx))
            .expect("spawn the researcher thread");
        MemResearcher {
            orders: Some(orders_tx),
            events,
            thread: Some(thread),
        }
    }

    /// Submits a request; the outcome comes when the core completes it.
    pub fn submit(&self, submission: Submission) -> flume::Receiver<Result<Outcome, SubmitError>> {
        let (reply, answer) = flume::bounded(1);
        self.order(Order::Submit(submission, reply));
        answer
    }

    /// Collects unmatched messages, as Fed-BioMed's `get_responses` reads its queue.
    pub fn collect(&self, collect: Collect) -> flume::Receiver<Result<Outcome, SubmitError>> {
        let (reply, answer) = flume::bounded(1);
        self.order(Order::Collect(collect, reply));
        answer
    }

    /// Takes the unmatched messages of these commands (all when empty) from the mailbox.
    pub fn take_mail(&self, commands: Vec<Command>) -> flume::Receiver<Vec<Mail>> {
        let (reply, answer) = flume::bounded(1);
        self.order(Order::TakeMail(commands, reply));
        answer
    }

    /// A stopped driver drops the reply sender: the caller's receiver reports it.
    fn order(&self, order: Order) {
        if let Some(orders) = &self.orders {
            let _ = orders.send(order);
        }
    }

    /// Every event but completions.
    pub fn events(&self) -> &flume::Receiver<Event> {
        &self.events
    }
}

impl Drop for MemResearcher {
    fn drop(&mut self) {
        self.orders.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[allow(clippy::large_enum_variant)]
enum Step {
    Publish(Publish),
    Order(Order),
    Timer,
    Stop,
}

fn run_researcher(
    mut core: Researcher,
    client: Client,
    orders: flume::Receiver<Order>,
    events: flume::Sender<Event>,
) {
    let epoch = Instant::now();
    let now = || Timestamp::from_duration(epoch.elapsed());
    let mut waiting = HashMap::new();
    loop {
        let selector = flume::Selector::new()
            .recv(client.inbox(), |m| m.map_or(Step::Stop, Step::Publish))
            .recv(&orders, |o| o.map_or(Step::Stop, Step::Order));
        // A deadline past what an Instant can hold is never.
        let deadline = core
            .poll_timeout()
            .and_then(|at| epoch.checked_add(at.since_epoch()));
        let step = match deadline {
            Some(deadline) => selector.wait_deadline(deadline).unwrap_or(Step::Timer),
            None => selector.wait(),
        };
        match step {
            Step::Publish(publish) => core.handle_publish(now(), &publish.topic, &publish.payload),
            Step::Order(Order::Submit(submission, reply)) => match core.submit(now(), submission) {
                Ok(id) => {
                    waiting.insert(id, reply);
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Step::Order(Order::Collect(collect, reply)) => {
                waiting.insert(core.collect(now(), collect), reply);
            }
            Step::Order(Order::TakeMail(commands, reply)) => {
                let _ = reply.send(core.take_mail(&commands));
            }
            Step::Timer => core.handle_timeout(now()),
            Step::Stop => return,
        }
        while let Some(transmit) = core.poll_transmit() {
            let _ = client.publish(&transmit.topic, transmit.payload);
        }
        while let Some(event) = core.poll_event() {
            match event {
                Event::Completed(outcome) => {
                    if let Some(reply) = waiting.remove(&outcome.id) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                other => {
                    let _ = events.send(other);
                }
            }
        }
    }
}

/// Node cores on the in-memory broker, all on one thread. Dropping it stops them.
#[derive(Debug)]
pub struct MemNodes {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MemNodes {
    /// Connects these nodes to `broker`; `fetch` downloads training plans for them. Fails on a
    /// node id that is not one topic level.
    pub fn start<F>(broker: &Broker, nodes: Vec<NodeConfig>, fetch: F) -> Result<Self, TargetError>
    where
        F: Fn(&str) -> FetchResult + Send + 'static,
    {
        let nodes: Vec<(Node, Client)> = nodes
            .into_iter()
            .map(|config| {
                topic::validate_node_id(&config.node_id)?;
                let node = Node::new(config);
                let client = broker.connect();
                for filter in node.subscriptions() {
                    client
                        .subscribe(&filter)
                        .expect("a valid node id makes valid filters");
                }
                Ok((node, client))
            })
            .collect::<Result<_, TargetError>>()?;
        let (stop, stopped) = flume::bounded(1);
        let thread = std::thread::Builder::new()
            .name("fedreq-mem-nodes".into())
            .spawn(move || run_nodes(nodes, stopped, fetch))
            .expect("spawn the nodes thread");
        Ok(MemNodes {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for MemNodes {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_nodes<F: Fn(&str) -> FetchResult>(
    mut nodes: Vec<(Node, Client)>,
    stopped: flume::Receiver<()>,
    fetch: F,
) {
    let wall_clock = || {
        Timestamp::from_duration(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        )
    };
    loop {
        let mut selector = flume::Selector::new().recv(&stopped, |_| None);
        for (i, (_, client)) in nodes.iter().enumerate() {
            selector = selector.recv(client.inbox(), move |m| m.ok().map(|m| (i, m)));
        }
        let Some((i, publish)) = selector.wait() else {
            return;
        };
        let (node, client) = &mut nodes[i];
        node.handle_publish(wall_clock(), &publish.topic, &publish.payload);
        while let Some(download) = node.poll_fetch() {
            let result = fetch(&download.url);
            node.handle_fetched(wall_clock(), download.id, result);
        }
        while let Some(transmit) = node.poll_transmit() {
            let _ = client.publish(&transmit.topic, transmit.payload);
        }
    }
}
