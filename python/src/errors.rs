//! fedreq's errors as Python exceptions: `fedreq.Error` and one subclass per cause, each
//! message the Rust error's.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(fedreq, Error, PyException, "A fedreq operation failed.");
create_exception!(
    fedreq,
    ConnectError,
    Error,
    "The broker could not be reached, or the connection to it stopped."
);
create_exception!(
    fedreq,
    TrainingPlanError,
    Error,
    "The training plan cannot be read or is not valid Python."
);
create_exception!(
    fedreq,
    UploadError,
    Error,
    "The training plan could not be uploaded to the file repository."
);
create_exception!(
    fedreq,
    MessageError,
    Error,
    "A message that cannot be sent: not a valid request, an unknown node or command."
);

pub fn add(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("Error", py.get_type::<Error>())?;
    module.add("ConnectError", py.get_type::<ConnectError>())?;
    module.add("TrainingPlanError", py.get_type::<TrainingPlanError>())?;
    module.add("UploadError", py.get_type::<UploadError>())?;
    module.add("MessageError", py.get_type::<MessageError>())?;
    Ok(())
}

/// The exception of a fedreq error.
pub fn raise(error: fedreq::Error) -> PyErr {
    use fedreq::Error as E;
    let text = error.to_string();
    match error {
        E::Connect(_) | E::Stopped | E::Disconnected(_) => ConnectError::new_err(text),
        E::Plan(_) => TrainingPlanError::new_err(text),
        E::Upload(_) | E::NoRepository => UploadError::new_err(text),
        E::Submit(_) | E::NoSequence(_) | E::Message(_) => MessageError::new_err(text),
        _ => Error::new_err(text),
    }
}
