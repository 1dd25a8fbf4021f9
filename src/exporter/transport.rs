//! The HTTP transport: POSTs one JSON array of envelopes to
//! `{endpoint}/v2.1/track` and reports what happened, without judging it
//! (the retry policy classifies the [`SendOutcome`]).
//!
//! One hyper-util client is built once and keeps its connections alive
//! (`pool_idle_timeout` with a `pool_timer`, or the idle timeout is
//! ignored). HTTPS goes through hyper-rustls with the `ring` provider; plain
//! `http://` is allowed only when the endpoint names it (tests, local
//! emulators). Each request, from connect to the last body byte, is bounded
//! by `request_timeout`.

// The HTTP sink is not wired in yet; until it is, only the tests use this.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ConfigBuilder, RootCertStore, WantsVerifier};
use serde::Deserialize;

/// The ingestion API path, appended to the endpoint.
const TRACK_PATH: &str = "/v2.1/track";

/// Our `User-Agent`.
const USER_AGENT: &str = concat!("tracing-appinsights/", env!("CARGO_PKG_VERSION"));

/// Response bodies are read up to this size; a longer body is discarded
/// (a real `TrackResponse` for the largest batch is far smaller).
const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// At most this much of a response body goes into a debug event.
const MAX_LOGGED_BODY: usize = 4096;

/// The gzip level. Level 1 compresses a typical batch about as well as 3 or
/// 6 (ids and timestamps dominate what is left) at a fraction of the CPU
/// cost; see `tests::gzip_level_throughput` for the measurement.
const GZIP_LEVEL: u32 = 1;

/// The diagnostics target (the layer ignores its own target).
const TARGET: &str = "tracing_appinsights";

/// The connector: TCP (with connect timeout, `TCP_NODELAY`) wrapped in TLS.
type Connector = HttpsConnector<HttpConnector>;

/// A `rustls` client config builder waiting for its root certificates.
type NeedsRoots = ConfigBuilder<ClientConfig, WantsVerifier>;

/// A `rustls` client config builder that has its root certificates.
type HasRoots = ConfigBuilder<ClientConfig, WantsClientCert>;

/// What the transport needs from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct TransportConfig {
    /// The ingestion endpoint without the trailing `/`, e.g.
    /// `https://westus-0.in.applicationinsights.azure.com` or
    /// `http://127.0.0.1:PORT` (a trailing `/` is tolerated).
    pub(crate) endpoint: String,
    /// Send bodies gzipped, with `Content-Encoding: gzip`.
    pub(crate) gzip: bool,
    /// The longest a TCP connect may take.
    pub(crate) connect_timeout: Duration,
    /// The longest one request may take: connect, TLS, sending, the
    /// response head and reading the response body.
    pub(crate) request_timeout: Duration,
    /// How long an unused keep-alive connection stays in the pool.
    pub(crate) pool_idle_timeout: Duration,
}

/// Why [`Transport::new`] failed. Nothing has been sent yet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The endpoint is not an absolute `https://` or `http://` URL.
    #[error("invalid ingestion endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `rustls` rejected the TLS configuration (the crypto provider
    /// supports no safe protocol version).
    #[error("could not set up TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// An `https://` endpoint, but no root certificates to trust.
    #[error("no TLS root certificates to verify `{endpoint}`: {reason}")]
    NoRootCertificates {
        /// The endpoint as given.
        endpoint: String,
        /// Why no roots were loaded, and which feature to enable.
        reason: String,
    },
}

/// What became of one POST. The transport does not judge it: the retry
/// policy does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// The service answered, with any status.
    Response {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header, as sent (seconds or an HTTP date).
        retry_after: Option<String>,
        /// The `Location` header (for 307/308), as sent.
        location: Option<String>,
        /// The response body, empty when it could not be read or was over
        /// 1 MiB.
        body: Bytes,
    },
    /// `request_timeout` passed before the response was read.
    Timeout,
    /// No answer: connection refused or reset, DNS or TLS failure, TCP
    /// connect timeout, and the like (a short description).
    Connect(String),
}

