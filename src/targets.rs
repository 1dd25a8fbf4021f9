//! The `tracing` targets this crate's instrumentation and diagnostics use,
//! for filters.
//!
//! The crate's instrumentation (the HTTP server and client middleware of
//! every integration) creates spans under [`HTTP_SERVER`] and
//! [`HTTP_CLIENT`], at level INFO. They are recorded like any application
//! span, so a filter that disables them loses the Request and dependency
//! items, and the trace context they carry. With a per-crate filter such
//! as `RUST_LOG=my_service=debug`, add [`DIRECTIVES`] (see the README's
//! *Filtering* section):
//!
//! ```
//! use tracing_subscriber::EnvFilter;
//!
//! let filter = EnvFilter::new(format!("my_service=debug,{}", tracing_appinsights::targets::DIRECTIVES));
//! # drop(filter);
//! ```
//!
//! Only the exporter's own diagnostics, under exactly [`DIAGNOSTICS`], are
//! never recorded (the exporter never exports its own activity); a crate
//! whose name starts alike (`tracing_appinsights_demo`) is an application
//! like any other.

/// The target of the server spans (one per incoming HTTP request: a
/// Request item).
pub const HTTP_SERVER: &str = "tracing_appinsights::http::server";

/// The target of the client spans (one per outgoing HTTP request: an HTTP
/// dependency item).
pub const HTTP_CLIENT: &str = "tracing_appinsights::http::client";

/// The target of sqlx's query events (one per statement sqlx runs, level
/// DEBUG, WARN when slow), exported as SQL dependencies
/// (`docs/mapping.md`).
pub const SQLX_QUERY: &str = "sqlx::query";

/// The target of the exporter's own diagnostics (its warnings about the
/// connection string, the network, the disk): logged to the application's
/// subscriber, never exported.
pub const DIAGNOSTICS: &str = "tracing_appinsights";

/// The `EnvFilter` directives that keep what the integrations record: the
/// HTTP spans of this crate's middleware (INFO) and sqlx's query events
/// (`sqlx::query`, logged at DEBUG by default), which become SQL
/// dependencies.
pub const DIRECTIVES: &str = "tracing_appinsights::http=info,sqlx::query=debug";
