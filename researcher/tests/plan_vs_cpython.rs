//! The plan check's verdicts against the machine's CPython on a corpus of programs, one per
//! rule (`tests/python/`): the same programs are refused, on the same line. CPython's verdict
//! is `compile(source, file, 'exec')`, what a node does when it loads the plan.

mod cpython;

use std::path::{Path, PathBuf};

use fedreq::{PlanError, TrainingPlan};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    files
}

#[test]
fn verdicts_agree_with_cpython_on_one_program_per_rule() {
    let files = corpus();
    let Some((python, theirs)) = cpython::verdicts(&files) else {
        eprintln!("python3 3.10 or 3.11 is not installed: nothing to compare with");
        return;
    };
    assert_eq!(theirs.len(), files.len());
    let mut disagreements = Vec::new();
    for (file, theirs) in files.iter().zip(theirs) {
        let ours = match TrainingPlan::from_file_for(file, python) {
            Ok(_) => None,
            Err(PlanError::Syntax(error)) => Some(error.line),
            Err(other) => panic!("{other}"),
        };
        if theirs != ours {
            disagreements.push(format!(
                "{}: CPython {python} {theirs:?}, fedreq {ours:?}",
                file.display()
            ));
        }
    }
    let agreed = files.len() - disagreements.len();
    eprintln!(
        "{agreed} of {} programs: same verdict and line as CPython {python}",
        files.len()
    );
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}
