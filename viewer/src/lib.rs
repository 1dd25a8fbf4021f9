//! A local stand-in for Azure Application Insights: an ingestion endpoint
//! that accepts and refuses items as the service does, an SQLite store, and
//! a JSON query API over what arrived (see `README.md`).
//!
//! ```no_run
//! let running = tracing_appinsights_viewer::Viewer::start(
//!     tracing_appinsights_viewer::Config::in_memory("127.0.0.1:0".parse().unwrap()),
//! )
//! .unwrap();
//! println!("{}", running.connection_string());
//! ```

#![deny(missing_docs)]

mod api;
mod ingest;
pub mod live;
pub mod pages;
pub mod store;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{oneshot, Semaphore};

pub use ingest::{MAX_ITEMS_PER_BATCH, MAX_STORED_REJECTIONS_PER_REQUEST};
pub use store::{MAX_REJECTED_ITEM_BYTES, MAX_REJECTIONS};

/// The address the viewer listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8321";

/// The retention bound unless told otherwise: the oldest items beyond it
/// are deleted.
pub const DEFAULT_MAX_ITEMS: u64 = 1_000_000;

/// The largest request body taken, compressed or not, and the largest a
/// gzip body may decompress to: 16 MiB (the exporters send about 1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How many ingestion requests are read and processed at once; others wait.
pub const MAX_CONCURRENT_INGESTS: usize = 4;

/// How many connections are served at once; others wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a client may take to send a body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The instrumentation key of the printed connection string (any key is
/// accepted).
pub const INSTRUMENTATION_KEY: &str = "00000000-0000-0000-0000-000000000000";

/// How a viewer is started.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The database file; `None` keeps the items in memory.
    pub db: Option<PathBuf>,
    /// The most items kept; the oldest are deleted first.
    pub max_items: u64,
    /// The largest request body taken (see [`DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
}

impl Config {
    /// An in-memory viewer on `listen` with the default bounds.
    pub fn in_memory(listen: SocketAddr) -> Config {
        Config {
            listen,
            db: None,
            max_items: DEFAULT_MAX_ITEMS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The documented default database file:
/// `$XDG_DATA_HOME/tracing-appinsights-viewer/items.sqlite3`, else
/// `$HOME/.local/share/tracing-appinsights-viewer/items.sqlite3`, else
/// `appinsights-viewer.sqlite3` in the current directory.
pub fn default_db_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("share"))
        });
    match base {
        Some(base) => base
            .join("tracing-appinsights-viewer")
            .join("items.sqlite3"),
        None => PathBuf::from("appinsights-viewer.sqlite3"),
    }
}

/// The viewer.
pub struct Viewer;

/// A viewer that is serving; dropping it stops it.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// The viewer's base URL, `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The connection string that points an exporter at this viewer.
    pub fn connection_string(&self) -> String {
        let url = self.url();
        format!(
            "InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={url};LiveEndpoint={url}"
        )
    }

    /// Blocks until the viewer stops (it stops only when dropped or
    /// [`stop`](Running::stop)ped from elsewhere, so: forever).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Stops serving and waits for the server thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the request handlers share.
pub(crate) struct State {
    pub(crate) store: Mutex<store::Store>,
    ingest_permits: Semaphore,
    max_body_bytes: usize,
    pub(crate) live: live::Live,
}

