//! [`Sink`]: where the worker hands batches of finished records.
//!
//! A sink takes a batch on the worker thread and either is done with it on
//! return (stdout, in memory) or goes on working in the background on the
//! worker's runtime (Application Insights: sends in flight, retries,
//! storage). The worker knows nothing of what a sink does: it polls the
//! sink's background work, asks whether what a flush waits for is settled,
//! and tells it when a deadline is near or the exporter is stopping. A sink
//! counts what it exported, stored or dropped in its [`Ledger`](super::Ledger).
//! A second consumer of finished records is one more implementation.

use std::task::{Context, Poll};

use crate::record::Record;

/// A consumer of the worker's batches (see the module docs). Every method
/// runs on the worker thread and must not block; only
/// [`accept`](Self::accept) is required.
pub(crate) trait Sink: Send + 'static {
    /// Takes one batch off the queue. Never waits on the network. A sink
    /// that keeps records takes them out of `batch`; what it leaves is
    /// recycled.
    fn accept(&mut self, batch: &mut Vec<Record>);

    /// Drives the sink's background work (finished sends, timers that fell
    /// due): `Ready` when it did something, so the worker looks again at
    /// what waits for the sink. Cancel-safe.
    fn poll_work(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }

    /// Starts what can start now (called after every step of the worker).
    fn start_due(&mut self) {}

    /// Periodic housekeeping, once per export interval.
    fn housekeep(&mut self) {}

    /// A mark covering every batch accepted so far, for
    /// [`is_settled`](Self::is_settled).
    fn mark(&self) -> u64 {
        0
    }

    /// Whether every batch up to `mark` is settled: delivered, stored or
    /// dropped, each counted.
    fn is_settled(&self, _mark: u64) -> bool {
        true
    }

    /// A flush's time is running out: settle what up to `mark` still waits
    /// (for a retry), without the network, if the sink can.
    fn settle_now(&mut self, _mark: u64) {}

    /// The exporter is stopping: take on only the background work that the
    /// shutdown's time left is worth (the Application Insights sink goes on
    /// sending stored data while the endpoint is healthy, and stops at the
    /// first failure).
    fn stop(&mut self) {}

    /// The shutdown's time is up: settle everything now, abandoning what is
    /// in flight (stored or dropped, counted).
    fn abandon(&mut self) {}

    /// The export interval to use now (the configured one by default).
    fn tick_interval(&self, configured: std::time::Duration) -> std::time::Duration {
        configured
    }

    /// Whether the sink takes another batch now. While it says no, the
    /// records wait in the queue (and past its bound are dropped, counted
    /// as `dropped_queue_full`), instead of being encoded only to be
    /// thrown away; flush and shutdown hand over everything regardless.
    fn has_room(&self) -> bool {
        true
    }

    /// Whether nothing is in flight or waiting.
    fn is_idle(&self) -> bool {
        true
    }
}
