//! Soak test of the delivery guarantees: the application produces spans at
//! `RATE` per second for `SECONDS` seconds while the ingestion endpoint
//! answers 503 to a random 20% of requests and 429 with `Retry-After: 1`
//! to another 5%. At the end every span must have been accepted exactly
//! once (the server counts span ids), nothing dropped, and the process's
//! peak memory is reported. Exits non-zero on any loss or duplicate.
//!
//! ```sh
//! cargo run --release -p tracing-appinsights-load --bin soak              # 50,000 spans/s for 20 s
//! cargo run --release -p tracing-appinsights-load --bin soak -- 10000 5   # RATE SECONDS
//! ```
//!
//! The ingestion server runs in a child process (this binary with
//! `--server`), so the peak RSS is the exporter's and the application's
//! alone. `.ci/run` runs it in release mode.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tracing_appinsights_load::{connection_string, envelopes, peak_rss_mib, Rng};
use tracing_subscriber::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--server") {
        return serve();
    }
    let rate: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    soak(rate, seconds)
}

// === the application side ===

fn soak(rate: u64, seconds: u64) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut server = Command::new(std::env::current_exe()?)
        .arg("--server")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().ok_or("no server stdout")?).read_line(&mut line)?;
    let addr: SocketAddr = line.trim().parse()?;
    let storage = std::env::temp_dir().join(format!("tai-soak-{}", std::process::id()));

    let (layer, guard) = tracing_appinsights::Builder::new()
        .with_connection_string(connection_string(addr))
        .without_proxy()
        .with_storage_dir(&storage)
        .build()?;
    tracing_subscriber::registry().with(layer).init();

    // Produce in 1 ms slices, each with its share of the rate.
    let per_slice = rate / 1000;
    let mut produced = 0_u64;
    let producing = Instant::now();
    for slice in 0..seconds * 1000 {
        for _ in 0..per_slice {
            tracing::info_span!("soak", n = produced).in_scope(|| {});
            produced += 1;
        }
        if slice % 5000 == 4999 {
            let s = guard.stats();
            println!(
                "{:>5.1} s: produced {produced}, exported {}, in memory {}, in queue {}, stored {}, \
                 requests {}, peak RSS {:.1} MiB",
                producing.elapsed().as_secs_f64(),
                s.exported,
                s.in_memory,
                s.in_queue,
                s.stored,
                s.requests,
                peak_rss_mib().unwrap_or(f64::NAN)
            );
        }
        let next = producing + Duration::from_millis(slice + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let produce_time = producing.elapsed();

    // Everything queued is accepted or stored; what is stored is read back
    // and sent while the endpoint is healthy.
    let flushed = guard.flush(Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(15);
    while (guard.stats().in_memory > 0 || has_blobs(&storage)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.shutdown(Duration::from_secs(5))?;
    let stats = guard.stats();
    let peak = peak_rss_mib().unwrap_or(f64::NAN);
    let seen = server_stats(addr)?;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&storage);

    let lost = produced.saturating_sub(seen.unique);
    println!(
        "soak: produced {produced} spans in {:.1} s ({:.0} spans/s); delivered {} unique, \
         {} duplicates, {lost} lost; requests {} (503: {}, 429: {}); exporter: exported {}, \
         retried {}, stored {}, read back {}, dropped {} + queue full {}; flush {}; \
         peak RSS {peak:.1} MiB; total {:.1} s",
        produce_time.as_secs_f64(),
        produced as f64 / produce_time.as_secs_f64(),
        seen.unique,
        seen.duplicates,
        seen.requests,
        seen.unavailable,
        seen.throttled,
        stats.exported,
        stats.retried,
        stats.stored,
        stats.read_back,
        stats.dropped(),
        stats.dropped_queue_full,
        if flushed.is_ok() { "ok" } else { "timed out" },
        started.elapsed().as_secs_f64(),
    );
    let ok = lost == 0
        && seen.duplicates == 0
        && seen.unique == produced
        && stats.queued == produced
        && stats.dropped() + stats.dropped_queue_full == 0
        && stats.balances();
    if !ok {
        eprintln!("soak: FAILED ({stats:?})");
        std::process::exit(1);
    }
    Ok(())
}

/// Whether the storage directory still holds a blob: one in `dir` or in
/// the exporter's own directory inside it.
fn has_blobs(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                return has_blobs(&e.path());
            }
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".blob") || name.ends_with(".lock")
        })
    })
}

/// What the server saw.
#[derive(Debug, Default, Deserialize)]
struct Seen {
    requests: u64,
    unavailable: u64,
    throttled: u64,
    unique: u64,
    duplicates: u64,
}

/// `GET /stats` from the server.
fn server_stats(addr: SocketAddr) -> Result<Seen, Box<dyn std::error::Error>> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response.split("\r\n\r\n").nth(1).ok_or("no body")?;
    Ok(serde_json::from_str(body)?)
}

// === the ingestion server (child process) ===

/// Counts what the server accepted, by span id.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    unavailable: AtomicU64,
    throttled: AtomicU64,
    duplicates: AtomicU64,
    ids: Mutex<HashSet<u64>>,
    rng: Rng,
}

fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let counts = Arc::new(Counts::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = listener.accept().await?;
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| answer(req, Arc::clone(&counts)));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn answer(
    req: Request<Incoming>,
    counts: Arc<Counts>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/stats" {
        let unique = counts.ids.lock().unwrap().len();
        let body = format!(
            r#"{{"requests":{},"unavailable":{},"throttled":{},"unique":{unique},"duplicates":{}}}"#,
            counts.requests.load(Ordering::Relaxed),
            counts.unavailable.load(Ordering::Relaxed),
            counts.throttled.load(Ordering::Relaxed),
            counts.duplicates.load(Ordering::Relaxed),
        );
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    let body = tracing_appinsights_load::body_of(req).await;
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let roll = counts.rng.below(100);
    if roll < 20 {
        counts.unavailable.fetch_add(1, Ordering::Relaxed);
        return Ok(status(StatusCode::SERVICE_UNAVAILABLE, None));
    }
    if roll < 25 {
        counts.throttled.fetch_add(1, Ordering::Relaxed);
        return Ok(status(StatusCode::TOO_MANY_REQUESTS, Some("1")));
    }
    let Some(items) = envelopes(&body) else {
        return Ok(status(StatusCode::BAD_REQUEST, None));
    };
    let n = items.len();
    {
        let mut ids = counts.ids.lock().unwrap();
        for item in items {
            let id = u64::from_str_radix(item.id(), 16).unwrap_or_default();
            if !ids.insert(id) {
                counts.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let answer = format!(r#"{{"itemsReceived":{n},"itemsAccepted":{n},"errors":[]}}"#);
    Ok(Response::new(Full::new(Bytes::from(answer))))
}

fn status(code: StatusCode, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = code;
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("Retry-After", after.parse().expect("a valid header"));
    }
    response
}
