//! The counters behind [`ExporterStats`], written by the application
//! threads (queued, dropped before the queue) and by the worker (everything
//! after), and read as one consistent snapshot.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use std::sync::{Arc, OnceLock};

use super::Queue;
use crate::aligned::CacheAligned;
use crate::record::Record;

/// The raw counters behind [`ExporterStats`], in telemetry items (see
/// [`items_of`]).
#[derive(Default)]
pub(crate) struct Counters {
    /// Odd while the worker is in the middle of a step (see
    /// [`Counters::snapshot`]); only the worker writes it.
    epoch: AtomicU64,
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
    pub(crate) dropped_storage_unavailable: AtomicU64,
    pub(crate) dropped_corrupt: AtomicU64,
    pub(crate) dropped_annotations: AtomicU64,
    pub(crate) dropped_at_shutdown: AtomicU64,
    pub(crate) dropped_by_processor: AtomicU64,
    pub(crate) processor_panics: AtomicU64,
    /// The counters as the shutdown left them when its time ran out (see
    /// [`Counters::give_up`]); the worker's later work is not counted.
    frozen: OnceLock<ExporterStats>,
    pub(crate) dropped_attributes: AtomicU64,
    pub(crate) dropped_links: AtomicU64,
    pub(crate) dropped_message_events: AtomicU64,
    pub(crate) table_overflows: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

impl Counters {
    /// The worker starts a step: until [`end_step`](Self::end_step), its
    /// counters may not add up.
    #[inline]
    pub(crate) fn begin_step(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// The worker finished a step: its counters add up again.
    #[inline]
    pub(crate) fn end_step(&self) {
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// The counters as [`ExporterStats`], read between two steps of the
    /// worker, so that they balance (a sequence lock: the worker never
    /// waits for a reader). Never blocks: when the worker stays in one
    /// step for longer than a few thousand tries (stuck on a disk), the
    /// last reading is returned as it is.
    pub(crate) fn snapshot(&self) -> ExporterStats {
        const TRIES: u32 = 10_000;
        if let Some(frozen) = self.frozen.get() {
            // Only records sent after the shutdown still count.
            return ExporterStats {
                dropped_after_shutdown: self.dropped_after_shutdown.load(Ordering::Relaxed),
                ..*frozen
            };
        }
        let mut stats = self.read();
        for _ in 0..TRIES {
            let before = self.epoch.load(Ordering::Acquire);
            if before % 2 == 0 {
                stats = self.read();
                fence(Ordering::Acquire);
                if self.epoch.load(Ordering::Relaxed) == before {
                    return stats;
                }
            }
            std::hint::spin_loop();
            std::thread::yield_now();
        }
        stats
    }

    fn read(&self) -> ExporterStats {
        // Where items end up is read before where they come from (each item
        // is counted at its source before its destination), so that a
        // reading taken in the middle of a step never shows more settled
        // than came in (see `give_up`).
        let load = |a: &AtomicU64| a.load(Ordering::Acquire);
        let in_memory = load(&self.in_memory);
        let exported = load(&self.exported);
        let stored = load(&self.stored);
        let dropped_rejected = load(&self.dropped_rejected);
        let dropped_too_old = load(&self.dropped_too_old);
        let dropped_storage_full = load(&self.dropped_storage_full);
        let dropped_storage_unavailable = load(&self.dropped_storage_unavailable);
        let dropped_corrupt = load(&self.dropped_corrupt);
        let dropped_annotations = load(&self.dropped_annotations);
        let dropped_at_shutdown = load(&self.dropped_at_shutdown);
        let dropped_by_processor = load(&self.dropped_by_processor);
        let read_back = load(&self.read_back);
        // Taken before queued: `in_queue` never goes negative.
        let taken = load(&self.taken);
        let queued = load(&self.queued);
        ExporterStats {
            queued,
            in_queue: queued.saturating_sub(taken),
            in_memory,
            exported,
            retried: load(&self.retried),
            stored,
            read_back,
            dropped_queue_full: load(&self.dropped_queue_full),
            dropped_after_shutdown: load(&self.dropped_after_shutdown),
            dropped_rejected,
            dropped_too_old,
            dropped_storage_full,
            dropped_storage_unavailable,
            dropped_corrupt,
            dropped_annotations,
            dropped_at_shutdown,
            dropped_by_processor,
            processor_panics: load(&self.processor_panics),
            dropped_attributes: load(&self.dropped_attributes),
            dropped_links: load(&self.dropped_links),
            dropped_message_events: load(&self.dropped_message_events),
            table_overflows: load(&self.table_overflows),
            batches: load(&self.batches),
            requests: load(&self.requests),
            timeouts: load(&self.timeouts),
        }
    }

    /// The shutdown's time ran out with the worker still at work (a disk,
    /// a resolver or a sink that does not answer): from now on
    /// [`snapshot`](Self::snapshot) shows the counters as they are now,
    /// with everything not yet exported, stored or dropped counted as
    /// [`ExporterStats::dropped_at_shutdown`], so they balance whatever the
    /// worker still does in the background.
    pub(crate) fn give_up(&self) {
        // A reading between two steps when there is one; else the last,
        // which is consistent where it matters: nothing settled uncounted.
        let mut stats = self.snapshot();
        let settled = stats.exported + stats.stored + stats.dropped();
        let lost = (stats.queued + stats.read_back).saturating_sub(settled);
        stats.dropped_at_shutdown += lost;
        stats.in_queue = 0;
        stats.in_memory = 0;
        // A record the worker took and settled before its sender counted
        // it as queued (that thread was in `Queue::send` just now) was
        // queued all the same.
        let settled = stats.exported + stats.stored + stats.dropped();
        stats.queued = stats.queued.max(settled.saturating_sub(stats.read_back));
        let _ = self.frozen.set(stats);
    }

    /// Whether [`give_up`](Self::give_up) froze the counters.
    pub(crate) fn is_frozen(&self) -> bool {
        self.frozen.get().is_some()
    }
}

/// A sink's handle on the counters: what it exported, stored, dropped.
#[derive(Clone)]
pub(crate) struct Ledger(Arc<Queue>);

impl Ledger {
    pub(crate) fn new(queue: Arc<Queue>) -> Self {
        Ledger(queue)
    }

    /// A ledger of its own, for a sink's unit tests.
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        Ledger(Arc::new(Queue::new(1, 1)))
    }

    /// The counters right now.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> ExporterStats {
        self.read()
    }
}

impl std::ops::Deref for Ledger {
    type Target = Counters;

