//! The exporter's clock: what the worker and the Application Insights sink
//! read for "now" and sleep on (export intervals, retry backoff,
//! `Retry-After`, pauses, flush and shutdown deadlines, storage leases and
//! retention). The system's by default; a [`ManualClock`] in tests, so that
//! a test of a 30-second backoff or a 48-hour retention runs in
//! milliseconds and never depends on how busy the machine is.
//!
//! Time spent on the network is not on this clock: connect and request
//! timeouts are real, since the sockets are.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

/// A sleep on the exporter's clock.
pub(crate) type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The exporter's clock (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    /// The system's monotonic and wall clocks.
    #[default]
    System,
    /// A clock that moves only when a test advances it.
    Manual(ManualClock),
}

impl Clock {
    /// The monotonic time now.
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(clock) => clock.now(),
        }
    }

    /// The wall-clock time now (for what is written to disk).
    pub(crate) fn wall(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Manual(clock) => clock.wall(),
        }
    }

    /// Sleeps until `at` on this clock.
    pub(crate) fn sleep_until(&self, at: Instant) -> Sleep {
        match self {
            Clock::System => Box::pin(tokio::time::sleep_until(at.into())),
            Clock::Manual(clock) => {
                let clock = clock.clone();
                let mut changed = clock.inner.offset.subscribe();
                Box::pin(async move {
                    while clock.now() < at {
                        if changed.changed().await.is_err() {
                            // The clock is gone: it can never move again.
                            std::future::pending::<()>().await;
                        }
                    }
                })
            }
        }
    }

    /// The `Instant` on this clock of a wall-clock time (now, for a time
    /// in the past).
    pub(crate) fn instant_of(&self, t: SystemTime) -> Instant {
        self.now() + t.duration_since(self.wall()).unwrap_or_default()
    }

    /// The wall-clock time of an `Instant` on this clock not yet past
    /// (`None` for one in the past): how long a lease on disk lasts.
    pub(crate) fn wall_of(&self, at: Instant) -> Option<SystemTime> {
        at.checked_duration_since(self.now())
            .map(|left| self.wall() + left)
    }
}

/// A clock for tests that moves only when told to: give it to
/// [`Builder::with_manual_clock`](crate::Builder::with_manual_clock) and the
/// exporter's timers (the export interval, retry backoff and `Retry-After`,
/// pauses after failures, the time a flush or the shutdown keeps for
/// storing what is unsent, storage leases and retention) wait until
/// [`advance`](Self::advance) moves it past them.
///
/// The network is not on this clock (connect and request timeouts stay
/// real), and neither is the caller's wait in
/// [`ExporterGuard::flush`](crate::ExporterGuard::flush) and
/// [`shutdown`](crate::ExporterGuard::shutdown): they still return within
/// their timeout in real time. A flush that needs a retry settles only once
/// the clock reaches the retry.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tracing_appinsights::{Builder, InMemoryExporter, ManualClock};
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let clock = ManualClock::new();
/// let exporter = InMemoryExporter::new();
/// let (layer, guard) = Builder::new()
///     .with_in_memory_exporter(exporter.clone())
///     .with_export_interval(Duration::from_secs(60))
///     .with_manual_clock(&clock)
///     .build()?;
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info_span!("work").in_scope(|| {});
/// });
/// // A minute on the exporter's clock: the export interval passes at once.
/// clock.advance(Duration::from_secs(60));
/// # guard.flush(Duration::from_secs(5))?;
/// # assert_eq!(exporter.spans().len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The monotonic time at offset zero.
    start: Instant,
    /// The wall-clock time at offset zero.
    start_wall: SystemTime,
    /// How far the clock was advanced; sleepers watch it.
    offset: watch::Sender<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock reading the system's time now, standing still until
    /// advanced.
    pub fn new() -> Self {
        ManualClock {
            inner: Arc::new(Inner {
                start: Instant::now(),
                start_wall: SystemTime::now(),
                offset: watch::Sender::new(Duration::ZERO),
            }),
        }
    }

    /// Moves the clock forward by `by`, waking every timer it passes.
    pub fn advance(&self, by: Duration) {
        self.inner.offset.send_modify(|offset| *offset += by);
    }

    /// How far the clock has been advanced since it was made.
    pub fn elapsed(&self) -> Duration {
        *self.inner.offset.borrow()
    }

    fn now(&self) -> Instant {
        self.inner.start + self.elapsed()
    }

    fn wall(&self) -> SystemTime {
        self.inner.start_wall + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_wakes_its_sleepers() {
        let manual = ManualClock::new();
        let clock = Clock::Manual(manual.clone());
        let (t0, w0) = (clock.now(), clock.wall());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!((clock.now(), clock.wall()), (t0, w0));

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sleep = clock.sleep_until(t0 + Duration::from_secs(30));
        let advancer = std::thread::spawn(move || {
            manual.advance(Duration::from_secs(10));
            manual.advance(Duration::from_secs(20));
        });
        runtime.block_on(sleep);
        advancer.join().unwrap();
        assert_eq!(clock.now(), t0 + Duration::from_secs(30));
        assert_eq!(clock.wall(), w0 + Duration::from_secs(30));
        assert_eq!(clock.instant_of(w0), clock.now(), "the past is now");
        assert_eq!(clock.wall_of(t0), None, "the past has no lease");
        assert_eq!(
            clock.wall_of(clock.now() + Duration::from_secs(5)),
            Some(clock.wall() + Duration::from_secs(5))
        );
        assert_eq!(
            clock.instant_of(clock.wall() + Duration::from_secs(5)),
            clock.now() + Duration::from_secs(5)
        );
    }
}
