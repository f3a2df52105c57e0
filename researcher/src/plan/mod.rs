//! Training plans: read, and checked as the Python a node runs, before anything is sent.

mod coding;
mod python;
mod scopes;

use std::fmt;
use std::path::{Path, PathBuf};

pub use fedreq_protocol::node::MAX_PLAN_BYTES;
use rustpython_parser::Mode;

pub use python::Python;

/// A training plan: its bytes as uploaded, its text, and the name it is known by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingPlan {
    name: String,
    bytes: Vec<u8>,
    source: String,
}

/// A training plan that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The file cannot be read.
    #[error("cannot read training plan {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Larger than a node takes.
    #[error("training plan {name} is {size} bytes, above the limit of {MAX_PLAN_BYTES} (MAX_PLAN_BYTES)")]
    TooLarge {
        /// The plan's name.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// Not valid Python for the version checked: CPython would refuse it.
    #[error("{0}")]
    Syntax(SyntaxError),
}

/// Where and why a plan is not valid Python.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// The plan's name (its path, for a file).
    pub name: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The message, in CPython's words where it has them.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    /// `FILE:LINE:COLUMN: message`, as compilers print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.name, self.line, self.column, self.message
        )
    }
}

impl TrainingPlan {
    /// Reads the plan in `path` and checks it for Python 3.10, as v4 nodes run.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PlanError> {
        Self::from_file_for(path, Python::default())
    }

    /// Reads the plan in `path` and checks it for `python`.
    pub fn from_file_for(path: impl AsRef<Path>, python: Python) -> Result<Self, PlanError> {
        let path = path.as_ref();
        let unreadable = |source| PlanError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let name = path.display().to_string();
        // Its size first: a huge file is refused without being read.
        let size = std::fs::metadata(path).map_err(unreadable)?.len();
        too_large(&name, size)?;
        let bytes = std::fs::read(path).map_err(unreadable)?;
        Self::from_bytes(name, bytes, python)
    }

    /// Checks `source` for Python 3.10, known as `name`. As CPython's `compile` of a string,
    /// a coding declaration in it is not read.
    pub fn from_source(
        name: impl Into<String>,
        source: impl Into<String>,
    ) -> Result<Self, PlanError> {
        Self::from_source_for(name, source, Python::default())
    }

    /// Checks `source` for `python`, known as `name`.
    pub fn from_source_for(
        name: impl Into<String>,
        source: impl Into<String>,
        python: Python,
    ) -> Result<Self, PlanError> {
        let (name, source) = (name.into(), source.into());
        too_large(&name, source.len() as u64)?;
        python::check(&name, &source, python).map_err(PlanError::Syntax)?;
        Ok(TrainingPlan {
            bytes: source.clone().into_bytes(),
            name,
            source,
        })
    }

    /// Checks the bytes of a plan file for `python`, known as `name`, reading them as
    /// CPython reads a source file (PEP 263).
    pub fn from_bytes(
        name: impl Into<String>,
        bytes: Vec<u8>,
        python: Python,
    ) -> Result<Self, PlanError> {
        let name = name.into();
        too_large(&name, bytes.len() as u64)?;
        let source = coding::decode(&name, &bytes).map_err(|e| {
            PlanError::Syntax(SyntaxError {
                name: name.clone(),
                line: e.line,
                column: 1,
                message: e.message,
            })
        })?;
        python::check(&name, &source, python).map_err(PlanError::Syntax)?;
        Ok(TrainingPlan {
            name,
            bytes,
            source,
        })
    }

    /// The name it is known by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Python source, as text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The bytes to upload: the file as it was read.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file name to upload it as: the last part of its name, ending in `.py`.
    pub fn file_name(&self) -> String {
        let base = Path::new(&self.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "training_plan".into());
        if base.ends_with(".py") {
            base
        } else {
            format!("{base}.py")
        }
    }
}

fn too_large(name: &str, size: u64) -> Result<(), PlanError> {
    if size > MAX_PLAN_BYTES as u64 {
        return Err(PlanError::TooLarge {
            name: name.to_owned(),
            size,
        });
    }
    Ok(())
}

/// The node's check of a downloaded plan (a [`fedreq_protocol::node::PlanCheck`]): valid
/// Python, and its tokens without comments or layout as the form plans are told apart by.
/// v4.4 minifies the plan to the same end; python-minifier also drops `(object)` bases,
/// which this does not.
pub fn node_plan_check(content: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;

    use rustpython_parser::lexer::lex;
    let plan = TrainingPlan::from_bytes("training_plan.py", content.to_vec(), Python::default())
        .map_err(|e| e.to_string())?;
    let mut normalised = Vec::new();
    for token in lex(plan.source(), Mode::Module) {
        // This lexer (without `full-lexer`) already drops comments and layout-only newlines.
        let (token, _) = token.map_err(|e| format!("{:?}", e.error))?;
        let _ = writeln!(normalised, "{token:?}");
    }
    Ok(normalised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_python_passes() {
        let source = "import torch\n\nclass Plan:\n    def training_step(self, data, target):\n        return (data - target) ** 2\n";
        assert!(TrainingPlan::from_source("plan.py", source).is_ok());
    }

    #[test]
    fn a_syntax_error_is_file_line_column_message() {
        let source = "class Plan:\n    def f(self):\n        return (1,\n\nx = 1\n";
        let err = TrainingPlan::from_source("plan.py", source).unwrap_err();
        let PlanError::Syntax(syntax) = &err else {
            panic!("{err}")
        };
        assert_eq!(syntax.name, "plan.py");
        assert!(syntax.line >= 3, "{syntax}");
        assert!(err
            .to_string()
            .starts_with(&format!("plan.py:{}:{}: ", syntax.line, syntax.column)));
    }

    #[test]
    fn the_node_check_ignores_comments_and_layout_and_refuses_what_is_not_python() {
        let plain = node_plan_check(b"class P:\n    def f(self, x):\n        return x\n").unwrap();
        let laid_out = node_plan_check(
            b"# a comment\nclass P:\n    def f(self,\n          x):  # why\n        return x\n",
        )
        .unwrap();
        assert_eq!(plain, laid_out);
        assert_ne!(plain, node_plan_check(b"class Q:\n    pass\n").unwrap());
        let refused = node_plan_check(b"class P(:\n").unwrap_err();
        assert!(refused.starts_with("training_plan.py:1:"), "{refused}");
    }

    #[test]
    fn a_plan_above_the_limit_is_refused_naming_it_and_one_at_the_limit_is_checked() {
        let at_limit = "#".repeat(MAX_PLAN_BYTES);
        assert!(TrainingPlan::from_source("large.py", at_limit.clone()).is_ok());
        let above = at_limit + "\n";
        let err = TrainingPlan::from_source("huge.py", above.clone()).unwrap_err();
        assert!(
            matches!(err, PlanError::TooLarge { size, .. } if size == MAX_PLAN_BYTES as u64 + 1)
        );
        assert_eq!(
            err.to_string(),
            format!("training plan huge.py is {} bytes, above the limit of {MAX_PLAN_BYTES} (MAX_PLAN_BYTES)", MAX_PLAN_BYTES + 1)
        );
        let file = std::env::temp_dir().join(format!("fedreq-huge-plan-{}.py", std::process::id()));
        std::fs::write(&file, above).unwrap();
        let err = TrainingPlan::from_file(&file).unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(err, PlanError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_names_the_file_and_the_cause() {
        let err = TrainingPlan::from_file("/no/such/plan.py").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read training plan /no/such/plan.py: No such file or directory (os error 2)"
        );
    }
}
