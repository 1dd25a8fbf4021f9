//! The pipeline end to end, with a test sink on the worker.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::prelude::*;

use super::sink::Sink;
use crate::record::Record;
use crate::Builder;

/// Counts what reaches the subscriber, whichever thread it comes from.
#[derive(Clone, Default)]
struct Seen(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() == "noisy_sink" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A sink that itself emits `tracing` spans and events (as hyper and
/// rustls do while exporting) produces no record of them (design §8),
/// while the user's other layers still see them.
#[test]
fn the_exporter_never_records_its_own_activity() {
    let names = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink_names = Arc::clone(&names);
    let sink = Sink::Callback(Box::new(move |batch: &[Record]| {
        for record in batch {
            let _span = tracing::info_span!(target: "noisy_sink", "sink.export").entered();
            tracing::info!(target: "noisy_sink", "exporting a record");
            let name = match record {
                Record::Span(span) => span.name.to_string(),
                Record::Event(event) => format!("event: {}", event.message),
            };
            sink_names.lock().unwrap().push(name);
        }
    }));
    let (layer, guard) = Builder::new()
        .with_export_interval(Duration::from_millis(10))
        .build_with_sink(sink)
        .unwrap();
    let seen = Seen::default();
    // The worker thread only sees the global default subscriber.
    // Other tests of this binary run in parallel and may log through
    // the global subscriber: let the layer see only this test's
    // targets, the sink's included.
    let ours = tracing_subscriber::filter::filter_fn(|meta| {
        matches!(meta.target(), "self_trace_app" | "noisy_sink")
    });
    tracing_subscriber::registry()
        .with(layer.with_filter(ours))
        .with(seen.clone())
        .try_init()
        .expect("no other test sets the global subscriber");

    // Spans of this crate's own target are ignored: use the app's.
    tracing::info_span!(target: "self_trace_app", "app").in_scope(|| {});
    // Several export rounds: any self-recorded span would come back.
    for _ in 0..5 {
        guard.flush(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    guard.shutdown(Duration::from_secs(5)).unwrap();

    assert_eq!(*names.lock().unwrap(), ["app"]);
    assert!(
        seen.0.load(Ordering::SeqCst) >= 1,
        "fmt-like layers still see the sink's events"
    );
    assert_eq!(guard.stats().queued, 1);
}

/// Dropping the guard returns within its timeout even when the sink
/// never finishes.
#[test]
fn guard_drop_returns_within_its_timeout_when_the_sink_hangs() {
    let sink = Sink::Callback(Box::new(|_: &[Record]| {
        std::thread::sleep(Duration::from_secs(30));
    }));
    let (layer, guard) = Builder::new()
        .with_shutdown_timeout(Duration::from_millis(200))
        .build_with_sink(sink)
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!(target: "app", "stuck").in_scope(|| {});
    });
    let started = Instant::now();
    drop(guard);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
