//! Heap allocations on the application thread, counted with a counting
//! global allocator: an unsampled span allocates nothing, and in steady
//! state neither does a sampled span whose fields are numbers and short
//! strings, nor its event: records, their attribute vectors and the event
//! records come back from the exporter through the record pool.
//!
//! The allocator is the whole test binary's, so every test allocates
//! through it; the count is per thread, and a test measures only what its
//! own thread allocates while other tests run in parallel on theirs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use tracing_appinsights::{Builder, InMemoryExporter, Sampler};
use tracing_subscriber::prelude::*;

/// The system allocator, counting the allocations of each thread.
struct Counting;

thread_local! {
    /// Allocations (and reallocations) made by this thread so far.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

/// A span with numbers and a static string, entered, an event with a
/// number and a short message, a child span; closed.
fn workload(i: u64) {
    let span = tracing::info_span!("request", route = "/orders/{id}", id = i, cached = true);
    let _entered = span.enter();
    tracing::info!(n = i, "handled");
    tracing::info_span!("child", n = 1_u64).in_scope(|| {});
}

/// Allocations per iteration of `workload` in steady state: after a
/// warm-up longer than the measurement (the registry pools its span slots;
/// the exporter hands every record of the warm-up back to the pool), with
/// a batch larger than the measurement so that the worker does not wake
/// (and contend for the pool) while it runs.
fn allocations_per_iteration(sampler: Sampler) -> f64 {
    const N: u64 = 1000;
    let (layer, guard) = Builder::new()
        .with_sampler(sampler)
        .with_in_memory_exporter(InMemoryExporter::with_capacity(0))
        .with_max_batch_size(4 * N as usize)
        .with_max_queue_size(8 * N as usize)
        .with_export_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    let measured = tracing::subscriber::with_default(subscriber, || {
        // Twice: the first round allocates the records, the second the
        // thread's own stash of recycled ones.
        for _ in 0..2 {
            for i in 0..N {
                workload(i);
            }
            guard.flush(Duration::from_secs(60)).unwrap();
        }
        let before = allocations();
        for i in 0..N {
            workload(i);
        }
        allocations() - before
    });
    guard.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(guard.stats().dropped_queue_full, 0);
    measured as f64 / N as f64
}

#[test]
fn unsampled_spans_allocate_nothing() {
    assert_eq!(allocations_per_iteration(Sampler::always_off()), 0.0);
}

#[test]
fn sampled_spans_and_their_events_allocate_nothing_in_steady_state() {
    assert_eq!(allocations_per_iteration(Sampler::always_on()), 0.0);
}
