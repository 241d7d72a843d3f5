//! Time as the delivery policy sees it: the system clock in production, a clock a test or a
//! benchmark sets by hand, so digest hours, quiet hours, daily caps and expiry can be driven
//! across a day (or a DST change) without waiting for one.
//!
//! Owns only "what time is it". Must not touch: what is decided with the answer (the
//! schedule module and the dispatcher do that).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Microseconds since the Unix epoch, Herald's stored time representation.
    fn now_micros(&self) -> i64 {
        self.now().timestamp_micros()
    }
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until it is set or advanced. Starts at the machine's time, so
/// rows written with the real time meanwhile (publications, inbox rows) stay in the past.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            micros: AtomicI64::new(Utc::now().timestamp_micros()),
        }
    }
}

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn set(&self, at: DateTime<Utc>) {
        self.micros.store(at.timestamp_micros(), Ordering::SeqCst);
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.micros
            .fetch_add(by.num_microseconds().unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.micros.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let start = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(clock.now(), start);
        clock.advance(chrono::Duration::hours(25));
        assert_eq!(clock.now() - start, chrono::Duration::hours(25));
        let at = DateTime::parse_from_rfc3339("2026-03-29T00:30:00Z")
            .unwrap()
            .to_utc();
        clock.set(at);
        assert_eq!(clock.now_micros(), at.timestamp_micros());
    }
}
