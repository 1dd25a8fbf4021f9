//! The `actix-web` feature: `RequestTracing` in a real actix-web 4 server
//! on loopback. A tower/hyper `frontend` (the tower layers) calls an actix
//! `backend`, both exporting to one fake ingestion endpoint: one operation.
//! Then what the backend alone records: a legacy `Request-Id` caller,
//! failures, a filter that leaves the server span out, the 404 naming.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use http::Request;
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tracing_appinsights::actix_web::RequestTracing;
use tracing_appinsights::record::{AttributeValue, SpanKind};
use tracing_appinsights::tower::{ClientLayer, ServerLayer};
use tracing_appinsights::{targets, Builder, ExporterGuard, InMemoryExporter, Sampler, SpanData};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

use crate::support::tower::{send, serve, ServiceFn};
use crate::support::{data, find, schema, tag, FakeIngestion};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// An actix-web server on its own thread (an actix `System`), one worker
/// under `dispatch` as its default; dropping it stops the server and
/// waits for the thread, so every span is closed.
struct Actix {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl Actix {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Actix {
    fn drop(&mut self) {
        // The stop command is sent at once; the thread ends when it is done.
        drop(self.handle.stop(true));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `App::new().wrap(RequestTracing::new()).configure(routes)` on
/// `127.0.0.1:0`.
fn serve_actix<F>(dispatch: tracing::Dispatch, routes: F) -> Actix
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            // The factory runs on the worker's thread: the subscriber is
            // that thread's default for the rest of its life.
            let server = HttpServer::new(move || {
                std::mem::forget(tracing::dispatcher::set_default(&dispatch));
                App::new()
                    .wrap(RequestTracing::new())
                    .configure(routes.clone())
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(2)
            .listen(listener)
            .unwrap()
            .run();
            handle_tx.send(server.handle()).unwrap();
            let _ = server.await;
        });
    });
    let handle = handle_rx.recv().unwrap();
    Actix {
        addr,
        handle,
        thread: Some(thread),
    }
}

/// The backend's routes: an item (a child span and a log line in it),
/// failures, and no default service (actix answers 404).
fn backend_routes(config: &mut web::ServiceConfig) {
    config
        .route(
            "/items/{id}",
            web::get().to(|id: web::Path<String>| async move {
                // A first poll with no span, as a handler awaiting first.
                tokio::task::yield_now().await;
                tracing::info_span!(target: "my_service", "load item").in_scope(|| {
                    tracing::info!(target: "my_service", id = id.as_str(), "item loaded");
                });
                HttpResponse::Ok().body(format!("item {id}"))
            }),
        )
        .route(
            "/fail",
            web::get().to(|| async {
                Err::<HttpResponse, _>(actix_web::error::ErrorInternalServerError("database down"))
            }),
        )
        .route(
            "/bad",
            web::get().to(|| async { HttpResponse::InternalServerError().finish() }),
        );
}

/// A layer exporting to `ingestion` under `role`, always sampling.
fn layer(ingestion: &FakeIngestion, role: &str) -> (tracing::Dispatch, ExporterGuard) {
    let (layer, guard) = Builder::new()
        .with_connection_string(ingestion.connection_string())
        .with_offline_storage(false)
        .with_cloud_role(role)
        .with_sampler(Sampler::always_on())
        .build()
        .unwrap();
    // hyper-util's trace events and actix-server's own INFO logs (its
    // workers starting and stopping) would be Message items.
    let layer = layer.with_filter(EnvFilter::new("info,actix_server=off"));
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, guard)
}

/// Flushes every guard and returns all their envelopes, checked against
/// the schema.
fn envelopes(ingestion: &FakeIngestion, guards: &[&ExporterGuard]) -> Vec<Value> {
    let mut expected = 0;
    for guard in guards {
        guard.flush(Duration::from_secs(10)).unwrap();
        expected += guard.stats().queued as usize;
    }
    let envelopes = ingestion.wait_for_envelopes(expected, Duration::from_secs(10));
    assert_eq!(envelopes.len(), expected);
    schema::assert_valid(&envelopes);
    envelopes
}

fn get(url: String) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

