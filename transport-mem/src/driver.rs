//! Cores driven in real time over the in-memory [`Broker`]: each driver owns a thread. The
//! researcher's loop is the one of [`fedreq_driver`], over the broker's channels.

use std::thread::JoinHandle;

use fedreq_driver::{Clock, Order, ResearcherDriver, ResearcherHandle};
use fedreq_protocol::node::{CheckedPlan, FetchResult};
use fedreq_protocol::presence::{self, Presence, Status};
use fedreq_protocol::topic::TargetError;
use fedreq_protocol::{topic, Node, NodeConfig, ResearcherConfig};

use crate::broker::{Broker, Client, Publish};

/// Connects a researcher core to `broker`, subscribed to the researcher's topics, on a thread
/// of its own that stops when the last handle is dropped.
pub fn connect_researcher(broker: &Broker, config: ResearcherConfig) -> ResearcherHandle {
    let client = broker.connect();
    for filter in topic::RESEARCHER_SUBSCRIPTIONS {
        client.subscribe(filter).expect("valid filter");
    }
    let (mut driver, handle) = ResearcherDriver::new(config);
    // The retained statuses are in the inbox already: the roster is known before any order.
    while let Ok(publish) = client.inbox().try_recv() {
        receive(&mut driver, &publish);
    }
    // Subscribed: ask for the statuses a broker did not deliver.
    driver.probe_presence();
    let thread = std::thread::Builder::new()
        .name("fedreq-mem-researcher".into())
        .spawn(move || run_researcher(driver, client))
        .expect("spawn the researcher thread");
    handle.keeping(Joined(Some(thread)))
}

/// Joins its thread when dropped.
struct Joined(Option<JoinHandle<()>>);

