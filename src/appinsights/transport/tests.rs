use std::time::Instant;

use serde_json::{json, Value};

use super::support::{FakeIngestion, ScriptedResponse};
use super::*;
use crate::appinsights::gzip;
use crate::appinsights::response::parse_track_response;

/// Generous bound for loopback waits.
const WAIT: Duration = Duration::from_secs(5);

fn config(endpoint: &str, gzip: bool) -> TransportConfig {
    TransportConfig {
        endpoint: endpoint.to_owned(),
        gzip,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        pool_idle_timeout: Duration::from_secs(30),
        proxy: super::ProxySetting::Direct,
    }
}

fn transport(endpoint: &str, gzip: bool) -> Transport {
    Transport::new(config(endpoint, gzip)).expect("transport builds")
}

/// A small deterministic generator for ids (real ids are random hex,
/// which is what makes batches hard to compress).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn hex(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes * 2);
        while s.len() < bytes * 2 {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(bytes * 2);
        s
    }
}

/// Span names used by [`envelope`].
const NAMES: [&str; 4] = ["GET /orders/{id}", "load_config", "query_orders", "render"];

/// One envelope shaped like what the crate sends: a Request or a
/// dependency, with tags and string properties (see `docs/mapping.md`).
fn envelope(rng: &mut Rng, i: usize) -> Value {
    let (kind, base_type, extra) = if i % 4 == 0 {
        (
            "Request",
            "RequestData",
            json!({"responseCode": "200", "url": format!("https://api.example.com/orders/{}", rng.next() % 100_000)}),
        )
    } else {
        (
            "RemoteDependency",
            "RemoteDependencyData",
            json!({"resultCode": "0", "type": "INPROC", "target": "db.internal:5432"}),
        )
    };
    let mut base = json!({
        "ver": 2,
        "id": rng.hex(8),
        "name": NAMES[i % NAMES.len()],
        "duration": format!("0.00:00:00.{:03}", rng.next() % 1000),
        "success": true,
        "properties": {
            "code.filepath": "src/orders.rs",
            "code.lineno": format!("{}", 40 + i % 50),
            "order.id": format!("{}", rng.next() % 1_000_000),
            "thread.name": "tokio-runtime-worker"
        }
    });
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    json!({
        "ver": 1,
        "name": format!("Microsoft.ApplicationInsights.{kind}"),
        "time": format!("2024-05-01T12:00:{:02}.{:06}Z", i % 60, rng.next() % 1_000_000),
        "iKey": "12345678-1234-5678-abcd-12345678abcd",
        "tags": {
            "ai.cloud.role": "orders-service",
            "ai.cloud.roleInstance": "orders-7f9c4d-x2k8p",
            "ai.device.id": "orders-7f9c4d-x2k8p",
            "ai.device.type": "Other",
            "ai.internal.sdkVersion": "rs1.80.0:ext0.1.0",
            "ai.operation.id": rng.hex(16),
            "ai.operation.parentId": rng.hex(8),
            "ai.operation.name": "GET /orders/{id}"
        },
        "data": {"baseType": base_type, "baseData": base}
    })
}

/// A serialized batch of `n` envelopes.
fn batch(n: usize) -> (Bytes, Vec<Value>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let envelopes: Vec<Value> = (0..n).map(|i| envelope(&mut rng, i)).collect();
    let json = serde_json::to_vec(&envelopes).expect("serializes");
    (Bytes::from(json), envelopes)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    gzip::decompress(data).expect("valid gzip")
}

/// Sends `json` gzipped, as the sink does by default.
async fn send(t: &Transport, json: Bytes) -> SendOutcome {
    let gz = gzip::compress(&json).expect("in memory");
    t.send(Bytes::from(gz), true, None).await
}

// --- construction ---

