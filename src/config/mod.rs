//! [`Builder`]: every setting of the layer and its exporter.

use std::path::PathBuf;
use std::time::Duration;

use tracing_core::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use crate::appinsights::envelope::TelemetrySettings;
use crate::appinsights::processor::{Item, Processors};
use crate::appinsights::transport::ProxySetting;
use crate::error::BuildError;
use crate::layer::sampler::Sampler;
use crate::layer::AppInsightsLayer;
use crate::pipeline::{Clock, ExporterGuard, ManualClock};
use crate::sinks::InMemoryExporter;
use connection_string::ConnectionString;

pub(crate) mod connection_string;
mod credential;
mod environment;
mod wiring;

/// How long an idle connection to the endpoint is kept for reuse.
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Configures and builds an [`AppInsightsLayer`] and its [`ExporterGuard`].
///
/// Anything set in code beats the environment.
///
/// # Default values
///
/// | setting | default |
/// |---|---|
/// | [`with_sampler`](Self::with_sampler) | [`Sampler::always_on`] (every trace) |
/// | [`with_max_queue_size`](Self::with_max_queue_size) | 8192 records ([`Self::DEFAULT_MAX_QUEUE_SIZE`]) |
/// | [`with_max_batch_size`](Self::with_max_batch_size) | 512 records ([`Self::DEFAULT_MAX_BATCH_SIZE`]) |
/// | [`with_export_interval`](Self::with_export_interval) | 5 s ([`Self::DEFAULT_EXPORT_INTERVAL`]) |
/// | [`with_shutdown_timeout`](Self::with_shutdown_timeout) | 5 s ([`Self::DEFAULT_SHUTDOWN_TIMEOUT`]) |
/// | [`with_connection_string`](Self::with_connection_string) | `APPLICATIONINSIGHTS_CONNECTION_STRING`, else none (stdout) |
/// | [`with_instrumentation_key`](Self::with_instrumentation_key) | `APPINSIGHTS_INSTRUMENTATIONKEY`, else none |
/// | `with_credential` (feature `entra`) | the managed identity `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` names (feature `managed-identity`), else none: the instrumentation key alone |
/// | [`with_cloud_role`](Self::with_cloud_role) | `OTEL_SERVICE_NAME`, `service.namespace` + `service.name` of `OTEL_RESOURCE_ATTRIBUTES`, `WEBSITE_SITE_NAME`, `CONTAINER_APP_NAME`, else the executable's name |
/// | [`with_cloud_role_instance`](Self::with_cloud_role_instance) | `service.instance.id`, `WEBSITE_INSTANCE_ID`, `CONTAINER_APP_REPLICA_NAME`, the Kubernetes pod, else the host name |
/// | [`with_application_version`](Self::with_application_version) | `service.version` of `OTEL_RESOURCE_ATTRIBUTES`, else none |
/// | [`with_gzip`](Self::with_gzip) | `true` |
/// | [`with_request_timeout`](Self::with_request_timeout) | 10 s ([`Self::DEFAULT_REQUEST_TIMEOUT`]) |
/// | [`with_connect_timeout`](Self::with_connect_timeout) | 5 s ([`Self::DEFAULT_CONNECT_TIMEOUT`]) |
/// | [`with_max_retry_memory`](Self::with_max_retry_memory) | 32 MiB ([`Self::DEFAULT_MAX_RETRY_MEMORY`]) |
/// | [`with_offline_storage`](Self::with_offline_storage) | `true` |
/// | [`with_storage_dir`](Self::with_storage_dir) | `tracing-appinsights-uid-<user id>` in [`std::env::temp_dir`] (one per user) |
/// | [`with_storage_max_size`](Self::with_storage_max_size) | 50 MiB ([`Self::DEFAULT_STORAGE_MAX_SIZE`]) |
/// | [`with_storage_retention`](Self::with_storage_retention) | 48 h ([`Self::DEFAULT_STORAGE_RETENTION`]) |
/// | sink | Application Insights with a connection string; else stdout, one OpenCensus-style line per record; or an [`InMemoryExporter`] |
///
/// The connection string is taken from, in order: `with_connection_string`,
/// `with_instrumentation_key`, `APPLICATIONINSIGHTS_CONNECTION_STRING`,
/// `APPINSIGHTS_INSTRUMENTATIONKEY`.
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
    /// `None`: from the environment (`OTEL_TRACES_SAMPLER`), else all.
    sampler: Option<Sampler>,
    log_sampler: Sampler,
    max_queue_size: usize,
    max_batch_size: usize,
    export_interval: Duration,
    shutdown_timeout: Duration,
    in_memory: Option<InMemoryExporter>,
    connection_string: Option<Secret>,
    instrumentation_key: Option<Secret>,
    telemetry: TelemetrySettings,
    gzip: bool,
    /// `with_live_metrics`; `None`: on when the connection string names a
    /// Live Metrics endpoint.
    live_metrics: Option<bool>,
    request_timeout: Duration,
    connect_timeout: Duration,
    max_retry_memory: usize,
    offline_storage: bool,
    storage_dir: Option<PathBuf>,
    storage_max_size: u64,
    storage_retention: Duration,
    proxy: ProxySetting,
    clock: Clock,
    /// `with_processor`'s, in order.
    processors: Processors,
    /// `with_property`'s, checked by `build`.
    properties: Vec<(String, String)>,
    log_location: bool,
    #[cfg(feature = "entra")]
    credential: Option<credential::Credential>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Default bound of the queue between the application and the worker.
    pub const DEFAULT_MAX_QUEUE_SIZE: usize = 8192;
    /// Default most records per batch.
    pub const DEFAULT_MAX_BATCH_SIZE: usize = 512;
    /// Default longest wait before a partial batch is exported.
    pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
    /// Default bound on the time dropping the [`ExporterGuard`] may take.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default bound on one HTTP request to the ingestion endpoint.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default bound on opening a connection to the ingestion endpoint.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default most bytes offline storage may hold (50 MiB, as the Python
    /// exporters).
    pub const DEFAULT_STORAGE_MAX_SIZE: u64 = 50 * 1024 * 1024;
    /// Default longest time telemetry is kept in offline storage (48 hours: the
    /// ingestion service refuses older items).
    pub const DEFAULT_STORAGE_RETENTION: Duration = Duration::from_secs(48 * 60 * 60);
    /// Default most bytes of request bodies held in memory for retries (32
    /// MiB); past it, waiting bodies are gzipped, then what waits longest goes
    /// to offline storage.
    pub const DEFAULT_MAX_RETRY_MEMORY: usize = 32 * 1024 * 1024;
    /// The environment variable holding the connection string.
    pub const ENV_CONNECTION_STRING: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";
    /// The environment variable holding a bare instrumentation key (deprecated
    /// by Azure in favour of connection strings, still honoured).
    pub const ENV_INSTRUMENTATION_KEY: &str = "APPINSIGHTS_INSTRUMENTATIONKEY";
    /// The environment variable that asks for a managed identity's
    /// Microsoft Entra ID tokens, `Authorization=AAD[;ClientId=<client id>]`,
    /// as App Service and Functions set it for the other Application
    /// Insights SDKs (read with feature `managed-identity`; without it, a
    /// value is a [`BuildError`]). A credential given in code beats it.
    pub const ENV_AUTHENTICATION_STRING: &str = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING";

    /// A builder with the default values of the table above.
    pub fn new() -> Self {
        Builder {
            sampler: None,
            log_sampler: Sampler::always_on(),
            max_queue_size: Self::DEFAULT_MAX_QUEUE_SIZE,
            max_batch_size: Self::DEFAULT_MAX_BATCH_SIZE,
            export_interval: Self::DEFAULT_EXPORT_INTERVAL,
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
            in_memory: None,
            connection_string: None,
            instrumentation_key: None,
            telemetry: TelemetrySettings::default(),
            processors: Processors::default(),
            properties: Vec::new(),
            log_location: false,
            gzip: true,
            live_metrics: None,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            max_retry_memory: Self::DEFAULT_MAX_RETRY_MEMORY,
            offline_storage: true,
            storage_dir: None,
            storage_max_size: Self::DEFAULT_STORAGE_MAX_SIZE,
            storage_retention: Self::DEFAULT_STORAGE_RETENTION,
            proxy: ProxySetting::FromEnv,
            clock: Clock::System,
            #[cfg(feature = "entra")]
            credential: None,
        }
    }

    /// The Application Insights connection string
    /// (`InstrumentationKey=…;IngestionEndpoint=https://…`), as the Azure
    /// portal shows it. Beats `APPLICATIONINSIGHTS_CONNECTION_STRING`.
    /// It is checked by [`build`](Self::build), whose error names the
    /// segment at fault (never the key itself).
    pub fn with_connection_string(mut self, connection_string: impl Into<String>) -> Self {
        self.connection_string = Some(Secret(connection_string.into()));
        self
    }

    /// A bare instrumentation key (a GUID), sent to the global ingestion
    /// endpoint. Beats both environment variables, but not
    /// [`with_connection_string`](Self::with_connection_string).
    pub fn with_instrumentation_key(mut self, key: impl Into<String>) -> Self {
        self.instrumentation_key = Some(Secret(key.into()));
        self
    }

    /// Sends a Microsoft Entra ID bearer token, from `credential`, with every
    /// request: what an Application Insights resource with local
    /// authentication disabled accepts (the identity needs the
    /// `Monitoring Metrics Publisher` role on it). Any
    /// [`TokenCredential`](azure_core::credentials::TokenCredential) works:
    /// `azure_identity`'s `ManagedIdentityCredential`,
    /// `WorkloadIdentityCredential`, `ClientSecretCredential`,
    /// `DeveloperToolsCredential`, or one of your own. Beats
    /// `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`
    /// ([`ENV_AUTHENTICATION_STRING`](Self::ENV_AUTHENTICATION_STRING)).
    ///
    /// Tokens are asked for the scope `https://monitor.azure.com//.default`,
    /// or the connection string's `AADAudience` followed by `/.default`,
    /// on the exporter's thread (never on yours), and refreshed five minutes
    /// before they expire. While the credential gives none, telemetry waits
    /// in memory and then in offline storage; the first failure is logged as
    /// a warning. A token is never logged, never stored, and never sent over
    /// plain `http` except to a loopback address: with an `http://`
    /// ingestion endpoint elsewhere, [`build`](Self::build) returns
    /// [`BuildError::TokenOverPlainHttp`]. `docs/entra-id.md` has the
    /// details.
    ///
    /// # Examples
    ///
    /// With `azure_identity`'s managed identity (on App Service, Functions,
    /// Container Apps or a VM):
    ///
    /// ```no_run
    /// # #[cfg(feature = "managed-identity")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tracing_subscriber::prelude::*;
    ///
    /// let credential = azure_identity::ManagedIdentityCredential::new(None)?;
    /// let (layer, _guard) = tracing_appinsights::Builder::new()
    ///     .with_credential(credential)
    ///     .build()?;
    /// tracing_subscriber::registry().with(layer).init();
    /// # Ok(()) }
    /// # #[cfg(not(feature = "managed-identity"))]
    /// # fn main() {}
    /// ```
    ///
    /// (`azure_identity`'s credentials need an HTTP client: its default
    /// features bring one. With feature `managed-identity` and
    /// `APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD`, the
    /// exporter makes the managed identity's credential itself, on its own
    /// HTTP client, with no code at all.)
    #[cfg(feature = "entra")]
    #[cfg_attr(docsrs, doc(cfg(feature = "entra")))]
    pub fn with_credential(
        mut self,
        credential: std::sync::Arc<dyn azure_core::credentials::TokenCredential>,
    ) -> Self {
        self.credential = Some(credential::Credential(credential));
        self
    }

    /// `ai.cloud.role`: the service's name on the application map. Beats
    /// the environment (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
    /// then the Azure host's variables; the README's environment table);
    /// without either, the executable's name.
    pub fn with_cloud_role(mut self, role: impl Into<String>) -> Self {
        self.telemetry.cloud_role = Some(role.into());
        self
    }

    /// Adds a telemetry processor: `processor` sees every Application
    /// Insights item on the exporter's thread, after the mapping and the
    /// [`with_property`](Self::with_property) properties, and before the
    /// item is written; it may change the item through the typed accessors
    /// of [`Item`] (name, URL, dependency data, message, result code,
    /// success, properties, tags) and returns `false` to drop it. Several
    /// run in the order they were added; once one drops an item the later
    /// ones do not see it.
    ///
    /// Dropped items are never sent, retried or stored, and are counted in
    /// [`ExporterStats::dropped_by_processor`](crate::ExporterStats::dropped_by_processor).
    /// Every setter applies the schema's limits, and the item is kept under
    /// 64 KB when written. A processor that panics drops the item it was
    /// given (also counted in
    /// [`processor_panics`](crate::ExporterStats::processor_panics)), one
    /// warning is logged, and the exporter goes on. A processor runs on the
    /// exporter's thread: make it quick, and never block in it. The stdout
    /// and in-memory sinks show records, not items: processors do not run
    /// for them. The [`processor`](crate::processor) module has the details.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracing_appinsights::processor::ItemKind;
    ///
    /// let builder = tracing_appinsights::Builder::new().with_processor(|item| {
    ///     // Health checks are noise: drop them.
    ///     !(item.kind() == ItemKind::Request && item.name() == Some("GET /health"))
    /// });
    /// ```
    pub fn with_processor<F>(mut self, processor: F) -> Self
    where
        F: Fn(&mut Item<'_>) -> bool + Send + Sync + 'static,
    {
        self.processors.push(std::sync::Arc::new(processor));
        self
    }

    /// Adds the property `key: value` to every Application Insights item
    /// (`customDimensions` in the portal): a deployment slot, a region, a
    /// build. An item's own property of the same key (a field of its span
    /// or event) wins. The value is cut to 8,192 UTF-16 code units; a key
    /// that is empty or over 150 units makes [`build`](Self::build) fail
    /// with [`BuildError::InvalidSetting`]. Setting a key twice keeps the
    /// last value. Processors see these properties (and may remove them).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = tracing_appinsights::Builder::new()
    ///     .with_property("deployment.slot", "blue")
    ///     .with_property("region", "westeurope");
    /// ```
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Sends where each `log` record was logged (records of the `log`
    /// crate, through tracing-log's `LogTracer`) as the properties
    /// `code.file.path` and `code.line.number`. Off by default: file and
    /// line make every log item larger, and the record's target is already
    /// its `category` property.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = tracing_appinsights::Builder::new().with_log_location(true);
    /// ```
    pub fn with_log_location(mut self, on: bool) -> Self {
        self.log_location = on;
        self
    }

    /// `ai.cloud.roleInstance`: this instance of the service. Beats the
    /// environment (`service.instance.id`, `WEBSITE_INSTANCE_ID`,
    /// `CONTAINER_APP_REPLICA_NAME`, the Kubernetes pod); without either,
    /// the host name.
    pub fn with_cloud_role_instance(mut self, instance: impl Into<String>) -> Self {
        self.telemetry.cloud_role_instance = Some(instance.into());
        self
    }

    /// `ai.application.ver`: the application's version. Beats
    /// `service.version` of `OTEL_RESOURCE_ATTRIBUTES`; without either, none.
    pub fn with_application_version(mut self, version: impl Into<String>) -> Self {
        self.telemetry.application_version = Some(version.into());
        self
    }

    /// Whether request bodies are gzipped (default `true`; the service
    /// accepts both).
    pub fn with_gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// Whether the process sends Live Metrics (the portal's 1-second view:
    /// request, dependency and exception rates, durations, CPU, memory,
    /// sample failures; `docs/live-metrics.md`).
    ///
    /// By default it is on when the connection string names a
    /// `LiveEndpoint` or an `EndpointSuffix` (every connection string the
    /// portal hands out does) and off otherwise, so a connection string
    /// that points ingestion at a local endpoint never calls the public
    /// Live Metrics host. While nobody watches the blade, the process only
    /// pings the service every 5 seconds and the layer pays one relaxed
    /// load per span. Without a connection string (stdout or in-memory
    /// sink) there is no Live Metrics.
    ///
    /// ```
    /// let builder = tracing_appinsights::Builder::new().with_live_metrics(false);
    /// # drop(builder);
    /// ```
    pub fn with_live_metrics(mut self, enabled: bool) -> Self {
        self.live_metrics = Some(enabled);
        self
    }

    /// The longest one request to the ingestion endpoint may take, from
    /// connecting to reading the answer (default 10 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The longest opening a connection may take (default 5 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The most bytes of request bodies kept in memory while they are sent
    /// or wait for a retry (default 32 MiB). Past it, the waiting bodies are
    /// gzipped in memory, and if that is not enough, the batch whose retry
    /// is furthest away goes to offline storage (or, without storage, is
    /// dropped and counted in
    /// [`ExporterStats::dropped_storage_unavailable`](crate::ExporterStats::dropped_storage_unavailable)).
    /// With the queue bound, this bounds the exporter's memory during an
    /// outage.
    pub fn with_max_retry_memory(mut self, bytes: usize) -> Self {
        self.max_retry_memory = bytes;
        self
    }

    /// Whether telemetry that cannot be delivered now is kept on disk and
    /// sent later, by this process or the next one (default `true`, as in
    /// the Python exporters). Without it, telemetry whose retries run out,
    /// or that is unsent at shutdown, is dropped and counted in
    /// [`ExporterStats::dropped_storage_unavailable`](crate::ExporterStats::dropped_storage_unavailable).
    pub fn with_offline_storage(mut self, enabled: bool) -> Self {
        self.offline_storage = enabled;
        self
    }

    /// The directory offline storage keeps its own directory in (default
    /// `tracing-appinsights-uid-<user id>` in the system's temporary
    /// directory, created mode 0700; on Windows `tracing-appinsights`).
    ///
    /// `dir` may be shared with anything else, even be `/tmp`: the exporter
    /// creates one directory in it, `tracing-appinsights-<16 hex digits>`
    /// (a hash of the instrumentation key and the ingestion endpoint, so
    /// the key appears in no path), and never creates, reads, changes or
    /// deletes anything else there, nor changes `dir`'s mode. Both are
    /// created (mode 0700) if missing. Its own directory, when it exists
    /// already, must be a real directory (not a symbolic link) belonging to
    /// the user the application runs as, and not writable by other users,
    /// or storage is unavailable (reported as
    /// `Storage.Unavailable`, counted in
    /// [`ExporterStats::dropped_storage_unavailable`](crate::ExporterStats::dropped_storage_unavailable)):
    /// it is refused, never repaired. Inside it, only files named by the
    /// exporter's own scheme (see `docs/delivery.md`) are touched.
    ///
    /// Processes with the same key and endpoint and the same `dir` share
    /// that directory and never send the same data twice.
    pub fn with_storage_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.storage_dir = Some(dir.into());
        self
    }

    /// The most bytes offline storage may hold (default 50 MiB). When it is
    /// full, new data is dropped (and counted in
    /// [`ExporterStats::dropped_storage_full`](crate::ExporterStats::dropped_storage_full))
    /// and what is stored is kept.
    pub fn with_storage_max_size(mut self, bytes: u64) -> Self {
        self.storage_max_size = bytes;
        self
    }

    /// How long data is kept in offline storage (default 48 hours, the
    /// oldest the ingestion service accepts). Older data is deleted unsent
    /// and counted in
    /// [`ExporterStats::dropped_too_old`](crate::ExporterStats::dropped_too_old).
    pub fn with_storage_retention(mut self, retention: Duration) -> Self {
        self.storage_retention = retention;
        self
    }

    /// Sends through this HTTP proxy, whatever the environment says: an
    /// `http://host:port` URL, with `user:password@` when the proxy wants
    /// credentials (sent as `Proxy-Authorization: Basic`, never logged).
    /// An `https` endpoint is reached through a CONNECT tunnel, so TLS runs
    /// end to end; an `http` one (a local emulator) by absolute-form
    /// requests. Without this setting, `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY` (upper or lower case) are honoured, as
    /// curl reads them. A URL that is not `http://` makes
    /// [`build`](Self::build) fail with [`BuildError::Transport`].
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = tracing_appinsights::Builder::new()
    ///     .with_proxy("http://user:secret@proxy.internal:3128");
    /// assert!(!format!("{builder:?}").contains("secret"));
    /// ```
    pub fn with_proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxySetting::Url(url.into());
        self
    }

    /// Connects straight to the endpoint, ignoring the proxy variables of
    /// the environment.
    pub fn without_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// Which events outside spans (plain log lines, `log` records) are
    /// kept: all of them by default, whatever the trace sampler, as the
    /// Python log handler does. Each kept one carries the percentage this
    /// sampler keeps (its `sampleRate`). Events inside spans follow their
    /// span.
    ///
    /// # Examples
    ///
    /// ```
    /// use tracing_appinsights::{Builder, Sampler};
    ///
    /// // A tenth of the traces, a quarter of the log lines outside them.
    /// let builder = Builder::new()
    ///     .with_sampler(Sampler::fixed_percentage(10.0))
    ///     .with_log_sampler(Sampler::fixed_percentage(25.0));
    /// # drop(builder);
    /// ```
    pub fn with_log_sampler(mut self, sampler: Sampler) -> Self {
        self.log_sampler = sampler;
        self
    }

    /// Which new traces are recorded (default: all of them).
    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
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

    /// Runs the exporter's timers on `clock` instead of the system's, so
    /// that tests of retries, backoff, flush deadlines and storage
    /// retention advance time instead of waiting for it (see
    /// [`ManualClock`]).
    pub fn with_manual_clock(mut self, clock: &ManualClock) -> Self {
        self.clock = Clock::Manual(clock.clone());
        self
    }

    /// Checks every setting; the error names the one to fix.
    fn validate(&self) -> Result<Sampler, BuildError> {
        let sampler = self.sampler.unwrap_or_default().validate()?;
        self.log_sampler.validate()?;
        crate::appinsights::processor::check_properties(&self.properties)?;
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
        if self.request_timeout.is_zero() {
            return invalid("with_request_timeout", "must be longer than zero".into());
        }
        if self.connect_timeout.is_zero() {
            return invalid("with_connect_timeout", "must be longer than zero".into());
        }
        if self.storage_retention.is_zero() {
            return invalid("with_storage_retention", "must be longer than zero".into());
        }
        if self
            .storage_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return invalid(
                "with_storage_dir",
                "must not be empty; use with_offline_storage(false) to turn storage off".into(),
            );
        }
        if self.in_memory.is_some()
            && (self.connection_string.is_some() || self.instrumentation_key.is_some())
        {
            return invalid(
                "with_in_memory_exporter",
                "records cannot both stay in memory and go to the connection string given \
                 with with_connection_string / with_instrumentation_key; choose one"
                    .into(),
            );
        }
        Ok(sampler)
    }

    /// The connection string in force and where it came from, by the
    /// precedence of the table above; `None` when there is none.
    fn resolve_connection_string(
        &self,
    ) -> Result<Option<(ConnectionString, &'static str)>, BuildError> {
        let env = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        let (text, origin) = if let Some(Secret(cs)) = &self.connection_string {
            (cs.clone(), "with_connection_string")
        } else if let Some(Secret(key)) = &self.instrumentation_key {
            (
                key_only(key, "with_instrumentation_key")?,
                "with_instrumentation_key",
            )
        } else if let Some(cs) = env(Self::ENV_CONNECTION_STRING) {
            (cs, Self::ENV_CONNECTION_STRING)
        } else if let Some(key) = env(Self::ENV_INSTRUMENTATION_KEY) {
            (
                key_only(&key, Self::ENV_INSTRUMENTATION_KEY)?,
                Self::ENV_INSTRUMENTATION_KEY,
            )
        } else {
            return Ok(None);
        };
        let parsed: ConnectionString = text
            .parse()
            .map_err(|source| BuildError::ConnectionString { origin, source })?;
        Ok(Some((parsed, origin)))
    }
}

/// A connection string or key as given: kept whole, shown shortened, so
/// that a `Builder` printed with `{:?}` does not show the key.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", connection_string::shorten(&self.0))
    }
}

/// A connection string holding only `key`, refusing a key that would smuggle
/// in more segments.
fn key_only(key: &str, origin: &'static str) -> Result<String, BuildError> {
    if key.contains(';') || key.contains('=') {
        return Err(BuildError::ConnectionString {
            origin,
            source: connection_string::ParseError::MissingInstrumentationKey,
        });
    }
    Ok(format!("InstrumentationKey={}", key.trim()))
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
