//! What [`Requests`](crate::Requests) needs from a messaging layer: a researcher core driven
//! somewhere, answering on flume receivers. The MQTT and in-memory drivers provide it; so can
//! a caller's own.

use fedreq_mem::MemResearcher;
use fedreq_mqtt::ResearcherDriver;
use fedreq_protocol::Mail;
use fedreq_protocol::{Collect, Command, Event, Outcome, Submission, SubmitError};

/// A driven researcher core. Every answer comes once on the returned receiver; a receiver
/// that disconnects means the driver stopped.
pub trait Messaging: Send + Sync + 'static {
    /// Submits a request; the outcome comes when the core completes it.
    fn submit(&self, submission: Submission) -> flume::Receiver<Result<Outcome, SubmitError>>;
    /// Collects unmatched messages, as Fed-BioMed's `get_responses` reads its queue.
    fn collect(&self, collect: Collect) -> flume::Receiver<Result<Outcome, SubmitError>>;
    /// Takes the mailbox's messages of these commands (all when empty).
    fn take_mail(&self, commands: Vec<Command>) -> flume::Receiver<Vec<Mail>>;
    /// Every event but completions.
    fn events(&self) -> flume::Receiver<Event>;
}

macro_rules! messaging_for {
    ($($driver:ty),*) => {$(
        impl Messaging for $driver {
            fn submit(&self, submission: Submission) -> flume::Receiver<Result<Outcome, SubmitError>> {
                <$driver>::submit(self, submission)
            }
            fn collect(&self, collect: Collect) -> flume::Receiver<Result<Outcome, SubmitError>> {
                <$driver>::collect(self, collect)
            }
            fn take_mail(&self, commands: Vec<Command>) -> flume::Receiver<Vec<Mail>> {
                <$driver>::take_mail(self, commands)
            }
            fn events(&self) -> flume::Receiver<Event> {
                <$driver>::events(self).clone()
            }
        }
    )*};
}

messaging_for!(ResearcherDriver, MemResearcher);
