//! A fake Application Insights Live Metrics (QuickPulse) service on loopback.
//!
//! [`FakeLiveMetrics::start`] binds `127.0.0.1:0` and serves plain HTTP/1.1
//! (keep-alive on) from its own thread with its own current-thread tokio
//! runtime, as [`FakeIngestion`] does, so plain synchronous `#[test]`s can
//! use it. It knows the protocol's two requests, `POST
//! /QuickPulseService.svc/ping` ("is anyone watching?", a body of one
//! `MonitoringDataPoint` object) and `POST /QuickPulseService.svc/post` (a
//! JSON array of `MonitoringDataPoint`s); anything else is answered 404.
//!
//! Every request is captured as a [`LiveRequest`] before it is answered.
//! The usual answer, to a ping and to a post alike, is 200 with
//!
//! - `x-ms-qps-subscribed: true` or `false` ([`FakeLiveMetrics::set_subscribed`]);
//! - `x-ms-qps-configuration-etag`: the ETag of the current collection
//!   configuration, empty when there is none
//!   ([`FakeLiveMetrics::set_configuration`]);
//! - `x-ms-qps-service-polling-interval-hint` (milliseconds) and
//!   `x-ms-qps-service-endpoint-redirect-v2` when set
//!   ([`FakeLiveMetrics::set_polling_hint`], [`FakeLiveMetrics::set_redirect`]);
//! - as its body, the configuration (`CollectionConfigurationInfo`) when
//!   the fake is subscribed, has one, and the request's
//!   `x-ms-qps-configuration-etag` (absent counts as empty) differs from its
//!   ETag; else an empty body.
//!
//! Per-request [`LiveOverride`]s, queued with [`FakeLiveMetrics::script`]
//! and consumed in order, change that answer: a delay, another status, a
//! body that is not the configuration, or no answer at all (a closed or
//! reset connection, or one that hangs until the fake is dropped).
//!
//! The fake checks nothing the client sends (query, headers, body): tests
//! assert on the captured requests.
//!
//! Dropping the server stops the accept loop and every connection task
//! (hung ones too, which closes their sockets) and joins the thread,
//! waiting at most [`SHUTDOWN_WAIT`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::FakeIngestion;

/// The longest [`Drop`] of a [`FakeLiveMetrics`] waits for its thread to end.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// How often [`FakeLiveMetrics::wait_for`] looks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The path of a ping.
pub const PING_PATH: &str = "/QuickPulseService.svc/ping";

/// The path of a post.
pub const POST_PATH: &str = "/QuickPulseService.svc/post";

/// The body [`LiveOverride::garbage`] answers: not JSON.
pub const GARBAGE_BODY: &str = "{not valid json";

/// Header names of the protocol, lower-case.
pub mod header {
    /// Response: `true` when someone watches.
    pub const SUBSCRIBED: &str = "x-ms-qps-subscribed";
    /// Request and response: the collection configuration's ETag (the
    /// client's applied one, the service's current one).
    pub const CONFIGURATION_ETAG: &str = "x-ms-qps-configuration-etag";
    /// Response: the ping interval the service wants, in milliseconds.
    pub const POLLING_HINT: &str = "x-ms-qps-service-polling-interval-hint";
    /// Response: the host to use from now on.
    pub const REDIRECT: &str = "x-ms-qps-service-endpoint-redirect-v2";
    /// Request: the client's stream (one per process start).
    pub const STREAM_ID: &str = "x-ms-qps-stream-id";
    /// Request (ping): the host name.
    pub const MACHINE_NAME: &str = "x-ms-qps-machine-name";
    /// Request (ping): the cloud role.
    pub const ROLE_NAME: &str = "x-ms-qps-role-name";
    /// Request (ping): the cloud role instance.
    pub const INSTANCE_NAME: &str = "x-ms-qps-instance-name";
    /// Request (ping): `5`, the client supports filtering.
    pub const INVARIANT_VERSION: &str = "x-ms-qps-invariant-version";
    /// Request: the sending time as .NET ticks.
    pub const TRANSMISSION_TIME: &str = "x-ms-qps-transmission-time";
}

