//! The start-up warning of the crate's HTTP middleware (features `tower`
//! and `reqwest`) when the subscriber's filter disables its spans: said
//! once per target, whichever middleware notices first.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::diag::TARGET;
use crate::targets::{HTTP_CLIENT, HTTP_SERVER};

/// Which middleware's spans a start-up warning is about.
#[derive(Clone, Copy)]
pub(crate) enum Middleware {
    /// Only the `tower` feature has a server middleware.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    Server,
    Client,
}

static SERVER_WARNED: AtomicBool = AtomicBool::new(false);
static CLIENT_WARNED: AtomicBool = AtomicBool::new(false);

impl Middleware {
    fn warned(self) -> &'static AtomicBool {
        match self {
            Middleware::Server => &SERVER_WARNED,
            Middleware::Client => &CLIENT_WARNED,
        }
    }

    /// Whether the current subscriber's filter enables the spans.
    fn enabled(self) -> bool {
        match self {
            Middleware::Server => tracing::enabled!(target: HTTP_SERVER, tracing::Level::INFO),
            Middleware::Client => tracing::enabled!(target: HTTP_CLIENT, tracing::Level::INFO),
        }
    }

    /// When the middleware is built: warns if a subscriber is installed and
    /// its filter disables the spans (else the first call checks).
    pub(crate) fn check_filter(self) {
        if self.warned().load(Ordering::Relaxed) {
            return;
        }
        let installed =
            tracing::dispatcher::get_default(|d| !d.is::<tracing_core::subscriber::NoSubscriber>());
        if installed && !self.enabled() {
            self.warn_disabled();
        }
    }

    /// On a call whose span is disabled: warns once (a process without a
    /// subscriber has every span disabled, and nothing to warn).
    #[inline]
    pub(crate) fn check_span(self, span: &tracing::Span) {
        if span.is_disabled() && !self.warned().load(Ordering::Relaxed) {
            self.check_filter();
        }
    }

    /// Says it through the subscriber when it listens to this crate's
    /// diagnostics, else on standard error: the filter that disables the
    /// spans often leaves out the diagnostics too. Once, at start-up, never
    /// per item.
    fn warn_disabled(self) {
        if self.warned().swap(true, Ordering::Relaxed) {
            return;
        }
        let (target, lost) = match self {
            Middleware::Server => (
                HTTP_SERVER,
                "incoming requests are not recorded as Request items (the handlers still join the caller's trace)",
            ),
            Middleware::Client => (
                HTTP_CLIENT,
                "outgoing calls are not recorded as dependencies (the current span's context is sent instead)",
            ),
        };
        let message = format_args!(
            "the subscriber's filter disables the spans of target `{target}` (level INFO): {lost}; add the directive `tracing_appinsights::http=info` (all of `tracing_appinsights::targets::DIRECTIVES`)"
        );
        if tracing::enabled!(target: TARGET, tracing::Level::WARN) {
            tracing::warn!(target: TARGET, "{message}");
        } else {
            eprintln!("WARN {TARGET}: {message}");
        }
    }
}
