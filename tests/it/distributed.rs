//! Two services, each with its own layer and role, talking HTTP over
//! loopback through the tower layers and exporting to one fake ingestion
//! endpoint: `frontend` calls `inventory`. The envelopes must form one
//! operation: Request(frontend) → RemoteDependency(frontend → inventory) →
//! Request(inventory), with the caller's sampling decision honoured.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::tower::{send, serve, Running, ServiceFn};
use crate::support::{data, find, schema, tag, FakeIngestion};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tracing_appinsights::tower::{ClientLayer, ServerLayer};
use tracing_appinsights::{AppInsightsSpanExt, Builder, ExporterGuard, Sampler};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A layer exporting to `ingestion` under `role`.
fn layer(
    ingestion: &FakeIngestion,
    role: &str,
    sampler: Sampler,
) -> (tracing::Dispatch, ExporterGuard) {
    let (layer, guard) = Builder::new()
        .with_connection_string(ingestion.connection_string())
        // Storage is not under test here: no blob from another run may leak in.
        .with_offline_storage(false)
        .with_cloud_role(role)
        .with_cloud_role_instance(format!("{role}-1"))
        .with_sampler(sampler)
        .build()
        .unwrap();
    // hyper-util's trace events inside the client span would be Message
    // items: a per-layer filter keeps INFO and above (and shows the
    // propagation API reaching a filtered layer).
    let layer = layer.with_filter(LevelFilter::INFO);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, guard)
}

/// The route template of a path like `/prefix/42`.
fn route(prefix: &'static str) -> ServerLayer {
    ServerLayer::new().with_route(move |parts| {
        let rest = parts.uri.path().strip_prefix(prefix)?;
        (!rest.is_empty()).then(|| format!("{prefix}{{id}}"))
    })
}

/// `inventory`: answers `/items/{id}` after an internal step, and keeps the
/// headers it received.
fn inventory(dispatch: tracing::Dispatch, seen: Arc<Mutex<Vec<HeaderMap>>>) -> Running {
    serve(dispatch, move || {
        route("/items/").layer(ServiceFn(move |request: Request<_>| {
            seen.lock().unwrap().push(request.headers().clone());
            async move {
                tracing::info_span!("count items").in_scope(|| {});
                Ok(Response::new(Full::from("42 items")))
            }
        }))
    })
}

/// `frontend`: answers `/orders/{id}` by calling inventory through the
/// client layer; its response carries its trace id in `x-trace-id`.
fn frontend(dispatch: tracing::Dispatch, inventory: String) -> Running {
    serve(dispatch, move || {
        let client = ClientLayer::new()
            .layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
        route("/orders/").layer(ServiceFn(move |_request| {
            let mut client = client.clone();
            let url = format!("{inventory}/items/42");
            async move {
                let trace_id = tracing::Span::current().trace_id();
                let call = Request::get(url).body(Empty::new()).unwrap();
                let status = match client.call(call).await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 599,
                };
                let mut response = Response::new(Full::from(format!("inventory said {status}")));
                if let Some(trace_id) = trace_id {
                    let value = trace_id.to_string().parse().unwrap();
                    response.headers_mut().insert("x-trace-id", value);
                }
                Ok(response)
            }
        }))
    })
}

/// What one request through both services produced.
struct Outcome {
    envelopes: Vec<Value>,
    inventory_saw: Vec<HeaderMap>,
    response_headers: HeaderMap,
    queued: (u64, u64),
}

/// Runs both services, sends `request_headers` to frontend's
/// `/orders/7`, stops both, flushes both, and collects what arrived.
fn run(
    frontend_sampler: Sampler,
    inventory_sampler: Sampler,
    request_headers: HeaderMap,
) -> Outcome {
    let ingestion = FakeIngestion::start();
    let (fe_dispatch, fe_guard) = layer(&ingestion, "frontend", frontend_sampler);
    let (inv_dispatch, inv_guard) = layer(&ingestion, "inventory", inventory_sampler);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inventory = inventory(inv_dispatch, Arc::clone(&seen));
    let frontend = frontend(fe_dispatch, inventory.url());

    let mut request = Request::get(format!("{}/orders/7", frontend.url()))
        .body(Empty::new())
        .unwrap();
    *request.headers_mut() = request_headers;
    let (status, response_headers, body) = send(request);
    assert_eq!(status, 200);
    assert_eq!(body, "inventory said 200");

    // Stopping the services closes every span; then everything is exported.
    drop(frontend);
    drop(inventory);
    fe_guard.flush(Duration::from_secs(10)).unwrap();
    inv_guard.flush(Duration::from_secs(10)).unwrap();
    let queued = (fe_guard.stats().queued, inv_guard.stats().queued);
    let expected = (queued.0 + queued.1) as usize;
    let envelopes = ingestion.wait_for_envelopes(expected, Duration::from_secs(10));
    assert_eq!(envelopes.len(), expected);
    schema::assert_valid(&envelopes);
    let inventory_saw = seen.lock().unwrap().clone();
    Outcome {
        envelopes,
        inventory_saw,
        response_headers,
        queued,
    }
}

/// The shape every sampled run must have.
struct Operation<'a> {
    frontend_request: &'a Value,
    dependency: &'a Value,
    inventory_request: &'a Value,
    inventory_step: &'a Value,
}

