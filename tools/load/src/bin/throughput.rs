//! End to end at a sustained rate: the application produces spans at
//! `RATE` per second for `SECONDS` seconds into an exporter that sends them
//! to a loopback ingestion server counting what it receives; at the end it
//! reports losses and the process's peak memory, and exits non-zero if a
//! span was lost.
//!
//! ```sh
//! cargo run --release -p tracing-appinsights-load --bin throughput -- 100000 10
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tracing_appinsights_load::{connection_string, peak_rss_mib, unzipped};
use tracing_subscriber::prelude::*;

/// Counts the envelopes POSTed to it, keeping none.
fn start_counting_server(received: Arc<AtomicU64>) -> SocketAddr {
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
                let received = Arc::clone(&received);
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| count(req, Arc::clone(&received)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

async fn count(
    req: Request<Incoming>,
    received: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = tracing_appinsights_load::body_of(req).await;
    let items: Vec<serde::de::IgnoredAny> =
        serde_json::from_slice(&unzipped(&body)).unwrap_or_default();
    received.fetch_add(items.len() as u64, Ordering::Relaxed);
    let n = items.len();
    let answer = format!(r#"{{"itemsReceived":{n},"itemsAccepted":{n},"errors":[]}}"#);
    Ok(Response::new(Full::new(Bytes::from(answer))))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let received = Arc::new(AtomicU64::new(0));
    let addr = start_counting_server(Arc::clone(&received));
    let (layer, guard) = tracing_appinsights::Builder::new()
        .with_connection_string(connection_string(addr))
        .without_proxy()
        .with_export_interval(Duration::from_millis(200))
        // Measure what memory alone delivers: nothing parked on disk.
        .with_offline_storage(false)
        .build()?;
    tracing_subscriber::registry().with(layer).init();

    // Produce in 1 ms slices, each with its share of the rate.
    let per_slice = (rate / 1000).max(1);
    let started = Instant::now();
    let mut produced = 0_u64;
    for slice in 0..seconds * 1000 {
        for _ in 0..per_slice {
            let span = tracing::info_span!("request", route = "/orders/{id}", id = produced);
            span.in_scope(|| {});
            produced += 1;
        }
        let next = started + Duration::from_millis(slice + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = started.elapsed();
    guard.shutdown(Duration::from_secs(30))?;
    let stats = guard.stats();
    let received = received.load(Ordering::Relaxed);
    println!(
        "produced {produced} spans in {:.2} s ({:.0} spans/s); received {received}; \
         dropped (queue full) {}; failed {}; peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        produced as f64 / elapsed.as_secs_f64(),
        stats.dropped_queue_full,
        stats.dropped(),
        peak_rss_mib().unwrap_or(f64::NAN),
    );
    if received != produced {
        eprintln!("lost {} spans", produced - received.min(produced));
        std::process::exit(1);
    }
    Ok(())
}