/// The eleven standard metric names a post carries (single backslashes on
/// the wire).
pub mod metric {
    /// Incoming requests per second.
    pub const REQUESTS: &str = r"\ApplicationInsights\Requests/Sec";
    /// Failed incoming requests per second.
    pub const REQUESTS_FAILED: &str = r"\ApplicationInsights\Requests Failed/Sec";
    /// Mean request duration, milliseconds.
    pub const REQUEST_DURATION: &str = r"\ApplicationInsights\Request Duration";
    /// Outgoing dependency calls per second.
    pub const DEPENDENCIES: &str = r"\ApplicationInsights\Dependency Calls/Sec";
    /// Failed dependency calls per second.
    pub const DEPENDENCIES_FAILED: &str = r"\ApplicationInsights\Dependency Calls Failed/Sec";
    /// Mean dependency call duration, milliseconds.
    pub const DEPENDENCY_DURATION: &str = r"\ApplicationInsights\Dependency Call Duration";
    /// Exceptions per second.
    pub const EXCEPTIONS: &str = r"\ApplicationInsights\Exceptions/Sec";
    /// The process's committed memory, bytes.
    pub const COMMITTED_BYTES: &str = r"\Memory\Committed Bytes";
    /// The process's resident memory, bytes.
    pub const PHYSICAL_BYTES: &str = r"\Process\Physical Bytes";
    /// The machine's CPU use.
    pub const PROCESSOR_TIME: &str = r"\Processor(_Total)\% Processor Time";
    /// The process's CPU use, divided by the number of processors.
    pub const PROCESS_CPU_NORMALIZED: &str = r"\% Process\Processor Time Normalized";

    /// All eleven, in the order the crate sends them.
    pub const ALL: [&str; 11] = [
        REQUESTS,
        REQUESTS_FAILED,
        REQUEST_DURATION,
        DEPENDENCIES,
        DEPENDENCIES_FAILED,
        DEPENDENCY_DURATION,
        EXCEPTIONS,
        COMMITTED_BYTES,
        PHYSICAL_BYTES,
        PROCESSOR_TIME,
        PROCESS_CPU_NORMALIZED,
    ];
}

/// Locks a mutex, ignoring poisoning (a panicking test must not make the
/// server, or its `Drop`, panic in turn).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a request is, by method and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveKind {
    /// `POST /QuickPulseService.svc/ping`.
    Ping,
    /// `POST /QuickPulseService.svc/post`.
    Post,
    /// Any other method or path (answered 404).
    Other,
}

impl LiveKind {
    /// The kind of a request with this method and path (without the query).
    fn of(method: &str, path: &str) -> LiveKind {
        match (method, path) {
            ("POST", PING_PATH) => LiveKind::Ping,
            ("POST", POST_PATH) => LiveKind::Post,
            _ => LiveKind::Other,
        }
    }
}

/// What the fake did with a request.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveAnswer {
    /// It answered.
    Http {
        /// The status code.
        status: u16,
        /// The response headers, names lower-case.
        headers: Vec<(String, String)>,
        /// The response body.
        body: String,
    },
    /// It closed the connection (FIN) without answering.
    Closed,
    /// It reset the connection (RST) without answering.
    Reset,
    /// It never answered, holding the connection open until it was dropped.
    Hung,
}

