//! Filters that leave the crate's instrumentation out must not break
//! traces: with `my_service=debug` (no directive for this crate's HTTP
//! targets) the server middleware's context still reaches the handlers,
//! the client middleware still sends one, and one start-up warning names
//! the directive to add. Which targets the layer ignores: the exporter's
//! diagnostics, exactly, and nothing else.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::support::child;
use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing_appinsights::record::SpanKind;
use tracing_appinsights::tower::{ClientLayer, ServerLayer};
use tracing_appinsights::{
    targets, AppInsightsSpanExt, Builder, InMemoryExporter, RemoteContext, SpanData,
};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Runs `f` under `registry().with(EnvFilter::new(filter)).with(layer)`
/// and returns the spans exported.
fn spans_under(filter: &str, f: impl FnOnce()) -> Vec<SpanData> {
    let exporter = InMemoryExporter::new();
    let (layer, guard) = Builder::new()
        .with_in_memory_exporter(exporter.clone())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new(filter))
        .with(layer);
    tracing::subscriber::with_default(subscriber, f);
    guard.shutdown(Duration::from_secs(10)).unwrap();
    exporter.spans()
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>;

/// A handler that creates its span when first polled (as an
/// `#[instrument]`ed async fn called inside the future does), and a second
/// one inside it.
#[derive(Clone)]
struct Handler;

impl<B> Service<Request<B>> for Handler {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> BoxFuture {
        Box::pin(async {
            tokio::task::yield_now().await; // a first poll with no span
            let span = tracing::info_span!(target: "my_service", "handle order");
            span.in_scope(|| {
                tracing::info_span!(target: "my_service", "load order").in_scope(|| {})
            });
            Ok(Response::new(String::new()))
        })
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn with_caller(request: http::request::Builder) -> Request<()> {
    request
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .body(())
        .unwrap()
}

#[test]
fn a_filtered_out_server_span_still_joins_the_handlers_to_the_caller() {
    let spans = spans_under("my_service=debug", || {
        let mut service = ServerLayer::new().layer(Handler);
        block_on(service.call(with_caller(Request::get("/orders/7")))).unwrap();
    });
    let names: Vec<_> = spans.iter().map(|s| &*s.name).collect();
    assert_eq!(
        names.len(),
        2,
        "no server span, the two handler spans: {names:?}"
    );
    let handle = spans.iter().find(|s| s.name == "handle order").unwrap();
    let load = spans.iter().find(|s| s.name == "load order").unwrap();
    assert_eq!(handle.context.trace_id.to_string(), CALLER_TRACE);
    assert_eq!(handle.parent_span_id.unwrap().to_string(), CALLER_SPAN);
    assert_eq!(
        handle.kind,
        SpanKind::Server,
        "a remote parent's child is a Request"
    );
    assert_eq!(load.context.trace_id.to_string(), CALLER_TRACE);
    assert_eq!(load.parent_span_id, Some(handle.context.span_id));
}

#[test]
fn with_the_directives_the_server_span_takes_the_caller_and_the_handler_is_its_child() {
    let filter = format!("my_service=debug,{}", targets::DIRECTIVES);
    let spans = spans_under(&filter, || {
        let mut service = ServerLayer::new().layer(Handler);
        block_on(service.call(with_caller(Request::get("/orders/7")))).unwrap();
    });
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = spans
        .iter()
        .find(|s| s.target == targets::HTTP_SERVER)
        .unwrap();
    let handle = spans.iter().find(|s| s.name == "handle order").unwrap();
    assert_eq!(server.parent_span_id.unwrap().to_string(), CALLER_SPAN);
    assert_eq!(handle.parent_span_id, Some(server.context.span_id));
    assert_eq!(handle.kind, SpanKind::Internal);
}

#[test]
fn a_request_without_a_caller_leaves_the_handlers_roots() {
    let spans = spans_under("my_service=debug", || {
        let mut service = ServerLayer::new().layer(Handler);
        let request = Request::get("/orders/7").body(()).unwrap();
        block_on(service.call(request)).unwrap();
    });
    let handle = spans.iter().find(|s| s.name == "handle order").unwrap();
    assert_eq!(handle.parent_span_id, None);
    assert_ne!(handle.context.trace_id.to_string(), CALLER_TRACE);
}

/// Keeps the headers of the requests it answers.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<HeaderMap>>>);

impl<B> Service<Request<B>> for Seen {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.0.lock().unwrap().push(request.headers().clone());
        std::future::ready(Ok(Response::new(String::new())))
    }
}

#[test]
fn a_filtered_out_client_span_sends_the_current_spans_context() {
    let seen = Seen::default();
    let mut client = ClientLayer::new().layer(seen.clone());
    let mut sent_from = None;
    let spans = spans_under("my_service=debug", || {
        let span = tracing::info_span!(target: "my_service", "checkout");
        let _entered = span.enter();
        sent_from = span.span_context();
        let request = Request::get("http://inventory/items/4").body(()).unwrap();
        block_on(client.call(request)).unwrap();
    });
    assert_eq!(spans.len(), 1, "only the application's span: {spans:#?}");
    let checkout = sent_from.expect("the layer saw the span");
    let sent = RemoteContext::from_headers(&seen.0.lock().unwrap()[0]).expect("a traceparent");
    assert_eq!(sent.trace_id(), checkout.trace_id);
    assert_eq!(sent.span_id(), checkout.span_id);
}

#[test]
fn only_the_diagnostics_target_is_ignored() {
    let spans = spans_under("trace", || {
        tracing::info_span!(target: "tracing_appinsights_demo", "demo").in_scope(|| {});
        tracing::info_span!(target: "tracing_appinsights_demo::handlers", "handler")
            .in_scope(|| {});
        tracing::info_span!(target: "tracing_appinsights::http::server", "server").in_scope(|| {});
        tracing::info_span!(target: "tracing_appinsights", "diagnostics").in_scope(|| {});
    });
    let names: Vec<_> = spans.iter().map(|s| (&*s.name, s.target)).collect();
    assert_eq!(
        names,
        [
            ("demo", "tracing_appinsights_demo"),
            ("handler", "tracing_appinsights_demo::handlers"),
            ("server", "tracing_appinsights::http::server"),
        ]
    );
}

/// Collects the events of the exporter's diagnostics target.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message<'a>(&'a mut String);
        impl tracing::field::Visit for Message<'_> {
            fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                let _ = write!(self.0, "{value:?}");
            }
        }
        if event.metadata().target() == targets::DIAGNOSTICS
            && *event.metadata().level() == tracing::Level::WARN
        {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
}

