//! `Requests`: every operation of Fed-BioMed v4.4's `Requests`, over any messaging layer,
//! each in a blocking form and an async form that any executor can await.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedreq_mem::{Broker, MemResearcher};
use fedreq_mqtt::{ConnectError, MqttConfig, ResearcherDriver};
use fedreq_protocol::message::{AddScalarMessage, Object};
use fedreq_protocol::policy::Rounds;
use fedreq_protocol::NodeLog;
use fedreq_protocol::{
    Collect, Command, DecodeError, Event, Mail, NodeId, Outcome, Policy, Request, RequestId,
    ResearcherConfig, Sequence, Submission, SubmitError, Target,
};
use serde_json::Value;

use crate::messaging::Messaging;
use crate::plan::{PlanError, TrainingPlan};
use crate::repository::{RepositoryClient, UploadError};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The core refused the request (a bad node id, a sequence in use).
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The messaging driver stopped.
    #[error("the messaging driver stopped")]
    Stopped,
    /// The training plan cannot be used.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The training plan could not be uploaded.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// Approval needs a file repository and none is configured.
    #[error("no file repository configured: set --uploads-url or UPLOADS_URL")]
    NoRepository,
    /// `add_sequence` for a command that carries no sequence.
    #[error("`{0}` messages carry no sequence")]
    NoSequence(Command),
    /// A message for `send_message` that is not a valid request.
    #[error("invalid message: {0}")]
    Message(#[from] DecodeError),
}

/// How `Requests` talks.
#[derive(Clone, Debug)]
pub struct RequestsConfig {
    /// Our researcher id (Fed-BioMed's `RESEARCHER_ID`).
    pub researcher_id: String,
    /// The policy every request is collected under; its `timeout` is Fed-BioMed's `TIMEOUT`.
    pub policy: Policy,
    /// Where training plans are uploaded (Fed-BioMed's `UPLOADS_URL`).
    pub uploads_url: Option<String>,
}

impl RequestsConfig {
    /// `researcher_id`, the default policy (quiet period of 5 s, early completion), no repository.
    pub fn new(researcher_id: impl Into<String>) -> Self {
        RequestsConfig {
            researcher_id: researcher_id.into(),
            policy: Policy::default(),
            uploads_url: None,
        }
    }
}

type MonitorCallback = Arc<dyn Fn(&AddScalarMessage) + Send + Sync>;
type LogHandler = Arc<dyn Fn(&NodeLog) + Send + Sync>;

#[derive(Default)]
struct Handlers {
    monitor: Option<MonitorCallback>,
    log: Option<LogHandler>,
}