impl LiveAnswer {
    /// The status code, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            LiveAnswer::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The first value of response header `name` (case-insensitive), if it
    /// answered with one.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            LiveAnswer::Http { headers, .. } => find_header(headers, name),
            _ => None,
        }
    }

    /// The response body, if it answered.
    pub fn body(&self) -> Option<&str> {
        match self {
            LiveAnswer::Http { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Whether it answered `x-ms-qps-subscribed: true`.
    pub fn subscribed(&self) -> bool {
        self.header(header::SUBSCRIBED) == Some("true")
    }
}

/// A request as the fake saw it, with what it answered.
#[derive(Clone, Debug)]
pub struct LiveRequest {
    /// When its head had arrived.
    pub arrived: Instant,
    /// Ping, post or something else.
    pub kind: LiveKind,
    /// Method, e.g. `POST`.
    pub method: String,
    /// The path, without the query, e.g. `/QuickPulseService.svc/ping`.
    pub path: String,
    /// The query as sent, without `?` (empty when none), e.g.
    /// `api-version=2024-04-01-preview&ikey=…`.
    pub query: String,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body bytes as received.
    pub body: Vec<u8>,
    /// What the fake did with it.
    pub answer: LiveAnswer,
}

impl LiveRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The configuration ETag the request carried
    /// (`x-ms-qps-configuration-etag`; `Some("")` when sent empty, `None`
    /// when absent).
    pub fn etag(&self) -> Option<&str> {
        self.header(header::CONFIGURATION_ETAG)
    }

    /// The first value of query parameter `name`, as sent (no
    /// percent-decoding); `Some("")` for `name` or `name=`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The `ikey` query parameter.
    pub fn ikey(&self) -> Option<&str> {
        self.query_param("ikey")
    }

    /// The body as JSON, if it parses.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The `MonitoringDataPoint`s of the body: the object of a ping, the
    /// items of a post's array; empty if the body is neither.
    pub fn data_points(&self) -> Vec<Value> {
        match self.json() {
            Some(Value::Array(items)) => items,
            Some(object @ Value::Object(_)) => vec![object],
            _ => Vec::new(),
        }
    }

    /// The `Metrics` of every data point, in order, as (`Name`, `Value`);
    /// an item without a string name or a numeric value is left out.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        self.field_items("Metrics")
            .iter()
            .filter_map(|m| {
                let name = m.get("Name")?.as_str()?;
                let value = m.get("Value")?.as_f64()?;
                Some((name.to_owned(), value))
            })
            .collect()
    }

    /// The value of metric `name` (see [`metric`]), the last data point's
    /// when several carry it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .into_iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// The `Documents` of every data point, in order.
    pub fn documents(&self) -> Vec<Value> {
        self.field_items("Documents")
    }

    /// The `CollectionConfigurationErrors` of every data point, in order.
    pub fn errors(&self) -> Vec<Value> {
        self.field_items("CollectionConfigurationErrors")
    }

    /// The items of array field `field` of every data point, flattened.
    fn field_items(&self, field: &str) -> Vec<Value> {
        self.data_points()
            .into_iter()
            .filter_map(|mut point| match point.get_mut(field)?.take() {
                Value::Array(items) => Some(items),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// The first value of `name` (case-insensitive) in `headers`.
fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What an override does instead of the usual answer.
#[derive(Clone, Debug)]
enum Action {
    /// The usual answer.
    Usual,
    /// The usual headers with this status.
    Status(u16),
    /// The usual headers with this body.
    Body(String),
    /// Close the connection without answering.
    Close,
    /// Reset the connection without answering.
    Reset,
    /// Never answer.
    Hang,
}

/// One scripted change to one answer of a ping or a post. Build with a
/// constructor ([`LiveOverride::status`], [`LiveOverride::close`], …) and
/// refine with [`LiveOverride::after`], [`LiveOverride::only`],
/// [`LiveOverride::with_delay`] and the header methods.
///
/// The script is a FIFO: only its first override is considered. A request
/// it does not apply to ([`LiveOverride::only`] another kind, or not yet
/// [`LiveOverride::after`] enough requests) gets the usual answer and
/// leaves it in place; the request it applies to consumes it. Requests to
/// other paths are never overridden.
#[derive(Clone, Debug)]
pub struct LiveOverride {
    action: Action,
    after: usize,
    only: Option<LiveKind>,
    delay: Option<Duration>,
    /// Header changes: `Some` sets (replacing the usual value), `None`
    /// removes.
    headers: Vec<(String, Option<String>)>,
}

impl LiveOverride {
    /// An override with this action and no refinements.
    fn new(action: Action) -> Self {
        LiveOverride {
            action,
            after: 0,
            only: None,
            delay: None,
            headers: Vec::new(),
        }
    }

    /// The usual answer (to refine with a delay or headers, or to let one
    /// request through in a script).
    pub fn usual() -> Self {
        LiveOverride::new(Action::Usual)
    }

    /// The usual answer, after waiting `delay` (the request is captured
    /// first; other connections are answered meanwhile).
    pub fn delay(delay: Duration) -> Self {
        LiveOverride::usual().with_delay(delay)
    }

    /// The usual headers with status `code` (an invalid code is answered
    /// as 500). For 200 the body is the usual one; for any other code it
    /// is a `ServiceError` JSON object (`RequestId`, `ResponseDateTime`,
    /// `Code`, `Message`, `Exception`).
    pub fn status(code: u16) -> Self {
        LiveOverride::new(Action::Status(code))
    }

    /// 200, the usual headers, and [`GARBAGE_BODY`] (not JSON) as the body,
    /// whatever the ETags.
    pub fn garbage() -> Self {
        LiveOverride::body(GARBAGE_BODY)
    }

    /// 200, the usual headers, and `body` as the body, whatever the ETags
    /// and the subscription (e.g. a configuration sent while unsubscribed).
    pub fn body(body: impl Into<String>) -> Self {
        LiveOverride::new(Action::Body(body.into()))
    }

    /// Closes the connection (FIN) without answering.
    pub fn close() -> Self {
        LiveOverride::new(Action::Close)
    }

    /// Resets the connection (RST) without answering.
    pub fn reset() -> Self {
        LiveOverride::new(Action::Reset)
    }

    /// Never answers, keeping the connection open until the fake is
    /// dropped.
    pub fn hang() -> Self {
        LiveOverride::new(Action::Hang)
    }

    /// Applies only after `n` requests it would apply to have had the
    /// usual answer, counted from when it is first in the script.
    pub fn after(mut self, n: usize) -> Self {
        self.after = n;
        self
    }

    /// Applies only to a request of this kind (pings or posts).
    pub fn only(mut self, kind: LiveKind) -> Self {
        self.only = Some(kind);
        self
    }

    /// Waits `delay` before acting (answering, closing, resetting).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets response header `name` to `value`, replacing its usual value
    /// (e.g. `x-ms-qps-subscribed: false` on one post).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), Some(value.into())));
        self
    }

    /// Leaves response header `name` out of the answer.
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), None));
        self
    }

    /// Whether this override applies to a request of `kind`.
    fn matches(&self, kind: LiveKind) -> bool {
        kind != LiveKind::Other && self.only.is_none_or(|only| only == kind)
    }
}

