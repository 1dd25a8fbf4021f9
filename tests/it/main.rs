//! The integration tests of `tracing-appinsights`: one test binary, one
//! module per subject, and the helpers they share in [`support`].
//!
//! What the suite covers, from the outside of the crate:
//!
//! - the layer's records: [`layer_records`], [`events`] (each an item of its
//!   own), [`sampling`],
//!   [`remote_parent`], [`bad_input`], [`composition`] (beside `fmt` and
//!   filters), [`alloc`] (allocations on the application thread);
//! - the envelopes on the wire: [`export`], [`schema`], [`instrument_fields`]
//!   (`#[instrument(ret, err)]`, exception types, status messages), [`http_requests`]
//!   (a golden request in `tests/it/snapshots`), [`processors`] (telemetry
//!   processors, `with_property`, custom events);
//! - delivery: [`delivery`] (status codes, retries, outages, bounds),
//!   [`endpoint_trouble`] (quotas, redirects, partial answers),
//!   [`delivery_diagnostics`], [`offline_storage`] (restarts, shared
//!   directories, limits), [`worker`] (flush, shutdown, queue),
//!   [`shutdown_bounds`] (a resolver or a sink that never answers);
//! - Live Metrics: [`live`] (counters, documents, configurations,
//!   redirects, a misbehaving service);
//! - the suite's own fakes: [`live_fake`] (the Live Metrics service);
//! - configuration: [`connection_env`], [`startup`] (what `build` says),
//!   [`proxies`], [`entra`] (Microsoft Entra ID tokens, features `entra`
//!   and `managed-identity`);
//! - propagation: [`propagation_props`] (property tests of the parsers);
//! - the `tower` feature: [`tower_layers`], [`distributed`] (two services),
//!   [`filtering`] (filters that leave the middleware out, the own-target
//!   rule, the start-up warning; axum's route and address with `axum`);
//! - the `actix-web` feature: [`actix`] (a real actix-web server behind a
//!   tower frontend: one operation, legacy callers, failures, filters, 404s);
//! - the `reqwest` feature: [`reqwest_client`] (headers a loopback server
//!   receives, the dependencies on the wire);
//! - the documentation: [`quickstart`] (the example's output), [`readme`].
//!
//! Run everything with `cargo test --all-features`; one module with, e.g.,
//! `cargo test --all-features --test it delivery::`, one test with
//! `cargo test --all-features --test it -- --exact delivery::retry_after_is_waited_out`.
//!
//! The tests share one process. A test that sets the global subscriber or
//! environment variables runs its body in a child process of its own
//! ([`support::child`]); the counting allocator of [`alloc`] counts per
//! thread.

mod support;

// The frontend in front of the actix backend is the tower layers.
#[cfg(all(feature = "actix-web", feature = "tower"))]
mod actix;
mod alloc;
mod bad_input;
mod composition;
mod connection_env;
mod delivery;
mod delivery_diagnostics;
#[cfg(feature = "tower")]
mod distributed;
mod endpoint_trouble;
mod entra;
mod events;
mod export;
#[cfg(feature = "tower")]
mod filtering;
#[cfg(all(feature = "axum", feature = "reqwest", feature = "actix-web"))]
mod full_stack;
mod http_requests;
mod instrument_fields;
mod layer_records;
mod live;
mod live_fake;
mod log_records;
mod offline_storage;
mod processors;
mod propagation_props;
mod proxies;
mod quickstart;
mod readme;
mod remote_parent;
#[cfg(feature = "reqwest")]
mod reqwest_client;
mod sampling;
mod schema;
mod shutdown_bounds;
mod sqlx;
mod startup;
#[cfg(feature = "tower")]
mod tower_layers;
mod worker;
