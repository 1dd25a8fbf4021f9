//! Send [`tracing`] spans to Azure Application Insights.
//!
//! *Compiler support: requires rustc 1.80+*
//!
//! Add one [`tracing_subscriber::Layer`] to your subscriber, annotate your
//! functions with `#[instrument]`, and the spans become OpenCensus-style
//! [`SpanData`] records. A background thread batches them and exports them;
//! with no connection string configured, it prints each record to stdout,
//! one line per span, as OpenCensus does by default.
//!
//! This is the Rust counterpart of Python's `opencensus-ext-azure` (Tracer +
//! ProbabilitySampler + AzureExporter).
//!
//! # Usage
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! #[tracing::instrument]
//! fn value_prompt(value: &str) {
//!     println!("{value}");
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (layer, guard) = tracing_appinsights::layer()?;
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(layer)
//!     .init();
//!
//! value_prompt("4");
//!
//! // Dropping the guard exports what is queued (bounded by a timeout).
//! drop(guard);
//! # Ok(()) }
//! ```
//!
//! # How spans map to telemetry
//!
//! With a connection string (`APPLICATIONINSIGHTS_CONNECTION_STRING` or
//! [`Builder::with_connection_string`]), each record becomes Application
//! Insights items, POSTed gzipped to `{IngestionEndpoint}/v2.1/track`.
//! `docs/mapping.md` has every rule, field by field.
//!
//! | record | item | key fields |
//! |---|---|---|
//! | span with `otel.kind` `server` / `consumer` (or a remote parent) | `Request` | `id` = span id; `name` = `"METHOD route"` or the span name; `url`; `responseCode` = HTTP status or `"0"`; `success` = not an error and status < 400 |
//! | span with `otel.kind` `client` / `producer` | `RemoteDependency` | `name` = `"METHOD path"` for HTTP; `type` = `HTTP`, the database (`SQL` family), the messaging system, `Queue Message \| <system>`; `target` = `host[:port]` (default ports omitted), `host\|db`; `data` = URL or statement |
//! | other spans | `RemoteDependency` of `type` `InProc` | `name` = the span name |
//! | event inside a sampled span | `Message` (`severityLevel` from the level) | `ai.operation.parentId` = the span's id |
//! | event with an `error` (`&dyn Error`, or `#[instrument(err)]`) or `exception.*` fields | `Exception` | `typeName`, `message`, `stack` = the source chain |
//! | event outside any span | `Message` / `Exception` | no operation |
//! | other span and event fields | `properties` | values as text; keys over 150 characters dropped, values cut at 8192 characters |
//! | `follows_from` | `properties["_MS.links"]` | `[{"operation_Id", "id"}]` |
//!
//! Every item of an operation carries `ai.operation.id` (the trace id),
//! `ai.operation.parentId` (the parent span's id) and `ai.operation.name`
//! (the local root's name or `"METHOD route"`), plus `ai.cloud.role`
//! ([`Builder::with_cloud_role`], else `OTEL_SERVICE_NAME`, else the
//! executable's name), `ai.cloud.roleInstance` (else the host name),
//! `ai.internal.sdkVersion` and `sampleRate = 100 * p`. Every schema length
//! limit is applied on a char boundary and every item is kept under the
//! service's 64 KB limit.
//!
//! # Sampling
//!
//! The decision is made once per trace, when its root span is created
//! (`on_new_span`), and every child inherits it:
//!
//! * a new root applies the [`Sampler`]: [`Sampler::probability`] uses
//!   OpenCensus' rule on the trace id (its low 8 bytes, big-endian, sampled
//!   when `<= floor(p * u64::MAX)`), so every service using the rule agrees;
//! * the default is [`Sampler::always_on`] (OpenCensus' own default of
//!   1 in 10,000 is a trap its documentation works around).
//!
//! An unsampled span costs almost nothing: it visits no field, stores
//! nothing and allocates nothing (see `benches/layer.rs`).
//!
//! # Flushing and shutdown
//!
//! [`ExporterGuard::flush`] exports everything queued before the call and
//! waits for it, bounded by a timeout. [`ExporterGuard::shutdown`] (or
//! dropping the guard) exports what is queued and stops the worker, bounded
//! by a timeout; it never hangs. Records produced while the queue is full,
//! or after shutdown, are dropped and counted in [`ExporterGuard::stats`].
//! A process killed before shutdown loses what was queued.
//!
//! # Special fields
//!
//! These span fields are read into the record instead of its attributes:
//!
//! | field | effect |
//! |---|---|
//! | `otel.kind` | [`SpanKind`]: `server`, `client`, `producer`, `consumer`, `internal` |
//! | `otel.name` | replaces the span's name |
//! | `otel.status_code` | `ok` or `error` |
//! | `otel.status_description` | the status message |
//! | `error` | a recorded `&dyn Error` (or a string, or `true`) marks the span failed, with the error's message |
//!
//! Inside events, `message` is the event's text, an `error` field recorded
//! as `&dyn Error` (or an `exception.message` field) marks the enclosing
//! span failed, and events with `message.type = "SENT"` or `"RECEIVED"` are
//! kept as [`MessageEvent`]s. Values of the wrong type for a special field
//! stay ordinary attributes.
//!
//! # The record
//!
//! | [`SpanData`] field | from |
//! |---|---|
//! | `name` | the span's name, or `otel.name` |
//! | `context` | trace id (random for a root, else the parent's), span id (random), sampled flag |
//! | `parent_span_id` | the parent span's id |
//! | `kind` | `otel.kind`; else internal |
//! | `attributes` | the span's fields, typed, at most 32 (oldest evicted, counted) |
//! | `annotations` | events inside the span, at most 32 |
//! | `message_events` | events with a `message.type`, at most 128 |
//! | `links` | `Span::follows_from`, at most 32 |
//! | `status` | `otel.status_code`, `error`, error events |
//! | `child_span_count` | sampled children created under the span |
//! | `same_process_as_parent_span` | `Some(true)` for a local parent |
//!
//! String values are kept up to 8192 characters and event messages up to
//! 32768 (the service's limits), cut on a char boundary.
//!
//! # Configuration
//!
//! See [`Builder`] for every setting and its default.
//!
//! # Never tracing itself
//!
//! Nothing that happens on the exporter's thread, and no event of this
//! crate's own target, becomes a record; those diagnostics still reach your
//! other layers (such as `fmt`).
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.80; raising it is not a breaking
//! change but is noted in the changelog.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
// `deny`, not `forbid`: the layer's `downcast_raw` (an `unsafe fn` of the
// `Layer` trait) is the one allowed exception, for the propagation API.
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod bench_support;
mod config;
mod connection_string;
mod envelope;
mod error;
mod exporter;
mod ids;
mod layer;
mod propagation;
mod sampler;
mod span_data;
mod text;
mod time_fmt;
mod visitor;

