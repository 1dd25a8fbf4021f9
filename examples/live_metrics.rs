//! Steady traffic to watch in Live Metrics: ten requests a second, each
//! with a database call, one request in ten failing with an exception and
//! a failed payment call.
//!
//! ```sh
//! APPLICATIONINSIGHTS_CONNECTION_STRING='InstrumentationKey=…;IngestionEndpoint=…;LiveEndpoint=…' \
//!     cargo run --release --example live_metrics -- 300
//! ```
//!
//! Open the resource's **Live Metrics** blade: within a second or two it
//! shows 10 requests/s, 1 failed request/s, about 2 dependency calls/s of
//! which 1 fails, 1 exception/s, and a sample document for every failure.
//! The arguments: how many seconds of traffic (default 300), and the
//! sampling probability (default 1): with `0.01` the blade still shows
//! the true rates, since Live Metrics counts spans before sampling.
//!
//! When it stops, the example prints what it generated as one line,
//! `traffic: {…}` (JSON: counts and total milliseconds as measured around
//! each span), so a run can be checked against what the blade showed
//! (`tools/load`'s `live` harness does so against a fake service).

use std::time::{Duration, Instant};

use tracing::{field, info_span, Instrument};
use tracing_appinsights::Sampler;
use tracing_subscriber::prelude::*;

/// Requests started per second.
const RATE: u64 = 10;
/// Every `FAIL_EVERY`-th request fails.
const FAIL_EVERY: u64 = 10;

/// What the example generated, as measured around each span.
#[derive(Debug, Default)]
struct Traffic {
    requests: u64,
    requests_failed: u64,
    request_ms: f64,
    dependencies: u64,
    dependencies_failed: u64,
    dependency_ms: f64,
    exceptions: u64,
}

/// A database call: a SQL dependency of a few milliseconds.
async fn load_item(id: u64, traffic: &mut Traffic) {
    let span = info_span!(
        "SELECT items",
        otel.kind = "client",
        db.system = "postgresql",
        db.namespace = "shop",
        server.address = "db.internal",
        db.query.text = "SELECT * FROM items WHERE id = $1",
        item = id,
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(2 + id % 5))
        .instrument(span)
        .await;
    traffic.dependencies += 1;
    traffic.dependency_ms += started.elapsed().as_secs_f64() * 1000.0;
}

/// An outgoing HTTP call that the payment provider refuses (402).
async fn charge(traffic: &mut Traffic) {
    let span = info_span!(
        "POST",
        otel.kind = "client",
        http.request.method = "POST",
        url.full = "https://payments.example/v1/charges",
        server.address = "payments.example",
        http.response.status_code = field::Empty,
    );
    let started = Instant::now();
    async {
        tokio::time::sleep(Duration::from_millis(8)).await;
        tracing::Span::current().record("http.response.status_code", 402_u64);
    }
    .instrument(span)
    .await;
    traffic.dependencies += 1;
    traffic.dependencies_failed += 1;
    traffic.dependency_ms += started.elapsed().as_secs_f64() * 1000.0;
}

/// One incoming request: a server span with the HTTP fields; the failing
/// ones answer 500 after a refused payment and log the error.
async fn handle(id: u64, traffic: &mut Traffic) {
    let fails = id % FAIL_EVERY == FAIL_EVERY - 1;
    let (method, route) = if fails {
        ("POST", "/api/orders")
    } else {
        ("GET", "/api/items/{id}")
    };
    let span = info_span!(
        "request",
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        url.full = format!(
            "https://shop.example{}",
            route.replace("{id}", &id.to_string())
        ),
        http.response.status_code = field::Empty,
    );
    let started = Instant::now();
    async {
        load_item(id, traffic).await;
        let status: u16 = if fails {
            charge(traffic).await;
            traffic.exceptions += 1;
            tracing::error!(
                exception.type = "PaymentDeclined",
                exception.message = "the payment provider declined the charge",
                "order {id} failed"
            );
            500
        } else {
            200
        };
        tracing::Span::current().record("http.response.status_code", status);
    }
    .instrument(span)
    .await;
    traffic.requests += 1;
    traffic.requests_failed += u64::from(fails);
    traffic.request_ms += started.elapsed().as_secs_f64() * 1000.0;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(Ok(300), |s| s.parse())?;
    let probability: f64 = args.next().map_or(Ok(1.0), |s| s.parse())?;

    let (layer, guard) = tracing_appinsights::Builder::new()
        .with_sampler(Sampler::probability(probability))
        .build()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(layer)
        .init();

    // Live Metrics counts what happens while someone watches: give the
    // first ping and post a moment to find out.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut traffic = Traffic::default();
    let mut ticks = tokio::time::interval(Duration::from_millis(1000 / RATE));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for id in 0..seconds * RATE {
        ticks.tick().await;
        handle(id, &mut traffic).await;
    }

    // Let the last interval be posted before the exporter stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "traffic: {{\"requests\": {}, \"requests_failed\": {}, \"request_ms\": {:.3}, \
         \"dependencies\": {}, \"dependencies_failed\": {}, \"dependency_ms\": {:.3}, \
         \"exceptions\": {}}}",
        traffic.requests,
        traffic.requests_failed,
        traffic.request_ms,
        traffic.dependencies,
        traffic.dependencies_failed,
        traffic.dependency_ms,
        traffic.exceptions,
    );
    guard.shutdown(Duration::from_secs(10))?;
    Ok(())
}
