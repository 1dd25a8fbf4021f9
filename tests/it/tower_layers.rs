//! The tower layers' spans, field by field, without a network: the server
//! layer's semantic fields, status and remote parent; the client layer's
//! fields, status and injected headers.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::support::capture::{capture_with, Captured};
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;
use tracing_appinsights::record::{AttributeValue, SpanKind, StatusCode as Code};
use tracing_appinsights::tower::{ClientLayer, ServerLayer, CLIENT_TARGET, SERVER_TARGET};
use tracing_appinsights::{Builder, RemoteContext, Sampler, SpanData};

/// A service answering every request with `status` (or an error), keeping
/// the headers it was called with.
#[derive(Clone)]
struct Answer {
    status: Result<u16, &'static str>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Answer {
    fn status(status: u16) -> Self {
        Answer {
            status: Ok(status),
            seen: Arc::default(),
        }
    }

    fn error(message: &'static str) -> Self {
        Answer {
            status: Err(message),
            seen: Arc::default(),
        }
    }
}

impl<B> Service<Request<B>> for Answer {
    type Response = Response<String>;
    type Error = String;
    type Future = Ready<Result<Response<String>, String>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.seen.lock().unwrap().push(request.headers().clone());
        ready(self.status.map_err(str::to_owned).map(|code| {
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            response
        }))
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn call<S, B>(mut service: S, request: Request<B>) -> Result<S::Response, S::Error>
where
    S: Service<Request<B>>,
{
    block_on(async move {
        std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
        service.call(request).await
    })
}

fn str_attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a str> {
    span.attributes.get(key).and_then(AttributeValue::as_str)
}

fn only_span(c: &Captured) -> &SpanData {
    assert_eq!(c.spans.len(), 1, "{:#?}", c.spans);
    &c.spans[0]
}

fn orders_route() -> ServerLayer {
    ServerLayer::new().with_route(|parts| {
        parts
            .uri
            .path()
            .starts_with("/orders/")
            .then(|| "/orders/{id}".to_owned())
    })
}

#[test]
fn the_server_span_has_the_request_fields() {
    let c = capture_with(Builder::new(), || {
        let request = Request::post("/orders/7?expand=lines")
            .header("host", "shop.example:8080")
            .header("user-agent", "curl/8.5.0")
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.1")
            .header("x-forwarded-proto", "https")
            .body(())
            .unwrap();
        let response = call(orders_route().layer(Answer::status(201)), request).unwrap();
        assert_eq!(response.status(), 201);
    });
    let span = only_span(&c);
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.target, SERVER_TARGET);
    assert_eq!(span.name, "POST");
    assert_eq!(span.operation_name, "POST /orders/{id}");
    assert_eq!(span.parent_span_id, None);
    for (key, want) in [
        ("http.request.method", "POST"),
        ("http.route", "/orders/{id}"),
        ("url.scheme", "https"),
        ("url.path", "/orders/7"),
        ("url.query", "expand=lines"),
        ("server.address", "shop.example"),
        ("client.address", "203.0.113.9"),
        ("user_agent.original", "curl/8.5.0"),
    ] {
        assert_eq!(str_attr(span, key), Some(want), "{key}");
    }
    assert_eq!(
        span.attributes.get("server.port"),
        Some(&AttributeValue::U64(8080))
    );
    assert_eq!(
        span.attributes.get("http.response.status_code"),
        Some(&AttributeValue::U64(201))
    );
    assert_eq!(span.status.code, Code::Unset);
}

#[test]
fn the_server_span_without_route_or_proxy_headers() {
    let c = capture_with(Builder::new(), || {
        let mut request = Request::get("http://inventory:9000/items")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert("192.0.2.7:55000".parse::<std::net::SocketAddr>().unwrap());
        call(ServerLayer::new().layer(Answer::status(200)), request).unwrap();
    });
    let span = only_span(&c);
    assert_eq!(span.operation_name, "GET");
    assert!(span.attributes.get("http.route").is_none());
    assert!(span.attributes.get("url.query").is_none());
    assert!(span.attributes.get("user_agent.original").is_none());
    assert_eq!(str_attr(span, "url.scheme"), Some("http"));
    assert_eq!(str_attr(span, "server.address"), Some("inventory"));
    assert_eq!(str_attr(span, "client.address"), Some("192.0.2.7"));
}

#[test]
fn a_5xx_or_an_error_fails_the_server_span_and_a_4xx_does_not() {
    for (answer, want) in [
        (Answer::status(503), Code::Error),
        (Answer::status(404), Code::Unset),
        (Answer::error("database down"), Code::Error),
    ] {
        let c = capture_with(Builder::new(), || {
            let request = Request::get("/x").body(()).unwrap();
            let _ = call(ServerLayer::new().layer(answer), request);
        });
        let span = only_span(&c);
        assert_eq!(span.status.code, want, "{span:#?}");
        if span.attributes.get("http.response.status_code").is_none() {
            assert_eq!(span.status.message.as_deref(), Some("database down"));
        }
    }
}

