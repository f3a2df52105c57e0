//! Monitoring scalars written where researchers look: TensorBoard event files laid out as
//! Fed-BioMed's Monitor lays them out, CSV, or JSON lines.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use fedreq_protocol::message::AddScalarMessage;
use serde_json::json;
use syntaxdot_summary::SummaryWriter;

/// TensorBoard runs kept open at once; any other is reopened (a new event file in its
/// folder) when it speaks again. Node and job ids come from the network.
const OPEN_RUNS: usize = 64;

/// What a scalar was measured on, in Fed-BioMed's Monitor's words: the key of its store
/// (`training`, `testing_global_updates`, `testing_local_updates`) and the header of its
/// TensorBoard tags.
pub fn phase(scalar: &AddScalarMessage) -> (&'static str, &'static str) {
    match (scalar.train, scalar.test_on_global_updates) {
        (true, _) => ("training", "TRAINING"),
        (false, true) => ("testing_global_updates", "VALIDATION ON GLOBAL UPDATES"),
        (false, false) => ("testing_local_updates", "VALIDATION ON LOCAL UPDATES"),
    }
}

/// A metric's TensorBoard tag, as Fed-BioMed's Monitor tags it: `TRAINING/Loss`.
pub fn tag(scalar: &AddScalarMessage, metric: &str) -> String {
    format!("{}/{metric}", phase(scalar).1)
}

/// Writes each scalar as it arrives to any of: a TensorBoard folder (a run per job and
/// node, `JOB/NODE`, tagged `TRAINING/Loss` as Fed-BioMed's Monitor tags them), a CSV file,
/// a JSON-lines file. A metric that is not a number is left out.
#[derive(Default)]
pub struct ScalarWriter {
    tensorboard: Option<PathBuf>,
    runs: HashMap<(String, String), SummaryWriter<BufWriter<File>>>,
    opened: VecDeque<(String, String)>,
    csv: Option<BufWriter<File>>,
    json_lines: Option<BufWriter<File>>,
    steps: Steps,
}

impl ScalarWriter {
    /// Writes to none of them until told.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also writes TensorBoard event files under `dir`, made if need be. An error names it.
    pub fn tensorboard(mut self, dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| naming(&dir, e))?;
        self.tensorboard = Some(dir);
        Ok(self)
    }

    /// Also writes `path` as CSV, with a header. An error names the file.
    pub fn csv(mut self, path: impl AsRef<Path>) -> io::Result<Self> {
        let mut file = create(path.as_ref())?;
        writeln!(
            file,
            "wall_time,job_id,node_id,phase,metric,step,epoch,iteration,value"
        )?;
        file.flush()?;
        self.csv = Some(file);
        Ok(self)
    }

    /// Also writes `path` as JSON lines, an object a metric. An error names the file.
    pub fn json_lines(mut self, path: impl AsRef<Path>) -> io::Result<Self> {
        self.json_lines = Some(create(path.as_ref())?);
        Ok(self)
    }

    /// Writes to each place given, none of them required (a command's options, Python's
    /// keyword arguments). An error names the file or folder.
    pub fn open(
        tensorboard: Option<&Path>,
        csv: Option<&Path>,
        json_lines: Option<&Path>,
    ) -> io::Result<Self> {
        let mut writer = Self::new();
        if let Some(dir) = tensorboard {
            writer = writer.tensorboard(dir)?;
        }
        if let Some(path) = csv {
            writer = writer.csv(path)?;
        }
        if let Some(path) = json_lines {
            writer = writer.json_lines(path)?;
        }
        Ok(writer)
    }

    /// Whether it writes anywhere.
    pub fn writes(&self) -> bool {
        self.tensorboard.is_some() || self.csv.is_some() || self.json_lines.is_some()
    }

    /// Writes every numeric metric of `scalar`, flushed.
    pub fn write(&mut self, scalar: &AddScalarMessage) -> io::Result<()> {
        let wall_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let (phase, _) = phase(scalar);
        for (metric, value) in &scalar.metric {
            let Some(value) = value.as_f64() else {
                log::warn!(
                    "{}: metric {metric} of job {} is not a number: left out",
                    scalar.node_id,
                    scalar.job_id
                );
                continue;
            };
            let step = self.steps.next(scalar, phase, metric);
            if let Some(dir) = &self.tensorboard {
                let run = (scalar.job_id.clone(), scalar.node_id.clone());
                let folder = dir.join(path_part(&run.0)).join(path_part(&run.1));
                // The least recently written run is closed first.
                match self.opened.iter().position(|open| *open == run) {
                    Some(at) => _ = self.opened.remove(at),
                    None => {
                        let writer = SummaryWriter::from_prefix(folder.join("events"))
                            .map_err(|e| naming(&folder, e))?;
                        if self.opened.len() == OPEN_RUNS {
                            let oldest = self.opened.pop_front().expect("full");
                            self.runs.remove(&oldest);
                        }
                        self.runs.insert(run.clone(), writer);
                    }
                }
                self.opened.push_back(run.clone());
                let writer = self.runs.get_mut(&run).expect("opened above");
                writer
                    .write_scalar(tag(scalar, metric), step, value as f32)
                    .map_err(|e| naming(&folder, e))?;
            }
            if let Some(csv) = &mut self.csv {
                let epoch = scalar.epoch.map(|e| e.to_string()).unwrap_or_default();
                writeln!(
                    csv,
                    "{wall_time:.6},{},{},{phase},{},{step},{epoch},{},{value}",
                    csv_field(&scalar.job_id),
                    csv_field(&scalar.node_id),
                    csv_field(metric),
                    scalar.iteration,
                )?;
                csv.flush()?;
            }
            if let Some(lines) = &mut self.json_lines {
                let line = json!({
                    "wall_time": wall_time, "job_id": scalar.job_id, "node_id": scalar.node_id,
                    "phase": phase, "metric": metric, "step": step, "epoch": scalar.epoch,
                    "iteration": scalar.iteration, "value": value,
                });
                writeln!(lines, "{line}")?;
                lines.flush()?;
            }
        }
        Ok(())
    }
}

