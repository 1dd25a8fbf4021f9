//! actix-web 4 server middleware (feature `actix-web`).
//!
//! [`RequestTracing`] runs each request an actix-web `App` serves in a
//! **server span**, the one [`tower::ServerLayer`] creates too (target
//! [`targets::HTTP_SERVER`](crate::targets::HTTP_SERVER), level INFO,
//! `otel.kind = "server"`), so it becomes a Request item:
//!
//! | field | from |
//! |---|---|
//! | `http.request.method` | the method |
//! | `http.route` | actix's route template ([`ServiceRequest::match_pattern`]: `/items/{id}`) |
//! | `url.scheme`, `url.path`, `url.query` | the URI (scheme: actix's [`ConnectionInfo`](actix_web::dev::ConnectionInfo), which reads `Forwarded`, `X-Forwarded-Proto` and the TLS state) |
//! | `server.address`, `server.port` | `ConnectionInfo::host` (`Forwarded`, `X-Forwarded-Host`, else the `Host` header, else the URI) |
//! | `client.address` | the first `X-Forwarded-For` address, else the peer's IP |
//! | `user_agent.original` | `User-Agent` |
//! | `http.response.status_code` | the response's status |
//! | `otel.status_code`, `otel.status_description` | `error` for a 5xx (with the handler's error message, when the response carries one) or an error of the inner service |
//!
//! The Request is named `"METHOD route"` (`GET /items/{id}`); a request no
//! resource matches (actix's default service, a 404) by its method alone:
//! never by its path, whose values are unbounded. The route template is
//! known when the span is created, although `App::wrap` middleware runs
//! before routing: actix matches the path against the application's
//! resource map, so the handler's spans and logs carry the operation name
//! too.
//!
//! The caller's context (`traceparent`/`tracestate`, else the legacy
//! `Request-Id`, and `Request-Context`'s `appId`) is attached when the span
//! is created, so its sampled flag decides whether the request is
//! recorded. When a filter disables the server span, the context stays
//! pending for the handler's first span, in whichever poll it is created:
//! the handler still joins the caller's trace (and a start-up warning names
//! the directive to add, `tracing_appinsights::http=info`).
//!
//! # Why not `tracing-actix-web`
//!
//! This is its own middleware rather than a `tracing_actix_web::RootSpanBuilder`:
//! a root span builder only builds the span, so it cannot keep the caller's
//! context pending across the handler's polls when a filter leaves the span
//! out, and `TracingLogger`'s fields are the older semantic-convention names
//! (`http.method`, `http.target`, …). Use one or the other, not both:
//! two server spans per request would be two Request items.
//!
//! # Examples
//!
//! ```no_run
//! use actix_web::{web, App, HttpResponse, HttpServer};
//! use tracing_appinsights::actix_web::RequestTracing;
//!
//! async fn item(id: web::Path<u32>) -> HttpResponse {
//!     tracing::info!(id = *id, "looking the item up");
//!     HttpResponse::Ok().body(format!("item {id}"))
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! actix_web::rt::System::new().block_on(async {
//!     HttpServer::new(|| {
//!         App::new()
//!             .wrap(RequestTracing::new())
//!             .route("/items/{id}", web::get().to(item))
//!     })
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! })
//! # }
//! ```
//!
//! [`tower::ServerLayer`]: https://docs.rs/tracing-appinsights/latest/tracing_appinsights/tower/struct.ServerLayer.html

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::Error;
use tracing::Span;

use crate::middleware::{
    first_forwarded_for, record_error, record_status, split_host_port, with_pending, Middleware,
    ServerRequest,
};
use crate::propagation::{with_remote_context_unused, RemoteContext};

/// A status from which a server span is failed (OpenTelemetry's rule for
/// servers).
const FAIL_AT: u16 = 500;

/// An actix-web middleware that runs each request in a server span, the
/// caller's trace context taken from the request headers: see the
/// [module documentation](self) for its fields.
///
/// Add it with `App::wrap` (it then sees every request of the app, the
/// unrouted ones too) or with `Scope::wrap` / `Resource::wrap` for a part
/// of it.
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use tracing_appinsights::actix_web::RequestTracing;
///
/// let app = App::new()
///     .wrap(RequestTracing::new())
///     .route("/items/{id}", web::get().to(|| async { HttpResponse::Ok().finish() }));
/// # drop(app);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestTracing {
    _private: (),
}

impl RequestTracing {
    /// The middleware.
    pub fn new() -> Self {
        RequestTracing::default()
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestTracing
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestTracingService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        Middleware::Server.check_filter();
        ready(Ok(RequestTracingService { service }))
    }
}

/// The service [`RequestTracing`] wraps the app's service in: see there.
#[derive(Debug)]
pub struct RequestTracingService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestTracingService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let context = remote_context(&request);
        let (span, mut pending) = with_remote_context_unused(context, || server_span(&request));
        Middleware::Server.check_span(&span);
        // A context no span took (the server span is filtered out) stays
        // pending for the handler's first span, here and in every poll.
        let inner = with_pending(&mut pending, || {
            span.in_scope(|| self.service.call(request))
        });
        ResponseFuture {
            inner,
            span,
            pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestTracingService`]: polls the inner
    /// future inside the span and records how the request ended.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        // The caller's context while no span has taken it (the server span
        // was disabled by a filter): the handler's first span takes it.
        pending: Option<RemoteContext>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl<F, B> Future for ResponseFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let inner = this.inner;
        let poll = with_pending(this.pending, || inner.poll(cx));
        let result = ready!(poll);
        record_outcome(this.span, &result);
        Poll::Ready(result)
    }
}

/// Records how the request ended. actix turns a handler's `Err` into a
/// response with the error's status, the error kept in it: a 5xx's
/// message is the status description. An `Err` of the inner service (a
/// middleware's) becomes such a response too, after this one.
fn record_outcome<B>(span: &Span, result: &Result<ServiceResponse<B>, Error>) {
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            record_status(span, status, FAIL_AT);
            if status >= FAIL_AT {
                if let Some(error) = response.response().error() {
                    span.record("otel.status_description", tracing::field::display(error));
                }
            }
        }
        Err(error) => {
            let status = error.as_response_error().status_code().as_u16();
            span.record("http.response.status_code", status);
            record_error(span, error);
        }
    }
}

/// The caller's context from the request headers (actix's header map
/// holds `http` 0.2 values: read through the carrier-generic parser).
fn remote_context(request: &ServiceRequest) -> Option<RemoteContext> {
    let headers = request.headers();
    RemoteContext::from_header_fn(|name| headers.get_all(name).map(|value| value.as_bytes()))
}

/// The server span of a request.
fn server_span(request: &ServiceRequest) -> Span {
    let route = request.match_pattern();
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let peer;
    let client = match header("x-forwarded-for").and_then(first_forwarded_for) {
        Some(client) => Some(client),
        None => {
            peer = request.peer_addr().map(|address| address.ip().to_string());
            peer.as_deref()
        }
    };
    let uri = request.uri();
    // A borrow of the request's extensions: dropped with this function,
    // before the inner service runs (which may borrow them mutably).
    let info = request.connection_info();
    let (host, port) = split_host_port(info.host());
    ServerRequest {
        method: request.method().as_str(),
        route: route.as_deref(),
        scheme: info.scheme(),
        path: uri.path(),
        query: uri.query(),
        host,
        port,
        client,
        user_agent: header("user-agent"),
    }
    .span()
}
