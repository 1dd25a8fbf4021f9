//! Where the worker sends batches: the small internal interface every sink
//! implements, as one enum so no future is boxed.
//!
//! The stdout, in-memory and test sinks take a batch and are done with it.
//! The Application Insights sink sends in the background: it holds batches
//! in flight and waiting for a retry, so the worker asks it what to wait
//! for ([`Sink::wait`]) and when it has settled what a flush is waiting for
//! ([`Sink::settled`]).

use super::appinsights::{AppInsightsSink, Wake};
use super::in_memory::InMemoryExporter;
use super::stdout::StdoutSink;
use super::{add, items_of, Counters};
use crate::span_data::Record;

/// A test sink's callback.
#[cfg(test)]
pub(crate) type Callback = dyn FnMut(&[Record]) + Send;

/// The worker's sink.
pub(crate) enum Sink {
    /// No connection string: OpenCensus-style lines on stdout.
    Stdout(StdoutSink),
    /// Records kept in memory for the application's tests.
    InMemory(InMemoryExporter),
    /// The Application Insights ingestion endpoint.
    AppInsights(Box<AppInsightsSink>),
    /// A test hook: a callback run on the worker thread.
    #[cfg(test)]
    Callback(Box<Callback>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Stdout(_) => "Sink::Stdout",
            Sink::InMemory(_) => "Sink::InMemory",
            Sink::AppInsights(_) => "Sink::AppInsights",
            #[cfg(test)]
            Sink::Callback(_) => "Sink::Callback",
        })
    }
}

impl Sink {
    /// Takes one batch off the queue. Runs on the worker thread and never
    /// waits on the network: the Application Insights sink serialises the
    /// batch and sends it in the background; the others are done with it
    /// on return. A sink that keeps records takes them out of `batch`;
    /// what it leaves is recycled.
    pub(crate) fn accept(&mut self, batch: &mut Vec<Record>, counters: &Counters) {
        let items: u64 = batch.iter().map(items_of).sum();
        match self {
            Sink::Stdout(sink) => {
                sink.export(batch);
                add(&counters.exported, items);
            }
            Sink::InMemory(sink) => {
                sink.export(batch);
                add(&counters.exported, items);
            }
            Sink::AppInsights(sink) => sink.accept(batch, counters),
            #[cfg(test)]
            Sink::Callback(callback) => {
                callback(batch);
                add(&counters.exported, items);
            }
        }
    }

    /// Waits until the sink has something to do: a request finished, or a
    /// retry is due. Cancel-safe. Never ready for sinks that finish their
    /// work in [`accept`](Self::accept).
    pub(crate) async fn wait(&mut self) -> Wake {
        match self {
            Sink::AppInsights(sink) => sink.wait().await,
            _ => std::future::pending().await,
        }
    }

    /// Handles what [`wait`](Self::wait) returned.
    pub(crate) fn on_wake(&mut self, wake: Wake, counters: &Counters) {
        if let Sink::AppInsights(sink) = self {
            sink.on_wake(wake, counters);
        }
    }

    /// Starts what can start now: due sends, reading back stored data.
    pub(crate) fn pump(&mut self, counters: &Counters) {
        if let Sink::AppInsights(sink) = self {
            sink.pump(counters);
        }
    }

    /// Periodic housekeeping (every export interval).
    pub(crate) fn maintain(&mut self, counters: &Counters) {
        if let Sink::AppInsights(sink) = self {
            sink.maintain(counters);
        }
    }

    /// A mark covering every batch accepted so far, for
    /// [`settled`](Self::settled).
    pub(crate) fn mark(&self) -> u64 {
        match self {
            Sink::AppInsights(sink) => sink.mark(),
            _ => 0,
        }
    }

    /// Whether every batch up to `mark` has been settled: accepted,
    /// stored or dropped.
    pub(crate) fn settled(&self, mark: u64) -> bool {
        match self {
            Sink::AppInsights(sink) => sink.settled(mark),
            _ => true,
        }
    }

    /// Stores the batches up to `mark` that wait for a retry (a flush's
    /// time is running out).
    pub(crate) fn spill(&mut self, mark: u64, counters: &Counters) {
        if let Sink::AppInsights(sink) = self {
            sink.spill(mark, counters);
        }
    }

    /// Stores everything not yet sent, abandoning requests in flight (the
    /// shutdown's time is running out).
    pub(crate) fn spill_all(&mut self, counters: &Counters) {
        if let Sink::AppInsights(sink) = self {
            sink.spill_all(counters);
        }
    }

    /// Reads nothing more back from storage (the exporter is stopping).
    pub(crate) fn stop_reading(&mut self) {
        if let Sink::AppInsights(sink) = self {
            sink.stop_reading();
        }
    }

    /// Whether nothing is in flight or waiting.
    pub(crate) fn is_idle(&self) -> bool {
        match self {
            Sink::AppInsights(sink) => sink.is_idle(),
            _ => true,
        }
    }
}