fn operation(envelopes: &[Value]) -> Operation<'_> {
    let op = Operation {
        frontend_request: find(envelopes, "Request", "frontend", "GET /orders/{id}"),
        dependency: find(envelopes, "RemoteDependency", "frontend", "GET /items/{id}"),
        inventory_request: find(envelopes, "Request", "inventory", "GET /items/{id}"),
        inventory_step: find(envelopes, "RemoteDependency", "inventory", "count items"),
    };
    let operation_id = tag(op.frontend_request, "ai.operation.id");
    assert!(operation_id.is_string());
    for e in envelopes {
        assert_eq!(
            tag(e, "ai.operation.id"),
            operation_id,
            "one operation: {e:#}"
        );
    }
    assert_eq!(
        tag(op.dependency, "ai.operation.parentId"),
        data(op.frontend_request, "id"),
        "the call is the frontend request's child"
    );
    assert_eq!(
        tag(op.inventory_request, "ai.operation.parentId"),
        data(op.dependency, "id"),
        "the callee's request is the caller's dependency's child"
    );
    assert_eq!(
        tag(op.inventory_step, "ai.operation.parentId"),
        data(op.inventory_request, "id")
    );
    op
}

#[test]
fn one_operation_across_two_services() {
    let out = run(Sampler::always_on(), Sampler::always_on(), HeaderMap::new());
    assert_eq!(out.envelopes.len(), 4, "{:#?}", out.envelopes);
    let op = operation(&out.envelopes);

    // The frontend request is the root.
    assert!(tag(op.frontend_request, "ai.operation.parentId").is_null());
    assert_eq!(
        tag(op.frontend_request, "ai.operation.name"),
        "GET /orders/{id}"
    );
    assert_eq!(
        tag(op.frontend_request, "ai.cloud.roleInstance"),
        "frontend-1"
    );
    assert_eq!(
        out.response_headers["x-trace-id"],
        tag(op.frontend_request, "ai.operation.id")
            .as_str()
            .unwrap()
    );
    // The dependency names the callee as the map needs: host:port.
    let port = out.inventory_saw.len();
    assert_eq!(port, 1);
    assert_eq!(data(op.dependency, "type"), "HTTP");
    let target = data(op.dependency, "target").as_str().unwrap();
    assert!(target.starts_with("127.0.0.1:"), "{target}");
    assert_eq!(
        data(op.dependency, "data").as_str().unwrap(),
        format!("http://{target}/items/42")
    );
    assert_eq!(data(op.dependency, "resultCode"), "200");
    assert_eq!(data(op.dependency, "success"), true);
    // The callee's request.
    assert_eq!(tag(op.inventory_request, "ai.cloud.role"), "inventory");
    assert_eq!(
        tag(op.inventory_request, "ai.operation.name"),
        "GET /items/{id}"
    );
    assert_eq!(data(op.inventory_request, "responseCode"), "200");
    assert_eq!(
        data(op.inventory_request, "url").as_str().unwrap(),
        format!("http://{target}/items/42")
    );
    assert_eq!(
        tag(op.inventory_step, "ai.operation.name"),
        "GET /items/{id}"
    );

    // What went over the wire.
    let headers = &out.inventory_saw[0];
    let trace = tag(op.frontend_request, "ai.operation.id")
        .as_str()
        .unwrap();
    let dependency = data(op.dependency, "id").as_str().unwrap();
    assert_eq!(
        headers["traceparent"],
        format!("00-{trace}-{dependency}-01").as_str()
    );
    assert_eq!(
        headers["request-id"],
        format!("|{trace}.{dependency}.").as_str()
    );
}

fn caller(flags: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}");
    h.insert("traceparent", traceparent.parse().unwrap());
    h.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    h.insert(
        "request-context",
        "appId=cid-v1:caller-app".parse().unwrap(),
    );
    h
}

#[test]
fn an_unsampled_caller_makes_both_services_record_nothing() {
    let out = run(Sampler::always_on(), Sampler::always_on(), caller("00"));
    assert!(out.envelopes.is_empty(), "{:#?}", out.envelopes);
    assert_eq!(out.queued, (0, 0));
    // The decision travelled on: same trace, flags 00, tracestate kept.
    let headers = &out.inventory_saw[0];
    let traceparent = headers["traceparent"].to_str().unwrap();
    assert!(traceparent.starts_with(&format!("00-{CALLER_TRACE}-")));
    assert!(traceparent.ends_with("-00"), "{traceparent}");
    assert!(
        !traceparent.contains(CALLER_SPAN),
        "the frontend's own span id"
    );
    assert_eq!(headers["tracestate"], "congo=t61rcWkgMzE");
}

#[test]
fn a_sampled_caller_makes_a_service_at_probability_0_record_everything() {
    // Frontend samples its own root; inventory would sample nothing itself.
    let out = run(
        Sampler::always_on(),
        Sampler::probability(0.0),
        HeaderMap::new(),
    );
    assert_eq!(out.envelopes.len(), 4, "{:#?}", out.envelopes);
    operation(&out.envelopes);
    // Both at probability 0 (and always off): the caller's flag decides.
    for s in [Sampler::probability(0.0), Sampler::always_off()] {
        let out = run(s, s, caller("01"));
        assert_eq!(out.envelopes.len(), 4, "{s:?}: {:#?}", out.envelopes);
        let op = operation(&out.envelopes);
        assert_eq!(tag(op.frontend_request, "ai.operation.id"), CALLER_TRACE);
        assert_eq!(
            tag(op.frontend_request, "ai.operation.parentId"),
            CALLER_SPAN
        );
        // The caller's Request-Context appId is the request's source.
        assert_eq!(data(op.frontend_request, "source"), "cid-v1:caller-app");
        assert!(data(op.inventory_request, "source").is_null());
        let headers = &out.inventory_saw[0];
        assert_eq!(headers["tracestate"], "congo=t61rcWkgMzE");
    }
}