#[test]
fn the_server_span_takes_the_callers_context() {
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331";
    for (flags, recorded) in [("01", true), ("00", false)] {
        let c = capture_with(
            Builder::new().with_sampler(Sampler::probability(0.5)),
            || {
                let request = Request::get("/x")
                    .header("traceparent", format!("{parent}-{flags}"))
                    .header("request-context", "appId=cid-v1:caller")
                    .body(())
                    .unwrap();
                call(ServerLayer::new().layer(Answer::status(200)), request).unwrap();
            },
        );
        assert_eq!(c.spans.len(), usize::from(recorded), "{flags}");
        if let Some(span) = c.spans.first() {
            assert_eq!(
                span.context.trace_id.to_string(),
                "0af7651916cd43dd8448eb211c80319c"
            );
            assert_eq!(span.parent_span_id.unwrap().to_string(), "b7ad6b7169203331");
            assert_eq!(str_attr(span, "ai.request.source"), Some("cid-v1:caller"));
        }
    }
}

#[test]
fn the_client_span_injects_its_context() {
    let answer = Answer::status(404);
    let seen = Arc::clone(&answer.seen);
    let c = capture_with(Builder::new(), || {
        let parent = tracing::info_span!("parent");
        let _entered = parent.enter();
        let request = Request::get("http://user:pw@inventory.example:8443/items?id=4")
            .body(())
            .unwrap();
        let response = call(ClientLayer::new().layer(answer), request).unwrap();
        assert_eq!(response.status(), 404);
    });
    let client = c.span("GET");
    let parent = c.span("parent");
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.target, CLIENT_TARGET);
    assert_eq!(client.parent_span_id, Some(parent.context.span_id));
    assert_eq!(client.context.trace_id, parent.context.trace_id);
    assert_eq!(
        str_attr(client, "url.full"),
        Some("http://user:pw@inventory.example:8443/items?id=4")
    );
    assert_eq!(
        str_attr(client, "server.address"),
        Some("inventory.example")
    );
    assert_eq!(
        client.attributes.get("server.port"),
        Some(&AttributeValue::U64(8443))
    );
    assert_eq!(
        client.attributes.get("http.response.status_code"),
        Some(&AttributeValue::U64(404))
    );
    assert_eq!(client.status.code, Code::Error, "4xx fails a client span");
    let headers = &seen.lock().unwrap()[0];
    let sent = RemoteContext::from_headers(headers).unwrap();
    assert_eq!(sent.trace_id(), client.context.trace_id);
    assert_eq!(sent.span_id(), client.context.span_id);
    assert_eq!(sent.sampled(), Some(true));
    assert_eq!(
        headers["request-id"],
        format!("|{}.{}.", client.context.trace_id, client.context.span_id).as_str()
    );
}

#[test]
fn the_client_span_of_a_relative_uri_and_of_an_error() {
    let c = capture_with(Builder::new(), || {
        let request = Request::get("/items")
            .header("host", "inventory")
            .body(())
            .unwrap();
        let _ = call(
            ClientLayer::new().layer(Answer::error("connection refused")),
            request,
        );
    });
    let client = only_span(&c);
    assert!(client.attributes.get("url.full").is_none());
    assert_eq!(str_attr(client, "url.path"), Some("/items"));
    assert_eq!(str_attr(client, "server.address"), Some("inventory"));
    assert_eq!(client.status.code, Code::Error);
    assert_eq!(client.status.message.as_deref(), Some("connection refused"));
}

#[test]
fn an_unsampled_client_still_propagates_its_decision() {
    let answer = Answer::status(200);
    let seen = Arc::clone(&answer.seen);
    let c = capture_with(Builder::new().with_sampler(Sampler::always_off()), || {
        let request = Request::get("http://inventory/items").body(()).unwrap();
        call(ClientLayer::new().layer(answer), request).unwrap();
    });
    assert!(c.spans.is_empty());
    let headers = &seen.lock().unwrap()[0];
    let sent = RemoteContext::from_headers(headers).unwrap();
    assert_eq!(sent.sampled(), Some(false));
}

/// The layers work with any service error that is `Display`.
#[test]
fn infallible_services_are_accepted() {
    #[derive(Clone)]
    struct Ok200;
    impl Service<Request<()>> for Ok200 {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<Response<()>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            ready(Ok(Response::new(())))
        }
    }
    let c = capture_with(Builder::new(), || {
        let service = ClientLayer::new().layer(ServerLayer::new().layer(Ok200));
        call(service, Request::get("http://x/").body(()).unwrap()).unwrap();
    });
    let server = c.spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    let client = c.spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    assert_eq!(server.parent_span_id, Some(client.context.span_id));
}
