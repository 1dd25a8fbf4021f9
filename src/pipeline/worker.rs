//! The worker: one named OS thread running its own current-thread tokio
//! runtime. It batches records by count and interval and hands batches to
//! the sink; flush and shutdown arrive on a control channel with a reply.
//!
//! A thread of our own works from a plain synchronous `main`, under any
//! runtime flavour, and from `Drop` without deadlocking a current-thread
//! runtime the application may be running.
//!
//! The loop never waits on the network: the Application Insights sink sends
//! from tasks of this runtime, and the loop goes on draining the queue
//! while requests are in flight or waiting for a retry, so a failing
//! endpoint never stops spans from being accepted. Flushes and the shutdown
//! are states of the loop, not nested loops: each waits until the sink has
//! settled what it covers, and near its deadline has the sink store what is
//! still unsent. Every instant is read from the exporter's [`Clock`].
//!
//! Each wake-up is one step between [`Counters::begin_step`] and
//! [`Counters::end_step`]: the statistics are never read half way through
//! one.

use std::future::Future as _;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::stats::{add, Counters};
use super::{items_of, Clock, Control, Queue, Sink, Sleep};
use crate::record::Record;

/// The worker thread's name.
pub(crate) const THREAD_NAME: &str = "appinsights-exporter";

/// The longest a flush or shutdown keeps for storing what is unsent before
/// its deadline (a fifth of its timeout when that is shorter).
const MAX_SPILL_MARGIN: Duration = Duration::from_millis(500);

/// How the worker batches, and its clock.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) max_batch_size: usize,
    pub(crate) export_interval: Duration,
    pub(crate) clock: Clock,
    /// Where the data goes (and what in the settings was ignored), to say
    /// with the first batch when `build()` had no subscriber to say it to.
    pub(crate) startup: Vec<crate::diag::Note>,
}

/// The worker thread, as the guard holds it.
pub(crate) struct WorkerThread {
    pub(crate) handle: JoinHandle<()>,
    /// Disconnected when the thread has ended (whatever ended it): the
    /// guard waits on it with a timeout, which a join cannot do.
    pub(crate) exited: Receiver<()>,
}

/// Starts the worker thread.
pub(crate) fn spawn_worker(
    queue: Arc<Queue>,
    sink: Box<dyn Sink>,
    config: WorkerConfig,
) -> std::io::Result<(UnboundedSender<Control>, WorkerThread)> {
    let (control_tx, control_rx) = unbounded_channel();
    // The first interval counts from the build, not from when the thread
    // gets to run.
    let first_tick = config.clock.now() + config.export_interval;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (exiting, exited) = sync_channel(0);
    let handle = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            // Dropped last, when everything else of the thread is gone.
            let _exiting = exiting;
            super::mark_exporter_thread();
            // However the thread ends (a panic included), the queue closes:
            // what is sent after is counted as dropped, not left in it.
            let _close = CloseOnExit(Arc::clone(&queue));
            let worker = Worker {
                queue,
                sink,
                batch: Vec::with_capacity(config.max_batch_size),
                config,
                flushes: Vec::new(),
                shutdown: None,
            };
            runtime.block_on(worker.run(control_rx, first_tick));
            // Cancels any send still in flight (its payload was stored by
            // `spill_all`) without waiting for the runtime's blocking
            // threads: a name lookup (`getaddrinfo`) that does not answer
            // must not hold the shutdown; it ends on its own, detached.
            runtime.shutdown_background();
        })?;
    Ok((control_tx, WorkerThread { handle, exited }))
}

/// Closes the queue when the worker thread ends.
struct CloseOnExit(Arc<Queue>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
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
    queue: Arc<Queue>,
    sink: Box<dyn Sink>,
    config: WorkerConfig,
    /// Records taken off the queue, not yet handed to the sink.
    batch: Vec<Record>,
    flushes: Vec<PendingFlush>,
    shutdown: Option<PendingShutdown>,
}

/// When to store what is unsent, for a deadline `timeout` after `from`.
fn spill_time(from: Instant, timeout: Duration) -> Instant {
    from + timeout - (timeout / 5).min(MAX_SPILL_MARGIN)
}

/// What woke the worker.
enum Wake {
    Control(Option<Control>),
    Queue,
    Sink,
    Tick,
    Timer,
}

impl Worker {
    async fn run(mut self, mut control: UnboundedReceiver<Control>, first_tick: Instant) {
        let clock = self.config.clock.clone();
        let mut next_tick = first_tick;
        // Made anew only when it fires, not on every wake-up.
        let mut tick = clock.sleep_until(next_tick);
        let queue = Arc::clone(&self.queue);
        let counters = &queue.counters;
        // Data stored by an earlier run goes out first thing.
        counters.begin_step();
        self.sink.start_due();
        counters.end_step();
        loop {
            let timer = self.next_deadline();
            let wake = self.wait(&mut control, &mut tick, timer).await;
            counters.begin_step();
            let ticked = matches!(wake, Wake::Tick);
            let stop = self.step(wake, &mut next_tick);
            counters.end_step();
            if ticked {
                tick = clock.sleep_until(next_tick);
            }
            if let Some(reply) = stop {
                // After the step: the guard reads settled counters.
                if let Some(reply) = reply {
                    let _ = reply.try_send(true);
                }
                return;
            }
        }
    }

