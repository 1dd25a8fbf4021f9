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
use crate::live_set::LiveSampled;
use crate::sampler::{Sampler, SamplingRule};
use crate::span_data::{Record, SpanData};

pub(crate) mod appinsights;
mod in_memory;
pub(crate) mod retry;
pub(crate) mod sink;
mod stdout;
pub(crate) mod storage;
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
    /// Records in the queue (not yet taken by the worker). On its own
    /// cache line, like every counter written on each span, so the writes
    /// of one side do not evict the other side's data.
    pending: CacheAligned<AtomicUsize>,
    /// Wake the worker when `pending` reaches this many.
    wake_at: usize,
    pub(crate) notify: Notify,
    pub(crate) counters: Counters,
    warned_queue_full: AtomicBool,
    /// The sampled spans alive (those with a `SpanState`). While there is
    /// none, no span can have a sampled parent, be closed with a record, or
    /// hold an event, so the unsampled path skips every registry lookup;
    /// while there are some, it tells an unsampled span from a sampled one
    /// without a lookup.
    pub(crate) live: LiveSampled,
    /// Exported records handed back for reuse (see [`RecordPool`]).
    pub(crate) pool: RecordPool,
}

/// Records the worker has exported, emptied and handed back, so the
/// application threads reuse their allocations instead of allocating anew.
///
/// A producer/consumer pattern (allocated on the application thread, freed on
/// the worker) defeats the per-thread caches of common allocators and makes
/// both threads contend for the allocator's arena lock; recycling turns the
/// record's box, its attribute and annotation vectors, and each event's
/// attribute vector into reuse. The worker empties records before taking
/// the lock; the application threads only `try_lock`, and allocate when the
/// pool is busy or empty. Bounded: at most [`RecordPool::CAPACITY`] records
/// and as many attribute vectors are kept.
#[derive(Default)]
pub(crate) struct RecordPool {
    // Boxes on purpose: the records are handed out boxed and moved as one
    // pointer through the queue; unboxing here would copy them twice.
    #[allow(clippy::vec_box)]
    free: std::sync::Mutex<Vec<Box<SpanData>>>,
    /// Emptied attribute vectors of events, for the next events.
    attributes: std::sync::Mutex<Vec<crate::span_data::Attributes>>,
}

impl RecordPool {
    /// At most this many records are kept (about 1 MiB at the worst).
    pub(crate) const CAPACITY: usize = 1024;

    /// How many records (and attribute vectors) a thread takes from the
    /// pool at once into its own stash: one lock for this many spans.
    const STASH_REFILL: usize = 32;

    /// A recycled record, if one is at hand without waiting: from this
    /// thread's stash, refilled from the pool when it runs dry.
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<SpanData>> {
        take_stashed(&self.free, |stash| &mut stash.records)
    }

    /// A recycled, empty attribute vector, if one is at hand without
    /// waiting (as [`take`](Self::take)).
    #[inline]
    pub(crate) fn take_attributes(&self) -> Option<crate::span_data::Attributes> {
        take_stashed(&self.attributes, |stash| &mut stash.attributes)
    }

    /// Keeps the spans of an exported batch for reuse, up to the capacity.
    pub(crate) fn give(&self, batch: &mut Vec<Record>) {
        let mut spans = Vec::with_capacity(batch.len());
        let mut attributes = Vec::new();
        for record in batch.drain(..) {
            if let Record::Span(mut span) = record {
                for annotation in span.annotations.drain(..) {
                    let mut attrs = annotation.attributes;
                    attrs.clear();
                    attributes.push(attrs);
                }
                span.clear_for_reuse();
                spans.push(span);
            }
        }
        if let Ok(mut free) = self.free.lock() {
            let room = Self::CAPACITY.saturating_sub(free.len());
            free.extend(spans.into_iter().take(room));
        }
        if let Ok(mut free) = self.attributes.lock() {
            let room = Self::CAPACITY.saturating_sub(free.len());
            free.extend(attributes.into_iter().take(room));
        }
    }
}

/// A value alone on its cache line (64 bytes on the targets that matter),
/// so that writes to it do not slow down readers of its neighbours.
#[repr(align(64))]
#[derive(Default, Debug)]
pub(crate) struct CacheAligned<T>(pub(crate) T);