#[test]
fn endpoints_are_checked_and_joined() {
    let ok = [
        (
            "https://westus-0.in.applicationinsights.azure.com",
            "https://westus-0.in.applicationinsights.azure.com/v2.1/track",
            true,
        ),
        (
            "https://westus-0.in.applicationinsights.azure.com/",
            "https://westus-0.in.applicationinsights.azure.com/v2.1/track",
            true,
        ),
        (
            "HTTPS://dc.services.visualstudio.com",
            "HTTPS://dc.services.visualstudio.com/v2.1/track",
            true,
        ),
        (
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/v2.1/track",
            false,
        ),
        (
            "http://localhost:8080/prefix/",
            "http://localhost:8080/prefix/v2.1/track",
            false,
        ),
    ];
    for (endpoint, url, https) in ok {
        let (uri, track_url, is_https) = parse_endpoint(endpoint).expect(endpoint);
        assert_eq!(track_url, url, "{endpoint}");
        assert_eq!(is_https, https, "{endpoint}");
        assert!(uri.path().ends_with("/v2.1/track"), "{endpoint}: {uri}");
    }
    let bad = [
        "",
        "westus-0.in.applicationinsights.azure.com",
        "ftp://example.com",
        "https://",
        "https://example.com/?x=1",
        "https://example.com/#frag",
        "not a url",
    ];
    for endpoint in bad {
        let err = parse_endpoint(endpoint).expect_err(endpoint);
        assert!(
            matches!(err, TransportError::InvalidEndpoint { .. }),
            "{endpoint}: {err}"
        );
    }
}

