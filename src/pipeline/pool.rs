//! Recycling of exported records: the worker hands emptied records back,
//! and application threads take them from a per-thread stash.

use std::sync::Mutex;

use crate::record::{EventData, Record, SpanData};

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
    free: Mutex<Vec<Box<SpanData>>>,
    /// Emptied event records (their attribute vectors with them), for the
    /// next events.
    #[allow(clippy::vec_box)]
    events: Mutex<Vec<Box<EventData>>>,
}

impl RecordPool {
    /// At most this many records are kept (about 4 MiB at the worst): deep
    /// enough for the records in flight while the worker catches up with a
    /// burst.
    pub(crate) const CAPACITY: usize = 4096;

    /// How many records (and attribute vectors) a thread takes from the
    /// pool at once into its own stash: one lock for this many spans.
    const STASH_REFILL: usize = 32;

    /// A recycled record, if one is at hand without waiting: from this
    /// thread's stash, refilled from the pool when it runs dry.
    #[inline]
    pub(crate) fn take(&self) -> Option<Box<SpanData>> {
        take_stashed(&self.free, |stash| &mut stash.records)
    }

    /// A recycled, empty event record, if one is at hand without waiting
    /// (as [`take`](Self::take)).
    #[inline]
    pub(crate) fn take_event(&self) -> Option<Box<EventData>> {
        take_stashed(&self.events, |stash| &mut stash.events)
    }

    /// Keeps the span and event records of an exported batch for reuse, up
    /// to the capacity.
    pub(crate) fn give(&self, batch: &mut Vec<Record>) {
        let mut spans = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        for record in batch.drain(..) {
            match record {
                Record::Span(mut span) => {
                    // The events the stdout and in-memory sinks put back
                    // into their span: boxed anew here (on the worker), so
                    // their attribute vectors are reused.
                    for annotation in span.annotations.drain(..) {
                        let mut attributes = annotation.attributes;
                        attributes.clear();
                        events.push(Box::new(EventData::blank(attributes)));
                    }
                    span.clear_for_reuse();
                    spans.push(span);
                }
                Record::Event(mut event) => {
                    event.clear_for_reuse();
                    events.push(event);
                }
            }
        }
        if let Ok(mut free) = self.free.lock() {
            let room = Self::CAPACITY.saturating_sub(free.len());
            free.extend(spans.into_iter().take(room));
        }
        if let Ok(mut free) = self.events.lock() {
            let room = Self::CAPACITY.saturating_sub(free.len());
            free.extend(events.into_iter().take(room));
        }
    }
}

/// One item from this thread's stash (the part `pick` names), refilled
/// from `pool` when it runs dry; `None` when both are empty, the pool's lock
/// is busy, or the thread's stash is gone (thread exit) or in use.
#[inline]
fn take_stashed<T>(pool: &Mutex<Vec<T>>, pick: fn(&mut Stash) -> &mut Vec<T>) -> Option<T> {
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
fn refill<T>(pool: &Mutex<Vec<T>>, stash: &mut Vec<T>) {
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
    #[allow(clippy::vec_box)]
    events: Vec<Box<EventData>>,
}

thread_local! {
    static STASH: std::cell::RefCell<Stash> = const {
        std::cell::RefCell::new(Stash {
            records: Vec::new(),
            events: Vec::new(),
        })
    };
}
