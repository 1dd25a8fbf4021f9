//! The pipeline end to end, with a test sink on the worker.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::prelude::*;

use super::{add, items_of, Ledger, Sink};
use crate::record::Record;
use crate::Builder;

/// Counts what reaches the subscriber, whichever thread it comes from.
#[derive(Clone, Default)]
struct Seen(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "noisy_sink" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A sink that itself emits `tracing` spans and events (as hyper and
/// rustls do while exporting) produces no record of them,
/// while the user's other layers still see them.
#[test]
fn the_exporter_never_records_its_own_activity() {
    let names = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink_names = Arc::clone(&names);
    let sink = move |batch: &[Record]| {
        for record in batch {
            let _span = tracing::info_span!(target: "noisy_sink", "sink.export").entered();
            tracing::info!(target: "noisy_sink", "exporting a record");
            let name = match record {
                Record::Span(span) => span.name.to_string(),
                Record::Event(event) => format!("event: {}", event.message),
            };
            sink_names.lock().unwrap().push(name);
        }
    };
    let (layer, guard) = Builder::new()
        .with_export_interval(Duration::from_millis(10))
        .build_with_sink(callback(sink))
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

/// Shutting down, and dropping the guard, return while the sink is still
/// stuck on the worker thread: the guard does not wait for it past its
/// timeout.
#[test]
fn shutdown_and_drop_return_while_the_sink_hangs() {
    let (release, stuck) = std::sync::mpsc::channel::<()>();
    let stuck = Mutex::new(stuck);
    let (entered_tx, entered) = std::sync::mpsc::sync_channel::<()>(1);
    let finished = Arc::new(AtomicUsize::new(0));
    let sink_finished = Arc::clone(&finished);
    let sink = move |_: &[Record]| {
        let _ = entered_tx.try_send(());
        // Stuck until the test has seen the guard return.
        let _ = stuck.lock().unwrap().recv();
        sink_finished.fetch_add(1, Ordering::SeqCst);
    };
    let (layer, guard) = Builder::new()
        .with_shutdown_timeout(Duration::from_millis(50))
        .build_with_sink(callback(sink))
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!(target: "app", "stuck").in_scope(|| {});
    });
    guard.flush(Duration::from_millis(1)).ok();
    entered.recv().unwrap();
    // The sink is stuck now, and stays stuck until `release`.
    assert_eq!(
        guard.shutdown(Duration::from_millis(50)),
        Err(crate::ShutdownError::Timeout(Duration::from_millis(50)))
    );
    drop(guard);
    assert_eq!(finished.load(Ordering::SeqCst), 0, "returned while stuck");
    release.send(()).unwrap();
}

/// A sink running a callback on the worker thread; what it is handed
/// counts as exported.
struct Callback<F> {
    f: F,
    ledger: Ledger,
}

impl<F: FnMut(&[Record]) + Send + 'static> Sink for Callback<F> {
    fn accept(&mut self, batch: &mut Vec<Record>) {
        let items = batch.iter().map(items_of).sum();
        (self.f)(batch);
        add(&self.ledger.exported, items);
    }
}

/// A sink and its startup note, as a sink maker gives them (spelled out:
/// the pipeline does not name the config module).
type Made = (
    Box<dyn Sink>,
    Vec<crate::diag::Note>,
    Option<std::sync::Arc<crate::live::Live>>,
);

/// The sink maker for [`Builder::build_with_sink`] of a [`Callback`] of `f`.
fn callback(
    f: impl FnMut(&[Record]) + Send + 'static,
) -> impl FnOnce(&Builder, crate::Sampler, Ledger) -> Result<Made, crate::BuildError> {
    move |_, _, ledger| Ok((Box::new(Callback { f, ledger }), Vec::new(), None))
}