/// A request body ready to send (and to resend: cloning it shares the
/// bytes).
#[derive(Clone, Debug)]
pub(crate) struct RequestBody {
    /// The bytes on the wire.
    bytes: Bytes,
    /// Whether `bytes` is gzipped (`Content-Encoding: gzip`).
    gzipped: bool,
}

/// POSTs batches to the ingestion endpoint over one pooled client.
pub(crate) struct Transport {
    /// The client, built once; its pool keeps connections alive.
    client: Client<Connector, Full<Bytes>>,
    /// `{endpoint}/v2.1/track`, parsed.
    track_uri: Uri,
    /// `{endpoint}/v2.1/track`, as text.
    track_url: String,
    /// The headers every request carries (all but `Content-Encoding`).
    headers: HeaderMap,
    /// Whether bodies are gzipped.
    gzip: bool,
    /// The bound on one request, connect to last body byte.
    request_timeout: Duration,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("track_url", &self.track_url)
            .field("gzip", &self.gzip)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

// === impl Transport ===

impl Transport {
    /// Validates the endpoint and builds the client. Needs no tokio
    /// runtime (it runs in `Builder::build`, on the application thread).
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidEndpoint`] unless the endpoint is an
    /// absolute `https://` or `http://` URL without query or fragment;
    /// [`TransportError::NoRootCertificates`] for an `https://` endpoint when
    /// no root certificates could be loaded (or no roots feature is on);
    /// [`TransportError::Tls`] if `rustls` rejects the configuration.
    pub(crate) fn new(config: TransportConfig) -> Result<Self, TransportError> {
        let (track_uri, track_url, https) = parse_endpoint(&config.endpoint)?;
        let tls = tls_config(&config.endpoint, https)?;
        let connector = https_connector(tls, https, http_connector(config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            // Without a timer hyper checks the idle timeout only at the next
            // checkout and never closes idle sockets in the background.
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Transport {
            client,
            track_uri,
            track_url,
            headers: default_headers(),
            gzip: config.gzip,
            request_timeout: config.request_timeout,
        })
    }

    /// `{endpoint}/v2.1/track`.
    pub(crate) fn track_url(&self) -> &str {
        &self.track_url
    }

    /// Encodes a serialized JSON array (gzipped when configured) once, so
    /// retries resend the same bytes without copying them.
    pub(crate) fn prepare(&self, json_array: Bytes) -> RequestBody {
        if !self.gzip {
            return RequestBody::plain(json_array);
        }
        match try_gzip(&json_array) {
            Ok(gzipped) => RequestBody {
                bytes: Bytes::from(gzipped),
                gzipped: true,
            },
            // Unreachable in practice (the encoder writes to memory); send
            // plain rather than lose the batch.
            Err(_) => RequestBody::plain(json_array),
        }
    }

    /// POSTs one JSON array (serialized, not gzipped) and returns what
    /// happened. Call it inside a tokio runtime (the exporter's).
    pub(crate) async fn send(&self, json_array: Bytes) -> SendOutcome {
        let body = self.prepare(json_array);
        self.send_body(&body).await
    }

    /// POSTs a prepared body and returns what happened, within
    /// `request_timeout`. Call it inside a tokio runtime.
    pub(crate) async fn send_body(&self, body: &RequestBody) -> SendOutcome {
        let request = self.request(body);
        match tokio::time::timeout(self.request_timeout, self.exchange(request)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(err)) => SendOutcome::Connect(describe(&err)),
            Err(_elapsed) => SendOutcome::Timeout,
        }
    }

    /// The POST request for `body`.
    fn request(&self, body: &RequestBody) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body.bytes.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.track_uri.clone();
        *request.headers_mut() = self.headers.clone();
        if body.gzipped {
            request
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        request
    }

