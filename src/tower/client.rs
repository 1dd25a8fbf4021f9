//! [`ClientLayer`]: a dependency span per outgoing HTTP request, its
//! context injected into the request headers.

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tracing::field::{display, Empty};
use tracing::Span;

use super::{host_and_port, ResponseFuture, CLIENT_TARGET};
use crate::middleware::Middleware;
use crate::AppInsightsSpanExt;

/// A `tower` layer that runs each outgoing HTTP request in a client span (a
/// RemoteDependency item) and injects the span's context into the request
/// headers, so the service called joins the operation.
///
/// The span (target [`CLIENT_TARGET`], `otel.kind = "client"`, named by the
/// method, a child of the current span) has `http.request.method`,
/// `url.full` (or `url.path` for a URI without scheme and authority),
/// `url.template` (the request's [`UrlTemplate`](super::UrlTemplate)
/// extension, else the template derived from the path by
/// [`UrlTemplate::from_path`](super::UrlTemplate::from_path): the
/// dependency's name is `"METHOD <template>"`),
/// `server.address` and `server.port` (the URI's authority, else the `Host`
/// header: the dependency's `target`, which the application map draws as
/// the callee), and `http.response.status_code`; a status of 400 or more,
/// or an error of the client, sets `otel.status_code = "error"` (with the
/// error's message).
///
/// The headers written are `traceparent`, `tracestate` (when the trace
/// carries one) and `Request-Id`, also for an unsampled span (flags `00`),
/// so the callee makes the same decision.
///
/// # Examples
///
/// ```no_run
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_layer::Layer;
/// use tower_service::Service;
/// use tracing_appinsights::tower::ClientLayer;
///
/// # async fn call() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
/// let mut client = ClientLayer::new().layer(client);
/// let request = http::Request::get("http://inventory.internal/items/42").body(Empty::new())?;
/// let response = client.call(request).await?;
/// # drop(response); Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientLayer {
    _private: (),
}

impl ClientLayer {
    /// The layer.
    pub fn new() -> Self {
        ClientLayer::default()
    }
}

impl<S> tower_layer::Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Middleware::Client.check_filter();
        ClientService { inner }
    }
}

/// The service [`ClientLayer`] makes: see there.
#[derive(Clone, Debug)]
pub struct ClientService<S> {
    inner: S,
}

impl<S, B, ResB> tower_service::Service<Request<B>> for ClientService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResB>>,
    S::Error: fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let span = client_span(&request);
        if span.is_disabled() {
            // Filtered out: the callee still joins the trace, as a child of
            // the span making the call.
            Middleware::Client.check_span(&span);
            Span::current().inject_context(request.headers_mut());
        } else {
            span.inject_context(request.headers_mut());
        }
        let inner = span.in_scope(|| self.inner.call(request));
        ResponseFuture::new(inner, span, 400)
    }
}

/// The client span of an outgoing request.
fn client_span<B>(request: &Request<B>) -> Span {
    let method = request.method().as_str();
    let uri = request.uri();
    let (host, port) = host_and_port(uri, request.headers());
    let absolute = uri.scheme().is_some() && uri.authority().is_some();
    let (full, path) = match absolute {
        true => (Some(display(uri)), None),
        false => (None, Some(uri.path())),
    };
    let template = crate::url_template::of_request(request.extensions(), uri.path());
    tracing::info_span!(
        target: CLIENT_TARGET,
        "HTTP request",
        otel.kind = "client",
        otel.name = method,
        http.request.method = method,
        url.full = full,
        url.path = path,
        url.template = &*template,
        server.address = host,
        server.port = port,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}
