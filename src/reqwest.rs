//! reqwest middleware (feature `reqwest`): [`AppInsightsMiddleware`] runs
//! each request of a `reqwest_middleware::ClientWithMiddleware` in a client
//! span (an HTTP RemoteDependency item) and injects the span's trace context
//! into the request headers, so the service called joins the operation.
//!
//! ```no_run
//! use reqwest_middleware::ClientBuilder;
//! use tracing_appinsights::reqwest::{AppInsightsMiddleware, UrlTemplate};
//!
//! # async fn call() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(AppInsightsMiddleware::new())
//!     .build();
//! // A dependency named `GET /items/{id}` (the template derived from the path) …
//! let response = client.get("http://inventory.internal/items/42").send().await?;
//! # drop(response);
//! // … or named by a template of your own.
//! let response = client
//!     .get("http://inventory.internal/items/apple")
//!     .with_extension(UrlTemplate::new("/items/{name}"))
//!     .send()
//!     .await?;
//! # drop(response); Ok(()) }
//! ```
//!
//! The span has the target [`CLIENT_TARGET`] at level INFO, so filters can
//! select it (see [`targets`](crate::targets)).

use std::borrow::Cow;
use std::fmt;

use ::reqwest::{Request, Response, Url};
use http::Extensions;
use reqwest_middleware::{Next, Result};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::middleware::{record_error, record_status, Middleware};
use crate::url_template;
use crate::AppInsightsSpanExt;

pub use crate::url_template::UrlTemplate;

/// The target of the client spans of [`AppInsightsMiddleware`]
/// ([`targets::HTTP_CLIENT`](crate::targets::HTTP_CLIENT)).
pub const CLIENT_TARGET: &str = crate::targets::HTTP_CLIENT;

/// A `reqwest_middleware::Middleware` that runs each outgoing request in a
/// client span (a RemoteDependency item of type `HTTP`) and injects the
/// span's context into the request headers.
///
/// The span (target [`CLIENT_TARGET`], level INFO, `otel.kind = "client"`,
/// named by the method, a child of the current span) has
///
/// * `http.request.method`;
/// * `url.full`: the URL with its query, without `user:password@` (the
///   dependency's `data`; removing secrets from a query is the job of the
///   layer's processors, not of the middleware);
/// * `url.template`: the request's [`UrlTemplate`] extension when it has
///   one, else the template derived from the path by
///   [`UrlTemplate::from_path`] (ids become `{id}`, the query goes): the
///   dependency's name is `"METHOD <template>"`;
/// * `server.address` and `server.port` (the URL's host and port, the
///   scheme's default when none is written): the dependency's `target`,
///   which the application map draws as the callee;
/// * `http.response.status_code`; a status of 400 or more sets
///   `otel.status_code = "error"`, and so does an error of the client or
///   of a later middleware, with its message and the messages of its
///   sources, `: `-separated, as `otel.status_description`.
///
/// The headers written are `traceparent` and `tracestate` (removed when the
/// trace carries none), also for an unsampled span (flags `00`) so that the
/// callee makes the same decision, and `Request-Id` for callees using older
/// Application Insights SDKs only when asked
/// ([`with_request_id`](Self::with_request_id)). The span ends when the
/// response head has arrived (the body streams after it).
///
/// Add it last (`ClientBuilder::with` in order) to have one span per
/// attempt of a retry middleware added before it, first for one span
/// around all the attempts.
///
/// When a filter disables the span, the request still carries the current
/// span's context, and one warning says what is lost.
///
/// # Examples
///
/// ```no_run
/// use reqwest_middleware::ClientBuilder;
/// use tracing_appinsights::reqwest::AppInsightsMiddleware;
///
/// let client = ClientBuilder::new(reqwest::Client::new())
///     .with(AppInsightsMiddleware::new().with_request_id(true))
///     .build();
/// # drop(client);
/// ```
#[derive(Clone, Debug, Default)]
pub struct AppInsightsMiddleware {
    request_id: bool,
}

impl AppInsightsMiddleware {
    /// The middleware: `traceparent` and `tracestate`, no `Request-Id`.
    /// Warns once if a subscriber is installed whose filter disables the
    /// spans.
    pub fn new() -> Self {
        Middleware::Client.check_filter();
        AppInsightsMiddleware::default()
    }

    /// Whether to write the legacy `Request-Id` header
    /// (`|<trace id>.<span id>.`) too, for callees using Application
    /// Insights SDKs that do not read `traceparent` (default `false`).
    pub fn with_request_id(mut self, request_id: bool) -> Self {
        self.request_id = request_id;
        self
    }

    /// Writes `span`'s context into `request`'s headers.
    fn inject(&self, span: &Span, request: &mut Request) {
        let Some(context) = span.span_context() else {
            return;
        };
        if self.request_id {
            crate::propagation::inject(&context, request.headers_mut());
        } else {
            crate::propagation::inject_w3c(&context, request.headers_mut());
        }
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for AppInsightsMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let span = client_span(&request, extensions);
        if span.is_disabled() {
            // Filtered out: the callee still joins the trace, as a child of
            // the span making the call.
            Middleware::Client.check_span(&span);
            self.inject(&Span::current(), &mut request);
        } else {
            self.inject(&span, &mut request);
        }
        let result = next.run(request, extensions).instrument(span.clone()).await;
        record_outcome(&span, &result);
        result
    }
}

/// The client span of an outgoing request.
fn client_span(request: &Request, extensions: &Extensions) -> Span {
    let method = request.method().as_str();
    let url = request.url();
    let template = url_template::of_request(extensions, url.path());
    let full = without_credentials(url);
    tracing::info_span!(
        target: CLIENT_TARGET,
        "HTTP request",
        otel.kind = "client",
        otel.name = method,
        http.request.method = method,
        url.full = full.as_str(),
        url.template = &*template,
        server.address = url.host_str(),
        server.port = url.port_or_known_default(),
        http.response.status_code = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// `url` without `user:password@` (credentials never go into telemetry);
/// borrowed when it has none.
fn without_credentials(url: &Url) -> Cow<'_, Url> {
    if url.username().is_empty() && url.password().is_none() {
        return Cow::Borrowed(url);
    }
    let mut url = url.clone();
    // Both fail only for URLs that cannot have credentials at all.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Cow::Owned(url)
}

/// Records how the call ended: the status, failed from 400 on
/// (OpenTelemetry's rule for clients), or the error with its sources.
fn record_outcome(span: &Span, result: &Result<Response>) {
    match result {
        Ok(response) => record_status(span, response.status().as_u16(), 400),
        Err(error) => record_error(span, &Chain(error)),
    }
}

/// An error's message, then its sources', `: `-separated (reqwest's own
/// message, "error sending request for url (…)", says little by itself).
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_left_out_of_the_url() {
        let url: Url = "https://user:secret@shop.example:8443/items/42?x=1"
            .parse()
            .unwrap();
        assert_eq!(
            without_credentials(&url).as_str(),
            "https://shop.example:8443/items/42?x=1"
        );
        let url: Url = "http://shop.example/items".parse().unwrap();
        assert!(matches!(without_credentials(&url), Cow::Borrowed(_)));
    }

    #[test]
    fn an_error_says_its_sources() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("connection refused"));
        assert_eq!(
            Chain(&error).to_string(),
            "error sending request: connection refused"
        );
    }
}
