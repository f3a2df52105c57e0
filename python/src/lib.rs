//! `fedreq._native`: fedreq's blocking `Requests` for Python, and an embedded federation for
//! tutorials and tests. The package `fedreq` (python/fedreq) re-exports it and adds the
//! Fed-BioMed v4.4 drop-in.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

mod errors;
mod federation;
mod requests;
mod wait;

/// Set when the interpreter exits: fedreq's threads then no longer call into Python, which
/// would fail once it is finalized.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Runs `f` with the GIL from one of fedreq's threads, unless the interpreter is exiting.
pub fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    match EXITING.load(Ordering::Acquire) {
        true => None,
        false => Some(Python::attach(f)),
    }
}

#[pyfunction]
fn exiting() {
    EXITING.store(true, Ordering::Release);
}

/// Rust's `log` records into Python's `logging`, until the interpreter exits.
struct Logging(pyo3_log::Logger);

impl log::Log for Logging {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        !EXITING.load(Ordering::Acquire) && self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !EXITING.load(Ordering::Acquire) {
            self.0.log(record);
        }
    }

    fn flush(&self) {}
}

#[pymodule]
fn _native(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    py.import("atexit")?
        .call_method1("register", (wrap_pyfunction!(exiting, module)?,))?;
    // Rust's `log` records go to Python's `logging` (`fedreq.requests`, `fedreq.node`...);
    // levels are read from Python at each record, so `setLevel` works at any time. Each record
    // takes the GIL: below these levels, records stay in Rust.
    use log::LevelFilter::{Debug, Info, Off, Warn};
    let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?
        .filter(Warn)
        .filter_target("fedreq".into(), Info)
        .filter_target("fedreq::node".into(), Debug)
        .filter_target("fedreq_mqtt".into(), Info)
        // The embedded broker's spans, logged at ERROR whatever happens.
        .filter_target("rumqttd".into(), Off);
    log::set_max_level(Debug);
    log::set_boxed_logger(Box::new(Logging(logger)))
        .map_err(|e| errors::Error::new_err(e.to_string()))?;
    module.add_class::<requests::Requests>()?;
    module.add_class::<federation::Federation>()?;
    errors::add(module)?;
    module.add("DEFAULT_UPLOADS_URL", fedreq::requests::DEFAULT_UPLOADS_URL)?;
    Ok(())
}