    /// Sends the request and reads the whole response.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<SendOutcome, hyper_util::client::legacy::Error> {
        let (parts, body) = self.client.request(request).await?.into_parts();
        let body = read_body(body).await;
        if !parts.status.is_success() {
            log_response(parts.status.as_u16(), &body);
        }
        Ok(SendOutcome::Response {
            status: parts.status.as_u16(),
            retry_after: header_text(&parts.headers, &header::RETRY_AFTER),
            location: header_text(&parts.headers, &header::LOCATION),
            body,
        })
    }
}

impl RequestBody {
    /// An uncompressed body.
    fn plain(bytes: Bytes) -> Self {
        RequestBody {
            bytes,
            gzipped: false,
        }
    }
}

// === endpoint, TLS and connector ===

/// Checks the endpoint; returns the track URI, its text, and whether it is
/// `https://`.
fn parse_endpoint(endpoint: &str) -> Result<(Uri, String, bool), TransportError> {
    let invalid = |reason: &str| TransportError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let base = endpoint.trim().trim_end_matches('/');
    if base.contains(['?', '#']) {
        return Err(invalid("it must not have a query or a fragment"));
    }
    let track_url = format!("{base}{TRACK_PATH}");
    let uri: Uri = track_url
        .parse()
        .map_err(|err: http::uri::InvalidUri| invalid(&err.to_string()))?;
    let https = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        _ => return Err(invalid("it must start with https:// (or http://)")),
    };
    if uri.host().map_or(true, str::is_empty) {
        return Err(invalid("it has no host"));
    }
    Ok((uri, track_url, https))
}

/// The TCP connector.
fn http_connector(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // Let the TLS wrapper see https:// URIs.
    http.enforce_http(false);
    http
}

/// Wraps `http` in TLS; plain http is allowed only for an `http://` endpoint.
fn https_connector(tls: ClientConfig, https: bool, http: HttpConnector) -> Connector {
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
    let builder = if https {
        builder.https_only()
    } else {
        builder.https_or_http()
    };
    builder.enable_http1().wrap_connector(http)
}

/// The TLS client configuration. Uses the process-wide crypto provider when
/// the application installed one, else `ring`: never the crate-feature
/// guess of `ClientConfig::builder`, which panics when both `ring` and
/// `aws-lc-rs` are compiled in.
fn tls_config(endpoint: &str, https: bool) -> Result<ClientConfig, TransportError> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TransportError::Tls)?;
    let builder = match with_roots(builder.clone()) {
        Ok(builder) => builder,
        // Plain http never uses TLS: no roots needed.
        Err(_) if !https => builder.with_root_certificates(RootCertStore::empty()),
        Err(reason) => {
            return Err(TransportError::NoRootCertificates {
                endpoint: endpoint.to_owned(),
                reason,
            })
        }
    };
    Ok(builder.with_no_client_auth())
}

/// Both root features: the OS store, falling back to the bundled roots.
#[cfg(all(feature = "native-roots", feature = "webpki-roots"))]
fn with_roots(builder: NeedsRoots) -> Result<HasRoots, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    builder.clone().with_native_roots().or_else(|err| {
        tracing::warn!(
            target: TARGET,
            error = %err,
            "Transport.NativeRootsUnavailable: the operating system's root certificates \
             could not be loaded; trusting the bundled webpki roots instead"
        );
        Ok(builder.with_webpki_roots())
    })
}

/// `native-roots` only: the operating system's certificate store.
#[cfg(all(feature = "native-roots", not(feature = "webpki-roots")))]
fn with_roots(builder: NeedsRoots) -> Result<HasRoots, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    builder.with_native_roots().map_err(|err| {
        format!("the operating system's root certificates could not be loaded ({err})")
    })
}

/// `webpki-roots` only: the bundled Mozilla roots.
#[cfg(all(feature = "webpki-roots", not(feature = "native-roots")))]
fn with_roots(builder: NeedsRoots) -> Result<HasRoots, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    Ok(builder.with_webpki_roots())
}

/// No root feature: https is impossible.
#[cfg(not(any(feature = "native-roots", feature = "webpki-roots")))]
fn with_roots(_builder: NeedsRoots) -> Result<HasRoots, String> {
    Err(
        "the crate was built without the `webpki-roots` and `native-roots` features; \
         enable one of them"
            .to_owned(),
    )
}

