//! The node core: answers requests as a Fed-BioMed v4.4 node does.
//!
//! Same contract as the researcher core: [`handle_publish`](Node::handle_publish) for every
//! publish received on `general/nodes` and `general/<node_id>`, then drain
//! [`poll_transmit`](Node::poll_transmit) (replies, errors and logs to publish) and
//! [`poll_fetch`](Node::poll_fetch) (training plans to download, answered through
//! [`handle_fetched`](Node::handle_fetched)) and [`poll_check`](Node::poll_check) (plans
//! to check, off the message loop, answered through [`handle_checked`](Node::handle_checked)).
//! It has no timers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::message::{
    AddScalarMessage, ApprovalReply, ApprovalRequest, ErrorMessage, Limits, ListReply, LogMessage,
    NodeMessage, Object, PingReply, Request, SearchReply, SecaggDeleteReply, SecaggReply,
    TrainReply, TrainRequest, TrainingPlanStatusReply, TrainingPlanStatusRequest,
};
use crate::presence::{self, NoMatch, Presence, Status};
use crate::researcher::Transmit;
use crate::time::Timestamp;
use crate::topic::{self, NodeId};

/// The `errnum` of every protocol error a node reports.
pub const PROTOCOL_ERROR: &str = "FB301: Protocol error";
/// The researcher id of a reply to a message that named none.
const UNKNOWN_RESEARCHER: &str = crate::message::PLACEHOLDER_RESEARCHER_IDS[2];
/// Fields every dataset must have, in the order a v4.4 node stores them.
pub const DATASET_FIELDS: [&str; 6] = [
    "name",
    "data_type",
    "tags",
    "description",
    "shape",
    "dataset_id",
];

/// How a node core is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's id: its topic is `general/<node_id>`.
    pub node_id: NodeId,
    /// Its datasets; shared, so that many simulated nodes can hold one list.
    pub datasets: Arc<[Object]>,
    /// Whether training plans must be approved before training (`approval_obligation`).
    pub approval_obligation: bool,
    /// Answer `train` with a simulated round (a `Loss` scalar on `general/monitoring`, then a
    /// successful reply) instead of refusing it: for simulations and demonstrations.
    pub simulate_training: bool,
    /// Limits on incoming payloads.
    pub limits: Limits,
    /// Checks a downloaded training plan as Python, as v4.4 does by minifying it, giving the
    /// normalised form plans are told apart by. Without one, plans compare byte for byte.
    pub plan_check: Option<PlanCheck>,
    /// The run it announces itself as (its presence incarnation): it answers researchers'
    /// probes with its status, and says so on `fedreq/no-match` when a search finds nothing
    /// (a fedreq researcher then needs no fence behind it). `None` for a node that announces
    /// nothing and stays silent on a miss, as v4.4's.
    pub announces_as: Option<u64>,
}

/// A training plan's check: its normalised form, or why it is not Python.
pub type PlanCheck = fn(&[u8]) -> Result<Vec<u8>, String>;

/// v4.4's error numbers in the texts a node sends.
const NO_DATASET: &str = "FB313: no dataset matching request";
const REPOSITORY_ERROR: &str = "FB604: repository error";
const MODEL_MANAGER_ERROR: &str = "FB606: model manager error";

impl NodeConfig {
    /// A node with these datasets, requiring approval, with default limits.
    pub fn new(node_id: impl Into<NodeId>, datasets: Arc<[Object]>) -> Self {
        NodeConfig {
            node_id: node_id.into(),
            datasets,
            approval_obligation: true,
            simulate_training: false,
            limits: Limits::default(),
            plan_check: None,
            announces_as: None,
        }
    }
}

