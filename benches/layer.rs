//! The application thread's cost per span, against a ladder of baselines
//! measured in the same run:
//!
//! 1. `no_subscriber`: tracing with no subscriber at all;
//! 2. `registry_noop`: `registry()` with a no-op layer (`layer::Identity`)
//!    — the floor: a bare registry never frees closed spans;
//! 3. `ours_unsampled`: our layer with `Sampler::always_off()`;
//!    `ours_unsampled_busy`: the same while a sampled trace (sampled by its
//!    caller) is in flight, so the layer cannot skip its lookups;
//! 4. `ours_sampled`: our layer recording everything, into a worker whose
//!    sink discards (`InMemoryExporter::with_capacity(0)`);
//!    `floor_sampled`: the least any layer must do for a sampled span when
//!    it keeps the span's state in the registry's extensions, as the design
//!    requires (`support/floor.rs`: lookups, one extension, field
//!    visiting, the message formatted; nothing kept, no clock, no queue).
//!
//! Workloads: `span_event` (a span with three fields — str, u64, bool —
//! entered, one event with one field inside, exited, closed) and
//! `parent_3_children` (a parent with three children).
//!
//! Targets, as ratios to `registry_noop`: unsampled ≤ 1.3×, sampled ≤ 2.5×.

#[path = "support/floor.rs"]
mod floor;
use floor::FloorLayer;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tracing::Dispatch;
use tracing_appinsights::{
    Builder, ExporterGuard, InMemoryExporter, RemoteContext, Sampler, SpanId, TraceId,
};
use tracing_subscriber::prelude::*;

fn span_event(i: u64) {
    let span = tracing::info_span!("request", route = "/orders", id = i, cached = true);
    let _entered = span.enter();
    tracing::info!(n = i, "handled");
}

fn parent_3_children(i: u64) {
    let parent = tracing::info_span!("parent", id = i);
    let _p = parent.enter();
    for _ in 0..3 {
        let child = tracing::info_span!("child");
        let _c = child.enter();
    }
}

fn ours(sampler: Sampler) -> (Dispatch, ExporterGuard) {
    let (layer, guard) = Builder::new()
        .with_sampler(sampler)
        .with_in_memory_exporter(InMemoryExporter::with_capacity(0))
        .build()
        .expect("valid builder");
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        guard,
    )
}

fn ladder() -> Vec<(&'static str, Dispatch, Option<ExporterGuard>)> {
    let (unsampled, g1) = ours(Sampler::always_off());
    let (busy, g3) = ours(Sampler::always_off());
    let (sampled, g2) = ours(Sampler::always_on());
    vec![
        ("no_subscriber", Dispatch::none(), None),
        (
            "registry_noop",
            Dispatch::new(
                tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new()),
            ),
            None,
        ),
        ("ours_unsampled", unsampled, Some(g1)),
        ("ours_unsampled_busy", busy, Some(g3)),
        ("ours_sampled", sampled, Some(g2)),
        (
            "floor_sampled",
            Dispatch::new(tracing_subscriber::registry().with(FloorLayer)),
            None,
        ),
    ]
}

fn bench_workload(c: &mut Criterion, name: &str, workload: fn(u64)) {
    let mut group = c.benchmark_group(name);
    for (rung, dispatch, guard) in ladder() {
        tracing::dispatcher::with_default(&dispatch, || {
            let _busy = (rung == "ours_unsampled_busy").then(|| {
                let caller =
                    RemoteContext::new(TraceId::from_int(1), SpanId::from_int(1), Some(true));
                caller.map(|c| c.in_scope(|| tracing::info_span!(target: "busy", "in flight")))
            });
            let mut i = 0_u64;
            group.bench_function(BenchmarkId::from_parameter(rung), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    workload(black_box(i));
                })
            });
        });
        drop(guard);
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_workload(c, "span_event", span_event);
    bench_workload(c, "parent_3_children", parent_3_children);
}

criterion_group!(layer, benches);
criterion_main!(layer);
