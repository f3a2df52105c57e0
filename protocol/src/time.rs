//! The cores' notion of time: a point since the Unix epoch, on a clock the adapter owns.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time: the time elapsed since the Unix epoch, for every core (the node core
/// prints it as its logs' `asctime`).
///
/// Cores never read a clock: the adapter passes `now` in, from a real clock
/// (`fedreq_driver::Clock`) or from a simulator's virtual one, which starts at [`ZERO`](Self::ZERO).
/// Nanosecond precision, in 64 bits: points past the year 2554 saturate to [`NEVER`](Self::NEVER).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The last point a timestamp can hold; a timer set there never fires.
    pub const NEVER: Timestamp = Timestamp(u64::MAX);

    /// The point `since_epoch` after the Unix epoch.
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Timestamp(nanos(since_epoch))
    }

    /// The point `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms.saturating_mul(1_000_000))
    }

    /// Time elapsed since the Unix epoch.
    pub const fn since_epoch(self) -> Duration {
        Duration::from_nanos(self.0)
    }
}

/// `duration` in nanoseconds, at most `u64::MAX`.
const fn nanos(duration: Duration) -> u64 {
    let nanos = duration.as_nanos();
    if nanos > u64::MAX as u128 {
        u64::MAX
    } else {
        nanos as u64
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturates instead of overflowing: a huge timeout means "never".
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos(rhs)))
    }
}

impl Sub for Timestamp {
    type Output = Duration;
    /// Zero when `rhs` is later: elapsed time is never negative.
    fn sub(self, rhs: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(rhs.0))
    }
}
