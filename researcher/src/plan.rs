//! Training plans: read, checked as Python, before anything is sent.

use std::fmt;
use std::path::{Path, PathBuf};

use rustpython_parser::source_code::LinearLocator;
use rustpython_parser::{parse, Mode};

/// A training plan's Python source, with the name it is known by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingPlan {
    name: String,
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
    /// The file is not UTF-8 text.
    #[error("training plan {} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// Not valid Python.
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
    /// The parser's message.
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
    /// Reads the plan in `path` and checks it.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PlanError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| PlanError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let source = String::from_utf8(bytes).map_err(|_| PlanError::NotText {
            path: path.to_owned(),
        })?;
        Self::from_source(path.display().to_string(), source)
    }

    /// Checks `source`, known as `name`.
    pub fn from_source(
        name: impl Into<String>,
        source: impl Into<String>,
    ) -> Result<Self, PlanError> {
        let plan = TrainingPlan {
            name: name.into(),
            source: source.into(),
        };
        plan.check()?;
        Ok(plan)
    }

    /// Parses the source as Python (3.11 grammar; Fed-BioMed v4 nodes run 3.10).
    fn check(&self) -> Result<(), PlanError> {
        let Err(error) = parse(&self.source, Mode::Module, &self.name) else {
            return Ok(());
        };
        let located = LinearLocator::new(&self.source)
            .locate_error::<_, rustpython_parser::ParseErrorType>(error);
        let (line, column) = located.python_location();
        Err(PlanError::Syntax(SyntaxError {
            name: self.name.clone(),
            line,
            column,
            message: located.error.to_string(),
        }))
    }

    /// The name it is known by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Python source.
    pub fn source(&self) -> &str {
        &self.source
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

/// The node's check of a downloaded plan (a [`fedreq_protocol::node::PlanCheck`]): valid
/// Python, and its tokens without comments or layout as the form plans are told apart by.
/// v4.4 minifies the plan to the same end; python-minifier also drops `(object)` bases,
/// which this does not.
pub fn node_plan_check(content: &[u8]) -> Result<Vec<u8>, String> {
    use rustpython_parser::lexer::lex;
    let source = std::str::from_utf8(content).map_err(|_| "not UTF-8 text".to_owned())?;
    let plan = TrainingPlan::from_source("training_plan.py", source).map_err(|e| e.to_string())?;
    let mut normalised = Vec::new();
    for token in lex(plan.source(), Mode::Module) {
        // This lexer (without `full-lexer`) already drops comments and layout-only newlines.
        let (token, _) = token.map_err(|e| format!("{:?}", e.error))?;
        normalised.extend_from_slice(format!("{token:?}\n").as_bytes());
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
    fn a_missing_file_names_the_file_and_the_cause() {
        let err = TrainingPlan::from_file("/no/such/plan.py").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read training plan /no/such/plan.py: No such file or directory (os error 2)"
        );
    }
}
