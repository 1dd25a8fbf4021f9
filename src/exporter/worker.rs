//! The worker: one named OS thread running its own current-thread tokio
//! runtime. It batches records by count and interval and hands batches to
//! the sink; flush and shutdown arrive on a control channel with a reply.
//!
//! A thread of our own (design §1) works from a plain synchronous `main`,
//! under any runtime flavour, and from `Drop` without deadlocking a
//! current-thread runtime the application may be running.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::sink::{ExportOutcome, Sink};
use super::{Control, Shared};
use crate::span_data::Record;

/// The worker thread's name.
pub(crate) const THREAD_NAME: &str = "appinsights-exporter";

/// How the worker batches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerConfig {
    pub(crate) max_batch_size: usize,
    pub(crate) export_interval: Duration,
}

/// Starts the worker thread.
pub(crate) fn spawn_worker(
    shared: Arc<Shared>,
    rx: Receiver<Record>,
    sink: Sink,
    config: WorkerConfig,
) -> std::io::Result<(UnboundedSender<Control>, JoinHandle<()>)> {
    let (control_tx, control_rx) = unbounded_channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            crate::layer::mark_exporter_thread();
            let worker = Worker {
                shared,
                rx,
                sink,
                config,
                batch: Vec::with_capacity(config.max_batch_size),
            };
            runtime.block_on(worker.run(control_rx));
        })?;
    Ok((control_tx, thread))
}

struct Worker {
    shared: Arc<Shared>,
    rx: Receiver<Record>,
    sink: Sink,
    config: WorkerConfig,
    /// Records taken off the queue, not yet exported.
    batch: Vec<Record>,
}

impl Worker {
    async fn run(mut self, mut control: UnboundedReceiver<Control>) {
        let period = self.config.export_interval;
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                command = control.recv() => match command {
                    Some(Control::Flush { reply, deadline }) => {
                        self.export_all(deadline.into()).await;
                        let _ = reply.try_send(());
                    }
                    Some(Control::Shutdown { reply, deadline }) => {
                        self.export_all(deadline.into()).await;
                        let _ = reply.try_send(());
                        return;
                    }
                    // The guard is gone without a shutdown (it was leaked):
                    // nobody can flush any more, so export and stop.
                    None => {
                        self.export_all(Instant::now() + period).await;
                        return;
                    }
                },
                _ = self.shared.notify.notified() => {
                    while self.fill() {
                        self.export_batch().await;
                    }
                }
                _ = tick.tick() => {
                    self.export_all(Instant::now() + period).await;
                }
            }
        }
    }

    /// Moves queued records into the batch; `true` when the batch is full.
    fn fill(&mut self) -> bool {
        while self.batch.len() < self.config.max_batch_size {
            match self.rx.try_recv() {
                Ok(record) => self.batch.push(record),
                // The worker holds a sender itself (through `Shared`), so the
                // queue never disconnects while it runs.
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Exports everything queued now, in full batches and a last partial
    /// one, giving up at `deadline` (what is left stays queued).
    async fn export_all(&mut self, deadline: Instant) {
        loop {
            let full = self.fill();
            if self.batch.is_empty() {
                return;
            }
            let export = self.export_batch();
            if tokio::time::timeout_at(deadline, export).await.is_err() {
                return;
            }
            if !full {
                return;
            }
        }
    }

    async fn export_batch(&mut self) {
        let n = self.batch.len();
        let outcome: ExportOutcome = self.sink.export(&mut self.batch).await;
        // What the sink did not keep goes back to the application threads.
        self.shared.pool.give(&mut self.batch);
        self.batch.clear();
        let counters = &self.shared.counters;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .exported
            .fetch_add(outcome.exported as u64, Ordering::Relaxed);
        counters
            .dropped_export_failed
            .fetch_add(outcome.failed as u64, Ordering::Relaxed);
        self.shared.done(n);
    }
}
