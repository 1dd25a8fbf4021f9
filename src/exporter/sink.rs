//! Where the worker sends batches: the small internal interface every sink
//! implements, as one enum so no future is boxed.

use super::appinsights::AppInsightsSink;
use super::in_memory::InMemoryExporter;
use super::stdout::StdoutSink;
use crate::span_data::Record;

/// What became of one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExportOutcome {
    /// Records the sink took (printed, stored, accepted by the service).
    pub(crate) exported: usize,
    /// Records that could not be exported and are lost.
    pub(crate) failed: usize,
}

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
    /// Exports one batch. Runs on the worker thread, inside its runtime.
    /// A sink that keeps records takes them out of `batch`; what it leaves
    /// is recycled.
    pub(crate) async fn export(&mut self, batch: &mut Vec<Record>) -> ExportOutcome {
        let n = batch.len();
        match self {
            Sink::Stdout(sink) => ExportOutcome {
                exported: sink.export(batch),
                failed: 0,
            },
            Sink::AppInsights(sink) => sink.export(batch).await,
            Sink::InMemory(sink) => {
                sink.export(batch);
                ExportOutcome {
                    exported: n,
                    failed: 0,
                }
            }
            #[cfg(test)]
            Sink::Callback(callback) => {
                callback(batch);
                ExportOutcome {
                    exported: n,
                    failed: 0,
                }
            }
        }
    }
}
