//! Runs one rung of the benchmark ladder in a loop, for instruction counts
//! with callgrind (which repeat exactly, unlike wall time on shared
//! machines):
//!
//! ```sh
//! cargo build --release --example span_cost
//! for rung in registry_noop ours_unsampled ours_unsampled_busy ours_sampled floor_sampled; do
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=span_cost::run_loop \
//!     --callgrind-out-file=/tmp/cg.$rung target/release/examples/span_cost $rung 10000 2>&1 \
//!     | grep -E 'Collected'
//! done
//! ```
//!
//! Divide the collected instructions by the iteration count for the cost of
//! one span (a span with three fields, entered, one event, closed).

#[path = "../benches/support/floor.rs"]
mod floor;
use floor::FloorLayer;
use std::hint::black_box;

use tracing::Dispatch;
use tracing_appinsights::{Builder, InMemoryExporter, RemoteContext, Sampler, SpanId, TraceId};
use tracing_subscriber::prelude::*;

fn span_event(i: u64) {
    let span = tracing::info_span!("request", route = "/orders", id = i, cached = true);
    let _entered = span.enter();
    tracing::info!(n = i, "handled");
}

/// The measured loop (named by `--toggle-collect`).
#[inline(never)]
fn run_loop(iterations: u64) {
    for i in 0..iterations {
        span_event(black_box(i));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rung = args.next().unwrap_or_else(|| "ours_sampled".into());
    let iterations: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let sampler = match rung.as_str() {
        "ours_unsampled" | "ours_unsampled_busy" => Some(Sampler::always_off()),
        "ours_sampled" => Some(Sampler::always_on()),
        "registry_noop" | "floor_sampled" => None,
        other => {
            eprintln!(
                "unknown rung {other:?}: registry_noop, ours_unsampled, \
                 ours_unsampled_busy, ours_sampled or floor_sampled"
            );
            std::process::exit(2);
        }
    };
    let (dispatch, guard) = match sampler {
        Some(sampler) => {
            let (layer, guard) = Builder::new()
                .with_sampler(sampler)
                .with_in_memory_exporter(InMemoryExporter::with_capacity(0))
                .with_max_queue_size(65_536)
                .build()
                .expect("valid builder");
            (
                Dispatch::new(tracing_subscriber::registry().with(layer)),
                Some(guard),
            )
        }
        None if rung == "floor_sampled" => (
            Dispatch::new(tracing_subscriber::registry().with(FloorLayer)),
            None,
        ),
        None => (
            Dispatch::new(
                tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new()),
            ),
            None,
        ),
    };
    tracing::dispatcher::with_default(&dispatch, || {
        // `ours_unsampled_busy`: a sampled trace (its caller sampled it)
        // stays open meanwhile, as in a service where some requests are
        // recorded; the unsampled spans then pay for their lookups.
        let _busy = (rung == "ours_unsampled_busy").then(|| {
            let caller = RemoteContext::new(TraceId::from_int(1), SpanId::from_int(1), Some(true));
            caller.map(|c| c.in_scope(|| tracing::info_span!(target: "busy", "in flight")))
        });
        // Warm up: the registry's span slots and extension maps are pooled.
        run_loop(1_000);
        run_loop(iterations);
    });
    drop(guard);
}
