//! The wall clock the layer stamps spans and events with.
//!
//! Each sampled span with one event reads the clock three times. On the
//! virtual machines services run on, `clock_gettime` often costs 50 ns or
//! more (measured 53 ns here, a quarter of the span's whole cost); the
//! processor's time-stamp counter, read through `quanta`, costs about 10 ns.
//! The counter is anchored to `SystemTime` once and re-aligned with it at
//! most every [`RESYNC_EVERY`] by whichever thread reads it first after that,
//! so the stamps follow the system clock, NTP adjustments included. Where no
//! invariant TSC exists, `quanta` falls back to the OS clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

/// A cheap `SystemTime` source (see the module docs).
#[derive(Debug)]
pub(crate) struct Clock {
    counter: quanta::Clock,
    /// The counter's reading at `anchor`.
    raw_anchor: u64,
    anchor: SystemTime,
    /// Nanoseconds to add to the counter's elapsed time to match the system
    /// clock, as of the last resync.
    correction: AtomicI64,
    /// The counter's elapsed nanoseconds at which the next resync is due.
    next_resync: AtomicI64,
}

/// How often the counter is re-aligned with the system clock.
pub(crate) const RESYNC_EVERY: Duration = Duration::from_secs(1);

impl Clock {
    pub(crate) fn new() -> Self {
        let counter = quanta::Clock::new();
        let raw_anchor = counter.raw();
        Clock {
            counter,
            raw_anchor,
            anchor: SystemTime::now(),
            correction: AtomicI64::new(0),
            next_resync: AtomicI64::new(RESYNC_EVERY.as_nanos() as i64),
        }
    }

    /// The time now, from the counter.
    #[inline]
    pub(crate) fn now(&self) -> SystemTime {
        let counted = self.elapsed_nanos();
        if counted >= self.next_resync.load(Ordering::Relaxed) {
            self.resync_at(counted);
        }
        let elapsed = counted.saturating_add(self.correction.load(Ordering::Relaxed));
        match u64::try_from(elapsed) {
            Ok(n) => self.anchor + Duration::from_nanos(n),
            Err(_) => self.anchor - Duration::from_nanos(elapsed.unsigned_abs()),
        }
    }

    fn elapsed_nanos(&self) -> i64 {
        let nanos = self
            .counter
            .delta_as_nanos(self.raw_anchor, self.counter.raw());
        i64::try_from(nanos).unwrap_or(i64::MAX)
    }

    /// Re-aligns the counter with the system clock now.
    #[cfg(test)]
    pub(crate) fn resync(&self) {
        self.resync_at(self.elapsed_nanos());
    }

    #[cold]
    fn resync_at(&self, counted: i64) {
        let system = match SystemTime::now().duration_since(self.anchor) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        self.correction
            .store(system.saturating_sub(counted), Ordering::Relaxed);
        self.next_resync.store(
            counted.saturating_add(RESYNC_EVERY.as_nanos() as i64),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Right after a resync, a reading falls between two system readings
    /// taken around it (give or take the counter's rate error over the
    /// moment between them), however long the thread was preempted.
    #[test]
    fn follows_the_system_clock() {
        const RATE_ERROR: Duration = Duration::from_millis(1);
        let clock = Clock::new();
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(20));
            let before = SystemTime::now();
            clock.resync();
            let now = clock.now();
            let after = SystemTime::now();
            assert!(now + RATE_ERROR >= before, "{now:?} before {before:?}");
            assert!(now <= after + RATE_ERROR, "{now:?} after {after:?}");
        }
    }

    #[test]
    fn never_goes_backwards_between_resyncs() {
        let clock = Clock::new();
        let mut last = clock.now();
        for _ in 0..10_000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }
}