impl Viewer {
    /// Opens the store, binds the address and serves on a thread of its
    /// own (with its own Tokio runtime).
    pub fn start(config: Config) -> Result<Running, String> {
        let store = store::Store::open(config.db.as_deref(), config.max_items)?;
        let listener = std::net::TcpListener::bind(config.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let state = Arc::new(State {
            store: Mutex::new(store),
            ingest_permits: Semaphore::new(MAX_CONCURRENT_INGESTS),
            max_body_bytes: config.max_body_bytes,
            live: live::Live::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("appinsights-viewer".into())
            .spawn(move || runtime.block_on(serve(listener, state, stopped)))
            .map_err(|e| e.to_string())?;
        Ok(Running {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors and the like: let them free up.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, std::convert::Infallible>(handle(req, state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

pub(crate) fn json_response(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    // The seed posts to `…//v2.1/track` when the endpoint ends in `/`.
    let trimmed = path.trim_start_matches('/');
    match (req.method().as_str(), trimmed) {
        ("POST", "v2.1/track" | "v2/track") => track(req, &state).await,
        ("POST", "QuickPulseService.svc/ping") => quick_pulse(req, &state, false).await,
        ("POST", "QuickPulseService.svc/post") => quick_pulse(req, &state, true).await,
        ("GET", "api/live") => json_response(200, &state.live.snapshot()),
        (_, "v2.1/track" | "v2/track") => json_response(
            405,
            &serde_json::json!({ "error": "method not allowed: POST items here" }),
        ),
        ("GET", p) if p.starts_with("api/") => {
            let query = req.uri().query().unwrap_or("").to_owned();
            let state = Arc::clone(&state);
            let p = p.to_owned();
            tokio::task::spawn_blocking(move || api::answer(&p, &query, &state))
                .await
                .unwrap_or_else(|_| {
                    json_response(500, &serde_json::json!({ "error": "internal error" }))
                })
        }
        ("GET", p) => {
            let query = req.uri().query().unwrap_or("").to_owned();
            let state = Arc::clone(&state);
            let p = p.to_owned();
            tokio::task::spawn_blocking(move || pages::answer(&p, &query, &state))
                .await
                .unwrap_or_else(|_| {
                    Some(json_response(
                        500,
                        &serde_json::json!({ "error": "internal error" }),
                    ))
                })
                .unwrap_or_else(|| json_response(404, &serde_json::json!({ "error": "not found" })))
        }
        _ => json_response(404, &serde_json::json!({ "error": "not found" })),
    }
}

/// A Live Metrics ping or post: subscribed while a Live Metrics page is
/// open; a post's data point kept (see [`live`]).
async fn quick_pulse(
    req: Request<Incoming>,
    state: &Arc<State>,
    is_post: bool,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let role = header("x-ms-qps-role-name");
    let instance = header("x-ms-qps-instance-name");
    let body = Limited::new(req.into_body(), live::MAX_BODY_BYTES);
    let answer = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) if is_post => {
            state
                .live
                .post(&collected.to_bytes(), role.as_deref(), instance.as_deref())
        }
        Ok(Ok(_)) => state.live.ping(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => live::Answer {
            status: 413,
            subscribed: state.live.watching(),
            error: Some(format!(
                "The body is larger than the limit of {} bytes",
                live::MAX_BODY_BYTES
            )),
        },
        _ => live::Answer {
            status: 400,
            subscribed: state.live.watching(),
            error: Some("The body could not be read".into()),
        },
    };
    let mut response = match &answer.error {
        Some(message) => json_response(
            answer.status,
            &serde_json::json!({ "Code": "BadRequest", "Message": message }),
        ),
        None => Response::new(Full::new(Bytes::new())),
    };
    let headers = response.headers_mut();
    headers.insert(
        "x-ms-qps-subscribed",
        hyper::header::HeaderValue::from_static(if answer.subscribed { "true" } else { "false" }),
    );
    headers.insert(
        "x-ms-qps-service-polling-interval-hint",
        hyper::header::HeaderValue::from_static(live::POLLING_HINT_MS),
    );
    headers.insert(
        "x-ms-qps-configuration-etag",
        hyper::header::HeaderValue::from_static(""),
    );
    response
}

async fn track(req: Request<Incoming>, state: &Arc<State>) -> Response<Full<Bytes>> {
    let max = state.max_body_bytes;
    let too_large = || {
        ingest::refuse_body(
            413,
            &format!("The body is larger than the limit of {max} bytes"),
            b"",
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX)) {
        // Refused before reading a byte of it; hyper closes the connection
        // rather than drain it.
        return finish(too_large(), state).await;
    }
    let gzip = req
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let Ok(_permit) = state.ingest_permits.acquire().await else {
        return json_response(503, &serde_json::json!({ "error": "shutting down" }));
    };
    let body = Limited::new(req.into_body(), max);
    let body = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_) => {
            return finish(
                ingest::refuse_body(408, "The body was not received in time", b""),
                state,
            )
            .await
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return finish(too_large(), state).await
        }
        Ok(Err(e)) => {
            return finish(
                ingest::refuse_body(400, &format!("The body could not be read: {e}"), b""),
                state,
            )
            .await
        }
        Ok(Ok(collected)) => collected.to_bytes().to_vec(),
    };
    let outcome = tokio::task::spawn_blocking(move || match ingest::decode(body, gzip, max) {
        Ok(decoded) => ingest::ingest(&decoded),
        Err(refused) => refused,
    })
    .await;
    match outcome {
        Ok(outcome) => finish(outcome, state).await,
        Err(_) => json_response(500, &serde_json::json!({ "error": "internal error" })),
    }
}

/// Stores what an outcome accepted and refused, and answers it.
async fn finish(outcome: ingest::Outcome, state: &Arc<State>) -> Response<Full<Bytes>> {
    let ingest::Outcome {
        status,
        body,
        accepted,
        rejections,
    } = outcome;
    let state = Arc::clone(state);
    let stored = tokio::task::spawn_blocking(move || {
        let mut store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        store.insert(&accepted, &rejections)
    })
    .await;
    match stored {
        Ok(Ok(())) => json_response(status, &body),
        Ok(Err(e)) => json_response(
            500,
            &serde_json::json!({ "itemsReceived": body["itemsReceived"], "itemsAccepted": 0,
                "errors": [], "error": e }),
        ),
        Err(_) => json_response(500, &serde_json::json!({ "error": "internal error" })),
    }
}