fn create(path: &Path) -> io::Result<BufWriter<File>> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|e| naming(path, e))
}

/// `error`, naming the file or folder it is about.
fn naming(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("cannot write {}: {error}", path.display()),
    )
}

/// Fed-BioMed's Monitor's step: the iteration counted on across epochs and rounds. Its
/// iterations start again at each epoch and round; each time they do, the last one is
/// added to what came before.
#[derive(Default)]
pub struct Steps {
    /// (job, node, phase, metric) -> (steps before this run of iterations, last iteration).
    seen: HashMap<(String, String, &'static str, String), (i64, i64)>,
}

impl Steps {
    /// The step of `scalar`'s `metric`, measured on `phase` ([`phase`]'s first word).
    pub fn next(&mut self, scalar: &AddScalarMessage, phase: &'static str, metric: &str) -> i64 {
        let key = (
            scalar.job_id.clone(),
            scalar.node_id.clone(),
            phase,
            metric.to_owned(),
        );
        let (before, last) = self.seen.entry(key).or_insert((0, 0));
        if scalar.iteration <= *last {
            *before = before.saturating_add(*last);
        }
        *last = scalar.iteration;
        before.saturating_add(scalar.iteration)
    }
}

/// An id as one folder name: only what is safe in a path (ids come from the network).
fn path_part(id: &str) -> String {
    let part: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    match part.as_str() {
        "" | "." | ".." => part.replace('.', "_") + "_",
        _ => part,
    }
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &str, iteration: i64, loss: f64) -> AddScalarMessage {
        let wire = format!(
            r#"{{"protocol_version":"1","researcher_id":"r","node_id":"{node}","job_id":"job-1","train":true,"test":false,"test_on_local_updates":false,"test_on_global_updates":false,"metric":{{"Loss":{loss},"note":"x"}},"epoch":1,"total_samples":10,"batch_samples":5,"num_batches":2,"num_samples_trained":5,"iteration":{iteration},"command":"add_scalar"}}"#
        );
        match fedreq_protocol::NodeMessage::decode(wire.as_bytes(), &Default::default())
            .unwrap()
            .message
        {
            fedreq_protocol::NodeMessage::AddScalar(scalar) => *scalar,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn steps_count_on_when_iterations_start_again() {
        let mut steps = Steps::default();
        let iterations = [1, 2, 1, 2, 1, 2];
        let counted: Vec<i64> = iterations
            .iter()
            .map(|&i| steps.next(&scalar("n", i, 0.0), "training", "Loss"))
            .collect();
        assert_eq!(counted, [1, 2, 3, 4, 5, 6]);
        // Another node counts from the start.
        assert_eq!(steps.next(&scalar("m", 1, 0.0), "training", "Loss"), 1);
    }

    #[test]
    fn a_tensorboard_folder_that_cannot_be_made_is_refused_at_once_naming_it() {
        let file = std::env::temp_dir().join(format!("fedreq-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        let folder = file.join("runs");
        let error = ScalarWriter::open(Some(&folder), None, None).err();
        std::fs::remove_file(&file).unwrap();
        let error = error.expect("a folder inside a file").to_string();
        assert!(error.contains(&folder.display().to_string()), "{error}");
    }

    #[test]
    fn ids_from_the_network_stay_inside_the_folder() {
        assert_eq!(path_part("node-1"), "node-1");
        assert_eq!(path_part("../../etc"), ".._.._etc");
        assert_eq!(path_part(".."), "___");
        assert_eq!(path_part(""), "_");
        assert_eq!(path_part("a/b\\c"), "a_b_c");
    }

    #[test]
    fn csv_and_json_lines_hold_each_numeric_metric_with_its_step() {
        let dir = std::env::temp_dir().join(format!("fedreq-scalars-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut writer = ScalarWriter::new()
            .csv(dir.join("s.csv"))
            .unwrap()
            .json_lines(dir.join("s.jsonl"))
            .unwrap();
        writer.write(&scalar("a,b", 1, 0.5)).unwrap();
        writer.write(&scalar("a,b", 1, 0.25)).unwrap();
        let csv = std::fs::read_to_string(dir.join("s.csv")).unwrap();
        let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.splitn(2, ',').collect()).collect();
        assert_eq!(rows.len(), 3, "{csv}");
        assert!(
            rows[1][1].ends_with(r#"job-1,"a,b",training,Loss,1,1,1,0.5"#),
            "{csv}"
        );
        assert!(
            rows[2][1].ends_with(r#"job-1,"a,b",training,Loss,2,1,1,0.25"#),
            "{csv}"
        );
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("s.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (&lines[1]["node_id"], &lines[1]["step"], &lines[1]["value"]),
            (&json!("a,b"), &json!(2), &json!(0.25))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
