//! The node driver: node cores on MQTT connections. Many nodes share one driver thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fedreq_driver::Clock;
use fedreq_protocol::node::{CheckedPlan, FetchId, FetchResult};
use fedreq_protocol::presence::{self, Presence, Status};
use fedreq_protocol::{Node, NodeConfig, Transmit};
use rumqttc::{AsyncClient, SubscribeFilter};

use crate::config::{MqttConfig, Session};
use crate::connection::{self, ConnectError, Extras, Input};
use crate::outbox::Outbox;
use crate::runtime::Runtime;

const REQUEST_CAPACITY: usize = 256;

/// Downloads training plans for nodes: HTTP in production, anything in tests.
pub trait Fetcher: Send + Sync + 'static {
    /// Downloads `url`.
    fn fetch(&self, url: String) -> Pin<Box<dyn Future<Output = FetchResult> + Send>>;
}

impl<F, Fut> Fetcher for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = FetchResult> + Send + 'static,
{
    fn fetch(&self, url: String) -> Pin<Box<dyn Future<Output = FetchResult> + Send>> {
        Box::pin(self(url))
    }
}

/// A node core driven over MQTT until the handle is dropped.
#[derive(Debug)]
pub struct NodeDriver {
    node_id: String,
    _alive: flume::Sender<()>,
    _runtime: Runtime,
}

impl NodeDriver {
    /// Starts one node on `runtime`, blocking until its session is up or has failed.
    pub fn start(
        runtime: &Runtime,
        mqtt: &MqttConfig,
        node: NodeConfig,
        fetcher: Arc<dyn Fetcher>,
    ) -> Result<Self, ConnectError> {
        let mut drivers = Self::start_many(runtime, mqtt, vec![node], fetcher)?;
        Ok(drivers.remove(0))
    }

    /// Starts many nodes on `runtime` at once, blocking until every session is up; fails
    /// (and stops them all) if any cannot connect.
    pub fn start_many(
        runtime: &Runtime,
        mqtt: &MqttConfig,
        nodes: Vec<NodeConfig>,
        fetcher: Arc<dyn Fetcher>,
    ) -> Result<Vec<Self>, ConnectError> {
        let nodes = nodes.into_iter().map(|node| (mqtt.clone(), node)).collect();
        Self::start_each(runtime, nodes, fetcher)
    }

    /// The same, each node with a broker configuration of its own (a cluster's member first).
    pub fn start_each(
        runtime: &Runtime,
        nodes: Vec<(MqttConfig, NodeConfig)>,
        fetcher: Arc<dyn Fetcher>,
    ) -> Result<Vec<Self>, ConnectError> {
        let started: Vec<(flume::Receiver<Result<(), ConnectError>>, NodeDriver)> = nodes
            .into_iter()
            .map(|(mqtt, node)| spawn(runtime, mqtt, node, Arc::clone(&fetcher)))
            .collect();
        let mut drivers = Vec::with_capacity(started.len());
        for (ready, driver) in started {
            ready.recv().map_err(|_| crate::researcher::stopped())??;
            drivers.push(driver);
        }
        Ok(drivers)
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }
}

fn spawn(
    runtime: &Runtime,
    mqtt: MqttConfig,
    mut node: NodeConfig,
    fetcher: Arc<dyn Fetcher>,
) -> (flume::Receiver<Result<(), ConnectError>>, NodeDriver) {
    let (alive, dropped) = flume::bounded::<()>(1);
    let (ready_tx, ready) = flume::bounded(1);
    let node_id = node.node_id.clone();
    let relay = runtime.relay().clone();
    runtime.spawn(async move {
        let qos = mqtt.qos.to_rumqttc();
        let filters = subscriptions(&node.node_id, qos);
        let incarnation = Clock::start().now().since_epoch().as_nanos() as u64;
        let offline = status(&node.node_id, Status::Offline, incarnation);
        node.announces_as = mqtt.presence.then_some(incarnation);
        let extras = Extras {
            will: mqtt.presence.then_some((offline.topic, offline.payload)),
            sync: None,
        };
        // A node's persistent session is named after it.
        let client_id = match mqtt.session {
            Session::Persistent => format!("fedreq-node-{}", node.node_id),
            Session::Clean => connection::client_id("node"),
        };
        let start = || {
            let (filters, extras) = (filters.clone(), extras.clone());
            connection::start(
                &mqtt,
                &relay,
                client_id.clone(),
                REQUEST_CAPACITY,
                filters,
                extras,
            )
        };
        // One node id, one node: a second run of an id stops here, the first goes on.
        if mqtt.presence {
            if let Err(error) = connection::claim(&mqtt, &relay, &node.node_id, incarnation).await {
                let _ = ready_tx.send(Err(error));
                return;
            }
        }
        let started = match start().await {
            // A run that died left its session, with what was queued for it: asked of that run,
            // and nobody waits for its answers now. This run ends it and starts afresh.
            Ok(stale) if stale.resumed => {
                connection::disconnect(&stale.client, &stale.inputs).await;
                drop(stale.stop);
                stale.members.end().await;
                start().await
            }
            started => started,
        };
        let session = match started {
            Ok(session) => session,
            Err(error) => {
                let _ = ready_tx.send(Err(error));
                return;
            }
        };
        let (fetched_tx, fetched) = flume::unbounded();
        let mut task = Task {
            core: Node::new(node),
            client: session.client,
            qos,
            outbox: Outbox::default(),
            fetcher,
            fetched: fetched_tx,
            clock: Clock::start(),
            incarnation,
            presence: mqtt.presence,
        };
        for input in session.early {
            task.input(input);
        }
        task.announce(Status::Online);
        task.flush();
        let _ = ready_tx.send(Ok(()));
        if task.run(&session.inputs, fetched, dropped).await {
            drop(session.stop);
            session.members.end().await;
        }
    });
    let driver = NodeDriver {
        node_id,
        _alive: alive,
        _runtime: runtime.clone(),
    };
    (ready, driver)
}

