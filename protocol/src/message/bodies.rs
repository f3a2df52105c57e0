//! Every message body of the protocol, requests first, with its fields as they travel.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::version::ProtocolVersion;

use super::schema::{messages, Field, WireMessage, WireType};
use super::{Command, Decoded, Object, Sequence};

messages! {
    /// `ping`: is anyone there?
    PingRequest = Ping {
        /// The researcher asking.
        researcher_id: String,
        /// Echoed by the `pong`.
        sequence: Sequence,
    }
    /// `list`: every dataset of the node.
    ListRequest = List {
        /// The researcher asking.
        researcher_id: String,
    }
    /// `search`: the datasets that carry every one of these tags.
    SearchRequest = Search {
        /// The researcher asking.
        researcher_id: String,
        /// Tags a dataset must all carry.
        tags: Vec<String>,
    }
    /// `approval`: download this training plan and register it for approval.
    ApprovalRequest = Approval {
        /// The researcher asking.
        researcher_id: String,
        /// Shown to the node's operator.
        description: String,
        /// Echoed by the reply.
        sequence: Sequence,
        /// Where the node downloads the plan.
        training_plan_url: String,
    }
    /// `training-plan-status`: is this plan approved on the node?
    TrainingPlanStatusRequest = TrainingPlanStatus {
        /// The researcher asking.
        researcher_id: String,
        /// The job it is asked for.
        job_id: String,
        /// Where the node downloads the plan.
        training_plan_url: String,
    }
    /// `train`: run one round of training.
    TrainRequest = Train {
        /// The researcher asking.
        researcher_id: String,
        /// The job.
        job_id: String,
        /// Where the node downloads the parameters.
        params_url: String,
        /// Training arguments.
        training_args: Object,
        /// The dataset to train on.
        dataset_id: String,
        /// Whether to train (or only test).
        training: bool,
        /// Model arguments.
        model_args: Object,
        /// Where the node downloads the plan.
        training_plan_url: String,
        /// The plan's class name.
        training_plan_class: String,
        /// Secure aggregation: server key context.
        secagg_servkey_id: Option<String>,
        /// Secure aggregation: biprime context.
        secagg_biprime_id: Option<String>,
        /// Secure aggregation: random value.
        secagg_random: Option<f64>,
        /// Secure aggregation: clipping range.
        secagg_clipping_range: Option<i64>,
        /// The round number.
        round: i64,
        /// Aggregator arguments.
        aggregator_args: Object,
    }
    /// `secagg`: set up a secure aggregation context.
    SecaggRequest = Secagg {
        /// The researcher asking.
        researcher_id: String,
        /// The context.
        secagg_id: String,
        /// Echoed by the reply.
        sequence: Sequence,
        /// Which element to set up.
        element: i64,
        /// The job, if any.
        job_id: Option<String>,
        /// The parties of the context.
        parties: Vec<Value>,
    }
    /// `secagg-delete`: remove a secure aggregation context.
    SecaggDeleteRequest = SecaggDelete {
        /// The researcher asking.
        researcher_id: String,
        /// The context.
        secagg_id: String,
        /// Echoed by the reply.
        sequence: Sequence,
        /// Which element to delete.
        element: i64,
        /// The job, if any.
        job_id: Option<String>,
    }

    /// `pong`: reply to `ping`.
    PingReply = Pong {
        /// The researcher that asked.
        researcher_id: String,
        /// The node answering.
        node_id: String,
        /// Always true from a live node.
        success: bool,
        /// The `ping`'s sequence.
        sequence: Sequence,
    }
    /// `list` reply: the node's datasets.
    ListReply = List {
        /// The researcher that asked.
        researcher_id: String,
        /// Whether listing worked.
        success: bool,
        /// One object per dataset (`path` removed).
        databases: Vec<Value>,
        /// The node answering.
        node_id: String,
        /// How many datasets.
        count: i64,
    }
    /// `search` reply: the node's datasets that matched. No match, no reply.
    SearchReply = Search {
        /// The researcher that asked.
        researcher_id: String,
        /// Whether searching worked.
        success: bool,
        /// One object per dataset (`path` removed).
        databases: Vec<Value>,
        /// The node answering.
        node_id: String,
        /// How many datasets.
        count: i64,
    }
    /// `approval` reply: whether the node downloaded and registered the plan.
    ApprovalReply = Approval {
        /// The researcher that asked.
        researcher_id: String,
        /// The node answering.
        node_id: String,
        /// The request's sequence.
        sequence: Sequence,
        /// HTTP status of the download (0 when it failed).
        status: i64,
        /// Whether the plan was registered.
        success: bool,
    }
    /// `training-plan-status` reply.
    TrainingPlanStatusReply = TrainingPlanStatus {
        /// The researcher that asked.
        researcher_id: String,
        /// The node answering.
        node_id: String,
        /// The job it was asked for.
        job_id: String,
        /// Whether the status could be read.
        success: bool,
        /// Whether the node requires approval.
        approval_obligation: bool,
        /// `Approved`, `Pending`, `Rejected`, `Not Registered` or `Error`.
        status: String,
        /// A sentence for the researcher.
        msg: String,
        /// The plan's URL.
        training_plan_url: String,
    }
    /// `train` reply.
    TrainReply = Train {
        /// The researcher that asked.
        researcher_id: String,
        /// The job.
        job_id: String,
        /// Whether training worked.
        success: bool,
        /// The node answering.
        node_id: String,
        /// The dataset trained on.
        dataset_id: String,
        /// Where the researcher downloads the new parameters.
        params_url: String,
        /// Timings.
        timing: Object,
        /// Samples used, if known.
        sample_size: Option<i64>,
        /// A message.
        msg: String,
    }
    /// `secagg` reply.
    SecaggReply = Secagg {
        /// The researcher that asked.
        researcher_id: String,
        /// The context.
        secagg_id: String,
        /// The request's sequence.
        sequence: Sequence,
        /// Whether it worked.
        success: bool,
        /// The node answering.
        node_id: String,
        /// A message.
        msg: String,
    }
    /// `secagg-delete` reply.
    SecaggDeleteReply = SecaggDelete {
        /// The researcher that asked.
        researcher_id: String,
        /// The context.
        secagg_id: String,
        /// The request's sequence.
        sequence: Sequence,
        /// Whether it worked.
        success: bool,
        /// The node answering.
        node_id: String,
        /// A message.
        msg: String,
    }
    /// `log`: a node's log record, on `general/logger`.
    LogMessage = Log {
        /// `<unknown>` from Fed-BioMed nodes.
        researcher_id: String,
        /// The node logging.
        node_id: String,
        /// `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
        level: String,
        /// A JSON string whose `message` field is the text.
        msg: String,
    }
    /// `error`: a node could not handle a message.
    ErrorMessage = Error {
        /// The researcher whose message failed.
        researcher_id: String,
        /// The node reporting.
        node_id: String,
        /// Like `FB301: Protocol error`.
        errnum: String,
        /// Details.
        extra_msg: String,
    }
    /// `presence`: fedreq's own, a node's status, retained on `fedreq/presence/<node_id>`.
    PresenceMessage = Presence {
        /// The node.
        node_id: String,
        /// `online` or `offline`.
        status: String,
        /// Which run of the node: a later run has a greater one.
        incarnation: u64,
    }
    /// `no-match`: fedreq's own, a node's word that a search found nothing, on
    /// `fedreq/no-match` (a v4.4 node sends nothing then).
    NoMatchMessage = NoMatch {
        /// The researcher that searched.
        researcher_id: String,
        /// The node that has nothing.
        node_id: String,
        /// The tags searched for.
        tags: Vec<String>,
    }
    /// `add_scalar`: a training metric, on `general/monitoring`.
    AddScalarMessage = AddScalar {
        /// The researcher of the job.
        researcher_id: String,
        /// The node training.
        node_id: String,
        /// The job.
        job_id: String,
        /// Measured while training.
        train: bool,
        /// Measured while testing.
        test: bool,
        /// Test on local updates.
        test_on_local_updates: bool,
        /// Test on global updates.
        test_on_global_updates: bool,
        /// Metric name -> value.
        metric: Object,
        /// The epoch, if any.
        epoch: Option<i64>,
        /// Samples in the dataset.
        total_samples: i64,
        /// Samples in the batch.
        batch_samples: i64,
        /// Batches in the epoch.
        num_batches: i64,
        /// Samples trained on so far, if known.
        num_samples_trained: Option<i64>,
        /// The iteration.
        iteration: i64,
    }
}

