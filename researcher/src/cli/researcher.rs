//! The researcher's commands: ping, list, search, approve, send, listen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use fedreq::scalars::ScalarWriter;
use fedreq::Requests;
use fedreq_protocol::researcher::Member;
use fedreq_protocol::{Command, DecodeError, NodeId, Request, Submission, Target};
use serde_json::{json, Value};

use super::{fail, millis, Global, Progress};

/// `--nodes ID,ID,...`
#[derive(Debug, Args)]
pub struct Nodes {
    /// Only these nodes (comma-separated ids); all when absent
    #[arg(long, value_delimiter = ',')]
    nodes: Option<Vec<NodeId>>,
}

/// Options of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// One table per node, as Fed-BioMed prints them
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    nodes: Nodes,
}

/// Options of `search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Tags a dataset must all carry
    #[arg(required = true)]
    tags: Vec<String>,
    #[command(flatten)]
    nodes: Nodes,
}

/// Options of `approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    plan: super::tools::PlanFile,
    /// Shown to the nodes' operators
    #[arg(long, default_value = "no description provided")]
    description: String,
    #[command(flatten)]
    nodes: Nodes,
}

/// Options of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The message, a JSON object with `command` (our researcher id is filled in)
    message: String,
    /// Only to this node
    #[arg(long)]
    to: Option<NodeId>,
    /// Stamp the next sequence number
    #[arg(long)]
    sequence: bool,
}

/// Options of `listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Node logs (all three when none is given)
    #[arg(long)]
    logs: bool,
    /// Monitoring scalars (all three when none is given)
    #[arg(long)]
    monitor: bool,
    /// Node errors, for us or for nobody in particular (all three when none is given)
    #[arg(long)]
    errors: bool,
    /// Also write the scalars as TensorBoard event files in DIR (a run per job and node)
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<std::path::PathBuf>,
    /// Also write the scalars to FILE as CSV
    #[arg(long, value_name = "FILE")]
    csv: Option<std::path::PathBuf>,
    /// Also write the scalars to FILE as JSON lines
    #[arg(long, value_name = "FILE")]
    jsonl: Option<std::path::PathBuf>,
}

pub fn ping(global: &Global, args: Nodes) -> Result<(), String> {
    let requests = global.connect()?;
    let target = args.nodes.map_or(Target::All, Target::Nodes);
    let submission = Submission {
        target,
        ..Submission::broadcast(Request::ping()).with_policy(global.policy())
    };
    let started = Instant::now();
    let outcome = {
        let _progress = Progress::start("ping");
        requests.request(submission).map_err(fail)?
    };
    let (nodes, missing) = (outcome.online(), outcome.missing);
    let elapsed = millis(started.elapsed());
    if global.json {
        outln!(
            "{}",
            json!({ "nodes": nodes, "missing": missing, "elapsed_ms": elapsed,
                    "completion": outcome.completion })
        );
    } else {
        outln!("{} node(s) online ({elapsed} ms)", nodes.len());
        for node in nodes {
            outln!("  {node}");
        }
        for node in missing {
            outln!("  {node}: no answer");
        }
    }
    Ok(())
}

pub fn list(global: &Global, args: ListArgs) -> Result<(), String> {
    let requests = global.connect()?;
    let started = Instant::now();
    let datasets = {
        let _progress = Progress::start("list");
        requests.list(args.nodes.nodes, false).map_err(fail)?
    };
    print_datasets(global, &datasets, args.verbose, started);
    Ok(())
}

pub fn search(global: &Global, args: SearchArgs) -> Result<(), String> {
    let requests = global.connect()?;
    let started = Instant::now();
    let datasets = {
        let _progress = Progress::start("search");
        requests
            .search(args.tags.clone(), args.nodes.nodes)
            .map_err(fail)?
    };
    if datasets.is_empty() && !global.json {
        outln!("No dataset found with tags {:?}", args.tags);
    }
    print_datasets(global, &datasets, true, started);
    Ok(())
}

