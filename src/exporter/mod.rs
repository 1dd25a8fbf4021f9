//! The exporter: the queue between the layer and the worker, the worker
//! thread, the sinks, and the [`ExporterGuard`] that controls them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self as std_mpsc, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{FlushError, ShutdownError};
use crate::layer::IdKeys;
use crate::sampler::{Sampler, SamplingRule};
use crate::span_data::{Record, SpanData};

pub(crate) mod appinsights;
mod in_memory;
pub(crate) mod sink;
mod stdout;
pub(crate) mod transport;
mod worker;

pub use in_memory::{InMemoryExporter, DEFAULT_IN_MEMORY_CAPACITY};
pub(crate) use worker::{spawn_worker, WorkerConfig};

/// State shared by the layer (application threads) and the worker.
pub(crate) struct Shared {
    pub(crate) sampler: Sampler,
    pub(crate) rule: SamplingRule,
    pub(crate) id_keys: IdKeys,
    tx: SyncSender<Record>,
    /// Records queued and not yet exported or failed.
    pending: AtomicUsize,
    /// Wake the worker when `pending` reaches this many.
    wake_at: usize,
    pub(crate) notify: Notify,
    pub(crate) counters: Counters,
    warned_queue_full: AtomicBool,
    /// Sampled spans alive (a `SpanState` exists). While it is zero no
    /// span can have a sampled parent, be closed with a record, or hold an
    /// event, so the unsampled path skips every registry lookup.
    pub(crate) live_sampled: AtomicUsize,
    /// Exported records handed back for reuse (see [`RecordPool`]).
    pub(crate) pool: RecordPool,
}

/// Records the worker has exported, emptied and handed back, so the
/// application threads reuse their allocations instead of allocating anew.
///
/// A producer/consumer pattern (allocated on the application thread, freed on
/// the worker) defeats the per-thread caches of common allocators; recycling
/// turns three allocations per sampled span into none. Bounded: at most
/// [`RecordPool::CAPACITY`] records are kept.
#[derive(Default)]
pub(crate) struct RecordPool {
    // Boxes on purpose: the records are handed out boxed and moved as one
    // pointer through the queue; unboxing here would copy them twice.
    #[allow(clippy::vec_box)]
    free: std::sync::Mutex<Vec<Box<SpanData>>>,
}

impl RecordPool {
    /// At most this many records are kept (about 1 MiB at the worst).
    pub(crate) const CAPACITY: usize = 1024;

    /// A recycled record, if one is at hand without waiting.
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<SpanData>> {
        self.free.try_lock().ok()?.pop()
    }

    /// Keeps the spans of an exported batch for reuse, up to the capacity.
    pub(crate) fn give(&self, batch: &mut Vec<Record>) {
        let Ok(mut free) = self.free.lock() else {
            return;
        };
        for record in batch.drain(..) {
            if free.len() >= Self::CAPACITY {
                break;
            }
            if let Record::Span(mut span) = record {
                span.clear_for_reuse();
                free.push(span);
            }
        }
    }
}

/// The raw counters behind [`ExporterStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) queued: AtomicU64,
    pub(crate) exported: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_after_shutdown: AtomicU64,
    pub(crate) dropped_export_failed: AtomicU64,
    pub(crate) batches: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        sampler: Sampler,
        queue_size: usize,
        batch_size: usize,
    ) -> (Self, std_mpsc::Receiver<Record>) {
        let (tx, rx) = std_mpsc::sync_channel(queue_size);
        let shared = Shared {
            sampler,
            rule: sampler.rule(),
            id_keys: IdKeys::random(),
            tx,
            pending: AtomicUsize::new(0),
            wake_at: batch_size,
            notify: Notify::new(),
            counters: Counters::default(),
            warned_queue_full: AtomicBool::new(false),
            live_sampled: AtomicUsize::new(0),
            pool: RecordPool::default(),
        };
        (shared, rx)
    }

    /// Whether no sampled span is alive. A span is created (and counted)
    /// before anything can close it or record into it, on any thread, so a
    /// zero seen here means the span at hand is not sampled.
    #[inline]
    pub(crate) fn no_sampled_span_alive(&self) -> bool {
        self.live_sampled.load(Ordering::Acquire) == 0
    }

    /// Hands a finished record to the worker: never blocks; a full queue
    /// drops the record, counts it, and warns once.
    pub(crate) fn send(&self, record: Record) {
        match self.tx.try_send(record) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                if self.pending.fetch_add(1, Ordering::AcqRel) + 1 == self.wake_at {
                    self.notify.notify_one();
                }
            }
            Err(TrySendError::Full(_)) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                if !self.warned_queue_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "tracing_appinsights",
                        "Exporter.QueueFullDroppingStarted: the export queue is full; \
                         records are being dropped (see ExporterGuard::stats)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters
                    .dropped_after_shutdown
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The worker finished with `n` records (exported or failed).
    pub(crate) fn done(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }

    pub(crate) fn stats(&self) -> ExporterStats {
        let c = &self.counters;
        ExporterStats {
            queued: c.queued.load(Ordering::Relaxed),
            exported: c.exported.load(Ordering::Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            dropped_after_shutdown: c.dropped_after_shutdown.load(Ordering::Relaxed),
            dropped_export_failed: c.dropped_export_failed.load(Ordering::Relaxed),
            in_queue: self.pending.load(Ordering::Relaxed) as u64,
            batches: c.batches.load(Ordering::Relaxed),
        }
    }
}

