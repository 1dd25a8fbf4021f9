//! The application thread's cost per span, against a ladder of baselines
//! measured in the same run (wall time; `examples/span_cost.rs` and
//! `tools/span-cost.sh` give instruction counts of the same ladder with
//! callgrind, which repeat exactly on shared machines):
//!
//! 1. `no_subscriber`: tracing with no subscriber at all;
//! 2. `registry_noop`: `registry()` with a no-op layer (`layer::Identity`)
//!    — the floor: a bare registry never frees closed spans;
//! 3. `ours_unsampled`: our layer with `Sampler::always_off()`;
//!    `ours_unsampled_busy`: the same while a sampled trace (sampled by its
//!    caller) is in flight, so the layer cannot skip its lookups;
//!    with the `bench-internals` feature, `ours_unsampled_live_idle` and
//!    `ours_unsampled_live_watched`: `ours_unsampled` with Live Metrics on,
//!    nobody watching / someone watching (every unsampled span counted,
//!    kept meanwhile in the layer's lock-free live table, by id:
//!    `src/layer/table.rs`);
//! 4. `ours_sampled`: our layer recording everything, into a worker whose
//!    sink discards (`InMemoryExporter::with_capacity(0)`), so every record
//!    goes back to the record pool: the warm-pool rung;
//!    `ours_sampled_cold`: the same with a sink that keeps the records
//!    (`InMemoryExporter::with_capacity(COLD_CAPACITY)`, the oldest
//!    discarded past it to bound memory; discarded records are freed, not
//!    recycled), so no record comes back: the pool stays cold and every
//!    span allocates — the cold-pool rung;
//!    `floor_sampled`: the least any layer must do for a sampled span when
//!    it keeps the span's state in the registry's extensions, as the design
//!    requires (`support/floor.rs`: lookups, one extension, field
//!    visiting, the message formatted; nothing kept, no clock, no queue).
//!
//! Workloads (`support/workloads.rs`, shared with the example):
//! `span_event` (a span with three fields — str, u64, bool — entered, one
//! event with one field and a message inside, exited, closed) and
//! `parent_3_children` (a parent with one field and three children).
//!
//! `threads/span_event`: the combined throughput (spans/s) of the sampled
//! layer (warm pool) with one producer thread, then two at once (each
//! running half the iterations), on threads kept for the whole group and
//! started together by a barrier; the ratio two/one is printed once at the
//! end. On Linux, the `_pinned` variants pin the exporter's worker thread
//! (`appinsights-exporter`) to the first CPU the process may use and the
//! producers to the others, round robin (on a 2-CPU machine both producers
//! share the second CPU: compare `1_thread_pinned` with `1_thread` there).
//!
//! The queue holds 65,536 records; a rung whose worker fell behind and
//! dropped records (which flatters the producer) is reported on stderr.
//!
//! Targets in force, as ratios to `registry_noop` (same workload, same run):
//!
//! | workload | rung | target |
//! |---|---|---|
//! | `span_event` | `ours_sampled` | ≤ 2.75× (≤ 2,600 Ir/span warm, ≤ 3,000 cold: `tools/span-cost.sh`) |
//! | `parent_3_children` | `ours_sampled` | ≤ 1.65× |
//! | both | `ours_unsampled` | ≤ 1.15× |
//! | both | `ours_unsampled_busy` | ≤ 1.5× |
//! | both | `ours_unsampled_live_idle` | `ours_unsampled` ± 10 Ir per iteration (Live Metrics adds nothing while nobody watches; measured equal) |
//! | both | `ours_unsampled_live_watched` | ≤ `ours_unsampled` + 300 Ir per counted span (`tools/span-cost.sh`; measured about +260 for `span_event`, +240 a span for `parent_3_children`) |
//! | `threads/span_event` | `2_threads` | ≥ 1.5× the throughput of `1_thread` |

