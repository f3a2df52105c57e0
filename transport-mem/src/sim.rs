//! The deterministic simulator: one researcher core and N node cores exchanging messages
//! through the router on a virtual clock, with seeded faults. Nothing here reads a clock or
//! the operating system's randomness, so a seed and options give the same trace every time.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use fedreq_protocol::message::Object;
use fedreq_protocol::node::{FetchId, FetchResult};
use fedreq_protocol::presence::{self, Presence, Status};
use fedreq_protocol::topic::{self, NodeId};
use fedreq_protocol::Event;
use fedreq_protocol::{
    Node, NodeConfig, Outcome, RequestId, Researcher, ResearcherConfig, Submission, SubmitError,
    Timestamp,
};
use serde_json::json;

use crate::rng::Rng;
use crate::router::Router;
use crate::trace::{Endpoint, Fate, TraceEntry, TraceHash};

/// Faults applied to a run. Probabilities are per message and per recipient.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Each message's latency is drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message arrives twice.
    pub duplicate: f64,
    /// Probability that a message is held back (up to twice the maximum latency more), so
    /// that later ones overtake it.
    pub reorder: f64,
    /// Share of nodes that are never online: exactly `round(offline * N)`, chosen by the seed.
    pub offline: f64,
    /// Nodes that crash once and come back.
    pub crash: Option<Crash>,
    /// Nodes that take longer to answer.
    pub slow: Option<Slow>,
    /// Each node's own distance: a delay drawn once per node, added to everything it sends.
    pub distance: Option<Distance>,
    /// Busy nodes: each message a node sends waits up to this long more, drawn per message.
    pub busy: Option<Duration>,
    /// Share of the nodes that announce nothing (as Fed-BioMed v4.4's): no status, no will.
    pub silent: f64,
}

/// How far each node is from the broker, drawn once per node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distance {
    /// Uniform in this range: nodes across a country.
    Uniform(Duration, Duration),
    /// Log-normal: `median`, and the standard deviation of its logarithm (a heavy tail).
    LogNormal {
        /// The median delay.
        median: Duration,
        /// Spread of the logarithm; 1.0 puts one node in six beyond 2.7 times the median.
        sigma: f64,
    },
}

impl Default for Faults {
    /// 1 to 5 ms of latency, nothing else.
    fn default() -> Self {
        Faults {
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            offline: 0.0,
            crash: None,
            slow: None,
            distance: None,
            busy: None,
            silent: 0.0,
        }
    }
}

/// A share of the online nodes crash at a random time within `within` and come back `down` later;
/// messages for them meanwhile are lost, as with MQTT QoS 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Crash {
    /// Share of online nodes, rounded.
    pub fraction: f64,
    /// Crashes happen in [0, within] of virtual time.
    pub within: Duration,
    /// How long a crashed node stays down.
    pub down: Duration,
}

/// A share of the nodes add `delay` to every message they send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slow {
    /// Share of nodes, rounded.
    pub fraction: f64,
    /// Extra time per message.
    pub delay: Duration,
}

/// A simulation's set-up.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// How many nodes.
    pub nodes: usize,
    /// Seeds every random choice.
    pub seed: u64,
    /// Faults.
    pub faults: Faults,
    /// The researcher's id.
    pub researcher_id: String,
    /// Keep every trace entry (the hash is always computed).
    pub keep_trace: bool,
}

impl SimConfig {
    /// `nodes` nodes, seed `seed`, default faults, no trace kept.
    pub fn new(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            seed,
            faults: Faults::default(),
            researcher_id: "researcher-sim".into(),
            keep_trace: false,
        }
    }
}

/// A training plan the simulated repository serves, for `approve` requests.
pub const EXAMPLE_PLAN_URL: &str = "http://repository.sim/uploads/example_plan.py";

/// Something that happens at a virtual instant.
#[derive(Debug)]
enum Action {
    Deliver {
        from: Endpoint,
        to: Endpoint,
        topic: Arc<str>,
        payload: Arc<[u8]>,
    },
    Fetched {
        node: u32,
        id: FetchId,
        result: FetchResult,
    },
    Crash(u32),
    Recover(u32),
}

