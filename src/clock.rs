//! Wall-clock time, behind a trait so tests can cover ten days in milliseconds.
//!
//! Event time (from records) and "now" are both unix milliseconds; timers that only pace work
//! (intervals, retries) use tokio's monotonic clock instead.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Unix milliseconds "now", as staleness is judged.
pub trait Clock: Debug + Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock {
            now_ms: AtomicI64::new(now_ms),
        }
    }

    pub fn set(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: std::time::Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Formats unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(unix_ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(unix_ms) {
        Some(time) => time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => format!("@{unix_ms}ms"),
    }
}

/// "3d 4h", "12m 5s": how long, in words a person pages on.
pub fn human_duration_ms(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(std::time::Duration::from_secs(10 * 86_400));
        assert_eq!(clock.now_ms(), 1_000 + 10 * 86_400_000);
        clock.set(5);
        assert_eq!(clock.now_ms(), 5);
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration_ms(10 * 86_400_000 + 3_600_000), "10d 1h");
        assert_eq!(human_duration_ms(2 * 3_600_000 + 5 * 60_000), "2h 5m");
        assert_eq!(human_duration_ms(61_000), "1m 1s");
        assert_eq!(human_duration_ms(999), "0s");
        assert_eq!(human_duration_ms(-5), "0s");
    }

    #[test]
    fn rfc3339_is_utc_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_547_200_123), "2025-12-01T00:00:00.123Z");
    }
}