#[test]
fn invalid_endpoint_fails_to_build() {
    let err = Transport::new(config("example.com", true)).expect_err("no scheme");
    assert!(
        matches!(err, TransportError::InvalidEndpoint { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("example.com"), "{err}");
}

/// Plain `#[test]`: no tokio runtime, as in `Builder::build`.
#[test]
fn http_endpoint_builds_outside_a_runtime() {
    let t = transport("http://127.0.0.1:1", true);
    assert_eq!(t.track_url(), "http://127.0.0.1:1/v2.1/track");
}

#[cfg(any(feature = "webpki-roots", feature = "native-roots"))]
#[test]
fn https_endpoint_builds_outside_a_runtime() {
    let t = transport("https://westus-0.in.applicationinsights.azure.com/", true);
    assert_eq!(
        t.track_url(),
        "https://westus-0.in.applicationinsights.azure.com/v2.1/track"
    );
}

#[cfg(not(any(feature = "webpki-roots", feature = "native-roots")))]
#[test]
fn https_endpoint_needs_a_roots_feature() {
    let err = Transport::new(config("https://example.com", true)).expect_err("no roots");
    assert!(
        matches!(err, TransportError::NoRootCertificates { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("webpki-roots"), "{err}");
}

// --- requests on the wire ---

#[tokio::test]
async fn posts_gzipped_json_with_headers() {
    let server = FakeIngestion::start();
    let t = transport(&server.endpoint(), true);
    let (json, envelopes) = batch(3);

    let outcome = send(&t, json.clone()).await;

    let SendOutcome::Response { status, body, .. } = outcome else {
        panic!("expected a response, got {outcome:?}");
    };
    assert_eq!(status, 200);
    let parsed = parse_track_response(&body).expect("success body parses");
    assert_eq!((parsed.items_received, parsed.items_accepted), (3, 3));
    let requests = server.wait_for_requests(1, WAIT);
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v2.1/track");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("content-encoding"), Some("gzip"));
    assert_eq!(req.header("accept"), Some("application/json"));
    assert_eq!(req.header("user-agent"), Some(USER_AGENT));
    assert!(USER_AGENT.starts_with("tracing-appinsights/0."));
    assert_eq!(&req.raw_body[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(gunzip(&req.raw_body), json.to_vec());
    assert_eq!(req.body, json.to_vec());
    assert_eq!(req.envelopes, envelopes);
}

#[tokio::test]
async fn posts_plain_json_when_gzip_is_off() {
    let server = FakeIngestion::start();
    let t = transport(&server.endpoint(), false);
    let (json, envelopes) = batch(2);

    let outcome = t.send(json.clone(), false, None).await;

    assert!(
        matches!(outcome, SendOutcome::Response { status: 200, .. }),
        "{outcome:?}"
    );
    let requests = server.wait_for_requests(1, WAIT);
    let req = &requests[0];
    assert_eq!(req.header("content-encoding"), None);
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.raw_body, json.to_vec());
    assert_eq!(req.envelopes, envelopes);
}

#[tokio::test]
async fn a_body_is_resent_unchanged() {
    let server = FakeIngestion::start();
    let t = transport(&server.endpoint(), true);
    let body = Bytes::from(gzip::compress(&batch(4).0).expect("in memory"));

    let first = t.send(body.clone(), true, None).await;
    let second = t.send(body, true, None).await;

    assert!(
        matches!(first, SendOutcome::Response { status: 200, .. }),
        "{first:?}"
    );
    assert!(
        matches!(second, SendOutcome::Response { status: 200, .. }),
        "{second:?}"
    );
    let requests = server.wait_for_requests(2, WAIT);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].raw_body, requests[1].raw_body);
    assert_eq!(requests[1].envelopes.len(), 4);
}

#[tokio::test]
async fn keeps_the_connection_alive() {
    let server = FakeIngestion::start();
    let t = transport(&server.endpoint(), true);

    let first = send(&t, batch(1).0).await;
    // Let the client put the connection back in its pool (batches are
    // seconds apart in the exporter).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = send(&t, batch(1).0).await;

    assert!(
        matches!(first, SendOutcome::Response { status: 200, .. }),
        "{first:?}"
    );
    assert!(
        matches!(second, SendOutcome::Response { status: 200, .. }),
        "{second:?}"
    );
    assert_eq!(server.wait_for_requests(2, WAIT).len(), 2);
    assert_eq!(server.connections_accepted(), 1);
}

/// The pool timer is wired: the client itself closes a connection idle
/// for `pool_idle_timeout` (without the timer hyper only checks at the
/// next checkout, and idle sockets stay open).
#[tokio::test]
async fn idle_connections_are_closed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(answer_once_then_wait_for_close(listener));
    let mut cfg = config(&format!("http://{addr}"), false);
    cfg.pool_idle_timeout = Duration::from_millis(100);
    let t = Transport::new(cfg).expect("builds");

    let outcome = send(&t, batch(1).0).await;

    assert!(
        matches!(outcome, SendOutcome::Response { status: 200, .. }),
        "{outcome:?}"
    );
    let closed = server.await.expect("server task");
    assert!(closed, "the idle connection was not closed by the client");
    drop(t);
}

/// Serves one request on one connection with a keep-alive `200 {}`, then
/// reports whether the client closed the connection within 2 s.
async fn answer_once_then_wait_for_close(listener: tokio::net::TcpListener) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut stream, _) = listener.accept().await.expect("accept");
    let mut request = Vec::new();
    let mut chunk = [0_u8; 4096];
    while !request_complete(&request) {
        let n = stream.read(&mut chunk).await.expect("read request");
        assert!(n > 0, "client closed before sending its request");
        request.extend_from_slice(&chunk[..n]);
    }
    let response =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    stream.write_all(response).await.expect("write response");
    let eof = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await;
    matches!(eof, Ok(Ok(0)))
}

/// Whether `buf` holds a whole request head and its `Content-Length` body.
fn request_complete(buf: &[u8]) -> bool {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body_len = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= head_end + 4 + body_len
}

// --- outcomes ---

#[tokio::test]
async fn error_status_comes_back_with_retry_after() {
    let server = FakeIngestion::start();
    server.script([ScriptedResponse::status(503).with_header("Retry-After", "2")]);
    let t = transport(&server.endpoint(), true);

    let outcome = send(&t, batch(1).0).await;

    assert_eq!(
        outcome,
        SendOutcome::Response {
            status: 503,
            retry_after: Some("2".to_owned()),
            location: None,
            body: Bytes::from_static(b"{}"),
        }
    );
}

