//! The one clock of the engine: wall-clock time since the Unix epoch, as newtypes.
//!
//! Sans-IO code (sessions, vardiff, the simulated chain) never reads the clock: it is handed a
//! [`UnixMillis`]. The I/O layer reads it here, in one place, so a test can tell a timestamp from
//! any other `u64`. Wall-clock rather than monotonic time, because these stamps cross processes
//! (share records, session saves, job messages).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// Now, by the system clock (0 if the clock is before 1970).
    pub fn now() -> UnixMillis {
        UnixMillis(since_epoch().as_millis() as u64)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds, as a block header's ntime counts them.
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// The time `d` later (saturating).
    pub fn after(self, d: Duration) -> UnixMillis {
        UnixMillis(self.0.saturating_add(d.as_millis() as u64))
    }

    /// How long after `earlier` this is (zero when it is not later).
    pub fn since(self, earlier: UnixMillis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Microseconds since the Unix epoch: for latencies measured across processes (a job's publish
/// stamp against the engine's receive time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMicros(pub u64);

impl UnixMicros {
    pub fn now() -> UnixMicros {
        UnixMicros(since_epoch().as_micros() as u64)
    }

    pub fn as_micros(self) -> u64 {
        self.0
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_milliseconds_and_seconds_of_the_same_instant() {
        let t = UnixMillis(1_700_000_123_456);
        assert_eq!(t.as_secs(), 1_700_000_123);
        assert_eq!(t.after(Duration::from_millis(544)).as_secs(), 1_700_000_124);
        assert_eq!(
            t.since(UnixMillis(1_700_000_123_000)),
            Duration::from_millis(456)
        );
        assert_eq!(UnixMillis(1).since(t), Duration::ZERO);
        assert!(UnixMillis::now().as_secs() > 1_700_000_000);
        assert!(UnixMicros::now().as_micros() / 1000 >= t.as_millis());
    }
}