/// A dataset file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// Not JSON.
    #[error("datasets are not JSON: {0}")]
    NotJson(String),
    /// Not a list of objects.
    #[error("datasets must be a JSON list of objects")]
    NotAList,
    /// A dataset lacks a required field.
    #[error("dataset {index}: missing field `{field}`")]
    MissingField {
        /// Its position in the list.
        index: usize,
        /// The field.
        field: &'static str,
    },
    /// `tags` is not a list of strings.
    #[error("dataset {index}: `tags` must be a list of strings")]
    BadTags {
        /// Its position in the list.
        index: usize,
    },
}

/// Reads a dataset file: a JSON list of objects with at least `name`, `data_type`, `tags`,
/// `description`, `shape` and `dataset_id`; other fields are kept (`path` is never sent).
pub fn datasets_from_json(bytes: &[u8]) -> Result<Arc<[Object]>, DatasetError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| DatasetError::NotJson(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(DatasetError::NotAList);
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let Value::Object(dataset) = item else {
                return Err(DatasetError::NotAList);
            };
            if let Some(field) = DATASET_FIELDS
                .into_iter()
                .find(|f| !dataset.contains_key(*f))
            {
                return Err(DatasetError::MissingField { index, field });
            }
            if tags_of(&dataset).is_none() {
                return Err(DatasetError::BadTags { index });
            }
            Ok(dataset)
        })
        .collect()
}

fn tags_of(dataset: &Object) -> Option<Vec<&str>> {
    dataset
        .get("tags")?
        .as_array()?
        .iter()
        .map(Value::as_str)
        .collect()
}

/// Identifies a download the core asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FetchId(pub u64);

/// A download for the adapter to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// Answer with this id.
    pub id: FetchId,
    /// What to download (HTTP GET).
    pub url: String,
}

/// How a download went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchResult {
    /// HTTP 200 with this body.
    Body(Vec<u8>),
    /// Another HTTP status (the reply says 0, as Fed-BioMed's does).
    Status(u16),
    /// No HTTP answer at all (status 0 on the wire), and why.
    Unreachable(String),
}

/// The largest training plan a node takes, in bytes: plans are code (a large one is a few
/// hundred kB), and checking one costs time in proportion to its size.
pub const MAX_PLAN_BYTES: usize = 4 << 20;

/// A downloaded plan to check, for the adapter to [`run`](PlanJob::run) wherever it likes and
/// answer through [`Node::handle_checked`].
#[derive(Debug)]
pub struct PlanJob {
    id: FetchId,
    content: Vec<u8>,
    check: PlanCheck,
}

impl PlanJob {
    /// Checks the plan.
    pub fn run(self) -> CheckedPlan {
        let identity = (self.check)(&self.content);
        CheckedPlan {
            id: self.id,
            content: self.content,
            identity,
        }
    }
}

/// A checked plan: what it is told apart by, or why it is not Python.
#[derive(Debug)]
pub struct CheckedPlan {
    id: FetchId,
    content: Vec<u8>,
    identity: Result<Vec<u8>, String>,
}

/// Where a registered training plan stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanStatus {
    /// Waiting for the node's operator.
    Pending,
    /// Approved: training may use it.
    Approved,
    /// Rejected.
    Rejected,
}

impl PlanStatus {
    fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Pending => "Pending",
            PlanStatus::Approved => "Approved",
            PlanStatus::Rejected => "Rejected",
        }
    }
}

/// A training plan sent for approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The description it came with.
    pub description: String,
    /// Where it was downloaded from.
    pub url: String,
    /// Who sent it.
    pub researcher_id: String,
    /// Its content.
    pub content: Vec<u8>,
    /// What it is told apart by: the plan check's normalised form, or the content.
    pub identity: Vec<u8>,
    /// Its status.
    pub status: PlanStatus,
}

/// A request waiting for its download.
#[derive(Debug)]
enum Waiting {
    Approval(ApprovalRequest),
    Status(TrainingPlanStatusRequest),
}