// === request and response helpers ===

/// The headers every request carries.
fn default_headers() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(4);
    let json = HeaderValue::from_static("application/json");
    headers.insert(header::CONTENT_TYPE, json.clone());
    headers.insert(header::ACCEPT, json);
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers
}

/// Reads the response body, up to [`MAX_RESPONSE_BODY`]; empty if it is
/// longer or cannot be read (the status still says what happened).
async fn read_body(body: Incoming) -> Bytes {
    match Limited::new(body, MAX_RESPONSE_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            tracing::debug!(
                target: TARGET,
                error = %err,
                "Transport.ResponseBodyUnreadable: the response body was discarded"
            );
            Bytes::new()
        }
    }
}

/// A debug event with a non-2xx status and the start of its body.
fn log_response(status: u16, body: &[u8]) {
    let shown = &body[..body.len().min(MAX_LOGGED_BODY)];
    tracing::debug!(
        target: TARGET,
        status,
        body = %String::from_utf8_lossy(shown),
        "Transport.Response: the ingestion endpoint answered with an error status"
    );
}

/// A header's value as text, if present and visible ASCII.
fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    Some(value.to_owned())
}

/// An error and its causes, `outer: inner: innermost`.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// === TrackResponse ===

/// The ingestion service's answer body (schema `TrackResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct TrackResponse {
    /// Items the service received.
    pub(crate) items_received: u32,
    /// Items it accepted.
    pub(crate) items_accepted: u32,
    /// One entry per rejected item.
    pub(crate) errors: Vec<TrackError>,
}

/// One rejected item in a [`TrackResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrackError {
    /// The item's position in the posted array. Required: an entry without
    /// it cannot be attributed, so the body does not parse.
    pub(crate) index: usize,
    /// The per-item status (0 when missing).
    #[serde(default)]
    pub(crate) status_code: u16,
    /// Why the item was rejected.
    #[serde(default)]
    pub(crate) message: String,
}

/// Parses a response body; `None` if it is not a `TrackResponse` object.
pub(crate) fn parse_track_response(body: &[u8]) -> Option<TrackResponse> {
    // serde would also take a struct from a JSON array (`[]` is then all
    // defaults): only an object is a `TrackResponse`.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(body).ok()
}

// === gzip ===

/// Gzips `data` at [`GZIP_LEVEL`].
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    try_gzip(data).unwrap_or_default()
}

/// Gzips `data` at [`GZIP_LEVEL`], reporting encoder errors.
fn try_gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    gzip_at(data, GZIP_LEVEL)
}