impl Drop for Joined {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

enum Step {
    Publish(Publish),
    Order(Order),
    Timer,
    Stop,
}

fn run_researcher(mut driver: ResearcherDriver, client: Client) {
    loop {
        driver.drain(|transmit| {
            let _ = client.publish(&transmit.topic, transmit.payload);
        });
        let selector = flume::Selector::new()
            .recv(client.inbox(), |m| m.map_or(Step::Stop, Step::Publish))
            .recv(driver.orders(), |o| o.map_or(Step::Stop, Step::Order));
        let step = match driver.next_wake() {
            Some(wake) => selector.wait_deadline(wake).unwrap_or(Step::Timer),
            None => selector.wait(),
        };
        match step {
            Step::Publish(publish) => receive(&mut driver, &publish),
            Step::Order(order) => driver.handle_order(order),
            Step::Timer => driver.handle_timeout(),
            Step::Stop => return,
        }
    }
}

fn receive(driver: &mut ResearcherDriver, publish: &Publish) {
    match publish.retained {
        true => driver.handle_retained(&publish.topic, &publish.payload),
        false => driver.handle_publish(&publish.topic, &publish.payload),
    }
}

/// Node cores on the in-memory broker, all on one thread. Dropping it stops them.
#[derive(Debug)]
pub struct NodeDriver {
    stop: Option<flume::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NodeDriver {
    /// Connects these nodes to `broker`; `fetch` downloads training plans for them. Fails on a
    /// node id that is not one topic level.
    pub fn start<F>(broker: &Broker, nodes: Vec<NodeConfig>, fetch: F) -> Result<Self, TargetError>
    where
        F: Fn(&str) -> FetchResult + Send + 'static,
    {
        Self::spawn(broker, nodes, fetch, true)
    }

    /// The same, for nodes that announce nothing, as Fed-BioMed v4.4's.
    pub fn start_silent<F>(
        broker: &Broker,
        nodes: Vec<NodeConfig>,
        fetch: F,
    ) -> Result<Self, TargetError>
    where
        F: Fn(&str) -> FetchResult + Send + 'static,
    {
        Self::spawn(broker, nodes, fetch, false)
    }

    fn spawn<F>(
        broker: &Broker,
        nodes: Vec<NodeConfig>,
        fetch: F,
        presence: bool,
    ) -> Result<Self, TargetError>
    where
        F: Fn(&str) -> FetchResult + Send + 'static,
    {
        let incarnation = incarnation();
        let nodes: Vec<(Node, Client)> = nodes
            .into_iter()
            .map(|mut config| {
                topic::validate_node_id(&config.node_id)?;
                config.announces_as = presence.then_some(incarnation);
                let node = Node::new(config);
                let client = broker.connect();
                for filter in node.subscriptions() {
                    client
                        .subscribe(&filter)
                        .expect("a valid node id makes valid filters");
                }
                if presence {
                    announce(&client, node.node_id(), incarnation);
                }
                Ok((node, client))
            })
            .collect::<Result<_, TargetError>>()?;
        let (stop, stopped) = flume::bounded(1);
        let thread = std::thread::Builder::new()
            .name("fedreq-mem-nodes".into())
            .spawn(move || run_nodes(nodes, presence.then_some(incarnation), stopped, fetch))
            .expect("spawn the nodes thread");
        Ok(NodeDriver {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for NodeDriver {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the nodes until stopped; `incarnation` when they announce themselves.
fn run_nodes<F: Fn(&str) -> FetchResult>(
    mut nodes: Vec<(Node, Client)>,
    incarnation: Option<u64>,
    stopped: flume::Receiver<()>,
    fetch: F,
) {
    let clock = Clock::start();
    let wall_clock = || clock.now();
    // Plans are checked on threads of their own: the nodes go on answering meanwhile.
    let (checks, checked) = flume::unbounded::<(usize, CheckedPlan)>();
    loop {
        let mut selector = flume::Selector::new()
            .recv(&stopped, |_| None)
            .recv(&checked, |c| c.ok().map(|(i, c)| (i, Ready::Checked(c))));
        for (i, (_, client)) in nodes.iter().enumerate() {
            selector = selector.recv(client.inbox(), move |m| {
                m.ok().map(|m| (i, Ready::Publish(m)))
            });
        }
        let Some((i, ready)) = selector.wait() else {
            // A clean stop says so: no will, an explicit `stopped`.
            for (node, client) in nodes.iter().filter(|_| incarnation.is_some()) {
                let incarnation = incarnation.unwrap_or_default();
                let stopped = Presence::new(node.node_id(), Status::Stopped, incarnation);
                let _ = client.publish_retained(&presence::topic(node.node_id()), stopped.encode());
            }
            return;
        };
        let (node, client) = &mut nodes[i];
        match ready {
            Ready::Publish(publish) => {
                node.handle_publish(wall_clock(), &publish.topic, &publish.payload)
            }
            Ready::Checked(plan) => node.handle_checked(wall_clock(), plan),
        }
        while let Some(download) = node.poll_fetch() {
            let result = fetch(&download.url);
            node.handle_fetched(wall_clock(), download.id, result);
        }
        while let Some(job) = node.poll_check() {
            let checks = checks.clone();
            std::thread::spawn(move || checks.send((i, job.run())));
        }
        while let Some(transmit) = node.poll_transmit() {
            let _ = client.publish(&transmit.topic, transmit.payload);
        }
    }
}

/// What woke the nodes' loop.
enum Ready {
    Publish(crate::broker::Publish),
    Checked(CheckedPlan),
}

/// A run's incarnation: its start, in nanoseconds since the Unix epoch.
pub(crate) fn incarnation() -> u64 {
    Clock::start().now().since_epoch().as_nanos() as u64
}

/// Registers the node's will (`offline`) and says it is `online`, both retained.
fn announce(client: &Client, node_id: &str, incarnation: u64) {
    let topic = presence::topic(node_id);
    let status = |status| Presence::new(node_id, status, incarnation).encode();
    let _ = client.set_will(&topic, status(Status::Offline));
    let _ = client.publish_retained(&topic, status(Status::Online));
}