/// One warning per middleware, at start-up, naming the directive; none
/// with the directives in the filter. (Its own process: the warning is
/// said once per process.)
#[test]
fn filtered_out_middleware_is_warned_about_once() {
    let Some(_child) = child::own_process(
        module_path!(),
        "filtered_out_middleware_is_warned_about_once",
    ) else {
        return;
    };
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("my_service=debug,tracing_appinsights=warn"))
        .with(warnings.clone());
    tracing::subscriber::with_default(subscriber, || {
        let mut server = ServerLayer::new().layer(Handler);
        let _again = ServerLayer::new().layer(Handler);
        block_on(server.call(Request::get("/").body(()).unwrap())).unwrap();
        let _client = ClientLayer::new().layer(Seen::default());
    });
    let said = warnings.0.lock().unwrap().clone();
    assert_eq!(said.len(), 2, "{said:#?}");
    assert!(said[0].contains(targets::HTTP_SERVER), "{}", said[0]);
    assert!(said[1].contains(targets::HTTP_CLIENT), "{}", said[1]);
    for warning in &said {
        assert!(
            warning.contains("`tracing_appinsights::http=info`"),
            "{warning}"
        );
    }
}

#[test]
fn middleware_with_its_directive_is_not_warned_about() {
    let Some(_child) = child::own_process(
        module_path!(),
        "middleware_with_its_directive_is_not_warned_about",
    ) else {
        return;
    };
    let warnings = Warnings::default();
    let filter = format!(
        "my_service=debug,tracing_appinsights=warn,{}",
        targets::DIRECTIVES
    );
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new(filter))
        .with(warnings.clone());
    tracing::subscriber::with_default(subscriber, || {
        let mut server = ServerLayer::new().layer(Handler);
        block_on(server.call(Request::get("/").body(()).unwrap())).unwrap();
        let _client = ClientLayer::new().layer(Seen::default());
    });
    assert!(warnings.0.lock().unwrap().is_empty());
}

/// With a filter that leaves out the diagnostics target too, the warning
/// goes to standard error, where it is still seen.
#[test]
fn the_warning_reaches_standard_error_when_the_filter_hides_diagnostics() {
    const ROLE: &str = "filtered-middleware-stderr";
    if child::role_args(ROLE).is_some() {
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new("my_service=debug"));
        tracing::subscriber::with_default(subscriber, || {
            let _server = ServerLayer::new().layer(Handler);
        });
        return;
    }
    if std::env::var_os(child::ROLE_VAR).is_some() {
        return; // another test's child
    }
    let test = child::test_name(
        module_path!(),
        "the_warning_reaches_standard_error_when_the_filter_hides_diagnostics",
    );
    let out = child::command(&test, ROLE, &[]).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("WARN tracing_appinsights"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(targets::HTTP_SERVER), "{}", lines[0]);
}

#[cfg(feature = "axum")]
mod axum_router {
    use super::*;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use tracing_appinsights::record::AttributeValue;

    fn serve(request: Request<axum::body::Body>) -> Vec<SpanData> {
        spans_under("info", || {
            let router: Router = Router::new()
                .route("/items/{id}", get(|| async { "item" }))
                .layer(ServerLayer::new());
            let mut service = router.into_service::<axum::body::Body>();
            block_on(async {
                std::future::poll_fn(|cx| {
                    Service::<Request<axum::body::Body>>::poll_ready(&mut service, cx)
                })
                .await
                .unwrap();
                service.call(request).await.unwrap()
            });
        })
    }

    /// axum's route template names the Request without `with_route`, and
    /// `ConnectInfo<SocketAddr>` gives the client's address.
    #[test]
    fn axum_routes_and_connect_info_are_read() {
        let mut request = Request::get("/items/42")
            .body(axum::body::Body::empty())
            .unwrap();
        let peer: std::net::SocketAddr = "198.51.100.4:40000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let spans = serve(request);
        assert_eq!(spans.len(), 1, "{spans:#?}");
        let span = &spans[0];
        assert_eq!(span.operation_name, "GET /items/{id}");
        assert_eq!(
            span.attributes
                .get("http.route")
                .and_then(AttributeValue::as_str),
            Some("/items/{id}")
        );
        assert_eq!(
            span.attributes
                .get("client.address")
                .and_then(AttributeValue::as_str),
            Some("198.51.100.4")
        );
    }

    /// A request no route matches (axum's fallback, a 404) is named by its
    /// method alone: never by its path, whose values are unbounded.
    #[test]
    fn an_unrouted_404_is_named_by_its_method() {
        let request = Request::get("/no/such/page/123")
            .body(axum::body::Body::empty())
            .unwrap();
        let spans = serve(request);
        assert_eq!(spans.len(), 1, "{spans:#?}");
        assert_eq!(spans[0].operation_name, "GET");
        assert_eq!(
            spans[0].attributes.get("http.response.status_code"),
            Some(&AttributeValue::U64(404))
        );
    }
}
