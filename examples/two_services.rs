//! Two HTTP services on loopback, `frontend` calling `inventory`, each
//! instrumented with the tower layers and its own role name. One request
//! goes through both; then both exporters flush and the program exits.
//!
//! ```sh
//! cargo run --example two_services --features tower
//! ```
//!
//! With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, the portal's
//! end-to-end transaction shows Request(frontend) → Dependency(frontend →
//! inventory) → Request(inventory), and the application map draws
//! `frontend` → `inventory`. Without it, each service prints its records to
//! stdout: the same trace id in all of them, and each record's
//! `parent_span_id` is the `span_id` of the one before.
//!
//! Each service runs on its own thread under its own subscriber, as two
//! processes would.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower_layer::Layer;
use tower_service::Service;
use tracing_appinsights::tower::{ClientLayer, ServerLayer};
use tracing_appinsights::{AppInsightsSpanExt, Builder, ExporterGuard};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

type Body = Full<Bytes>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let (inventory_dispatch, inventory_guard) = telemetry("inventory")?;
    let (frontend_dispatch, frontend_guard) = telemetry("frontend")?;

    let inventory = serve(inventory_dispatch, || {
        route("/items/").layer(Handler(|_request| async {
            tracing::info_span!("count items").in_scope(|| {});
            Ok(Response::new(Body::from("42 items")))
        }))
    })?;
    let inventory_url = format!("http://{}", inventory.addr);
    let frontend = serve(frontend_dispatch, move || {
        let client = ClientLayer::new()
            .layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
        route("/orders/").layer(Handler(move |_request| {
            let mut client = client.clone();
            let url = format!("{inventory_url}/items/42");
            async move { Ok(order(&mut client, url).await) }
        }))
    })?;

    let (status, trace_id) = send(format!("http://{}/orders/7", frontend.addr))?;
    println!("frontend answered {status}; operation (trace) id: {trace_id}");

    // Stopping the services closes their last spans; then export them.
    drop(frontend);
    drop(inventory);
    frontend_guard.flush(Duration::from_secs(10))?;
    inventory_guard.flush(Duration::from_secs(10))?;
    println!(
        "exported: frontend {}, inventory {}",
        frontend_guard.stats().exported,
        inventory_guard.stats().exported
    );
    Ok(())
}

/// A layer for one service (role `role`), in its own subscriber. The
/// connection string comes from the environment; without one, records go
/// to stdout.
fn telemetry(role: &str) -> Result<(tracing::Dispatch, ExporterGuard), BoxError> {
    let (layer, guard) = Builder::new().with_cloud_role(role).build()?;
    // INFO and above: hyper's trace events are not telemetry.
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(LevelFilter::INFO));
    Ok((tracing::Dispatch::new(subscriber), guard))
}

/// The server layer, with the route template of paths under `prefix`.
fn route(prefix: &'static str) -> ServerLayer {
    ServerLayer::new().with_route(move |parts| {
        let id = parts.uri.path().strip_prefix(prefix)?;
        (!id.is_empty()).then(|| format!("{prefix}{{id}}"))
    })
}

/// The frontend's work: ask inventory, answer with the trace id.
async fn order<C>(client: &mut C, url: String) -> Response<Body>
where
    C: Service<Request<Empty<Bytes>>, Response = Response<Incoming>>,
{
    let trace_id = tracing::Span::current().trace_id();
    let request = Request::get(url).body(Empty::new()).expect("valid request");
    let inventory = match client.call(request).await {
        Ok(response) => response.status().to_string(),
        Err(_) => "unreachable".to_owned(),
    };
    let mut response = Response::new(Body::from(format!("inventory: {inventory}")));
    if let Some(id) = trace_id.and_then(|id| id.to_string().parse().ok()) {
        response.headers_mut().insert("x-trace-id", id);
    }
    response
}

/// A tower service from a closure.
#[derive(Clone)]
struct Handler<F>(F);

impl<F, Fut> Service<Request<Incoming>> for Handler<F>
where
    F: FnMut(Request<Incoming>) -> Fut,
    Fut: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Fut {
        (self.0)(request)
    }
}

/// A tower service served by hyper (what `hyper_util`'s
/// `TowerToHyperService` does).
#[derive(Clone)]
struct Hyper<S>(S);

impl<S> hyper::service::Service<Request<Incoming>> for Hyper<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible> + Clone,
    S: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let mut service = self.0.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(request).await
        })
    }
}

/// A service on its own thread; dropping it stops the thread.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves what `make` builds on `127.0.0.1:0`, on a new thread with a
/// current-thread runtime, with `dispatch` as the thread's subscriber.
fn serve<S>(
    dispatch: tracing::Dispatch,
    make: impl FnOnce() -> S + Send + 'static,
) -> std::io::Result<Running>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible> + Clone,
    S: Send + 'static,
    S::Future: Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _default = tracing::dispatcher::set_default(&dispatch);
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let service = make();
            loop {
                let stream = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let service = Hyper(service.clone());
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = connection.await;
                });
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    });
    Ok(Running {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Sends one GET from an uninstrumented client; the status and the
/// `x-trace-id` the frontend answered with.
fn send(url: String) -> Result<(http::StatusCode, String), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let request = Request::get(url).body(Empty::new())?;
        let response =
            tokio::time::timeout(Duration::from_secs(10), client.request(request)).await??;
        let status = response.status();
        let trace_id = response
            .headers()
            .get("x-trace-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        response.into_body().collect().await?;
        Ok((status, trace_id))
    })
}