    fn deref(&self) -> &Counters {
        &self.0.counters
    }
}

impl Counters {
    /// Counts the parts the records of a batch lost at their bounds
    /// (attributes, links, message events), as the worker takes it.
    pub(crate) fn count_cuts(&self, batch: &[Record]) {
        let (mut attributes, mut links, mut message_events) = (0u64, 0u64, 0u64);
        for record in batch {
            match record {
                Record::Span(span) => {
                    attributes += u64::from(span.attributes.dropped());
                    attributes += span
                        .annotations
                        .iter()
                        .map(|a| u64::from(a.attributes.dropped()))
                        .sum::<u64>();
                    links += u64::from(span.dropped_links);
                    message_events += u64::from(span.dropped_message_events);
                }
                Record::Event(event) => attributes += u64::from(event.attributes.dropped()),
            }
        }
        add(&self.dropped_attributes, attributes);
        add(&self.dropped_links, links);
        add(&self.dropped_message_events, message_events);
    }
}

/// Adds `n` to a counter.
#[inline]
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// How many telemetry items a record becomes: an event is one item (a
/// Message or an Exception); a span is one item (a Request or a
/// RemoteDependency), plus one per annotation, should a record built by
/// hand carry any (the layer sends events as records of their own).
///
/// The counters of [`ExporterStats`] are in items, because the service
/// accepts, rejects and retries items, and storage holds items: only in
/// items can every one be in exactly one place.
#[inline]
pub(crate) fn items_of(record: &Record) -> u64 {
    match record {
        Record::Span(span) => span.items(),
        Record::Event(_) => 1,
    }
}

/// What became of the telemetry the layer produced, counted in telemetry
/// items.
///
/// An item is what the service counts: a span is one item (a request or a
/// dependency) and an event is one item (a trace message or an exception),
/// inside a span or not. The stdout and in-memory sinks show a span's
/// events inside its record: there, an event is exported with its span.
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
///   [`dropped_storage_unavailable`](Self::dropped_storage_unavailable),
///   [`dropped_corrupt`](Self::dropped_corrupt),
///   [`dropped_annotations`](Self::dropped_annotations),
///   [`dropped_at_shutdown`](Self::dropped_at_shutdown),
///   [`dropped_by_processor`](Self::dropped_by_processor).
///
/// Items read back from storage (written by this run or an earlier one,
/// or by another process sharing the directory) come back in through
/// [`read_back`](Self::read_back) and leave again as exported, dropped or
/// stored. [`ExporterGuard::stats`](crate::ExporterGuard::stats) reads the
/// counters between two steps of the worker, so, unless an application
/// thread is handing a record to the queue at that very moment:
///
/// ```text
/// queued + read_back == in_queue + in_memory + exported + stored
///                       + dropped_rejected + dropped_too_old
///                       + dropped_storage_full + dropped_storage_unavailable
///                       + dropped_corrupt + dropped_annotations
///                       + dropped_at_shutdown + dropped_by_processor
/// ```
///
/// and `stored - read_back` is what this exporter left in storage, when it
/// is the directory's only user. [`retried`](Self::retried) counts
/// resends, not items: an item sent three times is counted twice there and
/// once wherever it ends up.
///
/// [`dropped_attributes`](Self::dropped_attributes),
/// [`dropped_links`](Self::dropped_links) and
/// [`dropped_message_events`](Self::dropped_message_events) count parts of
/// items cut at the record's bounds (the `MAX_*` constants of
/// [`record`](crate::record)), not items: they are outside the balance.
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
    /// to stdout, or kept by an [`InMemoryExporter`](crate::InMemoryExporter)). Includes items read
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
    /// Items that could not be kept because offline storage was full: their
    /// retries ran out, memory for retries was full, or the shutdown's
    /// deadline came, and storage held
    /// [`with_storage_max_size`](crate::Builder::with_storage_max_size)
    /// already. Also the items of a stored blob larger than that whole
    /// size, deleted.
    pub dropped_storage_full: u64,
    /// Items that could not be kept because there was no usable offline
    /// storage: as for [`dropped_storage_full`](Self::dropped_storage_full),
    /// but storage was turned off
    /// ([`with_offline_storage(false)`](crate::Builder::with_offline_storage)),
    /// or its directory could not be used (not creatable, read-only, out of
    /// space, not ours, a symbolic link, writable by other users; reported
    /// as `Storage.Unavailable`).
    pub dropped_storage_unavailable: u64,
    /// Lines of stored blobs that were not telemetry items (a damaged
    /// blob), deleted.
    pub dropped_corrupt: u64,
    /// Events not shown by the stdout or in-memory sink because their span
    /// already held [`MAX_ANNOTATIONS`](crate::record::MAX_ANNOTATIONS)
    /// (the oldest go, as `SpanData::dropped_annotations` says). Always 0
    /// with Application Insights, where every event is an item of its own.
    pub dropped_annotations: u64,
    /// Items still in the queue, in memory or being written when
    /// [`ExporterGuard::shutdown`](crate::ExporterGuard::shutdown) (or the
    /// guard's drop) ran out of time: lost. From then on the counters no
    /// longer change, but for
    /// [`dropped_after_shutdown`](Self::dropped_after_shutdown).
    pub dropped_at_shutdown: u64,
    /// Items a telemetry processor
    /// ([`Builder::with_processor`](crate::Builder::with_processor))
    /// dropped, by returning `false` or by panicking: never sent, retried
    /// or stored.
    pub dropped_by_processor: u64,
    /// Times a telemetry processor panicked (each time, the item it was
    /// given is dropped and counted in
    /// [`dropped_by_processor`](Self::dropped_by_processor)). Not items.
    pub processor_panics: u64,
    /// Attributes evicted past [`MAX_ATTRIBUTES`](crate::record::MAX_ATTRIBUTES)
    /// on spans and events (parts of items, outside the balance).
    pub dropped_attributes: u64,
    /// Links (`follows_from`) dropped past [`MAX_LINKS`](crate::record::MAX_LINKS)
    /// (parts of items, outside the balance).
    pub dropped_links: u64,
    /// Message events dropped past
    /// [`MAX_MESSAGE_EVENTS`](crate::record::MAX_MESSAGE_EVENTS) (parts of
    /// items, outside the balance).
    pub dropped_message_events: u64,
    /// Sampled spans whose state did not fit the layer's table (too many
    /// alive in one bucket) and was kept in the registry's extensions
    /// instead: slower, never lost; and likewise unsampled spans counted
    /// for Live Metrics while someone watches. Not items.
    pub table_overflows: u64,
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
    /// The items the worker dropped: rejected, too old, storage full or
    /// unavailable, corrupt, past a span's annotation bound, lost at a
    /// shutdown that ran out of time, and dropped by a processor (not those
    /// dropped before the queue).
    pub fn dropped(&self) -> u64 {
        self.dropped_rejected
            + self.dropped_too_old
            + self.dropped_storage_full
            + self.dropped_storage_unavailable
            + self.dropped_corrupt
            + self.dropped_annotations
            + self.dropped_at_shutdown
            + self.dropped_by_processor
    }

