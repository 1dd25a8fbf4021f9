//! The reqwest middleware (feature `reqwest`) against a loopback server
//! that keeps the headers it receives, with the layer exporting to the fake
//! ingestion: the headers on the wire (`traceparent`, `tracestate`,
//! `Request-Id` only when asked), the RemoteDependency items (name from the
//! URL template, full URL, target, status, failures), and an unsampled
//! caller's decision passed on with nothing exported.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::tower::{serve, Running, ServiceFn};
use crate::support::{data, schema, tag, FakeIngestion};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::Value;
use tracing::Instrument;
use tracing_appinsights::reqwest::{AppInsightsMiddleware, UrlTemplate};
use tracing_appinsights::{Builder, ExporterGuard, RemoteContext, Sampler};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A loopback HTTP server on its own thread that answers `/status/N` with
/// status N and anything else with 200, keeping each request's path and
/// query and headers. Dropping it stops the thread.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    _running: Running,
}

impl Server {
    fn start() -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        let running = serve(tracing::Dispatch::none(), move || {
            ServiceFn(move |request| {
                let kept = Arc::clone(&kept);
                async move { Ok::<_, Infallible>(answer(&kept, request)) }
            })
        });
        Server {
            addr: running.addr,
            seen,
            _running: running,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The headers of the one request received for `path_and_query`.
    fn headers(&self, path_and_query: &str) -> HeaderMap {
        let seen = self.seen.lock().unwrap();
        let found: Vec<&HeaderMap> = seen
            .iter()
            .filter(|(p, _)| p == path_and_query)
            .map(|(_, h)| h)
            .collect();
        assert_eq!(found.len(), 1, "one request for {path_and_query}");
        found[0].clone()
    }
}

fn answer(
    seen: &Mutex<Vec<(String, HeaderMap)>>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let uri = request.uri();
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let status = uri
        .path()
        .strip_prefix("/status/")
        .and_then(|code| code.parse().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    seen.lock()
        .unwrap()
        .push((path_and_query, request.headers().clone()));
    let mut response = Response::new(Full::from("ok"));
    *response.status_mut() = status;
    response
}

/// A layer exporting to `ingestion`, as the dispatch of the client's thread.
fn exporter(ingestion: &FakeIngestion, sampler: Sampler) -> (tracing::Dispatch, ExporterGuard) {
    let (layer, guard) = Builder::new()
        .with_connection_string(ingestion.connection_string())
        // Storage is not under test here: no blob from another run may leak in.
        .with_offline_storage(false)
        .with_cloud_role("shop")
        .with_sampler(sampler)
        .build()
        .unwrap();
    // Only the spans of the test and the middleware (INFO), not whatever
    // the HTTP stack may log inside them.
    let layer = layer.with_filter(LevelFilter::INFO);
    (
        tracing::Dispatch::new(tracing_subscriber::registry().with(layer)),
        guard,
    )
}

fn client(middleware: AppInsightsMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

/// Runs `f` to completion under `dispatch` on a runtime of this thread.
fn run<F: Future>(dispatch: &tracing::Dispatch, f: F) -> F::Output {
    tracing::dispatcher::with_default(dispatch, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
}

/// Flushes `guard` and returns every envelope that reached `ingestion`
/// (checked against the schema).
fn exported(guard: &ExporterGuard, ingestion: &FakeIngestion) -> Vec<Value> {
    guard.flush(Duration::from_secs(30)).unwrap();
    let expected = guard.stats().queued as usize;
    let envelopes = ingestion.wait_for_envelopes(expected, Duration::from_secs(30));
    assert_eq!(envelopes.len(), expected, "{envelopes:#?}");
    schema::assert_valid(&envelopes);
    envelopes
}

/// The envelopes of `kind` (`Request`, `RemoteDependency`).
fn of_kind<'a>(envelopes: &'a [Value], kind: &str) -> Vec<&'a Value> {
    let name = format!("Microsoft.ApplicationInsights.{kind}");
    envelopes.iter().filter(|e| e["name"] == name).collect()
}

/// The one dependency whose `data` (full URL) is `url`.
fn dependency<'a>(envelopes: &'a [Value], url: &str) -> &'a Value {
    let found: Vec<&Value> = of_kind(envelopes, "RemoteDependency")
        .into_iter()
        .filter(|e| e["data"]["baseData"]["data"] == url)
        .collect();
    assert_eq!(found.len(), 1, "one dependency for {url}: {envelopes:#?}");
    found[0]
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn a_call_is_a_dependency_and_carries_its_context() {
    let ingestion = FakeIngestion::start();
    let server = Server::start();
    let (dispatch, guard) = exporter(&ingestion, Sampler::always_on());
    let url = server.url("/items/42?x=1");
    let status = run(&dispatch, async {
        // A request handler joined to a caller whose trace carries a tracestate.
        let caller = RemoteContext::from_traceparent(
            &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
            Some("congo=t61rcWkgMzE"),
        )
        .unwrap();
        let handler = caller.in_scope(|| tracing::info_span!("GET /orders/{id}"));
        let client = client(AppInsightsMiddleware::new());
        async { client.get(&url).send().await.unwrap().status() }
            .instrument(handler)
            .await
    });
    assert_eq!(status, 200);
    let envelopes = exported(&guard, &ingestion);
    assert_eq!(
        envelopes.len(),
        2,
        "a request and a dependency: {envelopes:#?}"
    );

    let handler = of_kind(&envelopes, "Request")[0];
    let dep = dependency(&envelopes, &url);
    assert_eq!(data(dep, "name"), "GET /items/{id}");
    assert_eq!(data(dep, "type"), "HTTP");
    assert_eq!(
        data(dep, "target"),
        format!("127.0.0.1:{}", server.addr.port()).as_str()
    );
    assert_eq!(data(dep, "resultCode"), "200");
    assert_eq!(data(dep, "success"), true);
    assert_eq!(tag(dep, "ai.operation.id"), CALLER_TRACE);
    assert_eq!(tag(dep, "ai.operation.parentId"), data(handler, "id"));
    assert!(
        data(dep, "properties").get("url.template").is_none(),
        "the template is the name, not a property: {dep:#}"
    );

    let sent = server.headers("/items/42?x=1");
    let dep_id = data(dep, "id").as_str().unwrap();
    assert_eq!(
        header(&sent, "traceparent"),
        Some(format!("00-{CALLER_TRACE}-{dep_id}-01").as_str())
    );
    assert_eq!(header(&sent, "tracestate"), Some("congo=t61rcWkgMzE"));
    assert_eq!(header(&sent, "request-id"), None, "not asked for");
}

#[test]
fn request_id_is_sent_when_asked_and_tracestate_only_when_the_trace_has_one() {
    let ingestion = FakeIngestion::start();
    let server = Server::start();
    let (dispatch, guard) = exporter(&ingestion, Sampler::always_on());
    let url = server.url("/carts/7");
    run(&dispatch, async {
        let client = client(AppInsightsMiddleware::new().with_request_id(true));
        let response = client
            .get(&url)
            .send()
            .instrument(tracing::info_span!("checkout"))
            .await;
        assert_eq!(response.unwrap().status(), 200);
    });
    let envelopes = exported(&guard, &ingestion);
    let dep = dependency(&envelopes, &url);
    let operation = tag(dep, "ai.operation.id").as_str().unwrap();
    let dep_id = data(dep, "id").as_str().unwrap();
    let sent = server.headers("/carts/7");
    assert_eq!(
        header(&sent, "traceparent"),
        Some(format!("00-{operation}-{dep_id}-01").as_str())
    );
    assert_eq!(
        header(&sent, "request-id"),
        Some(format!("|{operation}.{dep_id}.").as_str())
    );
    assert_eq!(header(&sent, "tracestate"), None, "the trace has none");
}

#[test]
fn a_given_template_names_the_dependency() {
    let ingestion = FakeIngestion::start();
    let server = Server::start();
    let (dispatch, guard) = exporter(&ingestion, Sampler::always_on());
    let url = server.url("/items/apple/reviews?page=2");
    run(&dispatch, async {
        let client = client(AppInsightsMiddleware::new());
        let response = client
            .get(&url)
            .with_extension(UrlTemplate::new("/items/{name}/reviews"))
            .send()
            .instrument(tracing::info_span!("reviews"))
            .await;
        assert_eq!(response.unwrap().status(), 200);
    });
    let envelopes = exported(&guard, &ingestion);
    let dep = dependency(&envelopes, &url);
    assert_eq!(data(dep, "name"), "GET /items/{name}/reviews");
}

#[test]
fn error_statuses_and_connection_errors_fail_the_dependency() {
    let ingestion = FakeIngestion::start();
    let server = Server::start();
    // A port nobody listens on: bound, then closed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = format!("http://127.0.0.1:{closed}/items/9");
    let (dispatch, guard) = exporter(&ingestion, Sampler::always_on());
    let (not_found, failing) = (server.url("/status/404"), server.url("/status/500"));
    let parent_id = run(&dispatch, async {
        let client = client(AppInsightsMiddleware::new());
        let parent = tracing::info_span!("sync inventory");
        let parent_id = tracing_appinsights::AppInsightsSpanExt::span_id(&parent).unwrap();
        async {
            assert_eq!(client.get(&not_found).send().await.unwrap().status(), 404);
            assert_eq!(client.post(&failing).send().await.unwrap().status(), 500);
            assert!(client.get(&refused).send().await.is_err());
        }
        .instrument(parent)
        .await;
        parent_id.to_string()
    });
    let envelopes = exported(&guard, &ingestion);
    assert_eq!(
        of_kind(&envelopes, "RemoteDependency").len(),
        4,
        "three calls and their parent"
    );

    for (url, name, code) in [
        (&not_found, "GET /status/{id}", "404"),
        (&failing, "POST /status/{id}", "500"),
    ] {
        let dep = dependency(&envelopes, url);
        assert_eq!(data(dep, "name"), name);
        assert_eq!(data(dep, "resultCode"), code);
        assert_eq!(data(dep, "success"), false, "{dep:#}");
        assert_eq!(tag(dep, "ai.operation.parentId"), parent_id.as_str());
    }

    let dep = dependency(&envelopes, &refused);
    assert_eq!(data(dep, "name"), "GET /items/{id}");
    assert_eq!(data(dep, "resultCode"), "0");
    assert_eq!(data(dep, "success"), false);
    assert_eq!(data(dep, "target"), format!("127.0.0.1:{closed}").as_str());
    assert_eq!(tag(dep, "ai.operation.parentId"), parent_id.as_str());
    let why = data(dep, "properties")["otel.status_description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.starts_with("error sending request for url")
            && why.len() > "error sending request for url".len() + refused.len(),
        "reqwest's message and its sources: {why:?}"
    );
}

#[test]
fn an_unsampled_caller_passes_its_decision_on_and_exports_nothing() {
    let ingestion = FakeIngestion::start();
    let server = Server::start();
    let (dispatch, guard) = exporter(&ingestion, Sampler::always_on());
    let url = server.url("/items/42");
    run(&dispatch, async {
        let caller =
            RemoteContext::from_traceparent(&format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00"), None)
                .unwrap();
        let handler = caller.in_scope(|| tracing::info_span!("GET /orders/{id}"));
        let client = client(AppInsightsMiddleware::new());
        let response = client.get(&url).send().instrument(handler).await;
        assert_eq!(response.unwrap().status(), 200);
    });
    guard.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(guard.stats().queued, 0, "nothing recorded");
    assert!(ingestion.envelopes().is_empty());

    let sent = server.headers("/items/42");
    let traceparent = header(&sent, "traceparent").unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{CALLER_TRACE}-")) && traceparent.ends_with("-00"),
        "the caller's trace, not sampled: {traceparent}"
    );
    assert!(
        !traceparent.contains(CALLER_SPAN),
        "the client span's own id: {traceparent}"
    );
}