fn print_datasets(
    global: &Global,
    datasets: &BTreeMap<NodeId, Vec<Value>>,
    verbose: bool,
    started: Instant,
) {
    let elapsed = millis(started.elapsed());
    if global.json {
        outln!("{}", json!({ "nodes": datasets, "elapsed_ms": elapsed }));
        return;
    }
    for (node, list) in datasets {
        if verbose {
            outln!("\n{}", fedreq::table::datasets(node, list));
        } else {
            let names: Vec<&str> = list
                .iter()
                .filter_map(|d| d.get("name")?.as_str())
                .collect();
            outln!("{node}: {} dataset(s) {}", list.len(), names.join(", "));
        }
    }
}

pub fn approve(global: &Global, args: ApproveArgs) -> Result<(), String> {
    // Every check on the plan comes before connecting to anything.
    let plan = args.plan.read()?;
    if global.uploads_url.is_none() {
        return Err(fedreq::Error::NoRepository.to_string());
    }
    let requests = global.connect()?;
    let started = Instant::now();
    let approvals = {
        let _progress = Progress::start("approval");
        requests
            .training_plan_approve(&plan, &args.description, args.nodes.nodes, None)
            .map_err(fail)?
    };
    let elapsed = millis(started.elapsed());
    if global.json {
        outln!("{}", json!({ "nodes": approvals, "elapsed_ms": elapsed }));
    } else {
        outln!(
            "training plan {} sent for approval ({elapsed} ms)",
            plan.name()
        );
        for (node, ok) in &approvals {
            outln!(
                "  {node}: {}",
                if *ok {
                    "acknowledged"
                } else {
                    "NOT acknowledged"
                }
            );
        }
    }
    Ok(())
}

pub fn send(global: &Global, args: SendArgs) -> Result<(), String> {
    let message: Value =
        serde_json::from_str(&args.message).map_err(|e| format!("the message is not JSON: {e}"))?;
    let Value::Object(mut message) = message else {
        return Err("the message must be a JSON object".into());
    };
    let requests = global.connect()?;
    message.insert(
        "researcher_id".into(),
        requests.config().researcher_id.clone().into(),
    );
    let reply = message
        .get("command")
        .and_then(Value::as_str)
        .and_then(Command::parse)
        .map(Command::reply);
    let started = Instant::now();
    let sequence = requests
        .send_message(message, args.to, args.sequence)
        .map_err(|e| match e {
            fedreq::Error::Message(DecodeError::MissingField {
                field: "sequence", ..
            }) => {
                format!("{e}: add --sequence to stamp one")
            }
            other => other.to_string(),
        })?;
    let commands: Vec<Command> = reply.into_iter().chain([Command::Error]).collect();
    let responses = {
        let _progress = Progress::start("replies");
        requests
            .get_responses(&commands, Some(global.timeout.0), false, true)
            .map_err(fail)?
    };
    let elapsed = millis(started.elapsed());
    if global.json {
        outln!(
            "{}",
            json!({ "sequence": sequence, "responses": responses, "elapsed_ms": elapsed })
        );
    } else {
        if let Some(sequence) = sequence {
            outln!("sent with sequence {sequence}");
        }
        outln!("{} response(s) ({elapsed} ms)", responses.len());
        for response in responses {
            outln!("  {response}");
        }
    }
    Ok(())
}

