//! Waiting without the GIL, and interruptibly: Ctrl-C in a notebook ends a waiting request.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How often a waiting request looks for signals: Ctrl-C interrupts it within this.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to its end with the GIL released, so other Python threads run; every
/// [`SIGNAL_CHECK`] it takes the GIL back to run signal handlers, and a `KeyboardInterrupt`
/// (or any exception they raise) drops the future and is returned.
pub fn wait<T: Send>(py: Python<'_>, future: impl Future<Output = T> + Send) -> PyResult<T> {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    loop {
        let polled = py.detach(|| {
            let mut context = Context::from_waker(&waker);
            let until = Instant::now() + SIGNAL_CHECK;
            loop {
                // The interpreter is exiting: this thread must not take the GIL back.
                while crate::exiting() {
                    thread::park();
                }
                if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
                    return Some(value);
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                thread::park_timeout(left);
            }
        });
        match polled {
            Some(value) => return Ok(value),
            None => py.check_signals()?,
        }
    }
}