#[path = "support/floor.rs"]
mod floor;
#[path = "support/workloads.rs"]
mod workloads;

use floor::FloorLayer;
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tracing::Dispatch;
use tracing_appinsights::{Builder, ExporterGuard, InMemoryExporter, Sampler};
use tracing_subscriber::prelude::*;

/// What the cold rung's sink keeps (spans, and as many events): any
/// capacity above 0 means records are never handed back; this one bounds
/// memory to a few tens of MB (a kept `span_event` costs about 1 KiB).
const COLD_CAPACITY: usize = 1 << 14;

/// Our layer into an in-memory sink keeping `capacity` records (0: it
/// discards, and the records are recycled).
fn ours(sampler: Sampler, capacity: usize) -> (Dispatch, ExporterGuard) {
    let (layer, guard) = Builder::new()
        .with_sampler(sampler)
        .with_in_memory_exporter(InMemoryExporter::with_capacity(capacity))
        .with_max_queue_size(65_536)
        .build()
        .expect("valid builder");
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        guard,
    )
}

/// `ours` with sampler `always_off` and Live Metrics counting as when
/// someone watches (`watching`) or not, with no service behind it.
#[cfg(feature = "bench-internals")]
fn ours_live(watching: bool) -> (Dispatch, ExporterGuard) {
    let builder = Builder::new()
        .with_sampler(Sampler::always_off())
        .with_in_memory_exporter(InMemoryExporter::with_capacity(0))
        .with_max_queue_size(65_536);
    let (layer, guard) =
        tracing_appinsights::bench::build_with_live(builder, watching).expect("valid builder");
    (
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        guard,
    )
}

fn ladder() -> Vec<(&'static str, Dispatch, Option<ExporterGuard>)> {
    let (unsampled, g1) = ours(Sampler::always_off(), 0);
    let (busy, g2) = ours(Sampler::always_off(), 0);
    let (sampled, g3) = ours(Sampler::always_on(), 0);
    let (cold, g4) = ours(Sampler::always_on(), COLD_CAPACITY);
    #[allow(unused_mut)] // without bench-internals, nothing is added
    let mut ladder = vec![
        ("no_subscriber", Dispatch::none(), None),
        (
            "registry_noop",
            Dispatch::new(
                tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new()),
            ),
            None,
        ),
        ("ours_unsampled", unsampled, Some(g1)),
        ("ours_unsampled_busy", busy, Some(g2)),
        ("ours_sampled", sampled, Some(g3)),
        ("ours_sampled_cold", cold, Some(g4)),
        (
            "floor_sampled",
            Dispatch::new(tracing_subscriber::registry().with(FloorLayer)),
            None,
        ),
    ];
    #[cfg(feature = "bench-internals")]
    for (i, (rung, watching)) in [
        ("ours_unsampled_live_idle", false),
        ("ours_unsampled_live_watched", true),
    ]
    .into_iter()
    .enumerate()
    {
        let (dispatch, guard) = ours_live(watching);
        ladder.insert(5 + i, (rung, dispatch, Some(guard)));
    }
    ladder
}

/// Says on stderr when the worker fell behind and records were dropped.
fn report_drops(bench: &str, guard: &ExporterGuard) {
    let stats = guard.stats();
    if stats.dropped_queue_full != 0 {
        eprintln!(
            "warning: {bench}: {} of {} items dropped because the queue was full \
             (the worker fell behind): the figure flatters the producer",
            stats.dropped_queue_full,
            stats.queued + stats.dropped_queue_full,
        );
    }
}

fn bench_workload(c: &mut Criterion, name: &str, workload: fn(u64)) {
    let mut group = c.benchmark_group(name);
    for (rung, dispatch, guard) in ladder() {
        tracing::dispatcher::with_default(&dispatch, || {
            let _busy = (rung == "ours_unsampled_busy").then(workloads::sampled_trace_in_flight);
            let mut i = 0_u64;
            group.bench_function(BenchmarkId::from_parameter(rung), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    workload(black_box(i));
                })
            });
        });
        if let Some(guard) = &guard {
            report_drops(&format!("{name}/{rung}"), guard);
        }
        drop(guard);
    }
    group.finish();
}

