//! A fake Live Metrics service for the harnesses: always subscribed, no
//! collection configuration; it keeps every post it receives. (The test
//! suite's fake, `tests/it/support/live.rs`, scripts answers; this one only
//! watches.)

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::Value;

/// One post as received.
#[derive(Debug, Clone)]
pub struct Post {
    /// When it arrived.
    pub at: Instant,
    /// Its `x-ms-qps-transmission-time` (.NET ticks: 100 ns units), taken
    /// by the client when it built the post.
    pub ticks: u64,
    /// The last data point of its body.
    pub point: Value,
}

impl Post {
    /// The value of metric `name` (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        self.point["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["Name"] == name)
            .and_then(|m| m["Value"].as_f64())
            .unwrap_or(0.0)
    }

    /// Its documents.
    pub fn documents(&self) -> &[Value] {
        self.point["Documents"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Default)]
struct Seen {
    pings: usize,
    posts: Vec<Post>,
}

/// The service, on a loopback port; it runs until the process exits.
#[derive(Debug, Clone)]
pub struct FakeLive {
    endpoint: String,
    seen: Arc<Mutex<Seen>>,
}

impl FakeLive {
    /// Starts the service.
    pub fn start() -> FakeLive {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::clone(&seen);
        let addr = crate::serve(move |req| answer(req, Arc::clone(&shared)));
        FakeLive {
            endpoint: format!("http://{addr}/"),
            seen,
        }
    }

    /// `LiveEndpoint` for a connection string.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The posts received so far, oldest first.
    pub fn posts(&self) -> Vec<Post> {
        self.seen.lock().unwrap().posts.clone()
    }

    /// How many pings were received.
    pub fn pings(&self) -> usize {
        self.seen.lock().unwrap().pings
    }
}

async fn answer(
    req: Request<Incoming>,
    seen: Arc<Mutex<Seen>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let path = req.uri().path().to_owned();
    let ticks = req
        .headers()
        .get("x-ms-qps-transmission-time")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let body = crate::body_of(req).await;
    {
        let mut seen = seen.lock().unwrap();
        if path.ends_with("/ping") {
            seen.pings += 1;
        } else if path.ends_with("/post") {
            let points: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(point) = points.into_iter().last() {
                seen.posts.push(Post { at, ticks, point });
            }
        }
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert("x-ms-qps-subscribed", "true".parse().unwrap());
    headers.insert("x-ms-qps-configuration-etag", "".parse().unwrap());
    Ok(response)
}
