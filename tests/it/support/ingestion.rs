//! A fake Application Insights ingestion endpoint on loopback.
//!
//! [`FakeIngestion::start`] binds `127.0.0.1:0` and serves HTTP/1.1 (keep-alive
//! on) from its own thread with its own current-thread tokio runtime, so plain
//! synchronous `#[test]`s can use it. Every request is captured (any method,
//! any path); its body is gunzipped when `Content-Encoding: gzip` and parsed as
//! a JSON array of envelopes or as newline-delimited JSON. Answers come from a
//! FIFO script ([`FakeIngestion::script`]); when the script is empty the answer
//! is the service's success reply, `200 {"itemsReceived":n,"itemsAccepted":n,"errors":[]}`.
//!
//! Dropping the server stops the accept loop and every connection task and
//! joins the thread, waiting at most [`SHUTDOWN_WAIT`].
//!
//! The crate's unit tests compile this file too (`#[path]` in
//! `src/exporter/transport.rs`), so it stands alone and holds only what
//! both use; the suite's additions (connection strings, envelopes) are in
//! `support/mod.rs`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
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

/// The longest [`Drop`] of a [`FakeIngestion`] waits for its thread to end.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// How often the `wait_for_*` helpers look again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Locks a mutex, ignoring poisoning (a panicking test must not make the
/// server, or its `Drop`, panic in turn).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// State shared between the test thread and the server thread.
#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<CapturedRequest>>,
    script: Mutex<VecDeque<ScriptedResponse>>,
    connections: AtomicUsize,
    /// Requests being answered right now, and the most there ever were.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A fake ingestion server running on its own thread. See the module docs.
pub struct FakeIngestion {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl FakeIngestion {
    /// Binds `127.0.0.1:0` and starts serving on a new thread. Panics if the
    /// socket or the runtime cannot be set up.
    pub fn start() -> FakeIngestion {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("fake ingestion: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake ingestion: set_nonblocking");
        let addr = listener.local_addr().expect("fake ingestion: local_addr");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("fake ingestion: build tokio runtime");
        let shared = Arc::new(Shared::default());
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();

        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fake-ingestion-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("fake ingestion: register listener with tokio");
                    tokio::select! {
                        _ = shutdown_rx => {}
                        _ = accept_loop(listener, thread_shared) => {}
                    }
                });
                // Dropping the runtime drops every spawned connection task,
                // which closes their sockets (and cuts any scripted delay short).
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = done_tx.send(());
            })
            .expect("fake ingestion: spawn server thread");

        FakeIngestion {
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

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Appends answers to the FIFO script. Each request pops one answer; once
    /// the script is empty the default 200 answer is given.
    pub fn script(&self, responses: impl IntoIterator<Item = ScriptedResponse>) {
        lock(&self.shared.script).extend(responses);
    }

    /// All requests captured so far, in arrival order.
    pub fn requests(&self) -> Vec<CapturedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Polls until at least `n` requests have arrived or `timeout` passes;
    /// returns whatever has arrived by then (check the length).
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<CapturedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n || Instant::now() >= deadline {
                return requests;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The most requests this server was answering at the same time.
    pub fn max_concurrent_requests(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// How many TCP connections have been accepted (to test keep-alive reuse).
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeIngestion {
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
                    "fake ingestion {}: server thread did not stop within {:?} \
                     ({} connections accepted); detaching it",
                    self.addr,
                    SHUTDOWN_WAIT,
                    self.connections_accepted()
                );
            }
        }
    }
}

/// One scripted answer. Build with [`ScriptedResponse::status`] or
/// [`ScriptedResponse::ok`] and the `with_*` methods.
#[derive(Clone, Debug)]
pub struct ScriptedResponse {
    /// HTTP status code (an invalid code is answered as 500).
    pub status: u16,
    /// Extra response headers. `Content-Type: application/json` is added
    /// unless a `content-type` is given here.
    pub headers: Vec<(String, String)>,
    /// The response body; [`ScriptedResponse::DEFAULT_BODY`] stands for the
    /// computed success body.
    pub body: String,
    /// Wait this long (after the request is captured) before answering.
    pub delay: Option<Duration>,
}