/// The researcher's requests to the nodes. Share it between threads: each request gets its
/// own replies.
pub struct Requests {
    messaging: Arc<dyn Messaging>,
    config: RequestsConfig,
    handlers: Arc<Mutex<Handlers>>,
    /// The last message `send_message` sent, for `get_responses`.
    last_sent: Mutex<Option<RequestId>>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A random 64-bit value from the standard library's hasher keys.
pub fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl Requests {
    /// Over MQTT, the default: connects to the broker (failing within its connect timeout,
    /// naming the address).
    pub fn connect(mqtt: MqttConfig, config: RequestsConfig) -> Result<Self, Error> {
        let driver = ResearcherDriver::connect(mqtt, Self::core_config(&config))?;
        Ok(Self::with_messaging(Arc::new(driver), config))
    }

    /// Over the in-memory broker.
    pub fn in_memory(broker: &Broker, config: RequestsConfig) -> Self {
        let driver = MemResearcher::start(broker, Self::core_config(&config));
        Self::with_messaging(Arc::new(driver), config)
    }

    /// Over a messaging layer of the caller's, as Fed-BioMed lets a caller pass its own. One
    /// `Requests` per messaging layer: it takes the layer's events for its callbacks.
    pub fn with_messaging(messaging: Arc<dyn Messaging>, config: RequestsConfig) -> Self {
        let handlers = Arc::new(Mutex::new(Handlers::default()));
        let events = messaging.events();
        let dispatching = Arc::clone(&handlers);
        // Ends when the driver stops and its event channel closes.
        std::thread::Builder::new()
            .name("fedreq-events".into())
            .spawn(move || {
                for event in events.iter() {
                    dispatch(&dispatching, event);
                }
            })
            .expect("spawn the event thread");
        Requests {
            messaging,
            config,
            handlers,
            last_sent: Mutex::new(None),
        }
    }

    /// The core's configuration: a random first sequence and hash seed, so that instances
    /// sharing a researcher id never take each other's replies.
    fn core_config(config: &RequestsConfig) -> ResearcherConfig {
        ResearcherConfig {
            first_sequence: random_u64() >> 16,
            hash_seed: random_u64(),
            ..ResearcherConfig::new(config.researcher_id.clone())
        }
    }

    /// The messaging layer.
    pub fn messaging(&self) -> &Arc<dyn Messaging> {
        &self.messaging
    }

    /// The configuration.
    pub fn config(&self) -> &RequestsConfig {
        &self.config
    }

    /// Calls `callback` with every monitoring scalar addressed to us, replacing any previous one.
    pub fn add_monitor_callback(
        &self,
        callback: impl Fn(&AddScalarMessage) + Send + Sync + 'static,
    ) {
        self.handlers().monitor = Some(Arc::new(callback));
    }

    /// Stops calling the monitoring callback.
    pub fn remove_monitor_callback(&self) {
        self.handlers().monitor = None;
    }

    /// Handles node logs with `handler` instead of the `log` crate (target `fedreq::node`).
    pub fn set_log_handler(&self, handler: impl Fn(&NodeLog) + Send + Sync + 'static) {
        self.handlers().log = Some(Arc::new(handler));
    }

    fn handlers(&self) -> std::sync::MutexGuard<'_, Handlers> {
        self.handlers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submits any request and waits for its outcome.
    pub fn request(&self, submission: Submission) -> Result<Outcome, Error> {
        Ok(self
            .messaging
            .submit(submission)
            .recv()
            .map_err(|_| Error::Stopped)??)
    }

    /// Submits any request; await its outcome.
    pub async fn request_async(&self, submission: Submission) -> Result<Outcome, Error> {
        let answer = self.messaging.submit(submission);
        Ok(answer.recv_async().await.map_err(|_| Error::Stopped)??)
    }

    fn collected(&self, collect: Collect) -> Result<Outcome, Error> {
        Ok(self
            .messaging
            .collect(collect)
            .recv()
            .map_err(|_| Error::Stopped)??)
    }

    async fn collected_async(&self, collect: Collect) -> Result<Outcome, Error> {
        let answer = self.messaging.collect(collect);
        Ok(answer.recv_async().await.map_err(|_| Error::Stopped)??)
    }

    /// `request` to `nodes` (all when `None`) under our policy.
    fn submission(&self, request: Request, nodes: Option<Vec<NodeId>>) -> Submission {
        let target = nodes.map_or(Target::All, Target::Nodes);
        Submission {
            request,
            target,
            policy: self.config.policy.clone(),
            keep_sequence: false,
        }
    }

    /// The nodes that answer a ping.
    pub fn ping_nodes(&self) -> Result<Vec<NodeId>, Error> {
        Ok(self
            .request(self.submission(Request::ping(), None))?
            .online())
    }

    /// [`ping_nodes`](Self::ping_nodes), async.
    pub async fn ping_nodes_async(&self) -> Result<Vec<NodeId>, Error> {
        Ok(self
            .request_async(self.submission(Request::ping(), None))
            .await?
            .online())
    }

    /// Each node's datasets (of `nodes` only, when given); with `verbose`, logs them as tables.
    pub fn list(
        &self,
        nodes: Option<Vec<NodeId>>,
        verbose: bool,
    ) -> Result<BTreeMap<NodeId, Vec<Value>>, Error> {
        let datasets = self
            .request(self.submission(Request::list(), nodes))?
            .datasets();
        log_tables(verbose, &datasets);
        Ok(datasets)
    }

    /// [`list`](Self::list), async.
    pub async fn list_async(
        &self,
        nodes: Option<Vec<NodeId>>,
        verbose: bool,
    ) -> Result<BTreeMap<NodeId, Vec<Value>>, Error> {
        let datasets = self
            .request_async(self.submission(Request::list(), nodes))
            .await?
            .datasets();
        log_tables(verbose, &datasets);
        Ok(datasets)
    }

    /// The datasets carrying every one of `tags`, per node (of `nodes` only, when given).
    pub fn search(
        &self,
        tags: Vec<String>,
        nodes: Option<Vec<NodeId>>,
    ) -> Result<BTreeMap<NodeId, Vec<Value>>, Error> {
        Ok(self
            .request(self.submission(Request::search(tags), nodes))?
            .datasets())
    }

    /// [`search`](Self::search), async.
    pub async fn search_async(
        &self,
        tags: Vec<String>,
        nodes: Option<Vec<NodeId>>,
    ) -> Result<BTreeMap<NodeId, Vec<Value>>, Error> {
        Ok(self
            .request_async(self.submission(Request::search(tags), nodes))
            .await?
            .datasets())
    }

    /// Uploads `plan` and asks the nodes (all, or `nodes`) to register it for approval; maps
    /// every node to whether it acknowledged. `timeout` replaces the policy's for this request.
    pub fn training_plan_approve(
        &self,
        plan: &TrainingPlan,
        description: &str,
        nodes: Option<Vec<NodeId>>,
        timeout: Option<Duration>,
    ) -> Result<BTreeMap<NodeId, bool>, Error> {
        let url = self.upload(plan)?;
        Ok(self
            .request(self.approval(description, url, nodes, timeout))?
            .approvals())
    }

    /// [`training_plan_approve`](Self::training_plan_approve), async; the upload runs on a
    /// thread of its own.
    pub async fn training_plan_approve_async(
        &self,
        plan: &TrainingPlan,
        description: &str,
        nodes: Option<Vec<NodeId>>,
        timeout: Option<Duration>,
    ) -> Result<BTreeMap<NodeId, bool>, Error> {
        let client = self.repository()?;
        let (file_name, source) = (plan.file_name(), plan.source().to_owned());
        let (done, uploaded) = flume::bounded(1);
        std::thread::spawn(move || {
            let _ = done.send(client.upload(&file_name, source.as_bytes()));
        });
        let url = uploaded.recv_async().await.map_err(|_| Error::Stopped)??;
        Ok(self
            .request_async(self.approval(description, url, nodes, timeout))
            .await?
            .approvals())
    }

    fn repository(&self) -> Result<RepositoryClient, Error> {
        self.config
            .uploads_url
            .as_ref()
            .map(RepositoryClient::new)
            .ok_or(Error::NoRepository)
    }

    fn upload(&self, plan: &TrainingPlan) -> Result<String, Error> {
        Ok(self
            .repository()?
            .upload(&plan.file_name(), plan.source().as_bytes())?)
    }

    fn approval(
        &self,
        description: &str,
        url: String,
        nodes: Option<Vec<NodeId>>,
        timeout: Option<Duration>,
    ) -> Submission {
        let mut submission = self.submission(Request::approval(description, url), nodes);
        if let Some(timeout) = timeout {
            submission.policy.timeout = timeout;
        }
        submission
    }

    /// Sends any request message (a JSON object with `command`) to every node, or to `client`
    /// only; with `add_sequence`, stamps the next sequence number and returns it. Replies go to
    /// the mailbox, for [`get_messages`](Self::get_messages) and [`get_responses`](Self::get_responses).
    pub fn send_message(
        &self,
        message: Object,
        client: Option<NodeId>,
        add_sequence: bool,
    ) -> Result<Option<Sequence>, Error> {
        let submission = self.raw(message, client, add_sequence)?;
        Ok(self.sent(self.request(submission)?, add_sequence))
    }

    /// [`send_message`](Self::send_message), async.
    pub async fn send_message_async(
        &self,
        message: Object,
        client: Option<NodeId>,
        add_sequence: bool,
    ) -> Result<Option<Sequence>, Error> {
        let submission = self.raw(message, client, add_sequence)?;
        Ok(self.sent(self.request_async(submission).await?, add_sequence))
    }

    /// Remembers a message sent, and gives its sequence when one was added.
    fn sent(&self, outcome: Outcome, add_sequence: bool) -> Option<Sequence> {
        *self.last_sent.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome.id);
        outcome.sequence.filter(|_| add_sequence)
    }

