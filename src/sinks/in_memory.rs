//! [`InMemoryExporter`]: keeps records in memory, for tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::record::{EventData, Record, SpanData};

/// A sink that keeps finished records in memory instead of sending them, so
/// an application's tests can assert on what its instrumentation produces.
///
/// It is a cheap handle: clone it, give one clone to
/// [`Builder::with_in_memory_exporter`](crate::Builder::with_in_memory_exporter),
/// and read through the other. Memory is bounded: past the capacity the
/// oldest records are discarded and counted in [`dropped`](Self::dropped).
/// A capacity of 0 keeps nothing (a sink that discards, as the benchmarks
/// use).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tracing_appinsights::{Builder, InMemoryExporter};
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let exporter = InMemoryExporter::new();
/// let (layer, guard) = Builder::new()
///     .with_in_memory_exporter(exporter.clone())
///     .build()?;
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     let _span = tracing::info_span!("checkout", order = 42_u64).entered();
///     tracing::info!("paid");
/// });
/// guard.flush(Duration::from_secs(5))?;
/// let spans = exporter.spans();
/// assert_eq!(spans[0].name, "checkout");
/// assert_eq!(spans[0].annotations[0].description, "paid");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct InMemoryExporter {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    spans: VecDeque<SpanData>,
    events: VecDeque<EventData>,
    dropped: u64,
}

impl InMemoryExporter {
    /// How many records [`new`](Self::new) keeps at most.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// An exporter keeping at most [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY)
    /// records.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An exporter keeping at most `capacity` spans and `capacity` events.
    pub fn with_capacity(capacity: usize) -> Self {
        InMemoryExporter {
            inner: Arc::new(Mutex::new(Inner {
                capacity,
                spans: VecDeque::new(),
                events: VecDeque::new(),
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the queues invalid.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The finished spans kept so far, oldest first.
    pub fn spans(&self) -> Vec<SpanData> {
        self.lock().spans.iter().cloned().collect()
    }

    /// The events recorded outside any span kept so far, oldest first.
    pub fn events(&self) -> Vec<EventData> {
        self.lock().events.iter().cloned().collect()
    }

    /// Forgets every record kept so far.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.spans.clear();
        inner.events.clear();
    }

    /// How many records were discarded past the capacity.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Takes the records it keeps out of `batch`; with a capacity of 0 it
    /// keeps nothing and leaves them to be recycled.
    /// How many spans (and events) it keeps at most.
    pub(crate) fn capacity(&self) -> usize {
        self.lock().capacity
    }

    pub(crate) fn export(&self, batch: &mut Vec<Record>) {
        let mut inner = self.lock();
        let capacity = inner.capacity;
        if capacity == 0 {
            inner.dropped += batch.len() as u64;
            return;
        }
        for record in batch.drain(..) {
            let dropped = match record {
                Record::Span(span) => push_capped(&mut inner.spans, *span, capacity),
                Record::Event(event) => push_capped(&mut inner.events, *event, capacity),
            };
            inner.dropped += dropped;
        }
    }
}

fn push_capped<T>(queue: &mut VecDeque<T>, item: T, capacity: usize) -> u64 {
    if capacity == 0 {
        return 1;
    }
    let mut dropped = 0;
    if queue.len() >= capacity {
        queue.pop_front();
        dropped = 1;
    }
    queue.push_back(item);
    dropped
}

impl Default for InMemoryExporter {
    fn default() -> Self {
        Self::new()
    }
}
