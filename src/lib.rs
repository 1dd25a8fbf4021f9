//! Send [`tracing`] spans to Azure Application Insights.
//!
//! *Compiler support: requires rustc 1.85+*
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
//! | other span and event fields | `properties` | values as text; keys over 150 UTF-16 code units dropped, values cut at 8192 |
//! | `follows_from` | `properties["_MS.links"]` | `[{"operation_Id", "id"}]` |
//!
//! Every item of an operation carries `ai.operation.id` (the trace id),
//! `ai.operation.parentId` (the parent span's id) and `ai.operation.name`
//! (the local root's name or `"METHOD route"`), plus `ai.cloud.role`
//! ([`Builder::with_cloud_role`], else `OTEL_SERVICE_NAME`, else the
//! executable's name), `ai.cloud.roleInstance` (else the host name),
//! `ai.internal.sdkVersion` and `sampleRate = 100 * p`. Every schema length
//! limit is applied in UTF-16 code units, as the service counts (an emoji
//! is two), on a char boundary, and every item is kept under the service's
//! 64 KB limit (the largest fields cut first).
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
//!   1 in 10,000 is a trap its documentation works around);
//! * a span with a remote parent follows the caller's sampled flag, both
//!   ways (see [Distributed tracing](#distributed-tracing)).
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
//! # Delivery guarantees
//!
//! Nothing the exporter could have kept is lost silently; what it could not
//! keep is counted by reason (`docs/delivery.md` has the details).
//!
//! * **Retries.** Answers 401, 403, 408, 429, 500, 502, 503 and 504,
//!   timeouts and connection errors are retried with exponential backoff
//!   and full jitter (at most 30 s between attempts, 60 s in all in
//!   memory); `Retry-After` (seconds or an HTTP date, capped at 5 minutes)
//!   is waited out. Of a partial answer (206), only the items with a
//!   retryable status are resent. 307/308 redirects are followed to the
//!   `Location` host (only to `https`, never with user information), at
//!   most 10 in a row and for at most 10 minutes. A daily cap (402, 439)
//!   pauses sending for 5 minutes (or its `Retry-After`) and stores what
//!   waits. Other answers (400, 404, 413, …) drop the batch. Throttling or
//!   failing answers in a row pause all sending, so a struggling endpoint
//!   is probed, not hammered.
//! * **Never blocking.** Sends run in the background (4 to 16 at once)
//!   while the worker keeps draining the queue, so a failing endpoint never
//!   stops spans from being accepted; an endpoint that answers but more
//!   slowly than the application produces leaves the records in the queue
//!   (counted as `dropped_queue_full` past it). Memory is bounded: the queue by
//!   [`Builder::with_max_queue_size`], request bodies waiting for a retry by
//!   [`Builder::with_max_retry_memory`] (32 MiB).
//! * **Offline storage**, on by default: what cannot be sent in time (its
//!   retries ran out, memory is full, or a flush or the shutdown reached its
//!   deadline) is written as JSON-lines blobs to a private directory, one
//!   per instrumentation key and endpoint, named by a hash
//!   (`tracing-appinsights-<16 hex digits>`), in
//!   [`Builder::with_storage_dir`] (which is otherwise left alone) or by
//!   default in a per-user directory of the temporary directory (at most
//!   50 MiB, kept at most 48 hours), and sent later, in the background
//!   while the endpoint is healthy or by the next run. Leases let several
//!   processes share the directory without sending a blob twice. [`Builder::with_offline_storage`]`(false)` turns
//!   it off.
//! * **Flush and shutdown.** [`ExporterGuard::flush`] returns when what was
//!   queued before it was accepted, stored or dropped;
//!   [`ExporterGuard::shutdown`] (and dropping the guard) sends with the time
//!   it has and stores what is left, returning in time even when the
//!   endpoint is dead.
//! * **Accounting.** [`ExporterStats`] counts telemetry items (a span is one
//!   item, and so is every event), and each is in exactly one place: in the
//!   queue, in memory, accepted, in storage, or dropped (queue full, after
//!   shutdown, rejected by the service, too old, no room in storage, no
//!   usable storage, corrupt, past a span's annotation bound in the stdout
//!   and in-memory sinks); [`ExporterStats::balances`] checks it. Parts of
//!   items cut at a bound are counted too (see the limits below).
//! * **What can still be lost or duplicated:** a process killed (SIGKILL)
//!   loses what was in its queue and memory, not what was stored; a request
//!   that timed out may have been accepted, so its retry can duplicate it.
//!
//! # Special fields
//!
//! These span fields are read into the record instead of its attributes:
//!
//! | field | effect |
//! |---|---|
//! | `otel.kind` | [`SpanKind`](record::SpanKind): `server`, `client`, `producer`, `consumer`, `internal` |
//! | `otel.name` | replaces the span's name |
//! | `otel.status_code` | `ok` or `error` |
//! | `otel.status_description` | the status message |
//! | `error` | a recorded `&dyn Error` (or a string, or `true`) marks the span failed, with the error's message |
//!
//! The field `ai.request.source` ([`FIELD_REQUEST_SOURCE`]) is an ordinary
//! attribute that a server span's Request item takes as its `source`; the
//! layer sets it from the caller's `Request-Context: appId=…`.
//!
//! Inside events, `message` is the event's text, an `error` field recorded
//! as `&dyn Error` (or an `exception.message` field) marks the enclosing
//! span failed, and events with `message.type = "SENT"` or `"RECEIVED"` are
//! kept as [`MessageEvent`](record::MessageEvent)s. Values of the wrong type for a special field
//! stay ordinary attributes.
//!
//! # The record
//!
//! | [`SpanData`] field | from |
//! |---|---|
//! | `name` | the span's name, or `otel.name` |
//! | `context` | trace id (random for a root, else the parent's), span id (random), sampled flag |
//! | `parent_span_id` | the parent span's id |
//! | `kind` | `otel.kind`; else server for a span with a remote parent; else internal |
//! | `attributes` | the span's fields, typed, at most 32 (oldest evicted, counted) |
//! | `annotations` | events inside the span, at most 32 (stdout and in-memory sinks; Application Insights gets every event as an item of its own) |
//! | `message_events` | events with a `message.type`, at most 128 |
//! | `links` | `Span::follows_from`, at most 32 |
//! | `status` | `otel.status_code`, `error`, error events |
//! | `child_span_count` | sampled children created under the span |
//! | `same_process_as_parent_span` | `Some(true)` for a local parent, `Some(false)` for a remote one |
//! | `sampled_remotely` | the trace was recorded on a remote caller's sampled flag |
//!
//! String values are kept up to 8192 characters and event messages up to
//! 32768, cut on a char boundary; Application Insights items cut them
//! further where needed, to the same limits counted in UTF-16 code units as
//! the service counts them (`docs/mapping.md`).
//!
//! Every bound the layer and its sinks apply, and where what passes it is
//! counted:
//!
//! | bound | limit | past it | counted in |
//! |---|---|---|---|
//! | attributes per span or event | [`MAX_ATTRIBUTES`](record::MAX_ATTRIBUTES) (32) | oldest evicted | `Attributes::dropped`, [`ExporterStats::dropped_attributes`] |
//! | annotations per span (stdout, in memory) | [`MAX_ANNOTATIONS`](record::MAX_ANNOTATIONS) (32) | oldest evicted (Application Insights gets them all) | `SpanData::dropped_annotations`, [`ExporterStats::dropped_annotations`] |
//! | message events per span | [`MAX_MESSAGE_EVENTS`](record::MAX_MESSAGE_EVENTS) (128) | oldest evicted | `SpanData::dropped_message_events`, [`ExporterStats::dropped_message_events`] |
//! | links per span | [`MAX_LINKS`](record::MAX_LINKS) (32) | oldest evicted | `SpanData::dropped_links`, [`ExporterStats::dropped_links`] |
//! | events held for open spans (stdout, in memory) | 65,536 | the oldest span's events shown on their own, as `EventData` | nothing lost |
//! | sampled spans alive in one table bucket | 8 (8,192 in all) | state kept in the registry's extensions | [`ExporterStats::table_overflows`] (nothing lost) |
//! | unsampled spans alive that Live Metrics counts, in one bucket of its table | 8 (8,192 in all) | kept in the registry's extensions | [`ExporterStats::table_overflows`] (nothing lost) |
//! | records in the queue | [`Builder::with_max_queue_size`] (8,192) | dropped | [`ExporterStats::dropped_queue_full`] |
//! | text of an Application Insights item (names, tags, properties, messages, …) | the schema's, in UTF-16 code units (`docs/mapping.md`) | cut on a char boundary (a property key: dropped) | nothing |
//! | an Application Insights item's JSON | 64,000 bytes | the largest text fields and property values cut to one size, just enough (larger properties that cannot be cut dropped) | the item's `tai.truncated` property |
//!
//! # Distributed tracing
//!
//! An operation that crosses services is one end-to-end transaction in
//! Application Insights when its trace context crosses with it. The crate
//! speaks W3C Trace Context (`traceparent`, `tracestate`) and, so that
//! services using older Application Insights SDKs join, their `Request-Id`
//! and `Request-Context` headers (`docs/distributed-tracing.md` has the
//! formats and rules).
//!
//! * **In:** create the span that handles a request inside
//!   [`with_remote_parent`]: it takes the caller's trace id, its parent id
//!   is the caller's span id, it is a server span unless it names another
//!   `otel.kind`, and it is recorded exactly when the caller's sampled flag
//!   says so. [`AppInsightsSpanExt::set_parent_from_headers`] does the same
//!   for a span that already exists, if it is called before the span is
//!   entered (the method's docs say what an unsampled span loses then).
//!   Invalid or absent headers leave the span a root; nothing panics.
//! * **Out:** [`AppInsightsSpanExt::inject_context`] writes the span's
//!   `traceparent`, `tracestate` and `Request-Id` into outgoing headers,
//!   also for unsampled spans (flags `00`), so the callee decides alike.
//! * **Ids:** [`AppInsightsSpanExt::trace_id`] and
//!   [`span_id`](AppInsightsSpanExt::span_id) read a span's ids, for logs,
//!   error pages and response headers.
//!
//! ```
//! use tracing_appinsights::{with_remote_parent, AppInsightsSpanExt};
//!
//! fn handle(request: &http::Request<()>) -> http::HeaderMap {
//!     let span = with_remote_parent(request.headers(), || {
//!         tracing::info_span!(
//!             "GET /orders/{id}",
//!             http.request.method = "GET",
//!             http.route = "/orders/{id}",
//!         )
//!     });
//!     let _entered = span.enter();
//!     // A call to another service: a client span, its context injected.
//!     let call = tracing::info_span!(
//!         "GET /items/{id}",
//!         otel.kind = "client",
//!         http.request.method = "GET",
//!         url.full = "http://inventory.internal/items/42",
//!     );
//!     let mut outgoing = http::HeaderMap::new();
//!     call.inject_context(&mut outgoing);
//!     outgoing
//! }
//! # handle(&http::Request::new(()));
//! ```
//!
//! With the `tower` feature, [`tower::ServerLayer`] and
//! [`tower::ClientLayer`] do all of this for HTTP services and clients. With
//! axum (the route template comes from axum's `MatchedPath`):
//!
//! ```no_run
//! # #[cfg(feature = "tower")]
//! # mod app {
//! use axum::{extract::MatchedPath, routing::get, Router};
//! use tracing_appinsights::tower::ServerLayer;
//!
//! async fn order() -> &'static str {
//!     "ok"
//! }
//!
//! pub fn router() -> Router {
//!     Router::new()
//!         .route("/orders/{id}", get(order))
//!         .layer(ServerLayer::new().with_route(|parts| {
//!             Some(parts.extensions.get::<MatchedPath>()?.as_str().to_owned())
//!         }))
//! }
//! # }
//! ```
//!
//! (`examples/two_services.rs` runs the same layers with plain hyper.)
//!
//! # Application map
//!
//! The map draws one node per role and one edge per call between roles:
//!
//! * each service names its role with [`Builder::with_cloud_role`] (else
//!   `OTEL_SERVICE_NAME`, else the executable's name) and its instance with
//!   [`Builder::with_cloud_role_instance`] (else the host name): the
//!   `ai.cloud.role` and `ai.cloud.roleInstance` tags of every item;
//! * the caller's client span becomes a RemoteDependency item whose
//!   `target` is the callee's `host[:port]` (default ports omitted);
//! * the callee's Request item has the caller's `ai.operation.id` and, as
//!   `ai.operation.parentId`, the dependency's `id`: that link draws the
//!   edge from the caller's dependency to the callee's role;
//! * a caller sending `Request-Context: appId=…` is named in the Request's
//!   `source`.
//!
//! A trace recorded because its caller sampled it carries `sampleRate` 100
//! (the caller's rate is not known), not this service's rate.
//!
//! # Microsoft Entra ID
//!
//! A resource with local authentication disabled accepts only Microsoft
//! Entra ID tokens. With feature `entra`, `Builder::with_credential` takes
//! any `azure_core::credentials::TokenCredential`; with feature
//! `managed-identity`, `APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD`
//! ([`Builder::ENV_AUTHENTICATION_STRING`]) makes the managed identity's
//! credential, as the other Application Insights SDKs do on App Service and
//! Functions. Every request then carries `Authorization: Bearer …` for
//! `https://monitor.azure.com//.default` (or the connection string's
//! `AADAudience` and `/.default`). Tokens are fetched and refreshed on the
//! exporter's thread, five minutes before they expire; while none can be
//! had, telemetry waits in memory, then in offline storage. A 401 drops the
//! token and resends with a new one; a 403 backs off. A token is never
//! logged, stored, or sent over plain `http` except to a loopback address
//! ([`BuildError::TokenOverPlainHttp`]). `docs/entra-id.md` has the details.
//!
//! # Feature flags
//!
//! | feature | what |
//! |---|---|
//! | `webpki-roots` (default) | trust the Mozilla roots bundled by `webpki-roots` |
//! | `native-roots` | trust the operating system's certificate store |
//! | `tower` | [`tower::ServerLayer`] and [`tower::ClientLayer`] (adds `tower-layer`, `tower-service`, `pin-project-lite`) |
//! | `reqwest` | `reqwest::AppInsightsMiddleware`, a `reqwest_middleware::Middleware` (adds `reqwest` without TLS, `reqwest-middleware`, `async-trait`) |
//! | `actix-web` | `actix_web::RequestTracing`, an actix-web 4 server middleware (adds `actix-web` without default features, `pin-project-lite`) |
//! | `entra` | Microsoft Entra ID bearer tokens from any Azure SDK credential: `Builder::with_credential` (adds `azure_core`; rustc 1.88) |
//! | `managed-identity` | `APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD[;ClientId=…]` makes the managed identity's credential (implies `entra`; adds `azure_identity`) |
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
//! The minimum supported Rust version is 1.85; raising it is not a breaking
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

#[cfg(feature = "actix-web")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix-web")))]
pub mod actix_web;
mod aligned;
mod appinsights;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench;
mod config;
mod diag;
mod error;
mod layer;
mod live;
#[cfg(any(feature = "tower", feature = "reqwest", feature = "actix-web"))]
mod middleware;
mod pipeline;
mod propagation;
pub mod record;
#[cfg(feature = "reqwest")]
pub mod reqwest;
mod sinks;
pub mod targets;
mod time;
#[cfg(feature = "tower")]
pub mod tower;
#[cfg(any(feature = "tower", feature = "reqwest"))]
mod url_template;

pub use appinsights::processor;
pub use config::connection_string::{Authorization, ConnectionString, ParseError};
pub use config::{layer, Builder};
pub use error::{BuildError, FlushError, ShutdownError};
pub use layer::sampler::Sampler;
pub use layer::AppInsightsLayer;
pub use pipeline::{ExporterGuard, ExporterStats, ManualClock};
pub use propagation::{
    with_remote_parent, AppInsightsSpanExt, RemoteContext, FIELD_REQUEST_SOURCE,
};
pub use record::{type_name_of, SpanData, SpanId, TraceId};
pub use sinks::InMemoryExporter;

/// The README's examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