struct Task {
    core: Node,
    client: AsyncClient,
    qos: rumqttc::QoS,
    outbox: Outbox,
    fetcher: Arc<dyn Fetcher>,
    /// Downloads and checks report here.
    fetched: flume::Sender<Done>,
    clock: Clock,
    /// This run of the node, in its statuses.
    incarnation: u64,
    /// Whether it announces itself; a Fed-BioMed v4.4 node does not.
    presence: bool,
}

impl Task {
    fn input(&mut self, input: Input) {
        match input {
            Input::Publish { topic, payload, .. } => {
                self.core.handle_publish(self.clock.now(), &topic, &payload)
            }
            Input::Connected { .. } => {
                let filters = subscriptions(self.core.node_id(), self.qos);
                self.outbox.reconnected(filters);
                // Every session says it again: the broker may have published the will meanwhile.
                self.announce(Status::Online);
            }
            Input::Subscribed(_) => self.outbox.subscribed(),
            Input::Disconnected { .. } => self.outbox.disconnected(),
        }
    }

    /// Queues the node's status, retained; it goes out once the session is subscribed.
    fn announce(&mut self, status: Status) {
        if !self.presence {
            return;
        }
        let node_id = self.core.node_id().to_owned();
        self.outbox
            .push_retained(self::status(&node_id, status, self.incarnation));
    }

    /// Publishes what the core has to say and starts the downloads it asks for.
    fn flush(&mut self) {
        while let Some(transmit) = self.core.poll_transmit() {
            self.outbox.push(transmit);
        }
        self.outbox.flush(&self.client, self.qos);
        while let Some(fetch) = self.core.poll_fetch() {
            let download = self.fetcher.fetch(fetch.url);
            let fetched = self.fetched.clone();
            tokio::spawn(async move {
                let _ = fetched.send(Done::Fetched(fetch.id, download.await));
            });
        }
        // Off the loop: the node answers pings while a large plan is checked.
        while let Some(job) = self.core.poll_check() {
            let checked = self.fetched.clone();
            tokio::task::spawn_blocking(move || checked.send(Done::Checked(job.run())));
        }
    }

    /// Runs until the connection task stops (false) or the handle is dropped: then a clean
    /// stop (true).
    async fn run(
        mut self,
        inputs: &flume::Receiver<Input>,
        fetched: flume::Receiver<Done>,
        dropped: flume::Receiver<()>,
    ) -> bool {
        loop {
            tokio::select! {
                input = inputs.recv_async() => match input {
                    Ok(input) => self.input(input),
                    Err(_) => return false,
                },
                Ok(done) = fetched.recv_async() => match done {
                    Done::Fetched(id, result) => self.core.handle_fetched(self.clock.now(), id, result),
                    Done::Checked(plan) => self.core.handle_checked(self.clock.now(), plan),
                },
                _ = dropped.recv_async() => {
                    self.stop(inputs).await;
                    return true;
                }
                _ = tokio::time::sleep(Duration::from_millis(1)), if self.outbox.is_pending() => {}
            }
            self.flush();
        }
    }

    /// Says `stopped` and disconnects cleanly (no will), waiting a moment for both to go out.
    async fn stop(mut self, inputs: &flume::Receiver<Input>) {
        self.announce(Status::Stopped);
        self.outbox.flush(&self.client, self.qos);
        connection::disconnect(&self.client, inputs).await;
    }
}

/// Work the node's loop handed out, done.
enum Done {
    Fetched(FetchId, FetchResult),
    Checked(CheckedPlan),
}

/// The node's status as it travels.
fn status(node_id: &str, status: Status, incarnation: u64) -> Transmit {
    Transmit::new(
        presence::topic(node_id),
        Presence::new(node_id, status, incarnation).encode(),
    )
}

/// `general/nodes` and the node's own topic.
fn subscriptions(node_id: &str, qos: rumqttc::QoS) -> Vec<SubscribeFilter> {
    fedreq_protocol::topic::node_subscriptions(node_id)
        .into_iter()
        .map(|t| SubscribeFilter::new(t, qos))
        .collect()
}
