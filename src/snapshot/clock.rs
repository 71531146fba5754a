//! Time for the snapshot cache, behind a trait so tests decide when time passes.
//!
//! The cache only compares [`Instant`]s; the UTC time is carried alongside for status and
//! views. [`ManualClock`] lets tests step past a resync interval without sleeping, while the
//! HTTP calls to a real simulated tailnet keep running on real time (tokio's paused time would
//! also pause the client's timeouts and the sim's own clock).
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A source of time for the snapshot cache.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time, used for every freshness decision.
    fn now(&self) -> Instant;
    /// Wall-clock time at the same moment, recorded in snapshots for status and views.
    fn now_utc(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn now_utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to. Clones share the same time, so a test keeps one
/// clone and hands another to the cache.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    start: Instant,
    start_utc: DateTime<Utc>,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at the moment it is created.
    pub fn new() -> ManualClock {
        ManualClock {
            inner: Arc::new(ManualInner {
                start: Instant::now(),
                start_utc: Utc::now(),
                offset: Mutex::new(Duration::ZERO),
            }),
        }
    }

    /// Moves time forward by `by` (for every clone).
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset();
        *offset = offset.saturating_add(by);
    }

    /// How far the clock has been advanced since it was created.
    pub fn elapsed(&self) -> Duration {
        *self.offset()
    }

    fn offset(&self) -> std::sync::MutexGuard<'_, Duration> {
        // A Duration cannot be left half-written, so a poisoned lock is still consistent.
        self.inner
            .offset
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.start + self.elapsed()
    }

    fn now_utc(&self) -> DateTime<Utc> {
        // Out-of-range offsets (centuries) cannot happen in a test; fall back to the start.
        chrono::Duration::from_std(self.elapsed())
            .ok()
            .and_then(|d| self.inner.start_utc.checked_add_signed(d))
            .unwrap_or(self.inner.start_utc)
    }
}

/// Whether data fetched at `fetched_at` may still be served at `now`. Fresh means strictly
/// younger than `interval`: at exactly one interval of age the data is due for a refetch, and
/// a zero interval makes every access refetch (concurrent accessors still share one fetch).
/// A `now` before `fetched_at` (clocks from different sources) counts as age zero.
pub(crate) fn is_fresh(fetched_at: Instant, now: Instant, interval: Duration) -> bool {
    now.saturating_duration_since(fetched_at) < interval
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn data_is_fresh_strictly_within_the_interval() {
        let t0 = Instant::now();
        assert!(is_fresh(t0, t0, MINUTE));
        assert!(is_fresh(t0, t0 + MINUTE - Duration::from_nanos(1), MINUTE));
        assert!(!is_fresh(t0, t0 + MINUTE, MINUTE));
        assert!(!is_fresh(t0, t0 + 2 * MINUTE, MINUTE));
    }

    #[test]
    fn a_zero_interval_is_never_fresh() {
        let t0 = Instant::now();
        assert!(!is_fresh(t0, t0, Duration::ZERO));
    }

    #[test]
    fn a_now_before_the_fetch_counts_as_age_zero() {
        let t0 = Instant::now();
        let later = t0 + MINUTE;
        assert!(is_fresh(later, t0, MINUTE));
    }

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = ManualClock::new();
        let shared = clock.clone();
        let (t0, u0) = (clock.now(), clock.now_utc());
        assert_eq!(clock.now(), t0);
        shared.advance(Duration::from_secs(90));
        assert_eq!(clock.now() - t0, Duration::from_secs(90));
        assert_eq!(clock.now_utc() - u0, chrono::Duration::seconds(90));
        assert_eq!(clock.elapsed(), Duration::from_secs(90));
    }

    #[test]
    fn manual_clock_drives_staleness() {
        let clock = ManualClock::new();
        let fetched = clock.now();
        clock.advance(MINUTE - Duration::from_millis(1));
        assert!(is_fresh(fetched, clock.now(), MINUTE));
        clock.advance(Duration::from_millis(1));
        assert!(!is_fresh(fetched, clock.now(), MINUTE));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(b >= a);
    }
}

/// Wall-clock time for decisions that compare with the API's timestamps (when a key expires,
/// when to rotate it): real time plus an offset. Production never moves the offset; tests
/// advance it (together with the simulated tailnet's) to step past an expiry without waiting.
/// Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct WallClock {
    offset: Arc<Mutex<chrono::Duration>>,
}

impl WallClock {
    /// Real time.
    pub fn system() -> WallClock {
        WallClock::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves this clock (and its clones) forward.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}