/// Counters of what happened to the records the layer produced.
///
/// Every record (a finished span, or an event outside any span) that passed
/// sampling is counted once in `queued` or in one of the `dropped_*`
/// counters; every queued record is later `exported`, counted in
/// `dropped_export_failed`, or still `in_queue`.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), tracing_appinsights::BuildError> {
/// let (_layer, guard) = tracing_appinsights::Builder::new()
///     .with_in_memory_exporter(tracing_appinsights::InMemoryExporter::new())
///     .build::<tracing_subscriber::Registry>()?;
/// let stats = guard.stats();
/// assert_eq!(stats.queued, 0);
/// assert_eq!(stats.dropped_queue_full, 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExporterStats {
    /// Records accepted into the export queue.
    pub queued: u64,
    /// Records the sink took: printed to stdout, stored in memory, or
    /// accepted by the ingestion service.
    pub exported: u64,
    /// Records dropped because the queue was full (the application produced
    /// them faster than they could be exported).
    pub dropped_queue_full: u64,
    /// Records produced after the exporter shut down.
    pub dropped_after_shutdown: u64,
    /// Records the sink failed to export (for example, rejected by the
    /// service).
    pub dropped_export_failed: u64,
    /// Records queued and not yet exported or failed, right now.
    pub in_queue: u64,
    /// Batches handed to the sink.
    pub batches: u64,
}

/// Commands from the guard to the worker.
pub(crate) enum Control {
    /// Export everything queued, then reply; give up at the deadline.
    Flush {
        reply: std_mpsc::SyncSender<()>,
        deadline: std::time::Instant,
    },
    /// Export everything queued, reply and stop; give up at the deadline.
    Shutdown {
        reply: std_mpsc::SyncSender<()>,
        deadline: std::time::Instant,
    },
}

/// Controls the exporter's worker thread: flush, shutdown and statistics.
///
/// Keep it alive as long as the application records spans: dropping it shuts
/// the exporter down (bounded by the shutdown timeout,
/// [`Builder::with_shutdown_timeout`](crate::Builder::with_shutdown_timeout),
/// default 5 s), exporting what is queued. Binding it to `_` drops it at
/// once; bind it to a named variable such as `_guard`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let exporter = tracing_appinsights::InMemoryExporter::new();
/// let (layer, guard) = tracing_appinsights::Builder::new()
///     .with_in_memory_exporter(exporter.clone())
///     .build()?;
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info_span!("work").in_scope(|| {});
/// });
/// guard.flush(Duration::from_secs(5))?;
/// assert_eq!(exporter.spans().len(), 1);
/// guard.shutdown(Duration::from_secs(5))?;
/// # Ok(()) }
/// ```
#[must_use = "dropping the guard shuts the exporter down; bind it to a named variable such as `_guard`"]
pub struct ExporterGuard {
    shared: Arc<Shared>,
    control: tokio::sync::mpsc::UnboundedSender<Control>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    shutdown_timeout: Duration,
    is_shut_down: AtomicBool,
}

impl std::fmt::Debug for ExporterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterGuard")
            .field("stats", &self.stats())
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("is_shut_down", &self.is_shut_down.load(Ordering::Relaxed))
            .finish()
    }
}

impl ExporterGuard {
    pub(crate) fn new(
        shared: Arc<Shared>,
        control: tokio::sync::mpsc::UnboundedSender<Control>,
        thread: JoinHandle<()>,
        shutdown_timeout: Duration,
    ) -> Self {
        ExporterGuard {
            shared,
            control,
            thread: std::sync::Mutex::new(Some(thread)),
            shutdown_timeout,
            is_shut_down: AtomicBool::new(false),
        }
    }

