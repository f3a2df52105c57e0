//! The one epoch rule: a core's [`Timestamp`] is time since the Unix epoch.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fedreq_protocol::Timestamp;

/// Real time for a core: the wall clock read once at the start, then advanced by the
/// monotonic clock, so a wall-clock step never moves a timer. Node logs read it as
/// Fed-BioMed's `asctime`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    started: Instant,
    since_unix_epoch: Duration,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock {
            started: Instant::now(),
            since_unix_epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.since_unix_epoch + self.started.elapsed())
    }

    /// The instant `at` falls on; `None` for [`Timestamp::NEVER`] or past what an `Instant`
    /// can hold.
    pub fn instant(&self, at: Timestamp) -> Option<Instant> {
        if at == Timestamp::NEVER {
            return None;
        }
        let after_start = at.since_epoch().saturating_sub(self.since_unix_epoch);
        self.started.checked_add(after_start)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::start()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_unix_time_and_instants_round_trip() {
        let clock = Clock::start();
        let now = clock.now();
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(unix.saturating_sub(now.since_epoch()) < Duration::from_secs(5));
        let later = now + Duration::from_secs(3);
        let at = clock.instant(later).unwrap();
        let gap = at.duration_since(Instant::now());
        assert!(gap <= Duration::from_secs(3) && gap > Duration::from_secs(2));
        assert_eq!(clock.instant(now + Duration::MAX), None);
    }
}
