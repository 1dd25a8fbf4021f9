//! [`Builder`]: every setting of the layer and its exporter.

use std::sync::Arc;
use std::time::Duration;

use tracing_core::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use crate::error::BuildError;
use crate::exporter::sink::Sink;
use crate::exporter::{spawn_worker, ExporterGuard, InMemoryExporter, Shared, WorkerConfig};
use crate::layer::AppInsightsLayer;
use crate::sampler::Sampler;

/// Default bound of the queue between the application and the worker.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 8192;
/// Default most records per batch.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 512;
/// Default longest wait before a partial batch is exported.
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Default bound on the time dropping the [`ExporterGuard`] may take.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// The environment variable holding the connection string.
pub const ENV_CONNECTION_STRING: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";

/// Configures and builds an [`AppInsightsLayer`] and its [`ExporterGuard`].
///
/// Anything set in code beats the environment.
///
/// # Default values
///
/// | setting | default |
/// |---|---|
/// | [`with_sampler`](Self::with_sampler) | [`Sampler::always_on`] (every trace) |
/// | [`with_max_queue_size`](Self::with_max_queue_size) | 8192 records ([`DEFAULT_MAX_QUEUE_SIZE`]) |
/// | [`with_max_batch_size`](Self::with_max_batch_size) | 512 records ([`DEFAULT_MAX_BATCH_SIZE`]) |
/// | [`with_export_interval`](Self::with_export_interval) | 5 s ([`DEFAULT_EXPORT_INTERVAL`]) |
/// | [`with_shutdown_timeout`](Self::with_shutdown_timeout) | 5 s ([`DEFAULT_SHUTDOWN_TIMEOUT`]) |
/// | sink | stdout, one OpenCensus-style line per record (or an [`InMemoryExporter`]) |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tracing_appinsights::{Builder, Sampler};
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), tracing_appinsights::BuildError> {
/// let (layer, _guard) = Builder::new()
///     .with_sampler(Sampler::probability(0.25))
///     .with_export_interval(Duration::from_secs(2))
///     .build()?;
/// let _subscriber = tracing_subscriber::registry().with(layer);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until `build` is called"]
pub struct Builder {
    sampler: Sampler,
    max_queue_size: usize,
    max_batch_size: usize,
    export_interval: Duration,
    shutdown_timeout: Duration,
    in_memory: Option<InMemoryExporter>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the default values of the table above.
    pub fn new() -> Self {
        Builder {
            sampler: Sampler::always_on(),
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            export_interval: DEFAULT_EXPORT_INTERVAL,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            in_memory: None,
        }
    }

    /// Which new traces are recorded (default: all of them).
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// The most finished records waiting for export (default 8192). When the
    /// queue is full, new records are dropped and counted in
    /// [`ExporterStats::dropped_queue_full`](crate::ExporterStats::dropped_queue_full);
    /// the application never waits.
    pub fn with_max_queue_size(mut self, records: usize) -> Self {
        self.max_queue_size = records;
        self
    }

    /// The most records in one batch (default 512). A full batch is exported
    /// at once, without waiting for the interval.
    pub fn with_max_batch_size(mut self, records: usize) -> Self {
        self.max_batch_size = records;
        self
    }

    /// The longest a record waits in a partial batch (default 5 s).
    pub fn with_export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = interval;
        self
    }

    /// The longest dropping the [`ExporterGuard`] may take to export what is
    /// queued (default 5 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Keeps finished records in `exporter` instead of printing or sending
    /// them, for tests.
    pub fn with_in_memory_exporter(mut self, exporter: InMemoryExporter) -> Self {
        self.in_memory = Some(exporter);
        self
    }

    /// Checks every setting; the error names the one to fix.
    fn validate(&self) -> Result<Sampler, BuildError> {
        let sampler = self
            .sampler
            .validate()
            .map_err(|probability| BuildError::InvalidSamplingProbability { probability })?;
        let invalid = |setting, reason: String| Err(BuildError::InvalidSetting { setting, reason });
        if self.max_queue_size == 0 {
            return invalid("with_max_queue_size", "must be at least 1".into());
        }
        if self.max_batch_size == 0 {
            return invalid("with_max_batch_size", "must be at least 1".into());
        }
        if self.max_batch_size > self.max_queue_size {
            return invalid(
                "with_max_batch_size",
                format!(
                    "a batch of {} can never fill from a queue of {} (with_max_queue_size); \
                     make the batch smaller or the queue larger",
                    self.max_batch_size, self.max_queue_size
                ),
            );
        }
        if self.export_interval.is_zero() {
            return invalid("with_export_interval", "must be longer than zero".into());
        }
        Ok(sampler)
    }

    /// Builds the layer and starts the exporter's worker thread.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the setting that is invalid or contradicts
    /// another, or saying the worker thread could not start.
    pub fn build<S>(self) -> Result<(AppInsightsLayer<S>, ExporterGuard), BuildError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let sink = match self.in_memory.clone() {
            Some(exporter) => Sink::InMemory(exporter),
            None => Sink::Stdout(Default::default()),
        };
        self.build_with_sink(sink)
    }

    pub(crate) fn build_with_sink<S>(
        self,
        sink: Sink,
    ) -> Result<(AppInsightsLayer<S>, ExporterGuard), BuildError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let sampler = self.validate()?;
        let (shared, rx) = Shared::new(sampler, self.max_queue_size, self.max_batch_size);
        let shared = Arc::new(shared);
        let config = WorkerConfig {
            max_batch_size: self.max_batch_size,
            export_interval: self.export_interval,
        };
        let (control, thread) =
            spawn_worker(Arc::clone(&shared), rx, sink, config).map_err(BuildError::Spawn)?;
        let guard = ExporterGuard::new(Arc::clone(&shared), control, thread, self.shutdown_timeout);
        Ok((AppInsightsLayer::new(shared), guard))
    }
}

/// Builds the layer with every default, reading the connection string from
/// `APPLICATIONINSIGHTS_CONNECTION_STRING`; without one, span records are
/// printed to stdout. Same as `Builder::new().build()`.
///
/// # Errors
///
/// See [`Builder::build`].
///
/// # Examples
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), tracing_appinsights::BuildError> {
/// let (layer, _guard) = tracing_appinsights::layer()?;
/// tracing_subscriber::registry().with(layer).init();
/// # Ok(()) }
/// ```
pub fn layer<S>() -> Result<(AppInsightsLayer<S>, ExporterGuard), BuildError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    Builder::new().build()
}
