//! [`ServerLayer`]: a server span per incoming HTTP request.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tracing::Span;

use super::{host_and_port, ResponseFuture};
use crate::middleware::{first_forwarded_for, Middleware, ServerRequest};

type RouteFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// A `tower` layer that runs each HTTP request in a server span, the
/// caller's trace context taken from the request headers.
///
/// The span (target [`SERVER_TARGET`](super::SERVER_TARGET), `otel.kind = "server"`, named by
/// the method) has these fields, read by the Request mapping
/// (`docs/mapping.md`):
///
/// | field | from |
/// |---|---|
/// | `http.request.method` | the method |
/// | `http.route` | [`with_route`](Self::with_route), when it knows one |
/// | `url.scheme`, `url.path`, `url.query` | the URI (scheme: the URI's, else `X-Forwarded-Proto`, else `http`) |
/// | `server.address`, `server.port` | the URI's authority, else the `Host` header |
/// | `client.address` | the first `X-Forwarded-For` address, else a [`std::net::SocketAddr`] in the request's extensions |
/// | `user_agent.original` | `User-Agent` |
/// | `http.response.status_code` | the response's status |
/// | `otel.status_code`, `otel.status_description` | `error` for a 5xx or a service error (with its message) |
///
/// The caller's context (`traceparent`/`tracestate`, else `Request-Id`,
/// and `Request-Context`) is attached when the span is created, so its
/// sampled flag decides whether the request is recorded, both ways.
///
/// # Examples
///
/// With axum, the route template is in the request's extensions
/// (`MatchedPath`) when the layer is added with `Router::layer`:
///
/// ```no_run
/// use axum::{extract::MatchedPath, routing::get, Router};
/// use tracing_appinsights::tower::ServerLayer;
///
/// let app: Router = Router::new()
///     .route("/items/{id}", get(|| async { "ok" }))
///     .layer(ServerLayer::new().with_route(|parts| {
///         let path = parts.extensions.get::<MatchedPath>()?;
///         Some(path.as_str().to_owned())
///     }));
/// ```
///
/// Any `tower::Service<http::Request<B>>` can be wrapped:
///
/// ```
/// use tower_layer::Layer;
/// use tracing_appinsights::tower::ServerLayer;
///
/// # #[derive(Clone)] struct MyService;
/// # impl<B> tower_service::Service<http::Request<B>> for MyService {
/// #     type Response = http::Response<String>;
/// #     type Error = std::convert::Infallible;
/// #     type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
/// #     fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
/// #         std::task::Poll::Ready(Ok(()))
/// #     }
/// #     fn call(&mut self, _: http::Request<B>) -> Self::Future {
/// #         std::future::ready(Ok(http::Response::new(String::new())))
/// #     }
/// # }
/// let service = ServerLayer::new()
///     .with_route(|parts| parts.uri.path().starts_with("/items/").then(|| "/items/{id}".into()))
///     .layer(MyService);
/// # drop(service);
/// ```
#[derive(Clone, Default)]
pub struct ServerLayer {
    route: Option<Arc<RouteFn>>,
}

impl ServerLayer {
    /// A layer with no route template (`http.route` stays unset unless
    /// the service records it on [`Span::current`]).
    pub fn new() -> Self {
        ServerLayer::default()
    }

    /// Finds the request's route template (`/items/{id}`, not
    /// `/items/42`): the Request's name becomes `"METHOD route"`, and it
    /// names the operation. Return `None` when there is none.
    pub fn with_route<F>(mut self, route: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.route = Some(Arc::new(route));
        self
    }
}

impl fmt::Debug for ServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerLayer")
            .field("route", &self.route.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl<S> tower_layer::Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Middleware::Server.check_filter();
        ServerService {
            inner,
            route: self.route.clone(),
        }
    }
}

/// The service [`ServerLayer`] makes: see there.
#[derive(Clone)]
pub struct ServerService<S> {
    inner: S,
    route: Option<Arc<RouteFn>>,
}

impl<S: fmt::Debug> fmt::Debug for ServerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResB> tower_service::Service<Request<B>> for ServerService<S>
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

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let route = self.route.as_ref().and_then(|route| route(&parts));
        let (span, mut pending) =
            crate::propagation::with_remote_parent_unused(&parts.headers, || {
                server_span(&parts, route.as_deref())
            });
        Middleware::Server.check_span(&span);
        let request = Request::from_parts(parts, body);
        // A context no span took (the server span is filtered out) stays
        // pending for the service's first span, here and in every poll.
        let inner = crate::middleware::with_pending(&mut pending, || {
            span.in_scope(|| self.inner.call(request))
        });
        ResponseFuture::new(inner, span, 500).with_pending(pending)
    }
}

/// The server span of a request.
fn server_span(parts: &Parts, route: Option<&str>) -> Span {
    #[cfg(feature = "axum")]
    let route = route.or_else(|| {
        let matched = parts.extensions.get::<axum::extract::MatchedPath>()?;
        Some(matched.as_str())
    });
    let uri = &parts.uri;
    let headers = &parts.headers;
    let (host, port) = host_and_port(uri, headers);
    let scheme = uri
        .scheme_str()
        .or_else(|| header(headers, "x-forwarded-proto"))
        .unwrap_or("http");
    let peer;
    let client = match header(headers, "x-forwarded-for").and_then(first_forwarded_for) {
        Some(client) => Some(client),
        None => {
            peer = peer_address(&parts.extensions).map(|a| a.ip().to_string());
            peer.as_deref()
        }
    };
    ServerRequest {
        method: parts.method.as_str(),
        route,
        scheme,
        path: uri.path(),
        query: uri.query(),
        host,
        port,
        client,
        user_agent: header(headers, "user-agent"),
    }
    .span()
}

/// The connection's peer: a [`std::net::SocketAddr`] in the request's
/// extensions, or axum's `ConnectInfo<SocketAddr>` (feature `axum`).
fn peer_address(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    if let Some(address) = extensions.get::<std::net::SocketAddr>() {
        return Some(*address);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        return Some(info.0);
    }
    None
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}