impl ScriptedResponse {
    /// Sentinel body meaning "the default success body"
    /// `{"itemsReceived":n,"itemsAccepted":n,"errors":[]}` for this request.
    pub const DEFAULT_BODY: &'static str = "\u{0}fake-ingestion-default-body\u{0}";

    /// An answer with this status and body `{}`.
    pub fn status(code: u16) -> Self {
        ScriptedResponse {
            status: code,
            headers: Vec::new(),
            body: "{}".to_string(),
            delay: None,
        }
    }

    /// The default answer (200 with the computed success body), e.g. to put a
    /// delay or a header on an otherwise normal success.
    pub fn ok() -> Self {
        ScriptedResponse {
            status: 200,
            headers: Vec::new(),
            body: Self::DEFAULT_BODY.to_string(),
            delay: None,
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// Waits this long before answering (the request is captured first).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct CapturedRequest {
    /// Method, e.g. `POST`.
    pub method: String,
    /// The request target as sent: the path plus any query, e.g. `/v2.1/track`.
    pub path: String,
    /// Headers in arrival order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body bytes as received.
    pub raw_body: Vec<u8>,
    /// The body, gunzipped when `Content-Encoding: gzip` (left as received if
    /// it does not gunzip).
    pub body: Vec<u8>,
    /// The envelopes in the body: a JSON array's items, else one per non-empty
    /// NDJSON line; empty if the body does not parse.
    pub envelopes: Vec<Value>,
}

impl CapturedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
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
        let conn_shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&conn_shared);
                async move { Ok::<_, Infallible>(handle(req, shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Captures one request, pops its scripted answer, waits out any delay, answers.
async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let raw_body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => return simple_response(StatusCode::BAD_REQUEST, "{}".to_string(), &[]),
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
    let gzip = headers
        .iter()
        .any(|(k, v)| k == "content-encoding" && v.to_ascii_lowercase().contains("gzip"));
    let body = if gzip {
        gunzip(&raw_body).unwrap_or_else(|| raw_body.clone())
    } else {
        raw_body.clone()
    };
    let envelopes = parse_envelopes(&body);
    let n = envelopes.len();
    let captured = CapturedRequest {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| parts.uri.to_string()),
        headers,
        raw_body,
        body,
        envelopes,
    };

    // Capture and pop under separate, short-lived locks; never across an await.
    lock(&shared.requests).push(captured);
    let scripted = lock(&shared.script)
        .pop_front()
        .unwrap_or_else(ScriptedResponse::ok);

    if let Some(delay) = scripted.delay {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    let status = StatusCode::from_u16(scripted.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if scripted.body == ScriptedResponse::DEFAULT_BODY {
        default_body(n)
    } else {
        scripted.body
    };
    simple_response(status, body, &scripted.headers)
}

/// The service's success reply for `n` items.
fn default_body(n: usize) -> String {
    format!(r#"{{"itemsReceived":{n},"itemsAccepted":{n},"errors":[]}}"#)
}

/// Builds a response; `Content-Type: application/json` unless `headers` has one.
fn simple_response(
    status: StatusCode,
    body: String,
    headers: &[(String, String)],
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let map = resp.headers_mut();
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(k.as_bytes()),
            http::header::HeaderValue::from_str(v),
        ) {
            map.append(name, value);
        }
    }
    if !map.contains_key(http::header::CONTENT_TYPE) {
        map.insert(
            http::header::CONTENT_TYPE,
            http::header::HeaderValue::from_static("application/json"),
        );
    }
    resp
}

/// Gunzips `data`, or `None` if it is not valid gzip.
fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// A JSON array's items, else one envelope per non-empty NDJSON line; empty
/// if either form fails to parse.
fn parse_envelopes(body: &[u8]) -> Vec<Value> {
    if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) {
        return items;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(serde_json::from_str::<Value>)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default()
}