/// The service's state, the script and the captured requests, under one
/// lock so that the order of the requests is the order of the answers.
#[derive(Default)]
struct State {
    requests: Vec<LiveRequest>,
    subscribed: bool,
    /// The current configuration: its ETag and its body.
    configuration: Option<(String, String)>,
    polling_hint: Option<Duration>,
    redirect: Option<String>,
    script: VecDeque<LiveOverride>,
}

impl State {
    /// The usual answer's headers.
    fn usual_headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            (header::SUBSCRIBED.to_owned(), self.subscribed.to_string()),
            (
                header::CONFIGURATION_ETAG.to_owned(),
                self.configuration
                    .as_ref()
                    .map(|(etag, _)| etag.clone())
                    .unwrap_or_default(),
            ),
        ];
        if let Some(hint) = self.polling_hint {
            headers.push((
                header::POLLING_HINT.to_owned(),
                hint.as_millis().to_string(),
            ));
        }
        if let Some(redirect) = &self.redirect {
            headers.push((header::REDIRECT.to_owned(), redirect.clone()));
        }
        headers
    }

    /// The usual answer's body for a request that carried `etag`.
    fn usual_body(&self, etag: Option<&str>) -> String {
        match &self.configuration {
            Some((current, body)) if self.subscribed && etag.unwrap_or("") != current => {
                body.clone()
            }
            _ => String::new(),
        }
    }

    /// Pops the override that applies to a request of `kind`, if any.
    fn next_override(&mut self, kind: LiveKind) -> Option<LiveOverride> {
        let first = self.script.front_mut()?;
        if !first.matches(kind) {
            return None;
        }
        if first.after > 0 {
            first.after -= 1;
            return None;
        }
        self.script.pop_front()
    }

    /// What to do with a request of `kind` that carried `etag`: how long to
    /// wait, then what to answer.
    fn decide(&mut self, kind: LiveKind, etag: Option<&str>) -> (Option<Duration>, LiveAnswer) {
        if kind == LiveKind::Other {
            return (None, http_answer(404, Vec::new(), service_error(404)));
        }
        let scripted = self.next_override(kind).unwrap_or_else(LiveOverride::usual);
        let mut headers = self.usual_headers();
        for (name, value) in &scripted.headers {
            headers.retain(|(k, _)| k != name);
            if let Some(value) = value {
                headers.push((name.clone(), value.clone()));
            }
        }
        let answer = match scripted.action {
            Action::Usual | Action::Status(200) => http_answer(200, headers, self.usual_body(etag)),
            Action::Status(code) => {
                let code = StatusCode::from_u16(code).map_or(500, |c| c.as_u16());
                http_answer(code, headers, service_error(code))
            }
            Action::Body(body) => http_answer(200, headers, body),
            Action::Close => LiveAnswer::Closed,
            Action::Reset => LiveAnswer::Reset,
            Action::Hang => LiveAnswer::Hung,
        };
        (scripted.delay, answer)
    }
}

/// An HTTP answer, `Content-Type: application/json` added.
fn http_answer(status: u16, mut headers: Vec<(String, String)>, body: String) -> LiveAnswer {
    headers.push((
        "content-type".to_owned(),
        "application/json; charset=utf-8".to_owned(),
    ));
    LiveAnswer::Http {
        status,
        headers,
        body,
    }
}

