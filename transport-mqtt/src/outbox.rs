//! Publishes without ever waiting on rumqttc's request channel: what does not fit now waits
//! here, in order, and is retried on the next turn of the task.

use std::collections::VecDeque;

use fedreq_protocol::Transmit;
use rumqttc::{AsyncClient, ClientError, QoS, Request};

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Transmit>,
}

impl Outbox {
    pub(crate) fn push(&mut self, transmit: Transmit) {
        self.queue.push_back(transmit);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Hands as much as fits to the client, oldest first.
    pub(crate) fn flush(&mut self, client: &AsyncClient, qos: QoS) {
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