/// Producer threads kept for a whole benchmark: each has the dispatcher as
/// its default, warms up once, then runs its share of every measurement,
/// all of them released together.
struct Producers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    start: Barrier,
    done: Barrier,
    stop: AtomicBool,
    /// Each thread's iterations for the next measurement.
    counts: Vec<AtomicU64>,
}

impl Producers {
    /// `threads` producers; `cpus[i % cpus.len()]` is producer `i`'s CPU
    /// when `cpus` is not empty.
    fn start(threads: usize, dispatch: &Dispatch, workload: fn(u64), cpus: &[usize]) -> Self {
        let shared = Arc::new(Shared {
            start: Barrier::new(threads + 1),
            done: Barrier::new(threads + 1),
            stop: AtomicBool::new(false),
            counts: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        });
        let threads = (0..threads)
            .map(|t| {
                let shared = Arc::clone(&shared);
                let dispatch = dispatch.clone();
                let cpu = (!cpus.is_empty()).then(|| cpus[t % cpus.len()]);
                std::thread::Builder::new()
                    .name(format!("producer-{t}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            pin::this_thread(cpu);
                        }
                        let _default = tracing::dispatcher::set_default(&dispatch);
                        let mut i = (t as u64) << 48;
                        for _ in 0..1_000 {
                            i += 1;
                            workload(black_box(i));
                        }
                        loop {
                            shared.start.wait();
                            if shared.stop.load(Ordering::Acquire) {
                                break;
                            }
                            for _ in 0..shared.counts[t].load(Ordering::Acquire) {
                                i += 1;
                                workload(black_box(i));
                            }
                            shared.done.wait();
                        }
                    })
                    .expect("spawn a producer")
            })
            .collect();
        Producers { shared, threads }
    }

    /// Runs `iterations` spans split between the producers; the time from
    /// their release to the last one's end.
    fn run(&self, iterations: u64) -> Duration {
        let n = self.shared.counts.len() as u64;
        for (t, count) in self.shared.counts.iter().enumerate() {
            let t = t as u64;
            count.store(
                iterations / n + u64::from(t < iterations % n),
                Ordering::Release,
            );
        }
        self.shared.start.wait();
        let start = Instant::now();
        self.shared.done.wait();
        start.elapsed()
    }
}

