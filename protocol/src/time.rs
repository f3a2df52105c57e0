//! The core's notion of time: a point on the adapter's clock.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, as the time elapsed since an epoch the adapter chose.
///
/// Cores never read a clock: the adapter passes `now` in, from a real clock
/// (`epoch.elapsed()`) or from a simulator's virtual one. Nanosecond precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(Duration);

impl Timestamp {
    /// The adapter's epoch.
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    /// The point `since_epoch` after the epoch.
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Timestamp(since_epoch)
    }

    /// The point `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(Duration::from_millis(ms))
    }

    /// Time elapsed since the epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturates instead of overflowing: a huge timeout means "never".
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(rhs))
    }
}

impl Sub for Timestamp {
    type Output = Duration;
    /// Zero when `rhs` is later: elapsed time is never negative.
    fn sub(self, rhs: Timestamp) -> Duration {
        self.0.saturating_sub(rhs.0)
    }
}
