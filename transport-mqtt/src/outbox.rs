//! Publishes without ever waiting on rumqttc's request channel: what does not fit now waits
//! here, in order, and is retried on the next turn of the task. Between a lost connection and
//! the broker's acknowledgement of the new session's subscriptions, everything waits here:
//! rumqttc drops what it held when a clean session starts, and replies to a request sent
//! before the subscription would find no one.

use std::collections::VecDeque;

use fedreq_protocol::Transmit;
use rumqttc::{AsyncClient, ClientError, QoS, Request};

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Transmit>,
    closed: bool,
}

impl Outbox {
    /// Holds everything until [`open`](Self::open).
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Lets publishes through again.
    pub(crate) fn open(&mut self) {
        self.closed = false;
    }

    pub(crate) fn push(&mut self, transmit: Transmit) {
        self.queue.push_back(transmit);
    }

    /// Whether something waits that a later flush can send.
    pub(crate) fn is_pending(&self) -> bool {
        !self.closed && !self.queue.is_empty()
    }

    /// Hands as much as fits to the client, oldest first.
    pub(crate) fn flush(&mut self, client: &AsyncClient, qos: QoS) {
        if self.closed {
            return;
        }
        while let Some(Transmit { topic, payload }) = self.queue.pop_front() {
            match client.try_publish(topic, qos, false, payload) {
                Ok(()) => {}
                Err(
                    ClientError::TryRequest(Request::Publish(publish))
                    | ClientError::Request(Request::Publish(publish)),
                ) => {
                    self.queue.push_front(Transmit {
                        topic: publish.topic,
                        payload: publish.payload.to_vec(),
                    });
                    return;
                }
                // The event loop is gone: the task is about to stop.
                Err(_) => return,
            }
        }
    }
}
