//! [`ExporterGuard`]: the application's handle on the worker (flush,
//! shutdown, statistics), and the commands it sends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::ExporterStats;
use super::worker::WorkerThread;
use super::{Clock, Queue};
use crate::error::{FlushError, ShutdownError};

/// How long [`ExporterGuard::shutdown`] waits past its timeout for the
/// worker thread to end after it replied (it ends at once unless dropping
/// what it holds hangs).
const EXIT_MARGIN: Duration = Duration::from_millis(100);

/// Commands from the guard to the worker. The reply says whether
/// everything concerned was settled (accepted, stored or dropped) in time.
pub(crate) enum Control {
    /// Settle everything queued before the command, then reply; by the
    /// deadline, store what is still waiting for a retry.
    Flush {
        reply: std_mpsc::SyncSender<bool>,
        /// When the flush was asked for, on the exporter's clock: its
        /// deadline is `timeout` after.
        from: Instant,
        timeout: Duration,
    },
    /// Settle everything queued, reply and stop; by the deadline, store
    /// what is left.
    Shutdown {
        reply: std_mpsc::SyncSender<bool>,
        /// As for [`Control::Flush`].
        from: Instant,
        timeout: Duration,
    },
}

/// Controls the exporter's worker thread: flush, shutdown and statistics.
///
/// Keep it alive as long as the application records spans: dropping it shuts
/// the exporter down (bounded by the shutdown timeout,
/// [`Builder::with_shutdown_timeout`](crate::Builder::with_shutdown_timeout),
/// default 5 s), exporting what is queued. Binding it to `_` drops it at
/// once; bind it to a named variable such as `_guard`.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let exporter = tracing_appinsights::InMemoryExporter::new();
/// let (layer, guard) = tracing_appinsights::Builder::new()
///     .with_in_memory_exporter(exporter.clone())
///     .build()?;
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info_span!("work").in_scope(|| {});
/// });
/// guard.flush(Duration::from_secs(5))?;
/// assert_eq!(exporter.spans().len(), 1);
/// guard.shutdown(Duration::from_secs(5))?;
/// # Ok(()) }
/// ```
#[must_use = "dropping the guard shuts the exporter down; bind it to a named variable such as `_guard`"]
pub struct ExporterGuard(Arc<Shared>);

/// What the guard and the threads of its async calls share.
struct Shared {
    queue: Arc<Queue>,
    control: tokio::sync::mpsc::UnboundedSender<Control>,
    thread: std::sync::Mutex<Option<WorkerThread>>,
    shutdown_timeout: Duration,
    is_shut_down: AtomicBool,
    /// The exporter's clock, on which deadlines are counted.
    clock: Clock,
}

impl std::fmt::Debug for ExporterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterGuard")
            .field("stats", &self.stats())
            .field("shutdown_timeout", &self.0.shutdown_timeout)
            .field("is_shut_down", &self.0.is_shut_down.load(Ordering::Relaxed))
            .finish()
    }
}

impl ExporterGuard {
    pub(crate) fn new(
        queue: Arc<Queue>,
        control: tokio::sync::mpsc::UnboundedSender<Control>,
        thread: WorkerThread,
        shutdown_timeout: Duration,
        clock: Clock,
    ) -> Self {
        ExporterGuard(Arc::new(Shared {
            queue,
            control,
            thread: std::sync::Mutex::new(Some(thread)),
            shutdown_timeout,
            clock,
            is_shut_down: AtomicBool::new(false),
        }))
    }