impl<T> std::ops::Deref for CacheAligned<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One item from this thread's stash (the part `pick` names), refilled
/// from `pool` when it runs dry; `None` when both are empty, the pool's lock
/// is busy, or the thread's stash is gone (thread exit) or in use.
#[inline]
fn take_stashed<T>(
    pool: &std::sync::Mutex<Vec<T>>,
    pick: fn(&mut Stash) -> &mut Vec<T>,
) -> Option<T> {
    STASH
        .try_with(|stash| {
            let mut stash = stash.try_borrow_mut().ok()?;
            let stash = pick(&mut stash);
            if let Some(item) = stash.pop() {
                return Some(item);
            }
            refill(pool, stash);
            stash.pop()
        })
        .ok()
        .flatten()
}

/// Moves up to [`RecordPool::STASH_REFILL`] items from the pool into a
/// thread's stash, if the pool's lock is free.
#[cold]
fn refill<T>(pool: &std::sync::Mutex<Vec<T>>, stash: &mut Vec<T>) {
    if let Ok(mut pool) = pool.try_lock() {
        let at = pool.len().saturating_sub(RecordPool::STASH_REFILL);
        stash.extend(pool.drain(at..));
    }
}

/// A thread's own small supply of recycled records and attribute vectors,
/// so that taking one costs no lock (at most
/// [`RecordPool::STASH_REFILL`] of each; freed with the thread). Records are
/// interchangeable between layers, so one stash serves them all.
struct Stash {
    #[allow(clippy::vec_box)]
    records: Vec<Box<SpanData>>,
    attributes: Vec<crate::span_data::Attributes>,
}

thread_local! {
    static STASH: std::cell::RefCell<Stash> = const {
        std::cell::RefCell::new(Stash {
            records: Vec::new(),
            attributes: Vec::new(),
        })
    };
}

/// The raw counters behind [`ExporterStats`], in telemetry items (see
/// [`items_of`]).
#[derive(Default)]
pub(crate) struct Counters {
    /// Written by the application threads on every span: on its own line.
    pub(crate) queued: CacheAligned<AtomicU64>,
    /// Items the worker took off the queue.
    pub(crate) taken: AtomicU64,
    /// Items of this process in the worker's memory (a gauge).
    pub(crate) in_memory: AtomicU64,
    pub(crate) exported: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) read_back: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_after_shutdown: AtomicU64,
    pub(crate) dropped_rejected: AtomicU64,
    pub(crate) dropped_too_old: AtomicU64,
    pub(crate) dropped_storage_full: AtomicU64,
    pub(crate) dropped_corrupt: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

/// Adds `n` to a counter.
#[inline]
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// How many telemetry items a record becomes: a span is one item (a
/// Request or a RemoteDependency) plus one per event inside it (a Message
/// or an Exception); an event outside spans is one item.
///
/// The counters of [`ExporterStats`] are in items, because the service
/// accepts, rejects and retries items, and storage holds items: only in
/// items can every one be in exactly one place.
#[inline]
pub(crate) fn items_of(record: &Record) -> u64 {
    match record {
        Record::Span(span) => 1 + span.annotations.len() as u64,
        Record::Event(_) => 1,
    }
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
            pending: CacheAligned(AtomicUsize::new(0)),
            wake_at: batch_size,
            notify: Notify::new(),
            counters: Counters::default(),
            warned_queue_full: AtomicBool::new(false),
            live: LiveSampled::default(),
            pool: RecordPool::default(),
        };
        (shared, rx)
    }

    /// Hands a finished record to the worker: never blocks; a full queue
    /// drops the record, counts it, and warns once.
    pub(crate) fn send(&self, record: Record) {
        let items = items_of(&record);
        // Counted before the send: the worker may take the record (and
        // uncount it) before `try_send` even returns.
        let pending = self.pending.fetch_add(1, Ordering::AcqRel) + 1;
        let sent = self.tx.try_send(record);
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
        match sent {
            Ok(()) => {
                self.counters.queued.fetch_add(items, Ordering::Relaxed);
                if pending == self.wake_at {
                    self.notify.notify_one();
                }
            }
            Err(TrySendError::Full(_)) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(items, Ordering::Relaxed);
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
                    .fetch_add(items, Ordering::Relaxed);
            }
        }
    }

    /// The worker took `n` records off the queue.
    pub(crate) fn done(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }

    pub(crate) fn stats(&self) -> ExporterStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Taken before queued: `in_queue` never goes negative.
        let taken = load(&c.taken);
        let queued = load(&c.queued);
        ExporterStats {
            queued,
            in_queue: queued.saturating_sub(taken),
            in_memory: load(&c.in_memory),
            exported: load(&c.exported),
            retried: load(&c.retried),
            stored: load(&c.stored),
            read_back: load(&c.read_back),
            dropped_queue_full: load(&c.dropped_queue_full),
            dropped_after_shutdown: load(&c.dropped_after_shutdown),
            dropped_rejected: load(&c.dropped_rejected),
            dropped_too_old: load(&c.dropped_too_old),
            dropped_storage_full: load(&c.dropped_storage_full),
            dropped_corrupt: load(&c.dropped_corrupt),
            batches: load(&c.batches),
            requests: load(&c.requests),
            timeouts: load(&c.timeouts),
        }
    }
}