/// The Sans-IO node core.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    plans: Vec<Plan>,
    waiting: BTreeMap<FetchId, Waiting>,
    next_fetch: u64,
    transmits: VecDeque<Transmit>,
    fetches: VecDeque<Fetch>,
    checks: VecDeque<PlanJob>,
}

impl Node {
    /// A node with no plan registered.
    pub fn new(config: NodeConfig) -> Self {
        Node {
            config,
            plans: Vec::new(),
            waiting: BTreeMap::new(),
            next_fetch: 0,
            transmits: VecDeque::new(),
            fetches: VecDeque::new(),
            checks: VecDeque::new(),
        }
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// The topics to subscribe to.
    pub fn subscriptions(&self) -> [String; 4] {
        topic::node_subscriptions(&self.config.node_id)
    }

    /// Training plans sent for approval, in arrival order.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// A researcher asks who is out there: says it is online again, live, so that the status
    /// reaches it where the broker's retained one does not (a wildcard subscription on
    /// RabbitMQ, another member of a cluster). Safe to lose: the researcher asks again when it
    /// reconnects.
    fn on_probe(&mut self) {
        let Some(incarnation) = self.config.announces_as else {
            return;
        };
        let node_id = &self.config.node_id;
        let online = Presence::new(node_id.clone(), Status::Online, incarnation);
        self.transmits.push_back(Transmit {
            at_most_once: true,
            ..Transmit::new(presence::probed_topic(node_id), online.encode())
        });
    }

    /// The operator's decision on plan `index` of [`plans`](Self::plans).
    pub fn set_plan_status(&mut self, index: usize, status: PlanStatus) -> bool {
        self.plans
            .get_mut(index)
            .map(|p| p.status = status)
            .is_some()
    }

    /// Whether it announces itself (see [`NodeConfig::announces_as`]).
    pub fn announces(&self) -> bool {
        self.config.announces_as.is_some()
    }

    /// Announces itself as run `incarnation` from now on (a restarted run), or no more.
    pub fn announce_as(&mut self, incarnation: Option<u64>) {
        self.config.announces_as = incarnation;
    }

    /// Takes one publish received on one of its [`subscriptions`](Self::subscriptions). `now`
    /// is read as time since the Unix epoch, for the `asctime` of the logs it sends.
    pub fn handle_publish(&mut self, now: Timestamp, topic: &str, payload: &[u8]) {
        // A probe of every node, or of this one.
        let probed = topic.strip_prefix(presence::PROBE).is_some_and(|rest| {
            rest.is_empty() || rest.strip_prefix('/') == Some(self.config.node_id.as_str())
        });
        if probed {
            return self.on_probe();
        }
        let request = match Request::decode(payload, &self.config.limits) {
            Ok(decoded) => decoded.message,
            Err(error) => return self.refuse(now, payload, &error),
        };
        let node_id = self.config.node_id.clone();
        match request {
            Request::Ping(ping) => self.reply(NodeMessage::Pong(PingReply {
                researcher_id: ping.researcher_id,
                node_id,
                success: true,
                sequence: ping.sequence,
            })),
            Request::List(list) => {
                let databases: Vec<Value> = self
                    .config
                    .datasets
                    .iter()
                    .map(|d| public(d, &["path", "dtypes"]))
                    .collect();
                self.reply(NodeMessage::List(ListReply {
                    researcher_id: list.researcher_id,
                    success: true,
                    count: databases.len() as i64,
                    databases,
                    node_id,
                }))
            }
            Request::Search(search) => {
                let databases: Vec<Value> = self
                    .config
                    .datasets
                    .iter()
                    .filter(|d| {
                        let tags = tags_of(d).unwrap_or_default();
                        search.tags.iter().all(|t| tags.contains(&t.as_str()))
                    })
                    .map(|d| public(d, &["path"]))
                    .collect();
                // Fed-BioMed sends nothing at all when no dataset matches; fedreq's researcher
                // hears of it on a topic of its own.
                if !databases.is_empty() {
                    self.reply(NodeMessage::Search(SearchReply {
                        researcher_id: search.researcher_id,
                        success: true,
                        count: databases.len() as i64,
                        databases,
                        node_id,
                    }))
                } else if self.announces() {
                    let no_match = NoMatch {
                        researcher_id: search.researcher_id,
                        node_id,
                        tags: search.tags,
                    };
                    self.transmits.push_back(Transmit {
                        at_most_once: true,
                        ..Transmit::new(presence::NO_MATCH, no_match.encode())
                    });
                }
            }
            Request::Approval(approval) => self.fetch(
                approval.training_plan_url.clone(),
                Waiting::Approval(approval),
            ),
            Request::TrainingPlanStatus(status) => {
                self.fetch(status.training_plan_url.clone(), Waiting::Status(status))
            }
            Request::Train(train) => self.train(train),
            Request::Secagg(secagg) => self.reply(NodeMessage::from(SecaggReply {
                researcher_id: secagg.researcher_id,
                secagg_id: secagg.secagg_id,
                sequence: secagg.sequence,
                success: false,
                node_id,
                msg: "this node does not do secure aggregation".into(),
            })),
            Request::SecaggDelete(delete) => self.reply(NodeMessage::from(SecaggDeleteReply {
                researcher_id: delete.researcher_id,
                secagg_id: delete.secagg_id,
                sequence: delete.sequence,
                success: false,
                node_id,
                msg: "this node does not do secure aggregation".into(),
            })),
        }
    }

    /// A simulated training round on the requested dataset, or a refusal.
    fn train(&mut self, train: TrainRequest) {
        let dataset = self
            .config
            .datasets
            .iter()
            .find(|d| d.get("dataset_id").and_then(Value::as_str) == Some(&train.dataset_id));
        let samples = dataset.and_then(|d| d.get("shape")?.get(0)?.as_i64());
        if self.config.simulate_training && dataset.is_none() {
            // v4.4 answers an unknown dataset with an error, not a train reply.
            return self.reply(NodeMessage::Error(ErrorMessage {
                researcher_id: train.researcher_id,
                node_id: self.config.node_id.clone(),
                errnum: NO_DATASET.to_owned(),
                extra_msg: "Did not found proper data in local datasets".to_owned(),
            }));
        }
        let refusal = (!self.config.simulate_training).then_some("this node does not train");
        if refusal.is_none() {
            let loss = 1.0 / (train.round.max(0) as f64 + 1.0);
            let scalar = NodeMessage::from(AddScalarMessage {
                researcher_id: train.researcher_id.clone(),
                node_id: self.config.node_id.clone(),
                job_id: train.job_id.clone(),
                train: true,
                test: false,
                test_on_local_updates: false,
                test_on_global_updates: false,
                metric: [("Loss".to_owned(), json!(loss))].into_iter().collect(),
                epoch: Some(1),
                total_samples: samples.unwrap_or(0),
                batch_samples: samples.unwrap_or(0),
                num_batches: 1,
                num_samples_trained: samples,
                iteration: 1,
            });
            self.transmits
                .push_back(Transmit::new(topic::MONITORING, scalar.encode()));
        }
        self.reply(NodeMessage::from(TrainReply {
            researcher_id: train.researcher_id,
            job_id: train.job_id,
            success: refusal.is_none(),
            node_id: self.config.node_id.clone(),
            dataset_id: train.dataset_id,
            params_url: String::new(),
            timing: Object::new(),
            sample_size: samples.filter(|_| refusal.is_none()),
            msg: refusal.unwrap_or_default().to_owned(),
        }));
    }

    /// Answers a [`Fetch`]; an unknown id is ignored. A plan within [`MAX_PLAN_BYTES`] then
    /// waits for its check ([`poll_check`](Self::poll_check)), when the node has one.
    pub fn handle_fetched(&mut self, now: Timestamp, id: FetchId, result: FetchResult) {
        let Some(waiting) = self.waiting.remove(&id) else {
            return;
        };
        let FetchResult::Body(content) = result else {
            return self.answer(now, waiting, Err(result));
        };
        if content.len() > MAX_PLAN_BYTES {
            let why = format!(
                "the training plan is {} bytes, above the limit of {MAX_PLAN_BYTES}",
                content.len()
            );
            let checked = CheckedPlan {
                id,
                content,
                identity: Err(why),
            };
            return self.answer(now, waiting, Ok(checked));
        }
        match self.config.plan_check {
            Some(check) => {
                self.waiting.insert(id, waiting);
                self.checks.push_back(PlanJob { id, content, check });
            }
            None => {
                let identity = Ok(content.clone());
                self.answer(
                    now,
                    waiting,
                    Ok(CheckedPlan {
                        id,
                        content,
                        identity,
                    }),
                );
            }
        }
    }

    /// Answers a [`PlanJob`] with its result; an unknown id is ignored.
    pub fn handle_checked(&mut self, now: Timestamp, checked: CheckedPlan) {
        if let Some(waiting) = self.waiting.remove(&checked.id) {
            self.answer(now, waiting, Ok(checked));
        }
    }

    /// Replies to a request whose plan was downloaded and checked, or could not be downloaded.
    fn answer(&mut self, now: Timestamp, waiting: Waiting, plan: Result<CheckedPlan, FetchResult>) {
        let node_id = self.config.node_id.clone();
        match waiting {
            Waiting::Approval(request) => {
                // A failed download is `status: 0`, whatever the HTTP status, as Fed-BioMed sends it.
                let (status, success) = match plan {
                    Ok(plan) => (200, self.register(now, &request, plan)),
                    Err(FetchResult::Status(code)) => {
                        self.download_failed(
                            now,
                            &request.training_plan_url,
                            &format!("server returns {code} error"),
                        );
                        (0, false)
                    }
                    Err(failed) => {
                        let why = match failed {
                            FetchResult::Unreachable(why) => why,
                            _ => String::new(),
                        };
                        self.download_failed(
                            now,
                            &request.training_plan_url,
                            &format!("cannot reach server ({why})"),
                        );
                        (0, false)
                    }
                };
                self.reply(NodeMessage::Approval(ApprovalReply {
                    researcher_id: request.researcher_id,
                    node_id,
                    sequence: request.sequence,
                    status,
                    success,
                }));
            }
            Waiting::Status(request) => {
                let obligation = self.config.approval_obligation;
                let (success, approval_obligation, status, msg) = match &plan {
                    Ok(plan) => match &plan.identity {
                        Err(why) => (
                            false,
                            false,
                            "Error".to_owned(),
                            format!("{MODEL_MANAGER_ERROR}: Cannot check if training plan has been registered. Details {}", uncheckable(&request.training_plan_url, why)),
                        ),
                        Ok(identity) => {
                        let status = self
                            .plans
                            .iter()
                            .find(|p| &p.identity == identity)
                            .map(|p| p.status);
                        let msg = match (obligation, status) {
                            (false, _) => "This node does not require training plan approval (maybe for debugging purposes).".into(),
                            (true, Some(PlanStatus::Approved)) => "Training plan has been approved by the node, training can start".into(),
                            (true, Some(PlanStatus::Pending)) => "Training plan is pending: waiting for a review".into(),
                            (true, Some(PlanStatus::Rejected)) => "Training plan has been rejected by the node, training is not possible".into(),
                            (true, None) => "Unknown training plan not in database (status Not Registered)".into(),
                        };
                        (
                            true,
                            obligation,
                            status
                                .map_or("Not Registered", PlanStatus::as_str)
                                .to_owned(),
                            msg,
                        )
                        }
                    },
                    Err(failed) => (
                        false,
                        false,
                        "Error".to_owned(),
                        format!(
                            "{REPOSITORY_ERROR}: An error occurred when downloading training plan file. {} , {}",
                            request.training_plan_url,
                            download_error(&request.training_plan_url, failed),
                        ),
                    ),
                };
                self.reply(NodeMessage::from(TrainingPlanStatusReply {
                    researcher_id: request.researcher_id,
                    node_id,
                    job_id: request.job_id,
                    success,
                    approval_obligation,
                    status,
                    msg,
                    training_plan_url: request.training_plan_url,
                }));
            }
        }
    }

    /// The next publish to make.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next download to make.
    pub fn poll_fetch(&mut self) -> Option<Fetch> {
        self.fetches.pop_front()
    }

    /// The next plan to check; the node goes on answering while it runs, so it belongs off
    /// the adapter's message loop.
    pub fn poll_check(&mut self) -> Option<PlanJob> {
        self.checks.pop_front()
    }

    /// Replies to what is safe to ask again go out at most once, as v4.4 publishes them: a
    /// search reply and the pong of its fence then travel alike and keep their order, and a
    /// burst of them never fills a broker's QoS 1 queue for the researcher; a researcher that
    /// lost them asks again.
    fn reply(&mut self, message: NodeMessage) {
        let at_most_once = matches!(
            message,
            NodeMessage::Pong(_)
                | NodeMessage::List(_)
                | NodeMessage::Search(_)
                | NodeMessage::TrainingPlanStatus(_)
        );
        self.transmits.push_back(Transmit {
            at_most_once,
            ..Transmit::new(topic::RESEARCHER, message.encode())
        });
    }

    fn fetch(&mut self, url: String, waiting: Waiting) {
        let id = FetchId(self.next_fetch);
        self.next_fetch += 1;
        self.waiting.insert(id, waiting);
        self.fetches.push_back(Fetch { id, url });
    }

    /// Registers a downloaded plan for approval, logging as v4.4 does; `false` when it
    /// cannot be checked (not Python), which v4.4 answers `success: false`.
    fn register(&mut self, now: Timestamp, request: &ApprovalRequest, plan: CheckedPlan) -> bool {
        let description = &request.description;
        let CheckedPlan {
            content, identity, ..
        } = plan;
        let identity = match identity {
            Ok(identity) => identity,
            Err(why) => {
                let why = uncheckable(&request.training_plan_url, &why);
                self.log(now, "ERROR", &format!("Can not check whether training plan has already be registered or not due to error: {why}"));
                return false;
            }
        };
        let (level, text) = match self.plans.iter().find(|p| p.identity == identity) {
            Some(plan) => match plan.status {
                PlanStatus::Pending => ("INFO", format!("Training plan '{description}' already sent for Approval (status Pending). Please wait for Node approval.")),
                PlanStatus::Approved => ("INFO", format!("Training plan '{description}' is already Approved. Ready to train on this training plan.")),
                PlanStatus::Rejected => ("WARNING", format!("Training plan '{description}' already exists in database. Aborting")),
            },
            None => {
                self.plans.push(Plan {
                    description: description.clone(),
                    url: request.training_plan_url.clone(),
                    researcher_id: request.researcher_id.clone(),
                    content,
                    identity,
                    status: PlanStatus::Pending,
                });
                ("INFO", format!("Training plan '{description}' successfully received by Node for approval"))
            }
        };
        self.log(now, level, &text);
        true
    }

    fn download_failed(&mut self, now: Timestamp, url: &str, why: &str) {
        let error = format!("FB202: {why} when downloading file {url}");
        self.log(now, "ERROR", &error);
        self.log(
            now,
            "ERROR",
            &format!("Cannot download training plan from server due to error: {error}"),
        );
    }

    /// A request that could not be read: an `error` reply and an error log, as Fed-BioMed.
    fn refuse(&mut self, now: Timestamp, payload: &[u8], error: &crate::DecodeError) {
        use crate::DecodeError::{NotAnObject, NotJson, TooLarge, Version};
        let extra_msg = match error {
            NotJson(_) | NotAnObject(_) | TooLarge { .. } => crate::message::UNREADABLE.to_owned(),
            Version { .. } => error.to_string(),
            _ => "Message was not properly formatted".to_owned(),
        };
        self.log(now, "ERROR", &format!("FB601: message error: {error}"));
        let researcher_id = match error {
            TooLarge { .. } => None,
            _ => serde_json::from_slice::<Value>(payload)
                .ok()
                .and_then(|v| v.get("researcher_id")?.as_str().map(str::to_owned)),
        };
        self.reply(NodeMessage::Error(ErrorMessage {
            researcher_id: researcher_id.unwrap_or_else(|| UNKNOWN_RESEARCHER.to_owned()),
            node_id: self.config.node_id.clone(),
            errnum: PROTOCOL_ERROR.to_owned(),
            extra_msg,
        }));
    }

    /// A log record on `general/logger`, formatted as Fed-BioMed's MQTT log handler does.
    fn log(&mut self, now: Timestamp, level: &str, message: &str) {
        // A struct, not a map: its fields travel in v4.4's order.
        #[derive(serde::Serialize)]
        struct Record<'a> {
            asctime: String,
            node_id: &'a str,
            name: &'a str,
            level: &'a str,
            message: &'a str,
        }
        let inner = Record {
            asctime: asctime(now),
            node_id: &self.config.node_id,
            name: "fedbiomed",
            level,
            message,
        };
        let log = NodeMessage::Log(LogMessage {
            researcher_id: "<unknown>".to_owned(),
            node_id: self.config.node_id.clone(),
            level: level.to_owned(),
            msg: serde_json::to_string(&inner).expect("a struct of strings serializes"),
        });
        self.transmits
            .push_back(Transmit::new(topic::LOGGER, log.encode()));
    }
}