    /// Waits for the next thing to do, looking in this order (so a command
    /// is never starved by a busy queue): a command (unless shutting down),
    /// records in the queue, the sink's work, the export tick, a flush's or
    /// the shutdown's deadline.
    async fn wait(
        &mut self,
        control: &mut UnboundedReceiver<Control>,
        tick: &mut Sleep,
        timer: Option<Instant>,
    ) -> Wake {
        let queue = Arc::clone(&self.queue);
        let mut notified = std::pin::pin!(queue.notify.notified());
        let clock = self.config.clock.clone();
        let mut deadline = timer.map(|at| clock.sleep_until(at));
        std::future::poll_fn(|cx| {
            if self.shutdown.is_none() {
                if let Poll::Ready(command) = control.poll_recv(cx) {
                    return Poll::Ready(Wake::Control(command));
                }
            }
            if notified.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Queue);
            }
            if self.sink.poll_work(cx).is_ready() {
                return Poll::Ready(Wake::Sink);
            }
            if tick.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Tick);
            }
            if let Some(deadline) = &mut deadline {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Handles one wake-up; `Some` when the shutdown is over, with the
    /// guard's reply (`None` when the guard went away without one).
    fn step(&mut self, wake: Wake, next_tick: &mut Instant) -> Option<Option<SyncSender<bool>>> {
        let now = self.config.clock.now();
        match wake {
            Wake::Control(Some(Control::Flush {
                reply,
                from,
                timeout,
            })) => {
                self.drain();
                self.flushes.push(PendingFlush {
                    mark: self.sink.mark(),
                    spill_at: spill_time(from, timeout),
                    deadline: from + timeout,
                    spilled: false,
                    reply,
                });
            }
            Wake::Control(Some(Control::Shutdown {
                reply,
                from,
                timeout,
            })) => {
                self.begin_shutdown(Some(reply), from, timeout);
            }
            // The guard is gone without a shutdown (it was leaked): nobody
            // can flush any more, so export and stop.
            Wake::Control(None) => {
                let period = self.config.export_interval;
                self.begin_shutdown(None, now, period);
            }
            // Full batches, as long as the sink has room (a send that
            // finished may have made some).
            Wake::Queue | Wake::Sink => self.take_while_room(false),
            Wake::Tick => {
                // Missed ticks are not caught up: the next is a period on.
                *next_tick = now + self.sink.tick_interval(self.config.export_interval);
                self.take_while_room(true);
                self.sink.housekeep();
            }
            Wake::Timer => {}
        }
        self.sink.start_due();
        self.answer_flushes();
        self.shutdown_done()
    }

    /// Moves queued records into the batch; `true` when the batch is full.
    fn fill(&mut self) -> bool {
        let before = self.batch.len();
        while self.batch.len() < self.config.max_batch_size {
            match self.queue.take() {
                Some(record) => self.batch.push(record),
                None => break,
            }
        }
        self.queue.done(self.batch.len() - before);
        self.batch.len() == self.config.max_batch_size
    }

    /// Hands the batch to the sink, and its records back to the
    /// application threads.
    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        for note in std::mem::take(&mut self.config.startup) {
            note.emit();
        }
        let counters: &Counters = &self.queue.counters;
        add(&counters.taken, self.batch.iter().map(items_of).sum());
        counters.count_cuts(&self.batch);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        self.sink.accept(&mut self.batch);
        // What the sink did not keep goes back to the application threads.
        self.queue.pool.give(&mut self.batch);
        self.batch.clear();
    }

    /// Hands full batches (and a last partial one when `partial`) to the
    /// sink while it has room ([`Sink::has_room`]): when it has none, the
    /// records wait in the queue.
    fn take_while_room(&mut self, partial: bool) {
        while self.sink.has_room() {
            let full = self.fill();
            if full || partial {
                self.hand_over();
            }
            if !full {
                return;
            }
        }
    }

    /// Hands everything queued now to the sink, in full batches and a last
    /// partial one, room or not (a flush, the shutdown).
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
        let now = self.config.clock.now();
        let sink = &mut self.sink;
        self.flushes.retain_mut(|flush| {
            if !sink.is_settled(flush.mark) && now >= flush.spill_at && !flush.spilled {
                sink.settle_now(flush.mark);
                flush.spilled = true;
            }
            let settled = sink.is_settled(flush.mark);
            if settled || now >= flush.deadline {
                let _ = flush.reply.try_send(settled);
                return false;
            }
            true
        });
    }

    /// Starts the shutdown: everything queued goes to the sink, which is
    /// told to stop ([`Sink::stop`]).
    fn begin_shutdown(
        &mut self,
        reply: Option<SyncSender<bool>>,
        from: Instant,
        timeout: Duration,
    ) {
        self.drain();
        self.sink.stop();
        self.shutdown = Some(PendingShutdown {
            spill_at: spill_time(from, timeout),
            reply,
        });
    }

    /// `Some` when the shutdown is over: everything was sent, or the time
    /// is up and what was left is stored. Replies to the flushes still
    /// waiting, and gives back the guard's reply.
    fn shutdown_done(&mut self) -> Option<Option<SyncSender<bool>>> {
        let spill_at = self.shutdown.as_ref()?.spill_at;
        // Records the application produced meanwhile go too.
        self.drain();
        if !self.sink.is_idle() {
            if self.config.clock.now() < spill_at {
                return None;
            }
            // Stored, or (storage off or unwritable) dropped and counted:
            // settled either way, and the stats say which.
            self.sink.abandon();
        }
        for flush in self.flushes.drain(..) {
            let _ = flush.reply.try_send(true);
        }
        self.shutdown.take().map(|s| s.reply)
    }
}