impl Drop for Producers {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.start.wait();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Pinning threads to CPUs (`sched_setaffinity`), on Linux only.
#[cfg(target_os = "linux")]
mod pin {
    /// The CPUs this process may run on.
    pub fn allowed_cpus() -> Vec<usize> {
        // SAFETY: `set` is a valid, zeroed cpu_set_t of the size passed.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Vec::new();
            }
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect()
        }
    }

    /// Pins thread `tid` (0: the calling thread) to `cpu`.
    fn thread(tid: libc::pid_t, cpu: usize) -> bool {
        // SAFETY: `set` is a valid, zeroed cpu_set_t of the size passed.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }

    pub fn this_thread(cpu: usize) {
        if !thread(0, cpu) {
            eprintln!("warning: could not pin a producer to CPU {cpu}");
        }
    }

    /// The ids of this process's exporter worker threads
    /// (`appinsights-exporter`, the name cut to 15 bytes by the kernel).
    pub fn exporter_threads() -> Vec<libc::pid_t> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| {
                let task = task.ok()?;
                let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                if comm.trim_end() != &"appinsights-exporter"[..15] {
                    return None;
                }
                task.file_name().to_str()?.parse().ok()
            })
            .collect()
    }

    /// Pins the exporter worker threads started since `before` was taken.
    /// A new thread names itself once running: wait for it a little.
    pub fn new_exporters(before: &[libc::pid_t], cpu: usize) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let new: Vec<libc::pid_t> = exporter_threads()
                .into_iter()
                .filter(|tid| !before.contains(tid))
                .collect();
            if !new.is_empty() {
                return new.into_iter().all(|tid| thread(tid, cpu));
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// No pinning off Linux.
#[cfg(not(target_os = "linux"))]
mod pin {
    pub fn allowed_cpus() -> Vec<usize> {
        Vec::new()
    }
    pub fn this_thread(_: usize) {}
    pub fn exporter_threads() -> Vec<i32> {
        Vec::new()
    }
    pub fn new_exporters(_: &[i32], _: usize) -> bool {
        false
    }
}

fn bench_threads(c: &mut Criterion) {
    let cpus = pin::allowed_cpus();
    let pinning = cpus.len() >= 2;
    if !pinning {
        eprintln!("threads: fewer than 2 CPUs to pin to (or not Linux): no pinned variants");
    }
    let mut group = c.benchmark_group("threads/span_event");
    group.throughput(Throughput::Elements(1));
    let mut results = Vec::new();
    for (threads, pinned) in [(1, false), (2, false), (1, true), (2, true)] {
        if pinned && !pinning {
            continue;
        }
        let name = match (threads, pinned) {
            (1, false) => "1_thread",
            (_, false) => "2_threads",
            (1, true) => "1_thread_pinned",
            (_, true) => "2_threads_pinned",
        };
        let before = pin::exporter_threads();
        let (dispatch, guard) = ours(Sampler::always_on(), 0);
        let producer_cpus = if pinned {
            if pin::new_exporters(&before, cpus[0]) {
                eprintln!(
                    "{name}: exporter worker pinned to CPU {}, producers to {:?}",
                    cpus[0],
                    &cpus[1..]
                );
            } else {
                eprintln!("warning: {name}: could not find or pin the exporter's worker thread");
            }
            &cpus[1..]
        } else {
            &[][..]
        };
        let producers = Producers::start(threads, &dispatch, workloads::span_event, producer_cpus);
        // Every iteration criterion asks for, over every call (its warm-up too).
        let total = Cell::new((0_u64, Duration::ZERO));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iterations| {
                let took = producers.run(iterations);
                let (n, t) = total.get();
                total.set((n + iterations, t + took));
                // Untimed: each sample starts with the worker caught up.
                let _ = guard.flush(Duration::from_secs(30));
                took
            })
        });
        drop(producers);
        report_drops(&format!("threads/span_event/{name}"), &guard);
        let stats = guard.stats();
        let dropped =
            stats.dropped_queue_full as f64 / (stats.queued + stats.dropped_queue_full) as f64;
        drop(guard);
        let (n, t) = total.get();
        results.push((name, n as f64 / t.as_secs_f64(), dropped));
    }
    group.finish();
    let result = |name: &str| {
        results
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|&(_, rate, dropped)| (rate, dropped))
    };
    for (one, two) in [
        ("1_thread", "2_threads"),
        ("1_thread_pinned", "2_threads_pinned"),
    ] {
        if let (Some((one_rate, one_dropped)), Some((two_rate, two_dropped))) =
            (result(one), result(two))
        {
            eprintln!(
                "threads/span_event: {two} / {one} = {:.2}× ({:.3} M spans/s vs {:.3} M spans/s, \
                 {:.1}% and {:.1}% of items dropped, queue full; target ≥ 1.5×)",
                two_rate / one_rate,
                two_rate / 1e6,
                one_rate / 1e6,
                two_dropped * 100.0,
                one_dropped * 100.0,
            );
        }
    }
}

fn benches(c: &mut Criterion) {
    for (name, workload) in workloads::WORKLOADS {
        bench_workload(c, name, workload);
    }
    bench_threads(c);
}

criterion_group!(layer, benches);
criterion_main!(layer);