pub fn listen(global: &Global, args: ListenArgs) -> Result<(), String> {
    let writer = ScalarWriter::open(
        args.tensorboard.as_deref(),
        args.csv.as_deref(),
        args.jsonl.as_deref(),
    )
    .map_err(fail)?;
    let writing = writer.writes();
    let requests = global.connect()?;
    let all = !args.logs && !args.monitor && !args.errors;
    let json = global.json;
    if args.logs || all {
        requests.set_log_handler(move |log| {
            if json {
                outln!("{}", json!({ "log": { "node_id": log.node_id, "level": log.level, "text": log.text } }));
            } else {
                outln!("{:<7} {}: {}", log.level, log.node_id, log.text);
            }
        });
    } else {
        requests.set_log_handler(|_| {});
    }
    let print = args.monitor || all;
    if print || writing {
        let writer = std::sync::Mutex::new(writer);
        requests.add_monitor_callback(move |scalar| {
            if writing {
                let written = writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(scalar);
                if let Err(e) = written {
                    eprintln!("fedreq: cannot write a scalar of {}: {e}", scalar.node_id);
                }
            }
            if !print {
                return;
            }
            if json {
                let value = fedreq_protocol::NodeMessage::from(scalar.clone()).to_value();
                outln!("{}", json!({ "monitoring": value }));
            } else {
                outln!(
                    "monitoring {} job {}: {}",
                    scalar.node_id,
                    scalar.job_id,
                    serde_json::Value::Object(scalar.metric.clone())
                );
            }
        });
    }
    if args.errors || all {
        requests.set_error_handler(move |error| {
            if json {
                outln!(
                    "{}",
                    json!({ "error": { "node_id": error.node_id, "errnum": error.errnum,
                    "extra_msg": error.extra_msg, "researcher_id": error.researcher_id } })
                );
            } else {
                outln!(
                    "ERROR   {}: {} {}",
                    error.node_id,
                    error.errnum,
                    error.extra_msg
                );
            }
        });
    } else {
        requests.set_error_handler(|_| {});
    }
    eprintln!(
        "listening as {}; Ctrl-C to stop",
        requests.config().researcher_id
    );
    loop {
        std::thread::park();
    }
}

pub fn roster(global: &Global) -> Result<(), String> {
    let requests = global.connect()?;
    let roster = settled_roster(&requests)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if global.json {
        let nodes: Vec<Value> = roster
            .iter()
            .map(|(node, m)| {
                let since = m.since.map(|at| at.since_epoch().as_millis() as u64);
                json!({ "node_id": node, "online": m.online(), "incarnation": m.incarnation,
                        "since_unix_ms": since })
            })
            .collect();
        outln!("{}", json!({ "nodes": nodes }));
        return Ok(());
    }
    let online = roster.values().filter(|m| m.online()).count();
    outln!("{online} node(s) online, {} offline", roster.len() - online);
    for (node, member) in &roster {
        // Online since the run started (its incarnation is its start); offline since the
        // status changed, when it changed while we listened.
        let since = match member.online() {
            true => Some(Duration::from_nanos(member.incarnation)),
            false => member.since.map(|at| at.since_epoch()),
        };
        let state = if member.online() {
            "online "
        } else {
            "offline"
        };
        match since {
            Some(since) => {
                let ago = now.saturating_sub(since);
                outln!("  {state} {node}  for {} s", ago.as_secs());
            }
            None => outln!("  {state} {node}  since before we connected"),
        }
    }
    Ok(())
}

/// The roster once the answers to our presence probe are in: where the broker keeps retained
/// statuses from wildcard subscriptions (RabbitMQ) or on another cluster member, they are the
/// roster, and come a node's round trip after we connected. Still for 50 ms (first contact's
/// shortest gap), at most a second.
fn settled_roster(requests: &Requests) -> Result<fedreq_driver::Roster, String> {
    const STILL: Duration = Duration::from_millis(50);
    const LONGEST: Duration = Duration::from_secs(1);
    let statuses = |roster: &fedreq_driver::Roster| -> Vec<(String, u64, bool)> {
        let status = |(node, m): (&String, &Member)| (node.clone(), m.incarnation, m.online());
        roster.iter().map(status).collect()
    };
    let started = Instant::now();
    let mut roster = requests.roster().map_err(fail)?;
    let mut still_since = Instant::now();
    while still_since.elapsed() < STILL && started.elapsed() < LONGEST {
        std::thread::sleep(Duration::from_millis(5));
        let now = requests.roster().map_err(fail)?;
        if statuses(&now) != statuses(&roster) {
            still_since = Instant::now();
        }
        roster = now;
    }
    Ok(roster)
}