/// An action and when; ties keep scheduling order.
#[derive(Debug)]
struct Scheduled {
    at: Timestamp,
    order: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

#[derive(Debug)]
struct SimNode {
    core: Node,
    up: bool,
    /// Added to everything it sends: its slowness and its distance.
    slow: Duration,
    incarnation: u64,
}

/// A federation on one virtual clock.
#[derive(Debug)]
pub struct Simulation {
    now: Timestamp,
    rng: Rng,
    faults: Faults,
    researcher: Researcher,
    node_ids: Vec<NodeId>,
    nodes: Vec<SimNode>,
    offline: Vec<usize>,
    router: Router<Endpoint>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    scheduled: u64,
    repository: BTreeMap<String, Vec<u8>>,
    keep_trace: bool,
    trace: Vec<TraceEntry>,
    hash: TraceHash,
    trace_len: u64,
    outcomes: BTreeMap<RequestId, Outcome>,
    events: Vec<Event>,
}

impl Simulation {
    /// Sets up the federation: nodes `node-0..`, each holding simulated datasets (see
    /// [`simulated_datasets`]), the offline, slow and crashing ones drawn from the seed.
    pub fn new(config: SimConfig) -> Self {
        let SimConfig {
            nodes: n,
            seed,
            faults,
            researcher_id,
            keep_trace,
        } = config;
        let mut rng = Rng::new(seed);
        let researcher = Researcher::new(ResearcherConfig {
            first_sequence: rng.next_u64() >> 16,
            hash_seed: rng.next_u64(),
            ..ResearcherConfig::new(researcher_id)
        });
        let width = n.saturating_sub(1).to_string().len();
        let node_ids: Vec<NodeId> = (0..n).map(|i| format!("node-{i:0width$}")).collect();
        let variants: Vec<Arc<[Object]>> = (0..10).map(simulated_datasets).collect();
        let mut nodes: Vec<SimNode> = node_ids
            .iter()
            .enumerate()
            .map(|(i, id)| SimNode {
                core: Node::new(NodeConfig {
                    announces_as: Some(1),
                    ..NodeConfig::new(id.clone(), Arc::clone(&variants[i % 10]))
                }),
                up: true,
                slow: Duration::ZERO,
                incarnation: 1,
            })
            .collect();

        let share = |fraction: f64, of: usize| {
            ((fraction.clamp(0.0, 1.0) * of as f64).round() as usize).min(of)
        };
        let mut offline = rng.sample(n, share(faults.offline, n));
        offline.sort_unstable();
        for &i in &offline {
            nodes[i].up = false;
        }
        if let Some(slow) = faults.slow {
            for i in rng.sample(n, share(slow.fraction, n)) {
                nodes[i].slow = slow.delay;
            }
        }
        if let Some(distance) = faults.distance {
            for node in &mut nodes {
                node.slow += distance.draw(&mut rng);
            }
        }
        for i in rng.sample(n, share(faults.silent, n)) {
            // Silent as a v4.4 node: no status, nothing when a search finds nothing either.
            nodes[i].core.announce_as(None);
        }

        let mut sim = Simulation {
            now: Timestamp::ZERO,
            rng,
            faults,
            researcher,
            node_ids,
            nodes,
            offline,
            router: Router::default(),
            queue: BinaryHeap::new(),
            scheduled: 0,
            repository: BTreeMap::from([(
                EXAMPLE_PLAN_URL.to_owned(),
                EXAMPLE_PLAN.as_bytes().to_vec(),
            )]),
            keep_trace,
            trace: Vec::new(),
            hash: TraceHash::default(),
            trace_len: 0,
            outcomes: BTreeMap::new(),
            events: Vec::new(),
        };
        for filter in topic::RESEARCHER_SUBSCRIPTIONS {
            sim.router
                .subscribe(Endpoint::Researcher, filter)
                .expect("valid filter");
        }
        for i in 0..n {
            if sim.nodes[i].up {
                sim.subscribe_node(i);
                if !sim.nodes[i].core.announces() {
                    continue;
                }
                // Retained before the researcher subscribed: it knows them from the start.
                let online = Presence::new(sim.node_ids[i].clone(), Status::Online, 1);
                let topic = presence::topic(&online.node_id);
                sim.researcher
                    .handle_publish(Timestamp::ZERO, &topic, &online.encode());
            }
        }
        if let Some(crash) = sim.faults.crash {
            let online: Vec<usize> = (0..n).filter(|&i| sim.nodes[i].up).collect();
            for pick in sim
                .rng
                .sample(online.len(), share(crash.fraction, online.len()))
            {
                let node = online[pick] as u32;
                let at = Timestamp::from_duration(Duration::from_nanos(
                    sim.rng.between(0, crash.within.as_nanos() as u64),
                ));
                sim.schedule(at, Action::Crash(node));
                sim.schedule(at + crash.down, Action::Recover(node));
            }
        }
        sim
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Every node's id, by index.
    pub fn node_ids(&self) -> &[NodeId] {
        &self.node_ids
    }

    /// The nodes that are never online.
    pub fn offline_nodes(&self) -> Vec<NodeId> {
        self.offline
            .iter()
            .map(|&i| self.node_ids[i].clone())
            .collect()
    }

    /// Node `i`'s core, for example to approve a plan it holds.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i].core
    }

