//! [`Assembler`]: puts the events of a span back into its record, for the
//! sinks that show spans in OpenCensus' shape (stdout, in memory).
//!
//! The layer hands every event inside a sampled span to the worker as a
//! record of its own, when it happens (Application Insights makes each an
//! item). The stdout and in-memory sinks show a span with its events as
//! [`SpanData::annotations`](crate::record::SpanData::annotations), bounded
//! by [`MAX_ANNOTATIONS`] as in OpenCensus: the assembler holds a span's
//! newest events until its record arrives, and attaches them. The events
//! past the bound are counted in the record (`dropped_annotations`) and in
//! [`ExporterStats::dropped_annotations`](crate::ExporterStats::dropped_annotations).
//!
//! Memory is bounded: at most [`MAX_HELD_EVENTS`] events are held, at most
//! [`MAX_ANNOTATIONS`] per span. When one more would pass that bound, the
//! span that started holding events first gives its events to the sink as
//! plain [`EventData`] (with their [`EventSpan`](crate::record::EventSpan)),
//! and so do all spans still open when the exporter stops: shown without
//! their span, but shown. Held events count as
//! [`in_memory`](crate::ExporterStats::in_memory).
//!
//! An event sent by one thread just as another closes its span can reach
//! the worker after the span's record; it is then held until one of those
//! releases it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use crate::pipeline::{add, items_of, Ledger};
use crate::record::{EventData, Record, SpanData, SpanId, MAX_ANNOTATIONS};

/// At most this many events are held in the assembler at once.
pub(crate) const MAX_HELD_EVENTS: usize = 65_536;

/// The events of spans not closed yet (see the module docs).
pub(crate) struct Assembler {
    open: HashMap<SpanId, Held>,
    /// The spans in the order they started holding events, with the `seq`
    /// they got (entries of spans gone since are skipped, and compacted).
    order: VecDeque<(u64, SpanId)>,
    next_seq: u64,
    /// Events in `open`.
    held: usize,
    /// After the exporter stopped, events pass straight through.
    stopped: bool,
    /// The records of the batch being assembled.
    out: Vec<Record>,
    ledger: Ledger,
}

/// A span's newest events, oldest first.
struct Held {
    seq: u64,
    events: VecDeque<Box<EventData>>,
    dropped: u32,
}

impl Assembler {
    pub(crate) fn new(ledger: Ledger) -> Self {
        Assembler {
            open: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            held: 0,
            stopped: false,
            out: Vec::new(),
            ledger,
        }
    }

    /// Takes the events inside spans out of `batch` and puts those held
    /// into the records of the spans in it. What is left in `batch` is what
    /// the sink shows now; returns how many items that is.
    pub(crate) fn assemble(&mut self, batch: &mut Vec<Record>) -> u64 {
        for record in batch.drain(..) {
            match record {
                Record::Event(event) if event.span.is_some() && !self.stopped => self.hold(event),
                Record::Event(event) => self.out.push(Record::Event(event)),
                Record::Span(mut span) => {
                    self.attach(&mut span);
                    self.out.push(Record::Span(span));
                }
            }
        }
        batch.append(&mut self.out);
        batch.iter().map(items_of).sum()
    }

    /// Puts the events held for `span` into its annotations.
    fn attach(&mut self, span: &mut SpanData) {
        let Some(held) = self.open.remove(&span.context.span_id) else {
            return;
        };
        let n = held.events.len();
        self.held -= n;
        self.ledger.in_memory.fetch_sub(n as u64, Ordering::Relaxed);
        span.annotations.reserve(n);
        span.annotations
            .extend(held.events.into_iter().map(|e| e.into_annotation()));
        span.dropped_annotations = span.dropped_annotations.saturating_add(held.dropped);
    }

    fn hold(&mut self, event: Box<EventData>) {
        let Some(span_id) = event.span.as_ref().map(|s| s.span_id) else {
            return;
        };
        if let Some(held) = self.open.get_mut(&span_id) {
            if held.events.len() >= MAX_ANNOTATIONS {
                // OpenCensus' bounded list: the oldest goes.
                held.events.pop_front();
                held.events.push_back(event);
                held.dropped = held.dropped.saturating_add(1);
                add(&self.ledger.dropped_annotations, 1);
                return;
            }
        }
        while self.held >= MAX_HELD_EVENTS && self.release_oldest() {}
        let seq = self.next_seq;
        let held = self.open.entry(span_id).or_insert_with(|| Held {
            seq,
            events: VecDeque::new(),
            dropped: 0,
        });
        // A span in `open` holds at least one event: an empty one is new.
        let new = held.events.is_empty();
        held.events.push_back(event);
        self.held += 1;
        add(&self.ledger.in_memory, 1);
        if new {
            self.next_seq += 1;
            self.order.push_back((seq, span_id));
            if self.order.len() > 2 * self.open.len() + 64 {
                let open = &self.open;
                self.order
                    .retain(|(seq, id)| open.get(id).is_some_and(|h| h.seq == *seq));
            }
        }
    }

    /// Gives the events of the span that has held them longest to the sink;
    /// `false` when none holds any.
    #[cold]
    fn release_oldest(&mut self) -> bool {
        while let Some((seq, id)) = self.order.pop_front() {
            if self.open.get(&id).is_some_and(|h| h.seq == seq) {
                if let Some(held) = self.open.remove(&id) {
                    self.release(held);
                    return true;
                }
            }
        }
        false
    }

    fn release(&mut self, held: Held) {
        let n = held.events.len();
        self.held -= n;
        self.ledger.in_memory.fetch_sub(n as u64, Ordering::Relaxed);
        self.out.extend(held.events.into_iter().map(Record::Event));
    }

    /// The exporter is stopping: every event still held goes into `batch`
    /// (oldest span first), and later ones pass straight through. Returns
    /// how many items that is.
    pub(crate) fn stop(&mut self, batch: &mut Vec<Record>) -> u64 {
        self.stopped = true;
        while self.release_oldest() {}
        self.order.clear();
        let items = self.out.len() as u64;
        batch.append(&mut self.out);
        items
    }
}
