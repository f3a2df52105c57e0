//! `fedreq.ScalarWriter`: a monitor callback that writes the scalars where researchers look,
//! for notebooks without Fed-BioMed's Monitor.

use std::path::PathBuf;
use std::sync::Mutex;

use fedreq_protocol::message::Object;
use fedreq_protocol::NodeMessage;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pythonize::depythonize;

/// Writes each monitoring scalar it is called with (the dict a monitor callback receives) to
/// any of: TensorBoard event files under `tensorboard` (a run per job and node, tags as
/// Fed-BioMed's Monitor's), a CSV file, a JSON-lines file. Pass it to
/// `Requests.add_monitor_callback`.
#[pyclass(module = "fedreq")]
pub struct ScalarWriter {
    inner: Mutex<fedreq::scalars::ScalarWriter>,
}

#[pymethods]
impl ScalarWriter {
    #[new]
    #[pyo3(signature = (tensorboard=None, csv=None, jsonl=None))]
    fn new(
        tensorboard: Option<PathBuf>,
        csv: Option<PathBuf>,
        jsonl: Option<PathBuf>,
    ) -> PyResult<Self> {
        let writer = fedreq::scalars::ScalarWriter::open(
            tensorboard.as_deref(),
            csv.as_deref(),
            jsonl.as_deref(),
        )
        .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(ScalarWriter {
            inner: Mutex::new(writer),
        })
    }

    /// Writes one scalar message; ValueError if it is not an `add_scalar` message.
    fn __call__(&self, message: &Bound<'_, PyAny>) -> PyResult<()> {
        let object: Object = depythonize(message)?;
        let message =
            NodeMessage::from_value(object).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let NodeMessage::AddScalar(scalar) = message else {
            return Err(PyValueError::new_err(format!(
                "not a monitoring scalar but {}",
                message.command()
            )));
        };
        let mut writer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        writer
            .write(&scalar)
            .map_err(|e| PyOSError::new_err(e.to_string()))
    }
}
