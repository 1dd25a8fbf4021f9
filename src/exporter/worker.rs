//! The worker: one named OS thread running its own current-thread tokio
//! runtime. It batches records by count and interval and hands batches to
//! the sink; flush and shutdown arrive on a control channel with a reply.
//!
//! A thread of our own (design §1) works from a plain synchronous `main`,
//! under any runtime flavour, and from `Drop` without deadlocking a
//! current-thread runtime the application may be running.
//!
//! The loop never waits on the network: the Application Insights sink sends
//! from tasks of this runtime, and the loop goes on draining the queue
//! while requests are in flight or waiting for a retry, so a failing
//! endpoint never stops spans from being accepted. Flushes and the shutdown
//! are states of the loop, not nested loops: each waits until the sink has
//! settled what it covers, and near its deadline has the sink store what is
//! still unsent.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::sink::Sink;
use super::{add, items_of, Control, Shared};
use crate::span_data::Record;

/// The worker thread's name.
pub(crate) const THREAD_NAME: &str = "appinsights-exporter";

/// The longest a flush or shutdown keeps for storing what is unsent before
/// its deadline (a fifth of its timeout when that is shorter).
const MAX_SPILL_MARGIN: Duration = Duration::from_millis(500);

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
                flushes: Vec::new(),
                shutdown: None,
            };
            runtime.block_on(worker.run(control_rx));
            // Dropping the runtime cancels any send still in flight (its
            // payload was stored by `spill_all`).
        })?;
    Ok((control_tx, thread))
}

/// A flush waiting for the sink to settle what was queued before it.
struct PendingFlush {
    /// The sink's mark when the flush arrived.
    mark: u64,
    /// When to store what is still waiting.
    spill_at: Instant,
    deadline: Instant,
    spilled: bool,
    reply: SyncSender<bool>,
}

/// The shutdown in progress.
struct PendingShutdown {
    /// When to store everything still unsent and stop.
    spill_at: Instant,
    /// `None` when the guard went away without a shutdown.
    reply: Option<SyncSender<bool>>,
}

struct Worker {
    shared: Arc<Shared>,
    rx: Receiver<Record>,
    sink: Sink,
    config: WorkerConfig,
    /// Records taken off the queue, not yet handed to the sink.
    batch: Vec<Record>,
    flushes: Vec<PendingFlush>,
    shutdown: Option<PendingShutdown>,
}

/// When to store what is unsent, for a deadline `timeout` away.
fn spill_time(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    deadline - (left / 5).min(MAX_SPILL_MARGIN)
}

impl Worker {
    async fn run(mut self, mut control: UnboundedReceiver<Control>) {
        let period = self.config.export_interval;
        let mut tick = tokio::time::interval_at((Instant::now() + period).into(), period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Data stored by an earlier run goes out first thing.
        self.sink.pump(&self.shared.counters);
        loop {
            let timer = self.next_deadline();
            tokio::select! {
                biased;
                command = control.recv(), if self.shutdown.is_none() => match command {
                    Some(Control::Flush { reply, deadline }) => {
                        self.drain();
                        self.flushes.push(PendingFlush {
                            mark: self.sink.mark(),
                            spill_at: spill_time(deadline),
                            deadline,
                            spilled: false,
                            reply,
                        });
                    }
                    Some(Control::Shutdown { reply, deadline }) => {
                        self.begin_shutdown(Some(reply), deadline);
                    }
                    // The guard is gone without a shutdown (it was leaked):
                    // nobody can flush any more, so export and stop.
                    None => self.begin_shutdown(None, Instant::now() + period),
                },
                _ = self.shared.notify.notified() => {
                    while self.fill() {
                        self.hand_over();
                    }
                }
                wake = self.sink.wait() => {
                    self.sink.on_wake(wake, &self.shared.counters);
                }
                _ = tick.tick() => {
                    self.drain();
                    self.sink.maintain(&self.shared.counters);
                }
                () = sleep_until(timer), if timer.is_some() => {}
            }
            self.sink.pump(&self.shared.counters);
            self.answer_flushes();
            if self.shutdown_done() {
                return;
            }
        }
    }

    /// Moves queued records into the batch; `true` when the batch is full.
    fn fill(&mut self) -> bool {
        let before = self.batch.len();
        while self.batch.len() < self.config.max_batch_size {
            match self.rx.try_recv() {
                Ok(record) => self.batch.push(record),
                // The worker holds a sender itself (through `Shared`), so the
                // queue never disconnects while it runs.
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.shared.done(self.batch.len() - before);
        self.batch.len() == self.config.max_batch_size
    }

    /// Hands the batch to the sink, and its records back to the
    /// application threads.
    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let counters = &self.shared.counters;
        add(&counters.taken, self.batch.iter().map(items_of).sum());
        counters.batches.fetch_add(1, Ordering::Relaxed);
        self.sink.accept(&mut self.batch, counters);
        // What the sink did not keep goes back to the application threads.
        self.shared.pool.give(&mut self.batch);
        self.batch.clear();
    }

    /// Hands everything queued now to the sink, in full batches and a last
    /// partial one.
    fn drain(&mut self) {
        loop {
            let full = self.fill();
            self.hand_over();
            if !full {
                return;
            }
        }
    }

    /// The earliest flush or shutdown instant still ahead.
    fn next_deadline(&self) -> Option<Instant> {
        let flushes = self
            .flushes
            .iter()
            .map(|f| if f.spilled { f.deadline } else { f.spill_at });
        let shutdown = self.shutdown.as_ref().map(|s| s.spill_at);
        flushes.chain(shutdown).min()
    }

    /// Replies to the flushes whose batches are settled; stores what the
    /// others still wait for when their time runs out.
    fn answer_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let now = Instant::now();
        let sink = &mut self.sink;
        let counters = &self.shared.counters;
        self.flushes.retain_mut(|flush| {
            if !sink.settled(flush.mark) && now >= flush.spill_at && !flush.spilled {
                sink.spill(flush.mark, counters);
                flush.spilled = true;
            }
            let settled = sink.settled(flush.mark);
            if settled || now >= flush.deadline {
                let _ = flush.reply.try_send(settled);
                return false;
            }
            true
        });
    }

    /// Starts the shutdown: everything queued goes to the sink; from now on
    /// nothing is read back from storage.
    fn begin_shutdown(&mut self, reply: Option<SyncSender<bool>>, deadline: Instant) {
        self.drain();
        self.sink.stop_reading();
        self.shutdown = Some(PendingShutdown {
            spill_at: spill_time(deadline),
            reply,
        });
    }

    /// `true` when the shutdown is over: everything was sent, or the time
    /// is up and what was left is stored. Replies to the guard (and to
    /// flushes still waiting).
    fn shutdown_done(&mut self) -> bool {
        let Some(spill_at) = self.shutdown.as_ref().map(|s| s.spill_at) else {
            return false;
        };
        // Records the application produced meanwhile go too.
        self.drain();
        if !self.sink.is_idle() {
            if Instant::now() < spill_at {
                return false;
            }
            // Stored, or (storage off or unwritable) dropped and counted:
            // settled either way, and the stats say which.
            self.sink.spill_all(&self.shared.counters);
        }
        for flush in self.flushes.drain(..) {
            let _ = flush.reply.try_send(true);
        }
        if let Some(reply) = self.shutdown.take().and_then(|s| s.reply) {
            let _ = reply.try_send(true);
        }
        true
    }
}

/// Sleeps until `at`; never returns for `None` (the branch is disabled
/// then anyway).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
