//! How often the plan check and the machine's CPython agree, on every `.py` file under the
//! directories given (by default CPython's standard library, tests included):
//! `cargo run --release -p fedreq --example plan_agreement [DIR...]`.

#[path = "../tests/cpython/mod.rs"]
mod cpython;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fedreq::{PlanError, TrainingPlan};

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "py") {
            files.push(path);
        }
    }
}

fn main() {
    let mut dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
            ])
            .output()
            .expect("python3 runs");
        dirs.push(String::from_utf8(out.stdout).unwrap().trim().into());
    }
    let mut files = Vec::new();
    for dir in &dirs {
        walk(dir, &mut files);
    }
    files.sort();
    let (python, theirs) = cpython::verdicts(&files).expect("python3 3.10 or 3.11 answers");
    let (mut agree, mut bytes, mut spent) = (0, 0u64, Duration::ZERO);
    let mut differ = Vec::new();
    for (file, theirs) in files.iter().zip(theirs) {
        bytes += std::fs::metadata(file).map_or(0, |m| m.len());
        let started = Instant::now();
        let ours = match TrainingPlan::from_file_for(file, python) {
            Ok(_) => None,
            Err(PlanError::Syntax(e)) => Some((e.line, e.message)),
            Err(e) => Some((0, e.to_string())),
        };
        spent += started.elapsed();
        match (&theirs, &ours) {
            (None, None) => agree += 1,
            (Some(line), Some((ours, _))) if line == ours => agree += 1,
            _ => differ.push(format!(
                "{}: CPython {theirs:?}, fedreq {ours:?}",
                file.display()
            )),
        }
    }
    for line in &differ {
        println!("{line}");
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "{agree} of {} files: the same verdict and line as CPython {python} ({} differ); {mb:.1} MB checked in {:.2} s, {:.3} s per MB",
        files.len(),
        differ.len(),
        spent.as_secs_f64(),
        spent.as_secs_f64() / mb
    );
}