/// The service's error body for `status` (its time is a fixed one).
fn service_error(status: u16) -> String {
    serde_json::json!({
        "RequestId": "00000000-0000-0000-0000-000000000001",
        "ResponseDateTime": "2026-01-01T00:00:00Z",
        "Code": "ServiceError",
        "Message": format!("fake live metrics answers {status}"),
        "Exception": "",
    })
    .to_string()
}

/// State shared between the test thread and the server thread.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    connections: AtomicUsize,
}

/// A fake Live Metrics service running on its own thread. See the module
/// docs.
pub struct FakeLiveMetrics {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl FakeLiveMetrics {
    /// Binds `127.0.0.1:0` and starts serving on a new thread, not
    /// subscribed and without a configuration. Panics if the socket or the
    /// runtime cannot be set up.
    pub fn start() -> FakeLiveMetrics {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("fake live metrics: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake live metrics: set_nonblocking");
        let addr = listener
            .local_addr()
            .expect("fake live metrics: local_addr");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("fake live metrics: build tokio runtime");
        let shared = Arc::new(Shared::default());
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();

        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fake-live-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("fake live metrics: register listener with tokio");
                    tokio::select! {
                        _ = shutdown_rx => {}
                        _ = accept_loop(listener, thread_shared) => {}
                    }
                });
                // Dropping the runtime drops every spawned connection task,
                // which closes their sockets (hung ones too) and cuts any
                // delay short.
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = done_tx.send(());
            })
            .expect("fake live metrics: spawn server thread");

        FakeLiveMetrics {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            done: done_rx,
            thread: Some(thread),
        }
    }

    /// The bound socket address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:PORT/` (with the trailing slash a
    /// portal's `LiveEndpoint` has).
    pub fn endpoint(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A test connection string for `ingestion` (see
    /// [`super::connection_string`]) with this server as its
    /// `LiveEndpoint`: `InstrumentationKey=<TEST_IKEY>;IngestionEndpoint=<ingestion>/;`
    /// `LiveEndpoint=http://127.0.0.1:PORT/` (Live Metrics is on by default
    /// with a `LiveEndpoint`).
    pub fn connection_string(&self, ingestion: &FakeIngestion) -> String {
        format!(
            "{};LiveEndpoint={}",
            ingestion.connection_string(),
            self.endpoint()
        )
    }

    /// Runs `f` on the state under the lock.
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut lock(&self.shared.state))
    }

    /// Whether someone watches: the `x-ms-qps-subscribed` of the usual
    /// answer (`false` at start).
    pub fn set_subscribed(&self, subscribed: bool) {
        self.with_state(|s| s.subscribed = subscribed);
    }

    /// Makes `config` (a `CollectionConfigurationInfo`) the current
    /// configuration, ETag `etag`. An object without an `ETag` field gets
    /// one, `etag`, as the service's have.
    pub fn set_configuration(&self, etag: &str, config: &Value) {
        let mut config = config.clone();
        if let Value::Object(fields) = &mut config {
            fields
                .entry("ETag")
                .or_insert_with(|| Value::String(etag.to_owned()));
        }
        self.set_configuration_raw(etag, &config.to_string());
    }

    /// Makes `body`, verbatim (any text, e.g. not JSON), the current
    /// configuration, ETag `etag`.
    pub fn set_configuration_raw(&self, etag: &str, body: &str) {
        let configuration = (etag.to_owned(), body.to_owned());
        self.with_state(|s| s.configuration = Some(configuration));
    }

    /// No configuration: answers carry an empty ETag and no body.
    pub fn clear_configuration(&self) {
        self.with_state(|s| s.configuration = None);
    }

    /// The `x-ms-qps-service-polling-interval-hint` of every answer, in
    /// whole milliseconds; `None` (the start) leaves it out.
    pub fn set_polling_hint(&self, hint: Option<Duration>) {
        self.with_state(|s| s.polling_hint = hint);
    }

    /// The `x-ms-qps-service-endpoint-redirect-v2` of every answer (any
    /// text: the fake does not check it); `None` (the start) leaves it out.
    pub fn set_redirect(&self, target: Option<String>) {
        self.with_state(|s| s.redirect = target);
    }

    /// Appends overrides to the script (see [`LiveOverride`]).
    pub fn script(&self, overrides: impl IntoIterator<Item = LiveOverride>) {
        self.with_state(|s| s.script.extend(overrides));
    }

    /// How many overrides of the script are still to be consumed.
    pub fn script_left(&self) -> usize {
        self.with_state(|s| s.script.len())
    }

    /// All requests captured so far, in arrival order.
    pub fn requests(&self) -> Vec<LiveRequest> {
        self.with_state(|s| s.requests.clone())
    }

    /// The pings captured so far, in order.
    pub fn pings(&self) -> Vec<LiveRequest> {
        self.of_kind(LiveKind::Ping)
    }

    /// The posts captured so far, in order.
    pub fn posts(&self) -> Vec<LiveRequest> {
        self.of_kind(LiveKind::Post)
    }

    /// The requests of `kind` captured so far, in order.
    fn of_kind(&self, kind: LiveKind) -> Vec<LiveRequest> {
        self.with_state(|s| {
            s.requests
                .iter()
                .filter(|r| r.kind == kind)
                .cloned()
                .collect()
        })
    }

    /// Polls until `ready` holds for the requests captured so far or
    /// `timeout` passes; returns the requests either way (assert on them,
    /// and print them when it fails).
    pub fn wait_for(
        &self,
        ready: impl Fn(&[LiveRequest]) -> bool,
        timeout: Duration,
    ) -> Vec<LiveRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if ready(&requests) || Instant::now() >= deadline {
                return requests;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// How many TCP connections have been accepted.
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeLiveMetrics {
    /// Stops the accept loop and all connection tasks, then joins the server
    /// thread, giving up (and leaving the thread detached) after
    /// [`SHUTDOWN_WAIT`]. Never panics.
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        match self.done.recv_timeout(SHUTDOWN_WAIT) {
            // Finished (Ok) or died (Disconnected: it panicked): join is prompt.
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!(
                    "fake live metrics {}: server thread did not stop within {:?} \
                     ({} connections accepted); detaching it",
                    self.addr,
                    SHUTDOWN_WAIT,
                    self.connections_accepted()
                );
            }
        }
    }
}

