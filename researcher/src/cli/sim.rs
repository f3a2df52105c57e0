//! `fedreq sim`: a federation of N simulated nodes in memory, with seeded faults.

use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Args;
use fedreq_mem::sim::EXAMPLE_PLAN_URL;
use fedreq_mem::{Faults, SimConfig, Simulation};
use fedreq_protocol::{Outcome, Policy, Request, Submission};
use serde_json::json;

/// Options of `fedreq sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Seed of every random choice: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    drop: f64,
    /// Probability that a message arrives twice.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    dup: f64,
    /// Probability that a message is held back and overtaken.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    reorder: f64,
    /// Latency range of each message, in milliseconds: MIN..MAX.
    #[arg(long, default_value = "1..5")]
    latency: LatencyRange,
    /// Share of nodes that are offline.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    offline: f64,
    /// Share of nodes that announce nothing, as Fed-BioMed v4.4's.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    silent: f64,
    /// Requests to run in turn: ping, list, search:TAG[+TAG...], approve.
    #[arg(long, default_value = "ping", value_delimiter = ',')]
    requests: Vec<SimRequest>,
}

fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{text}` is not a probability between 0 and 1")),
    }
}

/// `MIN..MAX` milliseconds.
#[derive(Clone, Copy, Debug)]
struct LatencyRange(Duration, Duration);

impl FromStr for LatencyRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let parse = |part: &str| {
            part.trim()
                .parse::<f64>()
                .ok()
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        };
        match text.split_once("..").map(|(a, b)| (parse(a), parse(b))) {
            Some((Some(min), Some(max))) if min <= max => Ok(LatencyRange(min, max)),
            _ => Err(format!(
                "`{text}` is not a latency range MIN..MAX in milliseconds, MIN <= MAX"
            )),
        }
    }
}

/// One request of `--requests`.
#[derive(Clone, Debug)]
enum SimRequest {
    Ping,
    List,
    Search(Vec<String>),
    Approve,
}

impl FromStr for SimRequest {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "ping" => Ok(SimRequest::Ping),
            "list" => Ok(SimRequest::List),
            "approve" => Ok(SimRequest::Approve),
            _ => match text.strip_prefix("search:") {
                Some(tags) if !tags.is_empty() => Ok(SimRequest::Search(
                    tags.split('+').map(str::to_owned).collect(),
                )),
                _ => Err(format!(
                    "unknown request `{text}`: use ping, list, search:TAG[+TAG...] or approve"
                )),
            },
        }
    }
}

/// Runs the requests on a fresh simulation; the quiet period is the global `--timeout`.
pub fn run(args: SimArgs, json: bool, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    let mut sim = Simulation::new(SimConfig {
        faults: Faults {
            latency: (args.latency.0, args.latency.1),
            drop: args.drop,
            duplicate: args.dup,
            reorder: args.reorder,
            offline: args.offline,
            silent: args.silent,
            ..Faults::default()
        },
        ..SimConfig::new(args.nodes, args.seed)
    });
    let quiet = Policy::quiet(timeout);
    // The researcher knows its federation: every node is expected (a search's fence tells
    // a node without a match).
    let known = quiet.clone().with_roster(sim.node_ids().to_vec());
    let mut outcomes: Vec<Outcome> = Vec::new();
    for request in &args.requests {
        let submission = match request {
            SimRequest::Ping => Submission::broadcast(Request::ping()).with_policy(known.clone()),
            SimRequest::List => Submission::broadcast(Request::list()).with_policy(known.clone()),
            SimRequest::Search(tags) => {
                Submission::broadcast(Request::search(tags.clone())).with_policy(known.clone())
            }
            SimRequest::Approve => {
                Submission::broadcast(Request::approval("simulated plan", EXAMPLE_PLAN_URL))
                    .with_policy(known.clone())
            }
        };
        outcomes.push(sim.request(submission).map_err(super::fail)?);
    }
    let wall = started.elapsed();
    let virtual_ms = sim.now().since_epoch().as_secs_f64() * 1000.0;
    let trace_hash = format!("{:016x}", sim.trace_hash());

    if json {
        let requests: Vec<_> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "command": o.command.map(|c| c.as_str()),
                    "replies": o.replies.len(),
                    "missing": o.missing,
                    "errors": o.errors.len(),
                    "completion": o.completion,
                    "elapsed_ms": o.elapsed.as_secs_f64() * 1000.0,
                    "counters": o.counters,
                })
            })
            .collect();
        let report = json!({
            "nodes": args.nodes,
            "seed": args.seed,
            "offline": sim.offline_nodes().len(),
            "trace_hash": trace_hash,
            "deliveries": sim.trace_len(),
            "requests": requests,
            "virtual_ms": virtual_ms,
            "wall_ms": wall.as_secs_f64() * 1000.0,
        });
        outln!("{report}");
        return Ok(());
    }

    outln!(
        "{} nodes, seed {}, {} offline",
        args.nodes,
        args.seed,
        sim.offline_nodes().len()
    );
    outln!(
        "{:<3} {:<10} {:>8} {:>8} {:>6} {:>10} {:>5} {:>8} {:>9}  {:<13} {:>12}",
        "#",
        "command",
        "replies",
        "missing",
        "errors",
        "duplicates",
        "late",
        "foreign",
        "malformed",
        "completion",
        "elapsed"
    );
    for (i, o) in outcomes.iter().enumerate() {
        let completion = serde_json::to_value(o.completion).unwrap_or_default();
        outln!(
            "{:<3} {:<10} {:>8} {:>8} {:>6} {:>10} {:>5} {:>8} {:>9}  {:<13} {:>9.3} ms",
            i + 1,
            o.command.map(|c| c.as_str()).unwrap_or("collect"),
            o.replies.len(),
            o.missing.len(),
            o.errors.len(),
            o.counters.duplicates,
            o.counters.late,
            o.counters.foreign,
            o.counters.malformed,
            completion.as_str().unwrap_or_default(),
            o.elapsed.as_secs_f64() * 1000.0
        );
    }
    outln!(
        "trace hash    {trace_hash} ({} deliveries)",
        sim.trace_len()
    );
    outln!("virtual time  {virtual_ms:.3} ms");
    outln!("wall time     {:.1} ms", wall.as_secs_f64() * 1000.0);
    Ok(())
}
