//! The driver thread: one tokio runtime owning every MQTT connection and core of a process.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::relay::Relay;

/// A background thread running a single-threaded tokio runtime, and the relay its connections
/// go through (see `relay.rs`). Drivers started on one
/// `Runtime` share its thread: a thousand nodes are a thousand tasks, not threads. Clones
/// share the thread; it stops when the last clone and the last driver on it are dropped.
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
        let thread = std::thread::Builder::new()
            .name("fedreq-mqtt".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                handle,
                relay,
                stop: Some(stop),
                thread: Some(thread),
            }),
        })
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