/// How a connection ends without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// FIN.
    Close,
    /// RST.
    Reset,
}

/// Accepts connections until the task is dropped, serving each on its own task.
async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // e.g. too many open files: back off instead of spinning.
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve(stream, Arc::clone(&shared)));
    }
}

/// Serves one connection until it ends, or until a request asks for it to
/// be closed or reset: then hyper gives the socket back and it is dropped
/// (after `SO_LINGER` 0 for a reset).
async fn serve(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let (cut_tx, mut cut_rx) = tokio::sync::mpsc::unbounded_channel::<Cut>();
    let service = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&shared);
        let cut = cut_tx.clone();
        async move { Ok::<_, Infallible>(handle(req, shared, cut).await) }
    });
    let mut connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let cut = tokio::select! {
        _ = &mut connection => return,
        Some(cut) = cut_rx.recv() => cut,
    };
    let stream = connection.into_parts().io.into_inner();
    if cut == Cut::Reset {
        let _ = stream.set_zero_linger();
    }
    drop(stream);
}

/// Captures one request and decides its answer (under one lock), waits
/// out any delay, then answers, or asks [`serve`] to cut the connection,
/// or never returns.
async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    cut: tokio::sync::mpsc::UnboundedSender<Cut>,
) -> Response<Full<Bytes>> {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => return response(400, &[], String::new()),
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let kind = LiveKind::of(&method, &path);
    let (delay, answer) = {
        let mut state = lock(&shared.state);
        let (delay, answer) = state.decide(kind, find_header(&headers, header::CONFIGURATION_ETAG));
        state.requests.push(LiveRequest {
            arrived,
            kind,
            method,
            path,
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers,
            body,
            answer: answer.clone(),
        });
        (delay, answer)
    };

    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let how = match answer {
        LiveAnswer::Http {
            status,
            headers,
            body,
        } => return response(status, &headers, body),
        LiveAnswer::Closed => Some(Cut::Close),
        LiveAnswer::Reset => Some(Cut::Reset),
        LiveAnswer::Hung => None,
    };
    if let Some(how) = how {
        let _ = cut.send(how);
    }
    // Never answer: the connection task drops this future (a cut) or the
    // runtime does (a hang, when the fake is dropped).
    std::future::pending().await
}

/// Builds a response (a header that is not valid HTTP is left out).
fn response(status: u16, headers: &[(String, String)], body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let map = resp.headers_mut();
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(k.as_bytes()),
            http::header::HeaderValue::from_str(v),
        ) {
            map.append(name, value);
        }
    }
    resp
}
