//! `fedreq._native`: fedreq's blocking `Requests` for Python, and an embedded federation for
//! tutorials and tests. The package `fedreq` (python/fedreq) re-exports it and adds the
//! Fed-BioMed v4.4 drop-in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;

mod errors;
mod federation;
mod requests;
mod scalars;
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

/// Whether the interpreter is exiting: waiting threads then wait for ever (a daemon thread
/// that took the GIL back now would be stopped by Python in the middle of Rust code).
pub fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// At interpreter exit: no more calls into Python, and every open `Requests` ends its
/// session on the broker.
#[pyfunction]
#[pyo3(name = "exiting")]
fn at_exit(py: Python<'_>) {
    EXITING.store(true, Ordering::Release);
    py.detach(requests::close_all);
}

/// A log record, owned, on its way to Python.
struct Record {
    level: log::Level,
    target: String,
    message: String,
}

/// Rust's `log` records into Python's `logging`. A caller's thread logs at once, in order
/// with its own Python code; fedreq's own threads (the MQTT driver's, named `fedreq-...`)
/// never wait for the GIL: their records go through a queue to a thread of its own. Past
/// [`LOG_QUEUE`] records waiting, new ones are dropped.
struct Logging {
    queue: flume::Sender<Record>,
    python: Arc<pyo3_log::Logger>,
}

/// How many log records may wait for the GIL.
const LOG_QUEUE: usize = 10_000;

/// Which records reach Python at all, by target: the rest stay in Rust without a queue.
const LEVELS: [(&str, log::LevelFilter); 4] = [
    ("fedreq::node", log::LevelFilter::Debug),
    ("fedreq", log::LevelFilter::Info),
    ("fedreq_mqtt", log::LevelFilter::Info),
    // The embedded broker's spans, logged at ERROR whatever happens.
    ("rumqttd", log::LevelFilter::Off),
];

impl log::Log for Logging {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        let target = metadata.target();
        let level = LEVELS
            .iter()
            .find(|(prefix, _)| {
                target == *prefix
                    || target
                        .strip_prefix(prefix)
                        .is_some_and(|r| r.starts_with("::"))
            })
            .map_or(log::LevelFilter::Warn, |&(_, level)| level);
        !exiting() && metadata.level() <= level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ours = std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("fedreq-"));
        if !ours {
            return self.python.log(record);
        }
        let _ = self.queue.try_send(Record {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
        });
    }

    fn flush(&self) {}
}

/// Hands queued records to Python's `logging` (pyo3-log: levels read from Python at each
/// record, so `setLevel` works at any time), until the interpreter exits.
fn forward(records: flume::Receiver<Record>, logger: Arc<pyo3_log::Logger>) {
    use log::Log;
    for record in records.iter() {
        if exiting() {
            return;
        }
        logger.log(
            &log::Record::builder()
                .level(record.level)
                .target(&record.target)
                .args(format_args!("{}", record.message))
                .build(),
        );
    }
}

#[pymodule]
fn _native(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    py.import("atexit")?
        .call_method1("register", (wrap_pyfunction!(at_exit, module)?,))?;
    // Rust's `log` records go to Python's `logging` (`fedreq.requests`, `fedreq.node`...).
    let python = Arc::new(
        pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?.filter(log::LevelFilter::Debug),
    );
    let (queue, records) = flume::bounded(LOG_QUEUE);
    let forwarded = Arc::clone(&python);
    std::thread::Builder::new()
        .name("fedreq-log".into())
        .spawn(move || forward(records, forwarded))
        .map_err(|e| errors::Error::new_err(e.to_string()))?;
    log::set_max_level(log::LevelFilter::Debug);
    log::set_boxed_logger(Box::new(Logging { queue, python }))
        .map_err(|e| errors::Error::new_err(e.to_string()))?;
    module.add_class::<requests::Requests>()?;
    module.add_class::<federation::Federation>()?;
    module.add_class::<scalars::ScalarWriter>()?;
    errors::add(module)?;
    module.add("DEFAULT_UPLOADS_URL", fedreq::requests::DEFAULT_UPLOADS_URL)?;
    Ok(())
}
