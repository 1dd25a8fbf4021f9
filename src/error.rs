//! Errors: one type per operation (OpenTelemetry's ADR 001): building the
//! exporter, flushing it, shutting it down.

use std::time::Duration;

/// Why [`Builder::build`](crate::Builder::build) could not build the exporter.
///
/// Each variant names the setting to fix. No telemetry exists yet when this
/// is returned, so nothing is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The sampling probability is outside `[0, 1]` or NaN.
    #[error(
        "Sampler::probability({probability}) is invalid: the probability must be between 0 and 1"
    )]
    InvalidSamplingProbability {
        /// The probability given.
        probability: f64,
    },
    /// A setting has a value it cannot take, or contradicts another setting.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The builder method (or environment variable) at fault.
        setting: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The connection string is malformed; the message names the segment
    /// or key at fault (never the instrumentation key itself).
    #[error("invalid connection string from {origin}: {source}")]
    ConnectionString {
        /// Where it came from: the builder method or the environment variable.
        origin: &'static str,
        /// What is wrong with it.
        #[source]
        source: crate::ParseError,
    },
    /// The connection string asks for Microsoft Entra ID (`Authorization=AAD`)
    /// authentication, and there is no credential to get tokens from: give
    /// one with `Builder::with_credential` (feature `entra`), or name the
    /// managed identity with `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`
    /// (feature `managed-identity`).
    #[error(
        "the connection string from {origin} says Authorization=AAD, which needs a Microsoft \
         Entra ID credential: give one with Builder::with_credential (feature `entra`), or set \
         APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD[;ClientId=<client id>] \
         for the managed identity (feature `managed-identity`)"
    )]
    AadNeedsTokenProvider {
        /// Where the connection string came from.
        origin: &'static str,
    },
    /// There is a credential, and the ingestion endpoint is plain `http`
    /// off this machine: a bearer token is never sent in clear. Plain
    /// `http` is allowed to a loopback address only (`127.0.0.0/8`, `::1`,
    /// `localhost`: tests and local viewers).
    #[error(
        "a Microsoft Entra ID token is never sent over plain http, and the ingestion endpoint \
         `{endpoint}` is http:// and not a loopback address; use https://"
    )]
    TokenOverPlainHttp {
        /// The ingestion endpoint (it holds no secret: user information is
        /// refused by the connection string's parser).
        endpoint: String,
    },
    /// The HTTP client for the ingestion endpoint could not be built (for
    /// example, no TLS root certificates could be loaded).
    #[error("could not set up the connection to the ingestion endpoint: {reason}")]
    Transport {
        /// What went wrong.
        reason: String,
    },
    /// The worker thread or its runtime could not be started.
    #[error("could not start the exporter thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why [`ExporterGuard::flush`](crate::ExporterGuard::flush) did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// Not everything was accepted, stored or dropped within the timeout (a
    /// request was still in flight, or storage is off or unwritable and
    /// items wait for a retry). Nothing is lost yet: the worker goes on
    /// exporting them.
    #[error("flush did not finish within {0:?}; the records are still being exported")]
    Timeout(Duration),
    /// The exporter was shut down; there is nothing to flush into.
    #[error("the exporter is shut down")]
    ShutDown,
}

/// Why [`ExporterGuard::shutdown`](crate::ExporterGuard::shutdown) did not
/// finish cleanly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// `shutdown` was already called (or the guard is shutting down).
    #[error("the exporter was already shut down")]
    AlreadyShutDown,
    /// The worker did not finish within the timeout. It is left to finish in
    /// the background; records it cannot export before the process exits
    /// are lost.
    #[error("shutdown did not finish within {0:?}")]
    Timeout(Duration),
    /// The worker thread ended unexpectedly (it panicked); records still
    /// queued are lost.
    #[error("the exporter thread is gone")]
    WorkerGone,
}
