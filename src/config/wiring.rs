//! Assembling the pipeline from the settings: the queue, the sink the
//! settings ask for, the worker thread, the guard and the layer.

use std::path::PathBuf;
use std::sync::Arc;

use tracing_core::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use super::{Builder, DEFAULT_POOL_IDLE_TIMEOUT};
use crate::appinsights::envelope::EnvelopeContext;
use crate::appinsights::storage::{Storage, StorageConfig};
use crate::appinsights::transport::TransportConfig;
use crate::appinsights::{AppInsightsSink, Policy, SinkConfig};
use crate::error::BuildError;
use crate::layer::sampler::Sampler;
use crate::layer::AppInsightsLayer;
use crate::pipeline::{spawn_worker, ExporterGuard, Ledger, Queue, Sink, WorkerConfig};
use crate::sinks::{Immediate, StdoutSink};

impl Builder {
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
        self.build_with_sink(Builder::sink)
    }

    /// Builds the layer with the sink `make` returns (from the settings,
    /// the checked sampler and the ledger the sink counts in).
    pub(crate) fn build_with_sink<S>(
        self,
        make: impl FnOnce(&Builder, Sampler, Ledger) -> Result<Box<dyn Sink>, BuildError>,
    ) -> Result<(AppInsightsLayer<S>, ExporterGuard), BuildError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let sampler = self.validate()?;
        let queue = Queue::new(self.max_queue_size, self.max_batch_size);
        let queue = Arc::new(queue);
        let sink = make(&self, sampler, Ledger::new(Arc::clone(&queue)))?;
        let config = WorkerConfig {
            max_batch_size: self.max_batch_size,
            export_interval: self.export_interval,
            clock: self.clock.clone(),
        };
        let (control, thread) =
            spawn_worker(Arc::clone(&queue), sink, config).map_err(BuildError::Spawn)?;
        let guard = ExporterGuard::new(
            Arc::clone(&queue),
            control,
            thread,
            self.shutdown_timeout,
            self.clock.clone(),
        );
        Ok((AppInsightsLayer::new(queue, sampler), guard))
    }

    /// The sink the settings ask for.
    fn sink(&self, sampler: Sampler, ledger: Ledger) -> Result<Box<dyn Sink>, BuildError> {
        if let Some(exporter) = &self.in_memory {
            return Ok(Box::new(Immediate::new(exporter.clone(), ledger)));
        }
        let Some((connection, origin)) = self.resolve_connection_string()? else {
            return Ok(Box::new(Immediate::new(StdoutSink::default(), ledger)));
        };
        let auth = self.auth(&connection, origin)?;
        let config = SinkConfig {
            transport: TransportConfig {
                endpoint: connection.ingestion_endpoint().to_owned(),
                gzip: self.gzip,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            },
            auth,
            context: EnvelopeContext::new(
                connection.instrumentation_key(),
                &self.telemetry,
                sampler.ratio(),
            ),
            policy: Policy::new(self.request_timeout, self.max_retry_memory),
        };
        // Nothing is touched on disk here (an application thread): the
        // worker opens the directory.
        let storage = self.offline_storage.then(|| {
            Storage::new(
                StorageConfig {
                    dir: self
                        .storage_dir
                        .clone()
                        .unwrap_or_else(|| default_storage_dir(connection.instrumentation_key())),
                    max_bytes: self.storage_max_size,
                    retention: self.storage_retention,
                },
                self.clock.clone(),
            )
        });
        let sink =
            AppInsightsSink::new(config, storage, ledger, self.clock.clone()).map_err(|e| {
                BuildError::Transport {
                    reason: e.to_string(),
                }
            })?;
        Ok(Box::new(sink))
    }
}

/// `tracing-appinsights-<ikey>` in the system's temporary directory; the
/// key keeps only the characters of a GUID, so it cannot name another path.
fn default_storage_dir(ikey: &str) -> PathBuf {
    let key: String = ikey
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    std::env::temp_dir().join(format!("tracing-appinsights-{key}"))
}