    /// Serves `content` at `url` from the simulated repository.
    pub fn add_file(&mut self, url: impl Into<String>, content: Vec<u8>) {
        self.repository.insert(url.into(), content);
    }

    /// Every delivery so far, when `keep_trace` is on.
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// How many entries the trace has, kept or not.
    pub fn trace_len(&self) -> u64 {
        self.trace_len
    }

    /// The hash of the trace so far: the same seed and options give the same hash.
    pub fn trace_hash(&self) -> u64 {
        self.hash.value()
    }

    /// Researcher events other than completions (logs, monitoring, unmatched, rejected), taken.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Submits a request now.
    pub fn submit(&mut self, submission: Submission) -> Result<RequestId, SubmitError> {
        let id = self.researcher.submit(self.now, submission)?;
        self.drain_researcher();
        Ok(id)
    }

    /// Runs until request `id` completes and returns its outcome (`None` for an id that is
    /// neither in flight nor completed and not yet taken).
    pub fn run_until_complete(&mut self, id: RequestId) -> Option<Outcome> {
        loop {
            if let Some(outcome) = self.outcomes.remove(&id) {
                return Some(outcome);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// Submits a request and runs until it completes.
    pub fn request(&mut self, submission: Submission) -> Result<Outcome, SubmitError> {
        let id = self.submit(submission)?;
        Ok(self
            .run_until_complete(id)
            .expect("every submitted request completes"))
    }

    /// Runs until nothing is scheduled and no timer runs; returns the outcomes not yet taken.
    pub fn run_until_idle(&mut self) -> Vec<Outcome> {
        while self.step() {}
        std::mem::take(&mut self.outcomes).into_values().collect()
    }

    /// Advances to the next timer or scheduled action; `false` when there is none.
    fn step(&mut self) -> bool {
        let timer = self.researcher.poll_timeout();
        let next = self.queue.peek().map(|Reverse(s)| s.at);
        match (timer, next) {
            (None, None) => return false,
            (Some(at), next) if next.is_none_or(|n| at <= n) => {
                self.now = self.now.max(at);
                self.researcher.handle_timeout(at);
            }
            _ => {
                let Reverse(scheduled) = self.queue.pop().expect("peeked");
                self.now = scheduled.at;
                self.act(scheduled.action);
            }
        }
        self.drain_researcher();
        true
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Deliver {
                from,
                to,
                topic,
                payload,
            } => {
                let up = match to {
                    Endpoint::Researcher => true,
                    Endpoint::Node(i) => self.nodes[i as usize].up,
                };
                let fate = if up { Fate::Delivered } else { Fate::Down };
                self.record(from, to, &topic, &payload, fate);
                if !up {
                    return;
                }
                match to {
                    Endpoint::Researcher => {
                        self.researcher.handle_publish(self.now, &topic, &payload)
                    }
                    Endpoint::Node(i) => {
                        self.nodes[i as usize]
                            .core
                            .handle_publish(self.now, &topic, &payload);
                        self.drain_node(i);
                    }
                }
            }
            // A node that crashed meanwhile lost the download with the rest.
            Action::Fetched { node, id, result } => {
                if self.nodes[node as usize].up {
                    self.nodes[node as usize]
                        .core
                        .handle_fetched(self.now, id, result);
                    self.drain_node(node);
                }
            }
            // The broker publishes the crashed node's will; it comes back as a new run.
            Action::Crash(node) => {
                self.nodes[node as usize].up = false;
                self.router.remove(Endpoint::Node(node));
                self.announce(node, Status::Offline);
            }
            Action::Recover(node) => {
                // A run's incarnation is its start, as a real node's.
                let started = self.now.since_epoch().as_nanos() as u64;
                let node_state = &mut self.nodes[node as usize];
                node_state.up = true;
                node_state.incarnation = started.max(node_state.incarnation + 1);
                let announces_as = node_state
                    .core
                    .announces()
                    .then_some(node_state.incarnation);
                node_state.core.announce_as(announces_as);
                self.subscribe_node(node as usize);
                self.announce(node, Status::Online);
            }
        }
    }

    /// Node `i`'s status, published as from the node (a will is published by the broker for it).
    fn announce(&mut self, i: u32, status: Status) {
        let node = &self.nodes[i as usize];
        if !node.core.announces() {
            return;
        }
        let presence = Presence::new(self.node_ids[i as usize].clone(), status, node.incarnation);
        let topic = presence::topic(&presence.node_id);
        self.publish(Endpoint::Node(i), &topic, presence.encode());
    }

    fn subscribe_node(&mut self, i: usize) {
        for filter in topic::node_subscriptions(&self.node_ids[i]) {
            self.router
                .subscribe(Endpoint::Node(i as u32), &filter)
                .expect("node ids are valid topics");
        }
    }

    fn drain_researcher(&mut self) {
        let (mut transmits, mut outcomes, mut events) = (Vec::new(), Vec::new(), Vec::new());
        fedreq_driver::drain(
            &mut self.researcher,
            |transmit| transmits.push(transmit),
            |outcome| outcomes.push(outcome),
            |event| events.push(event),
        );
        for transmit in transmits {
            self.publish(Endpoint::Researcher, &transmit.topic, transmit.payload);
        }
        self.outcomes
            .extend(outcomes.into_iter().map(|o| (o.id, o)));
        self.events.extend(events);
    }

    fn drain_node(&mut self, i: u32) {
        while let Some(transmit) = self.nodes[i as usize].core.poll_transmit() {
            self.publish(Endpoint::Node(i), &transmit.topic, transmit.payload);
        }
        // Checks take no simulated time.
        while let Some(job) = self.nodes[i as usize].core.poll_check() {
            self.nodes[i as usize]
                .core
                .handle_checked(self.now, job.run());
        }
        while let Some(fetch) = self.nodes[i as usize].core.poll_fetch() {
            let result = match self.repository.get(&fetch.url) {
                Some(content) => FetchResult::Body(content.clone()),
                None => FetchResult::Status(404),
            };
            let at = self.now + self.latency();
            self.schedule(
                at,
                Action::Fetched {
                    node: i,
                    id: fetch.id,
                    result,
                },
            );
        }
    }

    /// Routes one publish to its subscribers, each copy meeting the faults on its own.
    fn publish(&mut self, from: Endpoint, topic: &str, payload: Vec<u8>) {
        let topic: Arc<str> = topic.into();
        let payload: Arc<[u8]> = payload.into();
        let extra = match from {
            Endpoint::Researcher => Duration::ZERO,
            Endpoint::Node(i) => self.nodes[i as usize].slow + self.busy(),
        };
        for to in self.router.route(&topic) {
            if self.rng.chance(self.faults.drop) {
                self.record(from, to, &topic, &payload, Fate::Dropped);
                continue;
            }
            let copies = if self.rng.chance(self.faults.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let mut delay = self.latency() + extra;
                if self.rng.chance(self.faults.reorder) {
                    let hold = 2 * self.faults.latency.1.as_nanos() as u64;
                    delay += Duration::from_nanos(self.rng.between(0, hold));
                }
                let action = Action::Deliver {
                    from,
                    to,
                    topic: Arc::clone(&topic),
                    payload: Arc::clone(&payload),
                };
                self.schedule(self.now + delay, action);
            }
        }
    }

    /// How long a busy node takes before it sends, this time.
    fn busy(&mut self) -> Duration {
        match self.faults.busy {
            Some(most) => Duration::from_nanos(self.rng.between(0, most.as_nanos() as u64)),
            None => Duration::ZERO,
        }
    }

    fn latency(&mut self) -> Duration {
        let (low, high) = self.faults.latency;
        Duration::from_nanos(
            self.rng
                .between(low.as_nanos() as u64, high.as_nanos() as u64),
        )
    }

    fn schedule(&mut self, at: Timestamp, action: Action) {
        self.scheduled += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            order: self.scheduled,
            action,
        }));
    }