/// What became of the telemetry the layer produced, counted in telemetry
/// items.
///
/// An item is what the service counts: a span is one item (a request or a
/// dependency) plus one per event inside it; an event outside spans is one
/// item. A span without events is one item.
///
/// Every item the application produced is, at any moment, in exactly one
/// place:
///
/// * dropped before the queue: [`dropped_queue_full`](Self::dropped_queue_full),
///   [`dropped_after_shutdown`](Self::dropped_after_shutdown);
/// * otherwise [`queued`](Self::queued), and then [`in_queue`](Self::in_queue),
///   [`in_memory`](Self::in_memory) (being sent or waiting for a retry),
///   [`exported`](Self::exported) (accepted by the service),
///   [`stored`](Self::stored) (written to offline storage), or dropped by the
///   worker: [`dropped_rejected`](Self::dropped_rejected),
///   [`dropped_too_old`](Self::dropped_too_old),
///   [`dropped_storage_full`](Self::dropped_storage_full),
///   [`dropped_corrupt`](Self::dropped_corrupt).
///
/// Items read back from storage (written by this run or an earlier one,
/// or by another process sharing the directory) come back in through
/// [`read_back`](Self::read_back) and leave again as exported, dropped or
/// stored. So, whenever the worker is between two steps (always, once a
/// [`flush`](crate::ExporterGuard::flush) or shutdown has returned):
///
/// ```text
/// queued + read_back == in_queue + in_memory + exported + stored
///                       + dropped_rejected + dropped_too_old
///                       + dropped_storage_full + dropped_corrupt
/// ```
///
/// and `stored - read_back` is what this exporter left in storage, when it
/// is the directory's only user. [`retried`](Self::retried) counts
/// resends, not items: an item sent three times is counted twice there and
/// once wherever it ends up.
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
/// assert!(stats.balances());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExporterStats {
    /// Items accepted into the export queue.
    pub queued: u64,
    /// Items in the queue, not yet taken by the worker, right now.
    pub in_queue: u64,
    /// Items the worker holds in memory right now: being sent, or waiting
    /// for their next attempt.
    pub in_memory: u64,
    /// Items the sink took: accepted by the ingestion service (or printed
    /// to stdout, or kept by an [`InMemoryExporter`]). Includes items read
    /// back from storage.
    pub exported: u64,
    /// Item resends after a failure (an item sent three times counts two).
    pub retried: u64,
    /// Items written to offline storage (their retries ran out, memory was
    /// full, or the exporter shut down before they could be sent).
    pub stored: u64,
    /// Items taken back out of offline storage: sent (then counted as
    /// exported, dropped or stored again) or deleted unsent (too old,
    /// corrupt).
    pub read_back: u64,
    /// Items dropped because the queue was full (the application produced
    /// them faster than they could be exported).
    pub dropped_queue_full: u64,
    /// Items produced after the exporter shut down.
    pub dropped_after_shutdown: u64,
    /// Items the service refused for good: a non-retryable status (400,
    /// 402, 404, 413, 439, …) for the batch or the item, an unreadable
    /// partial answer, or too many redirects.
    pub dropped_rejected: u64,
    /// Items deleted from storage unsent because they were older than the
    /// retention ([`Builder::with_storage_retention`](crate::Builder::with_storage_retention),
    /// default 48 hours, the service's own limit).
    pub dropped_too_old: u64,
    /// Items that could not be kept: their retries ran out, or memory for
    /// retries was full, and offline storage was full, unwritable or turned
    /// off.
    pub dropped_storage_full: u64,
    /// Lines of stored blobs that were not telemetry items (a damaged or
    /// foreign file), deleted.
    pub dropped_corrupt: u64,
    /// Batches of records handed to the sink.
    pub batches: u64,
    /// HTTP requests sent to the ingestion endpoint (first sends, retries
    /// and redirects).
    pub requests: u64,
    /// Requests that got no answer within the request timeout (each is
    /// retried; `docs/delivery.md` says which duplicates a timeout can make).
    pub timeouts: u64,
}

