//! `fedreq demo`: a whole federation in the process, and every request against it.

use std::time::Instant;

use clap::Args;
use fedreq::repository::{http_fetcher, RepositoryServer};
use fedreq::{Requests, RequestsConfig, TrainingPlan};
use fedreq_mem::sim::simulated_datasets;
use fedreq_mqtt::{EmbeddedBroker, MqttConfig, NodeDriver, Runtime};
use fedreq_protocol::message::{Object, TrainRequest};
use fedreq_protocol::{NodeConfig, Request, Submission};

use super::{fail, millis, Global};

/// The bundled example plan.
const EXAMPLE_PLAN: &str = include_str!("../../plans/example_plan.py");

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many nodes
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    nodes: u16,
}

pub fn run(global: &Global, args: DemoArgs) -> Result<(), String> {
    let started = Instant::now();
    let broker = EmbeddedBroker::start_local().map_err(fail)?;
    let repository = RepositoryServer::start_local().map_err(fail)?;
    let ids: Vec<String> = (1..=args.nodes).map(|i| format!("node-{i}")).collect();
    let configs = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut config = NodeConfig::new(id.clone(), simulated_datasets(i));
            config.simulate_training = true;
            config.plan_check = Some(fedreq::plan::node_plan_check);
            config
        })
        .collect();
    let mqtt = MqttConfig::new("127.0.0.1", broker.address().port());
    let runtime = Runtime::new().map_err(fail)?;
    let _nodes = NodeDriver::start_many(&runtime, &mqtt, configs, http_fetcher()).map_err(fail)?;
    outln!(
        "embedded MQTT broker on {}, file repository on {}, {} nodes",
        broker.address(),
        repository.address(),
        ids.len()
    );

    // The demo knows its nodes: each request completes as soon as they have all answered.
    let config = RequestsConfig {
        policy: global.policy().with_roster(ids.clone()),
        uploads_url: Some(repository.uploads_url()),
        remember: fedreq::Remember::Nothing,
        ..RequestsConfig::new("researcher-demo")
    };
    let requests = Requests::connect(mqtt, config).map_err(fail)?;
    requests
        .set_log_handler(|log| outln!("node log  {:<5} {}: {}", log.level, log.node_id, log.text));
    let (scalar_tx, scalars) = flume::unbounded();
    requests.add_monitor_callback(move |scalar| {
        let _ = scalar_tx.send(scalar.clone());
    });

    let step = Instant::now();
    let online = requests.ping_nodes().map_err(fail)?;
    outln!(
        "\n$ fedreq ping\n{} node(s) online ({} ms): {}",
        online.len(),
        millis(step.elapsed()),
        online.join(", ")
    );

    let step = Instant::now();
    let datasets = requests.list(None, false).map_err(fail)?;
    outln!("\n$ fedreq list --verbose  ({} ms)", millis(step.elapsed()));
    for (node, list) in &datasets {
        outln!("{}", fedreq::table::datasets(node, list));
    }

    let step = Instant::now();
    let tags = vec!["fbm".to_owned(), "images".to_owned()];
    // Nodes without a match stay silent: a short quiet period ends the search.
    let quiet =
        fedreq_protocol::Policy::quiet(global.timeout.0.min(std::time::Duration::from_millis(300)));
    let found = requests
        .request(Submission::broadcast(Request::search(tags.clone())).with_policy(quiet))
        .map_err(fail)?
        .datasets();
    outln!(
        "\n$ fedreq search fbm images\n{} node(s) hold such data ({} ms): {}",
        found.len(),
        millis(step.elapsed()),
        found.keys().cloned().collect::<Vec<_>>().join(", ")
    );

    let step = Instant::now();
    let plan = TrainingPlan::from_source("example_plan.py", EXAMPLE_PLAN).map_err(fail)?;
    let approvals = requests
        .training_plan_approve(&plan, "fedreq demo plan", None, None)
        .map_err(fail)?;
    let acknowledged = approvals.values().filter(|ok| **ok).count();
    outln!(
        "\n$ fedreq approve example_plan.py\n{acknowledged} of {} node(s) acknowledged ({} ms)",
        approvals.len(),
        millis(step.elapsed())
    );

    // One simulated training round on the first node shows a monitoring scalar.
    let train = TrainRequest {
        researcher_id: String::new(),
        job_id: "demo-job".into(),
        params_url: String::new(),
        training_args: Object::new(),
        dataset_id: "dataset-clinical-0".into(),
        training: true,
        model_args: Object::new(),
        training_plan_url: String::new(),
        training_plan_class: "LogisticRegressionPlan".into(),
        secagg_servkey_id: None,
        secagg_biprime_id: None,
        secagg_random: None,
        secagg_clipping_range: None,
        round: 1,
        aggregator_args: Object::new(),
    };
    let trained = requests
        .request(
            Submission::to_nodes(Request::Train(train), vec![ids[0].clone()])
                .with_policy(global.policy()),
        )
        .map_err(fail)?;
    let scalar = scalars
        .recv_timeout(std::time::Duration::from_secs(5))
        .map_err(|_| "no monitoring scalar arrived".to_owned())?;
    outln!(
        "\n$ train one round on {}\nreply: success={}; monitoring: {} job {} {}",
        ids[0],
        trained
            .replies
            .first()
            .and_then(|r| r.success())
            .unwrap_or(false),
        scalar.node_id,
        scalar.job_id,
        serde_json::Value::Object(scalar.metric)
    );
    outln!("\ndemo done in {} ms", millis(started.elapsed()));
    Ok(())
}