#[test]
fn a_tower_frontend_and_an_actix_backend_make_one_operation() {
    let ingestion = FakeIngestion::start();
    let (fe_dispatch, fe_guard) = layer(&ingestion, "frontend");
    let (be_dispatch, be_guard) = layer(&ingestion, "backend");
    let backend = serve_actix(be_dispatch, backend_routes);
    let backend_url = backend.url();
    let frontend = serve(fe_dispatch, move || {
        let client = ClientLayer::new()
            .layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
        ServerLayer::new()
            .with_route(|_| Some("/orders/{id}".into()))
            .layer(ServiceFn(move |_request| {
                let mut client = client.clone();
                let url = format!("{backend_url}/items/42");
                async move {
                    let status = match client.call(get(url)).await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 599,
                    };
                    Ok(http::Response::new(Full::from(format!(
                        "backend said {status}"
                    ))))
                }
            }))
    });

    let (status, _, body) = send(get(format!("{}/orders/7", frontend.url())));
    assert_eq!(status, 200);
    assert_eq!(body, "backend said 200");
    let backend_addr = backend.addr;
    drop(frontend);
    drop(backend);
    let envelopes = envelopes(&ingestion, &[&fe_guard, &be_guard]);
    assert_eq!(envelopes.len(), 5, "{envelopes:#?}");

    let fe_request = find(&envelopes, "Request", "frontend", "GET /orders/{id}");
    let dependency = find(
        &envelopes,
        "RemoteDependency",
        "frontend",
        "GET /items/{id}",
    );
    let be_request = find(&envelopes, "Request", "backend", "GET /items/{id}");
    let be_step = find(&envelopes, "RemoteDependency", "backend", "load item");
    let be_log = find(&envelopes, "Message", "backend", "item loaded");

    let operation_id = tag(fe_request, "ai.operation.id");
    assert!(operation_id.is_string());
    for e in &envelopes {
        assert_eq!(
            tag(e, "ai.operation.id"),
            operation_id,
            "one operation: {e:#}"
        );
    }
    assert_eq!(
        tag(be_request, "ai.operation.parentId"),
        data(dependency, "id"),
        "the backend's request is the frontend's dependency's child"
    );
    assert_eq!(
        data(be_request, "url").as_str().unwrap(),
        format!("http://{backend_addr}/items/42")
    );
    assert_eq!(data(be_request, "responseCode"), "200");
    assert_eq!(data(be_request, "success"), true);
    assert_eq!(tag(be_request, "ai.operation.name"), "GET /items/{id}");
    assert_eq!(
        tag(be_step, "ai.operation.parentId"),
        data(be_request, "id")
    );
    for child in [be_step, be_log] {
        assert_eq!(
            tag(child, "ai.operation.name"),
            "GET /items/{id}",
            "the backend's items carry its Request's operation name: {child:#}"
        );
    }
}

#[test]
fn a_legacy_request_id_joins_the_callers_trace() {
    let ingestion = FakeIngestion::start();
    let (dispatch, guard) = layer(&ingestion, "backend");
    let backend = serve_actix(dispatch, backend_routes);
    let request = Request::get(format!("{}/items/42", backend.url()))
        .header("request-id", format!("|{CALLER_TRACE}.{CALLER_SPAN}."))
        .body(Empty::new())
        .unwrap();
    assert_eq!(send(request).0, 200);
    drop(backend);
    let envelopes = envelopes(&ingestion, &[&guard]);
    let request = find(&envelopes, "Request", "backend", "GET /items/{id}");
    assert_eq!(tag(request, "ai.operation.id"), CALLER_TRACE);
    let parent = tag(request, "ai.operation.parentId").as_str().unwrap();
    assert!(parent.contains(CALLER_SPAN), "{parent}");
    for e in &envelopes {
        assert_eq!(tag(e, "ai.operation.id"), CALLER_TRACE, "{e:#}");
    }
}

#[test]
fn a_handler_error_and_a_500_fail_the_request() {
    let ingestion = FakeIngestion::start();
    let (dispatch, guard) = layer(&ingestion, "backend");
    let backend = serve_actix(dispatch, backend_routes);
    assert_eq!(send(get(format!("{}/fail", backend.url()))).0, 500);
    assert_eq!(send(get(format!("{}/bad", backend.url()))).0, 500);
    drop(backend);
    let envelopes = envelopes(&ingestion, &[&guard]);
    for name in ["GET /fail", "GET /bad"] {
        let request = find(&envelopes, "Request", "backend", name);
        assert_eq!(data(request, "responseCode"), "500", "{request:#}");
        assert_eq!(data(request, "success"), false, "{request:#}");
    }
}

/// Runs the backend under `registry().with(EnvFilter::new(filter))` and
/// the layer with the in-memory exporter, sends `requests`, and returns
/// the spans exported.
fn spans_under(filter: &str, requests: Vec<Request<Empty<Bytes>>>) -> (Vec<SpanData>, u16) {
    let exporter = InMemoryExporter::new();
    let (layer, guard) = Builder::new()
        .with_in_memory_exporter(exporter.clone())
        .with_sampler(Sampler::always_on())
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(EnvFilter::new(filter))
            .with(layer),
    );
    let backend = serve_actix(dispatch, backend_routes);
    let port = backend.addr.port();
    for mut request in requests {
        let url = format!("{}{}", backend.url(), request.uri());
        *request.uri_mut() = url.parse().unwrap();
        send(request);
    }
    drop(backend);
    guard.shutdown(Duration::from_secs(10)).unwrap();
    (exporter.spans(), port)
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a AttributeValue> {
    span.attributes.get(key)
}