    /// Whether every item is accounted for: `queued + read_back` equals
    /// `in_queue + in_memory + exported + stored + dropped()`. True for
    /// every [`ExporterGuard::stats`](crate::ExporterGuard::stats) taken
    /// while no application thread is handing a record to the queue (the
    /// worker's steps are never seen half done).
    pub fn balances(&self) -> bool {
        self.queued + self.read_back
            == self.in_queue + self.in_memory + self.exported + self.stored + self.dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AttributeValue, Attributes, EventData, MAX_ATTRIBUTES};

    #[test]
    fn attributes_cut_at_the_bound_are_counted_when_the_worker_takes_them() {
        // Keys are `&'static str` (field names): leak a few, for the test.
        let keys = (0..MAX_ATTRIBUTES + 3).map(|i| &*format!("k{i}").leak());
        let mut attributes = Attributes::new();
        for key in keys {
            attributes.insert(key, AttributeValue::U64(1));
        }
        assert_eq!(attributes.dropped(), 3);
        let event = EventData {
            timestamp: std::time::SystemTime::UNIX_EPOCH,
            level: tracing_core::Level::INFO,
            target: "t",
            message: Default::default(),
            attributes,
            span: None,
            sample_rate: None,
        };
        let ledger = Ledger::detached();
        ledger.count_cuts(&[Record::Event(Box::new(event))]);
        let stats = ledger.stats();
        assert_eq!(stats.dropped_attributes, 3);
        assert_eq!(stats.dropped(), 0, "parts of items, outside the balance");
    }
}
