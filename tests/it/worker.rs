//! The exporter worker: flush, shutdown, queue bounds and drop accounting.

use std::time::Duration;

use crate::support::wait_until;
use tracing::info_span;
use tracing_appinsights::{Builder, FlushError, InMemoryExporter, ManualClock, ShutdownError};
use tracing_subscriber::prelude::*;

fn build(
    builder: Builder,
) -> (
    tracing::Dispatch,
    tracing_appinsights::ExporterGuard,
    InMemoryExporter,
) {
    let exporter = InMemoryExporter::new();
    let (layer, guard) = builder
        .with_in_memory_exporter(exporter.clone())
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, guard, exporter)
}

#[test]
fn flush_returns_after_every_earlier_record_is_exported() {
    // A long interval: only the flush can export these.
    let (dispatch, guard, exporter) =
        build(Builder::new().with_export_interval(Duration::from_secs(3600)));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..1000_u64 {
            info_span!("s", i).in_scope(|| {});
        }
    });
    guard.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(exporter.spans().len(), 1000);
    let stats = guard.stats();
    assert_eq!(
        (stats.queued, stats.exported, stats.in_queue),
        (1000, 1000, 0)
    );
}

#[test]
fn a_full_batch_is_exported_without_waiting_for_the_interval() {
    let (dispatch, guard, exporter) = build(
        Builder::new()
            .with_export_interval(Duration::from_secs(3600))
            .with_max_batch_size(10),
    );
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..10 {
            info_span!("s").in_scope(|| {});
        }
    });
    // Exported with the export interval an hour away.
    wait_until(|| (exporter.spans().len() >= 10).then_some(()));
    assert_eq!(exporter.spans().len(), 10);
    drop(guard);
}

#[test]
fn the_interval_exports_a_partial_batch() {
    let clock = ManualClock::new();
    let (dispatch, guard, exporter) = build(
        Builder::new()
            .with_export_interval(Duration::from_secs(60))
            .with_manual_clock(&clock),
    );
    tracing::dispatcher::with_default(&dispatch, || info_span!("s").in_scope(|| {}));
    // Nothing before the interval, on the exporter's clock.
    clock.advance(Duration::from_secs(59));
    std::thread::sleep(Duration::from_millis(50));
    assert!(exporter.spans().is_empty());
    // The interval passes: the partial batch goes.
    clock.advance(Duration::from_secs(1));
    wait_until(|| (!exporter.spans().is_empty()).then_some(()));
    assert_eq!(exporter.spans().len(), 1);
    drop(guard);
}

#[test]
fn shutdown_twice_is_an_error_and_flush_after_shutdown_too() {
    let (_dispatch, guard, _exporter) = build(Builder::new());
    guard.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(
        guard.shutdown(Duration::from_secs(5)),
        Err(ShutdownError::AlreadyShutDown)
    );
    assert_eq!(
        guard.flush(Duration::from_secs(1)),
        Err(FlushError::ShutDown)
    );
}

#[test]
fn records_after_shutdown_are_counted_as_dropped() {
    let (dispatch, guard, exporter) = build(Builder::new());
    guard.shutdown(Duration::from_secs(5)).unwrap();
    tracing::dispatcher::with_default(&dispatch, || info_span!("late").in_scope(|| {}));
    assert!(exporter.spans().is_empty());
    assert_eq!(guard.stats().dropped_after_shutdown, 1);
}

#[test]
fn a_queue_of_one_counts_every_drop_exactly() {
    let (dispatch, guard, exporter) = build(
        Builder::new()
            .with_max_queue_size(1)
            .with_max_batch_size(1)
            .with_export_interval(Duration::from_secs(3600)),
    );
    const N: u64 = 5000;
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..N {
            info_span!("burst").in_scope(|| {});
        }
    });
    guard.shutdown(Duration::from_secs(10)).unwrap();
    let stats = guard.stats();
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    assert_eq!(stats.queued + stats.dropped_queue_full, N, "{stats:?}");
    assert_eq!(stats.exported, stats.queued, "{stats:?}");
    assert_eq!(exporter.spans().len() as u64, stats.exported);
}

#[test]
fn dropping_the_guard_exports_what_is_queued() {
    let (dispatch, guard, exporter) =
        build(Builder::new().with_export_interval(Duration::from_secs(3600)));
    tracing::dispatcher::with_default(&dispatch, || info_span!("s").in_scope(|| {}));
    drop(guard);
    assert_eq!(exporter.spans().len(), 1);
}

#[test]
fn contradictory_settings_name_the_setting() {
    let cases = [
        (Builder::new().with_max_queue_size(0), "with_max_queue_size"),
        (Builder::new().with_max_batch_size(0), "with_max_batch_size"),
        (
            Builder::new()
                .with_max_queue_size(10)
                .with_max_batch_size(20),
            "with_max_batch_size",
        ),
        (
            Builder::new().with_export_interval(Duration::ZERO),
            "with_export_interval",
        ),
    ];
    for (builder, setting) in cases {
        let err = builder.build::<tracing_subscriber::Registry>().unwrap_err();
        assert!(
            err.to_string().contains(setting),
            "{err} should name {setting}"
        );
    }
}

/// The least executor there is: polls on this thread, parks between
/// polls. No tokio runtime anywhere.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The endpoint is down until a second future on the same thread brings it
/// up: the flush succeeds only if waiting for it left the thread free.
#[test]
fn flush_async_leaves_its_thread_free_on_any_executor() {
    use crate::support::delivery::{builder, dead_addr, emit, start, Forwarder, TempDir};
    let server = crate::support::FakeIngestion::start();
    let addr = dead_addr();
    let dir = TempDir::new("flush-async");
    let (dispatch, guard) = start(builder(&format!("http://{addr}"), dir.path()));
    emit(&dispatch, "a", 0..3);
    let (flushed, _forwarder) = block_on(async {
        tokio::join!(guard.flush_async(Duration::from_secs(60)), async {
            Forwarder::start(addr, server.addr())
        })
    });
    flushed.unwrap();
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.stored), (3, 0), "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    guard.shutdown(Duration::from_secs(5)).unwrap();
}

/// The same for the shutdown, on one tokio runtime thread: a blocking
/// shutdown would store the spans at its deadline, unsent.
#[test]
fn shutdown_async_leaves_a_current_thread_runtime_free() {
    use crate::support::delivery::{builder, dead_addr, emit, start, Forwarder, TempDir};
    let server = crate::support::FakeIngestion::start();
    let addr = dead_addr();
    let dir = TempDir::new("shutdown-async");
    let (dispatch, guard) = start(builder(&format!("http://{addr}"), dir.path()));
    emit(&dispatch, "s", 0..3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (result, _forwarder) = runtime.block_on(async {
        let up = async {
            tokio::task::yield_now().await;
            Forwarder::start(addr, server.addr())
        };
        tokio::join!(guard.shutdown_async(Duration::from_secs(60)), up)
    });
    result.unwrap();
    let stats = guard.stats();
    assert_eq!((stats.exported, stats.stored), (3, 0), "{stats:?}");
    assert!(stats.balances(), "{stats:?}");
    assert!(matches!(
        block_on(guard.shutdown_async(Duration::from_secs(1))),
        Err(ShutdownError::AlreadyShutDown)
    ));
    // Dropping the guard now does not wait for anything.
    drop(guard);
}
