//! The sinks that are done with a batch on return: stdout (no connection
//! string) and [`InMemoryExporter`] (an application's tests). Every item
//! they are handed counts as exported.

use crate::pipeline::{add, items_of, Ledger, Sink};
use crate::record::Record;

mod in_memory;
mod stdout;

pub use in_memory::InMemoryExporter;
pub(crate) use stdout::StdoutSink;

/// Takes a batch and is done with it (what it keeps, it takes out).
pub(crate) trait Consume: Send + 'static {
    fn consume(&mut self, batch: &mut Vec<Record>);
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
}

/// A [`Sink`] of a [`Consume`]r: every item handed over is exported.
pub(crate) struct Immediate<C> {
    consumer: C,
    ledger: Ledger,
}

impl<C: Consume> Immediate<C> {
    pub(crate) fn new(consumer: C, ledger: Ledger) -> Self {
        Immediate { consumer, ledger }
    }
}

impl<C: Consume> Sink for Immediate<C> {
    fn accept(&mut self, batch: &mut Vec<Record>) {
        let items: u64 = batch.iter().map(items_of).sum();
        self.consumer.consume(batch);
        add(&self.ledger.exported, items);
    }
}
