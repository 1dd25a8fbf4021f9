//! What the load harnesses (`src/bin/*`) share: a loopback HTTP server and
//! an ingestion endpoint that counts items,
//! reading the envelopes out of a request body, the process's peak memory,
//! a connection string to a loopback endpoint, a cheap random number
//! generator and a fake Live Metrics service ([`live`]).

pub mod live;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

/// Serves HTTP/1.1 on a new loopback port, on a thread of its own, each
/// request answered by `handler`; returns the address.
pub fn serve<F, Fut>(handler: F) -> std::net::SocketAddr
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<
            Output = Result<
                hyper::Response<http_body_util::Full<hyper::body::Bytes>>,
                std::convert::Infallible,
            >,
        > + Send
        + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(handler);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

/// Serves, on a new loopback port, an ingestion endpoint that accepts
/// everything and adds the number of items of each request to `received`.
pub fn counting_ingestion(received: std::sync::Arc<AtomicU64>) -> std::net::SocketAddr {
    serve(move |req| {
        let received = std::sync::Arc::clone(&received);
        async move {
            let body = body_of(req).await;
            let items: Vec<serde::de::IgnoredAny> =
                serde_json::from_slice(&unzipped(&body)).unwrap_or_default();
            let n = items.len();
            received.fetch_add(n as u64, Ordering::Relaxed);
            let answer = format!(r#"{{"itemsReceived":{n},"itemsAccepted":{n},"errors":[]}}"#);
            Ok(hyper::Response::new(http_body_util::Full::new(
                hyper::body::Bytes::from(answer),
            )))
        }
    })
}

/// A request's whole body (empty when it could not be read).
pub async fn body_of(req: hyper::Request<hyper::body::Incoming>) -> hyper::body::Bytes {
    use http_body_util::BodyExt as _;
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// The connection string of an ingestion endpoint on `addr` (loopback).
pub fn connection_string(addr: std::net::SocketAddr) -> String {
    format!(
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://{addr}/"
    )
}

/// The process's peak resident memory in MiB, from `/proc/self/status`
/// (Linux); `None` elsewhere.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A request body as JSON: gunzipped when it is gzip, else as it is.
pub fn unzipped(body: &[u8]) -> Vec<u8> {
    let mut json = Vec::new();
    match flate2::read::GzDecoder::new(body).read_to_end(&mut json) {
        Ok(_) => json,
        Err(_) => body.to_vec(),
    }
}

/// The envelopes of a request body (a JSON array, gzipped or not), or
/// `None` when it is not one.
pub fn envelopes(body: &[u8]) -> Option<Vec<Envelope>> {
    serde_json::from_slice(&unzipped(body)).ok()
}

/// The parts of an envelope the harnesses look at. Anything else in it is
/// ignored; an envelope without them parses with empty values.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    data: Data,
}

#[derive(Debug, Default, Deserialize)]
struct Data {
    #[serde(rename = "baseData", default)]
    base_data: BaseData,
}

#[derive(Debug, Default, Deserialize)]
struct BaseData {
    #[serde(default)]
    id: String,
    #[serde(default)]
    properties: HashMap<String, serde_json::Value>,
}

impl Envelope {
    /// `baseData.id`: the span id, in hex (empty for events).
    pub fn id(&self) -> &str {
        &self.data.base_data.id
    }

    /// The span field `name` as a number, from `baseData.properties`
    /// (where span fields go, as text).
    pub fn number_field(&self, name: &str) -> Option<u64> {
        self.data
            .base_data
            .properties
            .get(name)?
            .as_str()?
            .parse()
            .ok()
    }
}

/// A xorshift generator seeded from the clock: the harnesses' answers and
/// timings only need to be mixed, not unpredictable. Shared by threads
/// without a lock (two of them may now and then draw the same number).
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Default for Rng {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng(AtomicU64::new(seed | 1))
    }
}

impl Rng {
    /// A number in `0..n` (`n` > 0).
    pub fn below(&self, n: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.store(x, Ordering::Relaxed);
        x % n
    }
}