pub use config::{
    layer, Builder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_EXPORT_INTERVAL, DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE, DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT, ENV_CONNECTION_STRING, ENV_INSTRUMENTATION_KEY,
};
pub use config::{DEFAULT_MAX_RETRY_MEMORY, DEFAULT_STORAGE_MAX_SIZE, DEFAULT_STORAGE_RETENTION};
pub use connection_string::{Authorization, ConnectionString, ParseError};
pub use error::{BuildError, FlushError, ShutdownError};
pub use exporter::{ExporterGuard, ExporterStats, InMemoryExporter, DEFAULT_IN_MEMORY_CAPACITY};
pub use ids::{SpanId, TraceId};
pub use layer::AppInsightsLayer;
pub use propagation::{
    with_remote_parent, AppInsightsSpanExt, RemoteContext, FIELD_REQUEST_SOURCE,
};
pub use sampler::Sampler;
pub use span_data::{
    Annotation, AttributeValue, Attributes, ErrorValue, EventData, Link, LinkType, MessageEvent,
    MessageEventKind, SpanContext, SpanData, SpanKind, Status, StatusCode, TraceOptions,
    MAX_ANNOTATIONS, MAX_ATTRIBUTES, MAX_ATTRIBUTE_VALUE_CHARS, MAX_LINKS, MAX_MESSAGE_CHARS,
    MAX_MESSAGE_EVENTS,
};
pub use text::Text;

/// The README's examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