fn with_caller(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .header("user-agent", "probe/1.0")
        .body(Empty::new())
        .unwrap()
}

#[test]
fn a_filtered_out_server_span_still_joins_the_handler_to_the_caller() {
    let (spans, _) = spans_under("my_service=debug", vec![with_caller("/items/42")]);
    let names: Vec<_> = spans.iter().map(|s| &*s.name).collect();
    assert_eq!(names, ["load item"], "no server span: {spans:#?}");
    let load = &spans[0];
    assert_eq!(load.context.trace_id.to_string(), CALLER_TRACE);
    assert_eq!(load.parent_span_id.unwrap().to_string(), CALLER_SPAN);
    assert_eq!(
        load.kind,
        SpanKind::Server,
        "a remote parent's child is a Request"
    );
}

#[test]
fn the_server_span_has_the_tower_layers_fields() {
    let filter = format!("my_service=debug,{}", targets::DIRECTIVES);
    let (spans, port) = spans_under(&filter, vec![with_caller("/items/42?full=1")]);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = spans
        .iter()
        .find(|s| s.target == targets::HTTP_SERVER)
        .unwrap();
    let load = spans.iter().find(|s| s.name == "load item").unwrap();
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.context.trace_id.to_string(), CALLER_TRACE);
    assert_eq!(server.parent_span_id.unwrap().to_string(), CALLER_SPAN);
    assert_eq!(load.parent_span_id, Some(server.context.span_id));
    assert_eq!(load.kind, SpanKind::Internal);
    assert_eq!(server.operation_name, "GET /items/{id}");
    assert_eq!(load.operation_name, "GET /items/{id}");
    let text = |key| attribute(server, key).and_then(AttributeValue::as_str);
    assert_eq!(text("http.request.method"), Some("GET"));
    assert_eq!(text("http.route"), Some("/items/{id}"));
    assert_eq!(text("url.scheme"), Some("http"));
    assert_eq!(text("url.path"), Some("/items/42"));
    assert_eq!(text("url.query"), Some("full=1"));
    assert_eq!(text("server.address"), Some("127.0.0.1"));
    assert_eq!(text("client.address"), Some("127.0.0.1"));
    assert_eq!(text("user_agent.original"), Some("probe/1.0"));
    assert_eq!(
        attribute(server, "server.port"),
        Some(&AttributeValue::U64(u64::from(port)))
    );
    assert_eq!(
        attribute(server, "http.response.status_code"),
        Some(&AttributeValue::U64(200))
    );
}

#[test]
fn an_unrouted_404_is_named_by_its_method() {
    let (spans, _) = spans_under("info", vec![get("/no/such/page/123".into())]);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].operation_name, "GET");
    assert_eq!(attribute(&spans[0], "http.route"), None);
    assert_eq!(
        attribute(&spans[0], "http.response.status_code"),
        Some(&AttributeValue::U64(404))
    );
}

#[test]
fn a_handler_error_is_the_status_description() {
    let (spans, _) = spans_under("info", vec![get("/fail".into())]);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(
        attribute(&spans[0], "http.response.status_code"),
        Some(&AttributeValue::U64(500))
    );
    let status = format!("{:?}", spans[0].status);
    assert!(status.contains("database down"), "{status}");
}

/// Garbage in every header the middleware reads: the request is served,
/// recorded as a root, and nothing panics.
#[test]
fn hostile_headers_are_ignored() {
    let request = Request::get("/items/42")
        .header("traceparent", "00-zz-garbage-01")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("tracestate", ",,=,")
        .header("request-id", "|not.an.id")
        .header("request-context", "appId=")
        .header("x-forwarded-for", " , 10.0.0.1")
        .header("x-forwarded-host", "[::1")
        .header(
            "user-agent",
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .body(Empty::new())
        .unwrap();
    let (spans, _) = spans_under("info", vec![request]);
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let server = spans
        .iter()
        .find(|s| s.target == targets::HTTP_SERVER)
        .unwrap();
    assert_eq!(server.parent_span_id, None, "two traceparents are none");
    assert_ne!(server.context.trace_id.to_string(), CALLER_TRACE);
    assert_eq!(
        attribute(server, "http.response.status_code"),
        Some(&AttributeValue::U64(200))
    );
    assert_eq!(
        attribute(server, "client.address").and_then(AttributeValue::as_str),
        Some("127.0.0.1"),
        "an empty first X-Forwarded-For entry: the peer"
    );
    assert_eq!(attribute(server, "user_agent.original"), None);
    assert_eq!(
        attribute(server, "server.address"),
        None,
        "an unparsable host"
    );
}
