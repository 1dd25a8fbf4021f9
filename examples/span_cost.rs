//! Runs one rung of the benchmark ladder (`benches/layer.rs`) in a loop,
//! for instruction counts with callgrind, which repeat exactly, unlike wall
//! time on shared machines.
//!
//! ```text
//! span_cost <rung> [iterations] [workload]
//! ```
//!
//! It needs the `bench-internals` feature (the Live Metrics rungs build the
//! layer through `tracing_appinsights::bench`).
//!
//! Rungs (default `ours_sampled`):
//!
//! * `registry_noop`: `registry()` with a no-op layer — the floor;
//! * `ours_unsampled`: our layer with `Sampler::always_off()`;
//! * `ours_unsampled_busy`: the same while a sampled trace (sampled by its
//!   caller) is in flight, so the layer cannot skip its lookups;
//! * `ours_unsampled_live_idle`: `ours_unsampled` with Live Metrics on
//!   and nobody watching (the service's answer says unsubscribed): what
//!   Live Metrics costs an unsampled span then;
//! * `ours_unsampled_live_watched`: the same while someone watches: every
//!   unsampled span is counted (its kind, duration and failure);
//! * `ours_sampled`: our layer recording everything into a sink that
//!   discards (`InMemoryExporter::with_capacity(0)`), so the worker hands
//!   every record back to the record pool: the *warm-pool* rung;
//! * `ours_sampled_cold`: the same, but the sink keeps the records
//!   (`InMemoryExporter::with_capacity(1 << 20)`), so none comes back for
//!   reuse: the record pool stays cold and every span allocates — the
//!   *cold-pool* rung, the cost when the records are not recycled;
//! * `ours_sampled_2threads`: `ours_sampled` (warm pool) with the loop run
//!   on two producer threads at once, `iterations / 2` each; the figure
//!   per span is the instructions of both threads over `iterations`;
//! * `floor_sampled`: the least any layer keeping its state in the
//!   registry's extensions must do for a sampled span
//!   (`benches/support/floor.rs`).
//!
//! Workloads (default `span_event`, both in `benches/support/workloads.rs`):
//! `span_event` (a span with three fields, entered, one event with one field
//! and a message, exited, closed) and `parent_3_children` (a parent span
//! with three children).
//!
//! Only the calls of `run_loop` are measured: each thread first warms up
//! (20,000 iterations, outside `run_loop`: the registry's span slots and
//! the record pool fill), the worker is let to export everything queued
//! (so the pool holds every record in circulation), then the measured loop
//! runs. The queue holds 262,144 records, so none is dropped (checked after
//! the run, with a warning on stderr otherwise).
//!
//! `tools/span-cost.sh` runs every rung and workload and prints the table;
//! by hand:
//!
//! ```sh
//! cargo build --release --features bench-internals --example span_cost
//! valgrind --tool=callgrind --fair-sched=yes --collect-atstart=no \
//!   --toggle-collect=span_cost::run_loop --callgrind-out-file=/tmp/cg.out \
//!   target/release/examples/span_cost ours_sampled 10000 span_event 2>&1 \
//!   | grep -E 'Collected'
//! ```
//!
//! and divide the collected instructions by the iteration count.
//! `--fair-sched=yes` lets the exporter's worker thread run during the loop
//! (its instructions are not counted: collection is toggled per thread, on
//! the threads that enter `run_loop`).

#[path = "../benches/support/floor.rs"]
mod floor;
#[path = "../benches/support/workloads.rs"]
mod workloads;

use floor::FloorLayer;
use std::hint::black_box;
use std::sync::Barrier;

use tracing::Dispatch;
use tracing_appinsights::bench::build_with_live;
use tracing_appinsights::{Builder, InMemoryExporter, Sampler};
use tracing_subscriber::prelude::*;

const RUNGS: &str = "registry_noop, ours_unsampled, ours_unsampled_busy, \
                     ours_unsampled_live_idle, ours_unsampled_live_watched, ours_sampled, \
                     ours_sampled_cold, ours_sampled_2threads or floor_sampled";

/// Iterations each thread runs before its measured loop.
const WARM_UP: u64 = 20_000;

