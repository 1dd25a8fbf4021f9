//! The pipeline from the layer to the sinks: a finished record goes from
//! `on_close` into the bounded [`Queue`] ([`Queue::send`], never blocking)
//! as a [`Queued`] record, its times still raw counter readings; the worker
//! thread ([`worker`]) takes it off in batches, converts its times
//! ([`TickClock`]) and hands each batch to the [`Sink`], and the emptied
//! records come back through the [`RecordPool`] for the application threads
//! to reuse. The
//! [`ExporterGuard`] flushes and stops the worker; [`ExporterStats`] counts
//! where every item is.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_queue::ArrayQueue;

use tokio::sync::Notify;

use crate::diag;
use crate::record::{EventData, Record, SpanData, SpanKind};

mod clock;
mod guard;
mod pool;
mod sink;
mod stats;
mod ticks;
mod worker;

pub(crate) use crate::aligned::CacheAligned;
pub use clock::ManualClock;
pub(crate) use clock::{Clock, Sleep};
pub(crate) use guard::Control;
pub use guard::ExporterGuard;
pub(crate) use pool::RecordPool;
pub(crate) use sink::Sink;
pub use stats::ExporterStats;
pub(crate) use stats::{add, items_of, Counters, Ledger};
pub(crate) use ticks::{TickClock, Ticks};
pub(crate) use worker::{spawn_worker, WorkerConfig};

/// A finished record as the layer hands it over: its times are counter
/// readings, which the worker turns into the record's `SystemTime`s
/// ([`into_record`](Self::into_record)) before any sink sees it.
pub(crate) enum Queued {
    /// A closed span: `start_time` and `end_time` to be, and what its
    /// `kind` and `same_process_as_parent_span` are derived from.
    Span {
        record: Box<SpanData>,
        start: Ticks,
        end: Ticks,
        /// `otel.kind`, if given.
        kind: Option<SpanKind>,
        /// Whether its parent is remote.
        remote_parent: bool,
    },
    /// An event: its `timestamp` to be.
    Event { record: Box<EventData>, at: Ticks },
}

impl Queued {
    /// The record, its times converted with `clock`.
    pub(crate) fn into_record(self, clock: &TickClock) -> Record {
        match self {
            Queued::Span {
                mut record,
                start,
                end,
                kind,
                remote_parent,
            } => {
                record.start_time = clock.to_system(start);
                record.end_time = clock.to_system(end);
                record.kind = match kind {
                    Some(kind) => kind,
                    None if remote_parent => SpanKind::Server,
                    None => SpanKind::Internal,
                };
                record.same_process_as_parent_span = record.parent_span_id.map(|_| !remote_parent);
                Record::Span(record)
            }
            Queued::Event { mut record, at } => {
                record.timestamp = clock.to_system(at);
                Record::Event(record)
            }
        }
    }

    /// How many telemetry items the record is ([`items_of`]).
    fn items(&self) -> u64 {
        match self {
            Queued::Span { record, .. } => record.items(),
            Queued::Event { .. } => 1,
        }
    }
}

/// The queue between the application threads and the worker, with what
/// both sides share: the counters, the record pool and the clock the
/// records' times are read from.
pub(crate) struct Queue {
    /// The records, bounded (lossy when full).
    ring: ArrayQueue<Queued>,
    /// Set when the worker is gone: what is sent after is dropped, counted.
    closed: AtomicBool,
    /// Records in the queue (not yet taken by the worker). On its own
    /// cache line, like every counter written on each span, so the writes
    /// of one side do not evict the other side's data.
    pending: CacheAligned<AtomicUsize>,
    /// Wake the worker when `pending` reaches this many.
    wake_at: usize,
    pub(crate) notify: Notify,
    pub(crate) counters: Counters,
    warned_full: diag::Once,
    /// Exported records handed back for reuse (see [`RecordPool`]).
    pub(crate) pool: RecordPool,
    /// What the layer reads the records' times from, and the worker
    /// converts them with.
    pub(crate) clock: TickClock,
}

impl Queue {
    pub(crate) fn new(queue_size: usize, batch_size: usize) -> Self {
        Queue {
            ring: ArrayQueue::new(queue_size.max(1)),
            closed: AtomicBool::new(false),
            pending: CacheAligned(AtomicUsize::new(0)),
            wake_at: batch_size,
            notify: Notify::new(),
            counters: Counters::default(),
            warned_full: diag::Once::default(),
            pool: RecordPool::default(),
            clock: TickClock::new(),
        }
    }

    /// Hands a finished record to the worker: never blocks; a full queue
    /// drops the record, counts it, and warns once.
    pub(crate) fn send(&self, record: Queued) {
        let items = record.items();
        if self.closed.load(Ordering::Acquire) {
            add(&self.counters.dropped_after_shutdown, items);
            return;
        }
        // Counted before the push: the worker may take the record (and
        // uncount it) before `push` even returns.
        let pending = self.pending.fetch_add(1, Ordering::AcqRel) + 1;
        match self.ring.push(record) {
            Ok(()) => {
                self.counters.queued.fetch_add(items, Ordering::Relaxed);
                if self.closed.load(Ordering::SeqCst) {
                    // The worker closed the queue meanwhile, and may have
                    // emptied it before this push: nobody else will.
                    self.drain_closed();
                } else if pending == self.wake_at {
                    self.notify.notify_one();
                }
            }
            Err(_) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                self.counters
                    .dropped_queue_full
                    .fetch_add(items, Ordering::Relaxed);
                if self.warned_full.first() {
                    tracing::warn!(
                        target: diag::TARGET,
                        "Exporter.QueueFullDroppingStarted: the export queue is full; \
                         records are being dropped (see ExporterGuard::stats)"
                    );
                }
            }
        }
    }

    /// The next record, for the worker (call [`done`](Self::done) for what
    /// it took).
    pub(crate) fn take(&self) -> Option<Record> {
        Some(self.ring.pop()?.into_record(&self.clock))
    }

    /// The worker took `n` records off the queue.
    pub(crate) fn done(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }

    /// The worker is gone (it stopped, or panicked): what is in the queue
    /// and what is sent from now on is dropped, counted as after shutdown.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.drain_closed();
    }

    /// The shutdown ran out of time: sends from now on are dropped
    /// (counted after shutdown), and the counters freeze with what the
    /// queue and the worker still hold counted as lost
    /// ([`Counters::give_up`]).
    pub(crate) fn give_up(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.counters.give_up();
        self.drain_closed();
    }

    /// Drops what a closed queue holds: counted as dropped after shutdown
    /// instead of queued (or not at all once the counters froze: they
    /// count it as lost).
    #[cold]
    fn drain_closed(&self) {
        let frozen = self.counters.is_frozen();
        while let Some(record) = self.ring.pop() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            if frozen {
                continue;
            }
            let items = record.items();
            self.counters.queued.fetch_sub(items, Ordering::Relaxed);
            add(&self.counters.dropped_after_shutdown, items);
        }
    }
}

thread_local! {
    /// Set on the worker thread: nothing that happens there becomes a
    /// record (the exporter never exports its own activity, such as the
    /// spans and events of hyper and rustls while it sends).
    static ON_EXPORTER_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is the exporter's worker.
#[inline]
pub(crate) fn on_exporter_thread() -> bool {
    ON_EXPORTER_THREAD.with(Cell::get)
}

fn mark_exporter_thread() {
    ON_EXPORTER_THREAD.with(|on| on.set(true));
}

#[cfg(test)]
mod tests;
