//! Assembling the pipeline from the settings: the queue, the sink the
//! settings ask for, the worker thread, the guard and the layer.

use std::sync::Arc;

use tracing_core::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use super::environment::{self, process_env, Defaults};
use super::{Builder, DEFAULT_POOL_IDLE_TIMEOUT};
use crate::appinsights::envelope::EnvelopeContext;
use crate::appinsights::live;
use crate::appinsights::processor::check_properties;
use crate::appinsights::storage::{self, Storage, StorageConfig};
use crate::appinsights::transport::{origin, Transport, TransportConfig};
use crate::appinsights::{AppInsightsSink, Policy, SinkConfig};
use crate::diag::Note;
use crate::error::BuildError;
use crate::layer::sampler::Sampler;
use crate::layer::AppInsightsLayer;
use crate::live::Live;
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
        make: impl FnOnce(&Builder, Sampler, Ledger) -> Result<Made, BuildError>,
    ) -> Result<(AppInsightsLayer<S>, ExporterGuard), BuildError>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut env_notes = Vec::new();
        let mut sampler = self.validate()?;
        let disabled = environment::sdk_disabled(&process_env, &mut env_notes);
        if disabled {
            sampler = Sampler::disabled();
        } else if self.sampler.is_none() {
            if let Some(from_env) = environment::sampler_from_env(&process_env, &mut env_notes) {
                sampler = from_env;
            }
        }
        let queue = Queue::new(self.max_queue_size, self.max_batch_size);
        let queue = Arc::new(queue);
        let (sink, mut notes, live) = if disabled {
            let nothing = Note {
                warn: false,
                text: "Exporter.Disabled: OTEL_SDK_DISABLED is true: nothing is recorded or sent"
                    .into(),
            };
            let sink: Box<dyn Sink> = Box::new(Immediate::new(
                crate::InMemoryExporter::with_capacity(0),
                Ledger::new(Arc::clone(&queue)),
            ));
            (sink, vec![nothing], None)
        } else {
            make(&self, sampler, Ledger::new(Arc::clone(&queue)))?
        };
        notes.extend(env_notes);
        let config = WorkerConfig {
            max_batch_size: self.max_batch_size,
            export_interval: self.export_interval,
            clock: self.clock.clone(),
            startup: Note::emit_if_heard(notes),
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
        let log_sampler = if disabled {
            Sampler::disabled()
        } else {
            self.log_sampler
        };
        Ok((
            AppInsightsLayer::new(queue, sampler, log_sampler, &self.clock, live),
            guard,
        ))
    }

    /// The sink the settings ask for, and what to say about it.
    pub(crate) fn sink(&self, sampler: Sampler, ledger: Ledger) -> Result<Made, BuildError> {
        if let Some(exporter) = &self.in_memory {
            return Ok((
                Box::new(Immediate::new(exporter.clone(), ledger)),
                Vec::new(),
                None,
            ));
        }
        let Some((connection, origin)) = self.resolve_connection_string()? else {
            let note = Note {
                warn: true,
                text: "Exporter.StdoutSink: no connection string was given \
                       (Builder::with_connection_string or APPLICATIONINSIGHTS_CONNECTION_STRING); \
                       span records are printed to stdout"
                    .into(),
            };
            return Ok((
                Box::new(Immediate::new(StdoutSink::default(), ledger)),
                vec![note],
                None,
            ));
        };
        let auth = self.auth(&connection, origin)?;
        let mut notes = Vec::new();
        let telemetry = Defaults::from_env(&process_env, &mut notes).complete(&self.telemetry);
        let policy = Policy::new(self.request_timeout, self.max_retry_memory);
        // Nothing is touched on disk here (an application thread): the
        // worker opens the directory.
        let storage = self.offline_storage.then(|| {
            let name = storage::dir_name(
                connection.instrumentation_key(),
                connection.ingestion_endpoint(),
            );
            let (base, parent_is_ours) = match &self.storage_dir {
                Some(dir) => (dir.clone(), false),
                None => (storage::default_base(), true),
            };
            Storage::new(
                StorageConfig {
                    dir: base.join(name),
                    parent_is_ours,
                    max_bytes: self.storage_max_size,
                    retention: self.storage_retention,
                    max_lease: policy.max_lease(),
                },
                self.clock.clone(),
            )
        });
        let auth_is_bearer = auth.is_bearer();
        let context = EnvelopeContext::new(
            connection.instrumentation_key(),
            &telemetry,
            sampler.ratio(),
        )
        .with_properties(check_properties(&self.properties)?)
        .with_log_location(self.log_location);
        let live_on = self
            .live_metrics
            .unwrap_or_else(|| connection.names_live_endpoint());
        let live = if live_on {
            let transport_config = TransportConfig {
                endpoint: connection.live_endpoint().to_owned(),
                gzip: false,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
                proxy: self.proxy.clone(),
            };
            let transport =
                Transport::new(transport_config.clone()).map_err(|e| BuildError::Transport {
                    reason: e.to_string(),
                })?;
            let shared = Arc::new(Live::default());
            let client = live::Client::new(
                Arc::clone(&shared),
                live::ClientConfig {
                    endpoint: connection.live_endpoint().to_owned(),
                    ikey: connection.instrumentation_key().to_owned(),
                    identity: live::Client::identity(&context),
                    auth: auth.clone(),
                    transport,
                    transport_config,
                },
            );
            Some((shared, client))
        } else {
            None
        };
        let config = SinkConfig {
            transport: TransportConfig {
                endpoint: connection.ingestion_endpoint().to_owned(),
                gzip: self.gzip,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
                proxy: self.proxy.clone(),
            },
            auth,
            context,
            policy,
            processors: self.processors.clone(),
        };
        let mut sink =
            AppInsightsSink::new(config, storage, ledger, self.clock.clone()).map_err(|e| {
                BuildError::Transport {
                    reason: e.to_string(),
                }
            })?;
        let live_endpoint = live
            .as_ref()
            .map(|_| endpoint_host(connection.live_endpoint()));
        let live = match live {
            Some((shared, client)) => {
                sink = sink.with_live(Arc::clone(&shared), client);
                Some(shared)
            }
            None => None,
        };
        let note = Note {
            warn: false,
            text: format!(
                "Exporter.Configured: telemetry goes to {} (instrumentation key {}, {}) {}, \
                 sampler {sampler}, offline storage {}, Live Metrics {}",
                endpoint_host(connection.ingestion_endpoint()),
                connection.shortened_key(),
                if auth_is_bearer {
                    "with Microsoft Entra ID tokens"
                } else {
                    "no Entra ID credential"
                },
                match sink.proxy() {
                    Some(proxy) => format!("through the proxy {proxy}"),
                    None => "directly (no proxy)".to_owned(),
                },
                if self.offline_storage { "on" } else { "off" },
                match &live_endpoint {
                    Some(host) => format!("at {host}"),
                    None => "off".to_owned(),
                },
            ),
        };
        notes.insert(0, note);
        Ok((Box::new(sink), notes, live))
    }
}

/// A sink, and the lines to say about it (where its data goes, what in
/// the environment was ignored).
pub(crate) type Made = (Box<dyn Sink>, Vec<Note>, Option<Arc<Live>>);

/// What a log line may show of an endpoint (see [`origin`]).
fn endpoint_host(endpoint: &str) -> String {
    endpoint
        .parse::<http::Uri>()
        .map_or_else(|_| "an unparsable endpoint".into(), |uri| origin(&uri))
}
