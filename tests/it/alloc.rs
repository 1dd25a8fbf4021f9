//! Heap allocations on the application thread, counted with a counting
//! global allocator: an unsampled span allocates nothing; a sampled span
//! whose fields are numbers and short strings allocates only its record.
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

/// A span with numbers and a static string, entered and closed; a child.
fn workload(i: u64) {
    let span = tracing::info_span!("request", route = "/orders/{id}", id = i, cached = true);
    let _entered = span.enter();
    tracing::info_span!("child", n = 1_u64).in_scope(|| {});
}

/// Allocations per iteration of `workload`, after a warm-up that lets the
/// registry pool its span slots and extension maps.
fn allocations_per_iteration(sampler: Sampler) -> f64 {
    let (layer, guard) = Builder::new()
        .with_sampler(sampler)
        .with_in_memory_exporter(InMemoryExporter::with_capacity(0))
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    const N: u64 = 1000;
    let measured = tracing::subscriber::with_default(subscriber, || {
        for i in 0..100 {
            workload(i);
        }
        let before = allocations();
        for i in 0..N {
            workload(i);
        }
        allocations() - before
    });
    guard.flush(Duration::from_secs(10)).unwrap();
    measured as f64 / N as f64
}

#[test]
fn unsampled_spans_allocate_nothing() {
    assert_eq!(allocations_per_iteration(Sampler::always_off()), 0.0);
}

#[test]
fn sampled_spans_allocate_only_their_records() {
    // Per span: the extension map's box around `SpanState`, the boxed
    // record, and its attribute vector; nothing per field (short strings
    // are stored inline).
    let per_iteration = allocations_per_iteration(Sampler::always_on());
    assert!(
        per_iteration <= 6.0,
        "{per_iteration} allocations for two spans"
    );
}
