//! `tower` middleware for HTTP servers and clients (feature `tower`).
//!
//! * [`ServerLayer`] wraps an HTTP service (axum `Router`, a hyper service
//!   adapted to tower, …): each request runs in a **server span** created
//!   with the caller's trace context from the request headers (see
//!   [`with_remote_parent`](crate::with_remote_parent)), with the semantic
//!   fields the Request item is built from; the response's status is
//!   recorded, and a 5xx or a service error marks the span failed.
//! * [`ClientLayer`] wraps an HTTP client service (`hyper_util`'s legacy
//!   `Client`, …): each call runs in a **client span** (a dependency) whose
//!   context is injected into the request headers (`traceparent`,
//!   `tracestate`, `Request-Id`), so the server on the other side joins the
//!   operation; a status of 400 or more, or a client error, marks it failed.
//!
//! Both only need `http::Request<B>` / `http::Response<B>`, whatever the
//! body types. The span ends when the response head is ready (the body
//! streams after it).
//!
//! The spans have the targets [`SERVER_TARGET`] and [`CLIENT_TARGET`] at
//! level INFO, so filters can select them.

mod client;
mod server;

pub use crate::url_template::UrlTemplate;
pub use client::{ClientLayer, ClientService};
pub use server::{ServerLayer, ServerService};

/// The target of the server spans of [`ServerLayer`]
/// ([`targets::HTTP_SERVER`](crate::targets::HTTP_SERVER)).
pub const SERVER_TARGET: &str = crate::targets::HTTP_SERVER;
/// The target of the client spans of [`ClientLayer`]
/// ([`targets::HTTP_CLIENT`](crate::targets::HTTP_CLIENT)).
pub const CLIENT_TARGET: &str = crate::targets::HTTP_CLIENT;

pin_project_lite::pin_project! {
    /// The response future of [`ServerService`] and [`ClientService`]: polls
    /// the inner future inside the span and records how the call ended, a
    /// status from `fail_at` on marking it failed (500 for servers, 400 for
    /// clients: OpenTelemetry's rules).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        fail_at: u16,
        // The caller's context while no span has taken it: the server span
        // was disabled by a filter, so the first span the service creates
        // becomes the caller's child instead.
        pending: Option<crate::RemoteContext>,
    }
}

impl<F> ResponseFuture<F> {
    fn new(inner: F, span: tracing::Span, fail_at: u16) -> Self {
        ResponseFuture {
            inner,
            span,
            fail_at,
            pending: None,
        }
    }

    fn with_pending(mut self, pending: Option<crate::RemoteContext>) -> Self {
        self.pending = pending;
        self
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl<F, ResB, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<ResB>, E>>,
    E: std::fmt::Display,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let inner = this.inner;
        let poll = crate::middleware::with_pending(this.pending, || inner.poll(cx));
        let result = std::task::ready!(poll);
        record_outcome(this.span, &result, *this.fail_at);
        std::task::Poll::Ready(result)
    }
}

/// Records how a call ended on its span: the HTTP status, marked failed
/// from `fail_at` on (500 for servers, 400 for clients, OpenTelemetry's
/// rules), or the service's error with its message.
fn record_outcome<B, E: std::fmt::Display>(
    span: &tracing::Span,
    result: &Result<http::Response<B>, E>,
    fail_at: u16,
) {
    match result {
        Ok(response) => crate::middleware::record_status(span, response.status().as_u16(), fail_at),
        Err(error) => crate::middleware::record_error(span, error),
    }
}

/// The host and port a request is addressed to: the URI's authority, else
/// the `Host` header.
fn host_and_port<'a>(
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
) -> (Option<&'a str>, Option<u16>) {
    if let Some(authority) = uri.authority() {
        return (Some(authority.host()), authority.port_u16());
    }
    match headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        Some(host) => crate::middleware::split_host_port(host),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_from_the_uri_or_the_host_header() {
        let mut headers = http::HeaderMap::new();
        let abs: http::Uri = "http://shop.example:8080/x".parse().unwrap();
        assert_eq!(
            host_and_port(&abs, &headers),
            (Some("shop.example"), Some(8080))
        );
        let rel: http::Uri = "/x?y=1".parse().unwrap();
        assert_eq!(host_and_port(&rel, &headers), (None, None));
        headers.insert("host", "inventory:9000".parse().unwrap());
        assert_eq!(
            host_and_port(&rel, &headers),
            (Some("inventory"), Some(9000))
        );
        headers.insert("host", "[::1]:443".parse().unwrap());
        assert_eq!(host_and_port(&rel, &headers), (Some("[::1]"), Some(443)));
        headers.insert("host", "bad host".parse().unwrap());
        assert_eq!(host_and_port(&rel, &headers), (None, None));
    }
}
