//! The sinks that are done with a batch on return: stdout (no connection
//! string) and [`InMemoryExporter`] (an application's tests). Every item
//! they are handed counts as exported; they show the events of a span
//! inside its record (see [`assemble`]).

use crate::pipeline::{add, Ledger, Sink};
use crate::record::Record;

mod assemble;
mod in_memory;
mod stdout;

pub use in_memory::InMemoryExporter;
pub(crate) use stdout::StdoutSink;

/// Takes a batch and is done with it (what it keeps, it takes out).
pub(crate) trait Consume: Send + 'static {
    fn consume(&mut self, batch: &mut Vec<Record>);

    /// Whether it keeps and shows nothing (then nothing is assembled for
    /// it); asked once, when the sink is built.
    fn discards(&self) -> bool {
        false
    }
}

impl Consume for StdoutSink {
    fn consume(&mut self, batch: &mut Vec<Record>) {
        self.export(batch);
    }
}

impl Consume for InMemoryExporter {
    fn consume(&mut self, batch: &mut Vec<Record>) {
        self.export(batch);
    }

    fn discards(&self) -> bool {
        self.capacity() == 0
    }
}

/// A [`Sink`] of a [`Consume`]r: events go into their spans' records,
/// and every item handed to the consumer is exported.
pub(crate) struct Immediate<C> {
    consumer: C,
    /// `None` for a consumer that keeps and shows nothing.
    assembler: Option<assemble::Assembler>,
    ledger: Ledger,
}

impl<C: Consume> Immediate<C> {
    pub(crate) fn new(consumer: C, ledger: Ledger) -> Self {
        let assembler = (!consumer.discards()).then(|| assemble::Assembler::new(ledger.clone()));
        Immediate {
            consumer,
            assembler,
            ledger,
        }
    }

    fn consume(&mut self, batch: &mut Vec<Record>, items: u64) {
        if !batch.is_empty() {
            self.consumer.consume(batch);
        }
        add(&self.ledger.exported, items);
    }
}

impl<C: Consume> Sink for Immediate<C> {
    fn accept(&mut self, batch: &mut Vec<Record>) {
        let items = match &mut self.assembler {
            Some(assembler) => assembler.assemble(batch),
            None => batch.iter().map(crate::pipeline::items_of).sum(),
        };
        self.consume(batch, items);
    }

    /// The events of spans still open are shown on their own, and later
    /// ones as they come.
    fn stop(&mut self) {
        if let Some(assembler) = &mut self.assembler {
            let mut batch = Vec::new();
            let items = assembler.stop(&mut batch);
            self.consume(&mut batch, items);
        }
    }
}