#[tokio::test]
async fn redirect_comes_back_with_location() {
    let server = FakeIngestion::start();
    let location = "https://westus-1.in.applicationinsights.azure.com/v2.1/track";
    server.script([ScriptedResponse::status(308).with_header("Location", location)]);
    let t = transport(&server.endpoint(), true);

    let outcome = send(&t, batch(1).0).await;

    let SendOutcome::Response {
        status,
        location: got,
        retry_after,
        ..
    } = outcome
    else {
        panic!("expected a response, got {outcome:?}");
    };
    assert_eq!(
        (status, got.as_deref(), retry_after),
        (308, Some(location), None)
    );
    assert_eq!(server.wait_for_requests(1, WAIT).len(), 1, "not followed");
}

#[tokio::test]
async fn partial_success_body_comes_back() {
    let server = FakeIngestion::start();
    let body = r#"{"itemsReceived":2,"itemsAccepted":1,"errors":[{"index":1,"statusCode":500,"message":"boom"}]}"#;
    server.script([ScriptedResponse::status(206).with_body(body)]);
    let t = transport(&server.endpoint(), true);

    let outcome = send(&t, batch(2).0).await;

    let SendOutcome::Response {
        status: 206,
        body: got,
        ..
    } = outcome
    else {
        panic!("expected a 206, got {outcome:?}");
    };
    let parsed = parse_track_response(&got).expect("parses");
    assert_eq!(parsed.errors[0].index, 1);
    assert_eq!(parsed.errors[0].status_code, 500);
}

#[tokio::test]
async fn oversized_response_body_is_dropped() {
    let server = FakeIngestion::start();
    let huge = "x".repeat(MAX_RESPONSE_BODY + 1);
    server.script([ScriptedResponse::status(500).with_body(huge)]);
    let t = transport(&server.endpoint(), true);

    let outcome = send(&t, batch(1).0).await;

    let SendOutcome::Response { status, body, .. } = outcome else {
        panic!("expected a response, got {outcome:?}");
    };
    assert_eq!((status, body.len()), (500, 0));
}

#[tokio::test]
async fn slow_endpoint_times_out() {
    let server = FakeIngestion::start();
    server.script([ScriptedResponse::ok().with_delay(Duration::from_secs(3))]);
    let mut cfg = config(&server.endpoint(), true);
    cfg.request_timeout = Duration::from_millis(300);
    let t = Transport::new(cfg).expect("builds");

    let started = Instant::now();
    let outcome = send(&t, batch(1).0).await;

    // A timeout, not the answer the server gives after 3 s, and never
    // before the request timeout.
    assert_eq!(outcome, SendOutcome::Timeout);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert_eq!(server.wait_for_requests(1, WAIT).len(), 1);
}

#[tokio::test]
async fn closed_port_is_a_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let t = transport(&format!("http://127.0.0.1:{port}"), true);

    let outcome = send(&t, batch(1).0).await;

    let SendOutcome::Connect(description) = outcome else {
        panic!("expected a connect error, got {outcome:?}");
    };
    assert!(description.contains("client error"), "{description}");
}

/// An `https://` endpoint really speaks TLS: a plain-HTTP server makes
/// the handshake fail, reported as a connect error.
#[cfg(any(feature = "webpki-roots", feature = "native-roots"))]
#[tokio::test]
async fn https_endpoint_speaks_tls() {
    let server = FakeIngestion::start();
    let t = transport(&format!("https://{}", server.addr()), true);

    let outcome = send(&t, batch(1).0).await;

    let SendOutcome::Connect(description) = outcome else {
        panic!("expected a TLS failure, got {outcome:?}");
    };
    assert!(
        description.starts_with("client error (Connect)"),
        "{description}"
    );
    assert!(server.requests().is_empty(), "nothing was sent in clear");
}
