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

use std::sync::Arc;
use std::time::Duration;

pub(crate) use self::proxy::ProxySetting;
use self::proxy::{ProxyError, Route};
use crate::appinsights::response::SendOutcome;
use crate::diag::TARGET;
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

/// The ingestion API path, appended to the endpoint.
const TRACK_PATH: &str = "/v2.1/track";

/// Our `User-Agent`.
const USER_AGENT: &str = concat!("tracing-appinsights/", env!("CARGO_PKG_VERSION"));

/// Response bodies are read up to this size; a longer body is discarded
/// (a real `TrackResponse` for the largest batch is far smaller).
const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// At most this much of a response body goes into a debug event.
const MAX_LOGGED_BODY: usize = 4096;

/// The connector: TCP (with connect timeout, `TCP_NODELAY`), straight or
/// through a proxy ([`Route`]), wrapped in TLS.
pub(crate) type Connector = HttpsConnector<Route>;

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
    /// Which proxy to go through.
    pub(crate) proxy: ProxySetting,
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
    /// The proxy cannot be used (not `http://`, no host).
    #[error(transparent)]
    Proxy(#[from] ProxyError),
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

/// An answer to [`Transport::post_json`]: the status, the headers and the
/// body (at most [`MAX_RESPONSE_BODY`] bytes).
#[derive(Debug)]
pub(crate) struct RawAnswer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
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
    /// The bound on one request, connect to last body byte.
    request_timeout: Duration,
    /// The proxy in use, as it may be logged (`None`: direct).
    proxy: Option<String>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("track_url", &self.track_url)
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
        let route = Route::new(
            &config.proxy,
            &track_uri,
            http_connector(config.connect_timeout),
        )?;
        let mut headers = default_headers();
        if let Some(auth) = route.request_auth() {
            headers.insert(header::PROXY_AUTHORIZATION, auth.clone());
        }
        let proxy = route.describe().map(str::to_owned);
        let connector = https_connector(tls, https, route);
        let client = pooled_client(connector, config.pool_idle_timeout);
        Ok(Transport {
            client,
            track_uri,
            track_url,
            headers,
            request_timeout: config.request_timeout,
            proxy,
        })
    }

    /// The proxy requests go through (`http://host:port`, never its
    /// credentials); `None` when they go straight to the endpoint.
    pub(crate) fn proxy(&self) -> Option<&str> {
        self.proxy.as_deref()
    }

    /// `{endpoint}/v2.1/track`.
    pub(crate) fn track_url(&self) -> &str {
        &self.track_url
    }

    /// POSTs one JSON array (`gzipped` or not), with `Authorization:
    /// bearer` when given, and returns what happened, within
    /// `request_timeout`. Call it inside a tokio runtime (the exporter's).
    pub(crate) async fn send(
        &self,
        body: Bytes,
        gzipped: bool,
        bearer: Option<&HeaderValue>,
    ) -> SendOutcome {
        let mut request = self.request(body, gzipped);
        if let Some(bearer) = bearer {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, bearer.clone());
        }
        match tokio::time::timeout(self.request_timeout, self.exchange(request)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(err)) => SendOutcome::Connect(describe(&err)),
            Err(_elapsed) => SendOutcome::Timeout,
        }
    }

    /// POSTs `body` (plain JSON) to `uri` with `headers` added to the
    /// defaults, within `timeout`: Live Metrics' requests, over the same
    /// kind of client. The error is a text fit for a log line.
    pub(crate) async fn post_json(
        &self,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<RawAnswer, String> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let mut all = self.headers.clone();
        all.extend(headers);
        *request.headers_mut() = all;
        let exchange = async {
            let (parts, body) = self.client.request(request).await?.into_parts();
            let body = read_body(body).await;
            Ok::<_, hyper_util::client::legacy::Error>(RawAnswer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(describe(&err)),
            Err(_elapsed) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// The POST request for `body`.
    fn request(&self, body: Bytes, gzipped: bool) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.track_uri.clone();
        *request.headers_mut() = self.headers.clone();
        if gzipped {
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

// === endpoint, TLS and connector ===

/// `scheme://host[:port]` of a URL: what a log line may show of an
/// endpoint or a proxy (never user information, a path or a query).
pub(crate) fn origin(url: &Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("?");
    let host = url.host().unwrap_or("?");
    match url.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

/// A client over `connector` whose idle connections close after
/// `idle_timeout`.
fn pooled_client(connector: Connector, idle_timeout: Duration) -> Client<Connector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle_timeout)
        // Without a timer hyper checks the idle timeout only at the next
        // checkout and never closes idle sockets in the background.
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// A client for `http://` and `https://` URLs alike (`https://` only when
/// root certificates could be loaded), never through a proxy: the
/// managed-identity credential's, whose token endpoints are plain `http`
/// on the machine itself or its host (App Service's `IDENTITY_ENDPOINT`, a
/// VM's instance metadata service), which no proxy can reach.
#[cfg(feature = "managed-identity")]
pub(crate) fn any_scheme_client(
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> Result<Client<Connector, Full<Bytes>>, TransportError> {
    let tls = tls_config("the token endpoint", false)?;
    let route = Route::Direct(http_connector(connect_timeout));
    let connector = https_connector(tls, false, route);
    Ok(pooled_client(connector, idle_timeout))
}

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
    if uri.host().is_none_or(str::is_empty) {
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

/// Wraps `route` in TLS; plain http is allowed only for an `http://` endpoint.
fn https_connector(tls: ClientConfig, https: bool, route: Route) -> Connector {
    let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
    let builder = if https {
        builder.https_only()
    } else {
        builder.https_or_http()
    };
    builder.enable_http1().wrap_connector(route)
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
pub(crate) fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(unreachable_pub, dead_code)] // the support file is written for integration tests
#[path = "../../tests/it/support/ingestion.rs"]
mod support;

mod proxy;

#[cfg(test)]
mod tests;