/// What the cold rung's sink keeps: more records than any run makes.
const COLD_CAPACITY: usize = 1 << 20;

#[inline(never)]
fn spans(iterations: u64, workload: fn(u64)) {
    for i in 0..iterations {
        workload(black_box(i));
    }
}

/// The measured loop (named by `--toggle-collect`).
#[inline(never)]
fn run_loop(iterations: u64, workload: fn(u64)) {
    spans(iterations, workload);
}

/// Waits until the worker has exported everything queued, so the warm
/// rungs start with every record of the warm-up back in the pool.
fn settle(guard: Option<&tracing_appinsights::ExporterGuard>) {
    if let Some(guard) = guard {
        let _ = guard.flush(std::time::Duration::from_secs(60));
    }
}

/// The warm-up: the same loop, outside `run_loop`, so it is not counted.
#[inline(never)]
fn warm_up(workload: fn(u64)) {
    spans(WARM_UP, workload);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rung = args.next().unwrap_or_else(|| "ours_sampled".into());
    let iterations: u64 = match args.next() {
        None => 10_000,
        Some(n) => n.parse().unwrap_or_else(|_| {
            eprintln!("iterations must be a number, not {n:?}");
            std::process::exit(2);
        }),
    };
    let workload_name = args.next().unwrap_or_else(|| "span_event".into());
    let Some(workload) = workloads::by_name(&workload_name) else {
        eprintln!("unknown workload {workload_name:?}: span_event or parent_3_children");
        std::process::exit(2);
    };
    let (sampler, capacity) = match rung.as_str() {
        "ours_unsampled"
        | "ours_unsampled_busy"
        | "ours_unsampled_live_idle"
        | "ours_unsampled_live_watched" => (Some(Sampler::always_off()), 0),
        "ours_sampled" | "ours_sampled_2threads" => (Some(Sampler::always_on()), 0),
        "ours_sampled_cold" => (Some(Sampler::always_on()), COLD_CAPACITY),
        "registry_noop" | "floor_sampled" => (None, 0),
        other => {
            eprintln!("unknown rung {other:?}: {RUNGS}");
            std::process::exit(2);
        }
    };
    let exporter = InMemoryExporter::with_capacity(capacity);
    let (dispatch, guard) = match sampler {
        Some(sampler) => {
            let builder = Builder::new()
                .with_sampler(sampler)
                .with_in_memory_exporter(exporter.clone())
                .with_max_queue_size(1 << 18);
            let (layer, guard) = match rung.as_str() {
                "ours_unsampled_live_idle" => build_with_live(builder, false),
                "ours_unsampled_live_watched" => build_with_live(builder, true),
                _ => builder.build(),
            }
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

    if rung == "ours_sampled_2threads" {
        let first = iterations / 2;
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            for n in [first, iterations - first] {
                let (dispatch, barrier, guard) = (&dispatch, &barrier, &guard);
                s.spawn(move || {
                    tracing::dispatcher::with_default(dispatch, || {
                        warm_up(workload);
                        // Both warmed up, and the pool refilled, before
                        // either measures.
                        if barrier.wait().is_leader() {
                            settle(guard.as_ref());
                        }
                        barrier.wait();
                        run_loop(n, workload);
                    })
                });
            }
        });
    } else {
        tracing::dispatcher::with_default(&dispatch, || {
            let _busy = (rung == "ours_unsampled_busy").then(workloads::sampled_trace_in_flight);
            warm_up(workload);
            settle(guard.as_ref());
            run_loop(iterations, workload);
        });
    }

    if let Some(guard) = guard {
        let stats = guard.stats();
        if stats.dropped_queue_full != 0 {
            eprintln!(
                "warning: {rung} {workload_name}: {} of {} items dropped because the \
                 queue was full: the figure is too low",
                stats.dropped_queue_full,
                stats.queued + stats.dropped_queue_full,
            );
        }
        drop(guard);
        if capacity != 0 && exporter.dropped() != 0 {
            eprintln!(
                "warning: {rung} {workload_name}: the sink discarded {} records past its \
                 capacity of {capacity}",
                exporter.dropped()
            );
        }
    }
}