/// The researcher ids a Fed-BioMed v4.4 node puts in an `error` it cannot attribute: `NOT_SET`
/// (its training task manager), `<unknown>` (the default of its `send_error`) and
/// `unknown_researcher_id` (a message that named no researcher). v4.4's researcher queues
/// every message on `general/researcher`, so such errors reach whoever listens.
pub const PLACEHOLDER_RESEARCHER_IDS: [&str; 3] = ["NOT_SET", "<unknown>", "unknown_researcher_id"];

/// The `extra_msg` of the error a node sends, as v4.4's, for a message it cannot read as JSON.
pub const UNREADABLE: &str = "Not able to deserialize the message";

impl ErrorMessage {
    /// Whether it says the node could not read a message at all: a message it cannot know the
    /// sender of, and none of ours (a core encodes every request as JSON within the limits
    /// nodes apply), so it answers none of our requests.
    pub fn is_about_an_unreadable_message(&self) -> bool {
        self.is_for_anyone() && self.extra_msg == UNREADABLE
    }

    /// Whether it is for researcher `us`: addressed to us, or to nobody in particular.
    pub fn is_for(&self, us: &str) -> bool {
        self.researcher_id == us || self.is_for_anyone()
    }

    /// Whether it carries a placeholder instead of a researcher id.
    pub fn is_for_anyone(&self) -> bool {
        PLACEHOLDER_RESEARCHER_IDS.contains(&self.researcher_id.as_str())
    }
}
