//! End to end at a sustained rate: the application produces spans at
//! `RATE` per second for `SECONDS` seconds into an exporter that sends them
//! to a loopback ingestion server counting what it receives; at the end it
//! reports losses and the process's peak memory, and exits non-zero if a
//! span was lost.
//!
//! With a third argument `live`, a fake Live Metrics service watches the
//! whole run (it is always subscribed): the exporter posts to it every
//! second while it delivers, and the run also fails if the posts were not
//! at 1 Hz (±10 %).
//!
//! ```sh
//! cargo run --release -p tracing-appinsights-load --bin throughput -- 100000 10
//! cargo run --release -p tracing-appinsights-load --bin throughput -- 100000 10 live
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_appinsights_load::live::FakeLive;
use tracing_appinsights_load::{connection_string, counting_ingestion, peak_rss_mib};
use tracing_subscriber::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let received = Arc::new(AtomicU64::new(0));
    let addr = counting_ingestion(Arc::clone(&received));
    let live = (args.next().as_deref() == Some("live")).then(FakeLive::start);
    let mut connection = connection_string(addr);
    if let Some(live) = &live {
        connection = format!("{connection};LiveEndpoint={}", live.endpoint());
    }
    let (layer, guard) = tracing_appinsights::Builder::new()
        .with_connection_string(connection)
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
    if let Some(live) = &live {
        let posts = live.posts();
        let hz = match (posts.first(), posts.last()) {
            (Some(first), Some(last)) if posts.len() > 1 => {
                (posts.len() - 1) as f64 / last.at.duration_since(first.at).as_secs_f64()
            }
            _ => 0.0,
        };
        let counted: f64 = posts
            .windows(2)
            .map(|pair| {
                let seconds = pair[1].ticks.saturating_sub(pair[0].ticks) as f64 / 1e7;
                pair[1].metric("\\ApplicationInsights\\Dependency Calls/Sec") * seconds
            })
            .sum();
        println!(
            "Live Metrics: {} posts at {hz:.3} Hz, {counted:.0} spans counted",
            posts.len()
        );
        if !(0.9..=1.1).contains(&hz) {
            eprintln!("Live Metrics posted at {hz:.3} Hz, not 1 Hz ±10 %");
            std::process::exit(1);
        }
    }
    if received != produced {
        eprintln!("lost {} spans", produced - received.min(produced));
        std::process::exit(1);
    }
    Ok(())
}