    /// Exports every record queued before the call, and returns when the
    /// sink has taken them or `timeout` has passed.
    ///
    /// It blocks the calling thread for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`FlushError::Timeout`] when the records were not all exported in
    /// time (they stay queued and are exported later);
    /// [`FlushError::ShutDown`] after [`shutdown`](Self::shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        if self.is_shut_down.load(Ordering::Acquire) {
            return Err(FlushError::ShutDown);
        }
        let (reply, done) = std_mpsc::sync_channel(1);
        self.control
            .send(Control::Flush {
                reply,
                deadline: std::time::Instant::now() + timeout,
            })
            .map_err(|_| FlushError::ShutDown)?;
        match done.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(FlushError::Timeout(timeout)),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(FlushError::ShutDown),
        }
    }

    /// Exports what is queued and stops the worker thread, within `timeout`.
    ///
    /// Records produced afterwards are dropped and counted in
    /// [`ExporterStats::dropped_after_shutdown`].
    ///
    /// # Errors
    ///
    /// [`ShutdownError::AlreadyShutDown`] on a second call;
    /// [`ShutdownError::Timeout`] when the worker did not finish in time (it
    /// is left to finish in the background; what it could not export is
    /// lost and the counters say how much).
    pub fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        if self.is_shut_down.swap(true, Ordering::AcqRel) {
            return Err(ShutdownError::AlreadyShutDown);
        }
        let (reply, done) = std_mpsc::sync_channel(1);
        let deadline = std::time::Instant::now() + timeout;
        if self
            .control
            .send(Control::Shutdown { reply, deadline })
            .is_err()
        {
            return Err(ShutdownError::WorkerGone);
        }
        match done.recv_timeout(timeout) {
            Ok(()) => {
                let thread = self.thread.lock().ok().and_then(|mut t| t.take());
                if let Some(thread) = thread {
                    // The worker replied as its last act: this join is short.
                    let _ = thread.join();
                }
                Ok(())
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(ShutdownError::Timeout(timeout)),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(ShutdownError::WorkerGone),
        }
    }

    /// The exporter's counters right now.
    pub fn stats(&self) -> ExporterStats {
        self.shared.stats()
    }
}

impl Drop for ExporterGuard {
    fn drop(&mut self) {
        if !self.is_shut_down.load(Ordering::Acquire) {
            let _ = self.shutdown(self.shutdown_timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tracing_subscriber::prelude::*;

    use super::sink::Sink;
    use crate::span_data::Record;
    use crate::Builder;

    /// Counts what reaches the subscriber, whichever thread it comes from.
    #[derive(Clone, Default)]
    struct Seen(Arc<AtomicUsize>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() == "noisy_sink" {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// A sink that itself emits `tracing` spans and events (as hyper and
    /// rustls do while exporting) produces no record of them (design §8),
    /// while the user's other layers still see them.
    #[test]
    fn the_exporter_never_records_its_own_activity() {
        let names = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink_names = Arc::clone(&names);
        let sink = Sink::Callback(Box::new(move |batch: &[Record]| {
            for record in batch {
                let _span = tracing::info_span!(target: "noisy_sink", "sink.export").entered();
                tracing::info!(target: "noisy_sink", "exporting a record");
                if let Record::Span(span) = record {
                    sink_names.lock().unwrap().push(span.name.to_string());
                }
            }
        }));
        let (layer, guard) = Builder::new()
            .with_export_interval(Duration::from_millis(10))
            .build_with_sink(sink)
            .unwrap();
        let seen = Seen::default();
        // The worker thread only sees the global default subscriber.
        tracing_subscriber::registry()
            .with(layer)
            .with(seen.clone())
            .try_init()
            .expect("no other test sets the global subscriber");

        // Spans of this crate's own target are ignored: use the app's.
        tracing::info_span!(target: "app", "app").in_scope(|| {});
        // Several export rounds: any self-recorded span would come back.
        for _ in 0..5 {
            guard.flush(Duration::from_secs(5)).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        guard.shutdown(Duration::from_secs(5)).unwrap();

        assert_eq!(*names.lock().unwrap(), ["app"]);
        assert!(
            seen.0.load(Ordering::SeqCst) >= 1,
            "fmt-like layers still see the sink's events"
        );
        assert_eq!(guard.stats().queued, 1);
    }

    /// Dropping the guard returns within its timeout even when the sink
    /// never finishes.
    #[test]
    fn guard_drop_returns_within_its_timeout_when_the_sink_hangs() {
        let sink = Sink::Callback(Box::new(|_: &[Record]| {
            std::thread::sleep(Duration::from_secs(30));
        }));
        let (layer, guard) = Builder::new()
            .with_shutdown_timeout(Duration::from_millis(200))
            .build_with_sink(sink)
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!(target: "app", "stuck").in_scope(|| {});
        });
        let started = Instant::now();
        drop(guard);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
