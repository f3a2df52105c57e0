//! Commands that need no broker: check a plan, decode captured messages.

use std::io::BufRead;

use clap::Args;
use fedreq::plan::Python;
use fedreq::TrainingPlan;
use fedreq_protocol::presence::{self, NoMatch, Presence};
use fedreq_protocol::{topic, DecodeError, Limits, NodeMessage, Request};
use serde_json::{json, Value};

use super::{fail, Global};

/// Options of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    plan: PlanFile,
}

/// A training plan file and the Python it is checked for (`check`, `approve`).
#[derive(Debug, Args)]
pub struct PlanFile {
    /// The training plan, a Python file
    file: std::path::PathBuf,
    /// The Python the nodes run: 3.10 (Fed-BioMed v4's) or 3.11
    #[arg(long, env = "FEDREQ_PYTHON", default_value_t = Python::V3_10)]
    python: Python,
}

impl PlanFile {
    /// Reads and checks the plan.
    pub fn read(&self) -> Result<TrainingPlan, String> {
        TrainingPlan::from_file_for(&self.file, self.python).map_err(fail)
    }
}

/// Options of `decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// A file of `TOPIC PAYLOAD` lines; `-` or nothing for stdin
    file: Option<std::path::PathBuf>,
}

pub fn check(args: CheckArgs) -> Result<(), String> {
    let plan = args.plan.read()?;
    outln!("{}: valid Python {}", plan.name(), args.plan.python);
    Ok(())
}

/// Decodes each line as the message its topic carries; exit status 1 if any was refused.
pub fn decode(global: &Global, args: DecodeArgs) -> Result<(), String> {
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let limits = Limits::default();
    let mut refused = 0;
    for (number, line) in input.lines().enumerate() {
        let line = line.map_err(fail)?;
        if line.trim().is_empty() {
            continue;
        }
        // A payload alone (a JSON object where the topic should be) is named as such, not
        // read as a topic with an empty payload.
        let (topic, decoded) = match line.starts_with('{') {
            true => ("(no topic)", Err(NO_TOPIC.to_owned())),
            false => {
                let (topic, payload) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let decoded = decode_one(topic, payload.as_bytes(), &limits);
                (topic, decoded.map_err(|error| error.to_string()))
            }
        };
        match decoded {
            Ok(message) if global.json => {
                outln!("{}", json!({ "topic": topic, "message": message }))
            }
            Ok(message) => outln!("{topic} {message}"),
            Err(error) => {
                refused += 1;
                if global.json {
                    outln!(
                        "{}",
                        json!({ "topic": topic, "line": number + 1, "refused": error })
                    );
                } else {
                    outln!("{topic} refused (line {}): {error}", number + 1);
                }
            }
        }
    }
    if refused > 0 {
        return Err(format!("{refused} message(s) refused"));
    }
    Ok(())
}

const NO_TOPIC: &str =
    "a payload without its topic: each line is `TOPIC PAYLOAD`, as `mosquitto_sub -v` prints it";

/// The message `payload` is, as its topic says: a node's reply, log or scalar on the
/// researcher's topics; fedreq's own statuses, probes and no-match words; else a request.
fn decode_one(topic: &str, payload: &[u8], limits: &Limits) -> Result<Value, DecodeError> {
    let encoded = |bytes: Vec<u8>| serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if topic.starts_with(presence::PREFIX) || topic.starts_with(presence::PROBED) {
        return Presence::decode(topic, payload, limits).map(|p| encoded(p.encode()));
    }
    if topic == presence::NO_MATCH {
        return NoMatch::decode(payload, limits).map(|n| encoded(n.encode()));
    }
    // A probe's payload is not read; a researcher connection's echo is empty.
    let probe = topic.strip_prefix(presence::PROBE);
    if probe.is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
        return Ok(json!({ "probe": String::from_utf8_lossy(payload) }));
    }
    if topic.starts_with(fedreq_mqtt::researcher::SYNC) {
        return Ok(json!({ "sync": String::from_utf8_lossy(payload) }));
    }
    if [topic::RESEARCHER, topic::LOGGER, topic::MONITORING].contains(&topic) {
        return NodeMessage::decode(payload, limits).map(|d| d.message.to_value());
    }
    Request::decode(payload, limits).map(|d| d.message.to_value())
}