/// Gzips `data` at `level` (0–9).
fn gzip_at(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let out = Vec::with_capacity(data.len() / 4 + 64);
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
#[allow(unreachable_pub)] // the support file is written for integration tests
#[path = "../../tests/it/support/ingestion.rs"]
mod support;

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::time::Instant;

    use serde_json::{json, Value};

    use super::support::{FakeIngestion, ScriptedResponse};
    use super::*;

    /// Generous bound for loopback waits.
    const WAIT: Duration = Duration::from_secs(5);

    fn config(endpoint: &str, gzip: bool) -> TransportConfig {
        TransportConfig {
            endpoint: endpoint.to_owned(),
            gzip,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(30),
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

    /// One envelope shaped like the crate's output (reference (g1)/(g5)).
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
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
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

        let outcome = t.send(json.clone()).await;

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

        let outcome = t.send(json.clone()).await;

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
    async fn prepared_body_is_resent_unchanged() {
        let server = FakeIngestion::start();
        let t = transport(&server.endpoint(), true);
        let body = t.prepare(batch(4).0);

        let first = t.send_body(&body).await;
        let second = t.send_body(&body.clone()).await;

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

        let first = t.send(batch(1).0).await;
        // Let the client put the connection back in its pool (batches are
        // seconds apart in the exporter).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = t.send(batch(1).0).await;

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

        let outcome = t.send(batch(1).0).await;

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

        let outcome = t.send(batch(1).0).await;

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

        let outcome = t.send(batch(1).0).await;

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

        let outcome = t.send(batch(2).0).await;

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

        let outcome = t.send(batch(1).0).await;

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
        let outcome = t.send(batch(1).0).await;

        assert_eq!(outcome, SendOutcome::Timeout);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        assert_eq!(server.wait_for_requests(1, WAIT).len(), 1);
    }

    #[tokio::test]
    async fn closed_port_is_a_connect_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let t = transport(&format!("http://127.0.0.1:{port}"), true);

        let started = Instant::now();
        let outcome = t.send(batch(1).0).await;

        let SendOutcome::Connect(description) = outcome else {
            panic!("expected a connect error, got {outcome:?}");
        };
        assert!(description.contains("client error"), "{description}");
        assert!(started.elapsed() < WAIT);
    }

    /// An `https://` endpoint really speaks TLS: a plain-HTTP server makes
    /// the handshake fail, reported as a connect error.
    #[cfg(any(feature = "webpki-roots", feature = "native-roots"))]
    #[tokio::test]
    async fn https_endpoint_speaks_tls() {
        let server = FakeIngestion::start();
        let t = transport(&format!("https://{}", server.addr()), true);

        let outcome = t.send(batch(1).0).await;

        let SendOutcome::Connect(description) = outcome else {
            panic!("expected a TLS failure, got {outcome:?}");
        };
        assert!(
            description.starts_with("client error (Connect)"),
            "{description}"
        );
        assert!(server.requests().is_empty(), "nothing was sent in clear");
    }

    // --- TrackResponse ---

    #[test]
    fn track_responses_parse() {
        let error = |index, status_code, message: &str| TrackError {
            index,
            status_code,
            message: message.to_owned(),
        };
        let response = |items_received, items_accepted, errors| TrackResponse {
            items_received,
            items_accepted,
            errors,
        };
        let cases: Vec<(&str, Option<TrackResponse>)> = vec![
            (
                r#"{"itemsReceived":3,"itemsAccepted":3,"errors":[]}"#,
                Some(response(3, 3, vec![])),
            ),
            (
                r#"{ "itemsReceived": 3, "itemsAccepted": 1,
                     "errors": [ { "index": 0, "statusCode": 400, "message": "103: Field 'time' is too old" },
                                 { "index": 2, "statusCode": 500, "message": "Internal Server Error" } ] }"#,
                Some(response(
                    3,
                    1,
                    vec![
                        error(0, 400, "103: Field 'time' is too old"),
                        error(2, 500, "Internal Server Error"),
                    ],
                )),
            ),
            (r#"{"itemsReceived":2}"#, Some(response(2, 0, vec![]))),
            (
                r#"{"errors":[{"index":1}]}"#,
                Some(response(0, 0, vec![error(1, 0, "")])),
            ),
            (
                r#"{"itemsReceived":1,"appId":null,"extra":[1]}"#,
                Some(response(1, 0, vec![])),
            ),
            ("{}", Some(TrackResponse::default())),
            (r#"{"errors":[{"statusCode":500}]}"#, None),
            (r#"{"itemsReceived":-1}"#, None),
            ("[]", None),
            ("[3, 3, []]", None),
            ("  \n{\"itemsAccepted\": 1}", Some(response(0, 1, vec![]))),
            ("null", None),
            ("", None),
            ("<html>Bad Gateway</html>", None),
            ("\u{1f}\u{8b}garbage", None),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_track_response(body.as_bytes()), expected, "{body}");
        }
    }

    // --- gzip ---

    #[test]
    fn gzip_round_trips() {
        let (json, _) = batch(100);
        let compressed = gzip(&json);
        assert!(
            compressed.len() < json.len() / 2,
            "{} -> {}",
            json.len(),
            compressed.len()
        );
        assert_eq!(gunzip(&compressed), json.to_vec());
        assert_eq!(gunzip(&gzip(b"")), b"");
    }
}