    fn raw(
        &self,
        mut message: Object,
        client: Option<NodeId>,
        add_sequence: bool,
    ) -> Result<Submission, Error> {
        if add_sequence {
            let command = message
                .get("command")
                .and_then(Value::as_str)
                .and_then(Command::parse);
            match command {
                Some(command) if !command.has_sequence() => return Err(Error::NoSequence(command)),
                _ => message.insert("sequence".into(), 0.into()),
            };
        }
        let request = Request::from_value(message)?;
        let mut submission = self.submission(request, client.map(|node| vec![node]));
        // Sent, not collected: completes at once, and the replies wait in the mailbox.
        submission.policy = Policy {
            early: false,
            ..Policy::quiet(Duration::ZERO)
        };
        submission.keep_sequence = !add_sequence;
        Ok(submission)
    }

    /// Waits `wait`, then takes every unmatched message of `commands` (all when empty), as
    /// the JSON objects that travelled.
    pub fn get_messages(&self, commands: &[Command], wait: Duration) -> Result<Vec<Value>, Error> {
        Ok(self.collected(messages(commands, wait))?.responses())
    }

    /// [`get_messages`](Self::get_messages), async.
    pub async fn get_messages_async(
        &self,
        commands: &[Command],
        wait: Duration,
    ) -> Result<Vec<Value>, Error> {
        Ok(self
            .collected_async(messages(commands, wait))
            .await?
            .responses())
    }