    fn record(
        &mut self,
        from: Endpoint,
        to: Endpoint,
        topic: &Arc<str>,
        payload: &Arc<[u8]>,
        fate: Fate,
    ) {
        let entry = TraceEntry {
            at: self.now,
            from,
            to,
            topic: Arc::clone(topic),
            payload: Arc::clone(payload),
            fate,
        };
        self.hash.add(&entry);
        self.trace_len += 1;
        if self.keep_trace {
            self.trace.push(entry);
        }
    }
}

impl Distance {
    fn draw(self, rng: &mut Rng) -> Duration {
        match self {
            Distance::Uniform(low, high) => {
                Duration::from_nanos(rng.between(low.as_nanos() as u64, high.as_nanos() as u64))
            }
            Distance::LogNormal { median, sigma } => {
                // Box-Muller: a standard normal from two uniforms.
                let (u, v) = (rng.unit().max(f64::MIN_POSITIVE), rng.unit());
                let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                let seconds = median.as_secs_f64() * (sigma * normal).exp();
                Duration::from_secs_f64(seconds.min(3600.0))
            }
        }
    }
}

/// The datasets of simulated node `i`: a table tagged `fbm`, `even` or `odd`, and `group<i % 10>`;
/// nodes of groups 0 to 2 also hold images tagged `images`.
pub fn simulated_datasets(i: usize) -> Arc<[Object]> {
    let group = i % 10;
    let parity = if group % 2 == 0 { "even" } else { "odd" };
    let mut datasets = vec![json!({
        "name": format!("clinical-{group}"), "data_type": "csv",
        "tags": ["fbm", parity, format!("group{group}")],
        "description": format!("simulated clinical table of group {group}"),
        "shape": [100 + group, 4], "dataset_id": format!("dataset-clinical-{group}"),
        "dtypes": ["int64", "float64", "float64", "int64"],
        "path": format!("/data/clinical-{group}.csv"), "dataset_parameters": null,
    })];
    if group < 3 {
        datasets.push(json!({
            "name": "images", "data_type": "images", "tags": ["fbm", "images"],
            "description": "simulated image folder", "shape": [64, 3, 32, 32],
            "dataset_id": format!("dataset-images-{group}"), "path": "/data/images",
            "dataset_parameters": null,
        }));
    }
    datasets
        .into_iter()
        .map(|d| match d {
            serde_json::Value::Object(o) => o,
            _ => unreachable!("literal objects"),
        })
        .collect()
}

/// The plan the simulated repository serves at [`EXAMPLE_PLAN_URL`].
const EXAMPLE_PLAN: &str = "class SimulatedTrainingPlan:\n    def training_step(self, data, target):\n        return 0.0\n";
