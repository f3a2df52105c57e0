//! The driver thread: one tokio runtime owning every MQTT connection and core of a process.

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::relay::Relay;

/// How long a stopping runtime lets its connections end their sessions cleanly.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// A background thread running a single-threaded tokio runtime, and the relay its connections
/// go through (see `relay.rs`). Drivers started on one
/// `Runtime` share its thread: a thousand nodes are a thousand tasks, not threads. Clones
/// share the thread; it stops when the last clone and the last driver on it are dropped, once
/// the drivers' tasks have ended their sessions (at most [`CLOSE_WAIT`]).
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: tokio::runtime::Handle,
    relay: Relay,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Each task started by [`Runtime::spawn`] holds a clone: the thread waits for them all.
    tasks: Option<tokio::sync::mpsc::Sender<()>>,
}

impl Runtime {
    /// Starts the thread.
    pub fn new() -> std::io::Result<Runtime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let relay = runtime.block_on(async { Relay::start(listener) })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tasks, mut ended) = tokio::sync::mpsc::channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("fedreq-mqtt".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                    // Every task's sender gone: each said goodbye to its broker.
                    let _ = tokio::time::timeout(CLOSE_WAIT, ended.recv()).await;
                });
            })?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                handle,
                relay,
                stop: Some(stop),
                thread: Some(thread),
                tasks: Some(tasks),
            }),
        })
    }

    /// Runs a driver's task, which the thread lets finish (its clean disconnection) before it
    /// stops.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let guard = self.inner.tasks.clone();
        self.inner.handle.spawn(async move {
            task.await;
            drop(guard);
        });
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// The relay every connection on this runtime goes through.
    pub(crate) fn relay(&self) -> &Relay {
        &self.inner.relay
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tasks.take();
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