/// The dataset as sent: without the fields a node keeps to itself, and, as v4.4, without a
/// medical folder's `dataset_parameters.tabular_file`.
fn public(dataset: &Object, hidden: &[&str]) -> Value {
    let mut public: Object = dataset
        .iter()
        .filter(|(k, _)| !hidden.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if public.get("data_type").and_then(Value::as_str) == Some("medical-folder") {
        if let Some(Value::Object(parameters)) = public.get_mut("dataset_parameters") {
            parameters.remove("tabular_file");
        }
    }
    Value::Object(public)
}

/// The v4.4 text of a failed download.
/// Why a plan cannot be checked, in v4.4's FB606 words.
fn uncheckable(url: &str, why: &str) -> String {
    format!("{MODEL_MANAGER_ERROR}: cannot minify file {url}details: {why}")
}

fn download_error(url: &str, result: &FetchResult) -> String {
    match result {
        FetchResult::Status(404) => format!("FB202: server returns 404 error when downloading file {url}"),
        FetchResult::Status(code) => format!("FB203: server returns other 4xx or 500 error when downloading file {url}(status code: {code})"),
        FetchResult::Unreachable(why) => format!("FB201: server not reachable when downloading file {url}: {why}"),
        FetchResult::Body(_) => String::new(),
    }
}

/// `YYYY-MM-DD HH:MM:SS,mmm` (UTC) for `now` read as time since the Unix epoch.
fn asctime(now: Timestamp) -> String {
    let since = now.since_epoch();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02},{:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn asctime_is_fedbiomeds_format_in_utc() {
        let t = Timestamp::from_duration(Duration::from_millis(1_795_685_873_330));
        assert_eq!(asctime(t), "2026-11-26 09:37:53,330");
        assert_eq!(asctime(Timestamp::ZERO), "1970-01-01 00:00:00,000");
        let leap = Timestamp::from_duration(Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!(asctime(leap), "2000-02-29 00:00:00,000");
    }
}
