//! The driver thread: one tokio runtime owning every MQTT connection and core of a process,
//! and the answers it sends back.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A background thread running a single-threaded tokio runtime. Drivers started on one
/// `Runtime` share its thread: a thousand nodes are a thousand tasks, not threads. Clones
/// share the thread; it stops when the last clone and the last driver on it are dropped.
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Starts the thread.
    pub fn new() -> std::io::Result<Runtime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fedreq-mqtt".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            }),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Never join from the driver thread itself.
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// The driver stopped before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the MQTT driver has stopped")]
pub struct Stopped;

/// An answer to come from the driver thread: wait for it ([`wait`](Self::wait)), or `.await`
/// it from any executor.
#[derive(Debug)]
pub struct Pending<T> {
    pub(crate) receiver: flume::Receiver<T>,
}

impl<T> Pending<T> {
    pub(crate) fn new() -> (flume::Sender<T>, Pending<T>) {
        let (sender, receiver) = flume::bounded(1);
        (sender, Pending { receiver })
    }

    /// Blocks until the answer comes.
    pub fn wait(self) -> Result<T, Stopped> {
        self.receiver.recv().map_err(|_| Stopped)
    }

    /// Blocks at most `timeout`; `Ok(None)` when it ran out.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<T>, Stopped> {
        match self.receiver.recv_timeout(timeout) {
            Ok(value) => Ok(Some(value)),
            Err(flume::RecvTimeoutError::Timeout) => Ok(None),
            Err(flume::RecvTimeoutError::Disconnected) => Err(Stopped),
        }
    }
}

impl<T: Send + 'static> IntoFuture for Pending<T> {
    type Output = Result<T, Stopped>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, Stopped>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.receiver.recv_async().await.map_err(|_| Stopped) })
    }
}
