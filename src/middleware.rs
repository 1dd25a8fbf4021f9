//! What the crate's HTTP middleware (features `tower`, `reqwest` and
//! `actix-web`) share: the start-up warning when the subscriber's filter
//! disables its spans (said once per target, whichever middleware notices
//! first), and the server span every server middleware creates
//! ([`ServerRequest`]) and records the outcome on.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::diag::TARGET;
use crate::targets::{HTTP_CLIENT, HTTP_SERVER};

/// Which middleware's spans a start-up warning is about.
#[derive(Clone, Copy)]
pub(crate) enum Middleware {
    /// Only the `tower` and `actix-web` features have a server middleware.
    #[cfg_attr(not(any(feature = "tower", feature = "actix-web")), allow(dead_code))]
    Server,
    /// Only the `tower` and `reqwest` features have a client middleware.
    #[cfg_attr(not(any(feature = "tower", feature = "reqwest")), allow(dead_code))]
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

/// Runs `f` with the caller's context that no span has taken yet (the
/// server span was filtered out) pending for the first span `f` creates;
/// leaves in `pending` what is still untaken after it, for the next step of
/// the same request (its next poll). Without one, `f` runs as is.
#[cfg(any(feature = "tower", feature = "actix-web"))]
pub(crate) fn with_pending<R>(
    pending: &mut Option<crate::RemoteContext>,
    f: impl FnOnce() -> R,
) -> R {
    match pending.take() {
        Some(context) => {
            let (result, unused) = context.in_scope_unused(f);
            *pending = unused;
            result
        }
        None => f(),
    }
}

/// What a server span is made of, read from an incoming request by each
/// server middleware from its own request type: one field list for every
/// integration (`docs/mapping.md` reads them).
#[cfg(any(feature = "tower", feature = "actix-web"))]
pub(crate) struct ServerRequest<'a> {
    pub(crate) method: &'a str,
    /// The route template (`/items/{id}`), when the router knows one.
    pub(crate) route: Option<&'a str>,
    pub(crate) scheme: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) port: Option<u16>,
    /// The client's address (the first proxy's view, else the peer).
    pub(crate) client: Option<&'a str>,
    pub(crate) user_agent: Option<&'a str>,
}

#[cfg(any(feature = "tower", feature = "actix-web"))]
impl ServerRequest<'_> {
    /// The request's server span (target [`HTTP_SERVER`], level INFO,
    /// named by the method), its outcome fields left `Empty` for
    /// [`record_status`] and [`record_error`]. Create it inside the
    /// caller's context (`with_remote_context_unused`).
    pub(crate) fn span(&self) -> tracing::Span {
        use tracing::field::Empty;
        let method = self.method;
        tracing::info_span!(
            target: HTTP_SERVER,
            "HTTP request",
            otel.kind = "server",
            otel.name = method,
            http.request.method = method,
            http.route = self.route,
            url.scheme = self.scheme,
            url.path = self.path,
            url.query = self.query,
            server.address = self.host,
            server.port = self.port,
            client.address = self.client,
            user_agent.original = self.user_agent,
            http.response.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        )
    }
}

/// The client's address as the first proxy saw it: the first entry of an
/// `X-Forwarded-For` value, `None` when it is empty.
#[cfg(any(feature = "tower", feature = "actix-web"))]
pub(crate) fn first_forwarded_for(value: &str) -> Option<&str> {
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// The host and port of a `Host`-style value (`inventory:9000`,
/// `[::1]:443`, `shop.example`); `(None, None)` when it is not one.
#[cfg(any(feature = "tower", feature = "actix-web"))]
pub(crate) fn split_host_port(value: &str) -> (Option<&str>, Option<u16>) {
    match value.parse::<http::uri::Authority>() {
        Ok(authority) => {
            let port = authority.port_u16();
            // `host()` borrows from the parsed value: find it in the text.
            let name = authority.host();
            let start = value.find(name).unwrap_or(0);
            (value.get(start..start + name.len()), port)
        }
        Err(_) => (None, None),
    }
}

/// Records an HTTP status on a middleware's span, marked failed from
/// `fail_at` on (500 for servers, 400 for clients: OpenTelemetry's rules).
#[cfg(any(feature = "tower", feature = "actix-web", feature = "reqwest"))]
pub(crate) fn record_status(span: &tracing::Span, status: u16, fail_at: u16) {
    span.record("http.response.status_code", status);
    if status >= fail_at {
        span.record("otel.status_code", "error");
    }
}

/// Marks a middleware's span failed, with the error's message.
#[cfg(any(feature = "tower", feature = "actix-web", feature = "reqwest"))]
pub(crate) fn record_error(span: &tracing::Span, error: &dyn std::fmt::Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", tracing::field::display(error));
}