impl ExporterStats {
    /// The items the worker dropped: rejected, too old, storage full and
    /// corrupt (not those dropped before the queue).
    pub fn dropped(&self) -> u64 {
        self.dropped_rejected
            + self.dropped_too_old
            + self.dropped_storage_full
            + self.dropped_corrupt
    }

    /// Whether every item is accounted for: `queued + read_back` equals
    /// `in_queue + in_memory + exported + stored + dropped()`. True whenever
    /// the worker is between two steps, so always after a flush or a
    /// shutdown returned (a snapshot taken while it works may be off by
    /// the items it is moving).
    pub fn balances(&self) -> bool {
        self.queued + self.read_back
            == self.in_queue + self.in_memory + self.exported + self.stored + self.dropped()
    }
}

/// Commands from the guard to the worker. The reply says whether
/// everything concerned was settled (accepted, stored or dropped) in time.
pub(crate) enum Control {
    /// Settle everything queued before the command, then reply; by the
    /// deadline, store what is still waiting for a retry.
    Flush {
        reply: std_mpsc::SyncSender<bool>,
        deadline: std::time::Instant,
    },
    /// Settle everything queued, reply and stop; by the deadline, store
    /// what is left.
    Shutdown {
        reply: std_mpsc::SyncSender<bool>,
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

    /// Exports every record queued before the call, and returns when each
    /// of their items was accepted by the service, written to offline
    /// storage, or dropped ([`stats`](Self::stats) says which), or when
    /// `timeout` has passed.
    ///
    /// Items still waiting for a retry near the end of `timeout` are
    /// written to offline storage (and sent from there later), so a flush
    /// against a failing endpoint still settles in time. It blocks the
    /// calling thread for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`FlushError::Timeout`] when not everything was settled in time
    /// (a request is still in flight, or storage is off or unwritable and
    /// items wait in memory for their retry; nothing is lost yet);
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
            Ok(true) => Ok(()),
            Ok(false) | Err(std_mpsc::RecvTimeoutError::Timeout) => {
                Err(FlushError::Timeout(timeout))
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(FlushError::ShutDown),
        }
    }

    /// Exports what is queued and stops the worker thread, within `timeout`.
    ///
    /// The queue is drained and sent with the time left; what is still
    /// unsent near the end of `timeout` (waiting for a retry, or in flight)
    /// is written to offline storage, from where the next run sends it.
    /// With the endpoint down it still returns within `timeout`. Records
    /// produced afterwards are dropped and counted in
    /// [`ExporterStats::dropped_after_shutdown`].
    ///
    /// # Errors
    ///
    /// [`ShutdownError::AlreadyShutDown`] on a second call;
    /// [`ShutdownError::Timeout`] when the worker did not finish in time (a
    /// sink stuck on the worker thread; it is left to finish in the
    /// background). Without storage (turned off or unwritable), what could
    /// not be sent in time is dropped and counted in
    /// [`ExporterStats::dropped_storage_full`]: check [`stats`](Self::stats).
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
            Ok(settled) => {
                let thread = self.thread.lock().ok().and_then(|mut t| t.take());
                if let Some(thread) = thread {
                    // The worker replied as its last act: this join is short.
                    let _ = thread.join();
                }
                if settled {
                    Ok(())
                } else {
                    Err(ShutdownError::Timeout(timeout))
                }
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
                let name = match record {
                    Record::Span(span) => span.name.to_string(),
                    Record::Event(event) => format!("event: {}", event.message),
                };
                sink_names.lock().unwrap().push(name);
            }
        }));
        let (layer, guard) = Builder::new()
            .with_export_interval(Duration::from_millis(10))
            .build_with_sink(sink)
            .unwrap();
        let seen = Seen::default();
        // The worker thread only sees the global default subscriber.
        // Other tests of this binary run in parallel and may log through
        // the global subscriber: let the layer see only this test's
        // targets, the sink's included.
        let ours = tracing_subscriber::filter::filter_fn(|meta| {
            matches!(meta.target(), "self_trace_app" | "noisy_sink")
        });
        tracing_subscriber::registry()
            .with(layer.with_filter(ours))
            .with(seen.clone())
            .try_init()
            .expect("no other test sets the global subscriber");

        // Spans of this crate's own target are ignored: use the app's.
        tracing::info_span!(target: "self_trace_app", "app").in_scope(|| {});
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