    /// Exports every record queued before the call, and returns when each
    /// of their items was accepted by the service, written to offline
    /// storage, or dropped ([`stats`](Self::stats) says which), or when
    /// `timeout` has passed.
    ///
    /// Items still waiting for a retry near the end of `timeout` are
    /// written to offline storage (and sent from there later), so a flush
    /// against a failing endpoint still settles in time. It blocks the
    /// calling thread for at most `timeout`: in async code, use
    /// [`flush_async`](Self::flush_async).
    ///
    /// # Errors
    ///
    /// [`FlushError::Timeout`] when not everything was settled in time
    /// (a request is still in flight, or storage is off or unwritable and
    /// items wait in memory for their retry; nothing is lost yet);
    /// [`FlushError::ShutDown`] after [`shutdown`](Self::shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        self.0.flush(timeout)
    }

    /// [`flush`](Self::flush) for async code: the same, without blocking
    /// the calling thread. The wait runs on a short-lived thread of its
    /// own, and the future completes when it is over, on any executor
    /// (tokio, async-std, smol, `futures::executor`): it needs no runtime.
    ///
    /// # Errors
    ///
    /// As [`flush`](Self::flush).
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo(guard: tracing_appinsights::ExporterGuard) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// guard.flush_async(Duration::from_secs(5)).await?;
    /// guard.shutdown_async(Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush_async(&self, timeout: Duration) -> Result<(), FlushError> {
        let shared = Arc::clone(&self.0);
        off_thread(move || shared.flush(timeout))
            .await
            .unwrap_or(Err(FlushError::ShutDown))
    }

    /// Exports what is queued and stops the worker thread, within `timeout`.
    ///
    /// The queue is drained and sent with the time left; what is still
    /// unsent near the end of `timeout` (waiting for a retry, or in flight)
    /// is written to offline storage, from where the next run sends it.
    /// With a healthy endpoint, the time left also goes into sending what
    /// earlier runs stored. It returns within `timeout` (plus 100 ms for
    /// the thread to end) whatever the network, the
    /// name resolver or the disk does. Records produced afterwards are
    /// dropped and counted in [`ExporterStats::dropped_after_shutdown`].
    /// When it returns, [`stats`](Self::stats) balances and no longer
    /// changes (but for records produced afterwards). It blocks the calling
    /// thread (and so does dropping the guard before a shutdown): in async
    /// code, use [`shutdown_async`](Self::shutdown_async).
    ///
    /// # Errors
    ///
    /// [`ShutdownError::AlreadyShutDown`] on a second call;
    /// [`ShutdownError::Timeout`] when the worker did not finish in time (a
    /// disk or a sink that does not answer): what it still held is counted
    /// as lost in [`ExporterStats::dropped_at_shutdown`], and the thread is
    /// left to end in the background. Without storage (turned off or
    /// unwritable), what could not be sent in time is dropped and counted in
    /// [`ExporterStats::dropped_storage_unavailable`] (with storage full, in
    /// [`ExporterStats::dropped_storage_full`]): check [`stats`](Self::stats).
    pub fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        self.0.shutdown(timeout)
    }

    /// [`shutdown`](Self::shutdown) for async code: the same, without
    /// blocking the calling thread (see [`flush_async`](Self::flush_async)).
    /// Dropping the guard afterwards does not block.
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Self::shutdown).
    pub async fn shutdown_async(&self, timeout: Duration) -> Result<(), ShutdownError> {
        let shared = Arc::clone(&self.0);
        off_thread(move || shared.shutdown(timeout))
            .await
            .unwrap_or(Err(ShutdownError::WorkerGone))
    }

    /// The exporter's counters right now.
    pub fn stats(&self) -> ExporterStats {
        self.0.queue.counters.snapshot()
    }
}

/// Runs `wait` on a thread of its own and completes with its result; `None`
/// if the thread could not be started or panicked.
async fn off_thread<T: Send + 'static>(wait: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("appinsights-wait".into())
        .spawn(move || {
            let _ = done.send(wait());
        })
        .ok()?;
    // tokio's oneshot needs no tokio runtime: any executor can await it.
    result.await.ok()
}

impl Shared {
    fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        if self.is_shut_down.load(Ordering::Acquire) {
            return Err(FlushError::ShutDown);
        }
        let (reply, done) = std_mpsc::sync_channel(1);
        self.control
            .send(Control::Flush {
                reply,
                from: self.clock.now(),
                timeout,
            })
            .map_err(|_| FlushError::ShutDown)?;
        match done.recv_timeout(timeout) {
            Ok(true) => Ok(()),
            Ok(false) | Err(std_mpsc::RecvTimeoutError::Timeout) => {
                Err(FlushError::Timeout(timeout))
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(FlushError::ShutDown),
        }
    }

    fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        if self.is_shut_down.swap(true, Ordering::AcqRel) {
            return Err(ShutdownError::AlreadyShutDown);
        }
        let deadline = Instant::now() + timeout;
        let (reply, done) = std_mpsc::sync_channel(1);
        if self
            .control
            .send(Control::Shutdown {
                reply,
                from: self.clock.now(),
                timeout,
            })
            .is_err()
        {
            self.queue.give_up();
            return Err(ShutdownError::WorkerGone);
        }
        let answer = done.recv_timeout(timeout);
        if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            // The worker replies as its last step: the thread ends at once,
            // unless dropping what it holds hangs (it is then left alone).
            let wait = deadline.saturating_duration_since(Instant::now()) + EXIT_MARGIN;
            if let Err(std_mpsc::RecvTimeoutError::Disconnected) = thread.exited.recv_timeout(wait)
            {
                let _ = thread.handle.join();
            }
        }
        match answer {
            Ok(_) => Ok(()),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                self.queue.give_up();
                Err(ShutdownError::Timeout(timeout))
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                self.queue.give_up();
                Err(ShutdownError::WorkerGone)
            }
        }
    }
}

impl Drop for ExporterGuard {
    fn drop(&mut self) {
        if !self.0.is_shut_down.load(Ordering::Acquire) {
            let _ = self.0.shutdown(self.0.shutdown_timeout);
        }
    }
}
