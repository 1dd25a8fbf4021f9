//! [`TickClock`]: the layer stamps spans and events with raw readings of
//! the processor's time-stamp counter ([`Ticks`]); the worker turns them
//! into `SystemTime` before any sink sees the record.
//!
//! Each sampled span with one event reads the clock three times. On the
//! virtual machines services run on, `clock_gettime` often costs 50 ns or
//! more (measured 53 ns here, a quarter of the span's whole cost); the
//! time-stamp counter, read through `quanta`, costs about 10 ns, and a raw
//! reading is all the application thread takes: the conversion (scaling,
//! adding the anchor) runs on the worker. The counter is anchored to
//! `SystemTime` once and re-aligned with it at most every
//! [`RESYNC_EVERY`], by whichever conversion finds it due, so the times
//! follow the system clock, NTP adjustments included. Where no invariant
//! TSC exists, `quanta` falls back to the OS clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

/// A raw reading of the counter (see the module docs): a time only for the
/// [`TickClock`] it was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticks(u64);

impl Ticks {
    /// The reading as a number, to keep in an atomic.
    #[inline]
    pub(crate) fn to_raw(self) -> u64 {
        self.0
    }

    /// A reading kept with [`to_raw`](Self::to_raw).
    #[inline]
    pub(crate) fn from_raw(raw: u64) -> Self {
        Ticks(raw)
    }
}

/// A cheap `SystemTime` source (see the module docs).
#[derive(Debug)]
pub(crate) struct TickClock {
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

impl TickClock {
    pub(crate) fn new() -> Self {
        let counter = quanta::Clock::new();
        let raw_anchor = counter.raw();
        TickClock {
            counter,
            raw_anchor,
            anchor: SystemTime::now(),
            correction: AtomicI64::new(0),
            next_resync: AtomicI64::new(RESYNC_EVERY.as_nanos() as i64),
        }
    }

    /// The counter now: what the application thread reads.
    #[inline]
    pub(crate) fn ticks(&self) -> Ticks {
        Ticks(self.counter.raw())
    }

    /// Nanoseconds from `from` to `to` (zero when `to` is earlier).
    #[inline]
    pub(crate) fn nanos_between(&self, from: Ticks, to: Ticks) -> u64 {
        if to.0 <= from.0 {
            return 0;
        }
        self.counter.delta_as_nanos(from.0, to.0)
    }

    /// The system time of a reading (re-aligning the counter with the
    /// system clock first when that is due).
    pub(crate) fn to_system(&self, ticks: Ticks) -> SystemTime {
        let counted = self.elapsed_nanos(ticks);
        if counted >= self.next_resync.load(Ordering::Relaxed) {
            self.resync();
        }
        let elapsed = counted.saturating_add(self.correction.load(Ordering::Relaxed));
        match u64::try_from(elapsed) {
            Ok(n) => self.anchor + Duration::from_nanos(n),
            Err(_) => self.anchor - Duration::from_nanos(elapsed.unsigned_abs()),
        }
    }

    /// The time now.
    #[cfg(test)]
    pub(crate) fn now(&self) -> SystemTime {
        self.to_system(self.ticks())
    }

    /// Nanoseconds from the anchor to `ticks`, by the counter.
    fn elapsed_nanos(&self, ticks: Ticks) -> i64 {
        let nanos = self.counter.delta_as_nanos(self.raw_anchor, ticks.0);
        i64::try_from(nanos).unwrap_or(i64::MAX)
    }

    /// Re-aligns the counter with the system clock now.
    #[cold]
    fn resync(&self) {
        let counted = self.elapsed_nanos(self.ticks());
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

    /// The allowance for the counter's rate error over the moments between
    /// the readings compared.
    const RATE_ERROR: Duration = Duration::from_millis(1);

    /// Right after a resync, a reading falls between two system readings
    /// taken around it (give or take the counter's rate error over the
    /// moment between them), however long the thread was preempted.
    #[test]
    fn follows_the_system_clock() {
        let clock = TickClock::new();
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

    /// A reading converted later (as the worker does) is the time it was
    /// read, not the time it was converted.
    #[test]
    fn a_reading_converted_later_keeps_its_time() {
        let clock = TickClock::new();
        clock.resync();
        let before = SystemTime::now();
        let ticks = clock.ticks();
        let after = SystemTime::now();
        std::thread::sleep(Duration::from_millis(50));
        let t = clock.to_system(ticks);
        assert!(t + RATE_ERROR >= before, "{t:?} before {before:?}");
        assert!(t <= after + RATE_ERROR, "{t:?} after {after:?}");
    }

    #[test]
    fn never_goes_backwards_between_resyncs() {
        let clock = TickClock::new();
        let mut last = clock.now();
        for _ in 0..10_000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }
}