    /// Fed-BioMed's `get_responses`: rounds of `timeout` (our policy's when `None`) reading the
    /// unmatched messages of `commands`, until a round brings nothing new (or after the first,
    /// without `while_responses`).
    pub fn get_responses(
        &self,
        commands: &[Command],
        timeout: Option<Duration>,
        only_successful: bool,
        while_responses: bool,
    ) -> Result<Vec<Value>, Error> {
        let collect = self.responses(commands, timeout, only_successful, while_responses);
        Ok(self.collected(collect)?.responses())
    }

    /// [`get_responses`](Self::get_responses), async.
    pub async fn get_responses_async(
        &self,
        commands: &[Command],
        timeout: Option<Duration>,
        only_successful: bool,
        while_responses: bool,
    ) -> Result<Vec<Value>, Error> {
        let collect = self.responses(commands, timeout, only_successful, while_responses);
        Ok(self.collected_async(collect).await?.responses())
    }

    fn responses(
        &self,
        commands: &[Command],
        timeout: Option<Duration>,
        only_successful: bool,
        while_responses: bool,
    ) -> Collect {
        let mut policy = Policy::fedbiomed(timeout.unwrap_or(self.config.policy.timeout));
        policy.only_successful = only_successful;
        policy.rounds = Some(Rounds { while_responses });
        // Replies to messages sent before the last one belong to those, not to this answer.
        let since = *self.last_sent.lock().unwrap_or_else(|p| p.into_inner());
        Collect {
            commands: commands.to_vec(),
            policy,
            since,
        }
    }

    /// Takes the mailbox's messages of these commands (all when empty): late replies, replies
    /// for another researcher, messages that matched nothing.
    pub fn take_mail(&self, commands: Vec<Command>) -> Result<Vec<Mail>, Error> {
        self.messaging
            .take_mail(commands)
            .recv()
            .map_err(|_| Error::Stopped)
    }
}

/// A collect that only waits: `get_messages`.
fn messages(commands: &[Command], wait: Duration) -> Collect {
    Collect {
        commands: commands.to_vec(),
        policy: Policy {
            early: false,
            ..Policy::quiet(Duration::MAX)
        }
        .with_deadline(wait),
        since: None,
    }
}

fn log_tables(verbose: bool, datasets: &BTreeMap<NodeId, Vec<Value>>) {
    if verbose {
        for (node, list) in datasets {
            log::info!("{}", crate::table::datasets(node, list));
        }
    }
}

fn dispatch(handlers: &Mutex<Handlers>, event: Event) {
    // Called without the lock: a handler may replace the handlers.
    let (monitor, log_handler) = {
        let handlers = handlers.lock().unwrap_or_else(|p| p.into_inner());
        (handlers.monitor.clone(), handlers.log.clone())
    };
    match event {
        Event::Monitoring(scalar) => {
            if let Some(callback) = &monitor {
                callback(&scalar);
            }
        }
        Event::Log(log) => match &log_handler {
            Some(handler) => handler(&log),
            None => {
                log::log!(target: "fedreq::node", node_level(&log.level), "{} {}", log.node_id, log.text)
            }
        },
        Event::Rejected { topic, error } => log::warn!("refused a message on {topic}: {error}"),
        Event::Connection(state) => log::info!("broker connection: {state:?}"),
        Event::OlderVersion { node_id, version } => {
            log::warn!("node {node_id} speaks protocol version {version}, older than ours")
        }
        other => log::debug!("{other:?}"),
    }
}

/// A Fed-BioMed log level as a `log` level.
pub fn node_level(level: &str) -> log::Level {
    match level {
        "DEBUG" => log::Level::Debug,
        "WARNING" => log::Level::Warn,
        "ERROR" | "CRITICAL" => log::Level::Error,
        _ => log::Level::Info,
    }
}
