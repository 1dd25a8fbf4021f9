//! The layer's counting for Live Metrics, end to end: spans and events
//! through a registry, counted into a [`Live`] that says someone watches.

use std::sync::Arc;
use std::time::Duration;

use tracing::info_span;
use tracing_subscriber::prelude::*;
use tracing_subscriber::Registry;

use super::AppInsightsLayer;
use crate::live::{Interval, Live};
use crate::propagation::RemoteContext;
use crate::record::ids::{SpanId, TraceId};
use crate::{AppInsightsSpanExt, Builder, ExporterGuard, InMemoryExporter, Sampler};

type Layer = AppInsightsLayer<Registry>;

struct Setup {
    dispatch: tracing::Dispatch,
    live: Arc<Live>,
    exporter: InMemoryExporter,
    guard: ExporterGuard,
}

/// A layer sampling nothing, with Live Metrics watched.
fn setup() -> Setup {
    let exporter = InMemoryExporter::new();
    let live = Arc::new(Live::default());
    live.set_watching(true);
    let counted = live.clone();
    let (layer, guard) = Builder::new()
        .with_sampler(Sampler::always_off())
        .with_in_memory_exporter(exporter.clone())
        .build_with_sink(move |builder, sampler, ledger| {
            let (sink, notes, _) = builder.sink(sampler, ledger)?;
            Ok((sink, notes, Some(counted)))
        })
        .expect("valid builder");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    Setup {
        dispatch,
        live,
        exporter,
        guard,
    }
}

impl Setup {
    fn layer(&self) -> &Layer {
        self.dispatch.downcast_ref::<Layer>().expect("our layer")
    }

    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    fn take(&self) -> Interval {
        self.live.take().0
    }
}

#[test]
fn unsampled_spans_count_by_kind_and_failure_whichever_thread_closes_them() {
    let s = setup();
    s.run(|| {
        info_span!(target: "app", "in", otel.kind = "server", http.response.status_code = 500_u64).in_scope(|| {
            info_span!(target: "app", "out", otel.kind = "client").in_scope(|| {});
            info_span!(target: "app", "work").in_scope(|| tracing::error!(target: "app", error = "boom", "failed"));
        });
        // Recorded and closed on another thread, an error set late.
        let late = info_span!(target: "app", "late", otel.kind = "consumer", error = tracing::field::Empty);
        let handle = std::thread::spawn({
            let dispatch = s.dispatch.clone();
            move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    late.record("error", "late failure");
                    drop(late);
                })
            }
        });
        handle.join().expect("no panic");
    });
    let counted = s.take();
    assert_eq!((counted.requests, counted.requests_failed), (2, 2));
    assert_eq!((counted.dependencies, counted.dependencies_failed), (2, 0));
    assert_eq!(counted.exceptions, 1);
    assert!(s.layer().table.nothing_alive());
    assert!(s.exporter.spans().is_empty());
}

#[test]
fn more_spans_alive_than_the_table_holds_are_all_counted() {
    const ALIVE: usize = 10_000; // more than the table's 8,192 slots
    let s = setup();
    s.run(|| {
        let spans: Vec<_> = (0..ALIVE)
            .map(|i| info_span!(target: "app", "many", i, http.status_code = tracing::field::Empty))
            .collect();
        assert!(s.layer().table.live().expect("on").overflowing());
        for (i, span) in spans.iter().enumerate() {
            if i % 2 == 0 {
                span.record("http.status_code", 503_u64);
            }
        }
    });
    let counted = s.take();
    assert_eq!(counted.dependencies as usize, ALIVE);
    assert_eq!(counted.dependencies_failed as usize, ALIVE / 2);
    let table = &s.layer().table;
    assert!(table.nothing_alive());
    assert!(!table.live().expect("on").overflowing());
    assert!(s.guard.stats().table_overflows > 0);
}

#[test]
fn spans_closed_after_the_watch_ended_leave_the_table_uncounted() {
    let s = setup();
    s.run(|| {
        let span = info_span!(target: "app", "long");
        s.live.set_watching(false);
        drop(span);
        info_span!(target: "app", "unwatched").in_scope(|| {});
    });
    let counted = s.take();
    assert_eq!((counted.requests, counted.dependencies), (0, 0));
    assert!(s.layer().table.nothing_alive());
}

#[test]
fn a_counted_span_made_sampled_is_counted_once_as_sampled() {
    let s = setup();
    s.run(|| {
        let span = info_span!(target: "app", "upgraded");
        let parent = RemoteContext::new(TraceId::from_int(7), SpanId::from_int(7), Some(true))
            .expect("valid ids");
        assert!(span.set_remote_parent(parent));
        drop(span);
    });
    let counted = s.take();
    // A remote parent and no kind: a request, from the sampled span.
    assert_eq!((counted.requests, counted.dependencies), (1, 0));
    assert!(s.layer().table.nothing_alive());
    s.guard.flush(Duration::from_secs(5)).expect("flushed");
    assert_eq!(s.exporter.spans().len(), 1);
}

#[test]
fn sqlx_statements_count_as_dependencies_in_spans_and_out() {
    let s = setup();
    s.run(|| {
        info_span!(target: "app", "in", otel.kind = "server").in_scope(|| {
            tracing::debug!(target: "sqlx::query", summary = "SELECT 1", db.statement = "", rows_returned = 1_u64, elapsed_secs = 0.002);
        });
        tracing::debug!(target: "sqlx::query", summary = "BEGIN", elapsed_secs = 0.001, exception.message = "reset");
        // Not sqlx's shape: counted as nothing but a log line.
        tracing::debug!(target: "sqlx::query", summary = "BEGIN", elapsed_secs = -1.0);
        tracing::debug!(target: "app", elapsed_secs = 0.5);
    });
    let counted = s.take();
    assert_eq!((counted.requests, counted.requests_failed), (1, 0));
    assert_eq!((counted.dependencies, counted.dependencies_failed), (2, 1));
    assert_eq!(counted.exceptions, 1);
}
